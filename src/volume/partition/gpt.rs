//! The GUID partition table (UEFI 2.10, section 5.3): a header at LBA 1 and a backup
//! header, normally at the last LBA, each naming its own array of partition entries,
//! each guarded by a CRC-32 (the zlib polynomial).

use uuid::Uuid;

use crate::bytes::{guid, le_u32, le_u64, utf16le_until_nul};
use crate::io::ReadAt;

const SIGNATURE: &[u8; 8] = b"EFI PART";
pub const HEADER_MIN_SIZE: u32 = 92;
/// The fields ckptfs reads fill the first 128 bytes of an entry; larger entries carry
/// vendor data after them.
pub const ENTRY_MIN_SIZE: u32 = 128;
/// Far beyond the 128 entries every partitioning tool writes; keeps a damaged count
/// from costing a large read.
pub const MAX_ENTRIES: u32 = 16384;
pub const MAX_ARRAY_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Uuid,
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc32: u32,
}

impl GptHeader {
    /// Bytes of the entry array; bounded by [`MAX_ARRAY_BYTES`] once parsed.
    pub fn entries_bytes(&self) -> usize {
        self.entry_count as usize * self.entry_size as usize
    }
}

/// Parse and check one header. `bytes` is the sector read at `lba`.
pub fn parse_header(bytes: &[u8], lba: u64, sector_size: u32) -> Result<GptHeader, String> {
    if bytes.len() < HEADER_MIN_SIZE as usize {
        return Err(format!("only {} bytes", bytes.len()));
    }
    if &bytes[..8] != SIGNATURE {
        return Err("no \"EFI PART\" signature".into());
    }
    let header_size = le_u32(bytes, 12);
    let limit = (sector_size as usize).min(bytes.len());
    if header_size < HEADER_MIN_SIZE || header_size as usize > limit {
        return Err(format!(
            "header size {header_size} is outside {HEADER_MIN_SIZE}..={limit}"
        ));
    }
    let stored_crc = le_u32(bytes, 16);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..16]);
    hasher.update(&[0; 4]);
    hasher.update(&bytes[20..header_size as usize]);
    let crc = hasher.finalize();
    if crc != stored_crc {
        return Err(format!(
            "header CRC-32 is {stored_crc:#010x} but the header sums to {crc:#010x}"
        ));
    }
    let h = GptHeader {
        my_lba: le_u64(bytes, 24),
        alternate_lba: le_u64(bytes, 32),
        first_usable_lba: le_u64(bytes, 40),
        last_usable_lba: le_u64(bytes, 48),
        disk_guid: guid(bytes, 56),
        entries_lba: le_u64(bytes, 72),
        entry_count: le_u32(bytes, 80),
        entry_size: le_u32(bytes, 84),
        entries_crc32: le_u32(bytes, 88),
    };
    // A valid CRC only proves the header is intact, not that it belongs here: a copy
    // of the primary header found elsewhere must not pass for a backup.
    if h.my_lba != lba {
        return Err(format!("header says it is at LBA {}, not {lba}", h.my_lba));
    }
    if h.last_usable_lba < h.first_usable_lba {
        return Err(format!(
            "usable area LBA {}–{} is empty",
            h.first_usable_lba, h.last_usable_lba
        ));
    }
    if h.entry_size < ENTRY_MIN_SIZE || h.entry_size % 8 != 0 {
        return Err(format!(
            "entry size {} is not a multiple of 8 of at least {ENTRY_MIN_SIZE}",
            h.entry_size
        ));
    }
    let array_bytes = u64::from(h.entry_count) * u64::from(h.entry_size);
    if h.entry_count > MAX_ENTRIES || array_bytes > MAX_ARRAY_BYTES {
        return Err(format!(
            "{} entries of {} bytes exceed the limit of {MAX_ENTRIES} entries, {MAX_ARRAY_BYTES} bytes",
            h.entry_count, h.entry_size
        ));
    }
    let array_sectors = array_bytes.div_ceil(u64::from(sector_size));
    let array_end = h.entries_lba.saturating_add(array_sectors);
    if h.entries_lba == 0 || (h.entries_lba..array_end).contains(&lba) {
        return Err(format!(
            "the entry array at LBA {} overlaps the MBR or this header",
            h.entries_lba
        ));
    }
    Ok(h)
}

/// One used entry of the array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// Entry index + 1, as Linux and Windows number GPT partitions.
    pub number: u32,
    pub type_guid: Uuid,
    pub unique_guid: Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

