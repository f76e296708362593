//! NTFS as Windows uses it beyond plain files: alternate data streams, reparse points
//! (symlinks, junctions, WSL symlinks, and tags whose data lives elsewhere), hard links,
//! NTFS attributes and creation times as extended attributes.
//!
//! One volume is made by mkntfs and filled through ntfs-3g: streams written as
//! `file:stream` (`streams_interface=windows`), reparse points set raw through
//! `system.ntfs_reparse_data` from buffers built here, attributes through
//! `system.ntfs_attrib_be`. It is then read by ckptfs (the reader, the CLI on a VHDX
//! made by `qemu-img convert`, and `ckptfs mount`) and compared with a read-only
//! ntfs-3g mount of the same bytes and with libfsntfs (`pyfsntfs`, PyPI
//! libfsntfs-python). A copy with damaged reparse buffers must fail file by file.
//!
//! Needs root, /dev/fuse, mkntfs, ntfs-3g, setfattr, getfattr, sfdisk, qemu-img and
//! pyfsntfs; skipped with a message without them unless CKPTFS_REQUIRE_TOOLS is set.

mod fswalk;
mod util;

use util::ntfs3g::{mounted, Ntfs3g};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use ckptfs::fs::{ntfs, Attr, DirEntry, FileKind, FsStats, GuestFs, NodeId, StreamInfo};
use ckptfs::io::ImageFile;
use sha2::{Digest, Sha256};
use util::{ckptfs, pseudo_random, run};

const MIB: u64 = 1 << 20;
const VOLUME_SIZE: u64 = 32 * MIB;
const LABEL: &str = "features";
/// Where the volume shows in the tree of the VHDX made from the disk.
const VOL: &str = "01_current/p1_features";

const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
const TAG_LX_SYMLINK: u32 = 0xA000_001D;
const TAG_DEDUP: u32 = 0x8000_0013;
const TAG_APPEXECLINK: u32 = 0x8000_001B;
const TAG_CLOUD: u32 = 0x9000_101A;
const VOLUME_GUID: &str = "Volume{0d2f4c9a-5b7e-4f3c-9a1d-2e8b6c4f7a10}";

