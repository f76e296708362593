//! The file as the replayed log makes it: bytes from disk, patched by the in-memory
//! overlay, and extended with zeros up to the size the log says the file has.

use super::log::Overlay;
use super::VhdxError;
use crate::io::ImageFile;

#[derive(Debug)]
pub struct FileView {
    file: ImageFile,
    overlay: Overlay,
    /// Logical length: the file's length, or more if the log extended it.
    len: u64,
}

impl FileView {
    pub fn new(file: ImageFile) -> Self {
        let len = file.len();
        FileView {
            file,
            overlay: Overlay::default(),
            len,
        }
    }

    /// Put a replayed log in front of the file; the file grows to `min_len` if shorter.
    pub fn with_replay(mut self, overlay: Overlay, min_len: u64) -> Self {
        self.len = self.len.max(min_len).max(overlay.extent_end());
        self.overlay = overlay;
        self
    }

    pub fn file(&self) -> &ImageFile {
        &self.file
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Read `buf.len()` bytes of `structure` at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8], structure: &'static str) -> Result<(), VhdxError> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(VhdxError::Truncated {
                structure,
                offset,
                len,
                file_len: self.len,
            });
        }
        let on_disk = self.file.len().saturating_sub(offset).min(len) as usize;
        if on_disk > 0 {
            self.file
                .read_exact_at(offset, &mut buf[..on_disk])
                .map_err(|source| VhdxError::Io { offset, len, source })?;
        }
        buf[on_disk..].fill(0);
        if !self.overlay.is_empty() {
            self.overlay.apply(offset, buf);
        }
        Ok(())
    }

    /// The range as a piece of the file, if the file holds all of it and no replayed
    /// log entry patches it.
    pub fn plain_piece(&self, offset: u64, len: u64) -> Option<crate::io::Piece<'_>> {
        let end = offset.checked_add(len)?;
        if end > self.file.len() || self.overlay.touches(offset, len) {
            return None;
        }
        Some(crate::io::Piece::File {
            file: &self.file,
            offset,
            len,
        })
    }

    pub fn read_vec(&self, offset: u64, len: usize, structure: &'static str) -> Result<Vec<u8>, VhdxError> {
        let mut b = vec![0u8; len];
        self.read(offset, &mut b, structure)?;
        Ok(b)
    }
}