/// Check the array's CRC against the header and return the used entries (those whose
/// type GUID is not nil).
pub fn parse_entries(array: &[u8], header: &GptHeader) -> Result<Vec<GptEntry>, String> {
    // parse_header refuses these; a header built by hand must not panic either.
    if header.entry_size < 128 || header.entry_size % 8 != 0 {
        return Err(format!(
            "entry size {} is not a multiple of 8 of at least 128",
            header.entry_size
        ));
    }
    let len = header.entries_bytes();
    if array.len() < len {
        return Err(format!("entry array holds {} of {len} bytes", array.len()));
    }
    let array = &array[..len];
    let crc = crc32fast::hash(array);
    if crc != header.entries_crc32 {
        return Err(format!(
            "entry array CRC-32 is {:#010x} in the header but the array sums to {crc:#010x}",
            header.entries_crc32
        ));
    }
    Ok(array
        .chunks_exact(header.entry_size as usize)
        .enumerate()
        .filter_map(|(i, e)| {
            let type_guid = guid(e, 0);
            (!type_guid.is_nil()).then(|| GptEntry {
                number: i as u32 + 1,
                type_guid,
                unique_guid: guid(e, 16),
                first_lba: le_u64(e, 32),
                last_lba: le_u64(e, 40),
                attributes: le_u64(e, 48),
                name: utf16le_until_nul(&e[56..128]),
            })
        })
        .collect())
}

/// A GPT read from the disk.
#[derive(Debug)]
pub(super) struct FoundGpt {
    pub header: GptHeader,
    pub entries: Vec<GptEntry>,
    pub from_backup: bool,
    pub warnings: Vec<String>,
}

/// Which headers may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trust {
    /// A protective MBR says the disk has a GPT: either copy will do.
    EitherCopy,
    /// Nothing else says so, so the header at LBA 1 must be valid: a backup header
    /// alone is what a disk repartitioned or reformatted as a whole leaves at its end.
    PrimaryHeaderRequired,
}