fn can_run() -> bool {
    for tool in [
        "mkntfs", "ntfs-3g", "ntfsinfo", "setfattr", "getfattr", "sfdisk", "qemu-img", "python3",
    ] {
        if !util::have_tool(tool) {
            return false;
        }
    }
    let required = std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some();
    let missing = if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/fuse").exists() {
        Some("ntfs-3g and ckptfs mounts need root and /dev/fuse")
    } else if !Command::new("python3")
        .args(["-c", "import pyfsntfs"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Some("pyfsntfs (PyPI libfsntfs-python) is not installed")
    } else {
        None
    };
    match missing {
        Some(why) if required => panic!("{why} (CKPTFS_REQUIRE_TOOLS is set)"),
        Some(why) => {
            util::skip(why);
            false
        }
        None => true,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

// ---------------------------------------------------------------------------------
// Reparse buffers, built from MS-FSCC 2.1.2 (not from ckptfs's reader).

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A Microsoft-tag reparse buffer: tag, data length, reserved, data.
fn reparse_buffer(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut b = tag.to_le_bytes().to_vec();
    b.extend((data.len() as u16).to_le_bytes());
    b.extend([0, 0]);
    b.extend(data);
    b
}

/// SYMBOLIC_LINK_REPARSE_DATA_BUFFER (flags `Some`) or MOUNT_POINT_REPARSE_DATA_BUFFER:
/// substitute name first, print name after it.
fn link_buffer(tag: u32, substitute: &str, print: &str, flags: Option<u32>) -> Vec<u8> {
    let (s, p) = (utf16(substitute), utf16(print));
    let mut d = Vec::new();
    for v in [0, s.len(), s.len(), p.len()] {
        d.extend((v as u16).to_le_bytes());
    }
    if let Some(f) = flags {
        d.extend(f.to_le_bytes());
    }
    d.extend(s);
    d.extend(p);
    reparse_buffer(tag, &d)
}

fn symlink(target: &str, relative: bool) -> Vec<u8> {
    let print = target.strip_prefix("\\??\\").unwrap_or(target);
    link_buffer(TAG_SYMLINK, target, print, Some(u32::from(relative)))
}

fn junction(target: &str) -> Vec<u8> {
    let print = target.strip_prefix("\\??\\").unwrap_or("");
    link_buffer(TAG_MOUNT_POINT, target, print, None)
}

fn set_reparse(path: &Path, buffer: &[u8]) {
    run(
        "setfattr",
        &[
            "-h",
            "-n",
            "system.ntfs_reparse_data",
            "-v",
            &format!("0x{}", hex(buffer)),
            path.to_str().unwrap(),
        ],
    );
}

fn set_attrib(path: &Path, flags: u32) {
    run(
        "setfattr",
        &[
            "-h",
            "-n",
            "system.ntfs_attrib_be",
            "-v",
            &format!("0x{flags:08x}"),
            path.to_str().unwrap(),
        ],
    );
}

// ---------------------------------------------------------------------------------
// Mounts.

/// `ckptfs mount IMAGE DIR`, unmounted on drop.
struct CkptMount {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl CkptMount {
    fn new(image: &Path) -> CkptMount {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        ckptfs(["mount".as_ref(), image.as_os_str(), path.as_os_str()]).ok();
        assert!(mounted(&path), "ckptfs mount returned before the mount was there");
        CkptMount { _dir: dir, path }
    }

    fn volume(&self) -> PathBuf {
        self.path.join(VOL)
    }
}

impl Drop for CkptMount {
    fn drop(&mut self) {
        if mounted(&self.path) {
            let ok = Command::new(env!("CARGO_BIN_EXE_ckptfs"))
                .arg("umount")
                .arg(&self.path)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                let c = CString::new(self.path.as_os_str().as_bytes()).unwrap();
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Extended attributes of host paths (the mounts), not following symlinks.

fn lgetxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    let got = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

fn llistxattr(path: &Path) -> BTreeSet<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let got = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        got >= 0,
        "llistxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf[..got as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

const SYSTEM_XATTRS: [&str; 8] = [
    "system.ntfs_attrib",
    "system.ntfs_attrib_be",
    "system.ntfs_crtime",
    "system.ntfs_crtime_be",
    "system.ntfs_times",
    "system.ntfs_times_be",
    "system.ntfs_reparse_data",
    "system.ntfs_dos_name",
];

// ---------------------------------------------------------------------------------
// The fixture.

/// A stream written to the volume and what it holds.
struct StreamSpec {
    file: &'static str,
    name: &'static str,
    data: Vec<u8>,
}

struct Fixture {
    /// The volume as ntfs-3g left it.
    volume: PathBuf,
    /// A copy whose reparse buffers were damaged afterwards.
    damaged: PathBuf,
    /// Disks (GPT, the volume as partition 1) as qemu-img VHDX files.
    vhdx: PathBuf,
    damaged_vhdx: PathBuf,
    streams: Vec<StreamSpec>,
}

/// Symlinks and junctions: path, the reparse buffer, and the target ckptfs must show.
fn links() -> Vec<(&'static str, Vec<u8>, String)> {
    vec![
        (
            "lnk/sym_rel",
            symlink("..\\Users\\alice\\documents\\T.TXT", true),
            "../Users/Alice/Documents/t.txt".into(),
        ),
        (
            "lnk/sym_abs",
            symlink("\\??\\C:\\USERS\\Alice\\Documents\\t.txt", false),
            "../Users/Alice/Documents/t.txt".into(),
        ),
        (
            "lnk/sym_rooted",
            symlink("\\Users\\Alice\\Documents\\t.txt", true),
            "../Users/Alice/Documents/t.txt".into(),
        ),
        (
            "lnk/sym_dir",
            symlink("\\??\\C:\\Users\\Alice", false),
            "../Users/Alice".into(),
        ),
        (
            "lnk/junction",
            junction("\\??\\C:\\Users\\Alice"),
            "../Users/Alice".into(),
        ),
        (
            "lnk/junction_missing",
            junction("\\??\\C:\\Nowhere\\x"),
            "../.NTFS-3G/C:/Nowhere/x".into(),
        ),
        (
            "lnk/junction_volume",
            junction(&format!("\\??\\{VOLUME_GUID}\\")),
            format!("../.NTFS-3G/{VOLUME_GUID}"),
        ),
        (
            "lnk/sym_other_drive",
            symlink("\\??\\D:\\data\\x.txt", false),
            "../.NTFS-3G/D:/data/x.txt".into(),
        ),
        (
            "lnk/sym_unc",
            symlink("\\??\\UNC\\server\\share\\f.txt", false),
            "../.NTFS-3G/UNC/server/share/f.txt".into(),
        ),
        (
            "lnk/a/b/c/up",
            symlink("..\\..\\..\\..\\Users\\Alice\\Documents\\t.txt", true),
            "../../../../Users/Alice/Documents/t.txt".into(),
        ),
        // Windows keeps `..` at the root; so does ckptfs, so no link leaves its volume.
        (
            "lnk/a/b/c/beyond",
            symlink("..\\..\\..\\..\\..\\..\\Users\\Alice\\Documents\\t.txt", true),
            "../../../../Users/Alice/Documents/t.txt".into(),
        ),
        ("lnk/a/b/c/here", symlink(".", true), ".".into()),
        (
            "lnk/wsl",
            {
                let mut d = 2u32.to_le_bytes().to_vec();
                d.extend(b"/usr/bin/env");
                reparse_buffer(TAG_LX_SYMLINK, &d)
            },
            "/usr/bin/env".into(),
        ),
        (
            "Users/Alice/AppData/Application Data",
            junction("\\??\\C:\\Users\\Alice\\AppData\\Roaming"),
            "Roaming".into(),
        ),
    ]
}

/// Which links are directories in NTFS (junctions and directory symlinks).
fn is_dir_link(path: &str) -> bool {
    path.contains("junction") || path.ends_with("sym_dir") || path.ends_with("Application Data")
}

fn streams() -> Vec<StreamSpec> {
    let s = |file, name, data: Vec<u8>| StreamSpec { file, name, data };
    vec![
        s(
            "docs/report.txt",
            "Zone.Identifier",
            b"[ZoneTransfer]\r\nZoneId=3\r\n".to_vec(),
        ),
        s("docs/report.txt", "small", b"x".to_vec()),
        s("docs/report.txt", "empty", Vec::new()),
        s("docs/report.txt", "medium", pseudo_random(31, 10_000)),
        s("docs/report.txt", "big", pseudo_random(32, 200_000)),
        s("docs/report.txt", "ünïcødé ✓", "unicode name\n".as_bytes().to_vec()),
        s("docs", "dirstream", b"a stream of a directory\n".to_vec()),
        s("links/original.txt", "tag", b"shared by every name\n".to_vec()),
        // In a directory marked compressed, ntfs-3g compresses streams too (LZNT1).
        s(
            "compressed/c.txt",
            "text",
            "compressible stream text\n".repeat(12_000).into_bytes(),
        ),
        s("compressed/c.txt", "random", pseudo_random(33, 70_000)),
    ]
}

fn mkntfs(img: &Path) {
    File::create(img).unwrap().set_len(VOLUME_SIZE).unwrap();
    run("mkntfs", &["-F", "-Q", "-q", "-L", LABEL, img.to_str().unwrap()]);
}

fn put(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn fill(img: &Path, dir: &Path, streams: &[StreamSpec]) {
    // Files and streams, through the Windows-style interface (streams of any size).
    {
        let m = Ntfs3g::new(img, &dir.join("rw1"), "streams_interface=windows,compression");
        fs::create_dir(m.path("compressed")).unwrap();
        set_attrib(&m.path("compressed"), 0x800);
        put(
            &m.path("compressed/c.txt"),
            "compressible file text\n".repeat(5_000).as_bytes(),
        );
        put(&m.path("docs/report.txt"), b"quarterly numbers\n");
        put(&m.path("docs/plain.txt"), b"no streams here\n");
        put(&m.path("Users/Alice/Documents/t.txt"), b"the target\n");
        put(
            &m.path("Users/Alice/Documents/attrs.txt"),
            b"read-only, hidden, system\n",
        );
        fs::create_dir_all(m.path("Users/Alice/AppData/Roaming")).unwrap();
        fs::create_dir_all(m.path("Users/Alice/Hidden")).unwrap();
        put(&m.path("links/original.txt"), b"one file, three names\n");
        fs::create_dir_all(m.path("links/sub")).unwrap();
        put(&m.path("LongFileName.txt"), b"has an 8.3 alias\n");
        for s in streams {
            fs::write(m.path(&format!("{}:{}", s.file, s.name)), &s.data).unwrap();
        }
        // A sparse stream: 3 MiB, 100 bytes of data at 2 MiB.
        let mut f = File::create(m.path("docs/report.txt:holes")).unwrap();
        f.set_len(3 * MIB).unwrap();
        f.seek(SeekFrom::Start(2 * MIB)).unwrap();
        f.write_all(&[0x5A; 100]).unwrap();
        drop(f);
        for p in ["special/dedup.bin", "special/cloud.txt", "special/thirdparty.bin"] {
            put(&m.path(p), &pseudo_random(40, 5000));
        }
        put(&m.path("special/alias.exe"), b"");
        for p in ["bad/sym_overflow", "bad/dedup_len"] {
            put(&m.path(p), b"bytes of a damaged reparse point\n");
        }
        fs::create_dir_all(m.path("bad/junction_len")).unwrap();
        for (path, _, _) in links() {
            if is_dir_link(path) {
                fs::create_dir_all(m.path(path)).unwrap();
            } else {
                put(&m.path(path), b"");
            }
        }
    }
    // Names, attributes and reparse points, through the xattr interface.
    let m = Ntfs3g::new(img, &dir.join("rw2"), "");
    fs::hard_link(m.path("links/original.txt"), m.path("links/second.txt")).unwrap();
    fs::hard_link(m.path("links/original.txt"), m.path("links/sub/third.txt")).unwrap();
    // A POSIX name with a colon, and a stream of it.
    put(&m.path("docs/odd:name.txt"), b"a colon in the name\n");
    run(
        "setfattr",
        &[
            "-n",
            "user.s",
            "-v",
            "stream of odd",
            m.path("docs/odd:name.txt").to_str().unwrap(),
        ],
    );
    run(
        "setfattr",
        &[
            "-h",
            "-v",
            "LONGFI~1.TXT",
            "-n",
            "system.ntfs_dos_name",
            m.path("LongFileName.txt").to_str().unwrap(),
        ],
    );
    set_attrib(&m.path("Users/Alice/Documents/attrs.txt"), 0x27);
    set_attrib(&m.path("Users/Alice/Hidden"), 0x02);
    for (path, buffer, _) in links() {
        set_reparse(&m.path(path), &buffer);
    }
    set_reparse(
        &m.path("special/dedup.bin"),
        &reparse_buffer(TAG_DEDUP, &pseudo_random(41, 80)),
    );
    set_reparse(&m.path("special/cloud.txt"), &reparse_buffer(TAG_CLOUD, b"placeholder"));
    let mut third = 0x0000_1234u32.to_le_bytes().to_vec();
    third.extend(4u16.to_le_bytes());
    third.extend([0, 0]);
    third.extend([0x11; 16]); // the vendor's GUID
    third.extend(b"data");
    set_reparse(&m.path("special/thirdparty.bin"), &third);
    let mut alias = 3u32.to_le_bytes().to_vec();
    for s in [
        "Microsoft.App_8wekyb3d8bbwe",
        "Microsoft.App",
        "C:\\Program Files\\App\\app.exe",
        "0",
    ] {
        alias.extend(utf16(s));
        alias.extend([0, 0]);
    }
    set_reparse(&m.path("special/alias.exe"), &reparse_buffer(TAG_APPEXECLINK, &alias));
    set_reparse(&m.path("bad/sym_overflow"), &symlink("..\\docs", true));
    set_reparse(&m.path("bad/junction_len"), &junction("\\??\\C:\\docs"));
    set_reparse(&m.path("bad/dedup_len"), &reparse_buffer(TAG_DEDUP, &[7; 40]));
}

/// A GPT disk with `volume` as partition 1, as a VHDX made by qemu-img.
fn vhdx_of(volume: &Path, dir: &Path, name: &str) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    let f = File::create(&raw).unwrap();
    f.set_len(VOLUME_SIZE + 2 * MIB).unwrap();
    drop(f);
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", raw.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "label: gpt\nstart=2048, size={}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
        VOLUME_SIZE / 512
    );
    sfdisk.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = sfdisk.wait_with_output().unwrap();
    assert!(out.status.success(), "sfdisk: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = fs::read(volume).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&raw).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes, MIB).unwrap();
    drop(f);
    let vhdx = dir.join(format!("{name}.vhdx"));
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vhdx",
            raw.to_str().unwrap(),
            vhdx.to_str().unwrap(),
        ],
    );
    fs::remove_file(raw).unwrap();
    vhdx
}

/// Built once for every test of this file (they only read it). `None` when the tools
/// are missing.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            if !can_run() {
                return None;
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ntfs_features");
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let volume = dir.join("volume.img");
            mkntfs(&volume);
            let streams = streams();
            fill(&volume, &dir, &streams);
            // The streams of the compressed file are LZNT1-compressed on disk, or reading
            // them right proves nothing about decompression.
            let info = Command::new("ntfsinfo")
                .args(["-F", "/compressed/c.txt"])
                .arg(&volume)
                .output()
                .unwrap();
            let info = String::from_utf8_lossy(&info.stdout);
            let compressed = info
                .split("Dumping attribute")
                .filter(|a| a.contains("Attribute name") && a.contains("Attribute flags:\t 0x0001"))
                .count();
            assert_eq!(compressed, 2, "{info}");
            let damaged = dir.join("damaged.img");
            fs::copy(&volume, &damaged).unwrap();
            damage(&damaged);
            let vhdx = vhdx_of(&volume, &dir, "disk");
            let damaged_vhdx = vhdx_of(&damaged, &dir, "damaged");
            Some(Fixture {
                volume,
                damaged,
                vhdx,
                damaged_vhdx,
                streams,
            })
        })
        .as_ref()
}

// ---------------------------------------------------------------------------------
// Damaging reparse buffers in place, as a torn or buggy write might leave them.

fn u16_at(b: &[u8], o: usize) -> usize {
    u16::from_le_bytes([b[o], b[o + 1]]) as usize
}

fn u32_at(b: &[u8], o: usize) -> usize {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize
}

/// Change the resident `$REPARSE_POINT` value of file record `n` in volume `bytes`, as
/// NTFS would have written it (update sequence fixups undone, then redone).
fn edit_reparse(bytes: &mut [u8], n: u64, edit: impl FnOnce(&mut [u8])) {
    let cluster = u16_at(bytes, 11) * bytes[13] as usize;
    let r = bytes[0x40] as i8;
    let size = if r > 0 { r as usize * cluster } else { 1 << -r };
    let at = (0..bytes.len() / size)
        .map(|i| i * size)
        .find(|&o| &bytes[o..o + 4] == b"FILE" && u32_at(bytes, o + 44) == n as usize)
        .unwrap_or_else(|| panic!("no file record {n}"));
    let rec = &mut bytes[at..at + size];
    let (usa, count) = (u16_at(rec, 4), u16_at(rec, 6));
    for i in 1..count {
        rec.copy_within(usa + 2 * i..usa + 2 * i + 2, i * 512 - 2);
    }
    let mut pos = u16_at(rec, 20);
    while u32_at(rec, pos) != 0xC0 {
        assert_ne!(u32_at(rec, pos), 0xFFFF_FFFF, "record {n} has no $REPARSE_POINT");
        pos += u32_at(rec, pos + 4);
    }
    assert_eq!(rec[pos + 8], 0, "a resident $REPARSE_POINT");
    let (len, off) = (u32_at(rec, pos + 16), u16_at(rec, pos + 20));
    edit(&mut rec[pos + off..pos + off + len]);
    for i in 1..count {
        rec.copy_within(i * 512 - 2..i * 512, usa + 2 * i);
        rec.copy_within(usa..usa + 2, i * 512 - 2);
    }
}

fn damage(img: &Path) {
    let fs = open(img);
    let mut bytes = fs::read(img).unwrap();
    // A substitute name running far past the buffer.
    edit_reparse(&mut bytes, lookup(&fs, "bad/sym_overflow"), |v| {
        v[10..12].copy_from_slice(&0x4000u16.to_le_bytes())
    });
    // Data lengths that disagree with the attribute's size.
    edit_reparse(&mut bytes, lookup(&fs, "bad/junction_len"), |v| v[4] += 2);
    edit_reparse(&mut bytes, lookup(&fs, "bad/dedup_len"), |v| {
        v[4..6].copy_from_slice(&200u16.to_le_bytes())
    });
    fs::write(img, bytes).unwrap();
}

// ---------------------------------------------------------------------------------
// Reading through the reader.

fn open(img: &Path) -> ntfs::NtfsFs {
    ntfs::open(Arc::new(ImageFile::open(img).unwrap())).unwrap()
}

fn lookup(fs: &dyn GuestFs, path: &str) -> NodeId {
    let mut node = fs.root();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        node = fs
            .read_dir(node)
            .unwrap()
            .iter()
            .find(|e| e.name == part)
            .unwrap_or_else(|| panic!("{path}: no {part}"))
            .node;
    }
    node
}

