//! ESXi vmfsSparse extents (`COWD`, the `-delta.vmdk` of a `vmfsSparse` descriptor;
//! also the hosted "VMDK3" format). After the magic: version, flags, capacity
//! (`numSectors`), grain size, the grain directory's sector and entry count, all u32.
//! Grain directory entries are the sectors of grain tables of 4096 u32 entries, each
//! the sector of one grain (0: not in this file). Parent file names in the header are
//! not used: ESXi names the parent in the descriptor.

use serde_json::json;

use super::fields::{read_vec, u32_entries, Fields};
use super::{push, VmdkError, VmdkFile};
use crate::format::{Run, Source};
use crate::io::ImageFile;

pub const MAGIC: &[u8; 4] = b"COWD";
/// Grain table entries per table.
pub const GTES: u64 = 4096;
/// The header read (the fields used lie in its first 48 bytes).
const HEADER_SIZE: usize = 512;
/// Largest grain accepted, in sectors.
const MAX_GRAIN: u32 = 0x20_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowdHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_size: u64,
    pub gd_offset: u64,
    pub gd_entries: u64,
    pub free_sector: u32,
}

impl CowdHeader {
    pub fn grain_bytes(&self) -> u64 {
        self.grain_size * 512
    }
}

/// Parse and check a COWD header.
pub fn parse_header(b: &[u8], file_len: u64) -> Result<CowdHeader, VmdkError> {
    const S: &str = "COWD header";
    let f = Fields::new(b, S, 0);
    if &f.array::<4>(0)? != MAGIC {
        return Err(VmdkError::corrupt(S, 0, "magic is not \"COWD\""));
    }
    let h = CowdHeader {
        version: f.le32(4)?,
        flags: f.le32(8)?,
        capacity: u64::from(f.le32(12)?),
        grain_size: u64::from(f.le32(16)?),
        gd_offset: u64::from(f.le32(20)?),
        gd_entries: u64::from(f.le32(24)?),
        free_sector: f.le32(28)?,
    };
    let bad = |reason: String| Err(VmdkError::corrupt(S, 0, reason));
    if h.version != 1 {
        return Err(VmdkError::Unsupported(format!(
            "COWD header version {} (ckptfs reads 1)",
            h.version
        )));
    }
    if h.grain_size == 0 || h.grain_size > u64::from(MAX_GRAIN) {
        return bad(format!("grain size {} sectors is out of range", h.grain_size));
    }
    let covered = h.gd_entries.saturating_mul(GTES * h.grain_size);
    if covered < h.capacity {
        return bad(format!(
            "{} grain directory entries cover {covered} sectors, less than the capacity of {}",
            h.gd_entries, h.capacity
        ));
    }
    let gd_at = h.gd_offset * 512;
    if gd_at.checked_add(h.gd_entries * 4).is_none_or(|e| e > file_len) || h.gd_offset == 0 {
        return bad(format!(
            "the grain directory (sector {}, {} entries) is not inside the file ({file_len:#x} bytes)",
            h.gd_offset, h.gd_entries
        ));
    }
    Ok(h)
}

#[derive(Debug)]
pub struct CowdExtent {
    pub file: ImageFile,
    pub header: CowdHeader,
}

/// GD pages of this many entries are cached.
const GD_PAGE: u64 = 1024;
const TAG_GD: u8 = 10;
const TAG_GT: u8 = 11;

impl CowdExtent {
    /// Open a COWD extent that a descriptor line of `sectors` names.
    pub fn open(file: ImageFile, sectors: u64) -> Result<Self, VmdkError> {
        let b = read_vec(&file, 0, HEADER_SIZE.min(file.len() as usize).max(48), "COWD header")?;
        let header = parse_header(&b, file.len())?;
        if header.capacity < sectors {
            return Err(VmdkError::corrupt(
                "COWD header",
                0,
                format!(
                    "capacity {} sectors is less than the descriptor's {sectors}",
                    header.capacity
                ),
            ));
        }
        Ok(CowdExtent { file, header })
    }

