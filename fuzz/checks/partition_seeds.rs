//! Seeds of the `mbr`, `gpt` and `partition_table` targets (part of `seeds::all`):
//! partition tables written by sfdisk, fdisk, sgdisk, mkfs.fat and mkntfs (the dumps in
//! `fuzz/tables/`, see `make.sh` there), and built ones with their near misses.

use super::partition::{
    disk_from_dump, gpt_entry_bytes, header_sector, mbr_entry_bytes, mbr_sector, Disk, HeaderSpec, BASIC, LINUX,
    SECTOR, SWAP,
};
use super::seeds::Enc;

const DUMPS: &[(&str, &[u8])] = &[
    (
        "sfdisk_mbr_primaries",
        include_bytes!("../tables/sfdisk_mbr_primaries.bin"),
    ),
    (
        "sfdisk_mbr_extended",
        include_bytes!("../tables/sfdisk_mbr_extended.bin"),
    ),
    (
        "sfdisk_mbr_extended_lba_gaps",
        include_bytes!("../tables/sfdisk_mbr_extended_lba_gaps.bin"),
    ),
    (
        "fdisk_mbr_4k_extended",
        include_bytes!("../tables/fdisk_mbr_4k_extended.bin"),
    ),
    ("sgdisk_gpt", include_bytes!("../tables/sgdisk_gpt.bin")),
    ("sgdisk_gpt_hybrid", include_bytes!("../tables/sgdisk_gpt_hybrid.bin")),
    (
        "sgdisk_gpt_8_entries_enlarged",
        include_bytes!("../tables/sgdisk_gpt_8_entries_enlarged.bin"),
    ),
    ("fdisk_gpt_4k", include_bytes!("../tables/fdisk_gpt_4k.bin")),
    (
        "mkfs_fat32_whole_disk",
        include_bytes!("../tables/mkfs_fat32_whole_disk.bin"),
    ),
    (
        "mkfs_fat16_whole_disk",
        include_bytes!("../tables/mkfs_fat16_whole_disk.bin"),
    ),
    ("mkntfs_whole_disk", include_bytes!("../tables/mkntfs_whole_disk.bin")),
    (
        "mkfs_fat32_over_gpt",
        include_bytes!("../tables/mkfs_fat32_over_gpt.bin"),
    ),
];

fn dump(name: &str) -> Disk {
    disk_from_dump(DUMPS.iter().find(|(n, _)| *n == name).unwrap().1)
}

pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    mbr(&mut out);
    gpt(&mut out);
    partition_table(&mut out);
    out
}

type Out = Vec<(&'static str, &'static str, Vec<u8>)>;

// ---- mbr ----

/// An MBR entry of the structured sector 0: status, type, start, sectors.
fn entry(e: &mut Enc, status: u8, t: u8, start: u32, sectors: u32) {
    e.u8(status).u8(t).u32(start).u32(sectors);
}

/// A described EBR: control, position, data entry, link (type, target: another EBR's
/// index, or an LBA relative to the extended partition with control bit 4, sectors).
fn ebr(e: &mut Enc, ctl: u8, pos: u32, data: (u8, u32, u32), link: Option<(u8, u32, u16)>) {
    e.u8(ctl | if link.is_none() { 0x40 } else { 0 }).u32(pos);
    if ctl & 0x80 == 0 {
        e.u8(data.0).u32(data.1).u32(data.2);
    }
    if let Some((t, target, n)) = link {
        e.u8(t);
        if ctl & 0x10 != 0 {
            e.u32(target);
        } else {
            e.u8(target as u8);
        }
        e.u16(n);
    }
}