fn read_all_stream(fs: &dyn GuestFs, node: NodeId, name: &str) -> ckptfs::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    loop {
        let n = fs.read_stream(node, OsStr::new(name), out.len() as u64, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Every path of the volume (directories are not entered through links).
fn all_paths(fs: &dyn GuestFs) -> BTreeMap<String, (NodeId, FileKind)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(fs.root(), String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        for e in fs.read_dir(dir).unwrap().iter() {
            let path = format!("{prefix}{}", e.name.to_string_lossy());
            if e.kind == FileKind::Dir {
                todo.push((e.node, format!("{path}/")));
            }
            out.insert(path, (e.node, e.kind));
        }
    }
    out
}

/// The filesystem without some top-level entries, for whole-tree walks.
struct Without<'a> {
    fs: &'a dyn GuestFs,
    hidden: &'a [&'a str],
}

impl GuestFs for Without<'_> {
    fn type_name(&self) -> &'static str {
        self.fs.type_name()
    }
    fn label(&self) -> Option<String> {
        self.fs.label()
    }
    fn root(&self) -> NodeId {
        self.fs.root()
    }
    fn case_insensitive(&self) -> bool {
        true
    }
    fn attr(&self, node: NodeId) -> ckptfs::Result<Attr> {
        self.fs.attr(node)
    }
    fn read_dir(&self, dir: NodeId) -> ckptfs::Result<Arc<[DirEntry]>> {
        let all = self.fs.read_dir(dir)?;
        if dir != self.fs.root() {
            return Ok(all);
        }
        Ok(all
            .iter()
            .filter(|e| !self.hidden.iter().any(|h| e.name == *h))
            .cloned()
            .collect())
    }
    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> ckptfs::Result<usize> {
        self.fs.read(node, offset, buf)
    }
    fn read_link(&self, node: NodeId) -> ckptfs::Result<OsString> {
        self.fs.read_link(node)
    }
    fn stats(&self) -> FsStats {
        self.fs.stats()
    }
}

