//! The MBR (sector 0) and the chain of EBRs inside an extended partition.
//!
//! Sector 0 ends in 0x55AA both when it is a partition table and when it is the boot
//! sector of a filesystem written straight onto the disk, so a table is accepted only
//! when its entries look like one (as the Linux kernel and libblkid judge) and the
//! sector is not recognisably a FAT, exFAT or NTFS boot sector.

use std::collections::HashSet;

use super::types::{is_extended, GPT_PROTECTIVE};
use super::{place, Partition, PartitionKind};
use crate::bytes::{le_u16, le_u32};
use crate::io::ReadAt;

/// The MBR and each EBR occupy the first 512 bytes of their sector, whatever the
/// sector size.
pub const MBR_SIZE: usize = 512;
const ENTRIES_AT: usize = 446;
const ENTRY_SIZE: usize = 16;
const SIGNATURE_AT: usize = 510;

/// Linux's own limit on partitions per disk is far above what any real EBR chain holds;
/// 128 keeps a crafted chain cheap while leaving room for every real one.
pub const MAX_LOGICAL: u32 = 128;
/// EBRs without a data entry consume no number, so the walk needs its own bound.
const MAX_EBRS: usize = 2 * MAX_LOGICAL as usize;

/// One 16-byte partition entry. CHS fields are ignored: every tool since the 1990s
/// writes and reads the LBA fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    pub status: u8,
    pub type_byte: u8,
    pub start_lba: u32,
    pub sectors: u32,
}

impl MbrEntry {
    fn at(sector: &[u8], slot: usize) -> MbrEntry {
        let e = &sector[ENTRIES_AT + slot * ENTRY_SIZE..][..ENTRY_SIZE];
        MbrEntry {
            status: e[0],
            type_byte: e[4],
            start_lba: le_u32(e, 8),
            sectors: le_u32(e, 12),
        }
    }

    /// Type 0 marks a free slot; a zero length describes nothing to read, and the
    /// kernel skips such entries too.
    pub fn is_empty(&self) -> bool {
        self.type_byte == 0 || self.sectors == 0
    }
}

/// The primary table: `slots[i]` is partition i + 1, `None` where the slot is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    pub slots: [Option<MbrEntry>; 4],
}

impl Mbr {
    pub fn has_protective_entry(&self) -> bool {
        self.used().any(|(_, e)| e.type_byte == GPT_PROTECTIVE)
    }

    /// A protective entry next to real ones: some tools write these so that BIOS-era
    /// systems see a few GPT partitions.
    pub fn is_hybrid(&self) -> bool {
        self.has_protective_entry() && self.used().any(|(_, e)| e.type_byte != GPT_PROTECTIVE)
    }

    /// The used slots with their partition numbers (1–4).
    pub fn used(&self) -> impl Iterator<Item = (u32, MbrEntry)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i as u32 + 1, e)))
    }
}

/// What sector 0 is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sector0 {
    /// No 0x55AA signature (or fewer than 512 bytes).
    NoSignature,
    /// The boot sector of a filesystem that fills the whole disk (the name says which).
    BootSector(&'static str),
    /// 0x55AA, but the entries cannot be a partition table; the reason is given.
    NotATable(String),
    Table(Mbr),
}

/// Classify sector 0. `disk_size` and `sector_size` let entries that start past the end
/// of the disk count as evidence of garbage.
pub fn parse_mbr(sector0: &[u8], disk_size: u64, sector_size: u32) -> Sector0 {
    if sector0.len() < MBR_SIZE || sector0[SIGNATURE_AT..SIGNATURE_AT + 2] != [0x55, 0xaa] {
        return Sector0::NoSignature;
    }
    if let Some(fs) = boot_sector_filesystem(sector0) {
        return Sector0::BootSector(fs);
    }
    let entries: [MbrEntry; 4] = std::array::from_fn(|slot| MbrEntry::at(sector0, slot));
    // The kernel and libblkid reject on a bad status byte in any slot, used or not:
    // it is the cheapest tell of boot code where entries should be.
    if let Some((slot, e)) = entries
        .iter()
        .enumerate()
        .find(|(_, e)| e.status != 0x00 && e.status != 0x80)
    {
        return Sector0::NotATable(format!(
            "entry {} has status byte {:#04x}, not 0x00 or 0x80",
            slot + 1,
            e.status
        ));
    }
    let mut slots = [None; 4];
    for (slot, e) in entries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        if e.start_lba == 0 {
            return Sector0::NotATable(format!("entry {} starts at LBA 0, on top of the MBR itself", slot + 1));
        }
        slots[slot] = Some(*e);
    }
    let disk_sectors = disk_size / u64::from(sector_size.max(1));
    let data: Vec<&MbrEntry> = slots
        .iter()
        .flatten()
        .filter(|e| e.type_byte != GPT_PROTECTIVE)
        .collect();
    // One entry past the end may be a table from a larger disk; all of them is noise.
    if !data.is_empty() && data.iter().all(|e| u64::from(e.start_lba) >= disk_sectors) {
        return Sector0::NotATable(format!(
            "every entry starts past the end of the disk ({disk_sectors} sectors)"
        ));
    }
    Sector0::Table(Mbr { slots })
}

