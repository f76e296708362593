//! The mount, for real: chains of checkpoints whose guest filesystems were made and
//! filled by the kernel (ext4) and mtools (FAT), mounted with `ckptfs mount`, walked,
//! written to, signalled and read by many processes at once.
//!
//! Needs root (loop devices, kernel mounts) and /dev/fuse; skipped with a message
//! without them, unless CKPTFS_REQUIRE_TOOLS is set.

mod fswalk;
mod support;
mod util;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, FileTimes};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, UNIX_EPOCH};

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use sha2::{Digest, Sha256};
use support::vhdx_writer::ChainBuilder;
use util::{ckptfs, have_tool, pseudo_random, run};

const MIB: u64 = 1 << 20;
const DISK_SIZE: u64 = 96 * MIB;
/// (offset, size): partition 1 is ext4 labelled "data", partition 2 FAT labelled "FATVOL".
const P1: (u64, u64) = (MIB, 72 * MIB);
const P2: (u64, u64) = (73 * MIB, 22 * MIB);
const EXT_DIR: &str = "p1_data";
/// The FAT volume's directory; without its label while no FAT reader opens it.
const FAT_DIRS: [&str; 2] = ["p2_FATVOL", "p2"];
/// Files read in parallel.
const PARALLEL: usize = 16;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ckptfs")
}

/// Root (loop devices, kernel mounts), /dev/fuse and the tools that make the fixtures.
fn can_mount() -> bool {
    for tool in [
        "sfdisk",
        "losetup",
        "mount",
        "umount",
        "mkfs.ext4",
        "mkfs.vfat",
        "mcopy",
        "qemu-img",
    ] {
        if !have_tool(tool) {
            return false;
        }
    }
    let missing = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("these tests need root for loop devices and kernel mounts")
    } else {
        None
    };
    match missing {
        Some(why) if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() => {
            panic!("{why} (CKPTFS_REQUIRE_TOOLS is set)")
        }
        Some(why) => {
            util::skip(why);
            false
        }
        None => true,
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> String {
    let mut h = Sha256::new();
    let mut f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the kernel has a mount at `path` (canonical).
fn is_mounted(path: &Path) -> bool {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m) == path))
}

fn mount_line(path: &Path) -> Option<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .find(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m) == path))
        .map(str::to_string)
}

/// Whether process `pid` is still running (a zombie waiting for init does not count).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The background `ckptfs mount` process serving `mountpoint`.
fn find_daemon(mountpoint: &Path) -> Option<u32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
        let ours = args
            .first()
            .is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)) == Path::new(bin()));
        if ours
            && args.contains(&b"mount".as_slice())
            && args.last() == Some(&mountpoint.as_os_str().as_bytes())
            && alive(pid)
        {
            return Some(pid);
        }
    }
    None
}