/// What pyfsntfs (libfsntfs) says of `paths`: streams (size, sha256), reparse tag and
/// substitute name.
fn libfsntfs(img: &Path, paths: &[&str]) -> serde_json::Value {
    const SCRIPT: &str = r#"
import hashlib, json, sys, pyfsntfs
v = pyfsntfs.volume()
v.open(sys.argv[1])
out = {}
for p in sys.argv[2:]:
    e = v.get_file_entry_by_path("\\" + p.replace("/", "\\"))
    streams = {}
    for a in e.alternate_data_streams:
        data = a.read_buffer(a.size) if a.size else b""
        streams[a.name] = [a.size, hashlib.sha256(data).hexdigest()]
    reparse = None
    for i in range(e.number_of_attributes):
        at = e.get_attribute(i)
        if at.attribute_type == 0xC0:
            try:
                name = at.substitute_name
            except Exception:
                name = None
            reparse = [at.tag, name]
    out[p] = {"streams": streams, "reparse": reparse}
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(img)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyfsntfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A path, lexically: `..` pops (a leading one beyond `base` is kept as `^`).
fn normalize(base: &str, target: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for p in target.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if p == ".." {
            if parts.pop().is_none() {
                parts.push("^");
            }
        } else {
            parts.push(p);
        }
    }
    parts.join("/")
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

#[test]
fn streams_and_attributes_read_as_ntfs3g_and_libfsntfs_read_them() {
    let Some(fx) = fixture() else { return };
    let fs = open(&fx.volume);
    let tmp = tempfile::tempdir().unwrap();
    let m = Ntfs3g::new(&fx.volume, &tmp.path().join("ro"), "ro");
    let w = Ntfs3g::new(&fx.volume, &tmp.path().join("win"), "ro,streams_interface=windows");

    // Every stream, whole, through the reader, against what was written and what
    // ntfs-3g reads as `file:stream`.
    for s in &fx.streams {
        let node = lookup(&fs, s.file);
        let ours = read_all_stream(&fs, node, s.name).unwrap();
        util::assert_same_bytes(&ours, &s.data, &format!("{}:{}", s.file, s.name));
        let theirs = fs::read(w.path(&format!("{}:{}", s.file, s.name))).unwrap();
        util::assert_same_bytes(&ours, &theirs, "ntfs-3g");
        let info = fs.streams(node).unwrap();
        assert!(
            info.contains(&StreamInfo {
                name: s.name.into(),
                size: s.data.len() as u64
            }),
            "{}: {info:?}",
            s.file
        );
    }
    // The sparse stream: holes and the tail past its valid data read as zeros, at any
    // offset.
    let report = lookup(&fs, "docs/report.txt");
    let holes = read_all_stream(&fs, report, "holes").unwrap();
    assert_eq!(holes.len() as u64, 3 * MIB);
    assert!(holes[..2 * MIB as usize].iter().all(|&b| b == 0));
    assert_eq!(&holes[2 * MIB as usize..2 * MIB as usize + 100], &[0x5A; 100]);
    assert!(holes[2 * MIB as usize + 100..].iter().all(|&b| b == 0));
    assert_eq!(holes, fs::read(w.path("docs/report.txt:holes")).unwrap());
    let mut b = [1u8; 8];
    assert_eq!(
        fs.read_stream(report, OsStr::new("holes"), 2 * MIB + 96, &mut b)
            .unwrap(),
        8
    );
    assert_eq!(b, [0x5A, 0x5A, 0x5A, 0x5A, 0, 0, 0, 0]);
    assert_eq!(fs.read_stream(report, OsStr::new("holes"), 3 * MIB, &mut b).unwrap(), 0);
    // Stream names match without regard to case, as on Windows.
    let mut b = [0u8; 64];
    let n = fs
        .read_stream(report, OsStr::new("zone.identifier"), 0, &mut b)
        .unwrap();
    assert_eq!(&b[..n], &fx.streams[0].data[..]);
    let err = fs.read_stream(report, OsStr::new("nope"), 0, &mut b).unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT, "{err}");

    // Extended attributes of every node, against ntfs-3g's: the names listed, each
    // `user.` value (E2BIG past 64 KiB on both), and every `system.ntfs_*` value.
    let paths = all_paths(&fs);
    let mut compared = 0;
    for (path, &(node, kind)) in &paths {
        let host = m.path(path);
        let ours: BTreeSet<String> = fs
            .xattr_names(node)
            .unwrap()
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if kind != FileKind::Symlink {
            assert_eq!(ours, llistxattr(&host), "{path}: names listed");
        } else {
            assert!(ours.is_empty(), "{path}: symlinks have no user attributes");
        }
        // Names no NTFS file has are ENODATA (ntfs-3g answers some of them EOPNOTSUPP).
        for name in [
            "security.selinux",
            "system.posix_acl_access",
            "trusted.x",
            "system.nope",
        ] {
            assert_eq!(fs.xattr(node, OsStr::new(name)).unwrap(), None, "{path}: {name}");
        }
        let mut names: Vec<&str> = SYSTEM_XATTRS.to_vec();
        names.extend(ours.iter().map(String::as_str));
        names.push("user.nope");
        for name in names {
            let ours = match fs.xattr(node, OsStr::new(name)) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(libc::ENODATA),
                Err(e) => Err(e.errno()),
            };
            assert_eq!(ours, lgetxattr(&host, name), "{path}: {name}");
            compared += 1;
        }
    }
    assert!(compared > 300, "{compared}");
    // A few values spelled out, as documented.
    let attrs = lookup(&fs, "Users/Alice/Documents/attrs.txt");
    let get = |node, name: &str| fs.xattr(node, OsStr::new(name)).unwrap().unwrap();
    assert_eq!(get(attrs, "system.ntfs_attrib"), 0x27u32.to_le_bytes());
    assert_eq!(get(attrs, "system.ntfs_attrib_be"), 0x27u32.to_be_bytes());
    assert_eq!(
        get(lookup(&fs, "Users/Alice/Hidden"), "system.ntfs_attrib_be"),
        0x12u32.to_be_bytes()
    );
    assert_eq!(
        get(lookup(&fs, "lnk/junction"), "system.ntfs_attrib_be")[2..],
        [0x04, 0x30]
    );
    let crtime = fs.attr(attrs).unwrap().crtime.unwrap();
    let ticks = u64::from_le_bytes(get(attrs, "system.ntfs_crtime").try_into().unwrap());
    let since_1601 = crtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() / 100 + 116_444_736_000_000_000;
    assert_eq!(
        u128::from(ticks),
        since_1601,
        "crtime is the creation time in 100 ns ticks"
    );
    assert_eq!(
        get(lookup(&fs, "LongFileName.txt"), "system.ntfs_dos_name"),
        b"LONGFI~1.TXT"
    );
    let big = fs.xattr(report, OsStr::new("user.big")).unwrap_err();
    assert_eq!(big.errno(), libc::E2BIG, "{big}");

    // libfsntfs agrees on every stream and reparse point.
    let mut asked: Vec<&str> = fx.streams.iter().map(|s| s.file).collect();
    asked.sort();
    asked.dedup();
    let link_paths: Vec<&str> = links().iter().map(|l| l.0).collect();
    asked.extend(&link_paths);
    asked.extend([
        "special/dedup.bin",
        "special/cloud.txt",
        "special/alias.exe",
        "docs/plain.txt",
    ]);
    let lib = libfsntfs(&fx.volume, &asked);
    for path in &asked {
        let node = lookup(&fs, path);
        let ours: BTreeMap<String, (u64, String)> = fs
            .streams(node)
            .unwrap()
            .into_iter()
            .map(|s| {
                let name = s.name.to_string_lossy().into_owned();
                let data = read_all_stream(&fs, node, &name).unwrap();
                (name, (s.size, sha(&data)))
            })
            .collect();
        let theirs: BTreeMap<String, (u64, String)> = lib[path]["streams"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), (v[0].as_u64().unwrap(), v[1].as_str().unwrap().to_string())))
            .collect();
        assert_eq!(ours, theirs, "{path}: streams, ckptfs vs libfsntfs");
        let raw = fs.xattr(node, OsStr::new("system.ntfs_reparse_data")).unwrap();
        let tag = raw
            .as_ref()
            .map(|r| u64::from(u32::from_le_bytes(r[..4].try_into().unwrap())));
        assert_eq!(tag, lib[path]["reparse"][0].as_u64(), "{path}: reparse tag");
    }
    assert!(lib["docs/report.txt"]["streams"].as_object().unwrap().len() >= 7);
}