/// An mbr seed from a dump: sector 0 and every other non-zero sector raw.
fn mbr_raw(d: &Disk, ss: u64) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(2 | 0x80 | u8::from(ss == 4096));
    e.u32((d.size / ss) as u32).u16((d.size % ss) as u16);
    e.bytes(&d.peek(0, SECTOR));
    e.u16(0).u8(0).u8(0);
    let others: Vec<(u64, Vec<u8>)> = d
        .granules()
        .filter(|(at, g)| *at > 0 && at % ss == 0 && g.iter().any(|&b| b != 0))
        .map(|(at, g)| (at / ss, g.to_vec()))
        .take(63)
        .collect();
    e.u8(others.len() as u8);
    for (lba, g) in others {
        e.u32(lba as u32).bytes(&g);
    }
    e.done()
}

fn mbr(out: &mut Out) {
    let mut add = |n: &'static str, b: Vec<u8>| out.push(("mbr", n, b));
    let mut e = Enc::default();

    // Primaries and an extended partition with three logical partitions.
    e.u8(0).u32(65536).u16(0);
    entry(&mut e, 0x80, 0x07, 2048, 8192);
    entry(&mut e, 0, 0x0F, 10240, 40000);
    entry(&mut e, 0, 0x83, 50240, 1000);
    entry(&mut e, 0, 0, 0, 0);
    e.u16(0).u8(0).u8(0).u8(3);
    ebr(&mut e, 1, 0, (0x83, 63, 1000), Some((0, 1, 1100)));
    ebr(&mut e, 1, 2000, (0x82, 63, 2000), Some((1, 2, 3000)));
    ebr(&mut e, 1, 5000, (0x07, 2048, 500), None);
    add("primaries_and_extended_chain", e.done());

    // A chain that loops, an EBR with extra entries and swapped slots, a logical
    // partition on its own EBR and one past its extended partition.
    e.u8(0).u32(65536).u16(100);
    entry(&mut e, 0, 0x05, 4096, 8192);
    entry(&mut e, 0, 0, 0, 0);
    entry(&mut e, 0, 0, 0, 0);
    entry(&mut e, 0, 0, 0, 0);
    e.u16(0).u8(0).u8(0).u8(4);
    ebr(&mut e, 0x28, 0, (0x83, 1, 100), Some((2, 1, 50)));
    e.u8(2).u8(0x83).u32(500).u32(10).u8(0x05).u32(900).u32(1);
    ebr(&mut e, 0, 300, (0x83, 0, 100), Some((0, 2, 50)));
    ebr(&mut e, 0, 600, (0x07, 10, 9000), Some((0, 1, 50)));
    ebr(&mut e, 0x04, 900, (0x07, 10, 10), None);
    add("ebr_loop_extras_own_ebr", e.done());

    // Two extended partitions, the second's chain running into the first's.
    e.u8(0).u32(100_000).u16(0);
    entry(&mut e, 0, 0x05, 1000, 20000);
    entry(&mut e, 0, 0x85, 1100, 30000);
    entry(&mut e, 0, 0x83, 40000, 100);
    entry(&mut e, 0, 0x83, 40050, 100);
    // The first chain reaches LBA 1100, where the second extended partition starts.
    e.u16(0).u8(0).u8(0).u8(2);
    ebr(&mut e, 0, 0, (0x83, 10, 10), Some((0, 1, 10)));
    ebr(&mut e, 0, 100, (0x83, 10, 10), None);
    add("two_extended_partitions_overlaps", e.done());

    // Long generated chains: past 128 logical partitions, then past 256 EBRs.
    for (name, every) in [("long_chain_past_128_logical", 0u8), ("long_chain_past_256_ebrs", 1)] {
        e.u8(0).u32(20000).u16(0);
        entry(&mut e, 0, 0x0F, 100, 1000);
        for _ in 0..3 {
            entry(&mut e, 0, 0, 0, 0);
        }
        e.u16(300).u8(every).u8(0).u8(0);
        add(name, e.done());
    }

    // Partitions past the end of a disk whose size is not whole sectors; 4096-byte
    // sectors; an EBR link past the disk.
    e.u8(1).u32(1000).u16(1234);
    entry(&mut e, 0, 0x83, 10, 100);
    entry(&mut e, 0, 0x83, 900, 200);
    entry(&mut e, 0, 0x0C, 5000, 1);
    entry(&mut e, 0, 0x05, 500, u32::MAX);
    e.u16(0).u8(0).u8(0).u8(1);
    ebr(&mut e, 0x13, 0, (0x83, 1, 10), Some((0, 600, 10)));
    add("cut_left_out_4k_link_past_disk", e.done());

    // Not a table: a bad status byte; a used entry at LBA 0; every entry past the end.
    for (name, status, start) in [
        ("not_a_table_status_byte", 0x52u8, 2048u32),
        ("not_a_table_lba_0", 0, 0),
        ("not_a_table_all_past_the_end", 0, 70000),
    ] {
        e.u8(0).u32(65536).u16(0);
        entry(&mut e, 0, 0x07, start, 100);
        entry(&mut e, status, 0x83, start.wrapping_add(100), 100);
        entry(&mut e, 0, 0, 0, 0);
        entry(&mut e, 0, 0, 0, 0);
        e.u16(0).u8(0).u8(0).u8(0);
        add(name, e.done());
    }

    // Boot sectors stamped over a table (and over a GPT), and near misses.
    for (name, flags, mask) in [
        ("fat32_boot_sector_over_table_and_gpt", 0x04 | 0x10, 0u8),
        ("fat16_near_miss_three_fats", 0x04, 0x80 | 0x20),
        ("fat_near_miss_no_label", 0x04, 0x02),
        ("ntfs_boot_sector", 0x08, 0),
        ("exfat_near_miss", 0x0C, 1),
    ] {
        e.u8(flags).u32(65536).u16(0);
        entry(&mut e, 0, 0x0C, 2048, 4096);
        entry(&mut e, 0, if flags & 0x10 != 0 { 0xEE } else { 0x83 }, 1, 2047);
        entry(&mut e, 0, 0, 0, 0);
        entry(&mut e, 0, 0, 0, 0);
        e.u8(mask).u16(0).u8(0).u8(0).u8(0);
        add(name, e.done());
    }

    // A valid GPT next to an MBR without protective entry, behind a protective MBR,
    // and in the other sector size.
    for (name, flags, t) in [
        ("stray_gpt_behind_plain_mbr", 0x10u8, 0x83u8),
        ("protective_mbr_with_gpt", 0x10, 0xEE),
        ("protective_mbr_gpt_in_512_on_4k", 0x10 | 0x40 | 1, 0xEE),
    ] {
        e.u8(flags).u32(if flags & 1 != 0 { 8192 } else { 65536 }).u16(0);
        entry(&mut e, 0, t, 1, 8000);
        for _ in 0..3 {
            entry(&mut e, 0, 0, 0, 0);
        }
        e.u16(0).u8(0).u8(0).u8(0);
        add(name, e.done());
    }

    // A failing read on the second EBR of a chain.
    e.u8(0x20).u32(65536).u16(0);
    entry(&mut e, 0, 0x0F, 10240, 40000);
    for _ in 0..3 {
        entry(&mut e, 0, 0, 0, 0);
    }
    e.u16(0).u8(0).u8(0).u8(2);
    ebr(&mut e, 0, 0, (0x83, 63, 1000), Some((0, 1, 1100)));
    ebr(&mut e, 0, 2000, (0x82, 63, 2000), None);
    e.u32(12240).u16(1);
    add("failing_ebr_read", e.done());

    for (name, ss) in [
        ("raw_sfdisk_mbr_primaries", 512),
        ("raw_sfdisk_mbr_extended", 512),
        ("raw_sfdisk_mbr_extended_lba_gaps", 512),
        ("raw_fdisk_mbr_4k_extended", 4096),
        ("raw_sgdisk_gpt_hybrid", 512),
        ("raw_mkfs_fat32_whole_disk", 512),
        ("raw_mkfs_fat16_whole_disk", 512),
        ("raw_mkntfs_whole_disk", 512),
    ] {
        add(name, mbr_raw(&dump(&name[4..]), ss));
    }
}

