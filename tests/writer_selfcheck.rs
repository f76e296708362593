//! Self-checks of the test-only VHDX writer (tests/support/).
//!
//! These tests must not use the crate's reader: the writer exists to test
//! that reader independently. Instead they decode the files with a small
//! parser written here from MS-VHDX, including the log scan of section 2.3.3,
//! and compare with the writer's own expected `Model`. That proves the writer
//! is self-consistent; `scripts/crosscheck_writer.py` proves it agrees with
//! independent readers.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use support::model::Model;
use support::vhdx_writer::*;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// A minimal spec-derived decoder
// ---------------------------------------------------------------------------

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn guid(b: &[u8], o: usize) -> Uuid {
    Uuid::from_bytes_le(b[o..o + 16].try_into().unwrap())
}
fn crc_with_zeroed_field(b: &[u8], at: usize) -> u32 {
    let mut c = b.to_vec();
    c[at..at + 4].fill(0);
    crc32c::crc32c(&c)
}
fn utf16(b: &[u8]) -> String {
    let u: Vec<u16> = b.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16(&u).unwrap()
}

/// The file's bytes, with the 4 KiB pages written by a log replay on top.
struct Img {
    f: File,
    /// Bytes on disk.
    phys: u64,
    /// Logical length (grows to LastFileOffset on replay).
    len: u64,
    overlay: BTreeMap<u64, Vec<u8>>,
}

impl Img {
    fn open(p: &Path) -> Img {
        let f = File::open(p).unwrap();
        let len = f.metadata().unwrap().len();
        Img {
            f,
            phys: len,
            len,
            overlay: BTreeMap::new(),
        }
    }

    fn read(&self, off: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        if off < self.phys {
            let k = ((self.phys - off) as usize).min(n);
            self.f.read_exact_at(&mut b[..k], off).unwrap();
        }
        let first = off / 4096;
        let last = (off + n as u64).div_ceil(4096);
        for (&p, page) in self.overlay.range(first..last) {
            let ps = p * 4096;
            let a = off.max(ps);
            let e = (off + n as u64).min(ps + 4096);
            b[(a - off) as usize..(e - off) as usize].copy_from_slice(&page[(a - ps) as usize..(e - ps) as usize]);
        }
        b
    }
}

#[derive(Debug)]
struct Header {
    seq: u64,
    data_write_guid: Uuid,
    log_guid: Uuid,
    log_length: u64,
    log_offset: u64,
}

/// Both headers must be valid; returns (current, other) and the current slot.
fn headers(img: &Img) -> (Header, Header, usize) {
    assert_eq!(&img.read(0, 8), b"vhdxfile");
    let h: Vec<Header> = [64 * KIB, 128 * KIB]
        .iter()
        .map(|&o| {
            let b = img.read(o, 4096);
            assert_eq!(&b[0..4], b"head");
            assert_eq!(le32(&b, 4), crc_with_zeroed_field(&b, 4), "header CRC at {o:#x}");
            assert_eq!(le16(&b, 64), 0, "LogVersion");
            assert_eq!(le16(&b, 66), 1, "Version");
            Header {
                seq: le64(&b, 8),
                data_write_guid: guid(&b, 32),
                log_guid: guid(&b, 48),
                log_length: le32(&b, 68) as u64,
                log_offset: le64(&b, 72),
            }
        })
        .collect();
    let mut it = h.into_iter();
    let (a, b) = (it.next().unwrap(), it.next().unwrap());
    assert_ne!(
        a.seq, b.seq,
        "the sequence numbers must differ so that a reader has to choose"
    );
    if a.seq > b.seq {
        (a, b, 0)
    } else {
        (b, a, 1)
    }
}

#[derive(Debug)]
struct Parsed {
    header: Header,
    bat_offset: u64,
    block_size: u64,
    lss: u64,
    virtual_size: u64,
    has_parent: bool,
    leave_allocated: bool,
    disk_id: Uuid,
    pss: u32,
    locator: Vec<(String, String)>,
    bat_entries: u64,
}