#[test]
fn links_and_junctions_are_symlinks_with_targets_inside_the_volume() {
    let Some(fx) = fixture() else { return };
    let fs = open(&fx.volume);
    let tmp = tempfile::tempdir().unwrap();
    let m = Ntfs3g::new(&fx.volume, &tmp.path().join("ro"), "ro");
    let lib = libfsntfs(&fx.volume, &links().iter().map(|l| l.0).collect::<Vec<_>>());

    let mut agreed = Vec::new();
    for (path, buffer, expected) in links() {
        let node = lookup(&fs, path);
        let attr = fs.attr(node).unwrap();
        assert_eq!(attr.kind, FileKind::Symlink, "{path}");
        let target = fs.read_link(node).unwrap();
        assert_eq!(target.to_string_lossy(), expected, "{path}");
        assert_eq!(
            attr.size,
            target.len() as u64,
            "{path}: a symlink's size is its target's length"
        );
        assert_eq!(attr.perm, 0o777, "{path}");
        // The listing says symlink too, without a read of the record by the caller.
        let entries = fs.read_dir(lookup(&fs, parent_dir(path))).unwrap();
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(entries.iter().find(|e| e.name == name).unwrap().kind, FileKind::Symlink);
        // The raw buffer is what was set.
        assert_eq!(
            fs.xattr(node, OsStr::new("system.ntfs_reparse_data")).unwrap().unwrap(),
            buffer,
            "{path}"
        );
        // libfsntfs reads the same tag and substitute name as was written.
        let tag = u64::from(u32::from_le_bytes(buffer[..4].try_into().unwrap()));
        assert_eq!(lib[path]["reparse"][0].as_u64(), Some(tag), "{path}");

        // ntfs-3g makes absolute targets through its mount point and leaves some alone;
        // where it resolves one, both name the same place in the volume.
        let theirs = fs::read_link(m.path(path)).unwrap();
        let theirs = theirs.to_string_lossy();
        let mount = format!("{}/", m.dir.display());
        let theirs = match theirs.strip_prefix(&mount) {
            Some(inside) => normalize("", inside),
            None if theirs.starts_with("unsupported") => continue,
            None => normalize(parent_dir(path), &theirs),
        };
        if path.ends_with("beyond") {
            // ntfs-3g keeps the `..` past the root, which leaves its volume.
            assert!(theirs.starts_with('^'), "{theirs}");
            continue;
        }
        assert_eq!(
            normalize(parent_dir(path), &expected),
            theirs,
            "{path}: ckptfs vs ntfs-3g"
        );
        agreed.push(path);
    }
    // All but the UNC target, which ntfs-3g does not map, and the one past the root.
    assert_eq!(agreed.len(), links().len() - 2, "{agreed:?}");

    // Not links: plain files and directories, and reading them as links fails.
    for path in ["docs/report.txt", "docs", "special/dedup.bin", "special/alias.exe"] {
        let err = fs.read_link(lookup(&fs, path)).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL, "{path}: {err}");
    }

    // Hard links: one node, three names, the same bytes and streams.
    let names = ["links/original.txt", "links/second.txt", "links/sub/third.txt"];
    let nodes: HashSet<NodeId> = names.iter().map(|p| lookup(&fs, p)).collect();
    assert_eq!(nodes.len(), 1);
    let node = *nodes.iter().next().unwrap();
    assert_eq!(fs.attr(node).unwrap().nlink, 3);
    assert_eq!(fs::metadata(m.path(names[2])).unwrap().nlink(), 3);
    assert_eq!(read_all_stream(&fs, node, "tag").unwrap(), b"shared by every name\n");

    // Everything else reads as ntfs-3g reads it.
    let hidden = ["lnk", "special", "bad", "Users"];
    let ours = fswalk::walk_guest(&Without {
        fs: &fs,
        hidden: &hidden,
    });
    let theirs = fswalk::walk_host(&m.dir, &hidden);
    fswalk::assert_same_walk(&ours, &theirs, "ckptfs vs ntfs-3g");
    let docs = lookup(&fs, "docs");
    for e in fs.read_dir(docs).unwrap().iter() {
        let mut buf = vec![0u8; 4096];
        let n = fs.read(e.node, 0, &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &fs::read(m.path(&format!("docs/{}", e.name.to_string_lossy()))).unwrap()[..]
        );
    }
}

