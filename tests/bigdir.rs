//! Large directories: every name is found through a per-directory index built once
//! (never by listing the directory again for each lookup), with each filesystem's own
//! matching rules (ext4 bytes; NTFS and FAT without regard to case), and node numbers
//! that stay the same across lookups, hard links, fresh trees and kernel `forget`s.
//!
//! Volumes are made by mkfs.ext4 -d, mkfs.fat + mcopy and mkntfs + ntfs-3g, wrapped in
//! a VHDX by qemu-img. The library tests need no root; the NTFS one and the mount
//! test need root and /dev/fuse (skipped with a message otherwise).

mod util;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use ckptfs::fs::{FileKind, FsOptions};
use ckptfs::vfs::{Ino, Vfs, ROOT};
use ckptfs::Error;
use util::{can_fuse_mount, ckptfs, have_tool, run};

/// Files named 1..=N in the big directory: enough that a scan per lookup would show.
const N: usize = 3000;

/// N empty files in `dir`.
fn numbered(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for i in 1..=N {
        fs::File::create(dir.join(i.to_string())).unwrap();
    }
}

fn to_vhdx(raw: &Path) -> PathBuf {
    let out = raw.with_extension("vhdx");
    run(
        "qemu-img",
        &["convert", "-O", "vhdx", raw.to_str().unwrap(), out.to_str().unwrap()],
    );
    out
}

fn open(image: &Path) -> Vfs {
    let tree = CheckpointTree::discover(image, &DiscoverOptions::default()).unwrap();
    Vfs::new(tree, FsOptions::default())
}

/// The node of `path` under the only volume of the only checkpoint.
fn in_volume(vfs: &Vfs, path: &str) -> Ino {
    let checkpoint = &vfs.readdir(ROOT).unwrap()[0];
    let volume = vfs
        .readdir(checkpoint.ino)
        .unwrap()
        .into_iter()
        .find(|e| e.name.to_string_lossy().starts_with("volume"))
        .expect("a volume");
    let mut ino = volume.ino;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = vfs.lookup(ino, OsStr::new(part)).unwrap().node;
    }
    ino
}

fn lookup(vfs: &Vfs, dir: Ino, name: &str) -> Option<Ino> {
    match vfs.lookup(dir, OsStr::new(name)) {
        Ok(a) => Some(a.node),
        Err(Error::NotFound(_)) => None,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Every numbered name is found, each after the directory's index was built once.
fn every_number_found_with_one_index(vfs: &Vfs, dir: Ino) {
    let before = vfs.name_index_builds();
    let first: Vec<Ino> = (1..=N)
        .map(|i| lookup(vfs, dir, &i.to_string()).unwrap_or_else(|| panic!("{i} not found")))
        .collect();
    assert_eq!(
        vfs.name_index_builds() - before,
        1,
        "{N} lookups in one directory built its name index more than once"
    );
    let again: Vec<Ino> = (1..=N).map(|i| lookup(vfs, dir, &i.to_string()).unwrap()).collect();
    assert_eq!(first, again, "numbers change between lookups");
    assert_eq!(vfs.name_index_builds() - before, 1);
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), N, "two files share a number");
    assert_eq!(lookup(vfs, dir, "0"), None);
    assert_eq!(lookup(vfs, dir, &(N + 1).to_string()), None);
    // Lookups and the listing agree on every number.
    for e in vfs.readdir(dir).unwrap() {
        assert_eq!(lookup(vfs, dir, e.name.to_str().unwrap()), Some(e.ino), "{:?}", e.name);
    }
}

#[test]
fn ext4_names_are_bytes_and_hard_links_share_a_number() {
    if !have_tool("mkfs.ext4") || !have_tool("qemu-img") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    numbered(&src.join("big"));
    fs::write(src.join("big/Readme.txt"), "upper").unwrap();
    fs::write(src.join("big/readme.txt"), "lower").unwrap();
    fs::hard_link(src.join("big/Readme.txt"), src.join("big/link")).unwrap();
    fs::create_dir(src.join("big/sub")).unwrap();
    let raw = tmp.path().join("ext4.raw");
    fs::File::create(&raw).unwrap().set_len(64 << 20).unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "big",
            "-d",
            src.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let image = to_vhdx(&raw);

    let vfs = open(&image);
    let dir = in_volume(&vfs, "big");
    every_number_found_with_one_index(&vfs, dir);
    let upper = lookup(&vfs, dir, "Readme.txt").unwrap();
    let lower = lookup(&vfs, dir, "readme.txt").unwrap();
    assert_ne!(upper, lower);
    assert_eq!(lookup(&vfs, dir, "README.TXT"), None, "ext4 names are bytes");
    assert_eq!(
        lookup(&vfs, dir, "link"),
        Some(upper),
        "a hard link has its file's number"
    );
    assert_eq!(vfs.getattr(upper).unwrap().nlink, 2);
    let mut buf = [0u8; 16];
    let n = vfs.read(lookup(&vfs, dir, "link").unwrap(), 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"upper");
    let sub = vfs.lookup(dir, OsStr::new("sub")).unwrap();
    assert_eq!(sub.kind, FileKind::Dir);
    // A file is no directory to look in (ENOTDIR, not an I/O error).
    assert!(matches!(
        vfs.lookup(upper, OsStr::new("x")),
        Err(Error::NotADirectory(_))
    ));

    // Numbers are computed, not handed out in order: a fresh tree gives the same ones.
    let again = open(&image);
    let dir2 = in_volume(&again, "big");
    assert_eq!(dir2, dir);
    assert_eq!(lookup(&again, dir2, "777"), lookup(&vfs, dir, "777"));
    assert_eq!(lookup(&again, dir2, "link"), Some(upper));
}

