//! The NTFS reader against ntfs-3g: volumes made with mkntfs and filled through an ntfs-3g
//! mount, then read both by ckptfs (from the image's bytes) and by a read-only ntfs-3g
//! mount, which must agree. Damaged copies of such volumes must fail cleanly.

mod fswalk;
mod util;

use util::ntfs3g::Ntfs3g as Mount;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ckptfs::fs::{ntfs, Attr, DirEntry, FileKind, FsStats, GuestFs, NodeId};
use ckptfs::io::{ImageFile, ReadAt};

/// Whether this machine can make and mount NTFS volumes: the tools, root, /dev/fuse.
fn can_mount() -> bool {
    for tool in ["mkntfs", "ntfs-3g", "ntfsinfo", "setfattr"] {
        if !util::have_tool(tool) {
            return false;
        }
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root || !Path::new("/dev/fuse").exists() {
        if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() {
            panic!("ntfs-3g mounts need root and /dev/fuse (CKPTFS_REQUIRE_TOOLS is set)");
        }
        util::skip("ntfs-3g mounts need root and /dev/fuse");
        return false;
    }
    true
}

fn mkntfs(img: &Path, size: u64, cluster: Option<u32>, label: &str) {
    File::create(img).unwrap().set_len(size).unwrap();
    let cluster = cluster.map(|c| c.to_string());
    let mut args = vec!["-F", "-Q", "-q", "-L", label];
    if let Some(c) = &cluster {
        args.extend(["-c", c]);
    }
    args.push(img.to_str().unwrap());
    util::run("mkntfs", &args);
}

fn put(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn open_image(img: &Path) -> ntfs::NtfsFs {
    ntfs::open(Arc::new(ImageFile::open(img).unwrap())).unwrap()
}

/// Every path of a guest filesystem (as fswalk spells them) with its node and attributes.
fn guest_nodes(fs: &dyn GuestFs) -> BTreeMap<String, (NodeId, Attr)> {
    fn go(fs: &dyn GuestFs, dir: NodeId, prefix: &str, out: &mut BTreeMap<String, (NodeId, Attr)>) {
        for e in fs.read_dir(dir).unwrap().iter() {
            let path = if prefix.is_empty() {
                e.name.to_string_lossy().to_string()
            } else {
                format!("{prefix}/{}", e.name.to_string_lossy())
            };
            let attr = fs.attr(e.node).unwrap();
            if attr.kind == FileKind::Dir {
                go(fs, e.node, &path, out);
            }
            out.insert(path, (e.node, attr));
        }
    }
    let mut out = BTreeMap::new();
    go(fs, fs.root(), "", &mut out);
    out
}

fn secs_nanos(t: SystemTime) -> (i64, i64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs() as i64, d.subsec_nanos() as i64)
}

/// Inode numbers, link counts, allocation, directory sizes, access and change times:
/// what the walks do not compare. `mount` must be made with `-o posix_nlink`: ntfs-3g
/// then counts a directory's links as 2 + subdirectories, as ckptfs does (by default it
/// says 1). `dos_aliased` names files that also have a separate 8.3 name, which
/// ntfs-3g counts as a link by default and, with posix_nlink, like ckptfs does not.
fn assert_same_metadata(fs: &dyn GuestFs, mount: &Mount, skip: &str, dos_aliased: &[&str]) {
    let mut diffs = Vec::new();
    let nodes = guest_nodes(fs);
    for (path, (node, a)) in nodes.iter().filter(|(p, _)| p.split('/').next() != Some(skip)) {
        let m = fs::symlink_metadata(mount.path(path)).unwrap();
        let host_nlink = if dos_aliased.contains(&path.as_str()) {
            assert_eq!((a.nlink, m.nlink()), (1, 1), "{path}: the 8.3 alias is not a link");
            1
        } else {
            m.nlink() as u32
        };
        let ours = (
            *node,
            a.nlink,
            a.blocks,
            a.size,
            secs_nanos(a.atime),
            secs_nanos(a.ctime),
        );
        let theirs = (
            m.ino(),
            host_nlink,
            m.blocks(),
            m.size(),
            (m.atime(), m.atime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        );
        if ours != theirs {
            diffs.push(format!(
                "{path}: (ino, nlink, blocks, size, atime, ctime)\n  ckptfs  {ours:?}\n  ntfs-3g {theirs:?}"
            ));
        }
        let perm = if a.kind == FileKind::Dir { 0o555 } else { 0o444 };
        assert_eq!((a.perm, a.uid, a.gid), (perm, 0, 0), "{path}");
        assert!(a.crtime.is_some(), "{path}: NTFS records a creation time");
    }
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

/// `statfs` of the ntfs-3g mount: fundamental block size, blocks, free blocks.
fn assert_same_stats(stats: FsStats, mount: &Mount) {
    let out = Command::new("stat")
        .args(["-f", "-c", "%S %b %f"])
        .arg(&mount.dir)
        .output()
        .unwrap();
    let host: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(
        vec![u64::from(stats.block_size), stats.blocks, stats.free_blocks],
        host,
        "cluster size, clusters, free clusters"
    );
    assert!(stats.files > 0 && stats.free_files < stats.files, "{stats:?}");
}

/// The filesystem without one top-level entry, so that a walk can skip it.
struct Without<'a> {
    fs: &'a dyn GuestFs,
    hidden: &'a str,
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
        self.fs.case_insensitive()
    }
    fn attr(&self, node: NodeId) -> ckptfs::Result<Attr> {
        self.fs.attr(node)
    }
    fn read_dir(&self, dir: NodeId) -> ckptfs::Result<Arc<[DirEntry]>> {
        let all = self.fs.read_dir(dir)?;
        if dir != self.fs.root() {
            return Ok(all);
        }
        Ok(all.iter().filter(|e| e.name != self.hidden).cloned().collect())
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

fn lookup(fs: &dyn GuestFs, path: &str) -> NodeId {
    let mut node = fs.root();
    for part in path.split('/') {
        let entries = fs.read_dir(node).unwrap();
        node = entries
            .iter()
            .find(|e| e.name.to_string_lossy().to_lowercase() == part.to_lowercase())
            .unwrap_or_else(|| panic!("{path}: no {part}"))
            .node;
    }
    node
}

/// Fill the main test volume through a read-write ntfs-3g mount at `m`.
fn fill_main_volume(m: &Path) {
    put(&m.join("a/b/c/d/deep.txt"), b"four levels down\n");
    put(&m.join("empty.txt"), b"");
    fs::create_dir(m.join("emptydir")).unwrap();
    put(&m.join("tiny.txt"), b"small enough to live in its file record\n");
    put(&m.join("small.bin"), &util::pseudo_random(2, 1500));
    put(&m.join("large.bin"), &util::pseudo_random(1, (5 << 20) + 123));
    // A hole, 13 bytes of data in the middle, and a tail past the initialized size
    // (ntfs-3g leaves the valid data length at the end of the last write).
    let mut f = File::create(m.join("sparse.bin")).unwrap();
    f.set_len(10 << 20).unwrap();
    f.seek(SeekFrom::Start((5 << 20) + 7)).unwrap();
    f.write_all(b"in the middle").unwrap();
    drop(f);
    let mut f = File::create(m.join("grown.bin")).unwrap();
    f.write_all(&util::pseudo_random(4, 8192)).unwrap();
    f.set_len(100_000).unwrap();
    drop(f);
    put(&m.join("links/original.txt"), b"one file, three names\n");
    fs::hard_link(m.join("links/original.txt"), m.join("links/second.txt")).unwrap();
    fs::create_dir(m.join("links/sub")).unwrap();
    fs::hard_link(m.join("links/original.txt"), m.join("links/sub/third.txt")).unwrap();
    put(&m.join("unicode/café.txt"), "é\n".as_bytes());
    put(&m.join("unicode/日本/ファイル.txt"), "日本語\n".as_bytes());
    put(&m.join("unicode/emoji 😀.txt"), "😀\n".as_bytes());
    put(&m.join("case1/Name.txt"), b"upper\n");
    put(&m.join("case2/name.TXT"), b"lower\n");
    put(&m.join("LongFileName.txt"), b"has an 8.3 alias\n");
    util::run(
        "setfattr",
        &[
            "-h",
            "-v",
            "LONGFI~1.TXT",
            "-n",
            "system.ntfs_dos_name",
            m.join("LongFileName.txt").to_str().unwrap(),
        ],
    );
    for i in 0..400 {
        put(&m.join(format!("many/file_{i:04}.txt")), format!("{i}\n").as_bytes());
    }
    // The mount has `compression`; files made in a directory flagged compressed are
    // LZNT1-compressed.
    fs::create_dir(m.join("compressed")).unwrap();
    util::run(
        "setfattr",
        &[
            "-h",
            "-v",
            "0x00000800",
            "-n",
            "system.ntfs_attrib_be",
            m.join("compressed").to_str().unwrap(),
        ],
    );
    put(
        &m.join("compressed/text.txt"),
        "hello compressible world\n".repeat(20_000).as_bytes(),
    );
    put(&m.join("compressed/random.bin"), &util::pseudo_random(3, 100_000));
    // Fragment the free space: fill the volume with one-cluster files, delete every
    // other one, then write a file into the holes: hundreds of runs, more than one file
    // record holds, so its $DATA continues in extension records (an attribute list).
    fs::create_dir(m.join("fill")).unwrap();
    let cluster = util::pseudo_random(5, 4096);
    let mut n = 0u64;
    while fs::write(m.join(format!("fill/{n:05}")), &cluster).is_ok() {
        n += 1;
    }
    let _ = fs::remove_file(m.join(format!("fill/{n:05}")));
    for i in (0..n).step_by(2) {
        fs::remove_file(m.join(format!("fill/{i:05}"))).unwrap();
    }
    fs::create_dir(m.join("frag")).unwrap();
    let mut big = File::create(m.join("frag/big.bin")).unwrap();
    for i in 0..(n / 2).saturating_sub(64) {
        if big.write_all(&util::pseudo_random(1000 + i, 4096)).is_err() {
            break;
        }
    }
}

#[test]
fn reads_what_ntfs3g_reads() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("main.img");
    mkntfs(&img, 48 << 20, None, "ckptfs-ntfs");
    {
        let m = Mount::new(&img, &tmp.path().join("rw"), "compression");
        fill_main_volume(&m.dir);
    }

    // The test proves something only if the file really is split over records.
    let info = Command::new("ntfsinfo")
        .args(["-F", "/frag/big.bin"])
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("$ATTRIBUTE_LIST"),
        "frag/big.bin has no attribute list:\n{info}"
    );

    let fs = open_image(&img);
    let m = Mount::new(&img, &tmp.path().join("ro"), "ro,posix_nlink");
    assert_eq!(fs.type_name(), "ntfs");
    assert_eq!(fs.label().as_deref(), Some("ckptfs-ntfs"));
    assert!(fs.case_insensitive());
    assert_eq!(fs.root(), 5);

    let without = Without {
        fs: &fs,
        hidden: "compressed",
    };
    let ours = fswalk::walk_guest(&without);
    let theirs = fswalk::walk_host(&m.dir, &["compressed"]);
    fswalk::assert_same_walk(&ours, &theirs, "ckptfs vs ntfs-3g");
    assert!(ours.len() > 1000, "the walk covers the fill files too: {}", ours.len());
    assert_same_metadata(&fs, &m, "compressed", &["LongFileName.txt"]);
    assert_same_stats(fs.stats(), &m);

    // Threads reading at once, at arbitrary offsets and lengths, get ntfs-3g's bytes.
    let files = ["frag/big.bin", "large.bin", "sparse.bin", "grown.bin", "tiny.txt"];
    let expected: Vec<Vec<u8>> = files.iter().map(|p| fs::read(m.path(p)).unwrap()).collect();
    let nodes: Vec<NodeId> = files.iter().map(|p| lookup(&fs, p)).collect();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (fs, nodes, expected) = (&fs, &nodes, &expected);
            s.spawn(move || {
                for x in util::pseudo_random(500 + t, 8 * 100).chunks_exact(8) {
                    let x = u64::from_le_bytes(x.try_into().unwrap());
                    let want = &expected[(x % files.len() as u64) as usize];
                    let node = nodes[(x % files.len() as u64) as usize];
                    let off = ((x >> 8) % (want.len() as u64 + 1)) as usize;
                    let mut buf = vec![0u8; ((x >> 40) % 300_000) as usize];
                    let n = fs.read(node, off as u64, &mut buf).unwrap();
                    let end = (off + buf.len()).min(want.len());
                    assert_eq!(n, end - off);
                    assert!(buf[..n] == want[off..end], "node {node} at {off}");
                }
            });
        }
    });

    // Compressed files list with their real sizes and read as ntfs-3g reads them
    // (tests/ntfs_compression.rs covers compression in depth).
    let dir = lookup(&fs, "compressed");
    let entries = fs.read_dir(dir).unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries.iter() {
        let size = fs.attr(e.node).unwrap().size;
        let path = m.path(&format!("compressed/{}", e.name.to_string_lossy()));
        let host = fs::metadata(&path).unwrap();
        assert_eq!((size, fs.attr(e.node).unwrap().blocks), (host.len(), host.blocks()));
        let mut buf = vec![0u8; size as usize + 1];
        assert_eq!(fs.read(e.node, 0, &mut buf).unwrap(), size as usize);
        util::assert_same_bytes(
            &buf[..size as usize],
            &fs::read(&path).unwrap(),
            &path.display().to_string(),
        );
    }

    // Hard links share the node; the metadata files and the 8.3 alias are not listed.
    let links = ["links/original.txt", "links/second.txt", "links/sub/third.txt"];
    let nodes: HashSet<NodeId> = links.iter().map(|p| lookup(&fs, p)).collect();
    assert_eq!(nodes.len(), 1);
    assert_eq!(fs.attr(*nodes.iter().next().unwrap()).unwrap().nlink, 3);
    let root: Vec<String> = fs
        .read_dir(fs.root())
        .unwrap()
        .iter()
        .map(|e| e.name.to_string_lossy().to_string())
        .collect();
    assert!(root.iter().all(|n| !n.starts_with('$')), "{root:?}");
    assert!(!root.iter().any(|n| n.eq_ignore_ascii_case("LONGFI~1.TXT")), "{root:?}");
    assert_ne!(lookup(&fs, "case1/Name.txt"), lookup(&fs, "case2/name.TXT"));

    // Holes and the tail past the initialized size cost nothing and read as zeros.
    let sparse = fs.attr(lookup(&fs, "sparse.bin")).unwrap();
    assert!(sparse.blocks * 512 < sparse.size / 100, "{sparse:?}");

    // Directories and wrong node ids fail cleanly.
    assert!(fs.read(fs.root(), 0, &mut [0u8; 8]).is_err());
    assert!(fs.read_dir(lookup(&fs, "tiny.txt")).is_err());
    assert!(fs.read_link(lookup(&fs, "tiny.txt")).is_err());
    for bad in [1u64 << 40, 3_000_000] {
        assert_eq!(fs.attr(bad).unwrap_err().errno(), libc::ENOENT, "node {bad}");
    }
}

