//! The FAT reader against independent readers of the same bytes: volumes are made by
//! dosfstools and filled by mtools, then read by ckptfs, by 7-Zip (extracted, with
//! times), by mtools itself (names and contents), and by the kernel's vfat where the
//! kernel has it. Damaged copies must give errors, never panics or hangs.

mod fswalk;
mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use ckptfs::fs::fat::{self, FatFs, FatTimeZone};
use ckptfs::fs::{FileKind, GuestFs, NodeId};
use ckptfs::io::ImageFile;

const LABEL: &str = "CKPT TEST";

/// dosfstools and mtools, reporting every missing one.
fn have_tools() -> bool {
    ["mkfs.vfat", "mcopy", "fsck.vfat"]
        .iter()
        .fold(true, |ok, t| util::have_tool(t) & ok)
}

/// Run a tool with the settings that make mtools and 7-Zip deterministic: no checks
/// of the volume's geometry, UTF-8 names, and UTC as the zone FAT times are written
/// and read in.
fn tool(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn touch(p: &Path, when: &str) {
    util::run("touch", &["-d", when, s(p)]);
}

/// The host tree that is copied onto every volume, with chosen modification times.
fn make_source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let file = |rel: &str, bytes: &[u8], when: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        touch(&p, when);
    };
    file(
        "README.TXT",
        b"plain 8.3 name in upper case\n",
        "2001-02-03 04:05:06 UTC",
    );
    file(
        "lower.txt",
        b"8.3 in lower case: no long name, case flags\n",
        "2010-10-10 10:10:10 UTC",
    );
    file(
        "MixedCase.Txt",
        b"mixed case needs a long name\n",
        "2015-05-05 05:05:05 UTC",
    );
    file(
        "Hello World é.txt",
        b"spaces and an accent\n",
        "2020-02-29 23:59:59 UTC",
    );
    file(
        "日本語のファイル名.txt",
        "日本".repeat(1000).as_bytes(),
        "2022-12-31 12:00:01 UTC",
    );
    file(
        "A very long file name that needs several long-name entries, more than three of them.data",
        b"long",
        "2023-01-01 00:00:00 UTC",
    );
    file("empty", b"", "2019-07-01 08:00:00 UTC");
    file("ReadOnly.txt", b"read-only attribute\n", "2018-01-01 00:00:02 UTC");
    file("Hidden.txt", b"hidden attribute\n", "2018-01-01 00:00:04 UTC");
    file("System.sys", b"system attribute\n", "2018-01-01 00:00:06 UTC");
    file("Times/Year 1980.txt", b"x", "1980-01-01 00:00:00 UTC");
    file("Times/Year 2107.txt", b"x", "2107-12-31 23:59:58 UTC");
    file("Times/After 2038.txt", b"x", "2040-06-15 12:00:01 UTC");
    file(
        "Dir One/Nested/Deeper/Deepest/leaf.txt",
        b"leaf\n",
        "2012-12-12 12:12:12 UTC",
    );
    for i in 0..200 {
        file(
            &format!("Dir One/Many/File number {i:03} with a long name.txt"),
            format!("file {i}\n").as_bytes(),
            "2016-06-06 06:06:06 UTC",
        );
    }
    file(
        "Big/random 3 MiB.bin",
        &util::pseudo_random(3, (3 << 20) + 17),
        "2021-01-01 01:01:01 UTC",
    );
    file(
        "Big/random 5 MiB.bin",
        &util::pseudo_random(5, (5 << 20) + 1),
        "2021-01-01 01:01:02 UTC",
    );
    src
}

