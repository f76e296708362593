//! The metadata region (MS-VHDX 2.6): a 64 KiB table of items, and the six known items
//! that define the virtual disk.

use uuid::{uuid, Uuid};

use super::parent_locator::ParentLocator;
use super::VhdxError;
use crate::bytes::{guid, le_u16, le_u32, le_u64};

pub const TABLE_SIZE: usize = 64 * 1024;

pub const FILE_PARAMETERS: Uuid = uuid!("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
pub const VIRTUAL_DISK_SIZE: Uuid = uuid!("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
pub const VIRTUAL_DISK_ID: Uuid = uuid!("BECA12AB-B2E6-4523-93EF-C309E000C746");
pub const LOGICAL_SECTOR_SIZE: Uuid = uuid!("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
pub const PHYSICAL_SECTOR_SIZE: Uuid = uuid!("CDA348C7-445D-4471-9CC9-E9885251C556");
pub const PARENT_LOCATOR: Uuid = uuid!("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

const KNOWN_ITEMS: [Uuid; 6] = [
    FILE_PARAMETERS,
    VIRTUAL_DISK_SIZE,
    VIRTUAL_DISK_ID,
    LOGICAL_SECTOR_SIZE,
    PHYSICAL_SECTOR_SIZE,
    PARENT_LOCATOR,
];

const MIB: u64 = 1 << 20;
const MAX_ITEM_LEN: u32 = 1 << 20;
const MAX_ENTRIES: u16 = 2047;
/// MS-VHDX 2.6.2.2: at most 64 TB.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// One entry of the metadata table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataEntry {
    pub item_id: Uuid,
    /// Relative to the start of the metadata region.
    pub offset: u32,
    pub length: u32,
    pub is_user: bool,
    pub is_virtual_disk: bool,
    pub is_required: bool,
}

/// Parse the 64 KiB table at the start of the metadata region of `region_length` bytes
/// (at `region_offset` in the file, for messages).
pub fn parse_table(b: &[u8], region_offset: u64, region_length: u64) -> Result<Vec<MetadataEntry>, VhdxError> {
    let corrupt = |reason: String| VhdxError::corrupt("metadata table", region_offset, reason);
    if b.len() < TABLE_SIZE {
        return Err(corrupt(format!("only {} of {TABLE_SIZE} bytes", b.len())));
    }
    if &b[..8] != b"metadata" {
        return Err(corrupt(format!(
            "signature is {:?}, not \"metadata\"",
            String::from_utf8_lossy(&b[..8])
        )));
    }
    let count = le_u16(b, 10);
    if count > MAX_ENTRIES {
        return Err(corrupt(format!("{count} entries, at most {MAX_ENTRIES} are allowed")));
    }
    let mut entries: Vec<MetadataEntry> = Vec::with_capacity(usize::from(count));
    for i in 0..usize::from(count) {
        let at = 32 + i * 32;
        let flags = le_u32(b, at + 24);
        let e = MetadataEntry {
            item_id: guid(b, at),
            offset: le_u32(b, at + 16),
            length: le_u32(b, at + 20),
            is_user: flags & 1 != 0,
            is_virtual_disk: flags & 2 != 0,
            is_required: flags & 4 != 0,
        };
        let end = u64::from(e.offset) + u64::from(e.length);
        let misplaced = if e.length == 0 {
            e.offset != 0
        } else {
            (e.offset as usize) < TABLE_SIZE || end > region_length
        };
        if misplaced || e.length > MAX_ITEM_LEN {
            return Err(corrupt(format!(
                "item {} at {:#x} with length {:#x} lies outside the metadata region ({region_length:#x} bytes)",
                e.item_id, e.offset, e.length
            )));
        }
        if entries.iter().any(|o| o.item_id == e.item_id && o.is_user == e.is_user) {
            return Err(corrupt(format!("item {} is listed twice", e.item_id)));
        }
        if !e.is_user && e.is_required && !KNOWN_ITEMS.contains(&e.item_id) {
            return Err(VhdxError::Unsupported(format!(
                "metadata item {} is marked required, and this reader does not know it",
                e.item_id
            )));
        }
        entries.push(e);
    }
    Ok(entries)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub block_size: u32,
    pub leave_blocks_allocated: bool,
    pub has_parent: bool,
    pub virtual_size: u64,
    pub virtual_disk_id: Uuid,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub parent_locator: Option<ParentLocator>,
}

/// Decode the known system items. `read_item(entry)` returns the item's bytes.
pub fn parse_items(
    entries: &[MetadataEntry],
    region_offset: u64,
    mut read_item: impl FnMut(&MetadataEntry) -> Result<Vec<u8>, VhdxError>,
) -> Result<Metadata, VhdxError> {
    let mut item = |id: Uuid, name: &'static str, min_len: usize| -> Result<Option<(Vec<u8>, u64)>, VhdxError> {
        let Some(e) = entries.iter().find(|e| e.item_id == id && !e.is_user) else {
            return Ok(None);
        };
        let at = region_offset + u64::from(e.offset);
        let b = read_item(e)?;
        if b.len() < min_len {
            return Err(VhdxError::corrupt(
                name,
                at,
                format!("item is {} bytes, needs {min_len}", b.len()),
            ));
        }
        Ok(Some((b, at)))
    };
    let missing = |name: &str| VhdxError::corrupt("metadata table", region_offset, format!("no {name} item"));

    let (params, params_at) = item(FILE_PARAMETERS, "file parameters", 8)?.ok_or_else(|| missing("file parameters"))?;
    let block_size = le_u32(&params, 0);
    let flags = le_u32(&params, 4);
    if !block_size.is_power_of_two() || u64::from(block_size) < MIB || u64::from(block_size) > 256 * MIB {
        return Err(VhdxError::corrupt(
            "file parameters",
            params_at,
            format!("block size {block_size:#x} is not a power of two from 1 MiB to 256 MiB"),
        ));
    }

    let (size, size_at) =
        item(VIRTUAL_DISK_SIZE, "virtual disk size", 8)?.ok_or_else(|| missing("virtual disk size"))?;
    let virtual_size = le_u64(&size, 0);
    let (id, _) = item(VIRTUAL_DISK_ID, "virtual disk id", 16)?.ok_or_else(|| missing("virtual disk id"))?;

    let mut sector = |id: Uuid, name: &'static str| -> Result<u32, VhdxError> {
        let (b, at) = item(id, name, 4)?.ok_or_else(|| missing(name))?;
        match le_u32(&b, 0) {
            v @ (512 | 4096) => Ok(v),
            v => Err(VhdxError::corrupt(name, at, format!("{v} bytes, must be 512 or 4096"))),
        }
    };
    let logical_sector_size = sector(LOGICAL_SECTOR_SIZE, "logical sector size")?;
    let physical_sector_size = sector(PHYSICAL_SECTOR_SIZE, "physical sector size")?;

    if virtual_size == 0 || virtual_size % u64::from(logical_sector_size) != 0 || virtual_size > MAX_VIRTUAL_SIZE {
        return Err(VhdxError::corrupt(
            "virtual disk size",
            size_at,
            format!(
                "{virtual_size:#x} bytes is not a non-zero multiple of the {logical_sector_size}-byte sector up to 64 TiB"
            ),
        ));
    }

    let has_parent = flags & 2 != 0;
    let parent_locator = match item(PARENT_LOCATOR, "parent locator", 0)? {
        Some((b, at)) if has_parent => Some(ParentLocator::parse(&b, at)?),
        None if has_parent => return Err(missing("parent locator (the file parameters say it has a parent)")),
        _ => None,
    };

    Ok(Metadata {
        block_size,
        leave_blocks_allocated: flags & 1 != 0,
        has_parent,
        virtual_size,
        virtual_disk_id: guid(&id, 0),
        logical_sector_size,
        physical_sector_size,
        parent_locator,
    })
}

/// Parse a whole metadata region held in memory (used by tests and fuzzing; the reader
/// fetches items one by one instead of reading a region that may be large).
pub fn parse_region(b: &[u8], region_offset: u64) -> Result<Metadata, VhdxError> {
    let entries = parse_table(b, region_offset, b.len() as u64)?;
    parse_items(&entries, region_offset, |e| {
        let start = e.offset as usize;
        Ok(b[start..start + e.length as usize].to_vec())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::vhdx::parent_locator::tests::locator_bytes;
    use crate::format::vhdx::parent_locator::VHDX_LOCATOR_TYPE;

    /// A metadata region with the given items (id, flags, bytes).
    pub fn region(items: &[(Uuid, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0u8; TABLE_SIZE];
        b[..8].copy_from_slice(b"metadata");
        b[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
        for (i, (id, flags, data)) in items.iter().enumerate() {
            let at = 32 + i * 32;
            let off = b.len() as u32;
            b.extend_from_slice(data);
            b[at..at + 16].copy_from_slice(&id.to_bytes_le());
            b[at + 16..at + 20].copy_from_slice(&off.to_le_bytes());
            b[at + 20..at + 24].copy_from_slice(&(data.len() as u32).to_le_bytes());
            b[at + 24..at + 28].copy_from_slice(&flags.to_le_bytes());
        }
        b.resize(b.len().next_multiple_of(1 << 20), 0);
        b
    }

    pub fn standard_items(block_size: u32, flags: u32, size: u64, lss: u32) -> Vec<(Uuid, u32, Vec<u8>)> {
        let mut params = block_size.to_le_bytes().to_vec();
        params.extend_from_slice(&flags.to_le_bytes());
        vec![
            (FILE_PARAMETERS, 4, params),
            (VIRTUAL_DISK_SIZE, 6, size.to_le_bytes().to_vec()),
            (VIRTUAL_DISK_ID, 6, [7u8; 16].to_vec()),
            (LOGICAL_SECTOR_SIZE, 6, lss.to_le_bytes().to_vec()),
            (PHYSICAL_SECTOR_SIZE, 6, 4096u32.to_le_bytes().to_vec()),
        ]
    }

    #[test]
    fn reads_the_known_items() {
        let m = parse_region(&region(&standard_items(32 << 20, 0, 10 << 20, 512)), 0).unwrap();
        assert_eq!(m.block_size, 32 << 20);
        assert_eq!(m.virtual_size, 10 << 20);
        assert_eq!((m.logical_sector_size, m.physical_sector_size), (512, 4096));
        assert!(!m.has_parent && m.parent_locator.is_none());
    }

    #[test]
    fn block_sizes_outside_the_rules_are_refused() {
        for bs in [0, 512 << 10, 3 << 20, 512 << 20] {
            let err = parse_region(&region(&standard_items(bs, 0, 10 << 20, 512)), 0).unwrap_err();
            assert!(err.to_string().contains("block size"), "{bs}: {err}");
        }
        for bs in [1 << 20, 256 << 20] {
            parse_region(&region(&standard_items(bs, 0, 10 << 20, 512)), 0).unwrap();
        }
    }

    #[test]
    fn sector_sizes_and_disk_size_are_checked() {
        assert!(parse_region(&region(&standard_items(1 << 20, 0, 10 << 20, 1024)), 0).is_err());
        assert!(parse_region(&region(&standard_items(1 << 20, 0, 4097, 4096)), 0).is_err());
        assert!(parse_region(&region(&standard_items(1 << 20, 0, MAX_VIRTUAL_SIZE + 4096, 4096)), 0).is_err());
        parse_region(&region(&standard_items(1 << 20, 0, MAX_VIRTUAL_SIZE, 4096)), 0).unwrap();
    }

    #[test]
    fn unknown_required_item_is_refused_but_unknown_optional_and_user_items_are_not() {
        let other = uuid!("11111111-2222-3333-4444-555555555555");
        let mut items = standard_items(1 << 20, 0, 10 << 20, 512);
        items.push((other, 0, vec![1, 2, 3]));
        items.push((uuid!("11111111-2222-3333-4444-666666666666"), 1 | 4, vec![1]));
        parse_region(&region(&items), 0).unwrap();
        items.push((uuid!("11111111-2222-3333-4444-777777777777"), 4, vec![1]));
        assert!(matches!(
            parse_region(&region(&items), 0),
            Err(VhdxError::Unsupported(_))
        ));
    }

    #[test]
    fn differencing_needs_a_parent_locator() {
        let mut items = standard_items(2 << 20, 2, 10 << 20, 512);
        assert!(parse_region(&region(&items), 0)
            .unwrap_err()
            .to_string()
            .contains("parent locator"));
        items.push((
            PARENT_LOCATOR,
            4,
            locator_bytes(
                VHDX_LOCATOR_TYPE,
                &[("parent_linkage", "{ff34003b-11ed-4cf8-a166-b2be05e20b80}")],
            ),
        ));
        let m = parse_region(&region(&items), 0).unwrap();
        assert!(m.has_parent && m.parent_locator.is_some());
    }

    #[test]
    fn items_outside_the_region_or_missing_are_corrupt() {
        let mut b = region(&standard_items(1 << 20, 0, 10 << 20, 512));
        b[32 + 16..32 + 20].copy_from_slice(&0x10u32.to_le_bytes()); // inside the table
        assert!(parse_region(&b, 0).unwrap_err().to_string().contains("outside"));
        let items = standard_items(1 << 20, 0, 10 << 20, 512)[1..].to_vec();
        assert!(parse_region(&region(&items), 0)
            .unwrap_err()
            .to_string()
            .contains("no file parameters"));
    }
}
