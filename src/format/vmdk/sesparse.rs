//! ESXi SESparse extents (`-sesparse.vmdk`, createType `seSparse`), which VMware does
//! not document; the layout is the one qemu reads, with qemu's strict checks:
//!
//! - the **const header** (sector 0, u64 fields): magic `0xcafebabe`, version
//!   `0x0000000200000001`, capacity, grain size (8 sectors), grain table size (64
//!   sectors: 4096 u64 entries), flags (0), four reserved (0), then offset and size in
//!   sectors of the volatile header, journal header, journal, grain directory, grain
//!   tables, free bitmap, backmap and grains;
//! - the **volatile header** (magic `0xcafecafe`, free GT number, next transaction
//!   number, replay-journal flag): a set flag means the journal holds changes not yet
//!   applied, and the extent is refused rather than read stale;
//! - **grain directory** entries: 0 = no table (the parent's), else `0x1000_0000` in
//!   the top 32 bits and the table's index in the low 32;
//! - **grain table** entries by their top nibble: 0 (the whole entry 0) unallocated,
//!   read from the parent; 1 unmapped and 2 zero, both zeros; 3 allocated, grain
//!   number `(v & 0x0fff_0000_0000_0000) >> 48 | (v & 0x0000_ffff_ffff_ffff) << 12`,
//!   at sector `grains offset + number × grain size`; anything else is an error.

use serde_json::json;

use super::fields::{read_vec, u64_entries, Fields};
use super::{push, VmdkError, VmdkFile};
use crate::format::{Run, Source};
use crate::io::ImageFile;

pub const CONST_MAGIC: u64 = 0x0000_0000_cafe_babe;
pub const VOLATILE_MAGIC: u64 = 0x0000_0000_cafe_cafe;
pub const VERSION: u64 = 0x0000_0002_0000_0001;
pub const GRAIN_SIZE: u64 = 8;
pub const GT_SECTORS: u64 = 64;
/// Entries per grain table.
pub const GTES: u64 = GT_SECTORS * 512 / 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstHeader {
    pub capacity: u64,
    pub volatile_offset: u64,
    pub journal_header_offset: u64,
    pub journal_offset: u64,
    pub journal_size: u64,
    pub gd_offset: u64,
    pub gd_size: u64,
    pub gt_offset: u64,
    pub gt_size: u64,
    pub grains_offset: u64,
    pub grains_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolatileHeader {
    pub free_gt_number: u64,
    pub next_txn_seq_number: u64,
    pub replay_journal: u64,
}

impl ConstHeader {
    /// Grain directory entries.
    pub fn gd_entries(&self) -> u64 {
        self.gd_size * 512 / 8
    }
}

/// Parse and check the const header (512 bytes at offset 0).
pub fn parse_const(b: &[u8]) -> Result<ConstHeader, VmdkError> {
    const S: &str = "SESparse const header";
    let f = Fields::new(b, S, 0);
    let bad = |reason: String| Err(VmdkError::corrupt(S, 0, reason));
    let magic = f.le64(0)?;
    if magic != CONST_MAGIC {
        return bad(format!("magic is {magic:#018x}, not {CONST_MAGIC:#018x}"));
    }
    let version = f.le64(8)?;
    if version != VERSION {
        return Err(VmdkError::Unsupported(format!(
            "SESparse version {version:#018x} (ckptfs reads {VERSION:#018x})"
        )));
    }
    let grain = f.le64(24)?;
    let gt = f.le64(32)?;
    if grain != GRAIN_SIZE || gt != GT_SECTORS {
        return Err(VmdkError::Unsupported(format!(
            "SESparse grain size {grain} and grain table size {gt} sectors (ckptfs reads {GRAIN_SIZE} and {GT_SECTORS})"
        )));
    }
    let flags = f.le64(40)?;
    if flags != 0 || (0..4).any(|i| f.le64(48 + 8 * i).is_ok_and(|v| v != 0)) {
        return Err(VmdkError::Unsupported(format!(
            "SESparse flags {flags:#x} or reserved fields set"
        )));
    }
    let h = ConstHeader {
        capacity: f.le64(16)?,
        volatile_offset: f.le64(80)?,
        journal_header_offset: f.le64(96)?,
        journal_offset: f.le64(112)?,
        journal_size: f.le64(120)?,
        gd_offset: f.le64(128)?,
        gd_size: f.le64(136)?,
        gt_offset: f.le64(144)?,
        gt_size: f.le64(152)?,
        grains_offset: f.le64(192)?,
        grains_size: f.le64(200)?,
    };
    for (what, v) in [
        ("capacity", h.capacity),
        ("volatile header offset", h.volatile_offset),
        ("grain directory offset", h.gd_offset),
        ("grain directory size", h.gd_size),
        ("grain tables offset", h.gt_offset),
        ("grains offset", h.grains_offset),
    ] {
        if v > u64::MAX / 1024 {
            return bad(format!("{what} {v} is out of range"));
        }
    }
    if h.gd_entries().saturating_mul(GTES * GRAIN_SIZE) < h.capacity {
        return bad(format!(
            "{} grain directory entries do not cover the capacity of {} sectors",
            h.gd_entries(),
            h.capacity
        ));
    }
    Ok(h)
}

pub fn parse_volatile(b: &[u8], offset: u64) -> Result<VolatileHeader, VmdkError> {
    const S: &str = "SESparse volatile header";
    let f = Fields::new(b, S, offset);
    let magic = f.le64(0)?;
    if magic != VOLATILE_MAGIC {
        return Err(VmdkError::corrupt(
            S,
            offset,
            format!("magic is {magic:#018x}, not {VOLATILE_MAGIC:#018x}"),
        ));
    }
    Ok(VolatileHeader {
        free_gt_number: f.le64(8)?,
        next_txn_seq_number: f.le64(16)?,
        replay_journal: f.le64(24)?,
    })
}

/// What a grain table entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Unallocated,
    Zero,
    /// Grain number in the grains area.
    At(u64),
}

