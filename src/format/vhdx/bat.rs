//! The block allocation table (MS-VHDX 2.5): one 64-bit entry per payload block, with
//! one sector-bitmap entry after every `chunk_ratio` payload entries.

use super::VhdxError;

const MIB: u64 = 1 << 20;
/// Sectors described by one 1 MiB sector-bitmap block.
pub const SECTORS_PER_BITMAP_BLOCK: u64 = 1 << 23;

/// The state of a payload block (MS-VHDX 2.5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PayloadState {
    NotPresent,
    Undefined,
    Zero,
    /// Value 3, or 5 as written by implementations of the v0.95 draft.
    Unmapped,
    FullyPresent,
    PartiallyPresent,
}

impl PayloadState {
    pub const ALL: [PayloadState; 6] = [
        PayloadState::NotPresent,
        PayloadState::Undefined,
        PayloadState::Zero,
        PayloadState::Unmapped,
        PayloadState::FullyPresent,
        PayloadState::PartiallyPresent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PayloadState::NotPresent => "not_present",
            PayloadState::Undefined => "undefined",
            PayloadState::Zero => "zero",
            PayloadState::Unmapped => "unmapped",
            PayloadState::FullyPresent => "fully_present",
            PayloadState::PartiallyPresent => "partially_present",
        }
    }
}

/// One raw BAT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatEntry(pub u64);

impl BatEntry {
    pub fn state_bits(self) -> u8 {
        (self.0 & 7) as u8
    }

    /// File offset of the block, from the FileOffsetMB field.
    pub fn file_offset(self) -> u64 {
        (self.0 >> 20) * MIB
    }

    pub fn payload_state(self) -> Option<PayloadState> {
        Some(match self.state_bits() {
            0 => PayloadState::NotPresent,
            1 => PayloadState::Undefined,
            2 => PayloadState::Zero,
            3 | 5 => PayloadState::Unmapped,
            6 => PayloadState::FullyPresent,
            7 => PayloadState::PartiallyPresent,
            _ => return None,
        })
    }

    /// Whether a sector-bitmap entry says its block is present (SB_BLOCK_PRESENT = 6).
    /// `None` for the reserved values.
    pub fn bitmap_present(self) -> Option<bool> {
        match self.state_bits() {
            0 => Some(false),
            6 => Some(true),
            _ => None,
        }
    }
}

/// The arithmetic that ties the virtual disk to BAT indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatGeometry {
    pub block_size: u64,
    pub logical_sector_size: u64,
    pub virtual_size: u64,
    pub chunk_ratio: u64,
    pub payload_blocks: u64,
    pub bitmap_blocks: u64,
    /// Entries the BAT region must hold.
    pub entries: u64,
}

impl BatGeometry {
    /// Metadata has been validated: block size a power of two in 1..=256 MiB, sector
    /// size 512 or 4096, virtual size non-zero.
    pub fn new(block_size: u32, logical_sector_size: u32, virtual_size: u64, has_parent: bool) -> Self {
        let block_size = u64::from(block_size);
        let logical_sector_size = u64::from(logical_sector_size);
        let chunk_ratio = SECTORS_PER_BITMAP_BLOCK * logical_sector_size / block_size;
        let payload_blocks = virtual_size.div_ceil(block_size);
        let bitmap_blocks = payload_blocks.div_ceil(chunk_ratio);
        let entries = if has_parent {
            bitmap_blocks * (chunk_ratio + 1)
        } else {
            payload_blocks + (payload_blocks - 1) / chunk_ratio
        };
        BatGeometry {
            block_size,
            logical_sector_size,
            virtual_size,
            chunk_ratio,
            payload_blocks,
            bitmap_blocks,
            entries,
        }
    }

    /// BAT index of payload block `block`.
    pub fn payload_index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio
    }

    /// BAT index of the sector-bitmap block of `chunk`.
    pub fn bitmap_index(&self, chunk: u64) -> u64 {
        chunk * (self.chunk_ratio + 1) + self.chunk_ratio
    }

    pub fn sectors_per_block(&self) -> u64 {
        self.block_size / self.logical_sector_size
    }

    /// Check the BAT region can hold every entry.
    pub fn check_region(&self, region_offset: u64, region_length: u64) -> Result<(), VhdxError> {
        if self.entries.saturating_mul(8) > region_length {
            return Err(VhdxError::corrupt(
                "BAT",
                region_offset,
                format!(
                    "region of {region_length:#x} bytes cannot hold the {} entries the disk needs",
                    self.entries
                ),
            ));
        }
        Ok(())
    }

    /// Is `index` the index of a payload entry (as opposed to a sector-bitmap entry)?
    pub fn is_payload_index(&self, index: u64) -> bool {
        index % (self.chunk_ratio + 1) != self.chunk_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ratio_follows_the_spec() {
        assert_eq!(BatGeometry::new(1 << 20, 512, 1 << 30, false).chunk_ratio, 4096);
        assert_eq!(BatGeometry::new(32 << 20, 512, 1 << 30, false).chunk_ratio, 128);
        assert_eq!(BatGeometry::new(256 << 20, 512, 1 << 30, false).chunk_ratio, 16);
        assert_eq!(BatGeometry::new(1 << 20, 4096, 1 << 30, false).chunk_ratio, 32768);
    }

    #[test]
    fn interleaving_puts_the_bitmap_entry_after_its_chunk() {
        // 256 MiB blocks, 512-byte sectors: 16 payload blocks per chunk.
        let g = BatGeometry::new(256 << 20, 512, 10 << 30, true);
        assert_eq!(g.payload_blocks, 40);
        assert_eq!(g.bitmap_blocks, 3);
        assert_eq!(g.payload_index(15), 15);
        assert_eq!(g.bitmap_index(0), 16);
        assert_eq!(g.payload_index(16), 17);
        assert_eq!(g.payload_index(39), 41);
        assert_eq!(g.bitmap_index(2), 50);
        assert_eq!(g.entries, 3 * 17);
        assert!(!g.is_payload_index(16) && g.is_payload_index(17));
        // Without a parent the table ends at the last payload block.
        assert_eq!(BatGeometry::new(256 << 20, 512, 10 << 30, false).entries, 42);
        assert_eq!(BatGeometry::new(256 << 20, 512, 4 << 30, false).entries, 16);
    }

    #[test]
    fn entry_fields() {
        let e = BatEntry((5 << 20) | 6);
        assert_eq!(e.payload_state(), Some(PayloadState::FullyPresent));
        assert_eq!(e.file_offset(), 5 << 20);
        assert_eq!(BatEntry(5).payload_state(), Some(PayloadState::Unmapped));
        assert_eq!(BatEntry(3).payload_state(), Some(PayloadState::Unmapped));
        assert_eq!(BatEntry(4).payload_state(), None);
        assert_eq!(BatEntry(6).bitmap_present(), Some(true));
        assert_eq!(BatEntry(1).bitmap_present(), None);
        // Reserved bits 3..19 do not change the offset or the state.
        assert_eq!(BatEntry((1 << 20) | (1 << 10) | 7).file_offset(), 1 << 20);
    }

    #[test]
    fn region_must_hold_all_entries() {
        let g = BatGeometry::new(1 << 20, 512, 64 << 20, false);
        assert!(g.check_region(1 << 20, 1 << 20).is_ok());
        assert!(g.check_region(1 << 20, 64 * 8 - 8).is_err());
    }
}
