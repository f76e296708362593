//! MFT file records and index blocks as bytes: update-sequence fixups, the record header,
//! and every attribute header field, including those the `ntfs` crate keeps private
//! (allocated, initialized and compressed sizes, lowest/highest VCN, compression unit).

use super::runs::{decode_mapping_pairs, Extent};

/// Update sequence arrays protect the last two bytes of each 512-byte stride, whatever
/// the disk's sector size.
const STRIDE: usize = 512;

pub(super) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

pub(super) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

pub(super) fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Undo the update-sequence protection of a multi-sector structure (`FILE` or `INDX`).
/// A mismatch means the structure was torn by an interrupted write.
pub(super) fn apply_fixups(data: &mut [u8]) -> Result<(), String> {
    if data.len() < 8 || data.len() % STRIDE != 0 {
        return Err(format!(
            "structure of {} bytes is not a whole number of sectors",
            data.len()
        ));
    }
    let usa_offset = u16_at(data, 4) as usize;
    let usa_count = u16_at(data, 6) as usize;
    if usa_count < 2 || usa_count - 1 > data.len() / STRIDE || usa_offset + 2 * usa_count > data.len() {
        return Err(format!(
            "bad update sequence array (offset {usa_offset}, {usa_count} entries)"
        ));
    }
    let usn = [data[usa_offset], data[usa_offset + 1]];
    for i in 1..usa_count {
        let end = i * STRIDE - 2;
        if data[end..end + 2] != usn {
            return Err(format!("update sequence mismatch in sector {} (a torn write)", i - 1));
        }
        let fix = usa_offset + 2 * i;
        let saved = [data[fix], data[fix + 1]];
        data[end..end + 2].copy_from_slice(&saved);
    }
    Ok(())
}

/// One MFT file record, fixed up.
pub(super) struct Record {
    pub number: u64,
    data: Vec<u8>,
}

pub(super) const FLAG_IN_USE: u16 = 0x0001;
pub(super) const FLAG_DIRECTORY: u16 = 0x0002;

impl Record {
    /// `None` for a record that was never written (all zeros where the signature goes).
    pub fn parse(number: u64, mut data: Vec<u8>) -> Result<Option<Record>, String> {
        match &data[..4] {
            b"FILE" => {}
            [0, 0, 0, 0] => return Ok(None),
            b"BAAD" => return Err(format!("file record {number} is marked BAAD (chkdsk found it torn)")),
            sig => return Err(format!("file record {number} has no FILE signature (found {sig:02x?})")),
        }
        apply_fixups(&mut data).map_err(|e| format!("file record {number}: {e}"))?;
        let r = Record { number, data };
        let used = r.bytes_in_use();
        let first = u16_at(&r.data, 20) as usize;
        if used > r.data.len() || first < 24 || first + 4 > used {
            return Err(format!(
                "file record {number}: bad sizes (attributes at {first}, {used} of {} bytes in use)",
                r.data.len()
            ));
        }
        // NTFS 3.1 records name themselves; a mismatch means the MFT was mapped wrongly.
        if u16_at(&r.data, 4) >= 48 && u64::from(u32_at(&r.data, 44)) != number & 0xFFFF_FFFF {
            return Err(format!(
                "file record {number} says it is record {} (the $MFT map is wrong)",
                u32_at(&r.data, 44)
            ));
        }
        Ok(Some(r))
    }

    pub fn link_count(&self) -> u16 {
        u16_at(&self.data, 18)
    }

    pub fn flags(&self) -> u16 {
        u16_at(&self.data, 22)
    }

    fn bytes_in_use(&self) -> usize {
        u32_at(&self.data, 24) as usize
    }

    /// The base record of an extension record; 0 for a base record.
    pub fn base_record(&self) -> u64 {
        u64_at(&self.data, 32) & 0xFFFF_FFFF_FFFF
    }