fn parse(img: &Img) -> Parsed {
    let (header, _, _) = headers(img);
    let rt = img.read(192 * KIB, 64 * KIB as usize);
    assert!(
        rt == img.read(256 * KIB, 64 * KIB as usize),
        "region table copies differ"
    );
    assert_eq!(&rt[0..4], b"regi");
    assert_eq!(le32(&rt, 4), crc_with_zeroed_field(&rt, 4), "region table CRC");
    let mut regions = BTreeMap::new();
    for i in 0..le32(&rt, 8) as usize {
        let e = 16 + 32 * i;
        assert_eq!(le32(&rt, e + 28), 1, "known regions are required");
        regions.insert(guid(&rt, e), (le64(&rt, e + 16), le32(&rt, e + 24) as u64));
    }
    let (meta_off, meta_len) = regions[&guid::METADATA_REGION];
    let (bat_offset, bat_len) = regions[&guid::BAT_REGION];
    assert!(meta_off % MIB == 0 && bat_offset % MIB == 0 && meta_len % MIB == 0 && bat_len % MIB == 0);

    let m = img.read(meta_off, meta_len as usize);
    assert_eq!(&m[0..8], b"metadata");
    let mut items: BTreeMap<Uuid, (u32, Vec<u8>)> = BTreeMap::new();
    for i in 0..le16(&m, 10) as usize {
        let e = 32 + 32 * i;
        let (off, len) = (le32(&m, e + 16) as usize, le32(&m, e + 20) as usize);
        assert!(off >= 64 * 1024, "metadata items start at 64 KiB or later");
        items.insert(guid(&m, e), (le32(&m, e + 24), m[off..off + len].to_vec()));
    }
    // Flags: IsUser=1, IsVirtualDisk=2, IsRequired=4 (MS-VHDX 2.6.2 table).
    let expect_flags = [
        (guid::FILE_PARAMETERS, 4),
        (guid::VIRTUAL_DISK_SIZE, 6),
        (guid::VIRTUAL_DISK_ID, 6),
        (guid::LOGICAL_SECTOR_SIZE, 6),
        (guid::PHYSICAL_SECTOR_SIZE, 6),
        (guid::PARENT_LOCATOR, 4),
    ];
    for (g, f) in expect_flags {
        if let Some((flags, _)) = items.get(&g) {
            assert_eq!(*flags, f, "flags of metadata item {g}");
        }
    }
    let fp = &items[&guid::FILE_PARAMETERS].1;
    let bits = le32(fp, 4);
    let has_parent = bits & 2 != 0;
    let mut locator = Vec::new();
    if has_parent {
        let l = &items[&guid::PARENT_LOCATOR].1;
        assert_eq!(guid(l, 0), guid::VHDX_LOCATOR_TYPE);
        for i in 0..le16(l, 18) as usize {
            let e = 20 + 12 * i;
            let (ko, vo) = (le32(l, e) as usize, le32(l, e + 4) as usize);
            let (kl, vl) = (le16(l, e + 8) as usize, le16(l, e + 10) as usize);
            locator.push((utf16(&l[ko..ko + kl]), utf16(&l[vo..vo + vl])));
        }
    }
    let block_size = le32(fp, 0) as u64;
    let lss = le32(&items[&guid::LOGICAL_SECTOR_SIZE].1, 0) as u64;
    let virtual_size = le64(&items[&guid::VIRTUAL_DISK_SIZE].1, 0);
    // BAT entry count (MS-VHDX 2.5), computed here independently of Geometry.
    let chunk_ratio = (1u64 << 23) * lss / block_size;
    let blocks = virtual_size.div_ceil(block_size);
    let bat_entries = if has_parent {
        blocks.div_ceil(chunk_ratio) * (chunk_ratio + 1)
    } else {
        blocks + (blocks - 1) / chunk_ratio
    };
    assert!(bat_entries * 8 <= bat_len);
    Parsed {
        header,
        bat_offset,
        block_size,
        lss,
        virtual_size,
        has_parent,
        leave_allocated: bits & 1 != 0,
        disk_id: Uuid::from_bytes_le(items[&guid::VIRTUAL_DISK_ID].1[..16].try_into().unwrap()),
        pss: le32(&items[&guid::PHYSICAL_SECTOR_SIZE].1, 0),
        locator,
        bat_entries,
    }
}

