//! Seeds for the VHD targets, in the input formats their checks decode.

use super::seeds::Enc;

pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |t: &'static str, n: &'static str, b: Vec<u8>| out.push((t, n, b));
    let mut e = Enc::default();

    // vhd_footer: mode, features, version selector, data offset, time stamp, creator
    // selector, creator version, size selector, current size, original size,
    // geometry, type selector, unique id, saved state.
    let footer = |e: &mut Enc, mode: u8, creator: u8, sizes: u8, size: u64, chs: (u16, u8, u8), t: u8| {
        e.u8(mode)
            .u32(2)
            .u8(1)
            .u64(0x200)
            .u32(0x1e56_f9c4)
            .u8(creator)
            .u32(0x000A_0000)
            .u8(sizes);
        e.u64(size).u64(size);
        if sizes & 0x10 == 0 {
            e.u16(chs.0).u8(chs.1).u8(chs.2);
        }
        e.u8(t).bytes(&[0x33; 16]).u8(0);
    };
    footer(&mut e, 0, 0, 0, 0x1f_c000_0000, (65278, 16, 255), 1);
    add("vhd_footer", "virtual_pc_dynamic_geometry_size", e.done());
    footer(&mut e, 0, 1, 0x10, 10 << 20, (0, 0, 0), 0);
    add("vhd_footer", "hyperv_fixed_max_geometry", e.done());
    footer(&mut e, 4, 3, 3, 0x1234_5677, (20, 4, 17), 2);
    add("vhd_footer", "qemu_old_511_byte_footer_odd_size", e.done());
    footer(&mut e, 1, 2, 0, 1 << 30, (1000, 16, 63), 2);
    add("vhd_footer", "bad_checksum", e.done());

    // vhd_dynamic_header: mode, data offset, BAT offset, selector (bit 7 version, bit 6
    // raw block size, else 2^(sel % 32)), entries, parent id, time stamp, name units,
    // eight locators (code selector, space, length, offset).
    let header = |e: &mut Enc, mode: u8, sel: u8, name: &str, locs: &[(u8, u16, u16, u32)]| {
        e.u8(mode)
            .u64(u64::MAX)
            .u64(0x600)
            .u8(sel)
            .u32(5)
            .bytes(&[0x44; 16])
            .u32(0x1e00_0000);
        let units: Vec<u16> = name.encode_utf16().collect();
        e.u8(units.len() as u8);
        for u in units {
            e.u16(u);
        }
        for i in 0..8 {
            let (c, space, len, off) = locs.get(i).copied().unwrap_or((6, 0, 0, 0));
            e.u8(c).u16(space).u16(len).u32(off);
        }
    };
    header(&mut e, 0, 21, "", &[]);
    add("vhd_dynamic_header", "dynamic_2mib_blocks", e.done());
    header(
        &mut e,
        0,
        9,
        "parent.vhd",
        &[(0, 512, 24, 0x1000), (1, 1, 40, 0x1200), (4, 1, 10, 0x1400)],
    );
    add("vhd_dynamic_header", "differencing_with_locators", e.done());
    header(&mut e, 0, 8, "x", &[]);
    add("vhd_dynamic_header", "block_size_256_refused", e.done());
    header(&mut e, 4, 21, "", &[]);
    e.u16(1000);
    add("vhd_dynamic_header", "truncated", e.done());

    // vhd_parent_locator: code selector, selector, space, length, offset, file length,
    // data.
    let w: Vec<u8> = r".\parent.vhd".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    e.u8(0)
        .u8(0)
        .u8(1)
        .u16(w.len() as u16)
        .u32(0x1000)
        .u64(0x2000)
        .bytes(&w);
    add("vhd_parent_locator", "w2ru_sectors", e.done());
    e.u8(3)
        .u8(0b0100_0001)
        .u16(512)
        .u8(1)
        .u64(u64::MAX - 5)
        .bytes(b"C:\\vm\\p.vhd\0");
    add("vhd_parent_locator", "wi2k_bytes_space_past_the_file", e.done());
    e.u8(1)
        .u8(0b1100_1001)
        .u16(1)
        .u8(2)
        .u64(0x1000)
        .u64(0x1400)
        .bytes(&[0x00, 0xD8, b'a', 0]);
    add("vhd_parent_locator", "w2ku_length_past_space_lone_surrogate", e.done());

    // vhd_file: mode, block size, current size, geometry, flags, [locators], blocks,
    // ranges.
    let ranges = |e: &mut Enc| {
        for (a, b) in [(0u16, 0xFFFFu16), (3, 9), (17, 40), (1, 1), (0, 5), (30, 2)] {
            e.u16(a).u16(b);
        }
    };
    // Dynamic, 2 KiB blocks, 40 sectors: blocks unallocated, full, from-input bitmaps.
    e.u8(1).u8(2).u8(39).bytes(&[3, 2, 5]).u8(0);
    let blocks = [(0u8, None), (0x82, None), (2, Some(0xA5u8)), (3, Some(0x0F)), (0, None)];
    for (s, bits) in blocks.into_iter().chain(blocks) {
        e.u8(s);
        if let Some(b) = bits {
            e.u8(b);
        }
    }
    ranges(&mut e);
    add("vhd_file", "dynamic_mixed_blocks", e.done());
    // Differencing, 4 KiB blocks, with a name and three locators, one damaged.
    e.u8(2).u8(3).u8(47).bytes(&[3, 2, 5]).u8(0);
    e.u8(1).u8(3).u8(0x00).u8(0x13).u8(0x84).u16(2000);
    for (s, bits) in [
        (2u8, Some(0xF0u8)),
        (0, None),
        (0x83, None),
        (1, None),
        (2, Some(0x01)),
        (0x82, None),
    ] {
        e.u8(s);
        if let Some(b) = bits {
            e.u8(b);
        }
        if s == 1 {
            e.u32(3);
        }
    }
    ranges(&mut e);
    add("vhd_file", "differencing_locators_and_hostile_entry", e.done());
    // Virtual PC fixed disk with a 511-byte footer.
    e.u8(0b0100).u8(0).u8(9).bytes(&[2, 2, 9]).u8(0x04);
    ranges(&mut e);
    add("vhd_file", "virtual_pc_fixed_old_footer", e.done());
    // Dynamic with a damaged end footer: the copy at 0 is used.
    e.u8(1).u8(1).u8(20).bytes(&[1, 1, 1]).u8(0x01 | 0x40).u8(1);
    for s in [0x82u8, 0, 0x82, 0, 0x82, 0, 0x82, 0, 0x82, 0, 0x82] {
        e.u8(s);
    }
    ranges(&mut e);
    add("vhd_file", "end_footer_damaged_copy_used", e.done());
    // The same with the table one entry short: refused.
    e.u8(1).u8(1).u8(20).bytes(&[1, 1, 1]).u8(0x40).u8(0);
    ranges(&mut e);
    add("vhd_file", "table_one_entry_short", e.done());
    out
}