/// Index blocks smaller than a cluster (64 KiB clusters: VCNs count 512-byte units) and
/// clusters smaller than a file record (512 bytes: records straddle runs).
#[test]
fn reads_large_and_small_cluster_volumes() {
    if !can_mount() {
        return;
    }
    for (cluster, size) in [(65536u32, 160u64 << 20), (512, 24 << 20)] {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("v.img");
        mkntfs(&img, size, Some(cluster), "clusters");
        {
            let m = Mount::new(&img, &tmp.path().join("rw"), "");
            for i in 0..500 {
                put(
                    &m.path(&format!("many/a file with a longer name {i:04}.txt")),
                    format!("{i}\n").as_bytes(),
                );
            }
            for (i, len) in [1usize, 700, 1000, 70_000, 300_000, 3 << 20].into_iter().enumerate() {
                put(
                    &m.path(&format!("data/{len}.bin")),
                    &util::pseudo_random(10 + i as u64, len),
                );
            }
            let mut f = File::create(m.path("data/sparse.bin")).unwrap();
            f.set_len(4 << 20).unwrap();
            f.seek(SeekFrom::Start(3 << 20)).unwrap();
            f.write_all(&util::pseudo_random(20, 200_000)).unwrap();
        }
        let fs = open_image(&img);
        let m = Mount::new(&img, &tmp.path().join("ro"), "ro,posix_nlink");
        let what = format!("{cluster}-byte clusters");
        fswalk::assert_same_walk(&fswalk::walk_guest(&fs), &fswalk::walk_host(&m.dir, &[]), &what);
        assert_same_metadata(&fs, &m, "", &[]);
        assert_same_stats(fs.stats(), &m);
        assert_eq!(fs.read_dir(lookup(&fs, "many")).unwrap().len(), 500, "{what}");
    }
}

