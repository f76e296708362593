//! Volumes built in memory with `fatfs` itself (format, create, write), then read back
//! and damaged byte by byte. The differential tests against the kernel, 7-Zip and
//! mtools are in tests/fat.rs.

use std::collections::BTreeMap;
use std::io::{Cursor as IoCursor, Write as _};
use std::sync::mpsc;
use std::time::Duration;

use fatfs::{FatType, FormatVolumeOptions};

use super::*;
use crate::io::ReadAt;

struct Mem(Vec<u8>);

impl ReadAt for Mem {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        crate::io::check_range(offset, buf.len(), self.size())?;
        buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// path → content (None for a directory) of the tree `build` writes.
fn expected() -> BTreeMap<String, Option<Vec<u8>>> {
    BTreeMap::from([
        ("README.TXT".to_string(), Some(b"hello\n".to_vec())),
        ("Long File Name.txt".to_string(), Some(pattern(1, 3000))),
        ("empty.dat".to_string(), Some(Vec::new())),
        ("Sub Dir".to_string(), None),
        ("Sub Dir/日本語 é.bin".to_string(), Some(pattern(2, 100_000))),
        ("Sub Dir/Nested".to_string(), None),
        ("Sub Dir/Nested/deep.txt".to_string(), Some(b"deep".to_vec())),
    ])
}

/// A formatted volume holding the `expected()` tree.
fn build(kind: FatType, size: usize) -> Vec<u8> {
    let mut c = IoCursor::new(vec![0u8; size]);
    let opts = FormatVolumeOptions::new().fat_type(kind).volume_label(*b"UNIT TEST  ");
    fatfs::format_volume(&mut c, opts).unwrap();
    c.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut c, fatfs::FsOptions::new()).unwrap();
        let root = fs.root_dir();
        for (path, content) in expected() {
            match content {
                None => {
                    root.create_dir(&path).unwrap();
                }
                Some(bytes) => {
                    root.create_file(&path).unwrap().write_all(&bytes).unwrap();
                }
            }
        }
    }
    c.into_inner()
}

fn open_mem(img: &[u8], zone: FatTimeZone) -> Result<FatFs> {
    open(Arc::new(Mem(img.to_vec())), zone)
}

