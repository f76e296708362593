//! Hosted sparse extents (`KDMV`, header versions 1–3): monolithicSparse,
//! twoGbMaxExtentSparse and streamOptimized, after VMware's "Virtual Disk Format 5.0".
//!
//! A grain directory (GD) of 32-bit sector offsets points to grain tables (GT) of
//! `numGTEsPerGT` entries, each the sector of one grain (0: not in this file, read the
//! parent or zeros; 1 with the zeroed-grain flag: zeros). Both tables are read through
//! the file's caches, never whole, so a 62 TB extent opens at once.
//!
//! Rules:
//! - **Redundant GD.** A lookup walks the primary GD → GT → grain entry. The walk is
//!   *damaged* when a table lies (partly) past the end of the file or an entry points
//!   past it; then the same walk over the redundant GD (flag bit 1, `rgdOffset`) is
//!   used, with a warning, if it is undamaged. Two undamaged copies that disagree: the
//!   primary wins (it is the one VMware and qemu read).
//! - **Compressed grains** (flag bit 16, `compressAlgorithm` 1 = deflate): with markers
//!   (bit 17) a grain starts with its guest sector (u64) and compressed size (u32); the
//!   sector must be the grain's own. The data is a zlib stream (what qemu and VMware
//!   write) or raw deflate; it must inflate to exactly one grain, or, for the grain
//!   holding the end of the capacity, to at least the part before the end.
//! - **streamOptimized** with `gdOffset` = `0xffffffffffffffff`: the header copy in the
//!   footer (the sector at end − 1024, after a footer marker) is used, as qemu does.

use super::descriptor::MAX_DESCRIPTOR;
use super::fields::{check_inside, read_vec, u32_entries, Fields};
use super::VmdkError;
use crate::io::ImageFile;

pub const MAGIC: &[u8; 4] = b"KDMV";
pub const HEADER_SIZE: usize = 512;
pub const GD_AT_END: u64 = u64::MAX;

pub const FLAG_NL_DETECT: u32 = 1 << 0;
pub const FLAG_RGD: u32 = 1 << 1;
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
pub const FLAG_COMPRESSED: u32 = 1 << 16;
pub const FLAG_MARKERS: u32 = 1 << 17;

/// Grain table entry of a zeroed grain (with [`FLAG_ZERO_GRAIN`]).
pub const GTE_ZERO: u32 = 1;

/// Largest grain accepted, in sectors (1 GiB, qemu's limit).
pub const MAX_GRAIN_SECTORS: u64 = 0x20_0000;
/// Most grain table entries per table accepted (qemu's limit; VMware writes 512).
pub const MAX_GTES_PER_GT: u32 = 512;

/// The grain marker before a compressed grain: guest sector (8) and size (4).
pub const GRAIN_MARKER: usize = 12;
/// Marker types (the u32 after a zero size).
pub const MARKER_FOOTER: u32 = 3;

/// The fields of a `KDMV` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    /// Where it was read from (0, or the footer's copy).
    pub offset: u64,
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_size: u64,
    pub descriptor_offset: u64,
    pub descriptor_size: u64,
    pub num_gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub overhead: u64,
    pub unclean_shutdown: bool,
    pub compress_algorithm: u16,
}

impl SparseHeader {
    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }
    pub fn markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }
    pub fn zero_grain(&self) -> bool {
        self.flags & FLAG_ZERO_GRAIN != 0
    }
    pub fn redundant(&self) -> Option<u64> {
        (self.flags & FLAG_RGD != 0 && self.rgd_offset != 0).then_some(self.rgd_offset)
    }
    pub fn grain_bytes(&self) -> u64 {
        self.grain_size * 512
    }
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity * 512
    }
    /// Grains covering the capacity.
    pub fn grains(&self) -> u64 {
        self.capacity.div_ceil(self.grain_size)
    }
    /// Grain directory entries (grain tables) covering the capacity.
    pub fn gd_entries(&self) -> u64 {
        self.grains().div_ceil(u64::from(self.num_gtes_per_gt))
    }
    pub fn has_descriptor(&self) -> bool {
        self.descriptor_offset != 0 && self.descriptor_size != 0
    }
}

