//! The expected raw disk of a checkpoint state, kept sparse in memory.
//!
//! The model is deliberately dumb: it knows nothing about VHDX. The writer's
//! `ChainBuilder` replays each layer's block states onto a copy of the parent's
//! model, so a test can compare whatever a reader returns against `read`.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// Granularity of the in-memory store. Independent of the logical sector size:
/// 4 KiB keeps the per-entry overhead small for 512-byte disks while still
/// letting `data_ranges` be tight enough to skip large zero areas.
const PAGE: u64 = 4096;

/// The expected raw disk, sparse: sectors not written read as zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    size: u64,
    sector_size: u32,
    /// Page index -> page contents. Pages that are entirely zero are never
    /// stored, so equality of two models is equality of their disks.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Model {
    pub fn new(size: u64, sector_size: u32) -> Model {
        assert!(sector_size == 512 || sector_size == 4096, "sector size {sector_size}");
        assert_eq!(
            size % sector_size as u64,
            0,
            "size must be a multiple of the sector size"
        );
        Model {
            size,
            sector_size,
            pages: BTreeMap::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn check_range(&self, offset: u64, len: u64) {
        let ss = self.sector_size as u64;
        assert!(
            offset % ss == 0 && len % ss == 0,
            "unaligned access {offset:#x}+{len:#x} (sector size {ss})"
        );
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.size),
            "access {offset:#x}+{len:#x} beyond disk size {:#x}",
            self.size
        );
    }

    /// Writes guest data; `offset` and `bytes.len()` must be sector multiples.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        self.check_range(offset, bytes.len() as u64);
        self.put(offset, bytes);
    }

    /// Like `write` but without the sector-alignment check, for callers that
    /// already validated alignment at a coarser level.
    fn put(&mut self, offset: u64, bytes: &[u8]) {
        let mut pos = 0usize;
        while pos < bytes.len() {
            let abs = offset + pos as u64;
            let page = abs / PAGE;
            let in_page = (abs % PAGE) as usize;
            let n = (PAGE as usize - in_page).min(bytes.len() - pos);
            let src = &bytes[pos..pos + n];
            let zero = src.iter().all(|&b| b == 0);
            match self.pages.get_mut(&page) {
                Some(p) => {
                    p[in_page..in_page + n].copy_from_slice(src);
                    if zero && p.iter().all(|&b| b == 0) {
                        self.pages.remove(&page);
                    }
                }
                None if zero => {}
                None => {
                    let mut p = vec![0u8; PAGE as usize].into_boxed_slice();
                    p[in_page..in_page + n].copy_from_slice(src);
                    self.pages.insert(page, p);
                }
            }
            pos += n;
        }
    }

    /// Makes `len` bytes at `offset` read as zero (sector aligned).
    pub fn zero(&mut self, offset: u64, len: u64) {
        self.check_range(offset, len);
        if len == 0 {
            return;
        }
        let first = offset / PAGE;
        let last = (offset + len - 1) / PAGE;
        // Partial pages at either end need a read-modify-write; whole pages in
        // between are simply dropped (cheap even for a multi-GiB range).
        let keys: Vec<u64> = self.pages.range(first..=last).map(|(&k, _)| k).collect();
        for k in keys {
            let ps = k * PAGE;
            let a = offset.max(ps);
            let b = (offset + len).min(ps + PAGE);
            if a == ps && b == ps + PAGE {
                self.pages.remove(&k);
            } else {
                self.put(a, &vec![0u8; (b - a) as usize]);
            }
        }
    }

    /// Reads any byte range inside the disk.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        assert!(
            offset + len as u64 <= self.size,
            "read {offset:#x}+{len:#x} beyond disk size {:#x}",
            self.size
        );
        let mut out = vec![0u8; len];
        if len == 0 {
            return out;
        }
        let first = offset / PAGE;
        let last = (offset + len as u64 - 1) / PAGE;
        for (&k, p) in self.pages.range(first..=last) {
            let ps = k * PAGE;
            let a = offset.max(ps);
            let b = (offset + len as u64).min(ps + PAGE);
            out[(a - offset) as usize..(b - offset) as usize].copy_from_slice(&p[(a - ps) as usize..(b - ps) as usize]);
        }
        out
    }

    /// Ranges (offset, len) that may hold non-zero data, merged, ascending —
    /// lets a test compare a large sparse disk quickly.
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &k in self.pages.keys() {
            let start = k * PAGE;
            let end = (start + PAGE).min(self.size);
            match out.last_mut() {
                Some((o, l)) if *o + *l == start => *l = end - *o,
                _ => out.push((start, end - start)),
            }
        }
        out
    }

    /// Writes the model as a raw image. Only non-zero pages are written and the
    /// length is set with `set_len`, so zeros stay holes on sparse-capable
    /// filesystems and a 10 GiB image costs only its data.
    pub fn save_raw(&self, path: &Path) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(path)?;
        for (off, len) in self.data_ranges() {
            f.seek(SeekFrom::Start(off))?;
            let mut at = off;
            while at < off + len {
                let n = (off + len - at).min(16 << 20);
                f.write_all(&self.read(at, n as usize))?;
                at += n;
            }
        }
        f.set_len(self.size)?;
        f.sync_all()
    }
}