/// Every node below the root: path → (id, content or None for a directory).
fn walk(fs: &FatFs) -> BTreeMap<String, (NodeId, Option<Vec<u8>>)> {
    fn go(fs: &FatFs, dir: NodeId, prefix: &str, out: &mut BTreeMap<String, (NodeId, Option<Vec<u8>>)>) {
        for e in fs.read_dir(dir).unwrap().iter() {
            let name = e.name.to_str().unwrap();
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let a = fs.attr(e.node).unwrap();
            assert_eq!(a.kind, e.kind);
            if a.kind == FileKind::Dir {
                out.insert(path.clone(), (e.node, None));
                go(fs, e.node, &path, out);
            } else {
                let mut buf = vec![0u8; a.size as usize + 10];
                // Odd-sized pieces, so reads start and end inside clusters.
                let mut off = 0;
                while off < buf.len() {
                    let end = (off + 777).min(buf.len());
                    let n = fs.read(e.node, off as u64, &mut buf[off..end]).unwrap();
                    if n == 0 {
                        break;
                    }
                    off += n;
                }
                assert_eq!(off as u64, a.size, "{path}");
                buf.truncate(off);
                out.insert(path, (e.node, Some(buf)));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(fs, fs.root(), "", &mut out);
    out
}

/// Run `f` on another thread; fail if it takes more than 20 s (a hang).
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("hung (or panicked)")
}

const KINDS: [(FatType, usize, &str); 3] = [
    (FatType::Fat12, 2 << 20, "fat12"),
    (FatType::Fat16, 8 << 20, "fat16"),
    (FatType::Fat32, 40 << 20, "fat32"),
];

#[test]
fn reads_every_fat_type_without_writing() {
    for (kind, size, name) in KINDS {
        let img = build(kind, size);
        let fs = open_mem(&img, FatTimeZone::Utc).unwrap();
        let writes = fs.writes.clone();
        assert_eq!(fs.type_name(), name);
        assert_eq!(fs.label().as_deref(), Some("UNIT TEST"));
        assert!(fs.case_insensitive());
        let got: BTreeMap<_, _> = walk(&fs).into_iter().map(|(p, (_, c))| (p, c)).collect();
        assert_eq!(got, expected(), "{name}");
        let st = fs.stats();
        assert_eq!(u64::from(st.block_size), u64::from(fs.geo.cluster_size));
        assert_eq!(st.blocks, u64::from(fs.geo.clusters));
        assert!(st.free_blocks > 0 && st.free_blocks < st.blocks, "{st:?}");
        drop(fs);
        // Mounting, listing, reading, counting free clusters and unmounting (Drop)
        // never tried to write.
        assert_eq!(writes.load(Ordering::Relaxed), 0, "{name}");
    }
}

#[test]
fn attributes() {
    let img = build(FatType::Fat16, 8 << 20);
    let fs = open_mem(&img, FatTimeZone::Utc).unwrap();
    let w = walk(&fs);
    let cs = u64::from(fs.geo.cluster_size);
    let long = fs.attr(w["Long File Name.txt"].0).unwrap();
    assert_eq!(
        (long.size, long.perm, long.nlink, long.uid, long.gid),
        (3000, 0o444, 1, 0, 0)
    );
    assert_eq!(long.blocks, 3000u64.div_ceil(cs) * cs / 512);
    assert_eq!(long.ctime, long.mtime);
    // fatfs without a clock writes date 0: read as 1980-01-01 00:00, as the kernel does.
    assert_eq!(long.mtime, UNIX_EPOCH + Duration::from_secs(315_532_800));
    assert_eq!(fs.attr(w["empty.dat"].0).unwrap().blocks, 0);
    let sub = fs.attr(w["Sub Dir"].0).unwrap();
    // `.`, `..` and Nested.
    assert_eq!((sub.perm, sub.nlink, sub.size), (0o555, 3, cs));
    assert_eq!(fs.attr(w["Sub Dir/Nested"].0).unwrap().nlink, 2);
    let root = fs.attr(fs.root()).unwrap();
    // The root has no `.`/`..`: 2 plus its one subdirectory. Its size is the fixed
    // root region of FAT16 (512 entries). Its time is the newest its entries record,
    // but fatfs wrote none (date 0 is unset): the epoch, as the kernel shows.
    assert_eq!((root.nlink, root.size, root.mtime), (3, 512 * 32, UNIX_EPOCH));
    // An offset zone moves every time by that much.
    let east = open_mem(&img, FatTimeZone::Offset(3600)).unwrap();
    let id = w["Long File Name.txt"].0;
    east.read_dir(east.root()).unwrap();
    let a = east.attr(id).unwrap();
    assert_eq!(a.mtime + Duration::from_secs(3600), long.mtime);
    assert_eq!(a.atime + Duration::from_secs(3600), long.atime);
    assert_eq!(a.crtime.unwrap() + Duration::from_secs(3600), long.crtime.unwrap());
}

#[test]
fn ids_come_from_entry_positions() {
    let img = build(FatType::Fat32, 40 << 20);
    let fs = open_mem(&img, FatTimeZone::Utc).unwrap();
    assert_eq!(fs.root(), 1);
    // Nothing is known before it is listed.
    assert!(matches!(fs.attr(12345), Err(Error::NotFound(_))));
    let w = walk(&fs);
    let mut seen = HashSet::new();
    for (path, (id, _)) in &w {
        let node = fs.node(*id).unwrap();
        let e = node.entry.as_ref().unwrap();
        assert_eq!(*id, e.pos / 32 + 2, "{path}");
        assert_eq!(node.path, *path);
        assert!(seen.insert(*id));
        // The id's entry is the name's short-name entry.
        let mut raw = [0u8; 11];
        fs.volume.read_at(e.pos, &mut raw).unwrap();
        assert_eq!(raw, e.name);
    }
    // Listing again (as after eviction from the cache) and opening the volume again
    // give the same ids.
    assert_eq!(fs.list(fs.root()).unwrap(), fs.read_dir(fs.root()).unwrap());
    let again = open_mem(&img, FatTimeZone::Utc).unwrap();
    assert_eq!(walk(&again), w);
    assert!(matches!(fs.read_dir(w["README.TXT"].0), Err(Error::Filesystem { .. })));
    assert!(fs.read(w["Sub Dir"].0, 0, &mut [0u8; 4]).is_err());
    assert!(fs.read_link(w["README.TXT"].0).is_err());
}

/// The volume, its geometry and where `path`'s entry is.
fn locate(img: &[u8], path: &str) -> (Geometry, RawEntry) {
    let fs = open_mem(img, FatTimeZone::Utc).unwrap();
    let w = walk(&fs);
    let node = fs.node(w[path].0).unwrap();
    (fs.geo.clone(), node.entry.clone().unwrap())
}

fn set_fat(img: &mut [u8], geo: &Geometry, cluster: u32, value: u32) {
    let c = cluster as usize;
    let base = geo.fat_offset as usize;
    match geo.kind {
        layout::FatKind::Fat12 => {
            let at = base + c + c / 2;
            let old = u16::from_le_bytes([img[at], img[at + 1]]);
            let v = if c & 1 == 0 {
                (old & 0xF000) | value as u16
            } else {
                (old & 0x000F) | (value as u16) << 4
            };
            img[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        layout::FatKind::Fat16 => img[base + 2 * c..base + 2 * c + 2].copy_from_slice(&(value as u16).to_le_bytes()),
        layout::FatKind::Fat32 => img[base + 4 * c..base + 4 * c + 4].copy_from_slice(&value.to_le_bytes()),
    }
}

/// Read every file and list every directory, collecting errors by path.
fn errors(img: Vec<u8>) -> BTreeMap<String, String> {
    within(move || {
        let fs = match open_mem(&img, FatTimeZone::Utc) {
            Ok(fs) => fs,
            Err(e) => return BTreeMap::from([("(open)".to_string(), e.to_string())]),
        };
        let mut out = BTreeMap::new();
        let mut todo = vec![(fs.root(), String::new())];
        while let Some((dir, prefix)) = todo.pop() {
            let entries = match fs.read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    out.insert(prefix, e.to_string());
                    continue;
                }
            };
            for e in entries.iter() {
                let path = format!("{prefix}/{}", e.name.to_str().unwrap());
                fs.attr(e.node).unwrap();
                if e.kind == FileKind::Dir {
                    todo.push((e.node, path));
                } else if let Err(err) = fs.read(e.node, 0, &mut vec![0u8; 200_000]) {
                    out.insert(path, err.to_string());
                }
            }
        }
        assert_eq!(fs.write_attempts(), 0);
        out
    })
}

fn assert_one_error(errs: &BTreeMap<String, String>, path: &str, want: &str) {
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = errs
        .get(path)
        .unwrap_or_else(|| panic!("no error for {path}: {errs:#?}"));
    assert!(e.contains(want), "{path}: {e:?} does not say {want:?}");
}

#[test]
fn damaged_file_chains_are_errors() {
    for (kind, size, name) in KINDS {
        let img = build(kind, size);
        let file = "Sub Dir/日本語 é.bin";
        let (geo, e) = locate(&img, file);
        let c1 = e.cluster;
        let fat = FatTable::new(Arc::new(Mem(img.clone())), geo.clone());
        let layout::Link::Next(c2) = fat.link(c1).unwrap() else {
            panic!("{name}: one cluster")
        };
        let last = geo.last_cluster();
        let end_mark = match geo.kind {
            layout::FatKind::Fat12 => 0xFFF,
            layout::FatKind::Fat16 => 0xFFFF,
            layout::FatKind::Fat32 => 0x0FFF_FFFF,
        };
        type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
        let cases: Vec<(&str, Damage)> = vec![
            ("loops back to cluster", Box::new(|img| set_fat(img, &geo, c2, c1))),
            ("to 1, which is reserved", Box::new(|img| set_fat(img, &geo, c1, 1))),
            (
                "past the last cluster",
                Box::new(|img| set_fat(img, &geo, c1, last + 1)),
            ),
            ("free cluster", Box::new(|img| set_fat(img, &geo, c1, 0))),
            (
                "ends after 1 clusters",
                Box::new(|img| set_fat(img, &geo, c1, end_mark)),
            ),
            (
                "starts at cluster",
                Box::new(|img| {
                    let at = e.pos as usize;
                    img[at + 20..at + 22].copy_from_slice(&0x00FFu16.to_le_bytes());
                    img[at + 26..at + 28].copy_from_slice(&0xFFF0u16.to_le_bytes());
                }),
            ),
        ];
        for (want, damage) in cases {
            let mut bad = img.clone();
            damage(&mut bad);
            assert_one_error(&errors(bad), &format!("/{file}"), want);
        }
    }
}

#[test]
fn damaged_directories_are_errors() {
    for (kind, size, name) in KINDS {
        let img = build(kind, size);
        let (geo, sub) = locate(&img, "Sub Dir");
        let (_, nested) = locate(&img, "Sub Dir/Nested");

        let mut bad = img.clone();
        set_fat(&mut bad, &geo, sub.cluster, sub.cluster);
        assert_one_error(&errors(bad), "/Sub Dir", "loops back to cluster");

        // A subdirectory that is its own parent: the tree would be infinite.
        let mut bad = img.clone();
        let at = nested.pos as usize + 26;
        bad[at..at + 2].copy_from_slice(&(sub.cluster as u16).to_le_bytes());
        if geo.kind == layout::FatKind::Fat32 {
            bad[nested.pos as usize + 20..nested.pos as usize + 22]
                .copy_from_slice(&((sub.cluster >> 16) as u16).to_le_bytes());
        }
        assert_one_error(&errors(bad), "/Sub Dir/Nested", "same directory as /Sub Dir");

        let mut bad = img.clone();
        bad[nested.pos as usize + 26..nested.pos as usize + 28].fill(0);
        bad[nested.pos as usize + 20..nested.pos as usize + 22].fill(0);
        assert_one_error(&errors(bad), "/Sub Dir/Nested", "no cluster");

        // A chain far longer than any directory may be: through free clusters from
        // the middle of the volume on.
        let mut bad = img.clone();
        let cs = u64::from(geo.cluster_size);
        let n = (layout::MAX_DIR_BYTES / cs + 8) as u32;
        let start = geo.last_cluster() / 2;
        if start + n >= geo.last_cluster() {
            assert_eq!(name, "fat12", "only FAT12 is too small for this case");
            continue;
        }
        set_fat(&mut bad, &geo, nested.cluster, start);
        for c in start..start + n {
            set_fat(&mut bad, &geo, c, c + 1);
        }
        assert_one_error(&errors(bad), "/Sub Dir/Nested", "longer than 2048 KiB");
    }
}

#[test]
fn damaged_volumes_are_errors() {
    let img = build(FatType::Fat32, 40 << 20);
    let geo = Geometry::parse(&img[..512]).unwrap();

    // A broken boot sector is refused with the reason.
    let mut bad = img.clone();
    bad[0x0B..0x0D].copy_from_slice(&1000u16.to_le_bytes());
    let e = open_mem(&bad, FatTimeZone::Utc).err().unwrap().to_string();
    assert!(e.starts_with("fat: boot sector: bytes per sector is 1000"), "{e}");

    // fatfs refuses a damaged FSInfo sector; the kernel ignores it, and so do we.
    let mut bad = img.clone();
    let at = geo.fs_info.unwrap() as usize;
    bad[at..at + 512].fill(0xAB);
    assert!(errors(bad).is_empty());

    // A root directory whose chain loops: the volume does not open (the kernel's mount
    // refuses it too).
    let mut bad = img.clone();
    let RootDir::Chain(rc) = geo.root else { unreachable!() };
    set_fat(&mut bad, &geo, rc, rc);
    assert!(errors(bad)["(open)"].contains("directory /: its cluster chain loops"));

    // A volume cut short: what lies past the end is an error, not a panic.
    let (_, e) = locate(&img, "Sub Dir/日本語 é.bin");
    let cut = (geo.cluster_offset(e.cluster) + 5000) as usize;
    let errs = errors(img[..cut].to_vec());
    assert!(
        errs["/Sub Dir/日本語 é.bin"].contains("the volume ends at byte"),
        "{errs:#?}"
    );

    for len in [0, 100, 511] {
        assert!(open_mem(&img[..len], FatTimeZone::Utc).is_err());
    }
}

#[test]
fn cp437_short_names_and_shadowed_names() {
    // A DOS-era 8.3 name with a code page 437 byte and no long name; a second entry
    // with the same name in another case, which fatfs could never open.
    let mut img = build(FatType::Fat16, 8 << 20);
    let (_, readme) = locate(&img, "README.TXT");
    let at = readme.pos as usize;
    img[at..at + 11].copy_from_slice(b"CAF\x90    TXT");
    let fs = open_mem(&img, FatTimeZone::Utc).unwrap();
    let names: Vec<_> = fs.read_dir(1).unwrap().iter().map(|e| e.name.clone()).collect();
    assert!(names.contains(&OsString::from("CAFÉ.TXT")), "{names:?}");
    let w = walk(&fs);
    assert_eq!(w["CAFÉ.TXT"].1.as_deref(), Some(&b"hello\n"[..]));

    let (_, empty) = locate(&img, "empty.dat");
    // Turn empty.dat's short entry into a second CAFÉ.TXT (dropping its long name by
    // breaking the checksum the long-name entries carry).
    let at = empty.pos as usize;
    img[at..at + 11].copy_from_slice(b"caf\x90    txt");
    let fs = open_mem(&img, FatTimeZone::Utc).unwrap();
    let names: Vec<_> = fs
        .read_dir(1)
        .unwrap()
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.to_uppercase() == "CAFÉ.TXT").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.len(), 3, "{names:?}");
}

