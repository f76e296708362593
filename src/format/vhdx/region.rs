//! The region table (MS-VHDX 2.2.3): where the BAT and the metadata region live. Two
//! copies at 192 KiB and 256 KiB; the first valid one is used.

use uuid::{uuid, Uuid};

use super::header::check_crc32c;
use super::VhdxError;
use crate::bytes::{guid, le_u32, le_u64};

pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 * 1024, 256 * 1024];
pub const REGION_TABLE_SIZE: usize = 64 * 1024;

pub const BAT_REGION: Uuid = uuid!("2DC27766-F623-4200-9D64-115E9BFD4A08");
pub const METADATA_REGION: Uuid = uuid!("8B7CA206-4790-4B9A-B8FE-575F050F886E");

const MIB: u64 = 1 << 20;
const MAX_ENTRIES: u32 = 2047;
const ENTRY_SIZE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEntry {
    pub guid: Uuid,
    pub file_offset: u64,
    pub length: u32,
    pub required: bool,
}

impl RegionEntry {
    fn end(&self) -> u64 {
        self.file_offset + u64::from(self.length)
    }
}

#[derive(Debug, Clone)]
pub struct RegionTable {
    pub bat: RegionEntry,
    pub metadata: RegionEntry,
    /// Regions this reader does not know and that are not required.
    pub others: Vec<RegionEntry>,
}

pub fn parse_region_table(b: &[u8], offset: u64) -> Result<RegionTable, VhdxError> {
    let corrupt = |reason: String| VhdxError::corrupt("region table", offset, reason);
    if b.len() < REGION_TABLE_SIZE {
        return Err(corrupt(format!("only {} of {REGION_TABLE_SIZE} bytes", b.len())));
    }
    let b = &b[..REGION_TABLE_SIZE];
    if &b[..4] != b"regi" {
        return Err(corrupt(format!(
            "signature is {:?}, not \"regi\"",
            String::from_utf8_lossy(&b[..4])
        )));
    }
    check_crc32c(b, 4, "region table", offset)?;
    let count = le_u32(b, 8);
    if count > MAX_ENTRIES {
        return Err(corrupt(format!("{count} entries, at most {MAX_ENTRIES} are allowed")));
    }

    let mut entries: Vec<RegionEntry> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = 16 + i * ENTRY_SIZE;
        let e = RegionEntry {
            guid: guid(b, at),
            file_offset: le_u64(b, at + 16),
            length: le_u32(b, at + 24),
            required: le_u32(b, at + 28) & 1 == 1,
        };
        if e.file_offset < MIB || e.file_offset % MIB != 0 || u64::from(e.length) % MIB != 0 {
            return Err(corrupt(format!(
                "region {} at {:#x} with length {:#x} is not 1 MiB-aligned past the header section",
                e.guid, e.file_offset, e.length
            )));
        }
        if e.file_offset.checked_add(u64::from(e.length)).is_none() {
            return Err(corrupt(format!("region {} ends past 2^64", e.guid)));
        }
        if entries.iter().any(|o| o.guid == e.guid) {
            return Err(corrupt(format!("region {} is listed twice", e.guid)));
        }
        if let Some(o) = entries
            .iter()
            .find(|o| e.length > 0 && o.length > 0 && e.file_offset < o.end() && o.file_offset < e.end())
        {
            return Err(corrupt(format!("regions {} and {} overlap", o.guid, e.guid)));
        }
        entries.push(e);
    }

    let take = |id: Uuid, name: &str| {
        entries
            .iter()
            .find(|e| e.guid == id)
            .copied()
            .ok_or_else(|| corrupt(format!("no {name} region")))
    };
    let bat = take(BAT_REGION, "BAT")?;
    let metadata = take(METADATA_REGION, "metadata")?;
    let mut others = Vec::new();
    for e in entries {
        if e.guid == BAT_REGION || e.guid == METADATA_REGION {
            continue;
        }
        if e.required {
            return Err(VhdxError::Unsupported(format!(
                "region table at offset {offset:#x} lists region {} marked required, which this reader does not know",
                e.guid
            )));
        }
        others.push(e);
    }
    Ok(RegionTable { bat, metadata, others })
}

