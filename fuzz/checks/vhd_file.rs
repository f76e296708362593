//! Whole VHD files written to a temp dir: `VhdFile::open`, `map`, `read_data`,
//! `parent_hints`, `allocated_blocks`.
//!
//! Input: mode (bits 0-1: fixed / dynamic / differencing; bits 2-3: creator "win ",
//! "vpc ", "qemu", "d2v "), block size 512 << 0..3, current size in sectors, geometry,
//! then flags (bit 0 spoil the end footer, bit 1 spoil the copy at 0, bit 2 write the
//! old 511-byte footer, bit 3 cut the file, bit 4 header offset from the input, bit 5
//! BAT offset from the input, bit 6 max table entries off by -1..+1, bit 7 damage one
//! byte anywhere), for a differencing disk a parent name flag and up to three locators
//! (code, path, space, length/offset overrides), then one selector per block (not
//! allocated / a raw sector number / allocated with bitmap bytes from the input), then
//! ranges to map.
//!
//! Exact outcomes, against a reference written here that decodes the file's bytes
//! itself: whether `open` fails and with which kind (footer choice: the 512-byte footer
//! at the end, else the 511-byte one, else the copy at 0 of a non-fixed disk; size
//! rule; fixed data inside the file; dynamic header; BAT covering the disk and inside
//! the file; for a differencing disk, locators that fail with nothing left to find the
//! parent by); the parent hints in order; and for every range the exact runs or the
//! kind of error (a block overlapping the footer copy, header or BAT, its bitmap or
//! mapped data past the file), with bitmap bits most significant first; the data runs
//! read back the file's bytes.

use std::path::Path;

use ckptfs::format::vhd::VhdFile;
use ckptfs::format::{DiskFile, Layer, Run, Source};

use super::{be16, be32, be64, pattern, vhd_fix, vhd_kind, vhd_sum, Input, VhdKind};