/// A chain laid out by hand: 10-12, 30-31, 5-8, 100, on the FAT16 layout of
/// `layout::tests::fat16_boot` (2 KiB clusters).
fn hand_made_chain() -> (FatTable, Vec<u32>) {
    let boot = layout::tests::fat16_boot();
    let geo = Geometry::parse(&boot).unwrap();
    let mut img = vec![0u8; geo.volume_len as usize];
    img[..512].copy_from_slice(&boot);
    let chain = vec![10, 11, 12, 30, 31, 5, 6, 7, 8, 100];
    for w in chain.windows(2) {
        set_fat(&mut img, &geo, w[0], w[1]);
    }
    set_fat(&mut img, &geo, 100, 0xFFFF);
    (FatTable::new(Arc::new(Mem(img)), geo), chain)
}

#[test]
fn maps_a_fragmented_chain_into_runs() {
    let (fat, chain) = hand_made_chain();
    let run = |file_cluster, cluster, count| runs::Run {
        file_cluster,
        cluster,
        count,
    };
    let cs = 2048u32;
    let map = |size: u32, max_runs| ClusterMap::build(&fat, 10, size, cs, max_runs);
    let all = ClusterMap::Runs(vec![run(0, 10, 3), run(3, 30, 2), run(5, 5, 4), run(9, 100, 1)].into());
    assert_eq!(map(9 * cs + 1, 4096).unwrap(), all);
    assert_eq!(map(10 * cs, 4).unwrap(), all, "exactly max_runs runs are kept as runs");
    // A chain that goes on past the size is mapped as far as the size needs.
    assert_eq!(
        map(4 * cs, 4096).unwrap(),
        ClusterMap::Runs(vec![run(0, 10, 3), run(3, 30, 1)].into())
    );
    assert_eq!(map(1, 4096).unwrap(), ClusterMap::Runs(vec![run(0, 10, 1)].into()));
    let e = map(10 * cs + 1, 4096).unwrap_err();
    assert!(
        e.contains("ends after 10 clusters, but its size (20481 bytes) needs 11"),
        "{e}"
    );
    // The walk starts at the entry's cluster: from 11 there are only 9.
    let e = ClusterMap::build(&fat, 11, 10 * cs, cs, 4096).unwrap_err();
    assert!(e.contains("ends after 9 clusters"), "{e}");
    // One run too many: every 4th cluster (10 clusters in at most 3 samples).
    let sampled = map(10 * cs, 3).unwrap();
    assert_eq!(
        sampled,
        ClusterMap::Sampled {
            every: 4,
            clusters: vec![10, 31, 8].into()
        }
    );
    // Both shapes locate every cluster as the chain itself says, for every length.
    for at in 0..chain.len() {
        for want in 1..=chain.len() - at {
            let mut count = 1;
            while count < want && chain[at + count] == chain[at] + count as u32 {
                count += 1;
            }
            let expect = Ok((chain[at], count as u64));
            assert_eq!(all.locate(&fat, at as u64, want as u64), expect, "at {at}, want {want}");
            assert_eq!(
                sampled.locate(&fat, at as u64, want as u64),
                expect,
                "at {at}, want {want}"
            );
        }
    }
    assert!(all.locate(&fat, 10, 1).is_err());
    assert!(sampled.locate(&fat, 12, 1).is_err());
}

