//! `ckptfs cp [-r] IMAGE SRC... DEST`: copy files and trees out of a checkpoint, as
//! `cp -a` does for what a user owns: the same bytes, modification and access times
//! kept, symlinks recreated as symlinks, holes left as holes. Permission bits are kept,
//! plus write permission for the owner, so that restored copies can be edited (NTFS and
//! FAT files show as read-only). Ownership is not changed. A file that cannot be read
//! is reported on one line and skipped; the copy goes on and exits 1 at the end,
//! without a summary line (as `cp` does).
//!
//! Extended attributes in the `user.` namespace, which on NTFS are the alternate data
//! streams (`user.Zone.Identifier`), are copied as `cp -a` copies them, to files and
//! directories. They are extras: one that cannot be copied (a stream over the 64 KiB an
//! extended attribute may hold, a destination that takes none or not that large) is a
//! warning, never a failed copy. `SRC` may also name a stream, `file.txt:stream`, which
//! is copied to a file of its own.

use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes, Permissions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use indicatif::{ProgressBar, ProgressStyle};

use super::{in_path, ImageArgs};
use crate::fs::{Attr, FileKind};
use crate::vfs::{Ino, Vfs};
use crate::{Error, Result};

const CHUNK: usize = 4 << 20;

pub struct Options {
    pub recursive: bool,
}

/// One thing to copy: where it is in the tree, where it goes.
struct Job {
    ino: Ino,
    /// A named stream of `ino` to copy instead of the node itself.
    stream: Option<OsString>,
    src: String,
    dest: PathBuf,
}

pub fn run(image: &ImageArgs, sources: &[String], dest: &Path, opts: &Options) -> Result<()> {
    let vfs = image.open_vfs()?;
    let dest_is_dir = dest.is_dir();
    if sources.len() > 1 && !dest_is_dir {
        return Err(Error::Usage(format!("target {} is not a directory", dest.display())));
    }
    let mut jobs = Vec::new();
    for src in sources {
        let (ino, stream) = vfs.resolve_stream(src)?;
        let name = src.rsplit('/').find(|p| !p.is_empty()).unwrap_or(src.as_str());
        let target = if dest_is_dir {
            dest.join(name)
        } else {
            dest.to_path_buf()
        };
        jobs.push(Job {
            ino,
            stream,
            src: src.clone(),
            dest: target,
        });
    }
    let mut copier = Copier::new(&vfs, opts);
    copier.plan(&jobs);
    for job in &jobs {
        match &job.stream {
            Some(name) => copier.copy_stream(job.ino, name, &job.src, &job.dest),
            None => copier.copy(job.ino, &job.src, &job.dest),
        }
    }
    copier.finish()
}

struct Copier<'v> {
    vfs: &'v Vfs,
    recursive: bool,
    progress: Option<ProgressBar>,
    copied: u64,
    failed: u64,
    /// Extended attributes not copied because the destination takes none.
    xattrs_unsupported: u64,
    buf: Vec<u8>,
}

impl<'v> Copier<'v> {
    fn new(vfs: &'v Vfs, opts: &Options) -> Self {
        Copier {
            vfs,
            recursive: opts.recursive,
            progress: None,
            copied: 0,
            failed: 0,
            xattrs_unsupported: 0,
            buf: vec![0u8; CHUNK],
        }
    }