const CREATORS: [&[u8; 4]; 4] = [b"win ", b"vpc ", b"qemu", b"d2v "];
const CODES: [&[u8; 4]; 6] = [b"W2ru", b"W2ku", b"Wi2r", b"Wi2k", b"Mac ", b"MacX"];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let file = build(&mut inp);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.vhd");
    std::fs::write(&path, &file).unwrap();
    let ranges: Vec<(u64, u64)> = (0..6).map(|_| (u64::from(inp.u16()), u64::from(inp.u16()))).collect();
    compare(&path, &file, &ranges);
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn build(inp: &mut Input) -> Vec<u8> {
    let mode = inp.u8();
    let disk_type: u32 = 2 + u32::from(mode % 4).min(2);
    let creator = CREATORS[usize::from(mode >> 2) % 4];
    let bs: u64 = 512 << (inp.u8() % 4);
    let current = 512 * (1 + u64::from(inp.u8() % 48));
    let chs = (u16::from(inp.u8() % 8), 1 + inp.u8() % 4, inp.u8() % 20);
    let flags = inp.u8();
    let chs_size = u64::from(chs.0) * u64::from(chs.1) * u64::from(chs.2) * 512;
    let size = if matches!(creator, b"vpc " | b"qemu") {
        chs_size
    } else {
        current
    };

    let mut footer = vec![0u8; 512];
    footer[..8].copy_from_slice(b"conectix");
    footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    footer[28..32].copy_from_slice(creator);
    footer[40..48].copy_from_slice(&current.to_be_bytes());
    footer[48..56].copy_from_slice(&current.to_be_bytes());
    footer[56..58].copy_from_slice(&chs.0.to_be_bytes());
    footer[58] = chs.1;
    footer[59] = chs.2;
    footer[60..64].copy_from_slice(&disk_type.to_be_bytes());
    footer[68..84].copy_from_slice(&[0x5A; 16]);

    let mut f;
    if disk_type == 2 {
        footer[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        vhd_fix(&mut footer, 64);
        f = (0..size).map(|i| pattern(7, i)).collect::<Vec<u8>>();
    } else {
        let hdr: u64 = if flags & 0x10 != 0 { u64::from(inp.u16()) } else { 512 };
        footer[16..24].copy_from_slice(&hdr.to_be_bytes());
        vhd_fix(&mut footer, 64);
        let blocks = size.div_ceil(bs);
        let entries = if flags & 0x40 != 0 {
            (blocks + u64::from(inp.u8() % 3)).saturating_sub(1)
        } else {
            blocks
        };
        let bat: u64 = if flags & 0x20 != 0 { u64::from(inp.u16()) } else { 1536 };
        let mut h = vec![0u8; 1024];
        h[..8].copy_from_slice(b"cxsparse");
        h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        h[16..24].copy_from_slice(&bat.to_be_bytes());
        h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        h[28..32].copy_from_slice(&(entries as u32).to_be_bytes());
        h[32..36].copy_from_slice(&(bs as u32).to_be_bytes());
        h[40..56].copy_from_slice(&[0xA5; 16]);
        f = footer.clone();
        f.resize(1536 + 4 * entries as usize, 0);
        let hdr_end = (hdr as usize).saturating_add(1024);
        if hdr_end <= 1 << 16 && f.len() < hdr_end {
            f.resize(hdr_end, 0);
        }
        f.resize(f.len().div_ceil(512) * 512, 0);
        let mut tail = Vec::new();
        let mut at = f.len() as u64;
        if disk_type == 4 {
            if inp.bool() {
                let name: Vec<u8> = "parent.vhd".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
                h[64..64 + name.len()].copy_from_slice(&name);
            }
            for i in 0..usize::from(inp.u8() % 4) {
                let c = inp.u8();
                let code = CODES[usize::from(c) % CODES.len()];
                let text = if c & 0x10 != 0 {
                    "C:\\vm\\parent.vhd"
                } else {
                    ".\\parent.vhd"
                };
                let mut d = if code[1] == b'2' {
                    utf16le(text)
                } else {
                    text.as_bytes().to_vec()
                };
                if c & 0x20 != 0 {
                    d.clear();
                }
                let space: u32 = if c & 0x40 != 0 { 512 } else { 1 };
                let len = if c & 0x80 != 0 {
                    u32::from(inp.u16())
                } else {
                    d.len() as u32
                };
                let off = if c & 0x08 != 0 { u64::from(inp.u32()) } else { at };
                let e = 576 + 24 * i;
                h[e..e + 4].copy_from_slice(code);
                h[e + 4..e + 8].copy_from_slice(&space.to_be_bytes());
                h[e + 8..e + 12].copy_from_slice(&len.to_be_bytes());
                h[e + 16..e + 24].copy_from_slice(&off.to_be_bytes());
                d.resize(512, 0);
                tail.extend(d);
                at += 512;
            }
        }
        vhd_fix(&mut h, 36);
        // The header at its offset (unless that is far past what is built).
        if hdr_end <= 1 << 16 {
            f[hdr as usize..hdr_end].copy_from_slice(&h);
        }
        f.extend(tail);
        let bat_at = bat as usize;
        let bat_end = bat_at + 4 * entries as usize;
        if bat_end <= 1 << 16 && f.len() < bat_end {
            f.resize(bat_end, 0);
        }
        f.resize(f.len().div_ceil(512) * 512, 0);
        let mut table = Vec::new();
        let bitmap = (bs / 512).div_ceil(8).div_ceil(512) * 512;
        let mut next = f.len() as u64;
        let mut blocks_data = Vec::new();
        for b in 0..entries {
            let s = inp.u8();
            let entry = match s % 4 {
                0 => u32::MAX,
                1 => inp.u32(),
                _ => {
                    let sector = (next / 512) as u32;
                    let mut bm = vec![0u8; bitmap as usize];
                    let n = (bs / 512).div_ceil(8) as usize;
                    for x in bm.iter_mut().take(n) {
                        *x = if s & 0x80 != 0 { 0xFF } else { inp.u8() };
                    }
                    blocks_data.extend(bm);
                    blocks_data.extend((0..bs).map(|i| pattern(b, i)));
                    next += bitmap + bs;
                    sector
                }
            };
            table.extend(entry.to_be_bytes());
        }
        if bat_end <= 1 << 16 {
            // The table may land on the header; what the reader sees is what counts.
            f[bat_at..bat_end].copy_from_slice(&table);
        }
        f.extend(blocks_data);
        if flags & 2 != 0 {
            f[100] ^= 0x40;
        }
    }
    if flags & 4 != 0 {
        f.extend(&footer[..511]);
    } else {
        f.extend(&footer);
    }
    let n = f.len();
    if flags & 1 != 0 {
        f[n - 412] ^= 0x40;
    }
    if flags & 8 != 0 {
        let cut = usize::from(inp.u16()) % n.min(4096);
        f.truncate(n - cut);
    }
    if flags & 0x80 != 0 && !f.is_empty() {
        let at = inp.u32() as usize % f.len();
        f[at] ^= inp.u8() | 1;
    }
    f
}

/// What the reference expects of the file: its size, type, and enough to map.
struct Model {
    size: u64,
    disk_type: u32,
    hdr: u64,
    bat: u64,
    entries: u64,
    bs: u64,
    hints: Vec<(String, String)>,
}

fn footer_ok(b: &[u8]) -> Result<(), VhdKind> {
    if &b[..8] != b"conectix" {
        return Err(VhdKind::Cookie);
    }
    if vhd_sum(b, 64) != be32(b, 64) {
        return Err(VhdKind::Checksum);
    }
    if be32(b, 12) >> 16 != 1 {
        return Err(VhdKind::Unsupported);
    }
    if !(2..=4).contains(&be32(b, 60)) {
        return Err(VhdKind::Corrupt);
    }
    Ok(())
}

fn reference_open(f: &[u8]) -> Result<Model, VhdKind> {
    let len = f.len();
    let e512 = if len >= 512 {
        footer_ok(&f[len - 512..])
    } else {
        Err(VhdKind::Truncated)
    };
    let e511 = if len >= 511 {
        footer_ok(&f[len - 511..])
    } else {
        Err(VhdKind::Truncated)
    };
    let (footer, footer_len): (Vec<u8>, u64) = if e512.is_ok() {
        (f[len - 512..].to_vec(), 512)
    } else if e511.is_ok() {
        (f[len - 511..].to_vec(), 511)
    } else {
        let end_err = match (e512, e511) {
            (Err(VhdKind::Cookie), Err(k)) if k != VhdKind::Cookie => k,
            (Err(k), _) => k,
            _ => unreachable!(),
        };
        match len >= 512 && footer_ok(&f[..512]).is_ok() && be32(f, 60) != 2 {
            true => (f[..512].to_vec(), 0),
            false => return Err(end_err),
        }
    };
    let current = be64(&footer, 48);
    let chs = (be16(&footer, 56), footer[58], footer[59]);
    let size = match &footer[28..32] {
        b"vpc " | b"qemu" if chs != (65535, 16, 255) => u64::from(chs.0) * u64::from(chs.1) * u64::from(chs.2) * 512,
        _ => current,
    } / 512
        * 512;
    if size == 0 {
        return Err(VhdKind::Corrupt);
    }
    let disk_type = be32(&footer, 60);
    let len = len as u64;
    if disk_type == 2 {
        let fl = if footer_len == 511 { 511 } else { 512 };
        if size > len.saturating_sub(fl) {
            return Err(VhdKind::Truncated);
        }
        return Ok(Model {
            size,
            disk_type,
            hdr: 0,
            bat: 0,
            entries: 0,
            bs: 0,
            hints: Vec::new(),
        });
    }
    let hdr = be64(&footer, 16);
    if hdr.checked_add(1024).is_none_or(|e| e > len) {
        return Err(VhdKind::Truncated);
    }
    let h = &f[hdr as usize..hdr as usize + 1024];
    if &h[..8] != b"cxsparse" {
        return Err(VhdKind::Cookie);
    }
    if vhd_sum(h, 36) != be32(h, 36) {
        return Err(VhdKind::Checksum);
    }
    if be32(h, 24) >> 16 != 1 {
        return Err(VhdKind::Unsupported);
    }
    let bs = u64::from(be32(h, 32));
    if bs < 512 || !bs.is_power_of_two() {
        return Err(VhdKind::Corrupt);
    }
    let entries = u64::from(be32(h, 28));
    let bat = be64(h, 16);
    if size.div_ceil(bs) > entries {
        return Err(VhdKind::Corrupt);
    }
    if bat.checked_add(entries * 4).is_none_or(|e| e > len) {
        return Err(VhdKind::Truncated);
    }
    let mut hints = Vec::new();
    if disk_type == 4 {
        let mut found: Vec<(usize, String, String)> = Vec::new();
        let mut failed = false;
        for i in 0..8 {
            let e = &h[576 + 24 * i..600 + 24 * i];
            let code = &e[..4];
            let rank = [&b"W2ru"[..], b"W2ku", b"Wi2r", b"Wi2k"]
                .iter()
                .position(|c| *c == code);
            let Some(rank) = rank else { continue };
            let (space, dlen, off) = (u64::from(be32(e, 4)), u64::from(be32(e, 8)), be64(e, 16));
            if dlen == 0 || dlen > 65536 || dlen > space * 512 || off.checked_add(dlen).is_none_or(|x| x > len) {
                failed = true;
                continue;
            }
            let d = &f[off as usize..(off + dlen) as usize];
            let path = if rank < 2 {
                let units: Vec<u16> = d
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                String::from_utf16_lossy(&units)
            } else {
                let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
                match std::str::from_utf8(&d[..end]) {
                    Ok(s) => s.to_string(),
                    Err(_) => d[..end].iter().map(|&c| c as char).collect(),
                }
            };
            if path.is_empty() {
                failed = true;
                continue;
            }
            found.push((rank, String::from_utf8_lossy(code).into_owned(), path));
        }
        found.sort_by_key(|x| x.0); // stable: entry order within a code
        hints = found.into_iter().map(|(_, c, p)| (c, p)).collect();
        let units: Vec<u16> = h[64..576]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        if !units.is_empty() {
            hints.push(("parent_name".into(), String::from_utf16_lossy(&units)));
        }
        if failed && hints.is_empty() {
            return Err(VhdKind::Corrupt);
        }
    }
    Ok(Model {
        size,
        disk_type,
        hdr,
        bat,
        entries,
        bs,
        hints,
    })
}

/// The runs of `offset..offset + len`, or the kind of the first block's error.
fn reference_map(f: &[u8], m: &Model, offset: u64, len: u64) -> Result<Vec<Run>, VhdKind> {
    let mut out = Vec::new();
    if m.disk_type == 2 {
        if len > 0 {
            out.push(Run {
                len,
                source: Source::Data { file_offset: offset },
            });
        }
        return Ok(out);
    }
    let missing = if m.disk_type == 4 { Source::Parent } else { Source::Zero };
    let bitmap = (m.bs / 512).div_ceil(8).div_ceil(512) * 512;
    let flen = f.len() as u64;
    let mut pos = offset;
    while pos < offset + len {
        let block = pos / m.bs;
        let in_block = pos % m.bs;
        let n = (m.bs - in_block).min(offset + len - pos);
        let entry = be32(f, (m.bat + 4 * block) as usize);
        if entry == u32::MAX {
            out.push(Run {
                len: n,
                source: missing,
            });
            pos += n;
            continue;
        }
        let start = u64::from(entry) * 512;
        let end = start + bitmap + m.bs;
        let overlaps = |a: u64, l: u64| start < a.saturating_add(l) && a < end;
        if overlaps(0, 512) || overlaps(m.hdr, 1024) || overlaps(m.bat, 4 * m.entries) {
            return Err(VhdKind::Corrupt);
        }
        if start + bitmap > flen || start + bitmap + in_block + n > flen {
            return Err(VhdKind::Corrupt);
        }
        let bits = &f[start as usize..(start + bitmap) as usize];
        let mut s = in_block / 512;
        while s < (in_block + n) / 512 {
            let set = bits[(s / 8) as usize] & (0x80 >> (s % 8)) != 0;
            let source = if set {
                Source::Data {
                    file_offset: start + bitmap + s * 512,
                }
            } else {
                missing
            };
            match out.last_mut() {
                // Runs join within a block only.
                Some(r) if s > in_block / 512 && same_kind(r.source, source, r.len) => r.len += 512,
                _ => out.push(Run { len: 512, source }),
            }
            s += 1;
        }
        pos += n;
    }
    Ok(out)
}

/// Whether a sector with `next` continues run `prev` of `len` bytes.
fn same_kind(prev: Source, next: Source, len: u64) -> bool {
    match (prev, next) {
        (Source::Data { file_offset: a }, Source::Data { file_offset: b }) => a + len == b,
        (a, b) => a == b,
    }
}

fn compare(path: &Path, f: &[u8], ranges: &[(u64, u64)]) {
    let got = VhdFile::open(path);
    let exp = reference_open(f);
    super::note(&format!("vhd_file open {:?}", exp.as_ref().map(|m| m.disk_type)));
    let (v, m) = match (got, exp) {
        (Ok(v), Ok(m)) => (v, m),
        (Err(ckptfs::Error::Vhd { source, .. }), Err(k)) => {
            assert_eq!(vhd_kind(&source), k, "{source}");
            return;
        }
        (g, e) => panic!("open: got {:?}, the reference {:?}", g.map(|_| ()), e.map(|m| m.size)),
    };
    assert_eq!(v.virtual_size(), m.size);
    assert_eq!(v.parent().is_some(), m.disk_type == 4);
    let hints: Vec<(String, String)> = v.parent_hints().into_iter().map(|h| (h.label, h.path)).collect();
    assert_eq!(hints, m.hints);
    let sectors = m.size / 512;
    for &(a, b) in ranges {
        let first = a % (sectors + 1);
        let count = b % (sectors - first + 1);
        let (offset, len) = (first * 512, count * 512);
        let mut out = Vec::new();
        let got = v.map(offset, len, &mut out);
        let exp = reference_map(f, &m, offset, len);
        super::note(&format!("vhd_file map {:?}", exp.as_ref().map(|_| ())));
        match (got, exp) {
            (Ok(()), Ok(runs)) => {
                assert_eq!(out, runs, "map({offset:#x}, {len:#x})");
                for r in &runs {
                    if let Source::Data { file_offset } = r.source {
                        let n = r.len.min(1024) as usize;
                        let mut buf = vec![0u8; n];
                        v.read_data(file_offset, &mut buf).unwrap();
                        assert_eq!(&buf[..], &f[file_offset as usize..file_offset as usize + n]);
                    }
                }
            }
            (Err(ckptfs::Error::Vhd { source, .. }), Err(k)) => assert_eq!(vhd_kind(&source), k, "{source}"),
            (g, e) => panic!("map({offset:#x}, {len:#x}): got {g:?} {out:?}, the reference {e:?}"),
        }
    }
    // Past the end, or not whole sectors: refused, not mapped.
    assert!(v.map(m.size, 512, &mut Vec::new()).is_err());
    assert!(v.map(0, 511, &mut Vec::new()).is_err());
    if m.disk_type != 2 {
        let allocated = (0..m.size.div_ceil(m.bs))
            .filter(|b| be32(f, (m.bat + 4 * b) as usize) != u32::MAX)
            .count() as u64;
        assert_eq!(v.allocated_blocks().unwrap(), allocated);
    }
}