/// `mkfs.vfat -F bits` on a sparse file, filled from `src` by mtools, plus a file
/// fragmented by deletions.
fn make_volume(dir: &Path, src: &Path, bits: u32, mib: u64, mkfs_args: &[&str]) -> PathBuf {
    let img = dir.join(format!("fat{bits}.img"));
    std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
    let bits_arg = bits.to_string();
    let mut args = vec!["-F", &bits_arg, "-n", LABEL, "-i", "0C4E7F5A"];
    args.extend_from_slice(mkfs_args);
    args.push(s(&img));
    tool("mkfs.vfat", &args);
    let mut args = vec!["-s", "-m", "-i", s(&img)];
    let entries: Vec<PathBuf> = std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()).collect();
    args.extend(entries.iter().map(|p| s(p)));
    args.push("::/");
    tool("mcopy", &args);
    for (flag, name) in [("+r", "ReadOnly.txt"), ("+h", "Hidden.txt"), ("+s", "System.sys")] {
        tool("mattrib", &["-i", s(&img), flag, &format!("::/{name}")]);
    }
    // Thirty 8 KiB files, every other one deleted, then a 100 KB file: it takes the
    // holes. mtools allocates after FAT32's FSInfo hint, which is pointed back to the
    // start for that.
    let pads = dir.join(format!("pads{bits}"));
    std::fs::create_dir_all(&pads).unwrap();
    let mut args = vec!["-m".to_string(), "-i".to_string(), s(&img).to_string()];
    for i in 0..30 {
        let p = pads.join(format!("pad{i:02}"));
        std::fs::write(&p, util::pseudo_random(100 + i, 8192)).unwrap();
        args.push(s(&p).to_string());
    }
    tool("mmd", &["-i", s(&img), "::/Frag"]);
    args.push("::/Frag/".into());
    tool("mcopy", &args.iter().map(String::as_str).collect::<Vec<_>>());
    for i in (0..30).step_by(2) {
        tool("mdel", &["-i", s(&img), &format!("::/Frag/pad{i:02}")]);
    }
    if bits == 32 {
        let mut b = std::fs::read(&img).unwrap();
        let fs_info = u16::from_le_bytes([b[0x30], b[0x31]]) as usize * 512;
        b[fs_info + 492..fs_info + 496].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&img, b).unwrap();
    }
    let frag = dir.join("fragmented.bin");
    std::fs::write(&frag, util::pseudo_random(7, 100_000)).unwrap();
    touch(&frag, "2024-04-04 04:04:04 UTC");
    tool("mcopy", &["-m", "-i", s(&img), s(&frag), "::/Frag/"]);
    let chain = String::from_utf8(tool("mshowfat", &["-i", s(&img), "::/Frag/fragmented.bin"])).unwrap();
    assert!(chain.matches('<').count() > 5, "fat{bits}: not fragmented: {chain}");
    img
}

fn open_image(img: &Path, zone: FatTimeZone) -> FatFs {
    let file = Arc::new(ImageFile::open(img).unwrap());
    fat::open(file, zone).unwrap_or_else(|e| panic!("{}: {e}", img.display()))
}

/// What the source tree should look like through the reader: names and contents as
/// written, file times cut to FAT's 2 s, directory times whatever mtools gave them.
fn expected_from_source(src: &Path, guest: &fswalk::Walk) -> fswalk::Walk {
    let mut w = fswalk::walk_host(src, &[]);
    for (p, n) in w.iter_mut() {
        if n.kind == 'd' {
            n.mtime = guest.get(p).map_or((0, 0), |g| g.mtime);
        } else {
            n.mtime = (n.mtime.0 - n.mtime.0.rem_euclid(2), 0);
        }
    }
    w
}

/// Add what make_volume adds after copying the source.
fn add_frag(guest: &fswalk::Walk, expected: &mut fswalk::Walk) {
    for (p, n) in guest.iter().filter(|(p, _)| p.starts_with("Frag")) {
        expected.insert(p.clone(), n.clone());
    }
    let frag = &expected["Frag/fragmented.bin"];
    let want: String = Sha256::digest(util::pseudo_random(7, 100_000))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        (frag.content.as_str(), frag.size, frag.mtime),
        (want.as_str(), 100_000, (1_712_203_444, 0))
    );
    assert_eq!(guest.keys().filter(|p| p.starts_with("Frag/pad")).count(), 15);
}

struct Volume {
    _dir: tempfile::TempDir,
    src: PathBuf,
    img: PathBuf,
    bits: u32,
}

/// Each FAT type at the size mkfs.vfat picks for it, plus 4 KiB sectors and the 4 KiB
/// clusters of a typical EFI system partition.
fn volumes() -> Vec<Volume> {
    let specs: [(u32, u64, &[&str]); 5] = [
        (12, 16, &[]),
        (16, 64, &[]),
        (32, 64, &[]),
        (16, 64, &["-S", "4096"]),
        (32, 300, &["-s", "8"]),
    ];
    specs
        .into_iter()
        .map(|(bits, mib, args)| {
            let dir = tempfile::tempdir().unwrap();
            let src = make_source(dir.path());
            let img = make_volume(dir.path(), &src, bits, mib, args);
            Volume {
                _dir: dir,
                src,
                img,
                bits,
            }
        })
        .collect()
}