/// A volume whose three files were written a few clusters at a time in turn, so their
/// chains interleave; with the files' contents.
fn interleaved(kind: FatType, size: usize) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut c = IoCursor::new(vec![0u8; size]);
    fatfs::format_volume(&mut c, FormatVolumeOptions::new().fat_type(kind)).unwrap();
    c.set_position(0);
    let mut files: Vec<(String, Vec<u8>)> = (0..3).map(|i| (format!("f{i}.bin"), Vec::new())).collect();
    {
        let fs = fatfs::FileSystem::new(&mut c, fatfs::FsOptions::new()).unwrap();
        let cs = fs.cluster_size() as usize;
        let root = fs.root_dir();
        let mut open: Vec<_> = files.iter().map(|(n, _)| root.create_file(n).unwrap()).collect();
        for round in 0..12 {
            for (i, (f, (_, content))) in open.iter_mut().zip(&mut files).enumerate() {
                // Runs of one to three clusters, and pieces that end inside a cluster.
                let piece = pattern((round * 3 + i) as u8, cs * (1 + (round + i) % 3) + 13 * i);
                f.write_all(&piece).unwrap();
                content.extend_from_slice(&piece);
            }
        }
    }
    (c.into_inner(), files)
}

/// Reads at offsets and lengths that start and end inside clusters, at run boundaries
/// and past the end, each equal to the same bytes of `whole`.
fn check_pieces(fs: &FatFs, id: NodeId, whole: &[u8]) {
    let cs = fs.geo.cluster_size as usize;
    let size = whole.len();
    let mut offsets = vec![0, 1, cs - 1, cs, cs + 1, 2 * cs - 1, size - 1, size, size + 5];
    let mut lens = vec![1, 2, cs - 1, cs, cs + 1, 3 * cs + 7, 128 << 10, size, size + 100];
    let node = fs.node(id).unwrap();
    if let ClusterMap::Runs(runs) = &*fs.cluster_map(&node, node.entry.as_ref().unwrap()).unwrap() {
        for r in runs.iter() {
            let at = r.file_cluster as usize * cs;
            offsets.extend([at.saturating_sub(1), at, at + 1]);
        }
    }
    let mut x = 12345usize;
    for _ in 0..200 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        offsets.push((x >> 33) % (size + 1));
        lens.push(1 + (x >> 13) % (4 * cs));
    }
    for &off in &offsets {
        for &len in &lens {
            let mut buf = vec![0xAAu8; len];
            let n = fs.read(id, off as u64, &mut buf).unwrap();
            let end = (off + len).min(size).max(off.min(size));
            assert_eq!(n, end - off.min(size), "offset {off}, length {len}");
            assert!(buf[..n] == whole[off.min(size)..end], "offset {off}, length {len}");
        }
    }
}