/// Byte offsets of structures in an image, for damaging copies of it.
struct Layout {
    bytes: Vec<u8>,
    cluster: usize,
    record: usize,
}

fn u16_at(b: &[u8], o: usize) -> usize {
    u16::from_le_bytes([b[o], b[o + 1]]) as usize
}

fn u32_at(b: &[u8], o: usize) -> usize {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize
}

impl Layout {
    fn new(img: &Path) -> Layout {
        let bytes = fs::read(img).unwrap();
        let cluster = u16_at(&bytes, 11) * bytes[13] as usize;
        let r = bytes[0x40] as i8;
        let record = if r > 0 { r as usize * cluster } else { 1 << -r };
        Layout { bytes, cluster, record }
    }

    fn mft(&self) -> usize {
        u64::from_le_bytes(self.bytes[0x30..0x38].try_into().unwrap()) as usize * self.cluster
    }

    /// Where file record `n` (16 or above: not mirrored) lies: NTFS 3.1 records name
    /// themselves at byte 44.
    fn record(&self, n: usize) -> usize {
        (0..self.bytes.len() / self.record)
            .map(|i| i * self.record)
            .find(|&o| &self.bytes[o..o + 4] == b"FILE" && u32_at(&self.bytes, o + 44) == n)
            .unwrap_or_else(|| panic!("no file record {n}"))
    }

