//! Compressed NTFS files read back exactly: LZNT1 files written by ntfs-3g (`-o
//! compression` in a directory flagged compressed), and WOF files in all four algorithms
//! whose `WofCompressedData` stream wimlib's compressors made (scripts/wof_compress.py)
//! and ntfs-3g wrote, with the reparse point and the sparse unnamed stream Windows
//! gives them. libfsntfs, an independent reader, confirms each fixture; ckptfs must
//! return the source bytes through the GuestFs (from many threads) and through
//! `ckptfs cat` on a VHDX that qemu-img made. Damaged copies are errors, not bytes.
//!
//! Needs root, /dev/fuse, ntfs-3g, attr, qemu-img, wimlib (libwim15) and libfsntfs-python
//! (scripts/install-test-deps.sh); skipped without them unless CKPTFS_REQUIRE_TOOLS is set.

mod util;

use util::ntfs3g::Ntfs3g as Mount;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ckptfs::fs::{ntfs, GuestFs, NodeId};
use ckptfs::io::ImageFile;
use util::{ckptfs, pseudo_random};

const ALGORITHMS: [&str; 4] = ["xpress4k", "xpress8k", "xpress16k", "lzx"];

fn chunk_size(algorithm: &str) -> usize {
    match algorithm {
        "xpress4k" => 4096,
        "xpress8k" => 8192,
        "xpress16k" => 16384,
        _ => 32768,
    }
}

fn require(what: &str) -> bool {
    if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() {
        panic!("{what} (CKPTFS_REQUIRE_TOOLS is set)");
    }
    util::skip(what);
    false
}

/// Whether this machine can build the fixtures: root, /dev/fuse and the tools.
fn can_run() -> bool {
    for tool in ["mkntfs", "ntfs-3g", "ntfsinfo", "setfattr", "qemu-img", "python3"] {
        if !util::have_tool(tool) {
            return false;
        }
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root || !Path::new("/dev/fuse").exists() {
        return require("ntfs-3g mounts need root and /dev/fuse");
    }
    let python_has = |code: &str| {
        Command::new("python3")
            .args(["-c", code])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !python_has("import ctypes, ctypes.util; ctypes.CDLL(ctypes.util.find_library('wim') or 'libwim.so.15')") {
        return require("wimlib (Debian libwim15) is not installed");
    }
    if !python_has("import pyfsntfs") {
        return require("libfsntfs-python (pyfsntfs) is not installed");
    }
    true
}

fn mkntfs(img: &Path, size: u64, cluster: u32, label: &str) {
    File::create(img).unwrap().set_len(size).unwrap();
    let c = cluster.to_string();
    util::run(
        "mkntfs",
        &["-F", "-Q", "-q", "-c", &c, "-L", label, img.to_str().unwrap()],
    );
}

fn set_compressed(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    util::run(
        "setfattr",
        &[
            "-h",
            "-v",
            "0x00000800",
            "-n",
            "system.ntfs_attrib_be",
            dir.to_str().unwrap(),
        ],
    );
}

/// Text-like bytes that compress well but not trivially.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "checkpoint",
        "volume",
        "cluster",
        "the",
        "of",
        "record",
        "index",
        "stream",
        "sparse",
        "unit",
        "a",
        "chunk",
    ];
    let r = pseudo_random(seed, len / 2 + 16);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(words[r[i % r.len()] as usize % words.len()].as_bytes());
        out.push(if r[(i + 1) % r.len()] % 9 == 0 { b'\n' } else { b' ' });
        i += 1;
    }
    out.truncate(len);
    out
}

/// Compressible and incompressible stretches, and zeros, in pieces of varied sizes.
fn mixed(seed: u64, len: usize) -> Vec<u8> {
    let r = pseudo_random(seed, 4096);
    let mut out = Vec::with_capacity(len);
    let mut k = 0;
    while out.len() < len {
        let piece =
            1000 + (u32::from_le_bytes(r[k * 4 % 4092..k * 4 % 4092 + 4].try_into().unwrap()) % 150_000) as usize;
        let piece = piece.min(len - out.len());
        match k % 4 {
            0 | 2 => out.extend(text(seed + k as u64, piece)),
            1 => out.extend(pseudo_random(seed * 31 + k as u64, piece)),
            _ => out.extend(std::iter::repeat_n(0u8, piece)),
        }
        k += 1;
    }
    out
}