impl Parsed {
    fn chunk_ratio(&self) -> u64 {
        (1u64 << 23) * self.lss / self.block_size
    }
    fn bat(&self, img: &Img, index: u64) -> (u64, u64) {
        assert!(index < self.bat_entries);
        let v = le64(&img.read(self.bat_offset + index * 8, 8), 0);
        assert_eq!(v & 0xF_FFF8, 0, "reserved BAT bits");
        (v & 7, (v >> 20) * MIB)
    }
}

/// Reads a state through its chain (newest first) with the project's
/// semantics: NOT_PRESENT -> parent (zeros without one), 1/2/3/5 -> zeros,
/// 6 -> file, 7 -> per sector bitmap.
fn read_chain(chain: &[(Img, Parsed)], off: u64, len: u64) -> Vec<u8> {
    let (img, p) = &chain[0];
    let mut out = Vec::with_capacity(len as usize);
    let mut pos = off;
    while pos < off + len {
        let b = pos / p.block_size;
        let n = ((b + 1) * p.block_size).min(off + len) - pos;
        let (state, foff) = p.bat(img, b + b / p.chunk_ratio());
        let in_block = pos - b * p.block_size;
        match state {
            0 if chain.len() > 1 => out.extend(read_chain(&chain[1..], pos, n)),
            0 | 1 | 2 | 3 | 5 => out.extend(vec![0u8; n as usize]),
            6 => out.extend(img.read(foff + in_block, n as usize)),
            7 => {
                let chunk = b / p.chunk_ratio();
                let (sb_state, sb_off) = p.bat(img, chunk * (p.chunk_ratio() + 1) + p.chunk_ratio());
                assert_eq!(sb_state, 6, "partial block without a sector bitmap");
                let mut s = pos;
                while s < pos + n {
                    let sector_in_chunk = (s / p.lss) % (1 << 23);
                    let byte = img.read(sb_off + sector_in_chunk / 8, 1)[0];
                    if byte >> (sector_in_chunk % 8) & 1 == 1 {
                        out.extend(img.read(foff + (s - b * p.block_size), p.lss as usize));
                    } else {
                        out.extend(read_chain(&chain[1..], s, p.lss));
                    }
                    s += p.lss;
                }
            }
            other => panic!("BAT state {other} for block {b}"),
        }
        pos += n;
    }
    out
}

// --- log scan and replay (MS-VHDX 2.3.3) ----------------------------------

#[derive(Debug, Clone)]
struct Entry {
    pos: u64,
    len: u64,
    seq: u64,
    tail: u64,
    flushed: u64,
    last: u64,
    /// (file offset, Some(page) = data, None = zeros of that length)
    writes: Vec<(u64, u64, Option<Vec<u8>>)>,
}

/// Validates the entry at `pos` (sector by sector around the ring).
fn entry_at(img: &Img, h: &Header, pos: u64) -> Option<Entry> {
    let sector = |i: u64| img.read(h.log_offset + (pos + i * 4096) % h.log_length, 4096);
    let first = sector(0);
    if &first[0..4] != b"loge" || guid(&first, 32) != h.log_guid {
        return None;
    }
    let len = le32(&first, 8) as u64;
    if len == 0 || len % 4096 != 0 || len > h.log_length {
        return None;
    }
    let mut bytes = Vec::with_capacity(len as usize);
    for i in 0..len / 4096 {
        bytes.extend(sector(i));
    }
    if le32(&bytes, 4) != crc_with_zeroed_field(&bytes, 4) {
        return None;
    }
    let seq = le64(&bytes, 16);
    let count = le32(&bytes, 24) as usize;
    let mut data_at = (count as u64 + 2).div_ceil(128) as usize * 4096;
    let mut writes = Vec::new();
    for i in 0..count {
        let d = &bytes[64 + 32 * i..96 + 32 * i];
        if le64(d, 24) != seq {
            return None;
        }
        match &d[0..4] {
            b"zero" => writes.push((le64(d, 16), le64(d, 8), None)),
            b"desc" => {
                let s = &bytes[data_at..data_at + 4096];
                if &s[0..4] != b"data" || (le32(s, 4) as u64) << 32 | le32(s, 4092) as u64 != seq {
                    return None;
                }
                let mut page = s.to_vec();
                page[0..8].copy_from_slice(&d[8..16]);
                page[4092..4096].copy_from_slice(&d[4..8]);
                writes.push((le64(d, 16), 4096, Some(page)));
                data_at += 4096;
            }
            _ => return None,
        }
    }
    Some(Entry {
        pos,
        len,
        seq,
        tail: le32(&bytes, 12) as u64,
        flushed: le64(&bytes, 48),
        last: le64(&bytes, 56),
        writes,
    })
}

