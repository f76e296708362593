//! The mount: the virtual tree served read-only through FUSE (fuser), in the
//! background like sshfs or in the foreground with `-f`.
//!
//! - `fuse`: the `fuser::Filesystem` adapter over [`Vfs`]
//! - `options`: `-o` options and the fuser configuration
//! - `daemon`: detaching into the background once the mount is ready
//! - `serve`: the session's threads, and the signals that unmount it
//! - `transport`: what is negotiated with the kernel's FUSE, and the read reply buffer
//! - `splice`: read replies spliced from the image files, without copying
//! - `mountinfo`, `umount`: finding and ending a mount

mod daemon;
mod fuse;
mod mountinfo;
mod options;
mod serve;
mod splice;
pub mod transport;
mod umount;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fuse::CkptFs;
pub use options::{parse_size, MountOptions, HELP as OPTIONS_HELP};
pub use umount::umount;

use crate::vfs::Vfs;
use crate::{Error, Result};

/// How to mount, beyond the `-o` options.
#[derive(Debug, Clone)]
pub struct Settings {
    pub options: MountOptions,
    /// Stay attached to the terminal and log there.
    pub foreground: bool,
    /// Requests served at once.
    pub threads: usize,
    /// In the background, where log lines go (nowhere by default).
    pub log_file: Option<PathBuf>,
}

/// Check that `mountpoint` can be mounted on, and return its canonical path. Done
/// before anything is opened, so that a typo costs no discovery.
pub fn check_mountpoint(mountpoint: &Path) -> Result<PathBuf> {
    let canonical = mountpoint.canonicalize().map_err(|source| Error::Io {
        path: mountpoint.into(),
        what: "bad mount point".into(),
        source,
    })?;
    match std::fs::metadata(&canonical) {
        Ok(md) if md.is_dir() => {
            refuse_ckptfs_mount(mountpoint, &canonical)?;
            Ok(canonical)
        }
        Ok(_) => Err(Error::NotADirectory(mountpoint.display().to_string())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(Error::Usage(format!(
            "{0}: a mount whose process died is still there ({e}); `ckptfs umount {0}` removes it",
            mountpoint.display()
        ))),
        Err(source) => Err(Error::Io {
            path: mountpoint.into(),
            what: "bad mount point".into(),
            source,
        }),
    }
}

/// Refuse a directory that already has a ckptfs mount on it: mounting again would stack
/// a second server over the first, and one umount would end both. (Other filesystems
/// may be mounted over, as with any FUSE tool.)
fn refuse_ckptfs_mount(mountpoint: &Path, canonical: &Path) -> Result<()> {
    let Some(entry) = mountinfo::find(canonical) else {
        return Ok(());
    };
    if entry.fs_type != format!("fuse.{}", options::SUBTYPE) {
        return Ok(());
    }
    let by = match mountinfo::server_pid(canonical) {
        Some(pid) => format!("pid {pid}"),
        None => "its process not found".into(),
    };
    Err(Error::Usage(format!(
        "{}: already mounted by ckptfs, {by} (serving {}); `ckptfs umount {}` ends it",
        mountpoint.display(),
        entry.source,
        mountpoint.display()
    )))
}

/// Mount `vfs` (the tree of `image`) on `mountpoint` and serve it until unmounted. In
/// the background, returns in the original process as soon as the mount is served.
pub fn mount(vfs: Vfs, image: &Path, mountpoint: &Path, settings: &Settings) -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Usage(
            "/dev/fuse is missing: load the fuse module (modprobe fuse), or pass the device into the container".into(),
        ));
    }
    // fuser opens /dev/fuse first and turns to fusermount3 only if mount(2) is then
    // refused, so a user who may not open it gets a bare EACCES: say what is wrong.
    if unsafe { libc::geteuid() } != 0 {
        if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
            return Err(Error::Usage(format!(
                "/dev/fuse: {e}; mount as root, or let users open it (mode 0666, the Linux default)"
            )));
        }
    }
    let mountpoint = check_mountpoint(mountpoint)?;
    // Relative to where the user is, not to `/` where the daemon works.
    let log_file = settings
        .log_file
        .as_ref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    // Held open by the serving process for as long as it serves: the directory under
    // the mount, by which `mountinfo::server_pid` finds the process (see there).
    let _anchor = mountinfo::anchor(&mountpoint)?;
    let config = settings.options.config(image, settings.threads);
    let fs = CkptFs::new(
        Arc::new(vfs),
        settings.threads,
        settings.options.direct_io,
        !settings.options.nosplice,
    );
    // Mounting (and the kernel's init handshake) happens here, in the original process:
    // its errors reach the terminal, and the mount exists before anyone returns.
    let session = fuser::Session::new(fs, &mountpoint, &config).map_err(|e| Error::Io {
        path: mountpoint.clone(),
        what: "cannot mount".into(),
        // fusermount3's message ends in a newline; the user gets one line.
        source: std::io::Error::new(e.kind(), e.to_string().trim().to_string()),
    })?;
    if settings.foreground {
        return serve::serve(session, &mountpoint, None);
    }
    // No thread has been started yet (discovery and mounting run on this one), so
    // forking is safe.
    match daemon::detach(log_file.as_deref())? {
        daemon::Side::Child(ready) => serve::serve(session, &mountpoint, Some(ready)),
        daemon::Side::Parent => {
            // The child owns the mount now; dropping the session here would unmount it.
            std::mem::forget(session);
            Ok(())
        }
    }
}
