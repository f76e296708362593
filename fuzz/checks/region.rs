//! `region::parse_region_table` and `choose_region_table`.
//!
//! Input: a flags byte. Bit 7: raw mode, the rest of the input is the start of the
//! 64 KiB table (bit 2: used as-is, at any length), signed if bit 0, checksummed if bit 1.
//! Otherwise the table is built from entries (12 input bytes each) and signed and
//! checksummed unless bits 4/5 say not; bit 2 takes the entry count from the input.
//! Bit 6 makes the second copy a valid table, else it is zeros.
//!
//! Exact outcomes, against a reference written here: `Ok` exactly for a signed table
//! with a matching CRC-32C, at most 2047 entries, every entry 1 MiB aligned past the
//! first MiB with a 1 MiB multiple length, not ending past 2^64, no GUID twice, no two
//! non-empty regions overlapping, a BAT and a metadata region, and no unknown region
//! marked required; the entries returned are exactly the table's. Errors are `Corrupt`,
//! or `Unsupported` for an unknown required region.

use ckptfs::format::vhdx::region::{self as r, RegionEntry, RegionTable};
use ckptfs::format::vhdx::VhdxError;
use uuid::Uuid;

use super::{crc_with_zeroed, fix_crc, guid_at, guid_bytes, kind, le32, le64, put32, put64};
use super::{Input, Kind, MIB};

const OFFSETS: [u64; 2] = r::REGION_TABLE_OFFSETS;

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let first = if flags & 0x80 != 0 {
        raw(&mut inp, flags)
    } else {
        structured(&mut inp, flags)
    };
    static VALID: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let second = if flags & 0x40 != 0 {
        VALID
            .get_or_init(|| {
                table(&[
                    (r::METADATA_REGION, 2 * MIB, MIB as u32, 1),
                    (r::BAT_REGION, 3 * MIB, MIB as u32, 1),
                ])
            })
            .clone()
    } else {
        vec![0u8; r::REGION_TABLE_SIZE]
    };

    let g1 = r::parse_region_table(&first, OFFSETS[0]);
    let e1 = reference(&first);
    super::note(&match &e1 {
        Ok((_, _, o)) => format!("ok, {} other regions", o.len().min(3)),
        Err(k) => format!("{k:?}"),
    });
    compare(&g1, &e1);
    let g2 = r::parse_region_table(&second, OFFSETS[1]);
    let e2 = reference(&second);
    compare(&g2, &e2);

    let got = r::choose_region_table(g1, g2);
    let expected = match (e1, e2) {
        (Ok(t), _) => Ok(t),
        (Err(Kind::Unsupported), _) => Err(Kind::Unsupported),
        (Err(_), Ok(t)) => Ok(t),
        (Err(_), Err(_)) => Err(Kind::Corrupt),
    };
    compare(&got, &expected);
}

type Expected = Result<(RegionEntry, RegionEntry, Vec<RegionEntry>), Kind>;

fn compare(got: &Result<RegionTable, VhdxError>, exp: &Expected) {
    match (got, exp) {
        (Ok(t), Ok((bat, meta, others))) => {
            assert_eq!((&t.bat, &t.metadata, &t.others), (bat, meta, others));
            // The properties the reader relies on, stated directly.
            let all: Vec<&RegionEntry> = [&t.bat, &t.metadata].into_iter().chain(t.others.iter()).collect();
            assert!(all.len() <= 2047);
            for (i, a) in all.iter().enumerate() {
                assert!(a.file_offset >= MIB && a.file_offset % MIB == 0, "{a:?}");
                assert_eq!(u64::from(a.length) % MIB, 0, "{a:?}");
                for b in &all[i + 1..] {
                    let (ae, be) = (end(a), end(b));
                    let disjoint = a.length == 0
                        || b.length == 0
                        || ae <= u128::from(b.file_offset)
                        || be <= u128::from(a.file_offset);
                    assert!(disjoint, "{a:?} overlaps {b:?}");
                    assert_ne!(a.guid, b.guid);
                }
            }
            assert!(t.others.iter().all(|o| !o.required));
        }
        (Err(e), Err(k)) => assert_eq!(kind(e), *k, "{e}"),
        _ => panic!("region table: got {got:?}, the reference {exp:?}"),
    }
}

fn end(e: &RegionEntry) -> u128 {
    u128::from(e.file_offset) + u128::from(e.length)
}