/// Units alternating compressible and incompressible 4 KiB chunks: LZNT1 stores the
/// incompressible chunks of a compressed unit uncompressed.
fn chunk_mix(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut k = 0;
    while out.len() < len {
        let n = 4096.min(len - out.len());
        if k % 3 == 1 {
            out.extend(pseudo_random(seed + k, n));
        } else {
            out.extend(text(seed + k, n));
        }
        k += 1;
    }
    out
}

/// One file of a fixture: where it is on the volume, what it holds, and whether
/// libfsntfs can confirm it (its LZX decoder rejects some valid streams wimlib makes).
struct Fixture {
    path: String,
    data: Vec<u8>,
    libfsntfs: bool,
}

/// The LZNT1 files, written through the mount into `dir` (flagged compressed).
fn write_lznt1(m: &Mount, dir: &str, sizes_scale: usize) -> Vec<Fixture> {
    set_compressed(&m.path(dir));
    let mut files = vec![
        ("empty.bin", Vec::new()),
        ("one.bin", b"x".to_vec()),
        ("tiny.txt", b"tiny\n".to_vec()),
        ("small.bin", text(1, 700)),
        ("4k.bin", text(2, 4096)),
        ("64k_plus_1.bin", mixed(3, 65537)),
        ("random.bin", pseudo_random(4, 300_000)),
        ("zeros.bin", vec![0u8; 1 << 20]),
        ("chunk_mix.bin", chunk_mix(5, 640 * 1024 + 100)),
        ("mixed.bin", mixed(6, sizes_scale * (6 << 20) + 12345)),
    ];
    for (name, data) in &files {
        fs::write(m.path(&format!("{dir}/{name}")), data).unwrap();
    }
    // Holes: whole sparse units, data islands, a tail past the last write.
    let mut sparse = vec![0u8; 8 << 20];
    let mut f = File::create(m.path(&format!("{dir}/sparse.bin"))).unwrap();
    f.set_len(sparse.len() as u64).unwrap();
    for (at, island) in [
        (100_000usize, text(7, 5000)),
        ((3 << 20) + 7, pseudo_random(8, 200_000)),
        ((6 << 20) - 3, mixed(9, 70_000)),
    ] {
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(&island).unwrap();
        sparse[at..at + island.len()].copy_from_slice(&island);
    }
    drop(f);
    files.push(("sparse.bin", sparse));
    // Grown after writing: the tail is past the initialized size.
    let mut grown = text(10, 10_000);
    let mut f = File::create(m.path(&format!("{dir}/grown.bin"))).unwrap();
    f.write_all(&grown).unwrap();
    f.set_len(200_000).unwrap();
    drop(f);
    grown.resize(200_000, 0);
    files.push(("grown.bin", grown));
    files
        .into_iter()
        .map(|(name, data)| Fixture {
            path: format!("{dir}/{name}"),
            data,
            libfsntfs: true,
        })
        .collect()
}