#[test]
fn other_tags_and_damaged_reparse_points_are_errors_not_data() {
    let Some(fx) = fixture() else { return };
    let fs = open(&fx.volume);
    let mut buf = vec![0u8; 8192];
    // Data kept elsewhere (deduplication, cloud files, a third party's filter): the
    // node is the file it is, with its size, but reading it fails and says why.
    for (path, why) in [
        ("special/dedup.bin", "deduplicated"),
        ("special/cloud.txt", "cloud files placeholder"),
        ("special/thirdparty.bin", "0x00001234"),
    ] {
        let node = lookup(&fs, path);
        let attr = fs.attr(node).unwrap();
        assert_eq!((attr.kind, attr.size), (FileKind::File, 5000), "{path}");
        let err = fs.read(node, 0, &mut buf).unwrap_err();
        assert!(err.to_string().contains(why), "{path}: {err}");
        assert_eq!(err.errno(), libc::EIO);
    }
    // An app execution alias keeps its own (empty) data: the alias is the reparse data.
    let alias = lookup(&fs, "special/alias.exe");
    assert_eq!(fs.attr(alias).unwrap().kind, FileKind::File);
    assert_eq!(fs.read(alias, 0, &mut buf).unwrap(), 0);
    let raw = fs
        .xattr(alias, OsStr::new("system.ntfs_reparse_data"))
        .unwrap()
        .unwrap();
    assert_eq!(&raw[..4], &TAG_APPEXECLINK.to_le_bytes());

    // Damaged buffers: an error for that file, a directory stays a directory, every
    // other file still reads.
    let bad = open(&fx.damaged);
    let sym = lookup(&bad, "bad/sym_overflow");
    assert_eq!(bad.attr(sym).unwrap().kind, FileKind::File, "a damaged link is no link");
    let err = bad.read(sym, 0, &mut buf).unwrap_err();
    assert!(err.to_string().contains("reparse point is damaged"), "{err}");
    assert!(bad.read_link(sym).is_err());
    assert!(bad
        .xattr(sym, OsStr::new("system.ntfs_reparse_data"))
        .unwrap()
        .is_some());
    let junction = lookup(&bad, "bad/junction_len");
    assert_eq!(bad.attr(junction).unwrap().kind, FileKind::Dir);
    assert!(bad.read_dir(junction).unwrap().is_empty());
    assert!(bad.read_link(junction).is_err());
    let dedup = lookup(&bad, "bad/dedup_len");
    let err = bad.read(dedup, 0, &mut buf).unwrap_err();
    assert!(err.to_string().contains("reparse point is damaged"), "{err}");
    // Listings agree with the nodes.
    for e in bad.read_dir(lookup(&bad, "bad")).unwrap().iter() {
        assert_eq!(e.kind, bad.attr(e.node).unwrap().kind, "{:?}", e.name);
    }
    let hidden = ["special", "bad"];
    assert_eq!(
        fswalk::walk_guest(&Without {
            fs: &bad,
            hidden: &hidden
        }),
        fswalk::walk_guest(&Without {
            fs: &fs,
            hidden: &hidden
        }),
        "the rest of the damaged volume reads as before"
    );
    // The CLI: one line and exit status 1, no panic.
    let out = ckptfs([
        "cat".as_ref(),
        fx.damaged_vhdx.as_os_str(),
        format!("{VOL}/bad/sym_overflow").as_ref(),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ckptfs: ") && last.contains("reparse point is damaged"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn cli_reads_streams_as_path_colon_stream_and_copies_them_as_xattrs() {
    let Some(fx) = fixture() else { return };
    let img = fx.vhdx.as_os_str();
    let cat = |path: &str| ckptfs([OsStr::new("cat"), img, OsStr::new(&format!("{VOL}/{path}"))]);

    for s in &fx.streams {
        let out = cat(&format!("{}:{}", s.file, s.name)).ok();
        util::assert_same_bytes(&out.stdout, &s.data, &format!("cat {}:{}", s.file, s.name));
    }
    assert_eq!(cat("docs/report.txt").ok().stdout, b"quarterly numbers\n");
    assert_eq!(cat("docs/report.txt::$DATA").ok().stdout, b"quarterly numbers\n");
    assert_eq!(
        cat("docs/report.txt:Zone.Identifier:$DATA").ok().stdout,
        fx.streams[0].data
    );
    assert_eq!(cat("docs/REPORT.TXT:zone.identifier").ok().stdout, fx.streams[0].data);
    assert_eq!(cat("docs/report.txt:holes").ok().stdout.len() as u64, 3 * MIB);
    // A name with a colon is itself first; its streams are after its last colon.
    assert_eq!(cat("docs/odd:name.txt").ok().stdout, b"a colon in the name\n");
    assert_eq!(cat("docs/odd:name.txt:s").ok().stdout, b"stream of odd");
    let out = cat("docs/report.txt:nope").failed();
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    cat("docs/nothing.txt:Zone.Identifier").failed();
    // Links: `cat` says where they point.
    let out = cat("lnk/sym_abs").failed();
    assert!(out.stderr.contains("../Users/Alice/Documents/t.txt"), "{}", out.stderr);
    let out = cat("special/dedup.bin");
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("deduplicated"), "{}", out.stderr);

    // `ls -l` shows link targets; `--streams` lists streams as `cat` takes them.
    let out = ckptfs([
        OsStr::new("ls"),
        OsStr::new("-l"),
        img,
        OsStr::new(&format!("{VOL}/lnk")),
    ])
    .ok();
    let text = out.stdout_str();
    for (path, _, target) in links()
        .iter()
        .filter(|l| l.0.starts_with("lnk/") && !l.0.contains("/a/"))
    {
        let name = path.rsplit('/').next().unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with('l') && l.ends_with(&format!(" {name} -> {target}"))),
            "{name}:\n{text}"
        );
    }
    let out = ckptfs([
        OsStr::new("ls"),
        OsStr::new("--streams"),
        img,
        OsStr::new(&format!("{VOL}/docs")),
    ])
    .ok();
    let lines: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    for expected in [
        "report.txt",
        "report.txt:Zone.Identifier",
        "report.txt:big",
        "report.txt:holes",
        "plain.txt",
    ] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }

    // `cp -r`: streams become user xattrs where they fit; the one over 64 KiB is a
    // warning, not a failure; symlinks stay relative and resolve in the copy.
    let dest = tempfile::tempdir().unwrap();
    let out = ckptfs([
        OsStr::new("cp"),
        OsStr::new("-r"),
        img,
        OsStr::new(VOL),
        dest.path().as_os_str(),
    ]);
    let copy = dest.path().join("p1_features");
    assert_eq!(
        out.code,
        Some(1),
        "the special files fail, nothing else:\n{}",
        out.stderr
    );
    let failed: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("ckptfs: ") && !l.contains("warning:"))
        .collect();
    assert!(
        failed
            .iter()
            .all(|l| l.contains("special/") || l.contains("bad/dedup_len")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("user.big not copied"), "{}", out.stderr);
    let report = copy.join("docs/report.txt");
    assert_eq!(fs::read(&report).unwrap(), b"quarterly numbers\n");
    let copied = llistxattr(&report);
    if copied.is_empty() {
        eprintln!(
            "note: {} takes no user xattrs; stream copies not checked",
            dest.path().display()
        );
    } else {
        // What the destination cannot hold (ext4 keeps an attribute in one block) is a
        // warning naming it.
        for s in fx
            .streams
            .iter()
            .filter(|s| s.file == "docs/report.txt" && s.data.len() <= 65536)
        {
            match lgetxattr(&report, &format!("user.{}", s.name)) {
                Ok(v) => assert_eq!(v, s.data, "{}", s.name),
                Err(_) => assert!(
                    s.data.len() > 1000 && out.stderr.contains(&format!("user.{} not copied", s.name)),
                    "{}: {}",
                    s.name,
                    out.stderr
                ),
            }
        }
        assert_eq!(lgetxattr(&report, "user.Zone.Identifier").unwrap(), fx.streams[0].data);
        assert!(
            !copied.contains("user.big") && !copied.contains("user.holes"),
            "{copied:?}"
        );
        assert_eq!(
            lgetxattr(&copy.join("docs"), "user.dirstream").unwrap(),
            b"a stream of a directory\n"
        );
    }
    assert_eq!(fs::read(copy.join("lnk/sym_rel")).unwrap(), b"the target\n");
    assert_eq!(
        fs::read(copy.join("lnk/junction/Documents/t.txt")).unwrap(),
        b"the target\n"
    );
    assert_eq!(
        fs::read_link(copy.join("lnk/junction_missing")).unwrap(),
        Path::new("../.NTFS-3G/C:/Nowhere/x")
    );
    // A stream on its own, to a file.
    let out_file = dest.path().join("big.bin");
    ckptfs([
        OsStr::new("cp"),
        img,
        OsStr::new(&format!("{VOL}/docs/report.txt:big")),
        out_file.as_os_str(),
    ])
    .ok();
    assert_eq!(fs::read(&out_file).unwrap(), fx.streams[4].data);
}

