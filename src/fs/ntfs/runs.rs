//! Data runs: the mapping-pairs array of a non-resident attribute decoded into extents,
//! and the per-stream map (stream offset → volume offset or hole) that serves reads with
//! large positional reads straight from the volume.

use crate::io::{Piece, ReadAt};
use crate::Result;

use super::fs_err;

/// One decoded run: `clusters` clusters of the stream starting at `vcn`, stored from
/// `lcn` on, or a hole (`lcn: None`, sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub vcn: u64,
    pub clusters: u64,
    pub lcn: Option<u64>,
}

/// Decode a mapping-pairs array whose first run starts at `lowest_vcn`.
///
/// The `ntfs` crate has its own decoder, but it takes a zero LCN delta for a hole; only a
/// run without offset bytes is one (a zero delta is legal, e.g. for `$Boot` at LCN 0).
pub(super) fn decode_mapping_pairs(bytes: &[u8], lowest_vcn: u64) -> std::result::Result<Vec<Extent>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut vcn = lowest_vcn;
    let mut lcn: i64 = 0;
    while pos < bytes.len() {
        let header = bytes[pos];
        if header == 0 {
            break;
        }
        let len_bytes = (header & 0x0f) as usize;
        let off_bytes = (header >> 4) as usize;
        if len_bytes == 0 || len_bytes > 8 || off_bytes > 8 {
            return Err(format!(
                "bad run header {header:#04x} at byte {pos} of the mapping pairs"
            ));
        }
        let body = bytes
            .get(pos + 1..pos + 1 + len_bytes + off_bytes)
            .ok_or_else(|| format!("run at byte {pos} runs past the end of the mapping pairs"))?;
        let clusters = le_uint(&body[..len_bytes]);
        if clusters == 0 || clusters > i64::MAX as u64 {
            return Err(format!("run at byte {pos} has a bad length of {clusters} clusters"));
        }
        let start = if off_bytes == 0 {
            None
        } else {
            let delta = le_int(&body[len_bytes..]);
            lcn = lcn
                .checked_add(delta)
                .filter(|l| *l >= 0)
                .ok_or_else(|| format!("run at byte {pos} points before the start of the volume"))?;
            Some(lcn as u64)
        };
        out.push(Extent {
            vcn,
            clusters,
            lcn: start,
        });
        vcn = vcn
            .checked_add(clusters)
            .ok_or_else(|| format!("run at byte {pos} overflows the VCN range"))?;
        pos += 1 + len_bytes + off_bytes;
    }
    Ok(out)
}

fn le_uint(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

fn le_int(b: &[u8]) -> i64 {
    let unsigned = le_uint(b);
    let unused = 64 - 8 * b.len() as u32;
    if unused == 64 {
        0
    } else {
        ((unsigned << unused) as i64) >> unused
    }
}

/// A byte range of the stream and where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u64,
    len: u64,
    /// Volume byte offset of `start`, or `None` for a hole.
    volume: Option<u64>,
}

/// Where each byte of a non-resident stream is, and how much of it holds data.
///
/// Reads past `initialized` but before `size` are zeros whatever the clusters hold: NTFS
/// never wrote them (the "valid data length" of a preallocated file).
#[derive(Debug)]
pub(super) struct RunMap {
    runs: Vec<Run>,
    size: u64,
    initialized: u64,
    /// For error messages: what the stream is.
    what: String,
}