/// The `WofCompressedData` stream of `data` and its reparse buffer (as hex), from
/// wimlib's compressors.
fn wof_parts(work: &Path, algorithm: &str, data: &[u8], level: u32) -> (Vec<u8>, String) {
    let src = work.join("wof_src");
    let out = work.join("wof_stream");
    fs::write(&src, data).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wof_compress.py");
    let o = Command::new("python3")
        .arg(&script)
        .args([
            algorithm,
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--level",
            &level.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "wof_compress.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        fs::read(&out).unwrap(),
        String::from_utf8(o.stdout).unwrap().trim().to_string(),
    )
}

/// A WOF file as Windows leaves it: the stream, a sparse unnamed stream of the file's
/// size, then the reparse point (after which ntfs-3g will not open the file).
fn put_wof(m: &Mount, rel: &str, size: u64, stream: &[u8], reparse: &str) {
    let path = m.path(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    File::create(&path).unwrap();
    fs::write(format!("{}:WofCompressedData", path.display()), stream).unwrap();
    File::options().write(true).open(&path).unwrap().set_len(size).unwrap();
    util::run(
        "setfattr",
        &["-n", "system.ntfs_reparse_data", "-v", reparse, path.to_str().unwrap()],
    );
}

fn write_wof(m: &Mount, work: &Path) -> Vec<Fixture> {
    let mut out = Vec::new();
    for (a, algorithm) in ALGORITHMS.into_iter().enumerate() {
        let chunk = chunk_size(algorithm);
        let seed = 100 * (a as u64 + 1);
        let files: Vec<(&str, Vec<u8>, u32)> = vec![
            // Small enough for the stream to be resident in the file record.
            ("tiny.bin", text(seed, 100), 50),
            ("one_chunk.bin", text(seed + 1, chunk), 50),
            // The last chunk holds one byte.
            ("short_tail.bin", mixed(seed + 2, 3 * chunk + 1), 50),
            ("exact.bin", text(seed + 3, 8 * chunk), 100),
            // Every chunk stored raw.
            ("random.bin", pseudo_random(seed + 4, 5 * chunk + 333), 50),
            ("mixed.bin", mixed(seed + 5, (3 << 20) + 777), 20),
            ("mixed_best.bin", mixed(seed + 6, (1 << 20) + 5), 100),
        ];
        for (name, data, level) in files {
            let rel = format!("wof/{algorithm}/{name}");
            let (stream, reparse) = wof_parts(work, algorithm, &data, level);
            put_wof(m, &rel, data.len() as u64, &stream, &reparse);
            out.push(Fixture {
                path: rel,
                data,
                libfsntfs: algorithm != "lzx",
            });
        }
    }
    // Long runs of repeats: an LZX stream libfsntfs's decoder accepts.
    let data = b"ab".repeat(150_000);
    let (stream, reparse) = wof_parts(work, "lzx", &data, 50);
    put_wof(m, "wof/lzx/repeats.bin", data.len() as u64, &stream, &reparse);
    out.push(Fixture {
        path: "wof/lzx/repeats.bin".into(),
        data,
        libfsntfs: true,
    });
    out
}

/// libfsntfs reads each fixture it can from the image as the source bytes.
fn confirm_with_libfsntfs(img: &Path, work: &Path, files: &[Fixture]) {
    let mut list = String::new();
    for (i, f) in files.iter().filter(|f| f.libfsntfs).enumerate() {
        let src = work.join(format!("expect_{i}"));
        fs::write(&src, &f.data).unwrap();
        list.push_str(&format!("\\{}\t{}\n", f.path.replace('/', "\\"), src.display()));
    }
    let script = r#"
import sys, pyfsntfs
v = pyfsntfs.volume()
v.open(sys.argv[1])
bad = []
for line in sys.stdin.read().splitlines():
    path, src = line.split("\t")
    want = open(src, "rb").read()
    e = v.get_file_entry_by_path(path)
    got = e.read_buffer(e.get_size()) if e.get_size() else b""
    if got != want:
        bad.append(path)
print("\n".join(bad))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, img.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "libfsntfs: {}", String::from_utf8_lossy(&o.stderr));
    let bad = String::from_utf8_lossy(&o.stdout);
    assert!(bad.trim().is_empty(), "libfsntfs disagrees with the fixture on:\n{bad}");
}

fn lookup(fs: &dyn GuestFs, path: &str) -> NodeId {
    let mut node = fs.root();
    for part in path.split('/') {
        node = fs
            .read_dir(node)
            .unwrap()
            .iter()
            .find(|e| e.name.to_string_lossy() == part)
            .unwrap_or_else(|| panic!("{path}: no {part}"))
            .node;
    }
    node
}

fn read_all(fs: &dyn GuestFs, node: NodeId, piece: usize) -> ckptfs::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        let n = fs.read(node, out.len() as u64, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Every fixture through the GuestFs: whole, in odd-sized pieces, and from 8 threads at
/// random offsets and lengths.
fn check_guest(fs: &ntfs::NtfsFs, files: &[Fixture]) {
    let nodes: Vec<NodeId> = files.iter().map(|f| lookup(fs, &f.path)).collect();
    for (f, &node) in files.iter().zip(&nodes) {
        assert_eq!(fs.attr(node).unwrap().size, f.data.len() as u64, "{}: size", f.path);
        for piece in [1 << 20, 4095, 100_000] {
            let got = read_all(fs, node, piece).unwrap_or_else(|e| panic!("{}: {e}", f.path));
            util::assert_same_bytes(&got, &f.data, &format!("{} read in pieces of {piece}", f.path));
        }
    }
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let nodes = &nodes;
            s.spawn(move || {
                for x in pseudo_random(900 + t, 8 * 300).chunks_exact(8) {
                    let x = u64::from_le_bytes(x.try_into().unwrap());
                    let i = (x % files.len() as u64) as usize;
                    let want = &files[i].data;
                    let off = ((x >> 8) % (want.len() as u64 + 1)) as usize;
                    let mut buf = vec![0u8; ((x >> 40) % 200_000) as usize];
                    let n = fs.read(nodes[i], off as u64, &mut buf).unwrap();
                    let end = (off + buf.len()).min(want.len());
                    assert_eq!(n, end - off, "{} at {off}", files[i].path);
                    assert!(buf[..n] == want[off..end], "{} at {off}+{n}", files[i].path);
                }
            });
        }
    });
}