    /// Change a multi-sector structure (FILE or INDX) of `len` bytes at `at` as if NTFS
    /// had written it: `edit` sees it with its fixups undone, which are redone after.
    fn edit(&mut self, at: usize, len: usize, edit: impl FnOnce(&mut [u8])) {
        let b = &mut self.bytes[at..at + len];
        let (usa, count) = (u16_at(b, 4), u16_at(b, 6));
        for i in 1..count {
            let end = i * 512 - 2;
            b.copy_within(usa + 2 * i..usa + 2 * i + 2, end);
        }
        edit(b);
        for i in 1..count {
            let end = i * 512 - 2;
            b.copy_within(end..end + 2, usa + 2 * i);
            b.copy_within(usa..usa + 2, end);
        }
    }

    /// Offset of the first attribute of type `ty` in the (fixed-up) record `rec`.
    fn attribute(rec: &[u8], ty: usize) -> usize {
        let mut pos = u16_at(rec, 20);
        while u32_at(rec, pos) != ty {
            assert_ne!(u32_at(rec, pos), 0xFFFF_FFFF, "no attribute {ty:#x}");
            pos += u32_at(rec, pos + 4);
        }
        pos
    }
}

/// An image held in memory.
struct Mem(Vec<u8>);

impl ReadAt for Mem {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> ckptfs::Result<()> {
        ckptfs::io::check_range(offset, buf.len(), self.size())?;
        buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
}

fn open_mem(bytes: &[u8]) -> ckptfs::Result<ntfs::NtfsFs> {
    ntfs::open(Arc::new(Mem(bytes.to_vec())))
}

/// Bytes between the initialized size ("valid data length") and the data size read as
/// zeros whatever the clusters hold, as ntfs-3g reads them.
#[test]
fn bytes_past_the_initialized_size_read_as_zeros() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("v.img");
    mkntfs(&img, 16 << 20, None, "valid");
    let data = util::pseudo_random(7, 65536);
    {
        let m = Mount::new(&img, &tmp.path().join("rw"), "");
        put(&m.path("valid.bin"), &data);
        put(&m.path("other.txt"), b"unchanged\n");
    }
    let node = lookup(&open_image(&img), "valid.bin") as usize;
    let mut l = Layout::new(&img);
    let at = l.record(node);
    let len = l.record;
    l.edit(at, len, |rec| {
        let a = Layout::attribute(rec, 0x80);
        assert_ne!(rec[a + 8], 0, "valid.bin is non-resident");
        rec[a + 56..a + 64].copy_from_slice(&10_000u64.to_le_bytes());
    });
    fs::write(&img, &l.bytes).unwrap();