/// The spec's scan for the active sequence; returns its entries from the
/// head's tail to the head.
fn active_sequence(img: &Img, h: &Header) -> Vec<Entry> {
    let mut candidate: Vec<Entry> = Vec::new();
    let (mut tail, mut old_tail) = (0u64, 0u64);
    loop {
        let mut cur: Vec<Entry> = Vec::new();
        let mut at = tail;
        while let Some(e) = entry_at(img, h, at) {
            if cur.last().is_some_and(|l| e.seq != l.seq + 1) || cur.len() as u64 * 4096 > h.log_length {
                break;
            }
            at = (at + e.len) % h.log_length;
            cur.push(e);
        }
        let valid = cur.last().is_some_and(|head| cur.iter().any(|e| e.pos == head.tail));
        if valid && cur.last().unwrap().seq > candidate.last().map_or(0, |e| e.seq) {
            let head_tail = cur.last().unwrap().tail;
            let from = cur.iter().position(|e| e.pos == head_tail).unwrap();
            candidate = cur[from..].to_vec();
        }
        tail = if valid { at } else { (tail + 4096) % h.log_length };
        if tail < old_tail {
            break;
        }
        old_tail = tail;
    }
    candidate
}

/// Replays the active sequence into the image's overlay.
fn replay(img: &mut Img) -> Vec<Entry> {
    let (h, _, _) = headers(img);
    if h.log_guid.is_nil() {
        return Vec::new();
    }
    let seq = active_sequence(img, &h);
    assert!(!seq.is_empty(), "dirty log without an active sequence");
    let head = seq.last().unwrap().clone();
    assert!(img.len >= head.flushed, "file shorter than FlushedFileOffset");
    for e in &seq {
        for (off, len, page) in &e.writes {
            for k in 0..len / 4096 {
                let p = page.clone().unwrap_or_else(|| vec![0u8; 4096]);
                img.overlay.insert(off / 4096 + k, p);
            }
        }
    }
    img.len = img.len.max(head.last);
    seq
}

fn open_chain(paths: &[std::path::PathBuf]) -> Vec<(Img, Parsed)> {
    paths
        .iter()
        .map(|p| {
            let mut img = Img::open(p);
            replay(&mut img);
            let parsed = parse(&img);
            (img, parsed)
        })
        .collect()
}

fn assert_disk_eq(chain: &[(Img, Parsed)], model: &Model, what: &str) {
    let size = model.size();
    let step = 4 * MIB;
    let mut off = 0;
    while off < size {
        let n = step.min(size - off);
        let got = read_chain(chain, off, n);
        let exp = model.read(off, n as usize);
        if got != exp {
            let i = got.iter().zip(&exp).position(|(a, b)| a != b).unwrap();
            panic!(
                "{what}: first difference at {:#x}: got {:02x?} expected {:02x?}",
                off + i as u64,
                &got[i..(i + 16).min(got.len())],
                &exp[i..(i + 16).min(exp.len())]
            );
        }
        off += n;
    }
}

