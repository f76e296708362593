//! Whole files built by hand in a temp dir: `map` for every bitmap pattern, footer
//! copies, locators and the guards that need a file.

use std::path::Path;

use super::dynamic_header::tests::header_bytes;
use super::footer::tests::footer_bytes;
use super::*;

const BS: u32 = 4096; // 8 sectors a block, a 512-byte bitmap
const SIZE: u64 = 5 * BS as u64;
const HDR: u64 = 512;
const BAT: u64 = 1536;
const FIRST_BLOCK: u64 = 2048;
const PARENT_ID: [u8; 16] = [0xAB; 16];

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A dynamic (3) or differencing (4) file: `blocks[i]` is `None` (unallocated) or the
/// bitmap's first byte; block data byte = 0x10 + block. Locators are appended after
/// the blocks: `(code, data)`.
fn build(disk_type: u32, blocks: &[Option<u8>], locators: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    build_with(disk_type, blocks, locators, 0x10)
}

/// [`build`] with block data bytes `fill + block`.
fn build_with(disk_type: u32, blocks: &[Option<u8>], locators: &[(&[u8; 4], Vec<u8>)], fill: u8) -> Vec<u8> {
    let mut data = Vec::new();
    let mut bat = vec![0xFFu8; 4 * blocks.len()];
    let mut at = FIRST_BLOCK;
    for (i, b) in blocks.iter().enumerate() {
        if let Some(bits) = b {
            bat[4 * i..4 * i + 4].copy_from_slice(&((at / 512) as u32).to_be_bytes());
            let mut bitmap = vec![0u8; 512];
            bitmap[0] = *bits;
            data.extend_from_slice(&bitmap);
            data.extend(std::iter::repeat_n(fill.wrapping_add(i as u8), BS as usize));
            at += 512 + u64::from(BS);
        }
    }
    let mut locs = Vec::new();
    let mut loc_data = Vec::new();
    for (code, d) in locators {
        locs.push((**code, 1, d.len() as u32, at));
        let mut padded = d.clone();
        padded.resize(d.len().div_ceil(512).max(1) * 512, 0);
        at += padded.len() as u64;
        loc_data.extend(padded);
    }
    let footer = footer_bytes(b"win ", disk_type, SIZE, (10, 4, 17), HDR);
    let mut f = footer.clone();
    f.extend(header_bytes(BAT, blocks.len() as u32, BS, PARENT_ID, "base.vhd", &locs));
    f.extend(&bat);
    f.resize(FIRST_BLOCK as usize, 0);
    f.extend(data);
    f.extend(loc_data);
    f.extend(footer);
    f
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn runs(f: &VhdFile, offset: u64, len: u64) -> Vec<(u64, Source)> {
    let mut out = Vec::new();
    f.map(offset, len, &mut out).unwrap();
    assert_eq!(out.iter().map(|r| r.len).sum::<u64>(), len, "runs cover the range");
    out.into_iter().map(|r| (r.len / 512, r.source)).collect()
}

/// File offset of sector `s` of the `n`-th allocated block.
fn data(n: u64, s: u64) -> Source {
    Source::Data {
        file_offset: FIRST_BLOCK + n * (512 + u64::from(BS)) + 512 + s * 512,
    }
}

#[test]
fn differencing_map_follows_every_bitmap_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = [None, Some(0xFF), Some(0x00), Some(0b1011_0001), Some(0x7F)];
    let locs = [
        (b"W2ku", utf16le("C:\\vms\\base.vhd")),
        (b"W2ru", utf16le(".\\base.vhd")),
        (b"Mac ", b"ignored".to_vec()),
    ];
    let p = write(dir.path(), "child.vhd", &build(4, &blocks, &locs));
    let f = VhdFile::open(&p).unwrap();
    use Source::{Parent, Zero};
    assert_eq!(runs(&f, 0, SIZE), {
        let mut v = vec![(8, Parent), (8, data(0, 0)), (8, Parent)];
        v.extend([
            (1, data(2, 0)),
            (1, Parent),
            (2, data(2, 2)),
            (3, Parent),
            (1, data(2, 7)),
        ]);
        v.extend([(1, Parent), (7, data(3, 1))]);
        v
    });
    // A range inside a block starts at its own sector.
    assert_eq!(runs(&f, 3 * 4096 + 1024, 1536), vec![(2, data(2, 2)), (1, Parent)]);
    assert_eq!(runs(&f, 512, 512), vec![(1, Parent)]);
    assert!(runs(&f, 0, 0).is_empty());
    assert!(f.map(SIZE - 512, 1024, &mut Vec::new()).is_err());
    assert!(f.map(1, 512, &mut Vec::new()).is_err());
    let mut buf = [0u8; 4];
    let Source::Data { file_offset } = data(3, 1) else {
        unreachable!()
    };
    f.read_data(file_offset, &mut buf).unwrap();
    assert_eq!(buf, [0x14; 4]);
    let _ = Zero;

    // The parent: hints in the order W2ru, W2ku, then the name; the id from the header.
    let parent = f.parent().unwrap();
    let hints: Vec<(&str, &str)> = parent
        .hints
        .iter()
        .map(|h| (h.label.as_str(), h.path.as_str()))
        .collect();
    assert_eq!(
        hints,
        vec![
            ("W2ru", ".\\base.vhd"),
            ("W2ku", "C:\\vms\\base.vhd"),
            ("parent_name", "base.vhd")
        ]
    );
    assert_eq!(parent.identities[0].value, braced(&uuid::Uuid::from_bytes(PARENT_ID)));
    assert_eq!(f.identity().value, "{6a1b0000-0000-4000-8000-000000000001}");
    assert_eq!(f.allocated_blocks().unwrap(), 4);
    let info = f.info().unwrap();
    assert_eq!(info.json["type"], "differencing");
    assert_eq!(info.json["dynamic"]["parent"]["locators"][2]["code"], "Mac ");
    assert!(info.text.contains("parent name:"), "{}", info.text);
}