    /// On a terminal, count what will be copied so the bar can show time left.
    fn plan(&mut self, jobs: &[Job]) {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let (mut bytes, mut files) = (0u64, 0u64);
        for job in jobs {
            self.measure(job.ino, &mut bytes, &mut files);
        }
        let bar = ProgressBar::new(bytes);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}")
                .expect("a valid template"),
        );
        bar.set_message(format!("0/{files} files"));
        self.progress = Some(bar);
    }

    fn measure(&self, ino: Ino, bytes: &mut u64, files: &mut u64) {
        let Ok(attr) = self.vfs.getattr(ino) else { return };
        match attr.kind {
            FileKind::Dir if self.recursive => {
                for e in self.vfs.readdir(ino).unwrap_or_default() {
                    self.measure(e.ino, bytes, files);
                }
            }
            FileKind::Dir => {}
            _ => {
                *bytes += attr.size;
                *files += 1;
            }
        }
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        self.say(&what);
    }

    fn say(&self, what: &str) {
        match &self.progress {
            Some(bar) => bar.println(format!("ckptfs: {what}")),
            None => eprintln!("ckptfs: {what}"),
        }
    }

    /// Copy the `user.` extended attributes of `ino` to `dest`; what cannot be copied
    /// is a warning (see the module comment).
    fn copy_xattrs(&mut self, ino: Ino, src: &str, dest: &Path) {
        let names = match self.vfs.listxattr(ino) {
            Ok(n) => n,
            Err(e) => return self.say(&format!("warning: {}", in_path(src, e))),
        };
        for name in names.iter().filter(|n| n.as_bytes().starts_with(b"user.")) {
            let shown = name.to_string_lossy();
            if self.xattrs_unsupported > 0 {
                self.xattrs_unsupported += 1;
                continue;
            }
            let value = match self.vfs.getxattr(ino, name) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    let stream = shown.strip_prefix("user.").unwrap_or(&shown);
                    let hint = match e {
                        Error::TooLarge(_) => format!(
                            ": larger than an extended attribute may be; `ckptfs cp IMAGE '{src}:{stream}' DEST` copies it to a file"
                        ),
                        other => format!(": {other}"),
                    };
                    self.say(&format!("warning: {src}: {shown} not copied{hint}"));
                    continue;
                }
            };
            if let Err(e) = set_xattr(dest, name, &value) {
                let stream = shown.strip_prefix("user.").unwrap_or(&shown);
                match e.raw_os_error() {
                    Some(libc::ENOTSUP) => self.xattrs_unsupported += 1,
                    // ext4 keeps an attribute within one block unless made with ea_inode.
                    Some(libc::ENOSPC | libc::E2BIG | libc::ERANGE) => self.say(&format!(
                        "warning: {src}: {shown} not copied: {} bytes is more than {} takes in an extended attribute; `ckptfs cp IMAGE '{src}:{stream}' DEST` copies it to a file",
                        value.len(),
                        dest.display()
                    )),
                    _ => self.say(&format!("warning: {}: {shown} not copied: {e}", dest.display())),
                }
            }
        }
    }

    /// Copy stream `name` of `ino` to a file of its own.
    fn copy_stream(&mut self, ino: Ino, name: &OsStr, src: &str, dest: &Path) {
        let result = self.vfs.getattr(ino).and_then(|attr| {
            let size = self
                .vfs
                .streams(ino)?
                .into_iter()
                .find(|s| s.name == name)
                .map(|s| s.size);
            let copied = self.write_file(src, dest, |vfs, off, buf| vfs.read_stream(ino, name, off, buf))?;
            if size.is_some_and(|s| s != copied) {
                return Err(Error::Usage(format!(
                    "{src}: read {copied} bytes of {}",
                    size.unwrap_or(0)
                )));
            }
            set_mode(dest, 0o444)?;
            set_times(dest, &attr, false)
        });
        match result {
            Ok(()) => self.copied += 1,
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn copy(&mut self, ino: Ino, src: &str, dest: &Path) {
        let attr = match self.vfs.getattr(ino) {
            Ok(a) => a,
            Err(e) => return self.fail(in_path(src, e).to_string()),
        };
        let result = match attr.kind {
            FileKind::Dir if !self.recursive => Err(Error::Usage(format!("{src}: is a directory (use -r)"))),
            FileKind::Dir => self.copy_dir(ino, src, dest, &attr),
            FileKind::File => self.copy_file(ino, src, dest, &attr),
            FileKind::Symlink => self.copy_symlink(ino, src, dest, &attr),
            _ => Err(Error::Usage(format!("{src}: special file skipped"))),
        };
        if let Err(e) = result {
            self.fail(e.to_string());
        }
    }

    fn copy_dir(&mut self, ino: Ino, src: &str, dest: &Path, attr: &Attr) -> Result<()> {
        // As `cp -r`: the directory itself is made (or an existing one merged into), its
        // parents never; a missing parent is an error, not a `mkdir -p`.
        match std::fs::create_dir(dest) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
            r => r.map_err(|e| local(dest, "cannot create directory", e))?,
        }
        let entries = self.vfs.readdir(ino).map_err(|e| in_path(src, e))?;
        for e in entries {
            let child_src = format!("{}/{}", src.trim_end_matches('/'), e.name.to_string_lossy());
            self.copy(e.ino, &child_src, &dest.join(&e.name));
        }
        self.copy_xattrs(ino, src, dest);
        // Times last: creating the children changed the directory's.
        set_mode(dest, attr.perm)?;
        set_times(dest, attr, false)
    }

    fn copy_file(&mut self, ino: Ino, src: &str, dest: &Path, attr: &Attr) -> Result<()> {
        let offset = self.write_file(src, dest, |vfs, off, buf| vfs.read(ino, off, buf))?;
        if offset != attr.size {
            return Err(Error::Usage(format!("{src}: read {offset} bytes of {}", attr.size)));
        }
        self.copy_xattrs(ino, src, dest);
        set_mode(dest, attr.perm)?;
        set_times(dest, attr, false)?;
        self.copied += 1;
        if let Some(bar) = &self.progress {
            bar.set_message(format!("{} files", self.copied));
        }
        Ok(())
    }

    /// Write what `read` reads (at an offset, 0 at the end) to a new file `dest`; the
    /// number of bytes.
    fn write_file(
        &mut self,
        src: &str,
        dest: &Path,
        read: impl Fn(&Vfs, u64, &mut [u8]) -> Result<usize>,
    ) -> Result<u64> {
        let mut out = File::create(dest).map_err(|e| local(dest, "cannot create", e))?;
        let mut offset = 0u64;
        loop {
            let n = read(self.vfs, offset, &mut self.buf).map_err(|e| in_path(src, e))?;
            if n == 0 {
                break;
            }
            // An all-zero chunk becomes a hole, as `cp --sparse=auto` does.
            if self.buf[..n].iter().all(|&b| b == 0) {
                out.seek(SeekFrom::Current(n as i64))
                    .map_err(|e| local(dest, "seek failed", e))?;
            } else {
                out.write_all(&self.buf[..n])
                    .map_err(|e| local(dest, "write failed", e))?;
            }
            offset += n as u64;
            if let Some(bar) = &self.progress {
                bar.inc(n as u64);
            }
        }
        out.set_len(offset).map_err(|e| local(dest, "cannot set length", e))?;
        Ok(offset)
    }

    fn copy_symlink(&mut self, ino: Ino, src: &str, dest: &Path, attr: &Attr) -> Result<()> {
        let target = self.vfs.readlink(ino).map_err(|e| in_path(src, e))?;
        if dest.symlink_metadata().is_ok() {
            std::fs::remove_file(dest).map_err(|e| local(dest, "cannot replace", e))?;
        }
        std::os::unix::fs::symlink(&target, dest).map_err(|e| local(dest, "cannot create symlink", e))?;
        set_times(dest, attr, true)?;
        self.copied += 1;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if let Some(bar) = &self.progress {
            bar.finish_and_clear();
        }
        if self.xattrs_unsupported > 0 {
            eprintln!(
                "ckptfs: warning: the destination takes no user extended attributes; {} (NTFS alternate data streams) not copied",
                self.xattrs_unsupported
            );
        }
        // Each failure has had its line; as with cp, no summary adds a second one.
        if self.failed > 0 {
            return Err(Error::Reported(self.failed));
        }
        Ok(())
    }
}