/// Recognise the boot sector of FAT, exFAT or NTFS. FAT has no single magic number, so
/// it takes a jump instruction, a "FAT" type string where FAT12/16 or FAT32 put it, and
/// a BPB whose fields are in range; libblkid likewise lets a FAT boot sector win over
/// the partition-table reading of the same sector.
fn boot_sector_filesystem(b: &[u8]) -> Option<&'static str> {
    match &b[3..11] {
        b"NTFS    " => return Some("NTFS"),
        b"EXFAT   " => return Some("exFAT"),
        _ => {}
    }
    let jump = b[0] == 0xe9 || (b[0] == 0xeb && b[2] == 0x90);
    let fat_string = &b[54..57] == b"FAT" || &b[82..87] == b"FAT32";
    let bytes_per_sector = le_u16(b, 11);
    let bpb_sane = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && b[13].is_power_of_two()
        && le_u16(b, 14) >= 1
        && matches!(b[16], 1 | 2)
        && (b[21] == 0xf0 || b[21] >= 0xf8);
    (jump && fat_string && bpb_sane).then_some("FAT")
}

/// The primary partitions, extended containers included (the caller skips them by
/// type), each cut to the disk.
pub(super) fn primary_partitions(
    mbr: &Mbr,
    sector_size: u32,
    disk_size: u64,
    warnings: &mut Vec<String>,
) -> Vec<Partition> {
    mbr.used()
        .filter_map(|(number, e)| {
            place(
                number,
                u64::from(e.start_lba),
                u64::from(e.sectors),
                sector_size,
                disk_size,
                PartitionKind::Mbr { type_byte: e.type_byte },
                None,
                warnings,
            )
        })
        .collect()
}

/// One EBR: its data entry (offset from this EBR) and its link to the next EBR (offset
/// from the start of the extended partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ebr {
    pub data: Option<MbrEntry>,
    pub next: Option<MbrEntry>,
    /// Entries beyond the first data entry and first link, which fdisk also ignores.
    pub ignored: usize,
}

pub fn parse_ebr(sector: &[u8]) -> Result<Ebr, String> {
    if sector.len() < MBR_SIZE || sector[SIGNATURE_AT..SIGNATURE_AT + 2] != [0x55, 0xaa] {
        return Err("no 0x55AA signature".into());
    }
    let mut ebr = Ebr {
        data: None,
        next: None,
        ignored: 0,
    };
    for slot in 0..4 {
        let e = MbrEntry::at(sector, slot);
        if e.is_empty() {
            continue;
        }
        let place = if is_extended(e.type_byte) {
            &mut ebr.next
        } else {
            &mut ebr.data
        };
        if place.is_none() {
            *place = Some(e);
        } else {
            ebr.ignored += 1;
        }
    }
    Ok(ebr)
}

/// Where the walk of EBR chains stands: logical numbers continue from one extended
/// partition to the next, as Linux numbers them, and an EBR already read (by any
/// chain) ends the chain that reaches it again, so a damaged table cannot list the same
/// logical partition twice.
pub(super) struct LogicalWalk {
    next_number: u32,
    visited: HashSet<u64>,
}

impl LogicalWalk {
    pub fn new() -> Self {
        LogicalWalk {
            next_number: 5,
            visited: HashSet::new(),
        }
    }