/// Checks data ranges plus a sample of 64 KiB windows: for disks too large to
/// read whole in a test.
fn assert_disk_sampled(chain: &[(Img, Parsed)], model: &Model, what: &str) {
    let size = model.size();
    let mut windows: Vec<(u64, u64)> = model.data_ranges();
    let mut o = 0;
    while o < size {
        windows.push((o, (64 * KIB).min(size - o)));
        o += 509 * MIB; // odd stride: lands at different block offsets
    }
    windows.push((size - (64 * KIB).min(size), (64 * KIB).min(size)));
    for (o, l) in windows {
        assert_eq!(
            read_chain(chain, o, l),
            model.read(o, l as usize),
            "{what}: range {o:#x}+{l:#x}"
        );
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if i % 8 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            (x >> (8 * (i % 8))) as u8 | 1
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn geometry_follows_the_spec_formulas() {
    // 512-byte sectors, 1 MiB blocks: chunk = 2^23 * 512 = 4 GiB, ratio 4096.
    let g = Geometry::new(10 * GIB, MIB as u32, 512);
    assert_eq!(g.chunk_size(), 4 * GIB);
    assert_eq!(g.chunk_ratio(), 4096);
    assert_eq!(g.data_blocks(), 10240);
    assert_eq!(g.bitmap_blocks(), 3);
    assert_eq!(g.bat_entries(false), 10240 + 2);
    assert_eq!(g.bat_entries(true), 3 * 4097);
    assert_eq!(g.payload_bat_index(4095), 4095);
    assert_eq!(g.payload_bat_index(4096), 4097);
    assert_eq!(g.bitmap_bat_index(0), 4096);
    assert_eq!(g.bitmap_bat_index(1), 8193);
    // Exactly one chunk of blocks: the dynamic BAT has no trailing bitmap slot.
    let g = Geometry::new(4 * GIB, MIB as u32, 512);
    assert_eq!(g.bat_entries(false), 4096);
    assert_eq!(g.bat_entries(true), 4097);
    // 4096-byte sectors, 256 MiB blocks: ratio 2^23 * 4096 / 2^28 = 128.
    let g = Geometry::new(300 * MIB + 8192, (256 * MIB) as u32, 4096);
    assert_eq!(g.chunk_ratio(), 128);
    assert_eq!(g.data_blocks(), 2);
    assert_eq!(g.block_len(1), 44 * MIB + 8192);
}

#[test]
fn model_is_sparse_and_exact() {
    let mut m = Model::new(64 * MIB, 512);
    m.write(512, &[7u8; 1024]);
    m.write(8192, &[0u8; 512]); // zeros store nothing
    m.write(10 * MIB, &[9u8; 4096]);
    assert_eq!(m.data_ranges(), vec![(0, 4096), (10 * MIB, 4096)]);
    assert_eq!(m.read(0, 2048)[..512], [0u8; 512]);
    assert_eq!(m.read(511, 3), vec![0, 7, 7]);
    m.zero(1024, 512);
    assert_eq!(m.read(1024, 512), vec![0u8; 512]);
    assert_eq!(m.read(512, 512), vec![7u8; 512]);
    m.zero(0, 64 * MIB);
    assert!(m.data_ranges().is_empty());
}

#[test]
fn dynamic_disk_structures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");
    let mut spec = VhdxSpec::new(Geometry::new(64 * MIB + 1024, (2 * MIB) as u32, 512));
    spec.current_header = 0;
    spec.geometry.physical_sector_size = 512;
    spec.blocks
        .insert(0, BlockState::FullyPresent(pattern(1, 2 * MIB as usize)));
    spec.blocks.insert(3, BlockState::Zero);
    spec.blocks.insert(4, BlockState::UnmappedLegacy);
    spec.blocks.insert(32, BlockState::FullyPresent(pattern(2, 1024))); // short last block
    let layout = write_vhdx(&path, &spec).unwrap();

    let img = Img::open(&path);
    let (cur, other, slot) = headers(&img);
    assert_eq!(slot, 0);
    assert_eq!(cur.seq, spec.header_sequence);
    assert_eq!(other.seq, spec.header_sequence - 1);
    assert_eq!(cur.data_write_guid, spec.data_write_guid);
    assert_ne!(
        other.data_write_guid, spec.data_write_guid,
        "the stale header must not look current"
    );
    assert!(cur.log_guid.is_nil());
    assert_eq!((cur.log_offset, cur.log_length), (layout.log_offset, layout.log_length));

    let p = parse(&img);
    assert_eq!(p.virtual_size, 64 * MIB + 1024);
    assert_eq!(p.block_size, 2 * MIB);
    assert_eq!((p.lss, p.pss), (512, 512));
    assert_eq!(p.disk_id, spec.virtual_disk_id);
    assert!(!p.has_parent && !p.leave_allocated);
    assert_eq!(p.bat_entries, 33);
    assert_eq!(p.bat(&img, 0), (6, layout.block_offsets[&0]));
    assert_eq!(p.bat(&img, 3), (2, 0));
    assert_eq!(p.bat(&img, 4), (5, 0));
    assert_eq!(p.bat(&img, 1), (0, 0));
    assert_eq!(p.bat(&img, 32), (6, layout.block_offsets[&32]));
    assert_eq!(layout.metadata_items.len(), 5);
    assert!(layout.file_len % MIB == 0 && layout.file_len == layout.last_file_offset);
    // Everything 1 MiB aligned and non-overlapping.
    let mut spans = vec![
        (0, MIB),
        (layout.log_offset, layout.log_length),
        (layout.metadata_offset, layout.metadata_length),
        (layout.bat_offset, layout.bat_length),
    ];
    spans.extend(layout.block_offsets.values().map(|&o| (o, 2 * MIB)));
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "overlap {w:?}");
        assert_eq!(w[1].0 % MIB, 0);
    }
    let model = expected_model(None, &spec);
    assert_disk_eq(&[(img, p)], &model, "dynamic");
}