    /// Every attribute of this record, decoded and owned.
    pub fn attributes(&self) -> Result<Vec<Attribute>, String> {
        let used = self.bytes_in_use();
        let mut pos = u16_at(&self.data, 20) as usize;
        let mut out = Vec::new();
        loop {
            if pos + 4 > used {
                return Err(format!(
                    "file record {}: attributes run past the bytes in use",
                    self.number
                ));
            }
            if u32_at(&self.data, pos) == 0xFFFF_FFFF {
                return Ok(out);
            }
            let a = Attribute::parse(&self.data[..used], pos)
                .map_err(|e| format!("file record {}: attribute at offset {pos}: {e}", self.number))?;
            pos += a.length;
            out.push(a);
        }
    }
}

/// Where an attribute's value is.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Resident(Vec<u8>),
    NonResident(NonResident),
}

#[derive(Debug, Clone)]
pub(super) struct NonResident {
    pub lowest_vcn: u64,
    pub compression_unit: u8,
    pub allocated: u64,
    pub size: u64,
    pub initialized: u64,
    /// Clusters actually allocated, for compressed and sparse attributes.
    pub compressed: Option<u64>,
    pub extents: Vec<Extent>,
}

pub(super) const ATTR_COMPRESSION_MASK: u16 = 0x00FF;
pub(super) const ATTR_ENCRYPTED: u16 = 0x4000;
pub(super) const ATTR_SPARSE: u16 = 0x8000;

/// One attribute record with its header decoded.
#[derive(Debug, Clone)]
pub(super) struct Attribute {
    pub ty: u32,
    pub name: Vec<u16>,
    pub flags: u16,
    pub instance: u16,
    pub value: Value,
    length: usize,
}

impl Attribute {
    fn parse(b: &[u8], pos: usize) -> Result<Attribute, String> {
        if pos + 16 > b.len() {
            return Err("header runs past the bytes in use".into());
        }
        let ty = u32_at(b, pos);
        let length = u32_at(b, pos + 4) as usize;
        if length < 24 || pos + length > b.len() {
            return Err(format!("bad length {length}"));
        }
        let a = &b[pos..pos + length];
        let non_resident = a[8] != 0;
        let name_chars = a[9] as usize;
        let name_offset = u16_at(a, 10) as usize;
        let flags = u16_at(a, 12);
        let instance = u16_at(a, 14);
        let name_bytes = a
            .get(name_offset..name_offset + 2 * name_chars)
            .ok_or("name runs past the attribute")?;
        let name = name_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let value = if !non_resident {
            let len = u32_at(a, 16) as usize;
            let off = u16_at(a, 20) as usize;
            let v = a.get(off..off + len).ok_or("resident value runs past the attribute")?;
            Value::Resident(v.to_vec())
        } else {
            if length < 64 {
                return Err(format!("non-resident header of only {length} bytes"));
            }
            let lowest = u64_at(a, 16) as i64;
            let highest = u64_at(a, 24) as i64;
            let pairs_offset = u16_at(a, 32) as usize;
            let compression_unit = a[34];
            let size_at = |o: usize| -> Result<u64, String> {
                let v = u64_at(a, o) as i64;
                u64::try_from(v).map_err(|_| format!("negative size {v} at header byte {o}"))
            };
            let (allocated, size, initialized) = (size_at(40)?, size_at(48)?, size_at(56)?);
            let compressed = if flags & (ATTR_COMPRESSION_MASK | ATTR_SPARSE) != 0 && pairs_offset >= 72 {
                Some(size_at(64)?)
            } else {
                None
            };
            if lowest < 0 || pairs_offset < 64 || pairs_offset > length {
                return Err(format!("bad header (lowest VCN {lowest}, runs at {pairs_offset})"));
            }
            let extents = decode_mapping_pairs(&a[pairs_offset..], lowest as u64)?;
            let end = extents.last().map_or(lowest as u64, |e| e.vcn + e.clusters);
            // As ntfs-3g does: a highest VCN of 0 is not checked (empty attributes carry
            // 0 or -1).
            if highest > 0 && end != highest as u64 + 1 {
                return Err(format!(
                    "its runs end at VCN {end} but its header says the last VCN is {highest}"
                ));
            }
            Value::NonResident(NonResident {
                lowest_vcn: lowest as u64,
                compression_unit,
                allocated,
                size,
                initialized,
                compressed,
                extents,
            })
        };
        Ok(Attribute {
            ty,
            name,
            flags,
            instance,
            value,
            length,
        })
    }

