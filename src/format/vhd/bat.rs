//! The block allocation table: one big-endian u32 per block, the sector where the
//! block's bitmap starts (the data follows the bitmap), or 0xFFFFFFFF when the block is
//! not allocated. [`BatGeometry`] checks the table against the disk and the file;
//! [`BatGeometry::block_extent`] checks each block before it is read.

use super::sector_bitmap::bitmap_size;
use super::VhdError;

pub const UNALLOCATED: u32 = 0xFFFF_FFFF;
const SECTOR: u64 = 512;

/// The arithmetic that ties the virtual disk to the BAT, checked once at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatGeometry {
    pub disk_size: u64,
    pub block_size: u64,
    pub sectors_per_block: u64,
    /// Bytes of each block's sector bitmap (padded to a sector).
    pub bitmap_size: u64,
    /// Blocks the disk needs: ceil(disk size / block size).
    pub blocks: u64,
    pub max_table_entries: u32,
    pub table_offset: u64,
    /// The dynamic header's offset (for messages and the overlap check).
    pub header_offset: u64,
    pub file_len: u64,
}

impl BatGeometry {
    /// `block_size` has been checked (a power of two, at least 512).
    pub fn new(
        disk_size: u64,
        block_size: u32,
        max_table_entries: u32,
        table_offset: u64,
        header_offset: u64,
        file_len: u64,
    ) -> Result<Self, VhdError> {
        let block_size = u64::from(block_size);
        let blocks = disk_size.div_ceil(block_size);
        if blocks > 1 << 32 {
            return Err(VhdError::corrupt(
                "dynamic header",
                header_offset,
                format!(
                    "a disk of {disk_size:#x} bytes in blocks of {block_size:#x} needs {blocks} blocks, more than 2^32"
                ),
            ));
        }
        if blocks > u64::from(max_table_entries) {
            return Err(VhdError::corrupt(
                "dynamic header",
                header_offset,
                format!(
                    "max table entries {max_table_entries} cannot cover the {blocks} blocks of a disk of {disk_size:#x} bytes"
                ),
            ));
        }
        let table_len = u64::from(max_table_entries) * 4;
        if table_offset.checked_add(table_len).is_none_or(|end| end > file_len) {
            return Err(VhdError::Truncated {
                structure: "BAT",
                offset: table_offset,
                len: table_len,
                file_len,
            });
        }
        let sectors_per_block = block_size / SECTOR;
        Ok(BatGeometry {
            disk_size,
            block_size,
            sectors_per_block,
            bitmap_size: bitmap_size(sectors_per_block),
            blocks,
            max_table_entries,
            table_offset,
            header_offset,
            file_len,
        })
    }

    /// File offset of block `block`'s entry.
    pub fn entry_offset(&self, block: u64) -> u64 {
        self.table_offset + block * 4
    }

    /// For block `block` whose entry is `sector`: the file offset of its bitmap and of
    /// its data, after checking that the block does not overlap the footer copy, the
    /// dynamic header or the BAT, that its bitmap lies inside the file, and that its
    /// data up to `data_end` (bytes from the start of the data) does.
    pub fn block_extent(&self, block: u64, sector: u32, data_end: u64) -> Result<(u64, u64), VhdError> {
        let start = u64::from(sector) * SECTOR;
        let data = start + self.bitmap_size;
        let corrupt = |reason: String| {
            VhdError::corrupt(
                "BAT entry",
                self.entry_offset(block),
                format!("block {block} at sector {sector:#x} (offset {start:#x}) {reason}"),
            )
        };
        let end_of_block = data + self.block_size;
        let overlaps = |at: u64, len: u64| start < at.saturating_add(len) && at < end_of_block;
        if overlaps(0, 512) {
            return Err(corrupt("overlaps the footer copy at offset 0".into()));
        }
        if overlaps(self.header_offset, 1024) {
            return Err(corrupt(format!(
                "overlaps the dynamic header at offset {:#x}",
                self.header_offset
            )));
        }
        if overlaps(self.table_offset, u64::from(self.max_table_entries) * 4) {
            return Err(corrupt(format!("overlaps the BAT at offset {:#x}", self.table_offset)));
        }
        if data > self.file_len {
            return Err(corrupt(format!(
                "has its sector bitmap past the end of the file ({:#x} bytes)",
                self.file_len
            )));
        }
        if data.checked_add(data_end).is_none_or(|end| end > self.file_len) {
            return Err(corrupt(format!(
                "has its data past the end of the file ({:#x} bytes)",
                self.file_len
            )));
        }
        Ok((start, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn table_must_cover_the_disk_and_fit_the_file() {
        let g = BatGeometry::new(10 * MIB, 2 << 20, 5, 0x600, 0x200, 0x60_5000).unwrap();
        assert_eq!((g.blocks, g.sectors_per_block, g.bitmap_size), (5, 4096, 512));
        let e = BatGeometry::new(10 * MIB + 512, 2 << 20, 5, 0x600, 0x200, 1 << 30).unwrap_err();
        assert!(e.to_string().contains("cannot cover the 6 blocks"), "{e}");
        let e = BatGeometry::new(10 * MIB, 2 << 20, 5, 0x600, 0x200, 0x600 + 19).unwrap_err();
        assert!(matches!(e, VhdError::Truncated { structure: "BAT", .. }), "{e}");
        assert!(BatGeometry::new(10 * MIB, 2 << 20, 5, u64::MAX - 4, 0x200, u64::MAX).is_err());
        let e = BatGeometry::new(!511u64, 512, u32::MAX, 0x600, 0x200, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("more than 2^32"), "{e}");
    }

    #[test]
    fn blocks_are_checked_before_they_are_read() {
        let g = BatGeometry::new(10 * MIB, 2 << 20, 5, 0x600, 0x200, 0x60_5000).unwrap();
        assert_eq!(g.block_extent(0, 0xF, 2 * MIB).unwrap(), (0x1E00, 0x2000));
        for (sector, what) in [
            (0, "footer copy"),
            (1, "dynamic header"),
            (3, "the BAT"),
            (u32::MAX, "sector bitmap past the end"),
            (0x3000, "data past the end"),
        ] {
            let e = g.block_extent(3, sector, 2 * MIB).unwrap_err().to_string();
            assert!(
                e.contains(what) && e.contains("BAT entry at offset 0x60c"),
                "{sector}: {e}"
            );
        }
        // Only the bytes mapped need to be in the file.
        assert!(g.block_extent(0, 0x3000, 0x1000).is_ok());
    }
}