#[test]
fn parent_locator_and_fixed_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = ChainBuilder::new(dir.path(), 24 * MIB, 4096);
    let base = b.base("base.vhdx", (8 * MIB) as u32, true, |e| {
        e.write(4096, &pattern(3, 8192))
    });
    let child = b.child_with(
        base,
        "child.avhdx",
        MIB as u32,
        |e| e.write(0, &pattern(4, 4096)),
        |s| {
            let p = s.parent.as_mut().unwrap();
            p.linkage2 = Some(braced(Uuid::nil()));
            p.volume_path = Some("\\\\?\\Volume{x}\\base.vhdx".into());
            p.extra.push(("k".into(), "v".into()));
        },
    );
    let pbase = parse(&Img::open(&b.path(&base)));
    assert!(pbase.leave_allocated);
    for blk in 0..3 {
        assert_eq!(
            pbase.bat(&Img::open(&b.path(&base)), blk).0,
            6,
            "fixed: every block present"
        );
    }
    let pchild = parse(&Img::open(&b.path(&child)));
    assert!(pchild.has_parent);
    let linkage = braced(b.spec(&base).data_write_guid);
    assert_eq!(linkage, linkage.to_lowercase());
    assert_eq!(
        pchild.locator,
        vec![
            ("parent_linkage".to_string(), linkage),
            ("parent_linkage2".to_string(), braced(Uuid::nil())),
            ("relative_path".to_string(), ".\\base.vhdx".to_string()),
            ("volume_path".to_string(), "\\\\?\\Volume{x}\\base.vhdx".to_string()),
            (
                "absolute_win32_path".to_string(),
                "\\\\?\\C:\\VMs\\base.vhdx".to_string()
            ),
            ("k".to_string(), "v".to_string()),
        ]
    );
    // The linkage names the parent's *current* DataWriteGuid.
    let (hp, _, _) = headers(&Img::open(&b.path(&base)));
    assert_eq!(braced(hp.data_write_guid), pchild.locator[0].1);
    let chain = open_chain(&[b.path(&child), b.path(&base)]);
    assert_disk_eq(&chain, b.expected(&child), "child of fixed");
}