    pub fn name_is(&self, name: &str) -> bool {
        self.name.iter().copied().eq(name.encode_utf16())
    }
}

/// One entry of an `$ATTRIBUTE_LIST`: which record holds which attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListEntry {
    pub ty: u32,
    pub record: u64,
    pub instance: u16,
}

pub(super) fn parse_attribute_list(b: &[u8]) -> Result<Vec<ListEntry>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 26 <= b.len() {
        let ty = u32_at(b, pos);
        let len = u16_at(b, pos + 4) as usize;
        if ty == 0 || ty == 0xFFFF_FFFF {
            break;
        }
        if len < 26 || pos + len > b.len() {
            return Err(format!("attribute list entry at byte {pos} has a bad length {len}"));
        }
        out.push(ListEntry {
            ty,
            record: u64_at(b, pos + 16) & 0xFFFF_FFFF_FFFF,
            instance: u16_at(b, pos + 24),
        });
        pos += len;
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Protect `data` with an update sequence array at offset `usa` (as NTFS writes it).
    pub fn protect(data: &mut [u8], usa: usize, usn: u16) {
        let strides = data.len() / STRIDE;
        data[4..6].copy_from_slice(&(usa as u16).to_le_bytes());
        data[6..8].copy_from_slice(&((strides + 1) as u16).to_le_bytes());
        data[usa..usa + 2].copy_from_slice(&usn.to_le_bytes());
        for i in 1..=strides {
            let end = i * STRIDE - 2;
            let saved = [data[end], data[end + 1]];
            data[usa + 2 * i..usa + 2 * i + 2].copy_from_slice(&saved);
            data[end..end + 2].copy_from_slice(&usn.to_le_bytes());
        }
    }

    #[test]
    fn fixups_restore_sector_ends_and_catch_torn_writes() {
        let mut d: Vec<u8> = (0..1024).map(|i| (i % 200) as u8).collect();
        let orig = d.clone();
        protect(&mut d, 48, 0x1234);
        assert_eq!(&d[510..512], &[0x34, 0x12]);
        let mut ok = d.clone();
        apply_fixups(&mut ok).unwrap();
        assert_eq!(&ok[510..512], &orig[510..512]);
        assert_eq!(&ok[1022..1024], &orig[1022..1024]);
        let mut torn = d.clone();
        torn[1022] ^= 1;
        assert!(apply_fixups(&mut torn).unwrap_err().contains("sector 1"));
        let mut bad = d;
        bad[6] = 9; // more entries than sectors
        assert!(apply_fixups(&mut bad).is_err());
    }

    #[test]
    fn attribute_list_entries() {
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(&0x80u32.to_le_bytes());
        b[4..6].copy_from_slice(&32u16.to_le_bytes());
        b[16..24].copy_from_slice(&(0x0005_0000_0000_0042u64).to_le_bytes());
        b[24..26].copy_from_slice(&7u16.to_le_bytes());
        let e = parse_attribute_list(&b).unwrap();
        assert_eq!(
            e,
            vec![ListEntry {
                ty: 0x80,
                record: 0x42,
                instance: 7
            }]
        );
        b[36..38].copy_from_slice(&200u16.to_le_bytes());
        b[32..36].copy_from_slice(&0x30u32.to_le_bytes());
        assert!(parse_attribute_list(&b).is_err());
    }
}
