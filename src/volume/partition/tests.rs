//! Whole-disk cases of [`read_partition_table`], on disks built in memory.

use uuid::{uuid, Uuid};

use super::gpt::tests::{entry_bytes, header_bytes, HeaderSpec};
use super::mbr::tests::{entry, fat32_boot_sector, ntfs_boot_sector, sector};
use super::*;
use crate::io::check_range;

struct MemDisk(Vec<u8>);

impl ReadAt for MemDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size())?;
        buf.copy_from_slice(&self.0[offset as usize..][..buf.len()]);
        Ok(())
    }
}

impl MemDisk {
    fn put(&mut self, offset: u64, bytes: &[u8]) {
        self.0[offset as usize..][..bytes.len()].copy_from_slice(bytes);
    }
}

const ESP: Uuid = uuid!("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
const MSR: Uuid = uuid!("e3c9e316-0b5c-4db8-817d-f92df00215ae");
const BASIC: Uuid = uuid!("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7");
const MIB: u64 = 1 << 20;

fn mbr_type(p: &Partition) -> u8 {
    match p.kind {
        PartitionKind::Mbr { type_byte } => type_byte,
        _ => panic!("{p:?}"),
    }
}

fn gpt_type(p: &Partition) -> Uuid {
    match p.kind {
        PartitionKind::Gpt { type_guid, .. } => type_guid,
        _ => panic!("{p:?}"),
    }
}

/// (number, start, size) of each partition, in bytes.
fn layout(t: &PartitionTable) -> Vec<(u32, u64, u64)> {
    t.partitions.iter().map(|p| (p.number, p.start, p.size)).collect()
}

fn has_warning(t: &PartitionTable, needle: &str) -> bool {
    t.warnings.iter().any(|w| w.contains(needle))
}

// ---- MBR ----

#[test]
fn mbr_primaries() {
    let mut d = MemDisk(vec![0; (64 * MIB) as usize]);
    d.put(
        0,
        &sector(&[
            entry(0x80, 0x07, 2048, 8192),
            entry(0, 0x0c, 10240, 2048),
            [0; 16],
            entry(0, 0x83, 20480, 4096),
        ]),
    );
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    assert_eq!(
        layout(&t),
        [
            (1, 2048 * 512, 8192 * 512),
            (2, 10240 * 512, 2048 * 512),
            (4, 20480 * 512, 4096 * 512)
        ]
    );
    assert_eq!(mbr_type(&t.partitions[1]), 0x0c);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

/// An extended partition at LBA 10000 of 30000 sectors with an EBR chain; `links` are
/// (EBR LBA relative to the extended start, data start relative to the EBR, data
/// sectors, next EBR relative to the extended start or 0 for the end).
fn extended_disk(links: &[(u32, u32, u32, u32)]) -> MemDisk {
    let mut d = MemDisk(vec![0; (32 * MIB) as usize]);
    d.put(0, &sector(&[entry(0, 0x83, 2048, 4096), entry(0, 0x0f, 10000, 30000)]));
    for &(at, data_start, data_sectors, next) in links {
        let mut entries = vec![entry(0, 0x83, data_start, data_sectors)];
        if next != 0 {
            entries.push(entry(0, 0x05, next, 100));
        }
        d.put(u64::from(10000 + at) * 512, &sector(&entries));
    }
    d
}

#[test]
fn mbr_extended_with_three_logicals() {
    let d = extended_disk(&[(0, 63, 1000, 2000), (2000, 63, 2000, 5000), (5000, 2048, 500, 0)]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    assert_eq!(
        layout(&t),
        [
            (1, 2048 * 512, 4096 * 512),
            (2, 10000 * 512, 30000 * 512),
            (5, 10063 * 512, 1000 * 512),
            (6, 12063 * 512, 2000 * 512),
            (7, 17048 * 512, 500 * 512)
        ]
    );
    assert!(t.partitions[1].kind.not_a_filesystem().is_some());
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn mbr_ebr_loop_stops() {
    // The third EBR links back to the second.
    let d = extended_disk(&[(0, 63, 100, 2000), (2000, 63, 100, 5000), (5000, 63, 100, 2000)]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(
        t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(),
        [1, 2, 5, 6, 7]
    );
    assert!(has_warning(&t, "loops back to LBA 12000"), "{:?}", t.warnings);
}

#[test]
fn mbr_ebr_linking_to_itself_stops() {
    let d = extended_disk(&[(0, 63, 100, 0)]);
    let mut d = d;
    // A link of 0 points at the first EBR again.
    d.put(10000 * 512, &sector(&[entry(0, 0x83, 63, 100), entry(0, 0x05, 0, 100)]));
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.len(), 3);
    assert!(has_warning(&t, "loops back"), "{:?}", t.warnings);
}

#[test]
fn mbr_ebr_pointing_outside_stops() {
    // Past the extended partition (30000 sectors long).
    let d = extended_disk(&[(0, 63, 100, 2000), (2000, 63, 100, 40000)]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 5, 6]);
    assert!(has_warning(&t, "outside the extended partition"), "{:?}", t.warnings);
    // An EBR without its signature.
    let mut d = extended_disk(&[(0, 63, 100, 2000)]);
    d.put(12000 * 512 + 510, &[0, 0]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.len(), 3);
    assert!(has_warning(&t, "0x55AA"), "{:?}", t.warnings);
}

#[test]
fn mbr_extended_past_the_disk_stops_at_the_disk() {
    // The extended partition claims far more than the 32 MiB disk; a link into that
    // space must not be read.
    let mut d = extended_disk(&[(0, 63, 100, 0)]);
    d.put(
        0,
        &sector(&[entry(0, 0x83, 2048, 4096), entry(0, 0x0f, 10000, 1_000_000)]),
    );
    d.put(
        10000 * 512,
        &sector(&[entry(0, 0x83, 63, 100), entry(0, 0x05, 500_000, 100)]),
    );
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.len(), 3);
    assert!(has_warning(&t, "past the end of the disk"), "{:?}", t.warnings);
}

#[test]
fn mbr_two_extended_partitions_sharing_a_chain_list_it_once() {
    let mut d = extended_disk(&[(0, 63, 100, 2000), (2000, 63, 100, 0)]);
    d.put(
        0,
        &sector(&[entry(0, 0x05, 10000, 30000), entry(0, 0x0f, 10000, 30000)]),
    );
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 5, 6]);
    assert!(has_warning(&t, "2 extended partitions"), "{:?}", t.warnings);
    assert!(has_warning(&t, "loops back"), "{:?}", t.warnings);
}

