//! WOF-compressed files ("CompactOS", `compact /exe:…`): reparse tag 0x80000017, whose
//! data names the file provider (2) and the algorithm: XPRESS in chunks of 4, 8 or
//! 16 KiB, or LZX in chunks of 32 KiB. The unnamed `$DATA` is a sparse stand-in that only
//! gives the size; the bytes are in the `WofCompressedData` stream: a table of where
//! chunks 1..n start (4-byte entries, 8-byte for files over 4 GiB − 1, counted from the
//! end of the table; chunk 0 starts there), then the chunks, each compressed on its own or
//! stored as is when that would not be smaller. The last chunk holds what is left.

use std::sync::Arc;

use ntfs::NtfsAttributeType;

use super::compress::{lzx, xpress};
use super::node::{Content, TAG_WOF};
use super::record::{u32_at, Attribute, ATTR_COMPRESSION_MASK, ATTR_ENCRYPTED};
use super::runs::RunMap;
use super::stream::{stream, Stream};
use super::{fs_err, Disk, NtfsFs};
use crate::Result;

const PROVIDER_WIM: u32 = 1;
const PROVIDER_FILE: u32 = 2;
const STREAM: &str = "WofCompressedData";
/// Table entries read and kept together.
const PAGE: u64 = 512;
/// Compressed bytes read at once for consecutive chunks.
const BATCH: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    Xpress4K,
    Lzx,
    Xpress8K,
    Xpress16K,
}

impl Algorithm {
    fn from_id(id: u32) -> Option<Algorithm> {
        Some(match id {
            0 => Algorithm::Xpress4K,
            1 => Algorithm::Lzx,
            2 => Algorithm::Xpress8K,
            3 => Algorithm::Xpress16K,
            _ => return None,
        })
    }

    fn chunk_size(self) -> u64 {
        match self {
            Algorithm::Xpress4K => 4 << 10,
            Algorithm::Xpress8K => 8 << 10,
            Algorithm::Xpress16K => 16 << 10,
            Algorithm::Lzx => 32 << 10,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Xpress4K => "XPRESS4K",
            Algorithm::Xpress8K => "XPRESS8K",
            Algorithm::Xpress16K => "XPRESS16K",
            Algorithm::Lzx => "LZX",
        }
    }

    fn decompress(self, input: &[u8], out: &mut [u8]) -> std::result::Result<(), String> {
        match self {
            Algorithm::Lzx => lzx::decompress(input, out),
            _ => xpress::decompress(input, out),
        }
    }
}

/// How a WOF-compressed file is stored.
#[derive(Debug)]
pub(super) struct Wof {
    pub algorithm: Algorithm,
    /// The `WofCompressedData` stream when it is resident (a small file); otherwise the
    /// node's run map is the stream's.
    pub resident: Option<Box<[u8]>>,
}