#[test]
fn the_mount_shows_streams_attributes_and_links_as_ntfs3g_does() {
    let Some(fx) = fixture() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let theirs = Ntfs3g::new(&fx.volume, &tmp.path().join("ro"), "ro");
    let mount = CkptMount::new(&fx.vhdx);
    let ours = mount.volume();

    // `getfattr -d` (user attributes, dumped) and named system ones, as ntfs-3g prints
    // them, errors included (E2BIG for the stream over 64 KiB).
    let files = [
        "docs/report.txt",
        "docs/plain.txt",
        "docs",
        "links/second.txt",
        "Users/Alice/Documents/attrs.txt",
        "Users/Alice/Hidden",
        "LongFileName.txt",
        "lnk/sym_abs",
        "lnk/junction",
        "special/dedup.bin",
    ];
    let getfattr = |dir: &Path, args: &[&str]| {
        let out = Command::new("getfattr")
            .current_dir(dir)
            .args(args)
            .args(files)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [
        &["-h", "-d"][..],
        &["-h", "-e", "hex", "-n", "system.ntfs_attrib_be"],
        &["-h", "-e", "hex", "-n", "system.ntfs_crtime"],
        &["-h", "-e", "hex", "-n", "system.ntfs_times_be"],
        &["-h", "-e", "hex", "-n", "system.ntfs_reparse_data"],
        &["-h", "-n", "system.ntfs_dos_name"],
    ] {
        let (a, b) = (getfattr(&ours, args), getfattr(&theirs.dir, args));
        assert_eq!(a, b, "getfattr {args:?}");
        assert!(!a.0.is_empty(), "getfattr {args:?} printed nothing");
    }
    assert!(getfattr(&ours, &["-h", "-d"])
        .1
        .contains("user.big: Argument list too long"));

    // The xattr protocol itself: a size-0 probe, ERANGE, ENODATA, E2BIG.
    let report = CString::new(ours.join("docs/report.txt").as_os_str().as_bytes()).unwrap();
    let name = CString::new("user.Zone.Identifier").unwrap();
    let probe = unsafe { libc::getxattr(report.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(probe, fx.streams[0].data.len() as isize);
    let mut small = [0u8; 4];
    let r = unsafe { libc::getxattr(report.as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), 4) };
    assert_eq!(
        (r, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::ERANGE))
    );
    let list_size = unsafe { libc::listxattr(report.as_ptr(), std::ptr::null_mut(), 0) };
    let expected_list: usize = llistxattr(&theirs.path("docs/report.txt"))
        .iter()
        .map(|n| n.len() + 1)
        .sum();
    assert_eq!(list_size, expected_list as isize);
    let r = unsafe { libc::listxattr(report.as_ptr(), small.as_mut_ptr().cast(), 4) };
    assert_eq!(
        (r, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::ERANGE))
    );
    assert_eq!(
        lgetxattr(&ours.join("docs/report.txt"), "user.missing"),
        Err(libc::ENODATA)
    );
    assert_eq!(lgetxattr(&ours.join("docs/report.txt"), "user.big"), Err(libc::E2BIG));
    // Outside the volumes, nothing.
    assert!(llistxattr(&mount.path.join("01_current")).is_empty());
    assert_eq!(
        lgetxattr(&mount.path.join("01_current/disk.img"), "user.x"),
        Err(libc::ENODATA)
    );

    // Links: readlink, and the kernel follows them inside the mount.
    for (path, _, target) in links() {
        assert_eq!(fs::read_link(ours.join(path)).unwrap(), Path::new(&target), "{path}");
    }
    assert_eq!(fs::read(ours.join("lnk/sym_abs")).unwrap(), b"the target\n");
    assert_eq!(fs::read(ours.join("lnk/a/b/c/up")).unwrap(), b"the target\n");
    assert_eq!(fs::read(ours.join("lnk/a/b/c/beyond")).unwrap(), b"the target\n");
    assert!(fs::metadata(ours.join("lnk/junction")).unwrap().is_dir());
    let out = Command::new("ls").arg("-l").arg(ours.join("lnk")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sym_rooted -> ../Users/Alice/Documents/t.txt"), "{text}");

    // Hard links share the inode.
    let inodes: HashSet<u64> = ["links/original.txt", "links/second.txt", "links/sub/third.txt"]
        .iter()
        .map(|p| fs::metadata(ours.join(p)).unwrap().ino())
        .collect();
    assert_eq!(inodes.len(), 1);
    assert_eq!(fs::metadata(ours.join("links/second.txt")).unwrap().nlink(), 3);
    // Data kept elsewhere: EIO, never the stand-in bytes.
    let err = fs::read(ours.join("special/dedup.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));

    // `cp -a` out of the mount keeps streams as user xattrs and links as links.
    let dest = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(ours.join("docs"))
        .arg(ours.join("lnk"))
        .arg(ours.join("Users"))
        .arg(dest.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success() || dest.path().join("docs/report.txt").exists());
    let report = dest.path().join("docs/report.txt");
    if !llistxattr(&report).is_empty() {
        assert_eq!(lgetxattr(&report, "user.Zone.Identifier").unwrap(), fx.streams[0].data);
    }
    assert_eq!(fs::read(dest.path().join("lnk/sym_abs")).unwrap(), b"the target\n");
}
