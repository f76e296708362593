//! `ckptfs cp [-r] IMAGE SRC... DEST`: copy files and trees out of a checkpoint, as
//! `cp -a` does for what a user owns: the same bytes, modification and access times
//! kept, symlinks recreated as symlinks, holes left as holes. Permission bits are kept,
//! plus write permission for the owner, so that restored copies can be edited (NTFS and
//! FAT files show as read-only). Ownership is not changed. A file that cannot be read
//! is reported and skipped; the copy goes on and fails at the end.

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
        let ino = vfs.resolve(src)?;
        let name = src.rsplit('/').find(|p| !p.is_empty()).unwrap_or(src.as_str());
        let target = if dest_is_dir { dest.join(name) } else { dest.to_path_buf() };
        jobs.push(Job { ino, src: src.clone(), dest: target });
    }
    let mut copier = Copier::new(&vfs, opts);
    copier.plan(&jobs);
    for job in &jobs {
        copier.copy(job.ino, &job.src, &job.dest);
    }
    copier.finish()
}

struct Copier<'v> {
    vfs: &'v Vfs,
    recursive: bool,
    progress: Option<ProgressBar>,
    copied: u64,
    failed: u64,
    buf: Vec<u8>,
}

impl<'v> Copier<'v> {
    fn new(vfs: &'v Vfs, opts: &Options) -> Self {
        Copier { vfs, recursive: opts.recursive, progress: None, copied: 0, failed: 0, buf: vec![0u8; CHUNK] }
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
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
            )
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
        match &self.progress {
            Some(bar) => bar.println(format!("ckptfs: {what}")),
            None => eprintln!("ckptfs: {what}"),
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
        std::fs::create_dir_all(dest).map_err(|e| local(dest, "cannot create directory", e))?;
        let entries = self.vfs.readdir(ino).map_err(|e| in_path(src, e))?;
        for e in entries {
            let child_src = format!("{}/{}", src.trim_end_matches('/'), e.name.to_string_lossy());
            self.copy(e.ino, &child_src, &dest.join(&e.name));
        }
        // Times last: creating the children changed the directory's.
        set_mode(dest, attr.perm)?;
        set_times(dest, attr, false)
    }

    fn copy_file(&mut self, ino: Ino, src: &str, dest: &Path, attr: &Attr) -> Result<()> {
        let mut out = File::create(dest).map_err(|e| local(dest, "cannot create", e))?;
        let mut offset = 0u64;
        loop {
            let n = self.vfs.read(ino, offset, &mut self.buf).map_err(|e| in_path(src, e))?;
            if n == 0 {
                break;
            }
            // An all-zero chunk becomes a hole, as `cp --sparse=auto` does.
            if self.buf[..n].iter().all(|&b| b == 0) {
                out.seek(SeekFrom::Current(n as i64)).map_err(|e| local(dest, "seek failed", e))?;
            } else {
                out.write_all(&self.buf[..n]).map_err(|e| local(dest, "write failed", e))?;
            }
            offset += n as u64;
            if let Some(bar) = &self.progress {
                bar.inc(n as u64);
            }
        }
        out.set_len(offset).map_err(|e| local(dest, "cannot set length", e))?;
        drop(out);
        if offset != attr.size {
            return Err(Error::Usage(format!("{src}: read {offset} bytes of {}", attr.size)));
        }
        set_mode(dest, attr.perm)?;
        set_times(dest, attr, false)?;
        self.copied += 1;
        if let Some(bar) = &self.progress {
            bar.set_message(format!("{} files", self.copied));
        }
        Ok(())
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
        if self.failed > 0 {
            return Err(Error::Usage(format!(
                "{} of {} items could not be copied",
                self.failed,
                self.failed + self.copied
            )));
        }
        Ok(())
    }
}

fn local(path: &Path, what: &str, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), what: what.into(), source }
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
                if n == 0 { (s, 0) } else { (s - 1, 1_000_000_000 - n) }
            }
        };
        libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nanos as _ }
    };
    let times = [ts(attr.atime), ts(attr.mtime)];
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Usage(format!("{}: path holds a NUL byte", path.display())))?;
    // SAFETY: a valid NUL-terminated path and two timespecs, as utimensat(2) requires.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(local(path, "cannot set times", std::io::Error::last_os_error()));
    }
    Ok(())
}