    /// The sector of `grain`, or 0 if it is not in this file.
    fn grain(&self, d: &VmdkFile, idx: usize, grain: u64) -> Result<u64, VmdkError> {
        let h = &self.header;
        let table = grain / GTES;
        if table >= h.gd_entries {
            return Err(VmdkError::corrupt(
                "COWD grain directory",
                h.gd_offset * 512,
                format!("grain {grain} is past its tables"),
            ));
        }
        let page = table / GD_PAGE;
        let gd = d.table32(idx, TAG_GD, page, || {
            let first = page * GD_PAGE;
            let n = GD_PAGE.min(h.gd_entries - first);
            Ok(u32_entries(&read_vec(
                &self.file,
                h.gd_offset * 512 + first * 4,
                n as usize * 4,
                "COWD grain directory",
            )?))
        })?;
        let entry = u64::from(gd[(table % GD_PAGE) as usize]);
        if entry == 0 {
            return Ok(0);
        }
        let gt_at = entry * 512;
        let entry_at = h.gd_offset * 512 + table * 4;
        if gt_at + GTES * 4 > self.file.len() {
            return Err(VmdkError::corrupt(
                "COWD grain directory",
                entry_at,
                format!(
                    "grain table {table} is at sector {entry}, past the end of the file ({:#x} bytes)",
                    self.file.len()
                ),
            ));
        }
        let gt = d.table32(idx, TAG_GT, gt_at, || {
            Ok(u32_entries(&read_vec(
                &self.file,
                gt_at,
                GTES as usize * 4,
                "COWD grain table",
            )?))
        })?;
        let slot = grain % GTES;
        let sector = u64::from(gt[slot as usize]);
        if sector != 0 {
            let need = h
                .grain_bytes()
                .min((h.capacity * 512).saturating_sub(grain * h.grain_bytes()));
            if (sector * 512).checked_add(need).is_none_or(|e| e > self.file.len()) {
                return Err(VmdkError::corrupt(
                    "COWD grain table",
                    gt_at + slot * 4,
                    format!(
                        "grain {grain} is at sector {sector}, past the end of the file ({:#x} bytes)",
                        self.file.len()
                    ),
                ));
            }
        }
        Ok(sector)
    }

    pub(crate) fn map(
        &self,
        d: &VmdkFile,
        idx: usize,
        rel: u64,
        len: u64,
        tag: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), VmdkError> {
        let gb = self.header.grain_bytes();
        let mut pos = rel;
        while pos < rel + len {
            let grain = pos / gb;
            let in_grain = pos % gb;
            let n = (gb - in_grain).min(rel + len - pos);
            let source = match self.grain(d, idx, grain)? {
                0 => Source::Parent,
                sector => Source::Data {
                    file_offset: tag | (sector * 512 + in_grain),
                },
            };
            push(out, n, source);
            pos += n;
        }
        Ok(())
    }

    pub fn info(&self) -> serde_json::Value {
        let h = &self.header;
        json!({
            "cowd_version": h.version,
            "cowd_flags": h.flags,
            "capacity": h.capacity,
            "grain_size": h.grain_size,
            "gd_offset": h.gd_offset,
            "gd_entries": h.gd_entries,
        })
    }

    pub(crate) fn allocated(&self, d: &VmdkFile, idx: usize) -> Result<u64, VmdkError> {
        let grains = self.header.capacity.div_ceil(self.header.grain_size);
        let mut count = 0;
        let mut g = 0;
        while g < grains {
            if self.grain(d, idx, g)? != 0 {
                count += 1;
                g += 1;
            } else if g % GTES == 0 && self.table_missing(d, idx, g / GTES)? {
                g += GTES;
            } else {
                g += 1;
            }
        }
        Ok(count)
    }

    fn table_missing(&self, d: &VmdkFile, idx: usize, table: u64) -> Result<bool, VmdkError> {
        let page = table / GD_PAGE;
        let h = &self.header;
        let gd = d.table32(idx, TAG_GD, page, || {
            let first = page * GD_PAGE;
            let n = GD_PAGE.min(h.gd_entries - first);
            Ok(u32_entries(&read_vec(
                &self.file,
                h.gd_offset * 512 + first * 4,
                n as usize * 4,
                "COWD grain directory",
            )?))
        })?;
        Ok(gd[(table % GD_PAGE) as usize] == 0)
    }
}
