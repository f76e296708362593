//! The dynamic disk header: 1024 bytes at the footer's data offset of dynamic and
//! differencing disks, locating the BAT and, for a differencing disk, naming the parent.

use uuid::Uuid;

use super::fields::{Fields, VhdFields};
use super::parent_locator::LocatorEntry;
use super::VhdError;

pub const HEADER_SIZE: usize = 1024;
pub const COOKIE: &[u8; 8] = b"cxsparse";
pub const CHECKSUM_AT: usize = 36;
pub const PARENT_NAME_AT: usize = 64;
pub const PARENT_NAME_LEN: usize = 512;
pub const LOCATORS_AT: usize = 576;
pub const LOCATOR_ENTRY_SIZE: usize = 24;
pub const LOCATOR_ENTRIES: usize = 8;
/// The smallest block: one sector.
pub const MIN_BLOCK_SIZE: u32 = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// Where it was read (for messages).
    pub offset: u64,
    pub data_offset: u64,
    pub table_offset: u64,
    pub version: u32,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub checksum: u32,
    pub parent_unique_id: Uuid,
    /// Seconds since 2000-01-01 UTC: the parent's modification time when linked.
    pub parent_time_stamp: u32,
    /// The parent's file name (UTF-16 big-endian on disk), empty if none.
    pub parent_name: String,
    pub locators: Vec<LocatorEntry>,
}

/// Parse the header read at `offset` and check its cookie, checksum, version and block
/// size (a power of two, at least 512).
pub fn parse_dynamic_header(b: &[u8], offset: u64) -> Result<DynamicHeader, VhdError> {
    const S: &str = "dynamic header";
    if b.len() < HEADER_SIZE {
        return Err(VhdError::Truncated {
            structure: S,
            offset,
            len: HEADER_SIZE as u64,
            file_len: offset.saturating_add(b.len() as u64),
        });
    }
    let b = &b[..HEADER_SIZE];
    let f = Fields::new(b, S, offset);
    f.check_cookie_and_checksum(COOKIE, CHECKSUM_AT)?;
    let version = f.be32(24)?;
    if version >> 16 != 1 {
        return Err(VhdError::Unsupported(format!(
            "dynamic header at offset {offset:#x}: header version {version:#010x} (only 1.x is read)"
        )));
    }
    let block_size = f.be32(32)?;
    if block_size < MIN_BLOCK_SIZE || !block_size.is_power_of_two() {
        return Err(VhdError::corrupt(
            S,
            offset,
            format!("block size {block_size:#x} is not a power of two of at least 512 bytes"),
        ));
    }
    let name: [u8; PARENT_NAME_LEN] = f.array(PARENT_NAME_AT)?;
    let mut locators = Vec::with_capacity(LOCATOR_ENTRIES);
    for index in 0..LOCATOR_ENTRIES {
        let at = LOCATORS_AT + index * LOCATOR_ENTRY_SIZE;
        locators.push(LocatorEntry {
            index,
            entry_offset: offset.saturating_add(at as u64),
            code: f.array(at)?,
            data_space: f.be32(at + 4)?,
            data_length: f.be32(at + 8)?,
            data_offset: f.be64(at + 16)?,
        });
    }
    Ok(DynamicHeader {
        offset,
        data_offset: f.be64(8)?,
        table_offset: f.be64(16)?,
        version,
        max_table_entries: f.be32(28)?,
        block_size,
        checksum: f.be32(CHECKSUM_AT)?,
        parent_unique_id: f.uuid(40)?,
        parent_time_stamp: f.be32(56)?,
        parent_name: utf16be_until_nul(&name),
        locators,
    })
}

