//! `BatGeometry` and `BatEntry`.
//!
//! Input: block size exponent, sector size, virtual size, parent flag (always mapped
//! into what validated metadata allows), then probes: block numbers, BAT indices, raw
//! entries and region lengths.
//!
//! Exact outcomes: the chunk ratio is 2^23 * sector / block; payload and bitmap counts
//! are the ceilings of the MS-VHDX formulas; `payload_index(b) = b + b / ratio` and
//! `bitmap_index(c) = c * (ratio + 1) + ratio` never collide, are all below `entries`
//! (which is one past the last index the disk uses), and `is_payload_index` tells them
//! apart; `check_region` accepts exactly the lengths that hold `entries * 8` bytes;
//! entry fields are the bit fields of the raw value.

use ckptfs::format::vhdx::bat::{BatEntry, BatGeometry, PayloadState, SECTORS_PER_BITMAP_BLOCK};

use super::{Input, MIB};

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let block_size = (MIB as u32) << (inp.u8() % 9);
    let lss: u32 = if inp.bool() { 4096 } else { 512 };
    let max_sectors = (64u64 << 40) / u64::from(lss);
    let virtual_size = (1 + inp.u64() % max_sectors) * u64::from(lss);
    let has_parent = inp.bool();
    let g = BatGeometry::new(block_size, lss, virtual_size, has_parent);

    let (bs, ls) = (u64::from(block_size), u64::from(lss));
    let ratio = (1u64 << 23) * ls / bs;
    assert_eq!(SECTORS_PER_BITMAP_BLOCK, 1 << 23);
    assert_eq!(
        (g.block_size, g.logical_sector_size, g.virtual_size),
        (bs, ls, virtual_size)
    );
    assert_eq!(g.chunk_ratio, ratio);
    assert!(ratio >= 16 && ratio.is_power_of_two());
    let payload = virtual_size.div_ceil(bs);
    let bitmaps = payload.div_ceil(ratio);
    assert_eq!((g.payload_blocks, g.bitmap_blocks), (payload, bitmaps));
    assert_eq!(g.sectors_per_block(), bs / ls);
    let last_payload = g.payload_index(payload - 1);
    if has_parent {
        // Every chunk has its bitmap entry, the last one included.
        assert_eq!(g.entries, g.bitmap_index(bitmaps - 1) + 1);
        assert!(last_payload < g.bitmap_index(bitmaps - 1));
    } else {
        // The table ends with the last payload block.
        assert_eq!(g.entries, last_payload + 1);
    }
    assert!(g.entries >= payload);

    // Probes around chunk boundaries and the ends, then from the input.
    let mut blocks = vec![
        0,
        1,
        ratio - 1,
        ratio,
        ratio + 1,
        payload - 1,
        payload.saturating_sub(2),
    ];
    let mut indices = vec![0, ratio, ratio + 1, g.entries - 1, g.entries.saturating_sub(2)];
    for _ in 0..16 {
        blocks.push(inp.u64() % payload);
        indices.push(inp.u64() % g.entries);
    }
    for b in blocks.into_iter().filter(|&b| b < payload) {
        let i = g.payload_index(b);
        assert_eq!(i, b + b / ratio);
        assert!(i < g.entries, "block {b}: index {i} >= {}", g.entries);
        assert!(g.is_payload_index(i));
        // Its chunk's bitmap entry follows the chunk's payload entries.
        let c = b / ratio;
        assert!(c < bitmaps);
        let bi = g.bitmap_index(c);
        assert_ne!(i, bi);
        assert!(i < bi && bi - i <= ratio);
        assert!(!g.is_payload_index(bi));
        if has_parent {
            assert!(bi < g.entries);
        }
        if b + 1 < payload {
            let next = g.payload_index(b + 1);
            assert!(next == i + 1 || (next == i + 2 && next - 1 == bi), "{b}");
        }
    }
    for i in indices.into_iter().filter(|&i| i < g.entries) {
        // Each index is exactly one of: a payload entry, a bitmap entry.
        let c = i / (ratio + 1);
        if g.is_payload_index(i) {
            let b = i - c;
            assert_eq!(g.payload_index(b), i);
            assert!(b < payload || has_parent, "index {i} names block {b} past the disk");
        } else {
            assert_eq!(g.bitmap_index(c), i);
            assert!(c < bitmaps);
        }
    }

    for _ in 0..4 {
        let len = match inp.u8() % 3 {
            0 => g.entries * 8,
            1 => (g.entries * 8).saturating_sub(1 + u64::from(inp.u8())),
            _ => inp.u64(),
        };
        let ok = g.check_region(3 * MIB, len).is_ok();
        assert_eq!(ok, g.entries * 8 <= len, "check_region({len:#x})");
    }

    while !inp.is_empty() {
        check_entry(inp.u64());
    }
    check_entry(u64::MAX);
}

fn check_entry(raw: u64) {
    let e = BatEntry(raw);
    assert_eq!(u64::from(e.state_bits()), raw & 7);
    assert_eq!(e.file_offset(), raw & !(MIB - 1));
    let state = match raw & 7 {
        0 => Some(PayloadState::NotPresent),
        1 => Some(PayloadState::Undefined),
        2 => Some(PayloadState::Zero),
        3 | 5 => Some(PayloadState::Unmapped),
        6 => Some(PayloadState::FullyPresent),
        7 => Some(PayloadState::PartiallyPresent),
        _ => None,
    };
    assert_eq!(e.payload_state(), state);
    let present = match raw & 7 {
        0 => Some(false),
        6 => Some(true),
        _ => None,
    };
    assert_eq!(e.bitmap_present(), present);
}