/// The image as a VHDX (qemu-img), and the directory the CLI shows its volume under.
fn vhdx_of(img: &Path) -> (PathBuf, String) {
    let vhdx = img.with_extension("vhdx");
    util::run(
        "qemu-img",
        &["convert", "-O", "vhdx", img.to_str().unwrap(), vhdx.to_str().unwrap()],
    );
    let ls = ckptfs(["ls", vhdx.to_str().unwrap(), "01_current"]).ok().stdout_str();
    let vol = ls
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && *l != "disk.img")
        .unwrap_or_else(|| panic!("no volume directory in: {ls}"))
        .to_string();
    (vhdx, vol)
}

fn check_cli(vhdx: &Path, vol: &str, files: &[Fixture]) {
    for f in files {
        let out = ckptfs(["cat", vhdx.to_str().unwrap(), &format!("01_current/{vol}/{}", f.path)]).ok();
        util::assert_same_bytes(&out.stdout, &f.data, &format!("ckptfs cat {}", f.path));
    }
}

fn open_image(img: &Path) -> ntfs::NtfsFs {
    ntfs::open(Arc::new(ImageFile::open(img).unwrap())).unwrap()
}

#[test]
fn compressed_files_read_exactly() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let img = work.join("c.img");
    mkntfs(&img, 160 << 20, 4096, "compressed");
    let mut files;
    {
        let m = Mount::new(&img, &work.join("rw"), "compression,streams_interface=windows");
        files = write_lznt1(&m, "lznt1", 1);
        files.extend(write_wof(&m, work));
    }
    // The fixtures are what they should be: compressed, and right by another reader.
    let info = Command::new("ntfsinfo")
        .args(["-F", "/lznt1/mixed.bin"])
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Compression unit:\t 4"),
        "mixed.bin is not compressed:\n{info}"
    );
    confirm_with_libfsntfs(&img, work, &files);

    let fs = open_image(&img);
    check_guest(&fs, &files);
    let (vhdx, vol) = vhdx_of(&img);
    check_cli(&vhdx, &vol, &files);
}

/// Volumes with clusters smaller than 4 KiB have smaller compression units (16 clusters).
#[test]
fn lznt1_with_small_clusters() {
    if !can_run() {
        return;
    }
    for cluster in [512u32, 2048] {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("s.img");
        mkntfs(&img, 64 << 20, cluster, "small");
        let files = {
            let m = Mount::new(&img, &tmp.path().join("rw"), "compression");
            write_lznt1(&m, "c", 0)
        };
        confirm_with_libfsntfs(&img, tmp.path(), &files);
        check_guest(&open_image(&img), &files);
    }
}