/// Decode a grain table entry.
pub fn decode_gte(v: u64) -> Option<Grain> {
    match v >> 60 {
        0 if v == 0 => Some(Grain::Unallocated),
        1 | 2 => Some(Grain::Zero),
        3 => Some(Grain::At(
            ((v & 0x0fff_0000_0000_0000) >> 48) | ((v & 0x0000_ffff_ffff_ffff) << 12),
        )),
        _ => None,
    }
}

/// Decode a grain directory entry: `Some(None)` no table, `Some(Some(index))`.
pub fn decode_gde(v: u64) -> Option<Option<u64>> {
    if v == 0 {
        Some(None)
    } else if v >> 32 == 0x1000_0000 {
        Some(Some(v & 0xffff_ffff))
    } else {
        None
    }
}

#[derive(Debug)]
pub struct SeSparseExtent {
    pub file: ImageFile,
    pub header: ConstHeader,
    pub volatile: VolatileHeader,
}

const GD_PAGE: u64 = 512;
const TAG_GD: u8 = 20;
const TAG_GT: u8 = 21;

impl SeSparseExtent {
    pub fn open(file: ImageFile, sectors: u64) -> Result<Self, VmdkError> {
        let header = parse_const(&read_vec(&file, 0, 512, "SESparse const header")?)?;
        let vat = header.volatile_offset * 512;
        let volatile = parse_volatile(&read_vec(&file, vat, 512, "SESparse volatile header")?, vat)?;
        if volatile.replay_journal != 0 {
            return Err(VmdkError::JournalNeedsReplay {
                offset: header.journal_offset.saturating_mul(512),
                reason: format!("the volatile header's replay flag is {}", volatile.replay_journal),
            });
        }
        if header.capacity < sectors {
            return Err(VmdkError::corrupt(
                "SESparse const header",
                0,
                format!(
                    "capacity {} sectors is less than the descriptor's {sectors}",
                    header.capacity
                ),
            ));
        }
        let gd_at = header.gd_offset * 512;
        let gd_len = header.gd_entries() * 8;
        if gd_at.checked_add(gd_len).is_none_or(|e| e > file.len()) {
            return Err(VmdkError::Truncated {
                structure: "SESparse grain directory",
                offset: gd_at,
                len: gd_len,
                file_len: file.len(),
            });
        }
        Ok(SeSparseExtent { file, header, volatile })
    }