/// Every block state, mixed block sizes, partial blocks, copy-up and a
/// sibling, for both sector sizes.
#[test]
fn chains_read_back_as_their_models() {
    for lss in [512u32, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let ss = lss as u64;
        let size = 100 * MIB + 2 * ss;
        let mut b = ChainBuilder::new(dir.path(), size, lss);
        let base = b.base("base.vhdx", (4 * MIB) as u32, false, |e| {
            e.write(0, &pattern(10, 3 * MIB as usize));
            e.write(20 * MIB, &pattern(11, 8 * MIB as usize));
            e.write(size - ss, &pattern(12, ss as usize));
            e.zero_block(10);
            e.unmap_block(11, true);
        });
        let c1 = b.child(base, "c1.avhdx", (32 * MIB) as u32, |e| {
            e.write(ss * 3, &pattern(13, ss as usize));
            e.write(21 * MIB, &pattern(14, 2 * ss as usize));
            e.write(size - ss, &pattern(15, ss as usize));
        });
        let c2 = b.child(c1, "c2.avhdx", MIB as u32, |e| {
            e.write(MIB, &pattern(16, MIB as usize));
            e.write(2 * MIB + ss, &pattern(17, ss as usize));
            e.zero_block(20);
            e.unmap_block(22, false);
            e.unmap_block(24, true);
            e.undefine_block(26);
            // A write into a ZERO block: fully present, zeros around it.
            e.zero_block(27);
            e.write(27 * MIB + ss, &pattern(18, ss as usize));
        });
        let c3 = b.child(c2, "c3.avhdx", (256 * MIB) as u32, |e| {
            e.full_blocks(true);
            e.write(5 * MIB, &pattern(19, ss as usize));
        });
        let sib = b.child(c1, "sib.avhdx", (2 * MIB) as u32, |e| {
            e.write(21 * MIB + ss, &pattern(20, ss as usize));
        });
        assert!(matches!(b.spec(&c2).blocks[&27], BlockState::FullyPresent(_)));
        assert!(matches!(b.spec(&c2).blocks[&2], BlockState::PartiallyPresent { .. }));
        assert!(matches!(b.spec(&c3).blocks[&0], BlockState::FullyPresent(_)));
        // The model semantics, stated directly.
        let m2 = b.expected(&c2);
        assert_eq!(m2.read(20 * MIB, 8), vec![0; 8], "ZERO over parent data reads zeros");
        assert_eq!(
            m2.read(26 * MIB, 8),
            vec![0; 8],
            "UNDEFINED over parent data reads zeros"
        );
        assert_eq!(b.expected(&c3).read(20 * MIB, 8), vec![0; 8], "copy-up keeps zeros");
        assert_eq!(b.expected(&c1).read(20 * MIB, 64), b.expected(&base).read(20 * MIB, 64));
        for id in [base, c1, c2, c3, sib] {
            let paths: Vec<_> = b.chain(&id).iter().map(|c| b.path(c)).collect();
            let chain = open_chain(&paths);
            for (i, c) in b.chain(&id).iter().enumerate() {
                assert_eq!(chain[i].1.header.data_write_guid, b.spec(c).data_write_guid);
            }
            assert_disk_eq(&chain, b.expected(&id), &format!("{lss} {}", b.file_name(&id)));
        }
    }
}