#[test]
fn dynamic_map_reads_clear_bits_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "d.vhd",
        &build(3, &[None, Some(0xF0), None, None, None], &[]),
    );
    let f = VhdFile::open(&p).unwrap();
    assert_eq!(
        runs(&f, 0, 2 * 4096),
        vec![(8, Source::Zero), (4, data(0, 0)), (4, Source::Zero)]
    );
    assert!(f.parent().is_none());
    assert_eq!(f.info().unwrap().json["dynamic"]["parent"], serde_json::Value::Null);
}

#[test]
fn damaged_end_footer_falls_back_to_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = build(3, &[Some(0xFF); 5], &[]);
    let n = b.len();
    b[n - 100] ^= 1;
    let f = VhdFile::open(&write(dir.path(), "a.vhd", &b)).unwrap();
    assert_eq!(f.footer_copy, FooterCopy::Start);
    assert!(f.warnings[0].contains("checksum"), "{:?}", f.warnings);
    // Both damaged: the end footer's error.
    b[100] ^= 1;
    let e = VhdFile::open(&write(dir.path(), "b.vhd", &b)).unwrap_err().to_string();
    assert!(e.contains("footer at offset") && e.contains("checksum"), "{e}");
}

#[test]
fn old_511_byte_footer_and_fixed_disks() {
    let dir = tempfile::tempdir().unwrap();
    let mut b: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
    b.extend(&footer_bytes(b"vpc ", 2, 8192, (1, 1, 16), u64::MAX)[..511]);
    let f = VhdFile::open(&write(dir.path(), "f.vhd", &b)).unwrap();
    assert_eq!(
        (f.footer_copy, f.size, f.size_rule),
        (FooterCopy::End511, 8192, SizeRule::Geometry)
    );
    assert_eq!(runs(&f, 512, 1024), vec![(2, Source::Data { file_offset: 512 })]);
    // A fixed disk larger than its file.
    let mut b = vec![0u8; 4096];
    b.extend(footer_bytes(b"win ", 2, 8192, (1, 1, 16), u64::MAX));
    let e = VhdFile::open(&write(dir.path(), "g.vhd", &b)).unwrap_err().to_string();
    assert!(e.contains("truncated: fixed disk data"), "{e}");
}