    fn grain(&self, d: &VmdkFile, idx: usize, grain: u64) -> Result<Grain, VmdkError> {
        let h = &self.header;
        let table = grain / GTES;
        let gd_at = h.gd_offset * 512;
        if table >= h.gd_entries() {
            return Err(VmdkError::corrupt(
                "SESparse grain directory",
                gd_at,
                format!("grain {grain} is past its tables"),
            ));
        }
        let page = table / GD_PAGE;
        let gd = d.table64(idx, TAG_GD, page, || {
            let first = page * GD_PAGE;
            let n = GD_PAGE.min(h.gd_entries() - first);
            Ok(u64_entries(&read_vec(
                &self.file,
                gd_at + first * 8,
                n as usize * 8,
                "SESparse grain directory",
            )?))
        })?;
        let raw = gd[(table % GD_PAGE) as usize];
        let entry_at = gd_at + table * 8;
        let Some(index) = decode_gde(raw).ok_or_else(|| {
            VmdkError::corrupt(
                "SESparse grain directory",
                entry_at,
                format!("entry {raw:#018x} is neither 0 nor 0x10000000 in its top half"),
            )
        })?
        else {
            return Ok(Grain::Unallocated);
        };
        let gt_at = (h.gt_offset * 512).saturating_add(index * GTES * 8);
        if gt_at.checked_add(GTES * 8).is_none_or(|e| e > self.file.len()) {
            return Err(VmdkError::corrupt(
                "SESparse grain directory",
                entry_at,
                format!(
                    "grain table {index} lies past the end of the file ({:#x} bytes)",
                    self.file.len()
                ),
            ));
        }
        let gt = d.table64(idx, TAG_GT, gt_at, || {
            Ok(u64_entries(&read_vec(
                &self.file,
                gt_at,
                (GTES * 8) as usize,
                "SESparse grain table",
            )?))
        })?;
        let slot = grain % GTES;
        let v = gt[slot as usize];
        let g = decode_gte(v).ok_or_else(|| {
            VmdkError::corrupt(
                "SESparse grain table",
                gt_at + slot * 8,
                format!("entry {v:#018x} has an unknown type"),
            )
        })?;
        if let Grain::At(n) = g {
            let at = n
                .checked_mul(GRAIN_SIZE)
                .and_then(|s| s.checked_add(h.grains_offset))
                .and_then(|s| s.checked_mul(512));
            if at
                .and_then(|a| a.checked_add(GRAIN_SIZE * 512))
                .is_none_or(|e| e > self.file.len())
            {
                return Err(VmdkError::corrupt(
                    "SESparse grain table",
                    gt_at + slot * 8,
                    format!(
                        "grain {grain} is grain number {n}, past the end of the file ({:#x} bytes)",
                        self.file.len()
                    ),
                ));
            }
        }
        Ok(g)
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
        let gb = GRAIN_SIZE * 512;
        let mut pos = rel;
        while pos < rel + len {
            let grain = pos / gb;
            let in_grain = pos % gb;
            let n = (gb - in_grain).min(rel + len - pos);
            let source = match self.grain(d, idx, grain)? {
                Grain::Unallocated => Source::Parent,
                Grain::Zero => Source::Zero,
                Grain::At(g) => Source::Data {
                    file_offset: tag | ((self.header.grains_offset + g * GRAIN_SIZE) * 512 + in_grain),
                },
            };
            push(out, n, source);
            pos += n;
        }
        Ok(())
    }

    pub fn info(&self) -> serde_json::Value {
        let h = &self.header;
        let v = &self.volatile;
        json!({
            "capacity": h.capacity,
            "grain_size": GRAIN_SIZE,
            "gd_offset": h.gd_offset,
            "gd_entries": h.gd_entries(),
            "gt_offset": h.gt_offset,
            "grains_offset": h.grains_offset,
            "journal_offset": h.journal_offset,
            "free_gt_number": v.free_gt_number,
            "next_txn_seq_number": v.next_txn_seq_number,
            "replay_journal": v.replay_journal,
        })
    }

    pub(crate) fn allocated(&self, d: &VmdkFile, idx: usize) -> Result<u64, VmdkError> {
        let grains = self.header.capacity.div_ceil(GRAIN_SIZE);
        let mut count = 0;
        let mut g = 0;
        while g < grains {
            if g % GTES == 0 {
                let gd_at = self.header.gd_offset * 512 + (g / GTES) * 8;
                let raw = u64_entries(&read_vec(&self.file, gd_at, 8, "SESparse grain directory")?)[0];
                if raw == 0 {
                    g += GTES;
                    continue;
                }
            }
            if let Grain::At(_) = self.grain(d, idx, g)? {
                count += 1;
            }
            g += 1;
        }
        Ok(count)
    }
}
