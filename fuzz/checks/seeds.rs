//! The seed inputs committed under `fuzz/seeds/<target>/`, generated here so that they
//! follow the input formats the checks decode (valid structures, and a few near misses).
//! Regenerate with `cargo test --test fuzz_corpus -- --ignored write_seeds`.

use super::MIB;

/// Little-endian input builder, the inverse of [`super::Input`].
#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// `(target, seed name, bytes)` for every seed.
pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |t: &'static str, n: &'static str, b: Vec<u8>| out.push((t, n, b));
    let mut e = Enc::default();

    // header: copy flags, seq, 3 GUIDs, log version, [version], log length, log offset,
    // reserved length + bytes, spoil position.
    let copy = |e: &mut Enc, flags: u8, seq: u64, log_guid: [u8; 16]| {
        e.u8(flags)
            .u64(seq)
            .bytes(&[0x11; 16])
            .bytes(&[0x22; 16])
            .bytes(&log_guid);
        e.u16(0);
        if flags & 0x80 == 0 {
            e.u16(1);
        }
        e.u32(1).u64(1).u8(4).bytes(b"rsvd").u16(0);
    };
    e.u8(0);
    copy(&mut e, 0xF0, 1, [0; 16]);
    copy(&mut e, 0xF0, 2, [0; 16]);
    add("header", "two_valid_copies", e.done());
    e.u8(0);
    copy(&mut e, 0xB0, 5, [0x33; 16]);
    copy(&mut e, 0x02, 9, [0; 16]);
    add("header", "log_to_replay_second_copy_bad_crc", e.done());
    e.u8(0);
    copy(&mut e, 0x30, 3, [0x33; 16]);
    copy(&mut e, 0x08, 2, [0; 16]);
    add("header", "version_from_input_truncated_copy", e.done());
    let mut raw = vec![0u8; 4096];
    raw[..4].copy_from_slice(b"head");
    raw[66] = 1;
    super::fix_crc(&mut raw, 4);
    e.u8(0x80).bytes(&raw);
    add("header", "raw_valid", e.done());
    let mut ident = b"vhdxfile".to_vec();
    ident.extend_from_slice(&super::utf16("Microsoft Windows 10.0.19045.0"));
    ident.resize(520, 0);
    e.u8(0x80).bytes(&ident);
    add("header", "raw_file_identifier", e.done());

    // region_table: flags, entry count, entries (selector, flags, offset, length).
    e.u8(0x40).u8(2);
    e.u8(0).u8(1).u32(3).u32(1);
    e.u8(1).u8(1).u32(2).u32(1);
    add("region_table", "bat_and_metadata", e.done());
    e.u8(0).u8(3);
    e.u8(1).u8(1).u32(1).u32(1);
    e.u8(0).u8(1).u32(8).u32(4);
    e.u8(2 | 5 << 2).u8(0).u32(16).u32(2);
    add("region_table", "unknown_optional_region", e.done());
    e.u8(0).u8(3);
    e.u8(1).u8(1).u32(1).u32(1);
    e.u8(0).u8(1).u32(2).u32(1);
    e.u8(2 | 6 << 2).u8(1).u32(4).u32(1);
    add("region_table", "unknown_required_region", e.done());
    e.u8(0x40).u8(2);
    e.u8(0).u8(3).u32(3).u32(1 << 20);
    e.u8(1).u8(3).u32(1 << 20).u32(1 << 20);
    add("region_table", "raw_offsets_overlap", e.done());
    let t = super::region::table(&[
        (ckptfs::format::vhdx::region::BAT_REGION, 3 * MIB, MIB as u32, 1),
        (ckptfs::format::vhdx::region::METADATA_REGION, 2 * MIB, MIB as u32, 1),
    ]);
    e.u8(0x83).bytes(&t[..128]);
    add("region_table", "raw_fixed_up", e.done());

    // metadata: flags (4: standard items), block size exponent, sector size, size,
    // size shift, file parameter flags, extra items.
    e.u8(4).u8(5).u8(0).u32(20480).u8(0).u8(0).u8(0);
    add("metadata", "dynamic_32m_blocks", e.done());
    e.u8(4).u8(1).u8(1).u32(2560).u8(0).u8(2).u8(0);
    add("metadata", "differencing_4k_sectors", e.done());
    e.u8(4).u8(0).u8(0).u32(2048).u8(0).u8(1).u8(2);
    e.u8(6).u8(1).u8(3).bytes(&[1, 2, 3]);
    e.u8(7).u8(4).bytes(&[0x44; 16]).u8(1).bytes(&[9]);
    add("metadata", "fixed_with_user_and_unknown_items", e.done());
    e.u8(4).u8(9).u8(1).u32(u32::MAX).u8(15).u8(0).u8(0);
    add("metadata", "size_past_64t", e.done());
    e.u8(0).u8(3);
    for (sel, v) in [
        (0u8, vec![0, 0, 0x10, 0, 0, 0, 0, 0]),
        (1, (1u64 << 30).to_le_bytes().to_vec()),
    ] {
        e.u8(sel).u8(4).u8(v.len() as u8).bytes(&v);
    }
    e.u8(3).u8(0x0C).u8(4).bytes(&512u32.to_le_bytes()).u32(0x10000).u32(4);
    add("metadata", "items_by_hand_offset_override", e.done());

    // parent_locator: mode, pair count, reserved, pairs (key, GUID, value style, flags).
    e.u8(0).u8(3).u16(0);
    e.u8(0)
        .u64(0x0123_4567_89AB_CDEF)
        .u64(0x1122_3344_5566_7788)
        .u8(0)
        .u8(0);
    e.u8(1).u64(0).u64(0).u8(2).u8(0);
    e.u8(2).u64(0).u64(0).u8(7).u8(0);
    add("parent_locator", "hyperv_style", e.done());
    e.u8(0).u8(2).u16(0);
    e.u8(0).u64(5).u64(6).u8(4).u8(0);
    e.u8(4).u64(0).u64(0).u8(8).u8(6).bytes(&super::utf16("C:\\")).u8(0);
    add("parent_locator", "trailing_nul_and_path", e.done());
    e.u8(1).bytes(&[0x55; 16]).u8(1).u16(0);
    e.u8(0).u64(1).u64(2).u8(1).u8(0);
    add("parent_locator", "other_locator_type", e.done());
    e.u8(0).u8(2).u16(0);
    e.u8(0).u64(1).u64(2).u8(0).u8(0x10);
    e.u8(0).u64(1).u64(2).u8(0).u8(0);
    add("parent_locator", "duplicate_key_lone_surrogate", e.done());
    e.u8(0x80).bytes(&super::metadata::locator(&uuid::Uuid::from_u128(77)));
    add("parent_locator", "raw", e.done());

    // bat: block size exponent, sector size, virtual size, parent, probes.
    e.u8(5)
        .u8(0)
        .u64(10 << 30 >> 9)
        .u8(1)
        .bytes(&[0x77; 64])
        .u64(6 | 5 << 20);
    add("bat", "differencing_10g_32m", e.done());
    e.u8(8).u8(0).u64(16 << 30 >> 9).u8(0).bytes(&[0x35; 64]);
    add("bat", "dynamic_256m_blocks_many_chunks", e.done());
    e.u8(0).u8(1).u64(u64::MAX).u8(1).bytes(&[0xC3; 64]).u64(7).u64(4);
    add("bat", "largest_disk_4k", e.done());

    // sector_bitmap: first bit, count, bits.
    e.u16(3)
        .u16(100)
        .bytes(&[0xFF, 0xFF, 0x00, 0x0F, 0xF0, 0x00, 0xFF, 0xAA, 0x55, 0x01]);
    add("sector_bitmap", "mixed", e.done());
    e.u16(0).u16(4096).bytes(&[0xFF; 256]).bytes(&[0; 256]);
    add("sector_bitmap", "long_runs", e.done());
    e.u16(7).u16(200).bytes(&[0x80, 0x7F, 0xFE, 0x01]);
    add("sector_bitmap", "past_the_end", e.done());

    // log_replay (clean): sectors, GUID, start, base sequence, entries (descriptors,
    // ops, flushed, last, extra sector), tails.
    let g = [0x5A; 16];
    e.u8(0x40).u8(30).bytes(&g).u8(2).u64(41).u8(2);
    e.u8(2)
        .u8(0)
        .u16(0x100)
        .u16(7)
        .u8(1)
        .u16(0x100)
        .u8(2)
        .u64(4 * MIB)
        .u64(8 * MIB)
        .u8(0);
    e.u8(1).u8(0).u16(0x101).u16(8).u64(4 * MIB).u64(8 * MIB).u8(1);
    e.u8(3)
        .u8(1)
        .u16(0x0FF)
        .u8(3)
        .u8(0)
        .u16(0x100)
        .u16(9)
        .u8(0)
        .u16(0x180)
        .u16(1)
        .u64(5 * MIB)
        .u64(9 * MIB)
        .u8(0);
    e.u8(0).u8(0).u8(1);
    add("log_replay", "clean_three_entries_tail_in_middle", e.done());
    e.u8(0x40).u8(4).bytes(&g).u8(3).u64(7).u8(1);
    e.u8(1).u8(0).u16(2).u16(3).u64(MIB).u64(MIB).u8(0);
    e.u8(1).u8(0).u16(2).u16(4).u64(MIB).u64(MIB).u8(0);
    e.u8(0).u8(1);
    add("log_replay", "clean_wrapping_ring", e.done());
    // Dirty: sectors, GUID, entries, base sequence, per entry flags, ops, fields, position.
    e.u8(0).u8(40).bytes(&g).u8(4).u64(100);
    for (i, fl) in [(0u8, 0u8), (1, 0), (2, 8 | 0x10), (3, 4)] {
        e.u8(fl)
            .u8(2)
            .u8(0)
            .u16(0x40 + u16::from(i))
            .u16(5)
            .u8(1)
            .u16(0x50)
            .u8(1);
        e.u8(i * 3).u64(MIB).u64(MIB);
        if fl & 8 != 0 {
            e.u16(4100).u8(1);
        }
        e.u8(i * 3);
    }
    add("log_replay", "dirty_damaged_and_foreign_entries", e.done());
    e.u8(0).u8(8).bytes(&g).u8(2).u64(u64::MAX);
    e.u8(0x40)
        .u8(1)
        .u8(7)
        .u64(0x7000_0000_0000_F000)
        .u64(0xFFFF_FFFF_FFFF_F000);
    e.u8(0).u64(MIB).u64(MIB).u8(0);
    e.u8(0).u8(1).u8(0).u16(1).u16(1).u8(0).u64(MIB).u64(MIB).u8(1);
    add("log_replay", "dirty_sequence_wrap_huge_zero", e.done());
    let mut log = vec![0u8; 3 * 4096];
    log[..4].copy_from_slice(b"loge");
    log[8..12].copy_from_slice(&4096u32.to_le_bytes());
    log[16] = 1;
    log[32..48].copy_from_slice(&g);
    e.u8(0x83).bytes(&g).bytes(&log);
    add("log_replay", "raw_empty_entry", e.done());

    // layered_read: sector size, budget, depth - 1; per layer: size in sectors, segments
    // (length, kind, file offset for data), fault flags; then reads (selector: length
    // kind | offset kind << 2, then the length, then the offset).
    e.u8(0).u8(40).u8(1);
    e.u16(6144);
    e.u8(0x83)
        .u8(0)
        .u8(0x0A)
        .u8(3)
        .u16(100)
        .u8(0x81)
        .u8(6)
        .u8(0xFF)
        .u8(7)
        .u16(3000);
    e.u8(0);
    e.u16(8192).u8(0xFF).u8(3).u16(0).u8(0);
    e.u8(0x05).u16(5000).u8(1).u16(-300i16 as u16);
    e.u8(0x02).u8(31).u32(100_000);
    e.u8(0x86).u8(20).u8(0).u16(100);
    e.u8(0x0B).u16(1000).u16(1500);
    e.u8(0x0C).u8(4).u64(u64::MAX - 2);
    e.u8(0x09).u16(600).u16(300);
    e.u8(0x05).u16(2).u8(2).u16(-1i16 as u16);
    add("layered_read", "two_layers_unit_boundaries", e.done());
    e.u8(1).u8(0).u8(2);
    e.u16(1280)
        .u8(0x83)
        .u8(1)
        .u8(0x83)
        .u8(3)
        .u16(4)
        .u8(0x02)
        .u8(4)
        .u8(0xFF)
        .u8(2);
    e.u8(1).u16(600).u8(0);
    e.u16(1280).u8(0xFF).u8(7).u16(0).u8(2).u16(300).u8(10);
    e.u16(640).u8(0xFF).u8(3).u16(8).u8(0);
    e.u8(0x05).u16(8192).u8(1).u16(-4096i16 as u16);
    e.u8(0x05).u16(8192).u8(2).u16(4096);
    e.u8(0x06).u8(7).u8(0).u16(512);
    e.u8(0x01).u16(40000).u32(1_228_800);
    e.u8(0x82).u8(39).u32(0);
    e.u8(0x0B).u16(2048).u16(4096);
    e.u8(0x0C).u8(1).u64(5 << 20);
    e.u8(0x00).u8(0).u32(5 << 20);
    add("layered_read", "three_layers_faults_tiny_cache", e.done());

    // vhdx_file: top flags, sector size, budget, depth - 1; per layer: flags, block
    // size exponent, block count exponent, size, header sequence numbers, BAT ops; then
    // four map probes per layer, then reads (selector: layer << 4 | length kind << 2 |
    // offset kind).
    let layer = |e: &mut Enc, flags: u8, bs: u8, blocks: u8, size: u64, ops: &[&[u8]]| {
        e.u8(flags)
            .u8(bs)
            .u8(blocks)
            .u64(size / 512 - 1)
            .u8(1)
            .u8(2)
            .u8(ops.len() as u8);
        for op in ops {
            e.bytes(op);
        }
    };
    let probes = |e: &mut Enc| {
        e.u8(1).u32(1).u8(8).u16(4000);
        e.u8(0).u64(0).u8(255);
        e.u8(3).u8(0).u8(7);
        e.u8(2).u32(4 * MIB as u32 - 512).u16(2048);
    };
    let reads = |e: &mut Enc, depth: u8| {
        for k in 0..12u8 {
            let l = k % depth;
            match k % 4 {
                0 => e.u8(l << 4 | 1 << 2 | 1).u32(u32::from(k)).u16(0xFF00).u16(4096),
                1 => e.u8(l << 4 | 2 << 2 | 2).u32(u32::from(k)).u16(0xFF9C).u8(3),
                2 => e.u8(l << 4 | 3 << 2).u64(u64::from(k) * 0x12_3456).u16(30000),
                _ => e.u8(l << 4 | 3).u16(1000).u8(200),
            };
        }
    };
    // Block 0 present, block 1 partially present (pattern bits), 3 zero, 4 partially
    // present with no bits set, over a base with two blocks sharing one file offset.
    e.u8(0).u8(0).u8(8).u8(1);
    layer(
        &mut e,
        0,
        1,
        4,
        12 * MIB,
        &[
            &[0, 0, 0, 0, 0, 6, 0],
            &[4, 1, 0, 0, 0, 2],
            &[0, 3, 0, 0, 0, 2, 0],
            &[0, 4, 0, 0, 0, 7, 0],
        ],
    );
    layer(
        &mut e,
        0x10,
        0,
        4,
        16 * MIB,
        &[
            &[0, 0, 0, 0, 0, 6, 0],
            &[0, 1, 0, 0, 0, 6, 1],
            &[1, 5, 0, 0, 0, 6, 4, 0],
        ],
    );
    probes(&mut e);
    probes(&mut e);
    reads(&mut e, 2);
    add("vhdx_file", "differencing_over_dynamic", e.done());
    // 4 KiB sectors, 1 MiB blocks: a chunk is 32768 blocks; three layers.
    e.u8(0).u8(1).u8(0).u8(2);
    layer(
        &mut e,
        1,
        0,
        16,
        40 * MIB,
        &[
            &[4, 0, 0, 0, 0, 0],
            &[4, 2, 0, 0, 0, 1],
            &[3, 0, 0, 0, 0, 1, 2],
            &[0, 7, 0, 0, 0, 6, 3, 1],
        ],
    );
    layer(
        &mut e,
        0,
        2,
        2,
        8 * MIB,
        &[&[0, 1, 0, 0, 0, 6, 0], &[4, 0, 0, 0, 0, 0x20]],
    );
    layer(
        &mut e,
        0x81,
        0,
        4,
        4 * MIB,
        &[&[0, 2, 0, 0, 0, 6, 0], &[0, 3, 0, 0, 0, 3, 0]],
    );
    for _ in 0..3 {
        probes(&mut e);
    }
    reads(&mut e, 3);
    add("vhdx_file", "three_layers_4k_sectors", e.done());
    // 4 MiB blocks: one at offset 0, one present block cut by a truncated file.
    e.u8(0).u8(0).u8(0).u8(0);
    layer(
        &mut e,
        0x40,
        2,
        2,
        8 * MIB,
        &[&[0, 0, 0, 0, 0, 6, 2], &[0, 1, 0, 0, 0, 6, 0]],
    );
    e.u64(4 * MIB + 12345);
    probes(&mut e);
    reads(&mut e, 1);
    add("vhdx_file", "truncated_file_block_at_zero", e.done());
    // Reserved state 4, partially present without a parent, a block past the end.
    e.u8(0).u8(0).u8(1).u8(0);
    layer(
        &mut e,
        0,
        0,
        3,
        8 * MIB,
        &[
            &[0, 0, 0, 0, 0, 4, 0],
            &[4, 2, 0, 0, 0, 0],
            &[0, 3, 0, 0, 0, 6, 3, 2],
            &[2, 5, 0, 0, 0, 0, 0, 0, 0, 0x10, 0xD7, 0, 0, 0, 0, 0, 0],
        ],
    );
    probes(&mut e);
    reads(&mut e, 1);
    add("vhdx_file", "damaged_bat_entries", e.done());
    // Both header copies bad, then a short BAT region.
    e.u8(0).u8(0).u8(0).u8(1);
    layer(&mut e, 0x0C, 0, 0, MIB, &[]);
    layer(&mut e, 0x02, 0, 0, MIB, &[]);
    add("vhdx_file", "bad_headers_short_bat", e.done());
    e.u8(1).u8(0).u8(9).u8(1);
    layer(&mut e, 0, 0, 2, 4 * MIB, &[&[0, 0, 0, 0, 0, 6, 0]]);
    layer(&mut e, 0, 0, 2, 4 * MIB, &[&[0, 1, 0, 0, 0, 6, 0]]);
    for k in 0..2u8 {
        e.u8(8);
        for j in 0..8u8 {
            e.u8(j)
                .u32(0x1_0000 * u32::from(j) + 0x10)
                .u16(u16::from(j) * 77)
                .u8(j ^ k ^ 0x5A);
        }
    }
    for k in 0..8u8 {
        e.u64(u64::from(k) * 0x8_1234).u16(0x7000);
    }
    add("vhdx_file", "damaged_structures", e.done());
    out.extend(super::partition_seeds::all());
    out.extend(super::vhd_seeds::all());
    out.extend(super::vmware_config::seeds());
    out.extend(super::vmdk_descriptor::seeds());
    out.extend(super::vmdk_sparse::seeds());
    out.extend(super::vmdk_esx::seeds());

    // chain_discovery: file count - 1; per file kind byte, sector, fill, [parent | junk
    // length]; the start.
    let mut e = Enc::default();
    e.u64(5);
    e.u8(1).u64(5).u8(0x41); // f0: VHDX base
    e.u8(1 | 4 | 5 << 3).u64(7).u8(0x42); // f1.bin: VHD base
    e.u8(2 | 3 << 3).u64(9).u8(0x43).u64(0); // f2.vhd: VHDX child of f0
    e.u8(3 | 2 << 3).u64(7).u8(0x44).u64(1); // f3.avhdx: VHD child of f1
    e.u8(1 << 3).u64(0).u8(0).u64(100); // f4.vhdx: junk
    e.u8(2 | 4 << 3).u64(11).u8(0x45).u64(2); // f5.avhd: VHDX child of f2
    e.u64(2);
    out.push(("chain_discovery", "mixed_formats_misleading_names", e.done()));
    e.u64(2);
    e.u8(1 | 4 | 0x40).u64(1).u8(0x11); // f0: VHD base, deleted
    e.u8(2).u64(2).u8(0x12).u64(0); // f1: child of f0
    e.u8(2 | 1 << 3).u64(3).u8(0x13).u64(1); // f2.vhdx: child of f1
    e.u64(2);
    out.push(("chain_discovery", "deleted_base", e.done()));
    e.u64(1);
    e.u8(0).u64(0).u8(0).u64(2999); // f0: junk
    e.u8(1 | 1 << 3).u64(4).u8(0x21); // f1.vhdx: VHDX base
    e.u64(0);
    out.push(("chain_discovery", "start_at_junk", e.done()));
    out
}