    let fs = open_image(&img);
    let mut got = vec![0xAAu8; 70_000];
    assert_eq!(fs.read(node as u64, 0, &mut got).unwrap(), 65536);
    util::assert_same_bytes(&got[..10_000], &data[..10_000], "valid part");
    assert!(got[10_000..65536].iter().all(|&b| b == 0), "past the valid data");
    assert!(
        data[10_000..].iter().any(|&b| b != 0),
        "the clusters do hold data there"
    );
    let mut tail = [0xAAu8; 100];
    assert_eq!(fs.read(node as u64, 9_950, &mut tail).unwrap(), 100);
    assert_eq!(&tail[..50], &data[9_950..10_000]);
    assert_eq!(&tail[50..], &[0u8; 50]);

    let m = Mount::new(&img, &tmp.path().join("ro"), "ro");
    fswalk::assert_same_walk(
        &fswalk::walk_guest(&fs),
        &fswalk::walk_host(&m.dir, &[]),
        "ckptfs vs ntfs-3g",
    );
}

/// Walk everything, tolerating errors; returns how many nodes answered. Panics (the
/// failure this test looks for) propagate.
fn walk_tolerant(fs: &dyn GuestFs) -> usize {
    let mut seen = HashSet::new();
    let mut todo = vec![fs.root()];
    let mut buf = vec![0u8; 65536];
    while let Some(dir) = todo.pop() {
        if !seen.insert(dir) {
            continue;
        }
        let Ok(entries) = fs.read_dir(dir) else { continue };
        for e in entries.iter() {
            let Ok(a) = fs.attr(e.node) else { continue };
            match a.kind {
                FileKind::Dir => todo.push(e.node),
                _ => {
                    let _ = fs.read(e.node, 0, &mut buf);
                    let _ = fs.read(e.node, a.size.saturating_sub(100), &mut buf);
                    seen.insert(e.node);
                }
            }
        }
    }
    let _ = fs.stats();
    seen.len()
}

