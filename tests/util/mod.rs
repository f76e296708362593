//! Helpers for tests that drive the `ckptfs` binary (after ripgrep's tests/util.rs).
#![allow(dead_code)]

pub mod ntfs3g;

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panic with both streams unless the command succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "ckptfs failed:\nstderr: {}\nstdout: {}",
            self.stderr,
            self.stdout_str()
        );
        self
    }

    /// Panic unless the command failed cleanly: exit 1, one `ckptfs:` line, no panic.
    pub fn failed(self) -> Self {
        assert_eq!(
            self.code,
            Some(1),
            "expected failure, got {:?}\nstderr: {}",
            self.code,
            self.stderr
        );
        assert!(self.stderr.starts_with("ckptfs: "), "stderr: {}", self.stderr);
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{}",
            self.stderr
        );
        self
    }
}

pub fn ckptfs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_ckptfs"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ckptfs");
    Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether `tool` is on PATH. CI sets CKPTFS_REQUIRE_TOOLS=1 so a missing tool fails
/// the test there instead of skipping it.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() {
            panic!("{tool} is required (CKPTFS_REQUIRE_TOOLS is set) but not installed");
        }
        skip(format!("{tool} is not installed"));
    }
    found
}

/// Whether FUSE mounts can be made here (root and /dev/fuse). CI sets
/// CKPTFS_REQUIRE_TOOLS=1, and then a machine that cannot fails the test instead.
pub fn can_fuse_mount() -> bool {
    let why = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("mounting needs root here")
    } else {
        None
    };
    match why {
        Some(why) => {
            assert!(std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_none(), "{why}");
            skip(why);
            false
        }
        None => true,
    }
}

pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Say that the running test skips (it then passes without checking anything), so that
/// the skip is seen: a line `SKIPPED: <test>: <reason>` on the real stderr, which
/// libtest does not capture (cargo test shows it even for a passing test; nextest
/// shows it with `--success-output immediate`), and the same line without the prefix
/// appended to the file `CKPTFS_SKIP_LOG` names, if set (scripts/test.sh sets it and
/// prints the skips at the end).
pub fn skip(reason: impl AsRef<str>) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("(a test)")
        .to_string();
    let line = format!("{test}: {}\n", reason.as_ref());
    // Not eprintln!, which the test harness captures.
    let _ = std::io::stderr().write_all(format!("SKIPPED: {line}").as_bytes());
    if let Some(log) = std::env::var_os("CKPTFS_SKIP_LOG") {
        // One write per line: appends from parallel tests do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// `../shared/samples`, the real-product images, if this checkout has them
/// (`CKPTFS_SAMPLES_DIR` names another place). Absent, the test skips visibly (see
/// [`skip`]), or fails if `CKPTFS_REQUIRE_SAMPLES` is set. `CKPTFS_REQUIRE_TOOLS`
/// (which CI sets) does not require them: they are not part of a clean checkout.
pub fn samples_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CKPTFS_SAMPLES_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CKPTFS_REQUIRE_SAMPLES").is_some() {
        panic!("{} is absent (CKPTFS_REQUIRE_SAMPLES is set)", dir.display());
    }
    skip(format!("{} is absent", dir.display()));
    None
}

/// Decompress a gzip sample into `dir`.
pub fn gunzip_sample(sample: &Path, dir: &Path) -> PathBuf {
    let name = sample.file_stem().unwrap();
    let out = dir.join(name);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc '{}' > '{}'", sample.display(), out.display()))
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// First differing offset of two byte strings, for readable failures.
pub fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length differs");
    if let Some(i) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at offset {i:#x}: got {:02x?}, expected {:02x?}",
            &actual[i..(i + 16).min(actual.len())],
            &expected[i..(i + 16).min(expected.len())]
        );
    }
}