/// Parse and check a 512-byte `KDMV` header read at `offset`.
pub fn parse_header(b: &[u8], offset: u64) -> Result<SparseHeader, VmdkError> {
    const S: &str = "sparse extent header";
    let f = Fields::new(b, S, offset);
    let magic: [u8; 4] = f.array(0)?;
    if &magic != MAGIC {
        return Err(VmdkError::corrupt(
            S,
            offset,
            format!("magic is {:?}, not \"KDMV\"", String::from_utf8_lossy(&magic)),
        ));
    }
    let h = SparseHeader {
        offset,
        version: f.le32(4)?,
        flags: f.le32(8)?,
        capacity: f.le64(12)?,
        grain_size: f.le64(20)?,
        descriptor_offset: f.le64(28)?,
        descriptor_size: f.le64(36)?,
        num_gtes_per_gt: f.le32(44)?,
        rgd_offset: f.le64(48)?,
        gd_offset: f.le64(56)?,
        overhead: f.le64(64)?,
        unclean_shutdown: f.u8(72)? != 0,
        compress_algorithm: f.le16(77)?,
    };
    let bad = |reason: String| Err(VmdkError::corrupt(S, offset, reason));
    if !(1..=3).contains(&h.version) {
        return Err(VmdkError::Unsupported(format!(
            "sparse extent header at offset {offset:#x}: version {} (ckptfs reads 1 to 3)",
            h.version
        )));
    }
    if h.flags & FLAG_NL_DETECT != 0 {
        let nl: [u8; 4] = f.array(73)?;
        if nl != *b"\n \r\n" {
            return bad(format!(
                "the newline test bytes are {nl:02x?}, not 0a 20 0d 0a: the file was copied in text mode"
            ));
        }
    }
    if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS {
        return bad(format!(
            "grain size {} sectors is not a power of two from 1 to {MAX_GRAIN_SECTORS}",
            h.grain_size
        ));
    }
    if h.num_gtes_per_gt == 0 || h.num_gtes_per_gt > MAX_GTES_PER_GT {
        return bad(format!(
            "{} grain table entries per table (1 to {MAX_GTES_PER_GT} are read)",
            h.num_gtes_per_gt
        ));
    }
    if h.capacity > u64::MAX / 512 / 2 {
        return bad(format!("capacity {} sectors is too large", h.capacity));
    }
    if h.gd_entries() > (512 << 20) / 4 {
        return bad(format!("{} grain directory entries are too many", h.gd_entries()));
    }
    if h.compressed() && h.compress_algorithm != 1 {
        return Err(VmdkError::Unsupported(format!(
            "sparse extent header at offset {offset:#x}: compression algorithm {} (only 1, deflate, is defined)",
            h.compress_algorithm
        )));
    }
    Ok(h)
}

/// Read the header at offset 0 and, for a stream whose header defers the grain
/// directory to the end, the footer's copy. Returns (header at 0, header used).
pub fn read_headers(file: &ImageFile) -> Result<(SparseHeader, SparseHeader), VmdkError> {
    let b = read_vec(file, 0, HEADER_SIZE, "sparse extent header")?;
    let first = parse_header(&b, 0)?;
    if first.gd_offset != GD_AT_END {
        return Ok((first.clone(), first));
    }
    const S: &str = "stream footer";
    let len = file.len();
    let at = len.checked_sub(1536).ok_or(VmdkError::Truncated {
        structure: S,
        offset: 0,
        len: 1536,
        file_len: len,
    })?;
    let b = read_vec(file, at, 1536, S)?;
    let m = Fields::new(&b, "footer marker", at);
    if m.le32(8)? != 0 || m.le32(12)? != MARKER_FOOTER {
        return Err(VmdkError::corrupt(
            "footer marker",
            at,
            format!(
                "the header's grain directory is at the end, but this is no footer marker (size {}, type {})",
                m.le32(8)?,
                m.le32(12)?
            ),
        ));
    }
    let footer = parse_header(&b[512..1024], at + 512)?;
    if footer.gd_offset == GD_AT_END {
        return Err(VmdkError::corrupt(
            "stream footer",
            at + 512,
            "the footer does not say where the grain directory is either",
        ));
    }
    Ok((first, footer))
}

/// The embedded descriptor's bytes, if the header says there is one.
pub fn read_embedded_descriptor(file: &ImageFile, h: &SparseHeader) -> Result<Option<Vec<u8>>, VmdkError> {
    if !h.has_descriptor() {
        return Ok(None);
    }
    const S: &str = "embedded descriptor";
    let (Some(at), Some(len)) = (h.descriptor_offset.checked_mul(512), h.descriptor_size.checked_mul(512)) else {
        return Err(VmdkError::corrupt(S, 0, "offset or size overflows"));
    };
    if len > MAX_DESCRIPTOR as u64 {
        return Err(VmdkError::corrupt(
            S,
            at,
            format!("{len} bytes is larger than the {MAX_DESCRIPTOR} accepted"),
        ));
    }
    read_vec(file, at, len as usize, S).map(Some)
}

/// Which grain directory a walk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Copy {
    Primary,
    Redundant,
}

/// What a grain table entry says about one grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not in this file: the parent's (or zeros).
    Unallocated,
    Zero,
    /// At this sector of the file (a marker and compressed bytes, in a compressed extent).
    At(u64),
}

/// Check a grain table entry against the file: the grain's bytes inside the capacity
/// (or, compressed, its marker) must lie inside the file.
pub fn check_grain(h: &SparseHeader, file_len: u64, grain: u64, gte: u32, gte_at: u64) -> Result<Grain, VmdkError> {
    if gte == 0 {
        return Ok(Grain::Unallocated);
    }
    if gte == GTE_ZERO && h.zero_grain() {
        return Ok(Grain::Zero);
    }
    let at = u64::from(gte) * 512;
    let need = if h.compressed() {
        if h.markers() {
            GRAIN_MARKER as u64
        } else {
            1
        }
    } else {
        h.grain_bytes()
            .min(h.capacity_bytes().saturating_sub(grain * h.grain_bytes()))
    };
    if at.checked_add(need).is_none_or(|e| e > file_len) {
        return Err(VmdkError::corrupt(
            "grain table",
            gte_at,
            format!("grain {grain} is at sector {gte}, past the end of the file ({file_len:#x} bytes)"),
        ));
    }
    Ok(Grain::At(u64::from(gte)))
}