#[test]
fn damaged_volumes_fail_cleanly() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("v.img");
    mkntfs(&img, 16 << 20, None, "damaged");
    {
        let m = Mount::new(&img, &tmp.path().join("rw"), "");
        for i in 0..300 {
            put(&m.path(&format!("dir/f{i:04}.txt")), format!("{i}\n").as_bytes());
        }
        put(&m.path("data.bin"), &util::pseudo_random(9, 100_000));
    }
    let pristine = Layout::new(&img);
    let fs = open_mem(&pristine.bytes).unwrap();
    let (dir, data) = (lookup(&fs, "dir"), lookup(&fs, "data.bin"));
    assert_eq!(walk_tolerant(&fs), 303, "root, dir, its 300 files, data.bin");
    let expect_err = |r: ckptfs::Result<()>, want: &str, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.starts_with("ntfs: ") && e.contains(want), "{what}: {e}");
    };

    // No boot sector.
    let mut l = Layout::new(&img);
    l.bytes[..512].fill(0);
    expect_err(open_mem(&l.bytes).map(drop), "not an NTFS volume", "boot sector");

    // $MFT record 0 torn by an interrupted write.
    let mut l = Layout::new(&img);
    let mft = l.mft();
    l.bytes[mft + 510] ^= 0xFF;
    expect_err(open_mem(&l.bytes).map(drop), "torn", "torn $MFT record");

    // A run of data.bin pointing past the end of the volume: stat works, reads fail.
    let mut l = Layout::new(&img);
    let at = l.record(data as usize);
    let len = l.record;
    l.edit(at, len, |rec| {
        let a = Layout::attribute(rec, 0x80);
        let runs = a + u16_at(rec, a + 32);
        let (len_bytes, off_bytes) = ((rec[runs] & 0xF) as usize, (rec[runs] >> 4) as usize);
        let lcn = runs + 1 + len_bytes;
        rec[lcn..lcn + off_bytes].fill(0xFF);
        rec[lcn + off_bytes - 1] = 0x7F;
    });
    let fs = open_mem(&l.bytes).unwrap();
    assert_eq!(fs.attr(data).unwrap().size, 100_000);
    expect_err(
        fs.read(data, 0, &mut [0u8; 10]).map(drop),
        "past the end of the volume",
        "bad run",
    );

    // An index block whose last entry points back to itself: the listing stops with an
    // error instead of going round forever.
    let mut l = Layout::new(&img);
    let name: Vec<u8> = "f0001.txt".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let block = (0..l.bytes.len() / 4096)
        .map(|i| i * 4096)
        .find(|&o| &l.bytes[o..o + 4] == b"INDX" && l.bytes[o..o + 4096].windows(name.len()).any(|w| w == name))
        .expect("the index block of dir");
    l.edit(block, 4096, |b| {
        let vcn = b[16..24].to_vec();
        let (first, used, allocated) = (u32_at(b, 24), u32_at(b, 28), u32_at(b, 32));
        assert!(used + 8 <= allocated);
        let mut p = 24 + first;
        while u16_at(b, p + 12) & 2 == 0 {
            p += u16_at(b, p + 8);
        }
        assert_eq!(u16_at(b, p + 8), 16, "a leaf's last entry");
        b[p + 8..p + 10].copy_from_slice(&24u16.to_le_bytes());
        b[p + 12] |= 1;
        b[p + 16..p + 24].copy_from_slice(&vcn);
        b[28..32].copy_from_slice(&((used + 8) as u32).to_le_bytes());
        b[36] |= 1;
    });
    let fs = open_mem(&l.bytes).unwrap();
    expect_err(fs.read_dir(dir).map(drop), "reached twice", "index loop");
    assert!(
        fs.read(data, 0, &mut [0u8; 10]).is_ok(),
        "the rest of the volume still reads"
    );

    // Random damage to file records and index blocks: errors are fine, panics and hangs
    // are not.
    let regions: Vec<(usize, usize)> = std::iter::once((mft, 400 * pristine.record))
        .chain(
            (0..pristine.bytes.len() / 4096)
                .map(|i| i * 4096)
                .filter(|&o| &pristine.bytes[o..o + 4] == b"INDX")
                .map(|o| (o, 4096)),
        )
        .collect();
    let started = Instant::now();
    let mut opened = 0;
    for seed in 0..300u64 {
        let mut bytes = pristine.bytes.clone();
        let r = util::pseudo_random(seed + 100, 64);
        for k in 0..1 + (r[0] % 8) as usize {
            let (start, len) = regions[r[1 + 3 * k] as usize % regions.len()];
            let at = start + (u16::from_le_bytes([r[2 + 3 * k], r[3 + 3 * k]]) as usize % len);
            bytes[at] ^= r[30 + k] | 1;
        }
        if let Ok(fs) = ntfs::open(Arc::new(Mem(bytes))) {
            opened += 1;
            walk_tolerant(&fs);
        }
    }
    assert!(opened > 0, "some damaged copies still open");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