#[test]
fn reads_at_any_offset_equal_the_whole_file() {
    for (kind, size, name) in KINDS {
        let (img, files) = interleaved(kind, size);
        // fatfs's own reading of the files, which this reader used before.
        let mut c = IoCursor::new(img.clone());
        let by_fatfs: Vec<Vec<u8>> = {
            let fs = fatfs::FileSystem::new(&mut c, fatfs::FsOptions::new()).unwrap();
            files
                .iter()
                .map(|(n, _)| {
                    let mut v = Vec::new();
                    fs.root_dir().open_file(n).unwrap().read_to_end(&mut v).unwrap();
                    v
                })
                .collect()
        };
        for max_runs in [MAX_RUNS, 2] {
            let mut fs = open_mem(&img, FatTimeZone::Utc).unwrap();
            fs.max_runs = max_runs;
            let w = walk(&fs);
            for ((path, content), fatfs_read) in files.iter().zip(&by_fatfs) {
                let id = w[path].0;
                assert_eq!(w[path].1.as_deref(), Some(&content[..]), "{name}: {path}");
                assert!(content == fatfs_read, "{name}: {path}: fatfs reads other bytes");
                let node = fs.node(id).unwrap();
                let map = fs.cluster_map(&node, node.entry.as_ref().unwrap()).unwrap();
                match (&*map, max_runs) {
                    (ClusterMap::Runs(runs), MAX_RUNS) => assert!(runs.len() >= 12, "{name}: {path}: {runs:?}"),
                    (ClusterMap::Sampled { .. }, 2) => {}
                    (m, _) => panic!("{name}: {path}: {m:?}"),
                }
                let mut whole = vec![0u8; content.len()];
                assert_eq!(fs.read(id, 0, &mut whole).unwrap(), content.len());
                assert!(whole == *content, "{name}: {path}: one read of the whole file");
                check_pieces(&fs, id, content);
            }
        }
    }
}