#[test]
fn mbr_long_chain_is_capped() {
    let mut d = MemDisk(vec![0; (4 * MIB) as usize]);
    d.put(0, &sector(&[entry(0, 0x05, 1, 8000)]));
    for i in 0..300u32 {
        let next = if i < 299 { (i + 1) * 20 } else { 0 };
        let mut entries = vec![entry(0, 0x83, 1, 10)];
        if next != 0 {
            entries.push(entry(0, 0x05, next, 20));
        }
        d.put(u64::from(1 + i * 20) * 512, &sector(&entries));
    }
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.len(), 1 + mbr::MAX_LOGICAL as usize);
    assert!(has_warning(&t, "more than 128"), "{:?}", t.warnings);
}

#[test]
fn mbr_partition_past_the_end_is_cut() {
    let mut d = MemDisk(vec![0; (8 * MIB) as usize]);
    d.put(
        0,
        &sector(&[entry(0, 0x83, 2048, 100_000), entry(0, 0x83, 1_000_000, 10)]),
    );
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(layout(&t), [(1, 2048 * 512, 8 * MIB - 2048 * 512)]);
    assert!(has_warning(&t, "cut to"), "{:?}", t.warnings);
    assert!(has_warning(&t, "partition 2 starts at LBA 1000000"));
}