#[test]
fn fat_long_names_match_without_regard_to_case() {
    if !have_tool("mkfs.fat") || !have_tool("mcopy") || !have_tool("qemu-img") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    numbered(&big);
    fs::write(big.join("Mixed Case Long Name.txt"), "long").unwrap();
    let raw = tmp.path().join("fat.raw");
    fs::File::create(&raw).unwrap().set_len(64 << 20).unwrap();
    run("mkfs.fat", &["-F", "32", "-n", "BIG", raw.to_str().unwrap()]);
    let out = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-Q", "-s", "-i", raw.to_str().unwrap(), big.to_str().unwrap(), "::/"])
        .output()
        .unwrap();
    assert!(out.status.success(), "mcopy: {}", String::from_utf8_lossy(&out.stderr));
    let image = to_vhdx(&raw);

    let vfs = open(&image);
    let dir = in_volume(&vfs, "BIG");
    every_number_found_with_one_index(&vfs, dir);
    let long = lookup(&vfs, dir, "Mixed Case Long Name.txt").unwrap();
    assert_eq!(lookup(&vfs, dir, "mixed case long name.TXT"), Some(long));
    assert_eq!(lookup(&vfs, dir, "MIXED CASE LONG NAME.TXT"), Some(long));
    assert_eq!(lookup(&vfs, dir, "Mixed Case Long Name"), None);
    // Upper and lower case of the directory's own name reach the same directory.
    assert_eq!(in_volume(&vfs, "big"), dir);
}

#[test]
fn ntfs_names_match_without_regard_to_case() {
    if !have_tool("mkntfs") || !have_tool("ntfs-3g") || !have_tool("qemu-img") || !can_fuse_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("ntfs.raw");
    fs::File::create(&raw).unwrap().set_len(64 << 20).unwrap();
    run("mkntfs", &["-q", "-F", "-Q", "-L", "big", raw.to_str().unwrap()]);
    {
        let m = util::ntfs3g::Ntfs3g::new(&raw, &tmp.path().join("mnt"), "");
        numbered(&m.path("Big"));
        fs::write(m.path("Big/Readme.TXT"), "hello").unwrap();
        fs::hard_link(m.path("Big/Readme.TXT"), m.path("Big/other name")).unwrap();
    }
    let image = to_vhdx(&raw);

    let vfs = open(&image);
    let dir = in_volume(&vfs, "big");
    assert_eq!(in_volume(&vfs, "BIG"), dir);
    every_number_found_with_one_index(&vfs, dir);
    let readme = lookup(&vfs, dir, "Readme.TXT").unwrap();
    assert_eq!(lookup(&vfs, dir, "README.txt"), Some(readme));
    assert_eq!(lookup(&vfs, dir, "readme.txt"), Some(readme));
    assert_eq!(
        lookup(&vfs, dir, "OTHER NAME"),
        Some(readme),
        "a hard link has its file's number"
    );
    assert_eq!(lookup(&vfs, dir, "Readme"), None);
    // The metadata files are not names of the root.
    assert_eq!(lookup(&vfs, in_volume(&vfs, ""), "$MFT"), None);
}

#[test]
fn mount_keeps_numbers_across_lookups_and_forgets() {
    if !have_tool("mkfs.ext4") || !have_tool("qemu-img") || !can_fuse_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    numbered(&src.join("big"));
    fs::write(src.join("big/file"), "contents").unwrap();
    fs::hard_link(src.join("big/file"), src.join("big/link")).unwrap();
    let raw = tmp.path().join("ext4.raw");
    fs::File::create(&raw).unwrap().set_len(64 << 20).unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "big",
            "-d",
            src.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let image = to_vhdx(&raw);
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    ckptfs([OsStr::new("mount"), image.as_os_str(), mnt.as_os_str()]).ok();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let checkpoint = fs::read_dir(&mnt).unwrap().next().unwrap().unwrap().path();
    let dir = checkpoint.join("volume_big/big");

    let inos = |names: &mut dyn Iterator<Item = String>| -> Vec<u64> {
        names
            .map(|n| fs::symlink_metadata(dir.join(&n)).unwrap().ino())
            .collect()
    };
    let first = inos(&mut (1..=N).map(|i| i.to_string()));
    let again = inos(&mut (1..=N).map(|i| i.to_string()));
    assert_eq!(first, again);
    assert!(fs::symlink_metadata(dir.join("0")).is_err());
    assert_eq!(
        fs::metadata(dir.join("file")).unwrap().ino(),
        fs::metadata(dir.join("link")).unwrap().ino()
    );
    // Make the kernel forget the nodes (FUSE_FORGET), then look them up again: the same
    // numbers, and they still work.
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let after = inos(&mut (1..=N).map(|i| i.to_string()));
    assert_eq!(first, after, "numbers changed after the kernel forgot the nodes");
    assert_eq!(fs::read_to_string(dir.join("link")).unwrap(), "contents");
    drop(_guard);
}