/// Three 4 GiB chunks: BAT interleaving with partial blocks and sector
/// bitmaps in the 2nd and 3rd chunk; the files stay sparse.
#[test]
fn multi_chunk_differencing_disk() {
    let dir = tempfile::tempdir().unwrap();
    let size = 9 * GIB + 4096;
    let chunk = 4 * GIB;
    let mut b = ChainBuilder::new(dir.path(), size, 512);
    let base = b.base("base.vhdx", (64 * MIB) as u32, false, |e| {
        e.write(chunk - 512, &pattern(30, 1024));
        e.write(2 * chunk + 512, &pattern(31, 512));
    });
    let c1 = b.child(base, "c1.avhdx", MIB as u32, |e| {
        e.write(chunk + 512 * 5, &pattern(32, 512));
        e.write(2 * chunk + 1024, &pattern(33, 1536));
        e.write(chunk - 1024, &pattern(34, 1024)); // chunk 0, last sectors
    });
    let s = b.spec(&c1);
    let g = s.geometry;
    let layout = b.layout(&c1);
    assert_eq!(
        layout.sector_bitmap_offsets.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let img = Img::open(&b.path(&c1));
    let p = parse(&img);
    assert_eq!(p.bat_entries, 3 * 4097);
    for (&blk, st) in &s.blocks {
        let (state, off) = p.bat(&img, blk + blk / 4096);
        assert_eq!(state, st.bat_state());
        assert_eq!(off, layout.block_offsets[&blk]);
    }
    for (&c, &off) in &layout.sector_bitmap_offsets {
        assert_eq!(p.bat(&img, c * 4097 + 4096), (6, off));
    }
    // Block 4096 (first of chunk 1): sector 5 present = bit 5 of byte 0.
    let bm = img.read(layout.sector_bitmap_offsets[&1], 1)[0];
    assert_eq!(bm, 1 << 5);
    assert_eq!(g.payload_bat_index(4096), 4097);
    let chain = open_chain(&[b.path(&c1), b.path(&base)]);
    assert_disk_sampled(&chain, b.expected(&c1), "9 GiB child");
    for id in [base, c1] {
        let meta = std::fs::metadata(b.path(&id)).unwrap();
        assert!(meta.blocks() * 512 < 16 * MIB, "{} is not sparse", b.file_name(&id));
    }
}

fn dirty_variants() -> Vec<(&'static str, DirtyLog)> {
    vec![
        ("default", DirtyLog::default()),
        ("minimal", DirtyLog::minimal()),
        (
            "wrap-in-head",
            DirtyLog {
                wrap: LogWrap::InsideEntry(usize::MAX),
                ..DirtyLog::default()
            },
        ),
        (
            "wrap-between",
            DirtyLog {
                wrap: LogWrap::BeforeEntry(1),
                entries: 4,
                ..DirtyLog::default()
            },
        ),
        (
            "many-descriptors",
            DirtyLog {
                payload_pages_in_log: 400,
                entries: 2,
                wrap: LogWrap::None,
                interleave_zero_descriptors: false,
                ..DirtyLog::default()
            },
        ),
        (
            "far-log",
            DirtyLog {
                log_offset: Some(40 * MIB),
                log_length: Some(3 * MIB as u32),
                ..DirtyLog::default()
            },
        ),
    ]
}

/// The log's active sequence (found by the spec's scan, ignoring the traps)
/// replays to exactly the expected disk, and without replay the file is
/// not that disk.
#[test]
fn dirty_logs_replay_to_their_models() {
    for (name, d) in dirty_variants() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = ChainBuilder::new(dir.path(), 32 * MIB, 512);
        let base = b.base("base.vhdx", MIB as u32, false, |e| {
            e.write(0, &pattern(40, MIB as usize));
            e.write(3 * MIB, &pattern(41, 4096));
        });
        let child = b.child_with(
            base,
            "c.avhdx",
            MIB as u32,
            |e| {
                for i in 0..24u64 {
                    e.write(i * MIB + 4096 * (i % 5), &pattern(50 + i, 16384 * (1 + i as usize % 4)));
                }
                e.write(3 * MIB + 512, &pattern(42, 512));
                e.zero_block(30);
            },
            |s| s.log = LogSpec::Dirty(d.clone()),
        );
        let layout = b.layout(&child);
        let mut img = Img::open(&b.path(&child));
        let seq = replay(&mut img);
        let found: Vec<u64> = seq.iter().map(|e| layout.log_offset + e.pos).collect();
        assert_eq!(found, layout.log_entry_offsets, "{name}: active sequence");
        let counts: Vec<usize> = seq.iter().map(|e| e.writes.len()).collect();
        assert_eq!(counts, layout.log_entry_descriptors, "{name}: descriptor counts");
        if name == "many-descriptors" {
            assert!(counts.iter().any(|&n| n > 126));
        }
        if d.truncate_file && layout.log_offset < layout.bat_offset {
            assert!(layout.file_len < layout.last_file_offset, "{name}: truncated");
            assert_eq!(std::fs::metadata(b.path(&child)).unwrap().len(), layout.file_len);
        }
        let parsed = parse(&img);
        let chain = vec![
            (img, parsed),
            (Img::open(&b.path(&base)), parse(&Img::open(&b.path(&base)))),
        ];
        assert_disk_eq(&chain, b.expected(&child), name);

        // The log is load-bearing: replay changes pages that readers need.
        let raw = Img::open(&b.path(&child));
        let changed = chain[0]
            .0
            .overlay
            .iter()
            .filter(|(k, p)| raw.read(*k * 4096, 4096) != **p)
            .count();
        assert!(changed > 0, "{name}: the log carries nothing");
    }
}

#[test]
fn invalid_specs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.vhdx");
    for bs in [MIB / 2, 3 * MIB, 512 * MIB] {
        assert!(write_vhdx(&p, &VhdxSpec::new(Geometry::new(64 * MIB, bs as u32, 512))).is_err());
    }
    assert!(write_vhdx(&p, &VhdxSpec::new(Geometry::new(64 * MIB + 512, MIB as u32, 4096))).is_err());
    let mut s = VhdxSpec::new(Geometry::new(64 * MIB, MIB as u32, 512));
    s.blocks.insert(
        0,
        BlockState::PartiallyPresent {
            data: vec![0; MIB as usize],
            present: vec![true; 3],
        },
    );
    assert!(write_vhdx(&p, &s).is_err());
    let mut s = VhdxSpec::new(Geometry::new(64 * MIB, MIB as u32, 512));
    s.blocks.insert(64, BlockState::Zero);
    assert!(write_vhdx(&p, &s).is_err());
}