#[test]
fn hostile_bat_entries_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = build(4, &[Some(0xFF); 5], &[(b"W2ru", utf16le("p.vhd"))]);
    for (sector, what) in [
        (0xFFFF_FFFEu32, "sector bitmap past the end"),
        (0, "footer copy"),
        (3, "the BAT"),
    ] {
        let mut b = good.clone();
        let at = BAT as usize + 8;
        b[at..at + 4].copy_from_slice(&sector.to_be_bytes());
        let f = VhdFile::open(&write(dir.path(), "h.vhd", &b)).unwrap();
        let e = f.map(2 * 4096, 4096, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains(what) && e.contains("BAT entry at offset 0x608") && e.contains("block 2"),
            "{e}"
        );
        // Other blocks still read.
        assert_eq!(runs(&f, 0, 4096), vec![(8, data(0, 0))]);
    }
}

#[test]
fn damaged_locators_are_skipped_unless_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = build(
        4,
        &[None; 5],
        &[(b"W2ru", utf16le("p.vhd")), (b"W2ku", utf16le("C:\\p.vhd"))],
    );
    // Entry 0's length runs past its one-sector space.
    let e0 = (HDR + 576 + 8) as usize;
    b[e0..e0 + 4].copy_from_slice(&600u32.to_be_bytes());
    let fix_header = |b: &mut Vec<u8>| {
        let h = &mut b[HDR as usize..HDR as usize + 1024];
        super::dynamic_header::tests::fix(h);
    };
    fix_header(&mut b);
    let f = VhdFile::open(&write(dir.path(), "l.vhd", &b)).unwrap();
    assert_eq!(f.parent_hints()[0].label, "W2ku");
    assert!(f.warnings[0].contains("entry 0 (W2ru)"), "{:?}", f.warnings);
    // No name, the other locator past the file: an error naming the first entry.
    b[HDR as usize + 64..HDR as usize + 576].fill(0);
    let e1 = (HDR + 576 + 24 + 16) as usize;
    b[e1..e1 + 8].copy_from_slice(&(u64::MAX - 4).to_be_bytes());
    fix_header(&mut b);
    let e = VhdFile::open(&write(dir.path(), "m.vhd", &b)).unwrap_err().to_string();
    assert!(
        e.contains("parent locator entry at offset 0x440") && e.contains("data space"),
        "{e}"
    );
}

