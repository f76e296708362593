//! An ntfs-3g mount of an NTFS volume image, unmounted on drop even when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub struct Ntfs3g {
    pub dir: PathBuf,
    daemon: Child,
}

/// Whether something is mounted at `dir`.
pub fn mounted(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|l| l.split(' ').nth(1) == dir.to_str())
}

impl Ntfs3g {
    /// Mount `img` at `dir` with ntfs-3g's `options` (comma-separated, may be empty);
    /// returns once the mount is there.
    pub fn new(img: &Path, dir: &Path, options: &str) -> Ntfs3g {
        fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        // In the foreground, so that drop can wait for the daemon's last writes.
        let options = if options.is_empty() {
            "no_detach".to_string()
        } else {
            format!("no_detach,{options}")
        };
        let daemon = Command::new("ntfs-3g")
            .args(["-o", &options])
            .arg(img)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ntfs-3g");
        let mut m = Ntfs3g { dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !mounted(&m.dir) {
            if let Ok(Some(status)) = m.daemon.try_wait() {
                panic!("ntfs-3g exited ({status}) before mounting {}", img.display());
            }
            assert!(
                Instant::now() < deadline,
                "ntfs-3g did not mount {} in 20 s",
                img.display()
            );
            sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for Ntfs3g {
    fn drop(&mut self) {
        for _ in 0..100 {
            if !mounted(&self.dir)
                || Command::new("umount")
                    .arg(&self.dir)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                break;
            }
            sleep(Duration::from_millis(100));
        }
        // The daemon writes the volume's last changes after the kernel lets go.
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.daemon.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            sleep(Duration::from_millis(20));
        }
    }
}