/// Where grain table `index` of `copy` is, from its GD entry (already read); `None` for
/// an unallocated table.
pub fn check_gd_entry(
    h: &SparseHeader,
    file_len: u64,
    index: u64,
    entry: u32,
    entry_at: u64,
) -> Result<Option<u64>, VmdkError> {
    if entry == 0 {
        return Ok(None);
    }
    let at = u64::from(entry) * 512;
    let len = u64::from(h.num_gtes_per_gt) * 4;
    if at.checked_add(len).is_none_or(|e| e > file_len) {
        return Err(VmdkError::corrupt(
            "grain directory",
            entry_at,
            format!("grain table {index} is at sector {entry}, past the end of the file ({file_len:#x} bytes)"),
        ));
    }
    Ok(Some(at))
}

/// The sector of `copy`'s grain directory.
pub fn gd_sector(h: &SparseHeader, copy: Copy) -> Option<u64> {
    match copy {
        Copy::Primary => Some(h.gd_offset),
        Copy::Redundant => h.redundant(),
    }
}

/// Whether `copy`'s whole grain directory lies inside the file.
pub fn gd_inside(h: &SparseHeader, file_len: u64, copy: Copy) -> Result<(), VmdkError> {
    let Some(sector) = gd_sector(h, copy) else {
        return Err(VmdkError::corrupt(
            "sparse extent header",
            h.offset,
            "no redundant grain directory",
        ));
    };
    let at = sector.saturating_mul(512);
    check_inside(file_len, at, h.gd_entries() * 4, "grain directory")
}

/// Inflate one compressed grain stored at `sector`. `grain` is its index; the result
/// is one whole grain (a short last grain is padded with zeros past the capacity).
pub fn inflate_grain(file: &ImageFile, h: &SparseHeader, grain: u64, sector: u64) -> Result<Vec<u8>, VmdkError> {
    use std::io::Read;
    let at = sector * 512;
    let gb = h.grain_bytes();
    let limit = (2 * gb + 1024).min(file.len().saturating_sub(at));
    let bad = |reason: String| VmdkError::BadGrain {
        offset: at,
        lba: grain * h.grain_size,
        reason,
    };
    let data = if h.markers() {
        let m = read_vec(file, at, GRAIN_MARKER, "grain marker")?;
        let f = Fields::new(&m, "grain marker", at);
        let lba = f.le64(0)?;
        let size = u64::from(f.le32(8)?);
        if lba != grain * h.grain_size {
            return Err(bad(format!(
                "its marker says guest sector {lba}, but the grain table has it for this grain"
            )));
        }
        if size == 0 || size > 2 * gb + 1024 {
            return Err(bad(format!("compressed size {size} bytes is out of range")));
        }
        read_vec(file, at + GRAIN_MARKER as u64, size as usize, "compressed grain")?
    } else {
        read_vec(file, at, limit as usize, "compressed grain")?
    };
    let zlib = data.len() >= 2 && data[0] & 0x0f == 8 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
    let mut out = Vec::with_capacity(gb as usize);
    let res = if zlib {
        flate2::read::ZlibDecoder::new(&data[..])
            .take(gb + 1)
            .read_to_end(&mut out)
    } else {
        flate2::read::DeflateDecoder::new(&data[..])
            .take(gb + 1)
            .read_to_end(&mut out)
    };
    res.map_err(|e| bad(format!("does not inflate: {e}")))?;
    let needed = gb.min(h.capacity_bytes().saturating_sub(grain * gb));
    if out.len() as u64 > gb {
        return Err(bad(format!("inflates to more than one grain ({gb} bytes)")));
    }
    if (out.len() as u64) < needed {
        return Err(bad(format!("inflates to {} bytes, not a grain of {gb}", out.len())));
    }
    out.resize(gb as usize, 0);
    Ok(out)
}

/// Read grain directory entries `first..first + count` of `copy`.
pub fn read_gd(file: &ImageFile, h: &SparseHeader, copy: Copy, first: u64, count: u64) -> Result<Vec<u32>, VmdkError> {
    let sector = gd_sector(h, copy).unwrap_or(0);
    let at = sector
        .checked_mul(512)
        .and_then(|a| a.checked_add(first * 4))
        .unwrap_or(u64::MAX);
    Ok(u32_entries(&read_vec(file, at, count as usize * 4, "grain directory")?))
}

/// Read the grain table at byte offset `at`.
pub fn read_gt(file: &ImageFile, h: &SparseHeader, at: u64) -> Result<Vec<u32>, VmdkError> {
    Ok(u32_entries(&read_vec(
        file,
        at,
        h.num_gtes_per_gt as usize * 4,
        "grain table",
    )?))
}