// ---- gpt ----

/// One entry: slot, type selector, unique, first, span, attributes, name.
#[allow(clippy::too_many_arguments)]
fn gpt_entry(e: &mut Enc, slot: u16, t: u8, unique: u64, first: u64, span: u32, attributes: u64, name: &[u16]) {
    e.u16(slot).u8(t);
    if t == 7 {
        // A raw type GUID.
        e.bytes(&[0x12; 16]);
    }
    e.u64(unique).u64(first).u32(span).u64(attributes);
    if name.len() == 36 {
        e.u8(0x80);
    } else {
        e.u8(name.len() as u8);
    }
    for &u in name {
        e.u16(u);
    }
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// The header part of a gpt seed: flags, layout sectors, growth, count, entry size.
fn gpt_head(e: &mut Enc, flags: u8, sectors: u32, delta: i16, count: u16, size_sel: u8) {
    e.u8(flags).u32(sectors).u16(delta as u16).u16(count).u8(size_sel);
}

/// Windows' layout on a 32 MiB disk of 512-byte sectors: ESP, MSR, basic data.
fn windows_entries(e: &mut Enc) {
    e.u8(3);
    gpt_entry(e, 0, 0, 0x1001, 2048, 4096, 0, &utf16("EFI system partition"));
    gpt_entry(
        e,
        1,
        1,
        0x1002,
        6144,
        2048,
        1 << 63,
        &utf16("Microsoft reserved partition"),
    );
    gpt_entry(e, 2, 2, 0x1003, 8192, 50000, 0, &utf16("Basic data partition"));
}

fn gpt(out: &mut Out) {
    let mut add = |n: &'static str, b: Vec<u8>| out.push(("gpt", n, b));
    let mut e = Enc::default();

    // Clean copies, read in the layout's sector size and in the other one.
    for (name, flags) in [
        ("windows_layout", 0u8),
        ("windows_layout_declared_4k", 2),
        ("windows_layout_hybrid_mbr", 0x08),
        ("windows_layout_no_mbr", 0x10),
        ("windows_layout_plain_mbr", 0x18),
    ] {
        gpt_head(&mut e, flags, 65536, 0, 128, 0);
        windows_entries(&mut e);
        e.u8(0).u8(0).u8(0);
        add(name, e.done());
    }
    gpt_head(&mut e, 1, 16384, 0, 128, 0);
    e.u8(2);
    gpt_entry(&mut e, 0, 3, 7, 256, 1024, 0, &utf16("root"));
    gpt_entry(&mut e, 5, 4, 8, 1280, 2048, 0, &utf16("swap"));
    e.u8(0).u8(0).u8(0);
    add("linux_4k", e.done());

    // Damage: primary header, primary array (backup told apart), both, no backup.
    for (name, flags, primary, backup) in [
        ("primary_header_crc_bad", 0u8, &[1u8, 30][..], &[0u8][..]),
        ("primary_array_bad_marked_backup", 0x40, &[2, 0x34, 0x01], &[0]),
        ("both_copies_bad", 0, &[1, 7], &[2, 0, 0]),
        ("primary_signature_gone_no_backup", 0x80, &[0x80], &[0]),
        ("backup_header_bad", 0, &[0], &[1, 3]),
    ] {
        gpt_head(&mut e, flags, 65536, 0, 128, 0);
        windows_entries(&mut e);
        e.bytes(primary).bytes(backup).u8(0);
        add(name, e.done());
    }

    // The primary intact, the backup's array damaged (`BACKUP_ARRAY_UNCHECKED`).
    gpt_head(&mut e, 0, 65536, 0, 128, 0);
    windows_entries(&mut e);
    e.u8(0).u8(2).u16(0).u8(0);
    add("backup_array_damaged_primary_intact", e.done());

    // The disk grown or shrunk since, the backup elsewhere.
    for (name, delta, sel) in [
        ("disk_enlarged", 4000i16, None),
        ("disk_shrunk", -100, None),
        ("backup_elsewhere", 0, Some(40000u32)),
    ] {
        gpt_head(&mut e, 0, 65536, delta, 128, 0);
        windows_entries(&mut e);
        e.u8(0).u8(0);
        match sel {
            Some(v) => e.u8(1).u32(v),
            None => e.u8(0),
        };
        add(name, e.done());
    }

    // Wide entries, full-length and odd names (a pair, a lone surrogate, NUL inside).
    gpt_head(&mut e, 0, 65536, 0, 64, 1);
    e.u8(3);
    let mut long: Vec<u16> = utf16("abcdefghijklmnopqrstuvwxyz0123456789");
    long[10] = 0xD83D;
    long[11] = 0xDE00;
    gpt_entry(&mut e, 0, 3, 1, 2048, 100, 5, &long);
    gpt_entry(&mut e, 1, 7, 2, 4096, 100, 0, &[0xDC00, 0x41, 0, 0x42]);
    gpt_entry(&mut e, 63, 9, 3, 8192, 100, u64::MAX, &utf16("last slot"));
    e.u8(0).u8(0).u8(0);
    add("wide_entries_odd_names", e.done());

    // Entries backwards, outside the usable area, past the end; a nil type.
    gpt_head(&mut e, 0, 65536, 0, 128, 0);
    e.u8(5);
    gpt_entry(&mut e, 0, 2, 1, 5000, 0, 0, &[]);
    gpt_entry(&mut e, 1, 3, 2, 10, 100, 0, &[]);
    gpt_entry(&mut e, 2, 3, 3, 65000, 1000, 0, &[]);
    gpt_entry(&mut e, 3, 3, 4, 1 << 60, 1, 0, &[]);
    gpt_entry(&mut e, 4, 6, 5, 3000, 10, 0, &[]);
    e.u8(0).u8(0).u8(0);
    add("entries_backwards_outside_past_end", e.done());

    // Header overrides: a larger header size, the backup naming another primary LBA,
    // an entry size the reader refuses.
    gpt_head(&mut e, 0, 65536, 0, 128, 0);
    windows_entries(&mut e);
    e.u8(4).u32(512).u8(0x10).u64(5).u8(0);
    add("header_size_512_backup_names_lba_5", e.done());
    gpt_head(&mut e, 0, 65536, 0, 128, 9);
    e.u32(132);
    windows_entries(&mut e);
    e.u8(0).u8(0).u8(0);
    add("entry_size_132_refused", e.done());
    gpt_head(&mut e, 0, 65536, 0, 16385, 0);
    e.u8(0).u8(0).u8(0).u8(0);
    add("too_many_entries", e.done());

    // A failing read at the primary header.
    gpt_head(&mut e, 0x20, 65536, 0, 128, 0);
    windows_entries(&mut e);
    e.u8(0).u8(0).u8(0).u64(512).u16(10);
    add("failing_primary_read", e.done());

    // Raw headers and arrays from sgdisk and fdisk, and near misses.
    for (name, dump_name, ss, fix) in [
        ("raw_sgdisk_8_entries", "sgdisk_gpt_8_entries_enlarged", 512u64, 0u8),
        ("raw_fdisk_4k", "fdisk_gpt_4k", 4096, 0),
        ("raw_sgdisk_backup_as_primary_fixed", "sgdisk_gpt", 512, 7),
    ] {
        let d = dump(dump_name);
        let lba = if fix & 4 != 0 { d.size / ss - 1 } else { 1 };
        let h = d.peek(lba * ss, ss as usize);
        let count = super::le32(&h, 80) as usize;
        let size = super::le32(&h, 84) as usize;
        let array = d.peek(super::le64(&h, 72) * ss, count * size);
        e.u8(4 | u8::from(ss == 4096)).u64(if fix & 4 != 0 { 1 } else { lba });
        e.u16(h.len() as u16).bytes(&h).u8(fix).bytes(&array);
        add(name, e.done());
    }
}

// ---- partition_table ----

fn partition_table(out: &mut Out) {
    use super::partition_table::encode;
    for (name, bytes) in DUMPS {
        out.push(("partition_table", name, encode(&disk_from_dump(bytes), 0)));
    }
    // The primary GPT header damaged: the backup is read; with the CRCs fixed up the
    // changed header is valid again.
    let mut d = dump("sgdisk_gpt");
    let mut h = d.peek(512, 512);
    h[40] ^= 1;
    d.put(512, &h);
    out.push(("partition_table", "sgdisk_gpt_primary_damaged", encode(&d, 0)));
    out.push(("partition_table", "sgdisk_gpt_primary_changed_crc_fixed", encode(&d, 1)));
    // An EBR chain made by the mbr target's builder.
    let seeds: Out = {
        let mut v = Vec::new();
        mbr(&mut v);
        v
    };
    for (from, name) in [
        ("ebr_loop_extras_own_ebr", "mbr_ebr_loop_extras_own_ebr"),
        (
            "two_extended_partitions_overlaps",
            "mbr_two_extended_partitions_overlaps",
        ),
    ] {
        let input = &seeds.iter().find(|s| s.1 == from).unwrap().2;
        out.push(("partition_table", name, encode(&super::mbr::build(input).disk, 0)));
    }
    // A huge disk: a protective MBR and a GPT whose backup is at LBA 2^41 - 1, written
    // as raw sectors and made valid by the CRC fix-up.
    let mut d = Disk::new(1 << 50);
    let last = (1u64 << 41) - 1;
    super::partition::write_plain_gpt(
        &mut d,
        512,
        last + 1,
        &[(LINUX, 2048, last - 100, "big"), (SWAP, 1024, 2047, "")],
    );
    out.push(("partition_table", "huge_disk_gpt", encode_far(&d)));
    // A disk of u64::MAX bytes with an entry at LBA 0 asking for more than 2^64 bytes
    // (`OVERFLOWING_SIZE_CUT_SILENTLY`).
    let mut d = Disk::new(u64::MAX);
    let mut array = gpt_entry_bytes(BASIC, 7, 0, 1 << 62, 0, &[], 128);
    array.resize(512, 0);
    let spec = HeaderSpec {
        my_lba: 1,
        alternate_lba: 2,
        first_usable: 34,
        last_usable: 100,
        disk_guid: [0x42; 16],
        entries_lba: 2,
        entry_count: 4,
        entry_size: 128,
        header_size: 92,
    };
    d.put(0, &mbr_sector(&[mbr_entry_bytes(0, 0xEE, 1, u32::MAX)]));
    d.put(512, &header_sector(&spec, &array, 512));
    d.put(1024, &array);
    out.push(("partition_table", "u64_max_disk_entry_overflowing", encode(&d, 0)));
    // Tiny disks: under one sector, and three sectors holding a protective MBR.
    let mut d = Disk::new(511);
    d.put(0, &[0x55; 511]);
    out.push(("partition_table", "tiny_disk", encode(&d, 0)));
    let mut d = Disk::new(1536);
    d.put(
        0,
        &super::partition::mbr_sector(&[super::partition::mbr_entry_bytes(0, 0xEE, 1, 2)]),
    );
    out.push(("partition_table", "three_sectors_protective_mbr", encode(&d, 0)));
}

/// `encode` for a disk whose sectors lie beyond the reach of a u32 position: those
/// counted from the end of the disk.
fn encode_far(d: &Disk) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&d.size.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    let sectors = d.size / SECTOR as u64;
    for (at, g) in d.granules() {
        if g.iter().all(|&b| b == 0) {
            continue;
        }
        let lba = at / SECTOR as u64;
        let (ctl, pos) = if lba <= u64::from(u32::MAX) {
            (0u8, lba)
        } else {
            (1, sectors - 1 - lba)
        };
        out.push(ctl);
        out.extend_from_slice(&(pos as u32).to_le_bytes());
        out.push(1);
        out.extend_from_slice(g);
    }
    out
}
