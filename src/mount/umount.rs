//! `ckptfs umount MOUNTPOINT`: end a ckptfs mount, as root directly and as an
//! ordinary user through fusermount3. The serving process notices and exits.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::mountinfo::{self, MountEntry};
use super::options::SUBTYPE;
use crate::{Error, Result};

/// Unmount, and (unless `lazy`) return only once the serving process has exited: its
/// FUSE session removes whatever is mounted at its path as it ends, which would be a
/// new mount made there right after this returns.
pub fn umount(path: &Path, lazy: bool) -> Result<()> {
    let entry = find(path)?;
    let server = (!lazy).then(|| mountinfo::server_pid(&entry.mount_point)).flatten();
    detach(path, &entry, lazy)?;
    if let Some(pid) = server {
        wait_for_exit(pid);
    }
    Ok(())
}

/// How long to wait for the serving process to exit after its mount is gone.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn wait_for_exit(pid: u32) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let start = std::time::Instant::now();
    while start.elapsed() < EXIT_WAIT {
        // Gone, or a zombie: either way its session has ended.
        let state = std::fs::read_to_string(proc_dir.join("stat")).ok();
        let running = state
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
        if !running {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    log::warn!("the serving process {pid} is still running {EXIT_WAIT:?} after its unmount");
}

fn detach(path: &Path, entry: &MountEntry, lazy: bool) -> Result<()> {
    let fs_type = format!("fuse.{SUBTYPE}");
    if entry.fs_type != fs_type {
        return Err(Error::Usage(format!(
            "{}: not a ckptfs mount (it is {})",
            path.display(),
            entry.fs_type
        )));
    }
    let c = std::ffi::CString::new(entry.mount_point.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Usage(format!("{}: path contains a NUL byte", path.display())))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // A file closed just before (a `cp` that just ended, a process still exiting, a
    // child forked while it was open) can keep the mount busy for a moment: try again
    // for up to two seconds before calling it busy.
    let mut e = std::io::Error::from_raw_os_error(libc::EBUSY);
    for attempt in 0..BUSY_RETRIES {
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) || attempt + 1 == BUSY_RETRIES {
            break;
        }
        std::thread::sleep(BUSY_PAUSE);
    }
    match e.raw_os_error() {
        // Only root may unmount directly; the setuid helper lets the user who mounted.
        Some(libc::EPERM) => fusermount(&entry.mount_point, lazy),
        Some(libc::EBUSY) => Err(busy(path)),
        _ => Err(Error::Io {
            path: path.into(),
            what: "cannot unmount".into(),
            source: e,
        }),
    }
}

/// How often, and how far apart, a busy mount is tried again.
const BUSY_RETRIES: u32 = 20;
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

fn busy(path: &Path) -> Error {
    Error::Usage(format!(
        "{}: busy (a process has a file open or its working directory there); close them, or use --lazy",
        path.display()
    ))
}

/// The mount at `path`. The path is made absolute without resolving it first: a mount
/// whose server died cannot be stat'ed, and must still be found to be removed.
fn find(path: &Path) -> Result<MountEntry> {
    let absolute = std::path::absolute(path).map_err(|source| Error::Io {
        path: path.into(),
        what: "bad path".into(),
        source,
    })?;
    let lexical = normalize(&absolute);
    mountinfo::find(&lexical)
        .or_else(|| {
            let parent = lexical.parent()?.canonicalize().ok()?;
            mountinfo::find(&parent.join(lexical.file_name()?))
        })
        .or_else(|| mountinfo::find(&path.canonicalize().ok()?))
        .ok_or_else(|| Error::Usage(format!("{}: not mounted", path.display())))
}

/// `a/./b/../c` → `a/c`, without looking at the filesystem.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn fusermount(mount_point: &Path, lazy: bool) -> Result<()> {
    let mut last_err = None;
    for helper in ["fusermount3", "fusermount"] {
        let mut cmd = Command::new(helper);
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        match cmd.arg("--").arg(mount_point).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if msg.contains("busy") {
                    return Err(busy(mount_point));
                }
                return Err(Error::Usage(if msg.is_empty() {
                    format!("{helper} -u failed")
                } else {
                    msg
                }));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Io {
        path: mount_point.into(),
        what: "cannot unmount as a user without fusermount3 (package fuse3)".into(),
        source: last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_without_the_filesystem() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../x")), Path::new("/x"));
    }

    #[test]
    fn an_unmounted_directory_is_reported() {
        let dir = std::env::temp_dir();
        let e = umount(&dir.join("surely-not-a-mount-point-of-ckptfs"), false).unwrap_err();
        assert!(e.to_string().ends_with("not mounted"), "{e}");
    }
}