#[test]
fn header_and_bat_guards() {
    let dir = tempfile::tempdir().unwrap();
    let good = build(3, &[None; 5], &[]);
    let with_header = |f: &dyn Fn(&mut [u8])| {
        let mut b = good.clone();
        let h = &mut b[HDR as usize..HDR as usize + 1024];
        f(h);
        super::dynamic_header::tests::fix(h);
        VhdFile::open(&write(dir.path(), "x.vhd", &b))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = with_header(&|h| h[28..32].copy_from_slice(&4u32.to_be_bytes()));
    assert!(e.contains("cannot cover the 5 blocks"), "{e}");
    let e = with_header(&|h| h[16..24].copy_from_slice(&(u64::MAX - 8).to_be_bytes()));
    assert!(e.contains("truncated: BAT"), "{e}");
    let e = with_header(&|h| h[32..36].copy_from_slice(&3000u32.to_be_bytes()));
    assert!(e.contains("power of two"), "{e}");
    // A data offset past the file.
    let mut b = good.clone();
    let n = b.len();
    for at in [16usize, n - 512 + 16] {
        b[at..at + 8].copy_from_slice(&(u64::MAX - 100).to_be_bytes());
    }
    super::footer::tests::fix(&mut b[..512]);
    super::footer::tests::fix(&mut b[n - 512..]);
    let e = VhdFile::open(&write(dir.path(), "y.vhd", &b)).unwrap_err().to_string();
    assert!(e.contains("truncated: dynamic header"), "{e}");
}

#[test]
fn sparse_2tb_disk_opens_without_reading_its_bat() {
    let dir = tempfile::tempdir().unwrap();
    let size = 2u64 << 40;
    let entries = (size / (2 << 20)) as u32;
    let mut b = footer_bytes(b"win ", 3, size, (65535, 16, 255), HDR);
    b.extend(header_bytes(BAT, entries, 2 << 20, [0; 16], "", &[]));
    b.resize(BAT as usize + entries as usize * 4, 0xFF);
    b.extend(footer_bytes(b"win ", 3, size, (65535, 16, 255), HDR));
    let p = write(dir.path(), "big.vhd", &b);
    let t = std::time::Instant::now();
    let f = VhdFile::open(&p).unwrap();
    assert!(t.elapsed() < std::time::Duration::from_millis(200));
    assert_eq!(runs(&f, size - (1 << 20), 1 << 20), vec![(2048, Source::Zero)]);
}

#[test]
fn parent_time_stamp_mismatch_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let child = VhdFile::open(&write(
        dir.path(),
        "c.vhd",
        &build(4, &[None; 5], &[(b"W2ru", utf16le("p.vhd"))]),
    ))
    .unwrap();
    let parent = VhdFile::open(&write(dir.path(), "p.vhd", &build(3, &[None; 5], &[]))).unwrap();
    let w = child.parent_warnings(&parent);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("2015-") && w[0].contains("was modified at"), "{w:?}");
    let at = footer::vhd_time(0x1e00_0000);
    let f = std::fs::File::options().write(true).open(parent.path()).unwrap();
    f.set_modified(at).unwrap();
    assert!(child.parent_warnings(&parent).is_empty());
}

/// Give a built file its own unique id and its parent's (both footers, the header).
fn set_ids(b: &mut [u8], unique: [u8; 16], parent: [u8; 16]) {
    let n = b.len();
    for at in [0, n - 512] {
        b[at + 68..at + 84].copy_from_slice(&unique);
        super::footer::tests::fix(&mut b[at..at + 512]);
    }
    let h = &mut b[HDR as usize..HDR as usize + 1024];
    h[40..56].copy_from_slice(&parent);
    super::dynamic_header::tests::fix(h);
}

/// Fifty differencing layers over a dynamic base, found by the chain and read through
/// it: each sector comes from the topmost layer whose bitmap has it.
#[test]
fn fifty_layers_read_through_the_chain() {
    use crate::chain::{CheckpointTree, DiscoverOptions};
    use crate::io::ReadAt;
    let dir = tempfile::tempdir().unwrap();
    let id = |i: usize| [i as u8 + 1; 16];
    let mut base = build_with(3, &[Some(0xFF), None, None, None, None], &[], 0);
    set_ids(&mut base, id(0), [0; 16]);
    write(dir.path(), "layer0.vhd", &base);
    let mut want = vec![0u8; SIZE as usize];
    for i in 1..=50usize {
        // Layer i writes sector (i % 40) of the disk, and nothing else.
        let sector = i % 40;
        let (block, bit) = (sector / 8, sector % 8);
        let mut blocks = [None; 5];
        blocks[block] = Some(0x80u8 >> bit);
        let loc = utf16le(&format!(".\\layer{}.vhd", i - 1));
        let mut b = build_with(4, &blocks, &[(b"W2ru", loc)], (i * 3) as u8);
        set_ids(&mut b, id(i), id(i - 1));
        write(dir.path(), &format!("layer{i}.vhd"), &b);
        want[sector * 512..sector * 512 + 512].fill((i * 3 + block) as u8);
    }
    let tree = CheckpointTree::discover(&dir.path().join("layer50.vhd"), &DiscoverOptions::default()).unwrap();
    assert_eq!(tree.checkpoints.len(), 51);
    let top = tree.checkpoints.iter().position(|c| c.current).unwrap();
    let disk = tree.disk(top);
    let mut got = vec![0u8; SIZE as usize];
    disk.read_at(0, &mut got).unwrap();
    assert_eq!(got, want);
}