#[test]
fn mbr_overlaps_are_reported() {
    let mut d = MemDisk(vec![0; (8 * MIB) as usize]);
    d.put(0, &sector(&[entry(0, 0x83, 2048, 4096), entry(0, 0x83, 4096, 4096)]));
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.partitions.len(), 2);
    assert!(has_warning(&t, "partitions 1 and 2 overlap"), "{:?}", t.warnings);
}

// ---- no table ----

#[test]
fn boot_sectors_at_lba0_mean_no_table() {
    for boot in [fat32_boot_sector(), ntfs_boot_sector()] {
        let mut d = MemDisk(vec![0; (8 * MIB) as usize]);
        d.put(0, &boot);
        let t = read_partition_table(&d, 512).unwrap();
        assert_eq!(t.kind, TableKind::None);
        assert!(t.partitions.is_empty());
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }
}

#[test]
fn blank_and_tiny_disks_have_no_table() {
    for len in [0usize, 100, 512, 4096, MIB as usize] {
        let t = read_partition_table(&MemDisk(vec![0; len]), 512).unwrap();
        assert_eq!(t.kind, TableKind::None, "{len}");
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }
}

#[test]
fn garbage_with_signature_is_no_table_with_a_warning() {
    let mut s = sector(&[]);
    s[..510].fill(0x4f);
    let mut d = MemDisk(vec![0; MIB as usize]);
    d.put(0, &s);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::None);
    assert!(has_warning(&t, "not a partition table"), "{:?}", t.warnings);
}

#[test]
fn odd_sector_sizes_are_refused() {
    let d = MemDisk(vec![0; MIB as usize]);
    let e = read_partition_table(&d, 1024).unwrap_err();
    assert!(e.to_string().starts_with("partition table: "), "{e}");
}

// ---- GPT ----

const GPT_ENTRIES: u32 = 128;

/// The entry array and both headers of a GPT on a disk of `sectors` LBAs.
struct GptLayout {
    ss: u64,
    sectors: u64,
    array: Vec<u8>,
}

impl GptLayout {
    fn new(ss: u64, sectors: u64, parts: &[(Uuid, u64, u64, &str)]) -> Self {
        let mut array = Vec::new();
        for &(t, first, last, name) in parts {
            array.extend(entry_bytes(t, first, last, name, 128));
        }
        array.resize(GPT_ENTRIES as usize * 128, 0);
        GptLayout { ss, sectors, array }
    }

    fn array_sectors(&self) -> u64 {
        (self.array.len() as u64).div_ceil(self.ss)
    }

    fn spec(&self, my_lba: u64, alternate_lba: u64, entries_lba: u64) -> HeaderSpec {
        HeaderSpec {
            my_lba,
            alternate_lba,
            first_usable: 2 + self.array_sectors(),
            last_usable: self.sectors - 2 - self.array_sectors(),
            entries_lba,
            entry_count: GPT_ENTRIES,
            entry_size: 128,
        }
    }

    /// PMBR, primary, backup; the backup at `backup_lba` (normally the last LBA).
    fn write(&self, d: &mut MemDisk, backup_lba: u64) {
        let ss = self.ss as usize;
        d.put(0, &sector(&[entry(0, 0xee, 1, (self.sectors - 1) as u32)]));
        let primary = header_bytes(&self.spec(1, backup_lba, 2), &self.array, ss);
        d.put(self.ss, &primary);
        d.put(2 * self.ss, &self.array);
        let backup_array_lba = backup_lba - self.array_sectors();
        let mut spec = self.spec(backup_lba, 1, backup_array_lba);
        spec.last_usable = spec.last_usable.min(backup_array_lba - 1);
        let backup = header_bytes(&spec, &self.array, ss);
        d.put(backup_array_lba * self.ss, &self.array);
        d.put(backup_lba * self.ss, &backup);
    }

    fn disk(&self) -> MemDisk {
        let mut d = MemDisk(vec![0; (self.ss * self.sectors) as usize]);
        self.write(&mut d, self.sectors - 1);
        d
    }
}