/// How to read a file with a reparse point if it is WOF-compressed, or why it cannot be
/// read; `None` for other reparse points.
pub(super) fn content(disk: &Disk, n: u64, attrs: &[Attribute]) -> Option<(Content, Option<RunMap>)> {
    let unreadable = |why: String| Some((Content::Unreadable(why), None));
    let r = match super::reparse::read(disk, attrs) {
        Ok(Some(r)) if r.tag == TAG_WOF => r,
        // Damaged and other reparse points are `node`'s to explain.
        _ => return None,
    };
    let raw = &r.raw;
    let (version, provider) = match raw.len() {
        16.. => (u32_at(raw, 8), u32_at(raw, 12)),
        _ => {
            return unreadable(format!(
                "WOF-compressed, but its reparse data is only {} bytes",
                raw.len()
            ))
        }
    };
    if provider == PROVIDER_WIM {
        return unreadable(
            "WOF-backed by a WIM file (WIMBoot): its data is in an image file outside this volume".into(),
        );
    }
    if version != 1 || provider != PROVIDER_FILE || raw.len() < 24 || u32_at(raw, 16) != 1 {
        return unreadable(format!(
            "WOF-compressed with an unknown provider or version (WOF version {version}, provider {provider})"
        ));
    }
    let id = u32_at(raw, 20);
    let Some(algorithm) = Algorithm::from_id(id) else {
        return unreadable(format!("WOF-compressed with unknown algorithm {id}"));
    };
    let what = format!("WOF-compressed ({})", algorithm.name());
    match stream(attrs, NtfsAttributeType::Data, STREAM) {
        Ok(None) => unreadable(format!("{what}, but its {STREAM} stream is missing")),
        Err(e) => unreadable(format!("{what}: {e}")),
        Ok(Some(Stream::Resident(v))) => Some((
            Content::Wof(Wof {
                algorithm,
                resident: Some(v.into()),
            }),
            None,
        )),
        Ok(Some(s @ Stream::NonResident { flags, .. })) => {
            if flags & (ATTR_COMPRESSION_MASK | ATTR_ENCRYPTED) != 0 {
                return unreadable(format!(
                    "{what}, and its {STREAM} stream is itself compressed or encrypted"
                ));
            }
            match disk.map(format!("file record {n}: {STREAM}"), &s) {
                Ok(map) => Some((
                    Content::Wof(Wof {
                        algorithm,
                        resident: None,
                    }),
                    Some(map),
                )),
                Err(e) => unreadable(format!("{what}: {STREAM}: {e}")),
            }
        }
    }
}

/// One file's layout, worked out for a read.
struct Layout<'a> {
    n: u64,
    wof: &'a Wof,
    map: Option<Arc<RunMap>>,
    size: u64,
    chunk: u64,
    chunks: u64,
    entry: u64,
    /// Where chunk 0 starts in the stream.
    table: u64,
    /// Bytes after the table.
    data: u64,
}

impl NtfsFs {
    /// Read WOF-compressed file record `n` of `size` bytes.
    pub(super) fn read_wof(&self, n: u64, wof: &Wof, size: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_wof_inner(n, wof, size, offset, buf)
            .inspect_err(|e| log::warn!("{e}"))
    }

    fn read_wof_inner(&self, n: u64, wof: &Wof, size: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let map = match wof.resident {
            Some(_) => None,
            None => Some(self.data_map(n)?),
        };
        let stream_len = match (&wof.resident, &map) {
            (Some(v), _) => v.len() as u64,
            (None, Some(m)) => m.size(),
            (None, None) => 0,
        };
        let chunk = wof.algorithm.chunk_size();
        let chunks = size.div_ceil(chunk);
        let entry = if size > u64::from(u32::MAX) { 8 } else { 4 };
        let table = (chunks - 1) * entry;
        if table > stream_len {
            return Err(fs_err(format!(
                "file record {n}: {STREAM} is {stream_len} bytes, too short for the table of its {chunks} chunks"
            )));
        }
        let l = Layout {
            n,
            wof,
            map,
            size,
            chunk,
            chunks,
            entry,
            table,
            data: stream_len - table,
        };
        let len = buf.len().min((size - offset).min(usize::MAX as u64) as usize);
        let (mut pos, mut done) = (offset, 0usize);
        while done < len {
            let first = pos / chunk;
            if let Some(c) = self.decoded.units.get(&(n, first)) {
                let within = (pos - first * chunk) as usize;
                let take = (c.len() - within).min(len - done);
                buf[done..done + take].copy_from_slice(&c[within..within + take]);
                pos += take as u64;
                done += take;
                continue;
            }
            // Chunks not decoded yet: their compressed bytes are consecutive, so read a
            // batch of them at once.
            let last = ((pos + (len - done) as u64 - 1) / chunk).min(first + BATCH / chunk - 1);
            let (start, _) = self.chunk_bounds(&l, first)?;
            let mut bounds = Vec::with_capacity((last - first + 1) as usize);
            let mut end = start;
            for i in first..=last {
                let b = self.chunk_bounds(&l, i)?;
                if b.0 != end || b.1 - start > BATCH && i > first {
                    break;
                }
                end = b.1;
                bounds.push(b);
            }
            let mut packed = vec![0u8; (end - start) as usize];
            self.read_stream(&l, l.table + start, &mut packed)?;
            for (k, &(s, e)) in bounds.iter().enumerate() {
                let i = first + k as u64;
                let plain = self.chunk_len(&l, i);
                let stored = &packed[(s - start) as usize..(e - start) as usize];
                let within = (pos - i * chunk) as usize;
                let take = (plain - within).min(len - done);
                let dst = &mut buf[done..done + take];
                let damaged = |e: String| {
                    fs_err(format!(
                        "file record {n}: {} chunk {i} ({} bytes at {STREAM} byte {}) is damaged: {e}",
                        wof.algorithm.name(),
                        stored.len(),
                        l.table + s
                    ))
                };
                if stored.len() == plain {
                    dst.copy_from_slice(&stored[within..within + take]);
                } else if take == plain {
                    // Wanted whole: decoded in place, and not kept, as a reader going on
                    // through the file will not ask for it again.
                    wof.algorithm.decompress(stored, dst).map_err(damaged)?;
                } else {
                    let mut out = vec![0u8; plain];
                    wof.algorithm.decompress(stored, &mut out).map_err(damaged)?;
                    dst.copy_from_slice(&out[within..within + take]);
                    self.decoded.units.put((n, i), out.into());
                }
                pos += take as u64;
                done += take;
            }
        }
        Ok(len)
    }