/// Files whose bytes on disk are not their contents (EFS-encrypted, WOF-compressed with a
/// sparse placeholder stream) are read errors, never ciphertext or zeros. ntfs-3g cannot
/// make them, so they are made by editing file records as Windows would have written them.
#[test]
fn encrypted_and_wof_files_are_errors_not_data() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("v.img");
    mkntfs(&img, 16 << 20, None, "special");
    {
        let m = Mount::new(&img, &tmp.path().join("rw"), "");
        put(&m.path("efs.bin"), &util::pseudo_random(11, 100_000));
        File::create(m.path("wof.bin")).unwrap().set_len(1 << 20).unwrap();
        put(&m.path("plain.bin"), &util::pseudo_random(12, 100_000));
    }
    let fs = open_image(&img);
    let (efs, wof) = (lookup(&fs, "efs.bin"), lookup(&fs, "wof.bin"));
    assert_eq!(
        fs.read(wof, 0, &mut [1u8; 16]).unwrap(),
        16,
        "a plain sparse file reads as zeros"
    );

    let mut l = Layout::new(&img);
    let (at, len) = (l.record(efs as usize), l.record);
    l.edit(at, len, |rec| {
        let si = Layout::attribute(rec, 0x10);
        let value = si + u16_at(rec, si + 20);
        rec[value + 33] |= 0x40; // FILE_ATTRIBUTE_ENCRYPTED (0x4000)
    });
    let at = l.record(wof as usize);
    l.edit(at, len, |rec| {
        // A resident $REPARSE_POINT: tag IO_REPARSE_TAG_WOF, 16 bytes of WOF and file
        // provider headers (version 1, provider 2 = file; version 1, XPRESS4K).
        let value: Vec<u8> = [0x8000_0017u32, 16, 1, 2, 1, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let end = Layout::attribute(rec, 0xFFFF_FFFF);
        let used = u32_at(rec, 24);
        assert!(used + 48 <= u32_at(rec, 28), "room in the record");
        rec.copy_within(end..used, end + 48);
        let instance = u16_at(rec, 40) as u16;
        rec[40..42].copy_from_slice(&(instance + 1).to_le_bytes());
        rec[24..28].copy_from_slice(&((used + 48) as u32).to_le_bytes());
        let a = &mut rec[end..end + 48];
        a.fill(0);
        a[0..4].copy_from_slice(&0xC0u32.to_le_bytes());
        a[4..8].copy_from_slice(&48u32.to_le_bytes());
        a[10..12].copy_from_slice(&24u16.to_le_bytes());
        a[14..16].copy_from_slice(&instance.to_le_bytes());
        a[16..20].copy_from_slice(&24u32.to_le_bytes());
        a[20..22].copy_from_slice(&24u16.to_le_bytes());
        a[24..48].copy_from_slice(&value);
    });
    fs::write(&img, &l.bytes).unwrap();

    let fs = open_image(&img);
    for (node, size, why) in [(efs, 100_000, "EFS-encrypted"), (wof, 1 << 20, "WOF-compressed")] {
        assert_eq!(fs.attr(node).unwrap().size, size, "{why}: stat still works");
        let err = fs.read(node, 0, &mut [0u8; 16]).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    let plain = lookup(&fs, "plain.bin");
    let mut buf = vec![0u8; 100_000];
    assert_eq!(fs.read(plain, 0, &mut buf).unwrap(), 100_000);
    assert_eq!(buf, util::pseudo_random(12, 100_000));
}