fn windows_layout(ss: u64) -> GptLayout {
    let mib = MIB / ss;
    GptLayout::new(
        ss,
        16 * mib,
        &[
            (ESP, mib, 3 * mib - 1, "EFI system partition"),
            (MSR, 3 * mib, 4 * mib - 1, "Microsoft reserved partition"),
            (BASIC, 4 * mib, 15 * mib - 1, "Basic data partition"),
        ],
    )
}

fn assert_windows_partitions(t: &PartitionTable) {
    assert_eq!(
        layout(t),
        [(1, MIB, 2 * MIB), (2, 3 * MIB, MIB), (3, 4 * MIB, 11 * MIB)]
    );
    let types: Vec<_> = t.partitions.iter().map(gpt_type).collect();
    assert_eq!(types, [ESP, MSR, BASIC]);
    assert_eq!(t.partitions[0].name.as_deref(), Some("EFI system partition"));
    assert_eq!(t.partitions[1].kind.describe(), "Microsoft reserved");
    assert!(t.partitions[1].kind.not_a_filesystem().is_some());
    assert!(t.partitions[2].kind.not_a_filesystem().is_none());
}

#[test]
fn gpt_windows_layout() {
    let d = windows_layout(512).disk();
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_eq!(t.sector_size, 512);
    assert_windows_partitions(&t);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn gpt_empty_names_are_none() {
    let g = GptLayout::new(512, 2048, &[(BASIC, 40, 99, "")]);
    let t = read_partition_table(&g.disk(), 512).unwrap();
    assert_eq!(t.partitions[0].name, None);
}

#[test]
fn gpt_damaged_primary_header_uses_the_backup() {
    let mut d = windows_layout(512).disk();
    d.put(512 + 40, &[0xff]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: true });
    assert_windows_partitions(&t);
    assert!(has_warning(&t, "using the backup GPT"), "{:?}", t.warnings);
    assert!(has_warning(&t, "CRC"), "{:?}", t.warnings);
}

#[test]
fn gpt_damaged_primary_array_uses_the_backup() {
    let mut d = windows_layout(512).disk();
    d.put(2 * 512 + 17, &[0xff]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: true });
    assert_windows_partitions(&t);
    assert!(has_warning(&t, "entry array CRC"), "{:?}", t.warnings);
}

#[test]
fn gpt_both_damaged_is_an_error() {
    let g = windows_layout(512);
    let mut d = g.disk();
    d.put(512 + 40, &[0xff]);
    d.put((g.sectors - 1) * 512 + 40, &[0xff]);
    let e = read_partition_table(&d, 512).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("partition table: "), "{msg}");
    assert!(msg.contains("primary GPT") && msg.contains("backup GPT"), "{msg}");
    assert_eq!(e.errno(), libc::EIO);
}

#[test]
fn gpt_on_an_enlarged_disk() {
    // Partitioned at 16 MiB, then grown to 20 MiB: the backup stays at the old end.
    let g = windows_layout(512);
    let mut d = MemDisk(vec![0; (20 * MIB) as usize]);
    g.write(&mut d, g.sectors - 1);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert!(has_warning(&t, "enlarged"), "{:?}", t.warnings);
    // The primary header still knows where its backup is when its array is damaged.
    d.put(2 * 512 + 17, &[0xff]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: true });
    assert_windows_partitions(&t);
}