    /// Follow the EBR chain of the extended partition `ext` (primary number `ext_number`)
    /// and append its logical partitions. A broken link ends the chain with a warning;
    /// the partitions found before it are kept.
    pub fn read_chain(
        &mut self,
        disk: &dyn ReadAt,
        ext_number: u32,
        ext: MbrEntry,
        sector_size: u32,
        partitions: &mut Vec<Partition>,
        warnings: &mut Vec<String>,
    ) {
        let ss = u64::from(sector_size);
        let disk_sectors = disk.size() / ss;
        let ext_start = u64::from(ext.start_lba);
        let ext_end = ext_start + u64::from(ext.sectors);
        let mut ebr_lba = ext_start;
        let stop = |why: String| {
            format!("extended partition {ext_number}: {why}; no further logical partitions are read from it")
        };
        for _ in 0..MAX_EBRS {
            if self.next_number >= 5 + MAX_LOGICAL {
                warnings.push(stop(format!("more than {MAX_LOGICAL} logical partitions")));
                return;
            }
            if !self.visited.insert(ebr_lba) {
                warnings.push(stop(format!("the EBR chain loops back to LBA {ebr_lba}")));
                return;
            }
            if ebr_lba >= ext_end {
                warnings.push(stop(format!(
                    "an EBR link points to LBA {ebr_lba}, outside the extended partition (LBA {ext_start}–{})",
                    ext_end - 1
                )));
                return;
            }
            if ebr_lba >= disk_sectors {
                warnings.push(stop(format!(
                    "an EBR link points to LBA {ebr_lba}, past the end of the disk ({disk_sectors} sectors)"
                )));
                return;
            }
            let mut sector = [0u8; MBR_SIZE];
            if let Err(e) = disk.read_at(ebr_lba * ss, &mut sector) {
                warnings.push(stop(format!("the EBR at LBA {ebr_lba} cannot be read: {e}")));
                return;
            }
            let ebr = match parse_ebr(&sector) {
                Ok(ebr) => ebr,
                Err(why) => {
                    warnings.push(stop(format!("the EBR at LBA {ebr_lba}: {why}")));
                    return;
                }
            };
            if ebr.ignored > 0 {
                warnings.push(format!(
                    "extended partition {ext_number}: the EBR at LBA {ebr_lba} has {} extra entries, ignored",
                    ebr.ignored
                ));
            }
            if let Some(d) = ebr.data {
                self.add_logical(
                    ext_number,
                    (ext_start, ext_end),
                    ebr_lba,
                    d,
                    sector_size,
                    disk.size(),
                    partitions,
                    warnings,
                );
            }
            match ebr.next {
                Some(link) => ebr_lba = ext_start + u64::from(link.start_lba),
                None => return,
            }
        }
        warnings.push(stop(format!("more than {MAX_EBRS} EBRs")));
    }