fn kill(pid: u32, sig: libc::c_int) {
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill {pid}");
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A loop device over part of a file, detached even if the test fails.
struct Loop(String);

impl Loop {
    fn attach(file: &Path, (offset, size): (u64, u64), read_only: bool) -> Loop {
        let mut cmd = Command::new("losetup");
        cmd.args([
            "-f",
            "--show",
            "-o",
            &offset.to_string(),
            "--sizelimit",
            &size.to_string(),
        ]);
        if read_only {
            cmd.arg("-r");
        }
        let out = cmd.arg(file).output().unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A kernel mount of one partition of a raw disk, unmounted even if the test fails.
struct KernelMount {
    dir: tempfile::TempDir,
    _dev: Loop,
}

impl KernelMount {
    fn new(raw: &Path, part: (u64, u64), read_only: bool) -> Self {
        let dev = Loop::attach(raw, part, read_only);
        let dir = tempfile::tempdir().unwrap();
        let opts = if read_only { "ro" } else { "rw" };
        run("mount", &["-o", opts, &dev.0, dir.path().to_str().unwrap()]);
        KernelMount { dir, _dev: dev }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl KernelMount {
    /// Unmount, which must succeed: what was written must be on the raw disk.
    fn finish(mut self) {
        assert!(self.unmount(), "cannot unmount {}", self.dir.path().display());
    }

    /// A child that another test thread has forked but not yet exec'd may hold a
    /// descriptor inside the mount for a moment (EBUSY): retry for a while.
    fn unmount(&mut self) -> bool {
        let path = cstr(self.dir.path());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if unsafe { libc::umount(path.as_ptr()) } == 0 {
                return true;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if is_mounted(self.dir.path()) && !self.unmount() {
            unsafe { libc::umount2(cstr(self.dir.path()).as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A `ckptfs mount`, unmounted (and its process ended) even if the test fails.
struct CkptMount {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// The foreground process, for `-f` mounts.
    child: Option<Child>,
}

impl CkptMount {
    /// `ckptfs mount [args] IMAGE MOUNTPOINT`, which returns once the mount is ready.
    fn background(image: &Path, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        let mut all: Vec<&std::ffi::OsStr> = vec!["mount".as_ref()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        all.extend([image.as_os_str(), path.as_os_str()]);
        ckptfs(&all).ok();
        // No waiting: the mount must be there when the command returns.
        assert!(is_mounted(&path), "ckptfs mount returned before the mount was there");
        CkptMount {
            _dir: dir,
            path,
            child: None,
        }
    }

    /// `ckptfs mount -f IMAGE MOUNTPOINT`, left running.
    fn foreground(image: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        let child = Command::new(bin())
            .args(["mount", "-f"])
            .arg(image)
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = CkptMount {
            _dir: dir,
            path,
            child: Some(child),
        };
        wait_until("the foreground mount", Duration::from_secs(20), || is_mounted(&m.path));
        assert!(m.child.as_mut().unwrap().try_wait().unwrap().is_none());
        m
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn daemon(&self) -> u32 {
        find_daemon(&self.path).expect("the background process serving the mount")
    }
}

impl Drop for CkptMount {
    fn drop(&mut self) {
        let daemon = find_daemon(&self.path);
        if is_mounted(&self.path) {
            unsafe { libc::umount2(cstr(&self.path).as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        } else if let Some(pid) = daemon {
            let start = Instant::now();
            while alive(pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// What to put in the fixture.
#[derive(Clone, Copy)]
struct Spec {
    /// Checkpoint states, 1 to 3.
    states: usize,
    /// Large files for the parallel readers.
    big_files: bool,
}

/// A checkpoint chain whose state `i` is the raw disk `raws[i]`: an MBR with an ext4
/// partition (changed from state to state) and a FAT one.
struct Fixture {
    dir: tempfile::TempDir,
    raws: Vec<PathBuf>,
    /// The file holding each state, base first.
    files: Vec<PathBuf>,
    /// What the FAT volume holds, as copied in by mtools.
    fat_source: PathBuf,
}

fn big_file(i: usize) -> Vec<u8> {
    pseudo_random(1000 + i as u64, 64 * 1024 * (i + 1) + 123)
}

fn state1(root: &Path, spec: Spec) {
    let p = |rel: &str| root.join(rel);
    fs::create_dir_all(p("dir/sub/deeper")).unwrap();
    fs::create_dir(p("dir/many")).unwrap();
    fs::write(p("empty"), b"").unwrap();
    fs::write(p("small.txt"), b"hello from the guest\n").unwrap();
    fs::write(p("changing.txt"), b"version 1\n").unwrap();
    fs::write(p("removed-in-2.txt"), b"only in the first state\n").unwrap();
    fs::write(p("dir/random.bin"), pseudo_random(1, 3 << 20)).unwrap();
    fs::write(p("dir/sub/odd-size"), pseudo_random(2, 123_457)).unwrap();
    fs::write(p("dir/sub/deeper/caf\u{e9} \u{65e5}\u{672c}.txt"), b"unicode name\n").unwrap();
    std::os::unix::fs::symlink("small.txt", p("short-link")).unwrap();
    std::os::unix::fs::symlink("dir/sub/".to_string() + &"x".repeat(100), p("long-link")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", p("dangling")).unwrap();
    fs::hard_link(p("small.txt"), p("dir/hardlink.txt")).unwrap();
    // A hole, data, a hole to the end: `du` must see the kernel's block count.
    let sparse = File::create(p("sparse")).unwrap();
    sparse.set_len(10 << 20).unwrap();
    sparse.write_all_at(&pseudo_random(3, 12288), 600 * 4096).unwrap();
    // Several reads of readdir: offsets must carry on where the last one stopped.
    for i in 0..600 {
        fs::write(p(&format!("dir/many/file-{i:04}")), format!("{i}\n")).unwrap();
    }
    if spec.big_files {
        fs::create_dir(p("par")).unwrap();
        for i in 0..PARALLEL {
            fs::write(p(&format!("par/file-{i:02}")), big_file(i)).unwrap();
        }
        fs::write(p("big.bin"), pseudo_random(7, 24 << 20)).unwrap();
    }
}

fn state2(root: &Path) {
    fs::write(root.join("changing.txt"), b"version 2: a little longer\n").unwrap();
    fs::write(root.join("added-in-2.txt"), b"new in the second state\n").unwrap();
    fs::remove_file(root.join("removed-in-2.txt")).unwrap();
    let f = File::options().write(true).open(root.join("dir/random.bin")).unwrap();
    f.write_all_at(&pseudo_random(4, 1 << 20), 1 << 20).unwrap();
}

fn state3(root: &Path) {
    fs::write(root.join("changing.txt"), b"v3\n").unwrap();
    fs::create_dir(root.join("new-dir")).unwrap();
    fs::write(root.join("new-dir/inside.txt"), b"third state\n").unwrap();
    fs::remove_file(root.join("dir/sub/odd-size")).unwrap();
}

/// Sector-aligned `(offset, bytes)` runs where `new` differs from `old` (or, without
/// `old`, is not zero), in 4 KiB granules.
fn changed_runs<'a>(old: Option<&[u8]>, new: &'a [u8]) -> Vec<(u64, &'a [u8])> {
    const G: usize = 4096;
    let mut runs: Vec<(u64, &[u8])> = Vec::new();
    let mut start: Option<usize> = None;
    for at in (0..=new.len()).step_by(G) {
        let changed = at < new.len()
            && match old {
                Some(o) => o[at..at + G] != new[at..at + G],
                None => new[at..at + G].iter().any(|&b| b != 0),
            };
        match (changed, start) {
            (true, None) => start = Some(at),
            (false, Some(s)) => {
                runs.push((s as u64, &new[s..at]));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

impl Fixture {
    fn new(spec: Spec) -> Self {
        assert!((1..=3).contains(&spec.states));
        let dir = tempfile::tempdir().unwrap();
        let raw_dir = dir.path().join("raw");
        let vhdx_dir = dir.path().join("vhdx");
        let fat_source = dir.path().join("fat-source");
        fs::create_dir_all(&raw_dir).unwrap();
        fs::create_dir_all(&vhdx_dir).unwrap();

        // State 1: partition, make both filesystems, fill them.
        let raw1 = raw_dir.join("state1.raw");
        File::create(&raw1).unwrap().set_len(DISK_SIZE).unwrap();
        let script = format!(
            "label: dos\nstart={}, size={}, type=83\nstart={}, size={}, type=c\n",
            P1.0 / 512,
            P1.1 / 512,
            P2.0 / 512,
            P2.1 / 512
        );
        let mut sfdisk = Command::new("sfdisk")
            .arg("--quiet")
            .arg(&raw1)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        sfdisk.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = sfdisk.wait_with_output().unwrap();
        assert!(out.status.success(), "sfdisk: {}", String::from_utf8_lossy(&out.stderr));
        {
            let dev = Loop::attach(&raw1, P1, false);
            run("mkfs.ext4", &["-q", "-L", "data", &dev.0]);
            let dev = Loop::attach(&raw1, P2, false);
            run("mkfs.vfat", &["-n", "FATVOL", &dev.0]);
        }
        let m = KernelMount::new(&raw1, P1, false);
        state1(m.path(), spec);
        m.finish();
        Self::fill_fat(&raw1, &fat_source);

        // Later states: the previous disk, changed through the kernel.
        let mut raws = vec![raw1];
        for (i, change) in [state2 as fn(&Path), state3]
            .into_iter()
            .enumerate()
            .take(spec.states - 1)
        {
            let raw = raw_dir.join(format!("state{}.raw", i + 2));
            run(
                "cp",
                &["--sparse=always", raws[i].to_str().unwrap(), raw.to_str().unwrap()],
            );
            let m = KernelMount::new(&raw, P1, false);
            change(m.path());
            m.finish();
            raws.push(raw);
        }

        // The chain: the base holds state 1, each child what changed since its parent.
        let bytes: Vec<Vec<u8>> = raws.iter().map(|r| fs::read(r).unwrap()).collect();
        let mut chain = ChainBuilder::new(&vhdx_dir, DISK_SIZE, 512);
        let names = [
            "vm.vhdx",
            "vm_0C4A9D3E-58B1-4F0E-9D43-6A1F2B7C8E90.avhdx",
            "vm_7E21F4B8-0D6C-4A9B-B3E5-1C8D2F6A4B07.avhdx",
        ];
        let mut ids = vec![chain.base(names[0], 2 << 20, false, |e| {
            for (at, run) in changed_runs(None, &bytes[0]) {
                e.write(at, run);
            }
        })];
        for i in 1..bytes.len() {
            let id = chain.child(ids[i - 1], names[i], 1 << 20, |e| {
                for (at, run) in changed_runs(Some(&bytes[i - 1]), &bytes[i]) {
                    e.write(at, run);
                }
            });
            ids.push(id);
        }
        let files = ids.iter().map(|id| chain.path(id).canonicalize().unwrap()).collect();
        Fixture {
            dir,
            raws,
            files,
            fat_source,
        }
    }

    /// Copy a small tree into the FAT partition with mtools, times preserved (even
    /// seconds: FAT keeps two-second steps).
    fn fill_fat(raw: &Path, source: &Path) {
        fs::create_dir_all(source.join("Sub Folder")).unwrap();
        let files: [(&str, Vec<u8>); 3] = [
            ("Read Me.txt", b"a FAT volume beside the ext4 one\r\n".to_vec()),
            ("Sub Folder/Report 2024.txt", b"quarterly numbers\r\n".to_vec()),
            ("Sub Folder/Large Data.bin", pseudo_random(20, 700_001)),
        ];
        for (i, (name, data)) in files.iter().enumerate() {
            let path = source.join(name);
            fs::write(&path, data).unwrap();
            let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 3600 * i as u64);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_times(FileTimes::new().set_modified(t))
                .unwrap();
        }
        let image = format!("{}@@{}", raw.display(), P2.0);
        let status = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC")
            .args(["-s", "-m", "-i", &image])
            .arg(source.join("Read Me.txt"))
            .arg(source.join("Sub Folder"))
            .arg("::/")
            .status()
            .unwrap();
        assert!(status.success(), "mcopy");
    }

    /// Any file of the tree.
    fn image(&self) -> &Path {
        self.files.last().unwrap()
    }

    /// The checkpoint name of each state, base first.
    fn names(&self) -> Vec<String> {
        let tree = CheckpointTree::discover(self.image(), &DiscoverOptions::default()).unwrap();
        self.files
            .iter()
            .map(|f| {
                tree.checkpoints
                    .iter()
                    .find(|c| &c.path == f)
                    .expect("file in the tree")
                    .name
                    .clone()
            })
            .collect()
    }

    /// sha256 of every image file of the tree.
    fn image_hashes(&self) -> BTreeMap<PathBuf, String> {
        self.files.iter().map(|f| (f.clone(), sha256_file(f))).collect()
    }

    /// The kernel's walk of state `i`'s ext4 volume.
    fn expected_ext(&self, i: usize) -> fswalk::Walk {
        let m = KernelMount::new(&self.raws[i], P1, true);
        fswalk::walk_host(m.path(), &[])
    }

    /// A single-state VHDX of state `i` written by qemu-img.
    fn qemu_vhdx(&self, i: usize) -> PathBuf {
        let dir = self.dir.path().join("qemu");
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("qemu.vhdx");
        run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "vhdx",
                self.raws[i].to_str().unwrap(),
                out.to_str().unwrap(),
            ],
        );
        out
    }
}

/// Directory times on the FAT volume are whenever mtools made the directory.
fn without_dir_times(mut w: fswalk::Walk) -> fswalk::Walk {
    for node in w.values_mut().filter(|n| n.kind == 'd') {
        node.mtime = (0, 0);
    }
    w
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn libc_errno(rc: libc::c_int) -> Option<i32> {
    (rc != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
}

#[test]
fn every_checkpoint_of_a_chain_reads_as_the_kernel_reads_its_state() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 3,
        big_files: false,
    });
    let names = fx.names();
    let m = CkptMount::background(fx.image(), &[]);
    let line = mount_line(m.path()).unwrap();
    assert!(line.contains(" - fuse.ckptfs ") && line.contains(" ro,"), "{line}");

    let mut listed: Vec<String> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "the root lists one directory per checkpoint");

    for (i, name) in names.iter().enumerate() {
        let ckpt = m.path().join(name);
        let mut inside: Vec<String> = fs::read_dir(&ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        inside.sort();
        assert_eq!(inside.len(), 3, "{name}: {inside:?}");
        assert_eq!(inside[..2], ["disk.img", EXT_DIR], "{name}");
        let fat_dir = inside[2].as_str();
        assert!(FAT_DIRS.contains(&fat_dir), "{name}: {inside:?}");

        // The whole disk, byte for byte.
        assert_eq!(
            sha256_file(&ckpt.join("disk.img")),
            sha256_file(&fx.raws[i]),
            "{name}/disk.img"
        );

        // The ext4 volume: names, kinds, sizes, bytes, link targets, times.
        let vol = ckpt.join(EXT_DIR);
        let expected = fx.expected_ext(i);
        fswalk::assert_same_walk(&fswalk::walk_host(&vol, &[]), &expected, &format!("{name}/{EXT_DIR}"));
        let changing = fs::read_to_string(vol.join("changing.txt")).unwrap();
        assert_eq!(
            changing,
            ["version 1\n", "version 2: a little longer\n", "v3\n"][i],
            "{name}"
        );

        // Hard links share an inode number and count their links; du sees real blocks.
        let small = fs::metadata(vol.join("small.txt")).unwrap();
        let link = fs::metadata(vol.join("dir/hardlink.txt")).unwrap();
        assert_eq!((small.ino(), small.nlink()), (link.ino(), 2), "{name}: hard link");
        let kernel = KernelMount::new(&fx.raws[i], P1, true);
        let sparse = fs::metadata(vol.join("sparse")).unwrap();
        assert_eq!(
            sparse.blocks(),
            fs::metadata(kernel.path().join("sparse")).unwrap().blocks(),
            "{name}: st_blocks"
        );
        drop(kernel);

        // The FAT volume, once a FAT reader exists; until then its directory fails with
        // EIO while everything else stays readable.
        match fs::read_dir(ckpt.join(fat_dir)) {
            Ok(_) => fswalk::assert_same_walk(
                &without_dir_times(fswalk::walk_host(&ckpt.join(fat_dir), &[])),
                &without_dir_times(fswalk::walk_host(&fx.fat_source, &[])),
                &format!("{name}/{fat_dir}"),
            ),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}/{fat_dir}: {e}");
                eprintln!("note: {name}/{fat_dir} is not readable (no FAT reader yet): EIO as required");
            }
        }
    }

    // `.` and `..` are listed, as on any filesystem.
    let ls = Command::new("ls")
        .arg("-a")
        .arg(m.path().join(&names[0]).join(EXT_DIR))
        .output()
        .unwrap();
    let ls = String::from_utf8(ls.stdout).unwrap();
    assert!(ls.lines().take(2).eq([".", ".."]), "{ls}");

    // statfs reports the guest filesystem.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let vol = cstr(&m.path().join(&names[0]).join(EXT_DIR));
    assert_eq!(unsafe { libc::statvfs(vol.as_ptr(), &mut st) }, 0);
    assert!(st.f_blocks > 0 && st.f_bsize > 0 && st.f_namemax == 255, "statvfs");
    assert_ne!(st.f_flag & libc::ST_RDONLY, 0, "statvfs says read-only");

    ckptfs(["umount".as_ref(), m.path().as_os_str()]).ok();
    assert!(!is_mounted(m.path()));
}

#[test]
fn a_qemu_img_vhdx_mounts_as_one_checkpoint() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    let image = fx.qemu_vhdx(0);
    let m = CkptMount::background(&image, &[]);
    let names: Vec<_> = fs::read_dir(m.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(sha256_file(&names[0].join("disk.img")), sha256_file(&fx.raws[0]));
    fswalk::assert_same_walk(
        &fswalk::walk_host(&names[0].join(EXT_DIR), &[]),
        &fx.expected_ext(0),
        "qemu-img VHDX",
    );
}

#[test]
fn every_write_is_refused_with_erofs_and_the_images_stay_untouched() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 2,
        big_files: false,
    });
    let before = fx.image_hashes();
    {
        let m = CkptMount::background(fx.image(), &[]);
        let ckpt = m.path().join(&fx.names()[1]);
        let vol = ckpt.join(EXT_DIR);
        let file = vol.join("small.txt");
        let dir = vol.join("dir");
        let rofs = Some(libc::EROFS);

        // Through the standard library, for the exact errno.
        for place in [m.path(), ckpt.as_path(), vol.as_path()] {
            assert_eq!(
                errno(File::create(place.join("new-file"))),
                rofs,
                "create in {}",
                place.display()
            );
            assert_eq!(
                errno(fs::create_dir(place.join("new-dir"))),
                rofs,
                "mkdir in {}",
                place.display()
            );
        }
        for target in [&file, &ckpt.join("disk.img")] {
            assert_eq!(
                errno(File::options().write(true).open(target)),
                rofs,
                "open for writing"
            );
            assert_eq!(
                errno(File::options().read(true).write(true).open(target)),
                rofs,
                "open read-write"
            );
            assert_eq!(
                errno(File::options().append(true).open(target)),
                rofs,
                "open for appending"
            );
            assert_eq!(errno(fs::remove_file(target)), rofs, "unlink");
            let perm = fs::Permissions::from_mode(0o777);
            assert_eq!(errno(fs::set_permissions(target, perm)), rofs, "chmod");
        }
        assert_eq!(errno(fs::remove_dir(vol.join("dir/sub/deeper"))), rofs, "rmdir");
        assert_eq!(errno(fs::remove_dir(&ckpt)), rofs, "rmdir of a checkpoint");
        assert_eq!(errno(fs::rename(&file, vol.join("renamed"))), rofs, "rename");
        assert_eq!(
            errno(fs::rename(&file, dir.join("moved"))),
            rofs,
            "rename to another directory"
        );
        assert_eq!(
            errno(std::os::unix::fs::symlink("x", vol.join("new-link"))),
            rofs,
            "symlink"
        );
        assert_eq!(errno(fs::hard_link(&file, vol.join("new-hard-link"))), rofs, "link");
        let f = cstr(&file);
        assert_eq!(libc_errno(unsafe { libc::truncate(f.as_ptr(), 0) }), rofs, "truncate");
        assert_eq!(libc_errno(unsafe { libc::chown(f.as_ptr(), 1, 1) }), rofs, "chown");
        assert_eq!(
            libc_errno(unsafe { libc::utimensat(libc::AT_FDCWD, f.as_ptr(), std::ptr::null(), 0) }),
            rofs,
            "touch"
        );
        let fifo = cstr(&vol.join("fifo"));
        assert_eq!(
            libc_errno(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }),
            rofs,
            "mkfifo"
        );
        let name = CString::new("user.test").unwrap();
        let set = unsafe { libc::setxattr(f.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(libc_errno(set), rofs, "setxattr");
        assert_eq!(
            libc_errno(unsafe { libc::removexattr(f.as_ptr(), name.as_ptr()) }),
            rofs,
            "removexattr"
        );
        assert_eq!(
            libc_errno(unsafe { libc::access(f.as_ptr(), libc::W_OK) }),
            rofs,
            "access(W_OK)"
        );
        assert_eq!(
            libc_errno(unsafe { libc::access(f.as_ptr(), libc::R_OK) }),
            None,
            "access(R_OK)"
        );

        // No extended attributes yet: none listed, none found.
        let mut buf = [0u8; 64];
        let n = unsafe { libc::listxattr(f.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, 0, "listxattr");
        let n = unsafe { libc::getxattr(f.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(
            (n, std::io::Error::last_os_error().raw_os_error()),
            (-1, Some(libc::ENODATA)),
            "getxattr"
        );

        // And as users meet it, through the usual commands.
        let (file, dir) = (file.display(), dir.display());
        for cmd in [
            format!("echo data > '{file}'"),
            format!("touch '{file}'"),
            format!("touch '{dir}/new'"),
            format!("mkdir '{dir}/new'"),
            format!("rm -f '{file}'"),
            format!("rm -rf '{dir}'"),
            format!("mv '{file}' '{dir}/'"),
            format!("chmod 777 '{file}'"),
            format!("truncate -s 0 '{file}'"),
            format!("setfattr -n user.x -v 1 '{file}'"),
            format!("ln -s x '{dir}/l'"),
        ] {
            let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("Read-only file system"),
                "{cmd}: {stderr}"
            );
        }
        // Everything is still there.
        assert_eq!(fs::read(vol.join("small.txt")).unwrap(), b"hello from the guest\n");
    }
    assert_eq!(
        fx.image_hashes(),
        before,
        "the image files changed during a mount session"
    );
}

#[test]
fn sigterm_to_the_daemon_unmounts_cleanly() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    let name = &fx.names()[0];

    let m = CkptMount::background(fx.image(), &[]);
    fs::read_dir(m.path().join(name).join(EXT_DIR)).unwrap();
    let pid = m.daemon();
    kill(pid, libc::SIGTERM);
    wait_until("the daemon to exit", Duration::from_secs(10), || !alive(pid));
    assert!(!is_mounted(m.path()), "a mount was left behind");
    // Not "Transport endpoint is not connected": the plain, empty directory.
    assert_eq!(fs::read_dir(m.path()).unwrap().count(), 0);

    // Busy (a file open under it): detached at once, the open file still reads, and the
    // daemon leaves when it is closed.
    let m = CkptMount::background(fx.image(), &[]);
    let mut open = File::open(m.path().join(name).join(EXT_DIR).join("dir/random.bin")).unwrap();
    let pid = m.daemon();
    kill(pid, libc::SIGTERM);
    wait_until("the busy mount to be detached", Duration::from_secs(10), || {
        !is_mounted(m.path())
    });
    let mut bytes = Vec::new();
    open.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len(), 3 << 20);
    assert!(alive(pid), "the daemon serves the open file until it is closed");
    drop(open);
    wait_until("the daemon to exit", Duration::from_secs(10), || !alive(pid));
}

#[test]
fn ctrl_c_on_a_foreground_mount_unmounts_cleanly() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    let mut m = CkptMount::foreground(fx.image());
    let name = &fx.names()[0];
    assert_eq!(
        fs::read(m.path().join(name).join(EXT_DIR).join("small.txt")).unwrap(),
        b"hello from the guest\n"
    );
    let mut child = m.child.take().unwrap();
    kill(child.id(), libc::SIGINT);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ckptfs mount -f did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!is_mounted(m.path()), "a mount was left behind");
    assert_eq!(fs::read_dir(m.path()).unwrap().count(), 0);
}

#[test]
fn ckptfs_umount_and_plain_umount_end_the_mount() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    for how in ["ckptfs umount", "umount"] {
        let m = CkptMount::background(fx.image(), &[]);
        let pid = m.daemon();
        if how == "umount" {
            run("umount", &[m.path().to_str().unwrap()]);
        } else {
            ckptfs(["umount".as_ref(), m.path().as_os_str()]).ok();
        }
        assert!(!is_mounted(m.path()), "{how}");
        wait_until("the daemon to exit", Duration::from_secs(10), || !alive(pid));
        // Nothing mounted there any more: a one-line refusal.
        let out = ckptfs(["umount".as_ref(), m.path().as_os_str()]).failed();
        assert!(
            out.stderr.trim_end().ends_with("not mounted") && out.stderr.lines().count() == 1,
            "{}",
            out.stderr
        );
    }
    let out = ckptfs(["umount", "/proc"]).failed();
    assert!(out.stderr.contains("not a ckptfs mount"), "{}", out.stderr);
}

#[test]
fn mount_options_reach_the_kernel_and_bad_ones_are_refused() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    let file = Path::new(&fx.names()[0]).join(EXT_DIR).join("small.txt");
    let as_nobody = |path: &Path| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(path)
            .output()
            .unwrap()
    };
    {
        let m = CkptMount::background(fx.image(), &["-o", "ro,allow_other", "-o", "default_permissions"]);
        let line = mount_line(m.path()).unwrap();
        assert!(
            line.contains("allow_other") && line.contains("default_permissions"),
            "{line}"
        );
        if have_tool("setpriv") {
            let out = as_nobody(&m.path().join(&file));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    {
        let m = CkptMount::background(fx.image(), &[]);
        if have_tool("setpriv") {
            let out = as_nobody(&m.path().join(&file));
            assert!(!out.status.success(), "without allow_other, other users are kept out");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for bad in [["-o", "rw"], ["-o", "bogus"], ["--cache-size", "lots"]] {
        let mut args = vec!["mount".as_ref()];
        args.extend(bad.iter().map(std::ffi::OsStr::new));
        args.extend([fx.image().as_os_str(), dir.path().as_os_str()]);
        let out = Command::new(bin()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
        assert!(!is_mounted(&dir.path().canonicalize().unwrap()), "{bad:?}");
    }
}

#[test]
fn parallel_readers_get_the_right_bytes() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: true,
    });
    let m = CkptMount::background(fx.image(), &[]);
    let vol = m.path().join(&fx.names()[0]).join(EXT_DIR);
    let big_sha = hex(&Sha256::digest(pseudo_random(7, 24 << 20)));

    // Each job: a command and the sha256 its output must have.
    let mut jobs: Vec<(Vec<String>, String)> = Vec::new();
    for i in 0..PARALLEL {
        let path = vol.join(format!("par/file-{i:02}")).display().to_string();
        jobs.push((vec!["cat".into(), path], hex(&Sha256::digest(big_file(i)))));
    }
    let big = vol.join("big.bin").display().to_string();
    for _ in 0..PARALLEL {
        jobs.push((vec!["cat".into(), big.clone()], big_sha.clone()));
    }
    // O_DIRECT bypasses the page cache: every reader's requests reach ckptfs.
    for _ in 0..PARALLEL {
        let args = ["dd", &format!("if={big}"), "bs=1M", "iflag=direct", "status=none"];
        jobs.push((args.iter().map(|s| s.to_string()).collect(), big_sha.clone()));
    }
    for batch in jobs.chunks(PARALLEL) {
        let start = Arc::new(Barrier::new(batch.len()));
        let threads: Vec<_> = batch
            .iter()
            .cloned()
            .map(|(cmd, want)| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let out = Command::new(&cmd[0]).args(&cmd[1..]).output().unwrap();
                    assert!(
                        out.status.success(),
                        "{cmd:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert_eq!(hex(&Sha256::digest(&out.stdout)), want, "{cmd:?}");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_volume_that_fails_to_open_is_an_eio_directory_and_the_rest_reads() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    // A child state whose ext4 superblock claims an impossible block size.
    let mut raw = fs::read(&fx.raws[0]).unwrap();
    let base = fs::read(&fx.raws[0]).unwrap();
    raw[(P1.0 + 1024 + 0x18) as usize] = 0x40;
    let dir = tempfile::tempdir().unwrap();
    let mut chain = ChainBuilder::new(dir.path(), DISK_SIZE, 512);
    let b = chain.base("vm.vhdx", 2 << 20, false, |e| {
        for (at, run) in changed_runs(None, &base) {
            e.write(at, run);
        }
    });
    let c = chain.child(b, "vm_broken.avhdx", 1 << 20, |e| {
        for (at, run) in changed_runs(Some(&base), &raw) {
            e.write(at, run);
        }
    });
    let tree = CheckpointTree::discover(&chain.path(&c), &DiscoverOptions::default()).unwrap();
    let (good, bad) = (&tree.checkpoints[0].name, &tree.checkpoints[1].name);

    let log = dir.path().join("ckptfs.log");
    let m = CkptMount::background(&chain.path(&c), &["--log-file", log.to_str().unwrap()]);
    let broken = m.path().join(bad).join("p1");
    assert!(
        fs::metadata(&broken).unwrap().is_dir(),
        "a broken volume still shows as a directory"
    );
    assert_eq!(errno(fs::read_dir(&broken)), Some(libc::EIO));
    // The other checkpoint and the raw disk stay readable.
    assert_eq!(
        fs::read(m.path().join(good).join(EXT_DIR).join("small.txt")).unwrap(),
        b"hello from the guest\n"
    );
    assert_eq!(
        sha256_file(&m.path().join(bad).join("disk.img")),
        hex(&Sha256::digest(&raw))
    );
    // The reason is in the log.
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("WARN") && text.contains(&format!("{bad}/p1")),
        "log:\n{text}"
    );
}

#[test]
fn a_missing_parent_is_one_line_before_anything_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = ChainBuilder::new(dir.path(), 8 * MIB, 512);
    let base = chain.base("vm.vhdx", 1 << 20, false, |e| {
        e.write(0, &pseudo_random(1, MIB as usize))
    });
    let child = chain.child(base, "vm_child.avhdx", 1 << 20, |e| e.write(0, &pseudo_random(2, 4096)));
    fs::rename(chain.path(&base), dir.path().join("elsewhere.bin")).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let out = ckptfs(["mount".as_ref(), chain.path(&child).as_os_str(), mnt.path().as_os_str()]).failed();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("parent not found"), "{}", out.stderr);
    assert!(!is_mounted(&mnt.path().canonicalize().unwrap()));
    assert!(
        find_daemon(&mnt.path().canonicalize().unwrap()).is_none(),
        "no process was left behind"
    );
}

/// Every reply path gives the same bytes: spliced from the image files (the default,
/// where the bytes are stored plainly), copied through a buffer (`-o nosplice`, and
/// FAT files always), and either of them into the reader's buffer (`-o direct_io`),
/// where reads of odd sizes reach ckptfs as they are and cut pages at both ends.
#[test]
fn every_reply_path_reads_the_same_bytes() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 2,
        big_files: true,
    });
    let names = fx.names();
    let raw_sha: Vec<String> = fx.raws.iter().map(|r| sha256_file(r)).collect();
    let big_sha = hex(&Sha256::digest(pseudo_random(7, 24 << 20)));
    for opts in [
        &[][..],
        &["-o", "nosplice"],
        &["-o", "direct_io"],
        &["-o", "direct_io,nosplice"],
    ] {
        let m = CkptMount::background(fx.image(), opts);
        for (i, name) in names.iter().enumerate() {
            let what = format!("{opts:?} {name}");
            assert_eq!(
                sha256_file(&m.path().join(name).join("disk.img")),
                raw_sha[i],
                "{what}: disk.img"
            );
        }
        let newest = m.path().join(names.last().unwrap());
        let big = newest.join(EXT_DIR).join("big.bin");
        for bs in ["1M", "100000", "4096"] {
            let out = Command::new("dd")
                .args([&format!("if={}", big.display()), &format!("bs={bs}"), "status=none"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{opts:?} bs={bs}");
            assert_eq!(hex(&Sha256::digest(&out.stdout)), big_sha, "{opts:?} big.bin, bs={bs}");
        }
        // An odd-sized read in the middle, and one that ends at the end of the file.
        let whole = pseudo_random(7, 24 << 20);
        let mut f = File::open(&big).unwrap();
        for (at, len) in [(12_345u64, 777_777usize), ((24 << 20) - 5000, 5000)] {
            let mut b = vec![0u8; len];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, at).unwrap();
            assert!(
                b == whole[at as usize..at as usize + len],
                "{opts:?} big.bin at {at}+{len}"
            );
        }
        use std::io::Read;
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), 24 << 20, "{opts:?}");
        // FAT files take the copy path whatever the options.
        let fat_dir = fs::read_dir(&newest)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap() != EXT_DIR && p.file_name().unwrap() != "disk.img")
            .unwrap();
        let theirs = fswalk::walk_host(&fx.fat_source, &[]);
        let ours = fswalk::walk_host(&fat_dir, &[]);
        for (path, node) in &theirs {
            if node.kind == 'f' {
                assert_eq!(ours[path].content, node.content, "{opts:?} FAT {path}");
            }
        }
    }
}

/// NTFS and FAT files as Windows-style tools left them (images/windows-gpt: large and
/// sparse NTFS files, small resident ones, a FAT system partition) read the same through
/// the mount whatever the reply path: plain NTFS runs spliced, holes as zeros, resident
/// and FAT data copied; each equal to what `ckptfs cp -r` (the CLI's copy path) writes.
#[test]
fn ntfs_and_fat_volumes_read_the_same_through_every_reply_path() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/windows-gpt.tar.gz");
    run(
        "tar",
        &["-xzf", tarball.to_str().unwrap(), "-C", dir.path().to_str().unwrap()],
    );
    let image = dir.path().join("windows-gpt.vhdx");
    let names = {
        let out = ckptfs(["list", "--json", image.to_str().unwrap()]).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut reference = BTreeMap::new();
    for name in &names {
        for vol in ["p1_SYSTEM", "p3_Windows"] {
            let dest = dir.path().join(format!("copy-{name}-{vol}"));
            ckptfs([
                "cp",
                "-r",
                image.to_str().unwrap(),
                &format!("{name}/{vol}"),
                dest.to_str().unwrap(),
            ])
            .ok();
            reference.insert((name.clone(), vol), fswalk::walk_host(&dest, &[]));
        }
    }
    assert!(
        reference.values().any(|w| w.values().any(|n| n.size > 1 << 20)),
        "the image holds files of several MiB"
    );
    for opts in [&[][..], &["-o", "nosplice"], &["-o", "direct_io"]] {
        let m = CkptMount::background(&image, opts);
        for ((name, vol), expected) in &reference {
            let ours = fswalk::walk_host(&m.path().join(name).join(vol), &[]);
            fswalk::assert_same_walk(&ours, expected, &format!("{opts:?} {name}/{vol}"));
        }
    }
}

#[test]
fn umount_waits_briefly_for_files_just_closed_and_then_says_busy() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    let name = &fx.names()[0];
    let m = CkptMount::background(fx.image(), &[]);
    let file = m.path().join(name).join(EXT_DIR).join("dir/random.bin");

    // Held open throughout: busy, in one line naming the way out; still mounted.
    let open = File::open(&file).unwrap();
    let out = ckptfs(["umount".as_ref(), m.path().as_os_str()]).failed();
    assert!(
        out.stderr.contains("busy") && out.stderr.contains("--lazy"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(is_mounted(m.path()));

    // Closed a moment after umount starts (a copy finishing): the mount ends.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(open);
    });
    ckptfs(["umount".as_ref(), m.path().as_os_str()]).ok();
    closer.join().unwrap();
    assert!(!is_mounted(m.path()));
}

#[test]
fn a_mount_made_right_after_umount_stays() {
    if !can_mount() {
        return;
    }
    let fx = Fixture::new(Spec {
        states: 1,
        big_files: false,
    });
    let name = &fx.names()[0];
    let m = CkptMount::background(fx.image(), &[]);
    fs::read_dir(m.path().join(name)).unwrap();
    let old = m.daemon();
    ckptfs(["umount".as_ref(), m.path().as_os_str()]).ok();
    assert!(!alive(old), "umount returns once the serving process has exited");
    // Mount again at once on the same directory: the old session's end must not take
    // the new mount with it.
    ckptfs(["mount".as_ref(), fx.image().as_os_str(), m.path().as_os_str()]).ok();
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_mounted(m.path()), "the new mount was removed");
    fs::read_dir(m.path().join(name)).unwrap();
}