    /// Uncompressed bytes of chunk `i`.
    fn chunk_len(&self, l: &Layout, i: u64) -> usize {
        if i + 1 == l.chunks {
            (l.size - i * l.chunk) as usize
        } else {
            l.chunk as usize
        }
    }

    /// Where chunk `i` lies, counted from the end of the table, checked against the stream.
    fn chunk_bounds(&self, l: &Layout, i: u64) -> Result<(u64, u64)> {
        let start = if i == 0 { 0 } else { self.table_entry(l, i - 1)? };
        let end = if i + 1 == l.chunks {
            l.data
        } else {
            self.table_entry(l, i)?
        };
        let plain = self.chunk_len(l, i) as u64;
        if start >= end || end > l.data || end - start > plain {
            return Err(fs_err(format!(
                "file record {}: {STREAM}: chunk {i} is said to lie at bytes {start}..{end} after the table, \
                 which the {} bytes there cannot hold as a chunk of {plain} bytes (a damaged chunk table)",
                l.n, l.data
            )));
        }
        Ok((start, end))
    }

    /// Table entry `k`: where chunk `k + 1` starts.
    fn table_entry(&self, l: &Layout, k: u64) -> Result<u64> {
        let page = k / PAGE;
        let entries = self
            .decoded
            .tables
            .get_or_try_insert((l.n, page), || -> Result<Arc<[u64]>> {
                let first = page * PAGE;
                let count = PAGE.min(l.chunks - 1 - first);
                let mut raw = vec![0u8; (count * l.entry) as usize];
                self.read_stream(l, first * l.entry, &mut raw)?;
                Ok(raw
                    .chunks_exact(l.entry as usize)
                    .map(|e| {
                        let mut b = [0u8; 8];
                        b[..e.len()].copy_from_slice(e);
                        u64::from_le_bytes(b)
                    })
                    .collect())
            })?;
        Ok(entries[(k % PAGE) as usize])
    }

    /// Bytes of the `WofCompressedData` stream.
    fn read_stream(&self, l: &Layout, pos: u64, buf: &mut [u8]) -> Result<()> {
        let got = match (&l.wof.resident, &l.map) {
            (Some(v), _) => {
                let start = (pos as usize).min(v.len());
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                n
            }
            (None, Some(m)) => m.read(&*self.disk.volume, pos, buf)?,
            (None, None) => 0,
        };
        if got < buf.len() {
            return Err(fs_err(format!(
                "file record {}: {STREAM} ends before byte {}",
                l.n,
                pos + buf.len() as u64
            )));
        }
        Ok(())
    }
}
