//! Going into the background once the mount exists, as libfuse's `fuse_daemonize`
//! does: the parent stays until the child says it is serving, so that when
//! `ckptfs mount` returns the mount is there and answers, and a child that dies early
//! is reported by the parent on the terminal.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::{Error, Result};

/// Which side of the fork this is.
pub enum Side {
    /// The original process: the child is serving; exit successfully.
    Parent,
    /// The background process; report readiness through this once serving.
    Child(Ready),
}

/// The child's end of the readiness pipe.
pub struct Ready(File);

impl Ready {
    /// Tell the parent the mount is being served; it then exits.
    pub fn signal(mut self) {
        // If the parent is already gone there is nobody to tell.
        let _ = self.0.write_all(b"1");
    }
}

fn os_error(what: &str) -> Error {
    Error::Io {
        path: "ckptfs".into(),
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// Fork. The child leaves the terminal's session, works from `/` (so it keeps no
/// directory busy) and sends its stdout to /dev/null and its log to `log_file` (or
/// /dev/null). The parent waits until the child signals [`Ready`] or exits.
///
/// Must be called while the process has a single thread: only the calling thread
/// survives in the child.
pub fn detach(log_file: Option<&Path>) -> Result<Side> {
    // A lock held by another thread at the fork would stay locked forever in the child.
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let threads = tasks.count();
        if threads > 1 {
            return Err(Error::Usage(format!(
                "cannot go into the background safely: {threads} threads are running (use -f)"
            )));
        }
    }
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| Error::Io {
            path: "/dev/null".into(),
            what: "cannot open".into(),
            source,
        })?;
    // Opened before the fork so that a bad path is reported on the terminal.
    let log = match log_file {
        Some(p) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|source| Error::Io {
                path: p.into(),
                what: "cannot open the log file".into(),
                source,
            })?,
        None => null.try_clone().map_err(|source| Error::Io {
            path: "/dev/null".into(),
            what: "dup".into(),
            source,
        })?,
    };
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_error("cannot create a pipe"));
    }
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    match unsafe { libc::fork() } {
        -1 => Err(os_error("cannot fork")),
        0 => {
            drop(read_end);
            unsafe {
                libc::setsid();
                libc::dup2(null.as_raw_fd(), 0);
                libc::dup2(null.as_raw_fd(), 1);
                libc::dup2(log.as_raw_fd(), 2);
            }
            let _ = std::env::set_current_dir("/");
            Ok(Side::Child(Ready(File::from(write_end))))
        }
        _child => {
            drop(write_end);
            let mut byte = [0u8; 1];
            let mut pipe = File::from(read_end);
            loop {
                match pipe.read(&mut byte) {
                    Ok(1) => return Ok(Side::Parent),
                    Ok(_) => {
                        let hint = match log_file {
                            Some(p) => format!("see {}", p.display()),
                            None => "run with -f to see why".into(),
                        };
                        return Err(Error::Usage(format!(
                            "the background process ended before serving ({hint})"
                        )));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(Error::Io {
                            path: "ckptfs".into(),
                            what: "waiting for the mount".into(),
                            source,
                        })
                    }
                }
            }
        }
    }
}
