//! The partition table of a virtual disk: where each volume starts and ends.
//!
//! Which table a disk has is decided as the Linux kernel and libblkid decide, since
//! the point is to show what the guest saw:
//! - an MBR with a 0xEE entry means GPT. When other entries stand next to it (a hybrid
//!   MBR) the GPT still wins, with a warning, as in Linux, parted and gdisk: the GPT
//!   is the complete table and the MBR entries a shadow of some of it for BIOS-era
//!   systems (which is also why Windows on such a disk may see only the MBR side);
//! - an MBR without a 0xEE entry is an MBR disk, even if a valid GPT header sits at
//!   LBA 1 (Linux and Windows read the MBR; parted asks). Such a header is left over
//!   from an earlier partitioning, and what the guest used is the MBR; it earns a
//!   warning;
//! - no MBR at all (no 0x55AA, or entries that cannot be a table) but a valid GPT
//!   header at LBA 1: GPT, with a warning. Linux needs `gpt` on its command line for
//!   this, gdisk accepts it; for a read-only tool, showing what is there is the better
//!   choice, and a CRC-checked header that names its own LBA is strong evidence. A
//!   backup header alone does not count: a whole-disk mkfs over a former GPT disk
//!   leaves one at the end;
//! - a FAT, exFAT or NTFS boot sector at LBA 0, or nothing recognisable: no table, and
//!   the caller reads the whole disk as one volume.
//!
//! GPT LBAs are in the disk's logical sectors. When no GPT is found with the sector size
//! the caller gives, the other of 512 and 4096 is tried: an image partitioned as a
//! 4Kn disk and then copied into a VHDX that declares 512-byte sectors (or the reverse)
//! is otherwise unreadable. MBR LBAs are taken in the given size only: an MBR has no
//! self-check to confirm a guess with.

pub mod gpt;
pub mod mbr;
pub mod types;

pub use types::PartitionKind;

use crate::io::ReadAt;
use crate::{Error, Result};
use gpt::Trust;
use mbr::Sector0;

/// One partition, with its place on the disk in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// As the table numbers it: GPT entry index + 1; MBR 1–4 primary, 5+ logical.
    pub number: u32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Bytes; cut short where the table reaches past the end of the disk.
    pub size: u64,
    pub kind: PartitionKind,
    /// The GPT partition name, if not empty.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// No partition table: the whole disk is one volume.
    None,
    Mbr,
    /// `from_backup`: the primary GPT was damaged and the backup copy was read.
    Gpt {
        from_backup: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub kind: TableKind,
    /// The sector size the table's LBAs were read in; differs from the one passed in
    /// when only the other size gave a valid GPT.
    pub sector_size: u32,
    pub partitions: Vec<Partition>,
    /// Things a user should know: damage worked around, odd layouts, ignored data.
    pub warnings: Vec<String>,
}

/// Enough to report every problem of a sane table; a crafted one cannot flood the log.
const MAX_WARNINGS: usize = 64;
const MAX_OVERLAP_WARNINGS: usize = 8;