/// Names (directories with a trailing '/') and contents as mtools shows them.
fn mtools_view(img: &Path) -> (BTreeSet<String>, Vec<(String, Vec<u8>)>) {
    let out = String::from_utf8(tool("mdir", &["-i", s(img), "-/", "-b", "-a", "::"])).unwrap();
    let names: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("::/"))
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let files = names
        .iter()
        .filter(|n| !n.ends_with('/'))
        .map(|n| (n.clone(), tool("mtype", &["-i", s(img), &format!("::/{n}")])))
        .collect();
    (names, files)
}

fn find(fs: &dyn GuestFs, path: &str) -> NodeId {
    let mut node = fs.root();
    for part in path.split('/') {
        let entries = fs.read_dir(node).unwrap();
        node = entries
            .iter()
            .find(|e| e.name.to_str().unwrap().to_uppercase() == part.to_uppercase())
            .unwrap_or_else(|| panic!("{path}: no {part}"))
            .node;
    }
    node
}

#[test]
fn matches_the_source_7zip_and_mtools() {
    if !have_tools() {
        return;
    }
    let seven = util::have_tool("7zz");
    for v in volumes() {
        let what = format!("fat{}", v.bits);
        let fs = open_image(&v.img, FatTimeZone::Utc);
        assert_eq!(fs.type_name(), what);
        assert_eq!(fs.label().as_deref(), Some(LABEL));
        assert!(fs.case_insensitive());
        let guest = fswalk::walk_guest(&fs);

        let mut expected = expected_from_source(&v.src, &guest);
        add_frag(&guest, &mut expected);
        fswalk::assert_same_walk(&guest, &expected, &format!("{what}: ckptfs vs the files copied in"));
        assert_eq!(
            guest["Hello World é.txt"].mtime,
            (1_583_020_798, 0),
            "{what}: odd second cut to even"
        );
        assert_eq!(guest["Times/Year 1980.txt"].mtime, (315_532_800, 0));
        assert_eq!(guest["Times/Year 2107.txt"].mtime, (4_354_819_198, 0));
        assert_eq!(guest["Times/After 2038.txt"].mtime, (2_223_374_400, 0));

        if seven {
            let out = v.img.with_extension("7z-out");
            tool("7zz", &["x", "-y", &format!("-o{}", s(&out)), s(&v.img)]);
            let host = fswalk::walk_host(&out, &[]);
            fswalk::assert_same_walk(&guest, &host, &format!("{what}: ckptfs vs 7-Zip"));
        }

        let (names, files) = mtools_view(&v.img);
        let ours: BTreeSet<String> = guest
            .iter()
            .map(|(p, n)| if n.kind == 'd' { format!("{p}/") } else { p.clone() })
            .collect();
        assert_eq!(ours, names, "{what}: ckptfs vs mdir");
        for (name, bytes) in files {
            let n = &guest[&name];
            let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                (n.size, &n.content),
                (bytes.len() as u64, &sha),
                "{what}: {name} vs mtype"
            );
        }

        // Free space as dosfstools' fsck counts it: "N files, used/total clusters".
        let fsck = String::from_utf8(tool("fsck.vfat", &["-n", s(&v.img)])).unwrap();
        let counts = fsck.rsplit(", ").next().unwrap().split_whitespace().next().unwrap();
        let (used, total) = counts.split_once('/').unwrap();
        let (used, total): (u64, u64) = (used.parse().unwrap(), total.parse().unwrap());
        let st = fs.stats();
        assert_eq!((st.blocks, st.blocks - st.free_blocks), (total, used), "{what}: {fsck}");

        let ro = fs.attr(find(&fs, "ReadOnly.txt")).unwrap();
        assert_eq!(
            (ro.perm, ro.nlink, ro.uid, ro.gid, ro.kind),
            (0o444, 1, 0, 0, FileKind::File)
        );
        let big = fs.attr(find(&fs, "Big/random 3 MiB.bin")).unwrap();
        let cs = u64::from(st.block_size);
        assert_eq!(big.blocks, big.size.div_ceil(cs) * cs / 512);
        let dir = fs.attr(find(&fs, "Dir One")).unwrap();
        assert_eq!(
            (dir.perm, dir.nlink),
            (0o555, 4),
            "{what}: Dir One holds Nested and Many"
        );
        let root = fs.attr(fs.root()).unwrap();
        assert_eq!(root.nlink, 2 + 4, "{what}: Times, Dir One, Big and Frag");
        // Lookups ignore case.
        assert_eq!(find(&fs, "dir one/MANY"), find(&fs, "Dir One/Many"));
    }
}