/// Use the first valid copy; report both reasons if neither is.
pub fn choose_region_table(
    first: Result<RegionTable, VhdxError>,
    second: Result<RegionTable, VhdxError>,
) -> Result<RegionTable, VhdxError> {
    match (first, second) {
        (Ok(t), _) => Ok(t),
        (Err(a), Ok(t)) => {
            // An unknown required region is a refusal, not damage: never fall back from it.
            if matches!(a, VhdxError::Unsupported(_)) {
                return Err(a);
            }
            log::warn!("first region table is unusable ({a}); using the second copy");
            Ok(t)
        }
        (Err(a), Err(b)) => {
            if matches!(a, VhdxError::Unsupported(_)) {
                return Err(a);
            }
            Err(VhdxError::corrupt(
                "region tables",
                REGION_TABLE_OFFSETS[0],
                format!("no valid region table: first copy: {a}; second copy: {b}"),
            ))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::vhdx::header::crc32c_with_zeroed_field;

    pub fn table(entries: &[(Uuid, u64, u32, bool)]) -> Vec<u8> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        b[..4].copy_from_slice(b"regi");
        b[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, (g, off, len, req)) in entries.iter().enumerate() {
            let at = 16 + i * 32;
            b[at..at + 16].copy_from_slice(&g.to_bytes_le());
            b[at + 16..at + 24].copy_from_slice(&off.to_le_bytes());
            b[at + 24..at + 28].copy_from_slice(&len.to_le_bytes());
            b[at + 28..at + 32].copy_from_slice(&u32::from(*req).to_le_bytes());
        }
        let crc = crc32c_with_zeroed_field(&b, 4);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    const M: u64 = 1 << 20;

    #[test]
    fn finds_bat_and_metadata() {
        let b = table(&[
            (METADATA_REGION, 2 * M, M as u32, true),
            (BAT_REGION, 3 * M, M as u32, true),
        ]);
        let t = parse_region_table(&b, 0x30000).unwrap();
        assert_eq!(t.bat.file_offset, 3 * M);
        assert_eq!(t.metadata.file_offset, 2 * M);
    }

    #[test]
    fn unknown_required_region_is_refused_unknown_optional_kept() {
        let other = uuid!("01234567-89ab-cdef-0123-456789abcdef");
        let base = [
            (METADATA_REGION, 2 * M, M as u32, true),
            (BAT_REGION, 3 * M, M as u32, true),
        ];
        let mut with = base.to_vec();
        with.push((other, 4 * M, M as u32, false));
        assert_eq!(parse_region_table(&table(&with), 0).unwrap().others.len(), 1);
        with[2].3 = true;
        let err = parse_region_table(&table(&with), 0).unwrap_err();
        assert!(matches!(err, VhdxError::Unsupported(_)), "{err}");
    }

    #[test]
    fn misaligned_overlapping_and_missing_regions_are_corrupt() {
        for entries in [
            vec![
                (METADATA_REGION, 2 * M + 4096, M as u32, true),
                (BAT_REGION, 3 * M, M as u32, true),
            ],
            vec![
                (METADATA_REGION, 2 * M, 2 * M as u32, true),
                (BAT_REGION, 3 * M, M as u32, true),
            ],
            vec![(BAT_REGION, 3 * M, M as u32, true)],
            vec![
                (BAT_REGION, 0, M as u32, true),
                (METADATA_REGION, 2 * M, M as u32, true),
            ],
        ] {
            let err = parse_region_table(&table(&entries), 0).unwrap_err();
            assert!(matches!(err, VhdxError::Corrupt { .. }), "{entries:?}: {err}");
        }
    }

    #[test]
    fn second_copy_is_used_when_the_first_is_damaged() {
        let good = table(&[
            (METADATA_REGION, 2 * M, M as u32, true),
            (BAT_REGION, 3 * M, M as u32, true),
        ]);
        let mut bad = good.clone();
        bad[40] ^= 0xff;
        let t = choose_region_table(parse_region_table(&bad, 0), parse_region_table(&good, 0)).unwrap();
        assert_eq!(t.bat.file_offset, 3 * M);
        let err = choose_region_table(parse_region_table(&bad, 0), parse_region_table(&bad, 0)).unwrap_err();
        assert!(err.to_string().contains("no valid region table"), "{err}");
    }
}