/// Read the partition table of `disk`, whose logical sectors are `sector_size` bytes
/// (512 or 4096).
///
/// Errors: the disk cannot be read at sector 0, or a GPT is announced (protective MBR,
/// or a valid header at LBA 1) but neither copy of it is intact. Everything milder is a
/// warning in the result.
pub fn read_partition_table(disk: &dyn ReadAt, sector_size: u32) -> Result<PartitionTable> {
    if sector_size != 512 && sector_size != 4096 {
        return Err(Error::PartitionTable(format!(
            "sector size {sector_size} is not 512 or 4096"
        )));
    }
    let disk_size = disk.size();
    let mut table = PartitionTable {
        kind: TableKind::None,
        sector_size,
        partitions: Vec::new(),
        warnings: Vec::new(),
    };
    if disk_size < mbr::MBR_SIZE as u64 {
        return Ok(table);
    }
    let mut sector0 = [0u8; mbr::MBR_SIZE];
    disk.read_at(0, &mut sector0)?;
    match mbr::parse_mbr(&sector0, disk_size, sector_size) {
        Sector0::Table(m) if m.has_protective_entry() => {
            if m.is_hybrid() {
                table.warnings.push(
                    "hybrid MBR: the MBR lists partitions besides its GPT protective entry; the GPT is used".into(),
                );
            }
            match find_gpt(disk, sector_size, Trust::EitherCopy) {
                Ok(found) => table.use_gpt(found, disk_size),
                Err(why) => {
                    return Err(Error::PartitionTable(format!(
                        "the protective MBR announces a GPT, but no intact copy was found: {why}"
                    )))
                }
            }
        }
        Sector0::Table(m) => {
            table.kind = TableKind::Mbr;
            table.partitions = mbr::primary_partitions(&m, sector_size, disk_size, &mut table.warnings);
            let mut walk = mbr::LogicalWalk::new();
            let extended: Vec<_> = m.used().filter(|(_, e)| types::is_extended(e.type_byte)).collect();
            if extended.len() > 1 {
                table.warnings.push(format!(
                    "the MBR has {} extended partitions; the logical partitions of each are read",
                    extended.len()
                ));
            }
            for (number, e) in extended {
                walk.read_chain(disk, number, e, sector_size, &mut table.partitions, &mut table.warnings);
            }
            if let Some(size) = gpt_header_at_lba1(disk, sector_size) {
                table.warnings.push(format!(
                    "a valid GPT header ({size}-byte sectors) sits at LBA 1, but the MBR has no protective entry, so the MBR is used, as operating systems do"
                ));
            }
        }
        Sector0::BootSector(_) => {}
        Sector0::NoSignature => table.try_gpt_without_mbr(disk, None)?,
        Sector0::NotATable(why) => table.try_gpt_without_mbr(disk, Some(why))?,
    }
    table.check_overlaps();
    if table.warnings.len() > MAX_WARNINGS {
        let more = table.warnings.len() - MAX_WARNINGS;
        table.warnings.truncate(MAX_WARNINGS);
        table.warnings.push(format!("... and {more} more warnings"));
    }
    Ok(table)
}

/// The GPT, at the given sector size or else at the other one, with the sector size
/// it was found at.
fn find_gpt(disk: &dyn ReadAt, sector_size: u32, trust: Trust) -> std::result::Result<(gpt::FoundGpt, u32), String> {
    let why = match gpt::read_gpt(disk, sector_size, trust) {
        Ok(found) => return Ok((found, sector_size)),
        Err(why) => why,
    };
    let other = other_size(sector_size);
    match gpt::read_gpt(disk, other, trust) {
        Ok(mut found) => {
            found.warnings.insert(
                0,
                format!(
                    "the disk declares {sector_size}-byte sectors, but its GPT is laid out in {other}-byte sectors; reading it with {other}-byte sectors"
                ),
            );
            Ok((found, other))
        }
        Err(other_why) => Err(format!("{why}; with {other}-byte sectors: {other_why}")),
    }
}

fn other_size(sector_size: u32) -> u32 {
    if sector_size == 512 {
        4096
    } else {
        512
    }
}

/// The sector size at which a valid GPT header sits at LBA 1, if any.
fn gpt_header_at_lba1(disk: &dyn ReadAt, sector_size: u32) -> Option<u32> {
    [sector_size, other_size(sector_size)]
        .into_iter()
        .find(|&size| gpt::read_header(disk, size, 1).is_ok())
}

impl PartitionTable {
    /// Sector 0 holds no table, yet a GPT may follow it. `not_a_table` says why a
    /// sector 0 with the 0x55AA signature was not taken for an MBR.
    fn try_gpt_without_mbr(&mut self, disk: &dyn ReadAt, not_a_table: Option<String>) -> Result<()> {
        let why_not_mbr = match &not_a_table {
            Some(why) => format!("sector 0 ends in 0x55AA but is not a partition table ({why})"),
            None => "sector 0 has no MBR signature".to_string(),
        };
        match find_gpt(disk, self.sector_size, Trust::PrimaryHeaderRequired) {
            Ok(found) => {
                self.warnings
                    .push(format!("{why_not_mbr}; using the GPT at LBA 1 all the same"));
                self.use_gpt(found, disk.size());
                Ok(())
            }
            // A valid header at LBA 1 with both entry arrays damaged is a GPT disk that
            // cannot be read, not a disk without a table.
            Err(why) if gpt_header_at_lba1(disk, self.sector_size).is_some() => Err(Error::PartitionTable(format!(
                "{why_not_mbr}, and the GPT at LBA 1 cannot be read: {why}"
            ))),
            // No signature and no GPT is simply a disk without a table (a filesystem
            // written onto the whole disk, or a blank one): nothing to warn about.
            Err(_) => {
                if not_a_table.is_some() {
                    self.warnings
                        .push(format!("{why_not_mbr}; the whole disk is read as one volume"));
                }
                Ok(())
            }
        }
    }