/// Unmounts (and frees the loop device) even when the test fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Whether this kernel can mount vfat (a module may have to be loaded first).
fn kernel_has_vfat() -> bool {
    let has = || std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("\tvfat")));
    if !has() {
        let _ = Command::new("modprobe").arg("vfat").output();
    }
    has()
}

#[test]
fn matches_the_kernel() {
    if !have_tools() || !util::have_tool("mount") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        util::skip("mounting needs root");
        return;
    }
    if !kernel_has_vfat() {
        // Not a missing tool: a kernel built without FAT (as some CI kernels are). The
        // comparisons with 7-Zip and mtools above still run.
        util::skip("this kernel has no vfat");
        return;
    }
    for v in volumes() {
        let what = format!("fat{}", v.bits);
        let mnt = v.img.with_extension("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        // tz=UTC: the kernel reads FAT times as UTC too, like FatTimeZone::Utc.
        util::run("mount", &["-o", "ro,loop,utf8,tz=UTC", s(&v.img), s(&mnt)]);
        let _guard = Mount(mnt.clone());
        let fs = open_image(&v.img, FatTimeZone::Utc);
        let guest = fswalk::walk_guest(&fs);
        let host = fswalk::walk_host(&mnt, &[]);
        fswalk::assert_same_walk(&guest, &host, &format!("{what}: ckptfs vs the kernel"));
        // stat beyond the walk: link counts, directory sizes, blocks.
        use std::os::unix::fs::MetadataExt;
        for path in guest.keys().map(String::as_str).chain([""]) {
            let a = if path.is_empty() {
                fs.attr(fs.root())
            } else {
                fs.attr(find(&fs, path))
            }
            .unwrap();
            let m = std::fs::symlink_metadata(mnt.join(path)).unwrap();
            assert_eq!(
                (a.size, a.blocks, a.nlink),
                (m.size(), m.blocks(), m.nlink() as u32),
                "{what}: /{path}: size, blocks, nlink"
            );
        }
    }
}

#[test]
fn time_zones() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let f = src.join("noon.txt");
    std::fs::write(&f, b"12:00").unwrap();
    touch(&f, "2023-07-14 12:00:00 UTC");
    let img = dir.path().join("tz.img");
    std::fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    tool("mkfs.vfat", &["-F", "16", s(&img)]);
    // mtools writes the wall clock of its TZ (UTC here): 12:00.
    tool("mcopy", &["-m", "-i", s(&img), s(&f), "::/"]);
    let mtime = |zone: &str| {
        let fs = open_image(&img, zone.parse().unwrap());
        fs.attr(find(&fs, "noon.txt"))
            .unwrap()
            .mtime
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let utc = 1_689_336_000;
    assert_eq!(mtime("utc"), utc);
    // The same 12:00 written by a clock at +01:00 was 11:00 UTC.
    assert_eq!(mtime("+01:00"), utc - 3600);
    assert_eq!(mtime("-05:30"), utc + 5 * 3600 + 1800);
}

#[test]
fn many_threads_read_the_same_tree() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = make_source(dir.path());
    let img = make_volume(dir.path(), &src, 32, 64, &[]);
    let fs = Arc::new(open_image(&img, FatTimeZone::Utc));
    let alone = fswalk::walk_guest(&open_image(&img, FatTimeZone::Utc));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let fs = fs.clone();
            std::thread::spawn(move || fswalk::walk_guest(&*fs))
        })
        .collect();
    for t in threads {
        fswalk::assert_same_walk(&t.join().unwrap(), &alone, "a thread's walk vs one alone");
    }
}

