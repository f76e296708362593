//! Reading compressed file contents: LZNT1 (the "compress contents" attribute) here, WOF
//! in `wof`. Decoded units and chunks are cached, within a bound, so that reads smaller
//! than a unit do not decode it again.
//!
//! An LZNT1-compressed stream is cut into compression units (16 clusters as Windows
//! makes them). A unit whose clusters are all allocated is stored as is; one that is all
//! hole is zeros; otherwise its allocated clusters (the hole follows them) hold the LZNT1
//! data for the whole unit.

use std::sync::Arc;

use ntfs::NtfsAttributeType;

use super::compress::lznt1;
use super::node::Content;
use super::record::{Attribute, ATTR_COMPRESSION_MASK, ATTR_ENCRYPTED};
use super::runs::RunMap;
use super::stream::Stream;
use super::wof;
use super::{fs_err, Disk, NtfsFs};
use crate::cache::Cache;
use crate::Result;

/// The attribute flag value for LZNT1; no other method was ever used.
const METHOD_LZNT1: u16 = 0x0001;
/// Windows compresses only on volumes of clusters up to 4 KiB, in units of 16: units
/// are at most 64 KiB, which also bounds what one cache entry holds.
const MAX_UNIT: u64 = 64 << 10;
/// Decoded units (≤ 64 KiB) and WOF chunks (≤ 32 KiB) kept: at most 32 MiB.
const UNITS_KEPT: usize = 512;
/// WOF chunk table pages kept (4 KiB each at most).
const TABLE_PAGES_KEPT: usize = 256;

/// What has been decoded, shared by every reader of the volume.
pub(super) struct Decoded {
    /// Keyed by (file record, unit or chunk number).
    pub units: Cache<(u64, u64), Arc<[u8]>>,
    /// WOF chunk offset tables, keyed by (file record, page).
    pub tables: Cache<(u64, u64), Arc<[u64]>>,
}

impl Decoded {
    pub fn new() -> Decoded {
        Decoded {
            units: Cache::new(UNITS_KEPT),
            tables: Cache::new(TABLE_PAGES_KEPT),
        }
    }
}

/// How to read a file whose unnamed `$DATA` is compressed (LZNT1, or WOF, which keeps it
/// in another stream), with the run map that reading needs, or why it cannot be read;
/// `None` for other files.
pub(super) fn content(
    disk: &Disk,
    n: u64,
    attrs: &[Attribute],
    encrypted: bool,
    data_flags: u16,
    data: &Stream,
) -> Option<(Content, Option<RunMap>)> {
    if encrypted || data_flags & ATTR_ENCRYPTED != 0 {
        return None;
    }
    if let Stream::NonResident { head, .. } = data {
        if data_flags & ATTR_COMPRESSION_MASK != 0 {
            return Some(lznt1_content(disk, n, data_flags, head.compression_unit, data));
        }
    }
    let has_reparse = attrs.iter().any(|a| a.ty == NtfsAttributeType::ReparsePoint as u32);
    if has_reparse {
        return wof::content(disk, n, attrs);
    }
    None
}

fn lznt1_content(disk: &Disk, n: u64, data_flags: u16, unit_shift: u8, data: &Stream) -> (Content, Option<RunMap>) {
    let unreadable = |why: String| (Content::Unreadable(why), None);
    let method = data_flags & ATTR_COMPRESSION_MASK;
    if method != METHOD_LZNT1 {
        return unreadable(format!("compressed with method {method:#x}, not LZNT1"));
    }
    let unit = disk.cluster_size.checked_shl(u32::from(unit_shift)).unwrap_or(u64::MAX);
    if unit_shift == 0 || unit > MAX_UNIT || unit % 4096 != 0 {
        return unreadable(format!(
            "LZNT1-compressed in units of {} clusters of {} bytes, which Windows never writes",
            1u64.checked_shl(u32::from(unit_shift)).unwrap_or(0),
            disk.cluster_size
        ));
    }
    match disk.map(format!("file record {n}: $DATA"), data) {
        Ok(map) => (Content::Lznt1 { unit: unit as u32 }, Some(map)),
        Err(e) => unreadable(format!("$DATA: {e}")),
    }
}

impl NtfsFs {
    /// Read LZNT1-compressed file record `n`, whose units are `unit` bytes.
    pub(super) fn read_lznt1(&self, n: u64, unit: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let map = self.data_map(n)?;
        self.read_compressed(n, &map, u64::from(unit), offset, buf)
            .inspect_err(|e| log::warn!("{e}"))
    }

    /// Read at most `buf.len()` bytes at `offset` of the LZNT1-compressed stream `map`
    /// in units of `unit` bytes; `key` tells its units apart from other streams' in the
    /// cache (the file record number for the unnamed stream).
    pub(super) fn read_compressed(
        &self,
        key: u64,
        map: &RunMap,
        unit: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let size = map.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len().min((size - offset).min(usize::MAX as u64) as usize);
        let initialized = map.initialized();
        let (mut pos, mut done) = (offset, 0usize);
        while done < len {
            let index = pos / unit;
            let start = index * unit;
            let within = (pos - start) as usize;
            let take = (unit as usize - within).min(len - done);
            let dst = &mut buf[done..done + take];
            let valid = initialized.saturating_sub(pos).min(take as u64) as usize;
            if valid > 0 {
                match map.stored(start, start + unit) {
                    0 => dst.fill(0),
                    s if s == unit => map.read_raw(&*self.disk.volume, pos, dst)?,
                    // Wanted whole: decoded in place, and not kept (see `wof`).
                    _ if take as u64 == unit => self.decode_unit(key, map, index, unit, dst)?,
                    _ => {
                        let data = self.unit(key, map, index, unit)?;
                        dst.copy_from_slice(&data[within..within + take]);
                    }
                }
            }
            dst[valid..].fill(0);
            pos += take as u64;
            done += take;
        }
        Ok(len)
    }

    /// Compression unit `index` of `map`, decoded and kept.
    fn unit(&self, key: u64, map: &RunMap, index: u64, unit: u64) -> Result<Arc<[u8]>> {
        self.decoded.units.get_or_try_insert((key, index), || {
            let mut out = vec![0u8; unit as usize];
            self.decode_unit(key, map, index, unit, &mut out)?;
            Ok(out.into())
        })
    }

    /// Decode compression unit `index` of `map` into `out` (`unit` bytes).
    fn decode_unit(&self, key: u64, map: &RunMap, index: u64, unit: u64, out: &mut [u8]) -> Result<()> {
        let start = index * unit;
        let end = (start + unit).min(map.mapped_end());
        let mut raw = vec![0u8; end.saturating_sub(start) as usize];
        map.read_raw(&*self.disk.volume, start, &mut raw)?;
        lznt1::decompress(&raw, out).map_err(|e| {
            fs_err(format!(
                "file record {key}: LZNT1 compression unit {index} (bytes {start}..{}) is damaged: {e}",
                start + unit
            ))
        })
    }
}
