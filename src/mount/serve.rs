//! Serving a mounted session until it ends: by an unmount from outside (`umount`,
//! `ckptfs umount`), or by SIGINT/SIGTERM/SIGHUP, which unmount first so that no dead
//! mount ("Transport endpoint is not connected") is left behind.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use fuser::{Session, SessionUnmounter};

use super::daemon::Ready;
use super::fuse::CkptFs;
use crate::{Error, Result};

/// Sent by the session thread to the main thread when the session has ended.
const WAKE: libc::c_int = libc::SIGUSR1;

/// The signals the main thread waits for. Blocked in every thread (the mask is
/// inherited by threads created later), so they are only ever taken by `sigwait`,
/// never by a handler interrupting a thread in the middle of a request.
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    fn block() -> Result<Self> {
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, WAKE] {
                libc::sigaddset(&mut set, s);
            }
            // A signal ignored by disposition is discarded, not left pending for
            // sigwait: undo what a shell does for `&` jobs. SIGHUP keeps its
            // disposition, so `nohup` still means what it says.
            for s in [libc::SIGINT, libc::SIGTERM, WAKE] {
                libc::signal(s, libc::SIG_DFL);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(Error::Io {
                    path: "ckptfs".into(),
                    what: "cannot block signals".into(),
                    source: std::io::Error::from_raw_os_error(rc),
                });
            }
            Ok(Signals { set })
        }
    }

    fn wait(&self) -> libc::c_int {
        let mut sig = 0;
        // sigwait fails only for an invalid set.
        unsafe { libc::sigwait(&self.set, &mut sig) };
        sig
    }
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Serve `session` (already mounted at `mountpoint`) on its threads until it ends.
/// `ready` is told once requests are being served.
pub fn serve(mut session: Session<CkptFs>, mountpoint: &Path, ready: Option<Ready>) -> Result<()> {
    // Before any thread exists, so that all of them inherit the mask.
    let signals = Signals::block()?;
    let mut unmounter = session.unmount_callable();
    // Set before the wake-up is sent: the thread itself is still finishing when the
    // main thread wakes.
    let ended = Arc::new(AtomicBool::new(false));
    let ended_in_runner = ended.clone();
    let runner = thread::Builder::new()
        .name("session".into())
        .spawn(move || {
            let result = session.run();
            ended_in_runner.store(true, Ordering::SeqCst);
            unsafe { libc::kill(libc::getpid(), WAKE) };
            result
        })
        .map_err(|source| Error::Io {
            path: mountpoint.into(),
            what: "cannot start serving".into(),
            source,
        })?;
    super::transport::raise_readahead(mountpoint);
    log::info!("{}: mounted", mountpoint.display());
    if let Some(ready) = ready {
        ready.signal();
    }

    let mut stopping = false;
    loop {
        let sig = signals.wait();
        if ended.load(Ordering::SeqCst) {
            break;
        }
        if sig == WAKE {
            continue;
        }
        if stopping {
            // The mount was detached already; whoever still has files open there gets
            // errors from now on, but nothing stale is left in the mount table.
            log::warn!(
                "{}: {}, stopping without waiting for open files",
                mountpoint.display(),
                signal_name(sig)
            );
            std::process::exit(1);
        }
        stopping = true;
        log::info!("{}: {}, unmounting", mountpoint.display(), signal_name(sig));
        unmount(&mut unmounter, mountpoint);
    }
    match runner.join() {
        Ok(Ok(())) => {
            log::info!("{}: unmounted", mountpoint.display());
            Ok(())
        }
        Ok(Err(source)) => Err(Error::Io {
            path: mountpoint.into(),
            what: "serving failed".into(),
            source,
        }),
        Err(_) => Err(Error::Usage(format!(
            "{}: the session thread panicked",
            mountpoint.display()
        ))),
    }
}

/// Unmount; a busy mount (a shell's working directory, an open file) is detached
/// instead: it leaves the directory tree at once, and the session ends when the last
/// user lets go.
fn unmount(unmounter: &mut SessionUnmounter, mountpoint: &Path) {
    match unmounter.unmount() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            log::warn!(
                "{}: busy; detached, the files still open are served until closed",
                mountpoint.display()
            );
            if let Err(e) = detach(mountpoint) {
                log::warn!("{}: cannot detach: {e}", mountpoint.display());
            }
        }
        Err(e) => log::warn!("{}: cannot unmount: {e}", mountpoint.display()),
    }
}

fn detach(mountpoint: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())?;
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