    fn use_gpt(&mut self, (found, sector_size): (gpt::FoundGpt, u32), disk_size: u64) {
        self.kind = TableKind::Gpt {
            from_backup: found.from_backup,
        };
        self.sector_size = sector_size;
        self.warnings.extend(found.warnings);
        let h = &found.header;
        for e in found.entries {
            if e.last_lba < e.first_lba {
                self.warnings.push(format!(
                    "GPT partition {} ends (LBA {}) before it starts (LBA {}): left out",
                    e.number, e.last_lba, e.first_lba
                ));
                continue;
            }
            if e.first_lba < h.first_usable_lba || e.last_lba > h.last_usable_lba {
                self.warnings.push(format!(
                    "GPT partition {} (LBA {}–{}) lies outside the usable area (LBA {}–{})",
                    e.number, e.first_lba, e.last_lba, h.first_usable_lba, h.last_usable_lba
                ));
            }
            let kind = PartitionKind::Gpt {
                type_guid: e.type_guid,
                unique_guid: e.unique_guid,
                attributes: e.attributes,
            };
            let name = (!e.name.is_empty()).then_some(e.name);
            // Saturates only for an entry spanning every LBA, which `place` cuts to
            // the disk anyway.
            let sectors = (e.last_lba - e.first_lba).saturating_add(1);
            self.partitions.extend(place(
                e.number,
                e.first_lba,
                sectors,
                sector_size,
                disk_size,
                kind,
                name,
                &mut self.warnings,
            ));
        }
    }

    /// Overlaps mean a damaged or hand-edited table; the partitions are kept (the
    /// table says so) but the user is told. An extended partition contains its
    /// logical partitions by design and is left out of the comparison.
    fn check_overlaps(&mut self) {
        let mut spans: Vec<&Partition> = self
            .partitions
            .iter()
            .filter(|p| p.size > 0 && !is_container(p))
            .collect();
        spans.sort_by_key(|p| (p.start, p.number));
        let mut found = Vec::new();
        let mut reach: Option<&Partition> = None;
        for p in spans {
            if let Some(r) = reach {
                if p.start < r.start + r.size {
                    found.push((r.number, p.number));
                }
                if p.start + p.size <= r.start + r.size {
                    continue;
                }
            }
            reach = Some(p);
        }
        for &(a, b) in found.iter().take(MAX_OVERLAP_WARNINGS) {
            self.warnings.push(format!("partitions {a} and {b} overlap"));
        }
        if found.len() > MAX_OVERLAP_WARNINGS {
            self.warnings.push(format!(
                "... and {} more overlapping pairs",
                found.len() - MAX_OVERLAP_WARNINGS
            ));
        }
    }
}

fn is_container(p: &Partition) -> bool {
    matches!(p.kind, PartitionKind::Mbr { type_byte } if types::is_extended(type_byte))
}

/// A table entry as bytes on the disk: `None` (with a warning) when it starts past the
/// end of the disk, cut to the disk (with a warning) when it ends past it.
#[allow(clippy::too_many_arguments)]
fn place(
    number: u32,
    first_lba: u64,
    sectors: u64,
    sector_size: u32,
    disk_size: u64,
    kind: PartitionKind,
    name: Option<String>,
    warnings: &mut Vec<String>,
) -> Option<Partition> {
    let ss = u64::from(sector_size);
    let start = match first_lba.checked_mul(ss) {
        Some(start) if start < disk_size => start,
        _ => {
            warnings.push(format!(
                "partition {number} starts at LBA {first_lba}, past the end of the disk ({} sectors): left out",
                disk_size / ss
            ));
            return None;
        }
    };
    // A size that overflows is past the end too (not silently the room that is left).
    let wanted = sectors.checked_mul(ss);
    let size = if wanted.is_none_or(|w| w > disk_size - start) {
        let size = disk_size - start;
        warnings.push(format!(
            "partition {number} (LBA {first_lba}, {sectors} sectors) reaches past the end of the disk; cut to {size} bytes"
        ));
        size
    } else {
        wanted.expect("checked above")
    };
    Some(Partition {
        number,
        start,
        size,
        kind,
        name,
    })
}

#[cfg(test)]
mod tests;