/// UTF-16 big-endian text up to the first NUL; unpaired surrogates become U+FFFD.
pub fn utf16be_until_nul(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::vhd::fields::checksum;

    pub fn fix(b: &mut [u8]) {
        let c = checksum(b, CHECKSUM_AT);
        b[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&c.to_be_bytes());
    }

    /// A valid header: BAT offset, entries, block size, parent id, parent name, and
    /// locators `(code, space, length, offset)`.
    pub fn header_bytes(
        bat: u64,
        entries: u32,
        block_size: u32,
        parent: [u8; 16],
        name: &str,
        locators: &[([u8; 4], u32, u32, u64)],
    ) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[..8].copy_from_slice(COOKIE);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..24].copy_from_slice(&bat.to_be_bytes());
        b[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[28..32].copy_from_slice(&entries.to_be_bytes());
        b[32..36].copy_from_slice(&block_size.to_be_bytes());
        b[40..56].copy_from_slice(&parent);
        b[56..60].copy_from_slice(&0x1e00_0000u32.to_be_bytes());
        let name: Vec<u8> = name.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        b[PARENT_NAME_AT..PARENT_NAME_AT + name.len()].copy_from_slice(&name);
        for (i, (code, space, len, off)) in locators.iter().enumerate() {
            let at = LOCATORS_AT + i * LOCATOR_ENTRY_SIZE;
            b[at..at + 4].copy_from_slice(code);
            b[at + 4..at + 8].copy_from_slice(&space.to_be_bytes());
            b[at + 8..at + 12].copy_from_slice(&len.to_be_bytes());
            b[at + 16..at + 24].copy_from_slice(&off.to_be_bytes());
        }
        fix(&mut b);
        b
    }

    #[test]
    fn parses_the_header_and_its_parent_fields() {
        let b = header_bytes(0x600, 5, 2 << 20, [7; 16], "parent.vhd", &[(*b"W2ru", 1, 24, 0x1000)]);
        let h = parse_dynamic_header(&b, 0x200).unwrap();
        assert_eq!((h.table_offset, h.max_table_entries, h.block_size), (0x600, 5, 2 << 20));
        assert_eq!(h.parent_name, "parent.vhd");
        assert_eq!(h.parent_unique_id, Uuid::from_bytes([7; 16]));
        assert_eq!(h.parent_time_stamp, 0x1e00_0000);
        assert_eq!(h.locators.len(), 8);
        let l = &h.locators[0];
        assert_eq!(
            (l.code, l.data_space, l.data_length, l.data_offset),
            (*b"W2ru", 1, 24, 0x1000)
        );
        assert_eq!(l.entry_offset, 0x200 + 576);
        assert_eq!(h.locators[1].code, [0; 4]);
    }

    #[test]
    fn checks_cookie_checksum_version_and_block_size() {
        let good = header_bytes(0x600, 5, 2 << 20, [0; 16], "", &[]);
        let mut b = good.clone();
        b[1000] ^= 1;
        assert!(matches!(parse_dynamic_header(&b, 0), Err(VhdError::Checksum { .. })));
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(parse_dynamic_header(&b, 0), Err(VhdError::Cookie { .. })));
        for bs in [0u32, 256, 3 << 20, 0xFFFF_FFFF] {
            let mut b = good.clone();
            b[32..36].copy_from_slice(&bs.to_be_bytes());
            fix(&mut b);
            let e = parse_dynamic_header(&b, 0x200).unwrap_err().to_string();
            assert!(
                e.contains("dynamic header at offset 0x200") && e.contains("power of two"),
                "{e}"
            );
        }
        let mut b = good.clone();
        b[24..28].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        fix(&mut b);
        assert!(matches!(parse_dynamic_header(&b, 0), Err(VhdError::Unsupported(_))));
        assert!(matches!(
            parse_dynamic_header(&good[..1023], 0),
            Err(VhdError::Truncated { .. })
        ));
    }

    #[test]
    fn parent_name_is_utf16_big_endian() {
        assert_eq!(utf16be_until_nul(&[0, b'a', 0, 0xE9, 0, 0, 0, b'x']), "aé");
        assert_eq!(utf16be_until_nul(&[0xD8, 0, 0, b'a']), "\u{FFFD}a");
    }
}