/// A WOF file over 4 GiB: 8-byte chunk offsets. Mostly zeros (so the fixture is small),
/// with distinct data at the start, across the 4 GiB mark and at the end.
#[test]
fn wof_over_4_gib() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let size: u64 = (4 << 30) + 123_457;
    let islands: Vec<(u64, Vec<u8>)> = vec![
        (0, mixed(1, 100_000)),
        ((4 << 30) - 50_000, mixed(2, 100_000)),
        (size - 70_000, text(3, 70_000)),
    ];
    let src = work.join("big_src");
    let mut f = File::create(&src).unwrap();
    f.set_len(size).unwrap();
    for (at, d) in &islands {
        f.seek(SeekFrom::Start(*at)).unwrap();
        f.write_all(d).unwrap();
    }
    drop(f);
    let stream_path = work.join("big_stream");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wof_compress.py");
    let o = Command::new("python3")
        .arg(&script)
        .args(["lzx", src.to_str().unwrap(), stream_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reparse = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let stream = fs::read(&stream_path).unwrap();
    let chunks = size.div_ceil(32768);
    let first_entry = u64::from_le_bytes(stream[..8].try_into().unwrap());
    assert!(
        first_entry < 32768,
        "8-byte entries: the first is chunk 1's offset, {first_entry}"
    );

    let img = work.join("big.img");
    mkntfs(&img, (64 << 20) + stream.len() as u64 * 2, 4096, "big");
    {
        let m = Mount::new(&img, &work.join("rw"), "streams_interface=windows");
        put_wof(&m, "big.bin", size, &stream, &reparse);
    }
    let fs = open_image(&img);
    let node = lookup(&fs, "big.bin");
    assert_eq!(fs.attr(node).unwrap().size, size);
    let mut src = File::open(&src).unwrap();
    let mut ranges: Vec<(u64, usize)> = islands.iter().map(|(at, d)| (*at, d.len())).collect();
    ranges.extend([
        ((4 << 30) - 40_000, 80_000),
        ((chunks - 1) * 32768 - 10, 5000),
        (size - 10, 10),
        (2 << 30, 70_000),
    ]);
    for (at, len) in ranges {
        let mut want = vec![0u8; len];
        src.seek(SeekFrom::Start(at)).unwrap();
        src.read_exact(&mut want).unwrap();
        let mut got = vec![0u8; len];
        assert_eq!(fs.read(node, at, &mut got).unwrap(), len, "at {at}");
        util::assert_same_bytes(&got, &want, &format!("big.bin at {at}"));
    }
    let mut b = [0u8; 16];
    assert_eq!(fs.read(node, size, &mut b).unwrap(), 0);
}

/// Errors, never bytes, for damaged compressed files; the others still read.
#[test]
fn damaged_compressed_files_are_errors() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let img = work.join("d.img");
    mkntfs(&img, 64 << 20, 4096, "damaged");
    let good_lznt1 = mixed(1, 300_000);
    let victim_lznt1 = mixed(2, 300_000);
    let data = mixed(3, 200_000);
    let mut damaged: Vec<(String, &str)> = Vec::new();
    let mut good: Vec<(String, Vec<u8>)> = vec![("c/good.bin".into(), good_lznt1.clone())];
    {
        let m = Mount::new(&img, &work.join("rw"), "compression,streams_interface=windows");
        set_compressed(&m.path("c"));
        fs::write(m.path("c/good.bin"), &good_lznt1).unwrap();
        fs::write(m.path("c/victim.bin"), &victim_lznt1).unwrap();
        for algorithm in ALGORITHMS {
            let (stream, reparse) = wof_parts(work, algorithm, &data, 50);
            let chunks = data.len().div_ceil(chunk_size(algorithm));
            let table = (chunks - 1) * 4;
            let entry = |s: &[u8], k: usize| u32::from_le_bytes(s[4 * k..4 * k + 4].try_into().unwrap()) as usize;
            let dir = format!("w/{algorithm}");
            put_wof(&m, &format!("{dir}/good.bin"), data.len() as u64, &stream, &reparse);
            good.push((format!("{dir}/good.bin"), data.clone()));

            let mut s = stream.clone();
            s[4..8].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
            put_wof(
                &m,
                &format!("{dir}/offset_outside.bin"),
                data.len() as u64,
                &s,
                &reparse,
            );
            damaged.push((format!("{dir}/offset_outside.bin"), "chunk table"));

            let mut s = stream.clone();
            let (a, b) = (entry(&s, 1), entry(&s, 2));
            s[4..8].copy_from_slice(&(b as u32).to_le_bytes());
            s[8..12].copy_from_slice(&(a as u32).to_le_bytes());
            put_wof(
                &m,
                &format!("{dir}/offsets_backwards.bin"),
                data.len() as u64,
                &s,
                &reparse,
            );
            damaged.push((format!("{dir}/offsets_backwards.bin"), "chunk table"));

            let s = &stream[..table + entry(&stream, chunks / 2)];
            put_wof(&m, &format!("{dir}/truncated.bin"), data.len() as u64, s, &reparse);
            damaged.push((format!("{dir}/truncated.bin"), "chunk"));

            put_wof(
                &m,
                &format!("{dir}/no_table.bin"),
                data.len() as u64,
                &stream[..10],
                &reparse,
            );
            damaged.push((format!("{dir}/no_table.bin"), "too short"));

            // A compressed chunk overwritten with 0xFF: an over-subscribed XPRESS table,
            // an unknown LZX block type.
            let mut s = stream.clone();
            let k = (0..chunks - 1)
                .find(|&k| entry(&stream, k + 1) - entry(&stream, k) < chunk_size(algorithm))
                .expect("a compressed chunk");
            s[table + entry(&stream, k)..table + entry(&stream, k + 1)].fill(0xFF);
            put_wof(&m, &format!("{dir}/garbage_chunk.bin"), data.len() as u64, &s, &reparse);
            damaged.push((format!("{dir}/garbage_chunk.bin"), "damaged"));
        }
        let (stream, _) = wof_parts(work, "xpress4k", &data, 50);
        for (name, reparse, why) in [
            (
                "bad_algorithm.bin",
                "0x170000801000000001000000020000000100000009000000",
                "unknown algorithm",
            ),
            (
                "wim_provider.bin",
                "0x170000801000000001000000010000000100000000000000",
                "WIM",
            ),
        ] {
            put_wof(&m, &format!("w/{name}"), data.len() as u64, &stream, reparse);
            damaged.push((format!("w/{name}"), why));
        }
    }

    // The first chunk header of victim.bin's first unit gets a bad signature.
    let info = Command::new("ntfsinfo")
        .args(["-v", "-F", "/c/victim.bin"])
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    let runs = info.split("Runlist:").nth(1).expect("victim.bin's runlist");
    let lcn = runs
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no LCN in:\n{info}"));
    let mut bytes = fs::read(&img).unwrap();
    let at = (lcn * 4096) as usize;
    assert_eq!(bytes[at + 1] & 0xF0, 0xB0, "victim.bin starts with a compressed chunk");
    bytes[at + 1] = 0x8F;
    fs::write(&img, &bytes).unwrap();
    damaged.push(("c/victim.bin".into(), "LZNT1"));

    let fs = open_image(&img);
    for (path, why) in &damaged {
        let node = lookup(&fs, path);
        let err = read_all(&fs, node, 1 << 20).expect_err(path).to_string();
        assert!(err.contains(why), "{path}: {err}");
        assert_eq!(read_all(&fs, node, 1 << 20).unwrap_err().errno(), libc::EIO, "{path}");
    }
    for (path, want) in &good {
        let got = read_all(&fs, lookup(&fs, path), 65536).unwrap();
        util::assert_same_bytes(&got, want, path);
    }
    let (vhdx, vol) = vhdx_of(&img);
    for (path, why) in &damaged {
        // The reason is logged (a warning) and is the error line, which comes last.
        let out = ckptfs(["cat", vhdx.to_str().unwrap(), &format!("01_current/{vol}/{path}")]);
        let last = out.stderr.lines().last().unwrap_or_default();
        assert_eq!(out.code, Some(1), "{path}: {}", out.stderr);
        assert!(
            last.starts_with("ckptfs: ") && last.contains(why),
            "{path}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{path}: {}", out.stderr);
    }
    for (path, want) in &good {
        let out = ckptfs(["cat", vhdx.to_str().unwrap(), &format!("01_current/{vol}/{path}")]).ok();
        util::assert_same_bytes(&out.stdout, want, path);
    }
}

