//! An image file opened read-only, read with `pread` so that threads never share a cursor.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A disk image file, opened read-only. Never written to.
#[derive(Debug)]
pub struct ImageFile {
    path: PathBuf,
    file: File,
    size: u64,
}

impl ImageFile {
    /// Open `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::input(path, source))?;
        let meta = file.metadata().map_err(|source| Error::input(path, source))?;
        if meta.is_dir() {
            return Err(Error::input(path, std::io::Error::from_raw_os_error(libc::EISDIR)));
        }
        Ok(ImageFile {
            path: path.to_path_buf(),
            file,
            size: meta.len(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Ask the kernel to start reading `offset..offset + len` into the page cache
    /// (POSIX_FADV_WILLNEED); cached pages cost nothing. A refusal is ignored: this is
    /// only a hint.
    pub fn prefetch(&self, offset: u64, len: u64) {
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return;
        };
        // SAFETY: fadvise on an open descriptor; it reads no memory of ours.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&self.file),
                off,
                n,
                libc::POSIX_FADV_WILLNEED,
            )
        };
    }

    /// The open descriptor, for splicing its pages.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Read exactly `buf.len()` bytes at `offset`. A range past the end of the file is
    /// reported as truncation (the caller says which structure it wanted).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Read as many bytes as the file holds at `offset`, up to `buf.len()`; returns the
    /// count. Used where a file may legitimately be shorter than a structure's extent.
    pub fn read_up_to(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// A raw image file is itself a disk.
impl super::ReadAt for ImageFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn pieces<'a>(&'a self, offset: u64, len: u64, out: &mut Vec<super::Piece<'a>>) -> Result<bool> {
        super::check_range(offset, len as usize, self.size)?;
        out.push(super::Piece::File {
            file: self,
            offset,
            len,
        });
        Ok(true)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        super::check_range(offset, buf.len(), self.size)?;
        self.read_exact_at(offset, buf).map_err(|source| Error::Io {
            path: self.path.clone(),
            what: format!("read of {} bytes at offset {offset:#x} failed", buf.len()),
            source,
        })
    }
}