/// The table's rules, in the order the specification lists them; the first broken
/// rule decides the error kind.
fn reference(b: &[u8]) -> Expected {
    if b.len() < r::REGION_TABLE_SIZE {
        return Err(Kind::Corrupt);
    }
    let b = &b[..r::REGION_TABLE_SIZE];
    if &b[..4] != b"regi" || le32(b, 4) != crc_with_zeroed(b, 4) {
        return Err(Kind::Corrupt);
    }
    let count = le32(b, 8);
    if count > 2047 {
        return Err(Kind::Corrupt);
    }
    let mut entries: Vec<RegionEntry> = Vec::new();
    for i in 0..count as usize {
        let at = 16 + 32 * i;
        let e = RegionEntry {
            guid: guid_at(b, at),
            file_offset: le64(b, at + 16),
            length: le32(b, at + 24),
            required: le32(b, at + 28) & 1 != 0,
        };
        let aligned = e.file_offset >= MIB
            && e.file_offset % MIB == 0
            && u64::from(e.length) % MIB == 0
            && end(&e) <= u128::from(u64::MAX);
        let overlaps = entries.iter().any(|o| {
            e.length != 0 && o.length != 0 && u128::from(e.file_offset) < end(o) && u128::from(o.file_offset) < end(&e)
        });
        if !aligned || entries.iter().any(|o| o.guid == e.guid) || overlaps {
            return Err(Kind::Corrupt);
        }
        entries.push(e);
    }
    let find = |g: Uuid| entries.iter().find(|e| e.guid == g).copied();
    let (Some(bat), Some(meta)) = (find(r::BAT_REGION), find(r::METADATA_REGION)) else {
        return Err(Kind::Corrupt);
    };
    let others: Vec<RegionEntry> = entries
        .iter()
        .filter(|e| e.guid != r::BAT_REGION && e.guid != r::METADATA_REGION)
        .copied()
        .collect();
    if others.iter().any(|e| e.required) {
        return Err(Kind::Unsupported);
    }
    Ok((bat, meta, others))
}

/// A signed, checksummed table of `(guid, offset, length, required field)`.
pub fn table(entries: &[(Uuid, u64, u32, u32)]) -> Vec<u8> {
    let mut b = vec![0u8; r::REGION_TABLE_SIZE];
    b[..4].copy_from_slice(b"regi");
    put32(&mut b, 8, entries.len() as u32);
    for (i, (g, off, len, req)) in entries.iter().enumerate() {
        let at = 16 + 32 * i;
        b[at..at + 16].copy_from_slice(&guid_bytes(g));
        put64(&mut b, at + 16, *off);
        put32(&mut b, at + 24, *len);
        put32(&mut b, at + 28, *req);
    }
    fix_crc(&mut b, 4);
    b
}

fn raw(inp: &mut Input, flags: u8) -> Vec<u8> {
    let rest = inp.rest();
    let mut b = if flags & 4 != 0 {
        rest.to_vec()
    } else {
        let mut b = vec![0u8; r::REGION_TABLE_SIZE];
        let n = rest.len().min(b.len());
        b[..n].copy_from_slice(&rest[..n]);
        b
    };
    if b.len() >= 8 {
        if flags & 1 != 0 {
            b[..4].copy_from_slice(b"regi");
        }
        if flags & 2 != 0 && b.len() >= r::REGION_TABLE_SIZE {
            fix_crc(&mut b[..r::REGION_TABLE_SIZE], 4);
        }
    }
    b
}

/// Entries: a GUID selector (0 BAT, 1 metadata, 2 a GUID named by the other bits,
/// 3 random), entry flags (bit 0 required, bit 1 raw offset and length, other bits
/// into the reserved part of the Required field), an offset and a length.
fn structured(inp: &mut Input, flags: u8) -> Vec<u8> {
    let n = usize::from(inp.u8());
    let mut entries = Vec::new();
    for _ in 0..n {
        if inp.is_empty() {
            break;
        }
        let sel = inp.u8();
        let ef = inp.u8();
        let off = inp.u32();
        let len = inp.u32();
        let g = match sel % 4 {
            0 => r::BAT_REGION,
            1 => r::METADATA_REGION,
            2 => Uuid::from_u128(u128::from(sel >> 2) * 0x0101_0101_0101_0101),
            _ => Uuid::from_bytes(inp.array()),
        };
        let (off, len) = if ef & 2 != 0 {
            (u64::from(off) << (ef >> 6 << 4), len)
        } else {
            (u64::from(off & 0xFFFF) * MIB, (len & 0xFFF) << 20)
        };
        let req = u32::from(ef & 1) | (u32::from(ef >> 2 & 1) << 1);
        entries.push((g, off, len, req));
    }
    let mut b = table(&entries);
    if flags & 4 != 0 {
        put32(&mut b, 8, inp.u32());
    }
    if flags & 8 != 0 {
        put32(&mut b, 12, inp.u32());
    }
    if flags & 0x10 != 0 {
        b[..4].copy_from_slice(&inp.array::<4>());
    }
    if flags & 0x20 == 0 {
        fix_crc(&mut b, 4);
    }
    b
}