    #[allow(clippy::too_many_arguments)]
    fn add_logical(
        &mut self,
        ext_number: u32,
        (ext_start, ext_end): (u64, u64),
        ebr_lba: u64,
        d: MbrEntry,
        sector_size: u32,
        disk_size: u64,
        partitions: &mut Vec<Partition>,
        warnings: &mut Vec<String>,
    ) {
        let number = self.next_number;
        self.next_number += 1;
        if d.start_lba == 0 {
            warnings.push(format!(
                "logical partition {number} starts on its own EBR (LBA {ebr_lba}): left out"
            ));
            return;
        }
        let start = ebr_lba + u64::from(d.start_lba);
        let end = start + u64::from(d.sectors);
        if end > ext_end {
            warnings.push(format!(
                "logical partition {number} (LBA {start}–{}) reaches past the end of extended partition {ext_number} (LBA {ext_start}–{})",
                end - 1,
                ext_end - 1
            ));
        }
        partitions.extend(place(
            number,
            start,
            u64::from(d.sectors),
            sector_size,
            disk_size,
            PartitionKind::Mbr { type_byte: d.type_byte },
            None,
            warnings,
        ));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn entry(status: u8, type_byte: u8, start_lba: u32, sectors: u32) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[0] = status;
        e[4] = type_byte;
        e[8..12].copy_from_slice(&start_lba.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
        e
    }

    /// A 512-byte MBR or EBR with the given entries in slots 1, 2, ...
    pub fn sector(entries: &[[u8; 16]]) -> Vec<u8> {
        let mut s = vec![0u8; MBR_SIZE];
        for (i, e) in entries.iter().enumerate() {
            s[ENTRIES_AT + i * ENTRY_SIZE..][..ENTRY_SIZE].copy_from_slice(e);
        }
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn primaries() {
        let s = sector(&[entry(0x80, 0x07, 2048, 4096), [0; 16], entry(0, 0x83, 8192, 100)]);
        let Sector0::Table(m) = parse_mbr(&s, 64 * MIB, 512) else {
            panic!()
        };
        let used: Vec<_> = m.used().map(|(n, e)| (n, e.type_byte)).collect();
        assert_eq!(used, [(1, 0x07), (3, 0x83)]);
        assert!(!m.has_protective_entry());
    }

    #[test]
    fn no_signature() {
        let mut s = sector(&[entry(0, 0x07, 2048, 4096)]);
        s[511] = 0;
        assert_eq!(parse_mbr(&s, 64 * MIB, 512), Sector0::NoSignature);
        assert_eq!(parse_mbr(&s[..100], 64 * MIB, 512), Sector0::NoSignature);
    }

    #[test]
    fn garbage_entries_are_not_a_table() {
        let s = sector(&[entry(0x12, 0x07, 2048, 4096)]);
        assert!(matches!(parse_mbr(&s, 64 * MIB, 512), Sector0::NotATable(_)));
        let s = sector(&[entry(0, 0x07, 0, 4096)]);
        assert!(matches!(parse_mbr(&s, 64 * MIB, 512), Sector0::NotATable(_)));
        let s = sector(&[entry(0, 0x07, 0x7000_0000, 4096)]);
        assert!(matches!(parse_mbr(&s, 64 * MIB, 512), Sector0::NotATable(_)));
    }

    #[test]
    fn protective_and_hybrid() {
        let s = sector(&[entry(0, 0xee, 1, u32::MAX)]);
        let Sector0::Table(m) = parse_mbr(&s, 64 * MIB, 512) else {
            panic!()
        };
        assert!(m.has_protective_entry() && !m.is_hybrid());
        let s = sector(&[entry(0, 0xee, 1, 2047), entry(0x80, 0x0c, 2048, 4096)]);
        let Sector0::Table(m) = parse_mbr(&s, 64 * MIB, 512) else {
            panic!()
        };
        assert!(m.is_hybrid());
    }

    /// A FAT32 boot sector as mkfs.fat writes it: jump, BPB, "FAT32   " at 82. Its boot
    /// code bytes in the entry area are zero here, which would otherwise pass as an
    /// empty table.
    pub fn fat32_boot_sector() -> Vec<u8> {
        let mut s = sector(&[]);
        s[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        s[3..11].copy_from_slice(b"mkfs.fat");
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = 8;
        s[14..16].copy_from_slice(&32u16.to_le_bytes());
        s[16] = 2;
        s[21] = 0xf8;
        s[82..90].copy_from_slice(b"FAT32   ");
        s
    }

    pub fn ntfs_boot_sector() -> Vec<u8> {
        let mut s = sector(&[]);
        s[..3].copy_from_slice(&[0xeb, 0x52, 0x90]);
        s[3..11].copy_from_slice(b"NTFS    ");
        // NTFS boot code runs through the entry area; this byte pattern is typical.
        s[446..510].fill(0x66);
        s
    }

    #[test]
    fn boot_sectors_are_not_tables() {
        assert_eq!(
            parse_mbr(&fat32_boot_sector(), 64 * MIB, 512),
            Sector0::BootSector("FAT")
        );
        assert_eq!(
            parse_mbr(&ntfs_boot_sector(), 64 * MIB, 512),
            Sector0::BootSector("NTFS")
        );
        let mut fat16 = fat32_boot_sector();
        fat16[82..90].fill(0);
        fat16[54..62].copy_from_slice(b"FAT16   ");
        assert_eq!(parse_mbr(&fat16, 64 * MIB, 512), Sector0::BootSector("FAT"));
        // A jump and a "FAT" string without a sane BPB is not enough.
        let mut odd = fat32_boot_sector();
        odd[16] = 0;
        assert!(matches!(parse_mbr(&odd, 64 * MIB, 512), Sector0::Table(_)));
    }

    #[test]
    fn ebr_entries() {
        let s = sector(&[entry(0, 0x83, 2048, 100), entry(0, 0x05, 4096, 2148)]);
        let ebr = parse_ebr(&s).unwrap();
        assert_eq!(ebr.data.unwrap().start_lba, 2048);
        assert_eq!(ebr.next.unwrap().start_lba, 4096);
        assert_eq!(ebr.ignored, 0);
        assert!(parse_ebr(&[0u8; 512]).is_err());
    }

    #[test]
    fn never_panics_on_noise() {
        for seed in 0..2000u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let s: Vec<u8> = (0..MBR_SIZE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut s = s;
            s[510] = 0x55;
            s[511] = 0xaa;
            let _ = parse_mbr(&s, seed * 512, 512);
            let _ = parse_mbr(&s, seed * 512, (seed % 3) as u32);
            let _ = parse_ebr(&s);
        }
    }
}