/// List and read everything, collecting errors by path; give up after 60 s (a hang).
fn errors_of(img: Vec<u8>) -> Vec<(String, String)> {
    struct Bytes(Vec<u8>);
    impl ckptfs::io::ReadAt for Bytes {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> ckptfs::Result<()> {
            ckptfs::io::check_range(offset, buf.len(), self.size())?;
            buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        match fat::open(Arc::new(Bytes(img)), FatTimeZone::Utc) {
            Err(e) => out.push((String::new(), e.to_string())),
            Ok(fs) => {
                let mut todo = vec![(fs.root(), String::new())];
                while let Some((dir, prefix)) = todo.pop() {
                    match fs.read_dir(dir) {
                        Err(e) => out.push((prefix, e.to_string())),
                        Ok(entries) => {
                            for e in entries.iter() {
                                let path = format!("{prefix}/{}", e.name.to_string_lossy());
                                if let Err(err) = fs.attr(e.node) {
                                    out.push((path.clone(), err.to_string()));
                                }
                                if e.kind == FileKind::Dir {
                                    todo.push((e.node, path));
                                } else {
                                    let mut buf = vec![0u8; 1 << 20];
                                    let mut off = 0;
                                    loop {
                                        match fs.read(e.node, off, &mut buf) {
                                            Ok(0) => break,
                                            Ok(n) => off += n as u64,
                                            Err(err) => {
                                                out.push((path.clone(), err.to_string()));
                                                break;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                assert_eq!(fs.write_attempts(), 0);
            }
        }
        let _ = tx.send(out);
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("hung, or panicked")
}

/// Runs of the chain mshowfat prints: "<3> <5-8>" → [(3, 3), (5, 8)].
fn chain_runs(img: &Path, path: &str) -> Vec<(u32, u32)> {
    let out = String::from_utf8(tool("mshowfat", &["-i", s(img), path])).unwrap();
    out.split('<')
        .skip(1)
        .map(|r| {
            let r = r.split('>').next().unwrap();
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

fn le16(img: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([img[at], img[at + 1]]))
}

/// Byte offset of cluster `c` on a FAT16/32 volume.
fn cluster_offset(img: &[u8], bits: u32, c: u32) -> u64 {
    let (sector, per_cluster, reserved, fats, root_entries) = (
        le16(img, 0x0B),
        u64::from(img[0x0D]),
        le16(img, 0x0E),
        u64::from(img[0x10]),
        le16(img, 0x11),
    );
    let fat_sectors = if bits == 32 {
        u64::from(u32::from_le_bytes(img[0x24..0x28].try_into().unwrap()))
    } else {
        le16(img, 0x16)
    };
    let data = reserved + fats * fat_sectors + (root_entries * 32).div_ceil(sector);
    (data + u64::from(c - 2) * per_cluster) * sector
}

fn set_fat(img: &mut [u8], bits: u32, cluster: u32, value: u32) {
    let fat = (le16(img, 0x0E) * le16(img, 0x0B)) as usize;
    match bits {
        16 => img[fat + 2 * cluster as usize..][..2].copy_from_slice(&(value as u16).to_le_bytes()),
        32 => img[fat + 4 * cluster as usize..][..4].copy_from_slice(&value.to_le_bytes()),
        _ => unreachable!(),
    }
}

#[test]
fn damaged_volumes_give_errors() {
    if !have_tools() || !util::have_tool("mshowfat") {
        return;
    }
    for v in volumes().into_iter().filter(|v| v.bits != 12) {
        let what = format!("fat{}", v.bits);
        let img = std::fs::read(&v.img).unwrap();
        assert!(errors_of(img.clone()).is_empty(), "{what}: the intact volume");

        // A chain that loops back: the fragmented file's second run leads to its first.
        let runs = chain_runs(&v.img, "::/Frag/fragmented.bin");
        let mut bad = img.clone();
        set_fat(&mut bad, v.bits, runs[1].1, runs[0].0);
        let errs = errors_of(bad);
        assert_eq!(errs.len(), 1, "{what}: {errs:?}");
        assert_eq!(errs[0].0, "/Frag/fragmented.bin");
        assert!(
            errs[0].1.starts_with(&format!(
                "{what}: file /Frag/fragmented.bin: its cluster chain loops back to cluster {}",
                runs[0].0
            )),
            "{errs:?}"
        );

        // A directory whose chain loops (Many spans several clusters).
        let runs = chain_runs(&v.img, "::/Dir One/Many");
        let mut bad = img.clone();
        let last = runs.last().unwrap().1;
        set_fat(&mut bad, v.bits, last, runs[0].0);
        let errs = errors_of(bad);
        assert_eq!(errs.len(), 1, "{what}: {errs:?}");
        assert!(
            errs[0]
                .1
                .contains("directory /Dir One/Many: its cluster chain loops back"),
            "{errs:?}"
        );

        // A link past the last cluster.
        let runs = chain_runs(&v.img, "::/Big/random 3 MiB.bin");
        let mut bad = img.clone();
        set_fat(
            &mut bad,
            v.bits,
            runs[0].0,
            if v.bits == 16 { 0xFFF0 } else { 0x0FFF_FFF0 },
        );
        let errs = errors_of(bad);
        assert_eq!(errs.len(), 1, "{what}: {errs:?}");
        assert!(errs[0].1.contains("past the last cluster"), "{errs:?}");

        // The image cut in the middle of a file: errors for what lies past the cut
        // (that file at least), no panic.
        let big = chain_runs(&v.img, "::/Big/random 5 MiB.bin")[0].0;
        let errs = errors_of(img[..cluster_offset(&img, v.bits, big) as usize + (1 << 20)].to_vec());
        assert!(!errs.is_empty(), "{what}");
        for (path, e) in &errs {
            assert!(
                e.starts_with(&what) && (e.contains("past the end") || e.contains("volume ends")),
                "{path}: {e}"
            );
        }

        // A broken boot sector, and exFAT, are refused with the reason.
        let mut bad = img.clone();
        bad[0x0D] = 3;
        let errs = errors_of(bad);
        assert_eq!(
            errs,
            [(
                String::new(),
                "fat: boot sector: sectors per cluster is 3: not a power of two up to 128".into()
            )]
        );
        let mut bad = img.clone();
        bad[3..11].copy_from_slice(b"EXFAT   ");
        assert!(errors_of(bad)[0].1.contains("exFAT"));
    }
}

/// Throughput of file reads (run with --ignored --nocapture in release). Only the
/// reads are timed: hashing the bytes to check them would otherwise be most of it.
#[test]
#[ignore]
fn measure_read_throughput() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (bits, mib, spc) in [(32, 1024, "8"), (32, 1024, "1"), (16, 512, "16")] {
        let img = dir.path().join(format!("m{bits}-{spc}.img"));
        std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        tool("mkfs.vfat", &["-F", &bits.to_string(), "-s", spc, s(&img)]);
        let f = dir.path().join("big.bin");
        let data = util::pseudo_random(9, 64 << 20);
        std::fs::write(&f, &data).unwrap();
        tool("mcopy", &["-i", s(&img), s(&f), "::/"]);
        let fs = open_image(&img, FatTimeZone::Utc);
        let id = find(&fs, "big.bin");
        let cluster = spc.parse::<u32>().unwrap() * 512;
        for chunk in [4 << 10, 128 << 10, 1 << 20] {
            let mut buf = vec![0u8; chunk];
            let mut h = Sha256::new();
            let mut t = Duration::ZERO;
            let mut off = 0u64;
            loop {
                let start = Instant::now();
                let n = fs.read(id, off, &mut buf).unwrap();
                t += start.elapsed();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                off += n as u64;
            }
            assert_eq!(h.finalize()[..], Sha256::digest(&data)[..]);
            eprintln!(
                "fat{bits}, {cluster} B clusters, {} KiB reads: 64 MiB in {:.3} s = {:.0} MiB/s",
                chunk >> 10,
                t.as_secs_f64(),
                64.0 / t.as_secs_f64()
            );
        }
        // Two threads reading alternate 128 KiB pieces at once: no lock serializes them.
        let fs = Arc::new(fs);
        let start = Instant::now();
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let fs = fs.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 128 << 10];
                    let mut piece = t;
                    while fs.read(id, piece << 17, &mut buf).unwrap() > 0 {
                        piece += 2;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = start.elapsed().as_secs_f64();
        eprintln!("  2 threads, 128 KiB reads: 64 MiB in {t:.3} s = {:.0} MiB/s", 64.0 / t);
        // The same bytes straight from the image file, for scale.
        let file = ImageFile::open(&img).unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..64u64 {
            file.read_exact_at(i << 20, &mut buf).unwrap();
        }
        let t = start.elapsed().as_secs_f64();
        eprintln!("  raw image reads, 1 MiB: {t:.3} s = {:.0} MiB/s", 64.0 / t);
    }
}