/// Read the GPT assuming `sector_size`-byte LBAs: the primary copy if it is intact,
/// else the backup. The error names what is wrong with each copy.
pub(super) fn read_gpt(disk: &dyn ReadAt, sector_size: u32, trust: Trust) -> Result<FoundGpt, String> {
    let sectors = disk.size() / u64::from(sector_size);
    if sectors < 3 {
        return Err(format!("the disk holds only {sectors} sectors of {sector_size} bytes"));
    }
    let last_lba = sectors - 1;
    let primary_header = read_header(disk, sector_size, 1);
    let primary = primary_header
        .clone()
        .and_then(|h| Ok((read_entries(disk, sector_size, &h)?, h)));
    let primary_err = match primary {
        Ok((entries, header)) => {
            let mut warnings = Vec::new();
            check_backup(disk, sector_size, &header, last_lba, &mut warnings);
            check_extent(&header, last_lba, &mut warnings);
            return Ok(FoundGpt {
                header,
                entries,
                from_backup: false,
                warnings,
            });
        }
        Err(e) => format!("primary GPT at LBA 1: {e}"),
    };
    if trust == Trust::PrimaryHeaderRequired && primary_header.is_err() {
        return Err(primary_err);
    }
    // An intact primary header knows where its backup went (a disk enlarged after
    // partitioning keeps it short of the end); otherwise the spec puts it last.
    let mut candidates = Vec::with_capacity(2);
    if let Ok(h) = &primary_header {
        if h.alternate_lba > 1 && h.alternate_lba <= last_lba {
            candidates.push(h.alternate_lba);
        }
    }
    if !candidates.contains(&last_lba) {
        candidates.push(last_lba);
    }
    let mut errors = vec![primary_err];
    for lba in candidates {
        let backup = read_header(disk, sector_size, lba).and_then(|h| Ok((read_entries(disk, sector_size, &h)?, h)));
        match backup {
            Ok((entries, header)) => {
                let mut warnings = vec![format!("{}; using the backup GPT at LBA {lba}", errors.join("; "))];
                if header.alternate_lba != 1 {
                    warnings.push(format!(
                        "the backup GPT header names LBA {} as the primary's place, not LBA 1",
                        header.alternate_lba
                    ));
                }
                check_extent(&header, last_lba, &mut warnings);
                return Ok(FoundGpt {
                    header,
                    entries,
                    from_backup: true,
                    warnings,
                });
            }
            Err(e) => errors.push(format!("backup GPT at LBA {lba}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// The header at `lba`, checked to be a valid header that belongs there.
pub(super) fn read_header(disk: &dyn ReadAt, sector_size: u32, lba: u64) -> Result<GptHeader, String> {
    let offset = lba
        .checked_mul(u64::from(sector_size))
        .ok_or_else(|| format!("LBA {lba} is past the end of the disk"))?;
    let mut sector = vec![0u8; sector_size as usize];
    disk.read_at(offset, &mut sector)
        .map_err(|e| format!("cannot read LBA {lba}: {e}"))?;
    parse_header(&sector, lba, sector_size)
}

fn read_entries(disk: &dyn ReadAt, sector_size: u32, h: &GptHeader) -> Result<Vec<GptEntry>, String> {
    let offset = h
        .entries_lba
        .checked_mul(u64::from(sector_size))
        .ok_or_else(|| format!("entry array LBA {} is past the end of the disk", h.entries_lba))?;
    let mut array = vec![0u8; h.entries_bytes()];
    disk.read_at(offset, &mut array)
        .map_err(|e| format!("cannot read the entry array at LBA {}: {e}", h.entries_lba))?;
    parse_entries(&array, h)
}

/// With the primary in use, the backup only earns warnings: a damaged or diverging
/// backup is worth knowing about before anyone repairs the disk from it.
fn check_backup(disk: &dyn ReadAt, sector_size: u32, primary: &GptHeader, last_lba: u64, warnings: &mut Vec<String>) {
    let alt = primary.alternate_lba;
    if alt <= 1 {
        warnings.push(format!(
            "the primary GPT header names LBA {alt} as its backup's place; the backup was not checked"
        ));
        return;
    }
    if alt > last_lba {
        warnings.push(format!(
            "the backup GPT header should be at LBA {alt}, past the disk's last LBA {last_lba}: the disk is smaller than when it was partitioned"
        ));
        return;
    }
    if alt < last_lba {
        warnings.push(format!(
            "the backup GPT header is at LBA {alt}, not at the disk's last LBA {last_lba} (was the disk enlarged after partitioning?)"
        ));
    }
    match read_header(disk, sector_size, alt) {
        Err(e) => warnings.push(format!(
            "backup GPT at LBA {alt}: {e}; the primary GPT is intact and used"
        )),
        Ok(b) => {
            // The header can be intact over a damaged array; that is what the user
            // would lose if the primary failed later.
            if let Err(e) = read_entries(disk, sector_size, &b) {
                warnings.push(format!(
                    "backup GPT at LBA {alt}: {e}; the primary GPT is intact and used"
                ));
            } else if (b.entry_count, b.entry_size, b.entries_crc32)
                != (primary.entry_count, primary.entry_size, primary.entries_crc32)
            {
                warnings.push(format!(
                    "the backup GPT at LBA {alt} lists different partitions from the primary; the primary is used"
                ));
            }
        }
    }
}

fn check_extent(h: &GptHeader, last_lba: u64, warnings: &mut Vec<String>) {
    if h.last_usable_lba > last_lba {
        warnings.push(format!(
            "the GPT's usable area ends at LBA {}, past the disk's last LBA {last_lba}",
            h.last_usable_lba
        ));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid header for `lba` with the given array, and the array's CRC filled in.
    pub struct HeaderSpec {
        pub my_lba: u64,
        pub alternate_lba: u64,
        pub first_usable: u64,
        pub last_usable: u64,
        pub entries_lba: u64,
        pub entry_count: u32,
        pub entry_size: u32,
    }

    pub fn header_bytes(s: &HeaderSpec, array: &[u8], sector_size: usize) -> Vec<u8> {
        let mut b = vec![0u8; sector_size];
        b[..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        b[12..16].copy_from_slice(&92u32.to_le_bytes());
        b[24..32].copy_from_slice(&s.my_lba.to_le_bytes());
        b[32..40].copy_from_slice(&s.alternate_lba.to_le_bytes());
        b[40..48].copy_from_slice(&s.first_usable.to_le_bytes());
        b[48..56].copy_from_slice(&s.last_usable.to_le_bytes());
        b[56..72].copy_from_slice(&[0x42; 16]);
        b[72..80].copy_from_slice(&s.entries_lba.to_le_bytes());
        b[80..84].copy_from_slice(&s.entry_count.to_le_bytes());
        b[84..88].copy_from_slice(&s.entry_size.to_le_bytes());
        let len = s.entry_count as usize * s.entry_size as usize;
        b[88..92].copy_from_slice(&crc32fast::hash(&array[..len]).to_le_bytes());
        let crc = crc32fast::hash(&b[..92]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn entry_bytes(type_guid: Uuid, first: u64, last: u64, name: &str, entry_size: usize) -> Vec<u8> {
        let mut e = vec![0u8; entry_size];
        e[..16].copy_from_slice(&type_guid.to_bytes_le());
        e[16..32].copy_from_slice(&Uuid::from_u128(first as u128 + 7).to_bytes_le());
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        e[48..56].copy_from_slice(&0x8000_0000_0000_0001u64.to_le_bytes());
        for (i, u) in name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        e
    }

    fn spec() -> HeaderSpec {
        HeaderSpec {
            my_lba: 1,
            alternate_lba: 1000,
            first_usable: 34,
            last_usable: 966,
            entries_lba: 2,
            entry_count: 4,
            entry_size: 128,
        }
    }

    fn array() -> Vec<u8> {
        let basic = uuid::uuid!("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7");
        let mut a = entry_bytes(basic, 34, 99, "data", 128);
        a.extend(vec![0u8; 128]);
        a.extend(entry_bytes(basic, 100, 199, "", 128));
        a.extend(vec![0u8; 128]);
        a
    }

    #[test]
    fn header_and_entries() {
        let a = array();
        let h = parse_header(&header_bytes(&spec(), &a, 512), 1, 512).unwrap();
        assert_eq!(h.alternate_lba, 1000);
        assert_eq!(h.entries_bytes(), 512);
        let e = parse_entries(&a, &h).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].number, e[0].first_lba, e[0].last_lba), (1, 34, 99));
        assert_eq!(e[0].name, "data");
        assert_eq!(e[0].attributes, 0x8000_0000_0000_0001);
        assert_eq!(e[1].number, 3);
        assert_eq!(e[1].name, "");
    }

    #[test]
    fn header_checks() {
        let a = array();
        let good = header_bytes(&spec(), &a, 512);
        let mut bad_crc = good.clone();
        bad_crc[40] ^= 1;
        assert!(parse_header(&bad_crc, 1, 512).unwrap_err().contains("CRC"));
        assert!(parse_header(&good, 2, 512).unwrap_err().contains("LBA"));
        assert!(parse_header(&good[..50], 1, 512).is_err());
        let mut no_sig = good.clone();
        no_sig[0] = b'X';
        assert!(parse_header(&no_sig, 1, 512).is_err());
        for (count, size) in [(4, 100), (4, 132), (MAX_ENTRIES + 1, 128), (16384, 1024)] {
            let s = HeaderSpec {
                entry_count: count,
                entry_size: size,
                ..spec()
            };
            let big = vec![0u8; count as usize * size as usize];
            let h = header_bytes(&s, &big, 512);
            assert!(parse_header(&h, 1, 512).is_err(), "{count} × {size}");
        }
        let s = HeaderSpec {
            entries_lba: 1,
            ..spec()
        };
        assert!(parse_header(&header_bytes(&s, &a, 512), 1, 512).is_err());
    }

    #[test]
    fn larger_entries_use_their_first_128_bytes() {
        let basic = uuid::uuid!("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7");
        let mut a = entry_bytes(basic, 34, 99, "wide", 256);
        a[200] = 0xff;
        a.extend(entry_bytes(basic, 100, 199, "second", 256));
        let s = HeaderSpec {
            entry_count: 2,
            entry_size: 256,
            ..spec()
        };
        let h = parse_header(&header_bytes(&s, &a, 512), 1, 512).unwrap();
        let e = parse_entries(&a, &h).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].number, e[1].first_lba, &*e[1].name), (2, 100, "second"));
    }

    #[test]
    fn damaged_array() {
        let mut a = array();
        let h = parse_header(&header_bytes(&spec(), &a, 512), 1, 512).unwrap();
        a[300] ^= 1;
        assert!(parse_entries(&a, &h).unwrap_err().contains("CRC"));
        assert!(parse_entries(&a[..100], &h).is_err());
    }

    #[test]
    fn never_panics_on_noise() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for round in 0..2000 {
            let mut b: Vec<u8> = (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            b[..8].copy_from_slice(SIGNATURE);
            b[12..16].copy_from_slice(&92u32.to_le_bytes());
            let crc = {
                let mut c = b[..92].to_vec();
                c[16..20].fill(0);
                crc32fast::hash(&c)
            };
            if round % 2 == 0 {
                b[16..20].copy_from_slice(&crc.to_le_bytes());
            }
            if let Ok(h) = parse_header(&b, le_u64(&b, 24), 512) {
                let _ = parse_entries(&b, &h);
            }
        }
    }
}