impl RunMap {
    /// `extents` must be in VCN order, contiguous from VCN 0. Every stored run must lie
    /// inside the volume's `total_clusters`. `what` names the stream in read errors; the
    /// caller adds it to the errors returned here.
    pub fn new(
        what: String,
        cluster_size: u64,
        total_clusters: u64,
        extents: &[Extent],
        size: u64,
        initialized: u64,
    ) -> std::result::Result<RunMap, String> {
        let mut runs: Vec<Run> = Vec::with_capacity(extents.len());
        let mut next_vcn = 0u64;
        for e in extents {
            if e.vcn != next_vcn {
                return Err(format!(
                    "its runs jump from VCN {next_vcn} to VCN {} (a gap or an overlap)",
                    e.vcn
                ));
            }
            next_vcn = e.vcn + e.clusters;
            let bytes_of = |clusters: u64| clusters.checked_mul(cluster_size);
            let (Some(start), Some(end)) = (bytes_of(e.vcn), bytes_of(next_vcn)) else {
                return Err(format!("run at VCN {} is too long", e.vcn));
            };
            let len = end - start;
            let volume = match e.lcn {
                None => None,
                Some(lcn) => {
                    if lcn.checked_add(e.clusters).is_none_or(|end| end > total_clusters) {
                        return Err(format!(
                            "run at VCN {} (clusters {lcn}+{}) lies past the end of the volume ({total_clusters} clusters)",
                            e.vcn, e.clusters
                        ));
                    }
                    Some(lcn * cluster_size)
                }
            };
            // Coalesce so that one read covers what the disk holds contiguously.
            if let Some(last) = runs.last_mut() {
                let joins = match (last.volume, volume) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a + last.len == b,
                    _ => false,
                };
                if joins {
                    last.len += len;
                    continue;
                }
            }
            runs.push(Run { start, len, volume });
        }
        Ok(RunMap {
            runs,
            size,
            initialized: initialized.min(size),
            what,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of runs kept, for cache accounting.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn initialized(&self) -> u64 {
        self.initialized
    }

    /// Where the runs end: the stream's allocated length as its runs describe it.
    pub fn mapped_end(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.start + r.len)
    }

    /// Bytes of `start..end` that clusters hold: not holes, not past the runs. (A
    /// compressed stream tells its compressed units apart this way.)
    pub fn stored(&self, start: u64, end: u64) -> u64 {
        let first = self.runs.partition_point(|r| r.start + r.len <= start);
        self.runs[first..]
            .iter()
            .take_while(|r| r.start < end)
            .filter(|r| r.volume.is_some())
            .map(|r| (r.start + r.len).min(end) - r.start.max(start))
            .sum()
    }

    /// Read `buf.len()` bytes at `offset` as the clusters hold them, whatever the sizes
    /// say (compressed data lies past the data size): holes read as zeros, bytes no run
    /// maps are an error.
    pub fn read_raw(&self, volume: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_mapped(volume, offset, buf)
    }

    /// Read at most `buf.len()` bytes at `offset`; the count, 0 at or past the end.
    pub fn read(&self, volume: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((self.size - offset).min(usize::MAX as u64) as usize);
        let buf = &mut buf[..n];
        let valid = (self.initialized.saturating_sub(offset)).min(n as u64) as usize;
        let (data, zeros) = buf.split_at_mut(valid);
        self.read_mapped(volume, offset, data)?;
        zeros.fill(0);
        Ok(n)
    }

    /// Where at most `len` bytes at `offset` lie, as pieces of the image files under the
    /// volume and zeros (holes, and bytes past the valid data), and how many bytes that
    /// is; `None` where the volume cannot say. A byte no run maps is the error `read`
    /// gives.
    pub fn pieces<'a>(
        &self,
        volume: &'a dyn ReadAt,
        offset: u64,
        len: u64,
        out: &mut Vec<Piece<'a>>,
    ) -> Result<Option<u64>> {
        if offset >= self.size || len == 0 {
            return Ok(Some(0));
        }
        let n = len.min(self.size - offset);
        let end = offset + self.initialized.saturating_sub(offset).min(n);
        let zero = |out: &mut Vec<Piece<'a>>, len: u64| match out.last_mut() {
            Some(Piece::Zero { len: l }) => *l += len,
            _ => out.push(Piece::Zero { len }),
        };
        let stored = self.spans(offset, end - offset, |take, volume_at| match volume_at {
            None => {
                zero(out, take);
                Ok(true)
            }
            Some(v) => volume.pieces(v, take, out),
        })?;
        if !stored {
            return Ok(None);
        }
        if offset + n > end {
            zero(out, offset + n - end);
        }
        Ok(Some(n))
    }

    fn read_mapped(&self, volume: &dyn ReadAt, pos: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        self.spans(pos, buf.len() as u64, |take, volume_at| {
            let now = &mut buf[done..done + take as usize];
            match volume_at {
                None => now.fill(0),
                Some(v) => volume.read_at(v, now)?,
            }
            done += take as usize;
            Ok(true)
        })?;
        Ok(())
    }

    /// Walk `pos..pos + len` as spans of one run, in order: `f(span length, None)` for a
    /// hole, `f(span length, Some(volume offset))` for stored clusters. Stops with `false`
    /// as soon as `f` does; a byte no run maps is an error naming the stream.
    fn spans(&self, mut pos: u64, len: u64, mut f: impl FnMut(u64, Option<u64>) -> Result<bool>) -> Result<bool> {
        let end = pos + len;
        let mut i = self.runs.partition_point(|r| r.start + r.len <= pos);
        while pos < end {
            let run = self.runs.get(i).filter(|r| r.start <= pos).ok_or_else(|| {
                fs_err(format!(
                    "{}: no data run maps byte {pos} (the runs end at byte {}, the valid data at {})",
                    self.what,
                    self.runs.last().map_or(0, |r| r.start + r.len),
                    self.initialized
                ))
            })?;
            let within = pos - run.start;
            let take = (run.len - within).min(end - pos);
            if !f(take, run.volume.map(|v| v + within))? {
                return Ok(false);
            }
            pos += take;
            i += 1;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume whose byte at offset `o` is `o % 251`, so every position is recognisable.
    struct Pattern(u64);
    impl ReadAt for Pattern {
        fn size(&self) -> u64 {
            self.0
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            crate::io::check_range(offset, buf.len(), self.0)?;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((offset + i as u64) % 251) as u8;
            }
            Ok(())
        }
    }

    fn byte_at(o: u64) -> u8 {
        (o % 251) as u8
    }

    #[test]
    fn decodes_runs_holes_and_negative_deltas() {
        // 0x21: 1 length byte, 2 offset bytes: 0x10 clusters at LCN 0x1000.
        // 0x01: 1 length byte, no offset: a hole of 8 clusters.
        // 0x11: 4 clusters at delta -0x10 (0xF0) → LCN 0xFF0.
        // 0x11 with delta 0: 2 clusters at the same LCN again, which is data, not a hole.
        let pairs = [
            0x21, 0x10, 0x00, 0x10, 0x01, 0x08, 0x11, 0x04, 0xF0, 0x11, 0x02, 0x00, 0x00,
        ];
        let e = decode_mapping_pairs(&pairs, 5).unwrap();
        assert_eq!(
            e,
            vec![
                Extent {
                    vcn: 5,
                    clusters: 0x10,
                    lcn: Some(0x1000)
                },
                Extent {
                    vcn: 21,
                    clusters: 8,
                    lcn: None
                },
                Extent {
                    vcn: 29,
                    clusters: 4,
                    lcn: Some(0xFF0)
                },
                Extent {
                    vcn: 33,
                    clusters: 2,
                    lcn: Some(0xFF0)
                },
            ]
        );
    }

    #[test]
    fn rejects_damaged_runs() {
        assert!(decode_mapping_pairs(&[0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9], 0).is_err());
        assert!(decode_mapping_pairs(&[0x21, 0x10, 0x00], 0).is_err()); // truncated
        assert!(decode_mapping_pairs(&[0x11, 0x01, 0x80, 0x00], 0).is_err()); // LCN < 0
        assert!(decode_mapping_pairs(&[0x11, 0x00, 0x05, 0x00], 0).is_err()); // 0 clusters
        assert!(decode_mapping_pairs(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn maps_data_holes_and_uninitialized_tail() {
        let cs = 16u64;
        let extents = [
            Extent {
                vcn: 0,
                clusters: 2,
                lcn: Some(10),
            },
            Extent {
                vcn: 2,
                clusters: 1,
                lcn: Some(12),
            }, // contiguous: coalesced
            Extent {
                vcn: 3,
                clusters: 2,
                lcn: None,
            },
            Extent {
                vcn: 5,
                clusters: 3,
                lcn: Some(3),
            },
        ];
        // 8 clusters = 128 bytes allocated; 120 bytes of data, 100 of them initialized.
        let map = RunMap::new("t".into(), cs, 100, &extents, 120, 100).unwrap();
        assert_eq!(map.len(), 3);
        let vol = Pattern(1600);
        let mut buf = vec![0xAAu8; 200];
        assert_eq!(map.read(&vol, 0, &mut buf).unwrap(), 120);
        for (i, &b) in buf[..120].iter().enumerate() {
            let i = i as u64;
            let want = match i {
                0..48 => byte_at(160 + i),
                48..80 => 0,
                80..100 => byte_at(48 + (i - 80)),
                _ => 0, // past the initialized size
            };
            assert_eq!(b, want, "byte {i}");
        }
        assert_eq!(buf[120], 0xAA, "nothing written past the end");
        // A read that starts inside a hole and crosses into data.
        let mut b = [0u8; 4];
        assert_eq!(map.read(&vol, 78, &mut b).unwrap(), 4);
        assert_eq!(b, [0, 0, byte_at(48), byte_at(49)]);
        assert_eq!(map.read(&vol, 120, &mut b).unwrap(), 0);
        assert_eq!(map.read(&vol, u64::MAX, &mut b).unwrap(), 0);
    }

    #[test]
    fn unmapped_bytes_are_an_error_not_zeros() {
        let extents = [Extent {
            vcn: 0,
            clusters: 1,
            lcn: Some(1),
        }];
        let map = RunMap::new("file record 99 $DATA".into(), 512, 10, &extents, 2048, 2048).unwrap();
        let mut b = vec![0u8; 1024];
        let e = map.read(&Pattern(5120), 0, &mut b).unwrap_err().to_string();
        assert!(e.contains("file record 99") && e.contains("byte 512"), "{e}");
        // The part past the valid data is zeros without needing runs.
        let map = RunMap::new("x".into(), 512, 10, &extents, 2048, 512).unwrap();
        assert_eq!(map.read(&Pattern(5120), 0, &mut b).unwrap(), 1024);
        assert!(b[512..].iter().all(|&x| x == 0));
    }

    #[test]
    fn rejects_gaps_and_runs_past_the_volume() {
        let gap = [
            Extent {
                vcn: 0,
                clusters: 1,
                lcn: Some(1),
            },
            Extent {
                vcn: 2,
                clusters: 1,
                lcn: Some(2),
            },
        ];
        assert!(RunMap::new("x".into(), 512, 10, &gap, 1536, 1536).is_err());
        let past = [Extent {
            vcn: 0,
            clusters: 4,
            lcn: Some(8),
        }];
        assert!(RunMap::new("x".into(), 512, 10, &past, 2048, 2048).is_err());
        let late = [Extent {
            vcn: 1,
            clusters: 1,
            lcn: Some(1),
        }];
        assert!(RunMap::new("x".into(), 512, 10, &late, 1024, 1024).is_err());
        let huge = [Extent {
            vcn: 0,
            clusters: u64::MAX / 2,
            lcn: None,
        }];
        assert!(RunMap::new("x".into(), 4096, 10, &huge, 1, 1).is_err());
    }

    /// The pieces describe exactly the bytes `read` returns: runs, holes, bytes past the
    /// valid data, the end of the stream; a volume that cannot say gives `None`.
    #[test]
    fn pieces_describe_what_read_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volume");
        let bytes: Vec<u8> = (0..64 * 1024u64).map(byte_at).collect();
        std::fs::write(&path, &bytes).unwrap();
        let volume = crate::io::ImageFile::open(&path).unwrap();
        let extents = [
            Extent {
                vcn: 0,
                clusters: 2,
                lcn: Some(5),
            },
            Extent {
                vcn: 2,
                clusters: 3,
                lcn: None,
            },
            Extent {
                vcn: 5,
                clusters: 4,
                lcn: Some(1),
            },
        ];
        // 9 clusters of 512 bytes; 4000 bytes long, the first 3000 valid.
        let map = RunMap::new("test".into(), 512, 128, &extents, 4000, 3000).unwrap();
        for (offset, len) in [
            (0u64, 4000u64),
            (100, 1000),
            (1000, 600),
            (2900, 5000),
            (3999, 10),
            (4000, 5),
        ] {
            let mut out = Vec::new();
            let n = map.pieces(&volume, offset, len, &mut out).unwrap().unwrap();
            let mut from_pieces = Vec::new();
            for p in &out {
                match *p {
                    Piece::File { offset, len, .. } => {
                        from_pieces.extend_from_slice(&bytes[offset as usize..(offset + len) as usize])
                    }
                    Piece::Zero { len } => from_pieces.resize(from_pieces.len() + len as usize, 0),
                }
            }
            let mut buf = vec![0xEE; len as usize];
            let read = map.read(&volume, offset, &mut buf).unwrap();
            assert_eq!(n as usize, read, "{offset}+{len}");
            assert_eq!(from_pieces, buf[..read], "{offset}+{len}");
        }
        let mut out = Vec::new();
        assert_eq!(map.pieces(&Pattern(1 << 20), 0, 100, &mut out).unwrap(), None);
    }
}