#[test]
fn gpt_damaged_backup_is_a_warning() {
    let g = windows_layout(512);
    let mut d = g.disk();
    d.put((g.sectors - 1) * 512 + 40, &[0xff]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert!(has_warning(&t, "backup GPT at LBA"), "{:?}", t.warnings);
}

#[test]
fn gpt_4096_byte_sectors() {
    let d = windows_layout(4096).disk();
    let t = read_partition_table(&d, 4096).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_eq!(t.sector_size, 4096);
    assert_windows_partitions(&t);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn gpt_sector_size_is_probed() {
    // Laid out in 4096-byte sectors, declared 512.
    let t = read_partition_table(&windows_layout(4096).disk(), 512).unwrap();
    assert_eq!(t.sector_size, 4096);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_windows_partitions(&t);
    assert!(has_warning(&t, "4096-byte sectors"), "{:?}", t.warnings);
    // And the reverse.
    let t = read_partition_table(&windows_layout(512).disk(), 4096).unwrap();
    assert_eq!(t.sector_size, 512);
    assert_windows_partitions(&t);
    // A damaged primary at the other size still finds the backup there.
    let g = windows_layout(4096);
    let mut d = g.disk();
    d.put(4096 + 40, &[0xff]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!((t.kind, t.sector_size), (TableKind::Gpt { from_backup: true }, 4096));
    assert_windows_partitions(&t);
}

#[test]
fn hybrid_mbr_uses_the_gpt() {
    let mut d = windows_layout(512).disk();
    d.put(0, &sector(&[entry(0, 0xee, 1, 2047), entry(0x80, 0x0c, 2048, 4096)]));
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_windows_partitions(&t);
    assert!(has_warning(&t, "hybrid MBR"), "{:?}", t.warnings);
}

#[test]
fn mbr_without_protective_entry_beats_a_stray_gpt() {
    let mut d = windows_layout(512).disk();
    d.put(0, &sector(&[entry(0, 0x83, 2048, 8192)]));
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    assert_eq!(layout(&t), [(1, MIB, 4 * MIB)]);
    assert!(has_warning(&t, "GPT header"), "{:?}", t.warnings);
}

#[test]
fn gpt_without_any_mbr_is_read_with_a_warning() {
    let mut d = windows_layout(512).disk();
    d.put(0, &[0; 512]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_windows_partitions(&t);
    assert!(has_warning(&t, "no MBR signature"), "{:?}", t.warnings);
}

#[test]
fn a_lone_backup_gpt_without_mbr_is_not_a_table() {
    // What a whole-disk mkfs over a former GPT disk leaves: only the backup copy.
    let mut d = windows_layout(512).disk();
    d.put(0, &[0; 1024]);
    let t = read_partition_table(&d, 512).unwrap();
    assert_eq!(t.kind, TableKind::None);
}

#[test]
fn gpt_partition_past_the_end_is_cut() {
    let g = GptLayout::new(512, 2048, &[(BASIC, 40, 1900, "a"), (BASIC, 1901, 5000, "b")]);
    let t = read_partition_table(&g.disk(), 512).unwrap();
    assert_eq!(layout(&t), [(1, 40 * 512, 1861 * 512), (2, 1901 * 512, 147 * 512)]);
    assert!(
        has_warning(&t, "partition 2 (LBA 1901, 3100 sectors)"),
        "{:?}",
        t.warnings
    );
}

#[test]
fn gpt_backwards_entry_is_left_out() {
    let g = GptLayout::new(512, 2048, &[(BASIC, 100, 40, "x"), (BASIC, 200, 299, "y")]);
    let t = read_partition_table(&g.disk(), 512).unwrap();
    assert_eq!(layout(&t), [(2, 200 * 512, 100 * 512)]);
    assert!(has_warning(&t, "before it starts"), "{:?}", t.warnings);
}

#[test]
fn never_panics_on_noisy_disks() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    };
    for round in 0..300 {
        let g = windows_layout(512);
        let mut d = g.disk();
        // Smash a few bytes of the structures, and sometimes a whole sector.
        for _ in 0..(round % 7 + 1) {
            let n = noise(8);
            let at = match n[0] % 4 {
                0 => u64::from(n[1]) * 2 + 446,
                1 => 512 + u64::from(n[1]),
                2 => 1024 + u64::from(u16::from_le_bytes([n[1], n[2]])) % 16384,
                _ => (g.sectors - 1) * 512 + u64::from(n[1]),
            };
            d.put(at.min(d.size() - 1), &n[3..4]);
        }
        if round % 5 == 0 {
            let s = noise(512);
            d.put(0, &s);
        }
        let _ = read_partition_table(&d, 512);
        let _ = read_partition_table(&d, 4096);
    }
}
