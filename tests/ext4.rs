//! ext2/3/4 volumes made and filled by the kernel: a walk through ckptfs's reader must
//! equal the walk of the kernel's own mount of the same bytes.

mod fswalk;
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ckptfs::fs::{ext4, GuestFs};
use ckptfs::io::ImageFile;
use util::{have_tool, pseudo_random, run};

/// A mount point that is unmounted (and its loop device freed) even if the test fails.
struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    fn new(image: &Path, options: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(
            "mount",
            &[
                "-o",
                &format!("loop,{options}"),
                image.to_str().unwrap(),
                dir.path().to_str().unwrap(),
            ],
        );
        Mounted { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn can_mount() -> bool {
    if !have_tool("mkfs.ext4") || !have_tool("mount") {
        return false;
    }
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() {
            panic!("these tests loop-mount images and need root");
        }
        util::skip("loop mounts need root");
    }
    root
}

fn sh(script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fill a mounted filesystem with every kind of node ckptfs must read right.
fn populate(root: &Path, type_name: &str) {
    let p = |rel: &str| root.join(rel);
    std::fs::create_dir_all(p("dir/sub/deeper")).unwrap();
    std::fs::write(p("empty"), b"").unwrap();
    std::fs::write(p("small.txt"), b"hello ext4\n").unwrap();
    std::fs::write(p("dir/random.bin"), pseudo_random(1, 3 << 20)).unwrap();
    std::fs::write(p("dir/sub/odd-size"), pseudo_random(2, 123_457)).unwrap();
    std::fs::write(p("dir/sub/deeper/caf\u{e9} \u{65e5}\u{672c}.txt"), b"unicode name\n").unwrap();
    std::os::unix::fs::symlink("small.txt", p("short-link")).unwrap();
    std::os::unix::fs::symlink("dir/sub/".to_string() + &"x".repeat(100), p("long-link")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", p("dangling")).unwrap();
    std::fs::hard_link(p("small.txt"), p("dir/hardlink.txt")).unwrap();
    // Sparse: a hole, then data, then a hole to the end.
    sh(&format!(
        "truncate -s 10M '{0}' && dd if=/dev/urandom of='{0}' bs=4k seek=600 count=3 conv=notrunc status=none",
        p("sparse").display()
    ));
    // Unwritten extents over blocks that held other data: the stale bytes must not show.
    std::fs::write(p("to-delete"), pseudo_random(3, 4 << 20)).unwrap();
    sh("sync");
    std::fs::remove_file(p("to-delete")).unwrap();
    if type_name == "ext4" {
        sh(&format!(
            "sync; fallocate -l 4M '{0}' && dd if=/dev/urandom of='{0}' bs=4k seek=10 count=2 conv=notrunc status=none",
            p("preallocated").display()
        ));
    }
    // A directory big enough to be hashed (htree).
    std::fs::create_dir(p("dir/many")).unwrap();
    for i in 0..600 {
        std::fs::write(p(&format!("dir/many/file-{i:04}")), format!("{i}\n")).unwrap();
    }
    sh("sync");
}

fn image(dir: &Path, mkfs: &[&str]) -> PathBuf {
    let path = dir.join("fs.img");
    std::fs::File::create(&path).unwrap().set_len(64 << 20).unwrap();
    let mut args: Vec<&str> = mkfs.to_vec();
    args.extend(["-q", "-F", path.to_str().unwrap()]);
    run(args[0], &args[1..]);
    path
}

fn open(path: &Path) -> ext4::Ext4Fs {
    ext4::open(Arc::new(ImageFile::open(path).unwrap())).unwrap()
}

fn check(mkfs: &[&str], type_name: &str) {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), mkfs);
    {
        let m = Mounted::new(&img, "rw");
        populate(m.path(), type_name);
    }
    let fs = open(&img);
    assert_eq!(fs.type_name(), type_name);
    let m = Mounted::new(&img, "ro");
    let expected = fswalk::walk_host(m.path(), &[]);
    fswalk::assert_same_walk(&fswalk::walk_guest(&fs), &expected, type_name);

    // Hard links share a node and report their link count.
    let root = fs.read_dir(fs.root()).unwrap();
    let small = root.iter().find(|e| e.name == "small.txt").unwrap();
    let d = root.iter().find(|e| e.name == "dir").unwrap();
    let link = fs
        .read_dir(d.node)
        .unwrap()
        .iter()
        .find(|e| e.name == "hardlink.txt")
        .unwrap()
        .clone();
    assert_eq!(small.node, link.node);
    assert_eq!(fs.attr(small.node).unwrap().nlink, 2);
    // Inode numbers and blocks are the kernel's.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(m.path().join("small.txt")).unwrap();
    assert_eq!(small.node, md.ino());
    let sparse = root.iter().find(|e| e.name == "sparse").unwrap();
    let sparse_md = std::fs::metadata(m.path().join("sparse")).unwrap();
    let sparse_attr = fs.attr(sparse.node).unwrap();
    assert_eq!(sparse_attr.blocks, sparse_md.blocks());
    let ctime = sparse_attr.ctime.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(
        (ctime.as_secs() as i64, ctime.subsec_nanos() as i64),
        (sparse_md.ctime(), sparse_md.ctime_nsec())
    );
}

#[test]
fn ext4_matches_the_kernel() {
    check(&["mkfs.ext4"], "ext4");
}

#[test]
fn ext3_matches_the_kernel() {
    check(&["mkfs.ext3"], "ext3");
}

#[test]
fn ext2_matches_the_kernel() {
    check(&["mkfs.ext2"], "ext2");
}

#[test]
fn ext4_with_1k_blocks_and_64bit_matches_the_kernel() {
    check(&["mkfs.ext4", "-b", "1024", "-O", "64bit,metadata_csum"], "ext4");
}

/// A copy taken while the filesystem is mounted: committed transactions may exist only
/// in the journal. ckptfs replays it in memory; the kernel replays it on mount (into a
/// second copy, since it writes).
#[test]
fn a_copy_of_a_mounted_ext4_reads_as_the_kernel_recovers_it() {
    if !can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), &["mkfs.ext4"]);
    let live = dir.path().join("live-copy.img");
    {
        let m = Mounted::new(&img, "rw,commit=1");
        populate(m.path(), "ext4");
        for i in 0..50 {
            std::fs::write(m.path().join(format!("late-{i}")), pseudo_random(100 + i, 5000)).unwrap();
        }
        std::fs::remove_file(m.path().join("dir/sub/odd-size")).unwrap();
        // Committed to the journal, maybe not yet written home.
        sh(&format!("sync -f '{}'", m.path().display()));
        std::fs::copy(&img, &live).unwrap();
    }
    // The copy must really need recovery, or this test proves nothing about the journal.
    let features = Command::new("dumpe2fs")
        .args(["-h", live.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&features.stdout).contains("needs_recovery"),
        "the copy has an empty journal"
    );
    let recovered = dir.path().join("recovered.img");
    std::fs::copy(&live, &recovered).unwrap();
    let fs = open(&live);
    // Read-write, so the kernel may replay the journal into this throwaway copy.
    let m = Mounted::new(&recovered, "rw,noatime");
    let expected = fswalk::walk_host(m.path(), &[]);
    fswalk::assert_same_walk(&fswalk::walk_guest(&fs), &expected, "copy of a mounted ext4");
}