/// Read speed of compressed files against the same bytes uncompressed, through the
/// GuestFs on a raw image in the page cache, with a fresh reader (empty caches) per run:
///
///     cargo test --release --test ntfs_compression -- --ignored --nocapture speed
#[test]
#[ignore]
fn speed() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let img = work.join("speed.img");
    let size = 64 << 20;
    mkntfs(&img, 600 << 20, 4096, "speed");
    let data = mixed(42, size);
    {
        let m = Mount::new(&img, &work.join("rw"), "compression,streams_interface=windows");
        fs::write(m.path("plain.bin"), &data).unwrap();
        set_compressed(&m.path("c"));
        fs::write(m.path("c/lznt1.bin"), &data).unwrap();
        for algorithm in ALGORITHMS {
            let (stream, reparse) = wof_parts(work, algorithm, &data, 50);
            put_wof(&m, &format!("{algorithm}.bin"), size as u64, &stream, &reparse);
        }
    }
    let _ = fs::read(&img);
    let files = [
        "plain.bin",
        "c/lznt1.bin",
        "xpress4k.bin",
        "xpress8k.bin",
        "xpress16k.bin",
        "lzx.bin",
    ];
    println!(
        "{} MiB of mixed data (text, random, zeros), sequential reads, best of 3:",
        size >> 20
    );
    for piece in [128 << 10, 4 << 20] {
        let mut plain = 0.0;
        for f in files {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let fs = open_image(&img);
                let node = lookup(&fs, f);
                let t = Instant::now();
                let got = read_all(&fs, node, piece).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                assert!(got == data, "{f}");
            }
            let mib_s = size as f64 / best / (1 << 20) as f64;
            if f == "plain.bin" {
                plain = mib_s;
            }
            println!(
                "  {:>15} in {:>4} KiB reads: {:>7.0} MiB/s ({:.0}% of uncompressed)",
                f,
                piece >> 10,
                mib_s,
                100.0 * mib_s / plain
            );
        }
    }
}