fn local(path: &Path, what: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        what: what.into(),
        source,
    }
}

/// Set extended attribute `name` of `path` (not following a symlink).
fn set_xattr(path: &Path, name: &OsStr, value: &[u8]) -> std::io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let c_name = std::ffi::CString::new(name.as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: NUL-terminated path and name, and a value buffer of the length given.
    let rc = unsafe { libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_mode(path: &Path, perm: u16) -> Result<()> {
    let mode = u32::from(perm & 0o7777) | 0o200;
    std::fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|e| local(path, "cannot set permissions", e))
}

/// Set access and modification times; of the link itself for a symlink.
fn set_times(path: &Path, attr: &Attr, symlink: bool) -> Result<()> {
    if !symlink {
        let f = File::open(path).map_err(|e| local(path, "cannot open to set times", e))?;
        return f
            .set_times(FileTimes::new().set_accessed(attr.atime).set_modified(attr.mtime))
            .map_err(|e| local(path, "cannot set times", e));
    }
    let ts = |t: SystemTime| {
        let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (-(d.as_secs() as i64), d.subsec_nanos() as i64);
                if n == 0 {
                    (s, 0)
                } else {
                    (s - 1, 1_000_000_000 - n)
                }
            }
        };
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos as _,
        }
    };
    let times = [ts(attr.atime), ts(attr.mtime)];
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Usage(format!("{}: path holds a NUL byte", path.display())))?;
    // SAFETY: a valid NUL-terminated path and two timespecs, as utimensat(2) requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(local(path, "cannot set times", std::io::Error::last_os_error()));
    }
    Ok(())
}
