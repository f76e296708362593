//! Hyper-V VHDX and AVHDX files (MS-VHDX), one module per on-disk structure. A
//! [`VhdxFile`] is one [`Layer`]: it maps guest ranges to its own payload blocks, to
//! zeros, or to its parent, and reads through a log replayed in memory.

pub mod bat;
mod error;
mod file_view;
pub mod header;
pub(crate) mod info;
pub mod log;
pub mod metadata;
pub mod parent_locator;
pub mod region;
pub mod sector_bitmap;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use bat::{BatEntry, BatGeometry, PayloadState};
pub use error::VhdxError;
pub use header::Header;
pub use metadata::Metadata;
pub use parent_locator::ParentLocator;
pub use region::RegionTable;

use crate::bytes::braced;
use crate::cache::Cache;
use crate::format::probe::Detected;
use crate::format::{DiskFile, FileInfo, Identity, Layer, ParentRef, PathHint, Run, Source};
use crate::io::ImageFile;
use crate::{Error, Result};
use file_view::FileView;

const MIB: u64 = 1 << 20;
/// BAT entries are cached in pages of this many (4 KiB).
const BAT_PAGE_ENTRIES: u64 = 512;
/// BAT pages cached per file: 256 KiB, enough for 32768 blocks (1 TiB at 32 MiB blocks).
const BAT_CACHE_PAGES: usize = 64;

/// Fixed, dynamic or differencing, as MS-VHDX 1.3 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    Fixed,
    Dynamic,
    Differencing,
}

impl DiskKind {
    pub fn name(self) -> &'static str {
        match self {
            DiskKind::Fixed => "fixed",
            DiskKind::Dynamic => "dynamic",
            DiskKind::Differencing => "differencing",
        }
    }
}

/// What opening found in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    /// LogGuid is zero: nothing to replay.
    Clean,
    /// The active sequence was replayed in memory.
    Replayed { entries: usize, head_sequence: u64 },
}

/// Counts of BAT entries, for `info`.
#[derive(Debug, Clone, Default)]
pub struct BlockCounts {
    pub payload: BTreeMap<PayloadState, u64>,
    /// Payload entries with a reserved state value (4).
    pub payload_invalid: u64,
    pub bitmap_present: u64,
}

/// One VHDX/AVHDX file, opened read-only, its log replayed in memory.
#[derive(Debug)]
pub struct VhdxFile {
    view: FileView,
    pub creator: String,
    pub header: Header,
    /// Which header copy (1 or 2) is current.
    pub header_copy: usize,
    pub regions: RegionTable,
    pub metadata: Metadata,
    pub geometry: BatGeometry,
    pub log_state: LogState,
    bat_pages: Cache<u64, Arc<[u64]>>,
}

impl VhdxFile {
    /// Open `path` read-only and check every structure needed to read it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_image(ImageFile::open(path)?)
    }

    /// Read an image file already open as VHDX.
    pub fn from_image(file: ImageFile) -> Result<Self> {
        let path = file.path().to_path_buf();
        Self::from_file(file).map_err(|e| Error::vhdx(path, e))
    }

    fn from_file(file: ImageFile) -> Result<Self, VhdxError> {
        let view = FileView::new(file);
        let raw = |offset: u64, len: usize| -> Result<Vec<u8>, VhdxError> {
            let mut b = vec![0u8; len];
            let n = view.file().read_up_to(offset, &mut b).map_err(|source| VhdxError::Io {
                offset,
                len: len as u64,
                source,
            })?;
            b.truncate(n);
            Ok(b)
        };

        let ident = header::parse_file_identifier(&raw(header::FILE_IDENTIFIER_OFFSET, header::FILE_IDENTIFIER_SIZE)?)?;
        let [h1, h2] =
            header::HEADER_OFFSETS.map(|at| raw(at, header::HEADER_SIZE).and_then(|b| header::parse_header(&b, at)));
        let (hdr, header_copy) = header::choose_header(h1, h2)?;

        // The log is replayed before anything else is read (MS-VHDX 2.3.3).
        let (view, log_state) = if hdr.log_needs_replay() {
            let len = u64::from(hdr.log_length);
            if len > log::MAX_LOG_LENGTH {
                return Err(VhdxError::Unsupported(format!(
                    "the log to replay is {len:#x} bytes; at most {:#x} is read",
                    log::MAX_LOG_LENGTH
                )));
            }
            let log_bytes = view.read_vec(hdr.log_offset, len as usize, "log")?;
            let replay = log::replay(&log_bytes, hdr.log_guid, hdr.log_offset)?;
            if view.len() < replay.flushed_file_offset {
                return Err(VhdxError::Truncated {
                    structure: "file (as the log's FlushedFileOffset requires)",
                    offset: 0,
                    len: replay.flushed_file_offset,
                    file_len: view.len(),
                });
            }
            let state = LogState::Replayed {
                entries: replay.entries,
                head_sequence: replay.head_sequence,
            };
            (view.with_replay(replay.overlay, replay.last_file_offset), state)
        } else {
            (view, LogState::Clean)
        };

        let [r1, r2] = region::REGION_TABLE_OFFSETS.map(|at| {
            view.read_vec(at, region::REGION_TABLE_SIZE, "region table")
                .and_then(|b| region::parse_region_table(&b, at))
        });
        let regions = region::choose_region_table(r1, r2)?;

        let meta_at = regions.metadata.file_offset;
        let meta_len = u64::from(regions.metadata.length);
        let table = view.read_vec(meta_at, metadata::TABLE_SIZE, "metadata table")?;
        let entries = metadata::parse_table(&table, meta_at, meta_len)?;
        let metadata = metadata::parse_items(&entries, meta_at, |e| {
            view.read_vec(meta_at + u64::from(e.offset), e.length as usize, "metadata item")
        })?;

        let geometry = BatGeometry::new(
            metadata.block_size,
            metadata.logical_sector_size,
            metadata.virtual_size,
            metadata.has_parent,
        );
        geometry.check_region(regions.bat.file_offset, u64::from(regions.bat.length))?;
        let bat_end = regions.bat.file_offset + geometry.entries * 8;
        if bat_end > view.len() {
            return Err(VhdxError::Truncated {
                structure: "BAT",
                offset: regions.bat.file_offset,
                len: geometry.entries * 8,
                file_len: view.len(),
            });
        }

        Ok(VhdxFile {
            view,
            creator: ident.creator,
            header: hdr,
            header_copy,
            regions,
            metadata,
            geometry,
            log_state,
            bat_pages: Cache::new(BAT_CACHE_PAGES),
        })
    }

    pub fn path(&self) -> &Path {
        self.view.file().path()
    }

    pub fn kind(&self) -> DiskKind {
        if self.metadata.has_parent {
            DiskKind::Differencing
        } else if self.metadata.leave_blocks_allocated {
            DiskKind::Fixed
        } else {
            DiskKind::Dynamic
        }
    }

    /// The parent locator of a differencing file.
    pub fn parent_locator(&self) -> Option<&ParentLocator> {
        self.metadata.parent_locator.as_ref()
    }

    /// Length of the file as the replayed log makes it.
    pub fn file_len(&self) -> u64 {
        self.view.len()
    }

    pub fn file_metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.view.file().metadata()
    }

    fn err(&self, e: VhdxError) -> Error {
        Error::vhdx(self.path(), e)
    }

    /// The BAT entry at `index`, through the page cache.
    pub fn bat_entry(&self, index: u64) -> Result<BatEntry, VhdxError> {
        let page = index / BAT_PAGE_ENTRIES;
        let slot = (index % BAT_PAGE_ENTRIES) as usize;
        if index >= self.geometry.entries {
            return Err(VhdxError::corrupt(
                "BAT",
                self.regions.bat.file_offset,
                format!(
                    "entry {index} is past the {} entries of the table",
                    self.geometry.entries
                ),
            ));
        }
        let entries = self.bat_pages.get_or_try_insert(page, || {
            let first = page * BAT_PAGE_ENTRIES;
            let count = BAT_PAGE_ENTRIES.min(self.geometry.entries - first);
            let b = self
                .view
                .read_vec(self.regions.bat.file_offset + first * 8, count as usize * 8, "BAT")?;
            Ok::<Arc<[u64]>, VhdxError>(
                b.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )
        })?;
        Ok(BatEntry(entries[slot]))
    }

    /// Count every payload state and present sector bitmap, streaming the whole BAT.
    pub fn block_counts(&self) -> Result<BlockCounts> {
        let mut counts = BlockCounts::default();
        let g = &self.geometry;
        let per_read = 128 * 1024u64;
        let mut index = 0;
        while index < g.entries {
            let n = per_read.min(g.entries - index);
            let b = self
                .view
                .read_vec(self.regions.bat.file_offset + index * 8, n as usize * 8, "BAT")
                .map_err(|e| self.err(e))?;
            for (i, c) in b.chunks_exact(8).enumerate() {
                let e = BatEntry(u64::from_le_bytes(c.try_into().unwrap()));
                let at = index + i as u64;
                if !g.is_payload_index(at) {
                    counts.bitmap_present += u64::from(e.bitmap_present() == Some(true));
                } else if at - at / (g.chunk_ratio + 1) < g.payload_blocks {
                    match e.payload_state() {
                        Some(s) => *counts.payload.entry(s).or_default() += 1,
                        None => counts.payload_invalid += 1,
                    }
                }
            }
            index += n;
        }
        Ok(counts)
    }

    /// The file offset of bytes `in_block..in_block + len` of a block that starts at
    /// `block_start`, after checking that the whole block lies past the header section
    /// and the bytes inside the file (a hostile offset near 2^64 must not wrap).
    fn block_extent(
        &self,
        what: &str,
        index: u64,
        block_start: u64,
        in_block: u64,
        len: u64,
    ) -> Result<u64, VhdxError> {
        let bat_at = self.regions.bat.file_offset;
        if block_start < MIB {
            return Err(VhdxError::corrupt(
                "BAT",
                bat_at,
                format!("{what} {index} points at {block_start:#x}, inside the header section"),
            ));
        }
        let at = block_start.checked_add(in_block);
        if at
            .and_then(|a| a.checked_add(len))
            .is_none_or(|end| end > self.view.len())
        {
            return Err(VhdxError::corrupt(
                "BAT",
                bat_at,
                format!(
                    "{what} {index} points at {block_start:#x}, past the end of the file ({:#x} bytes)",
                    self.view.len()
                ),
            ));
        }
        Ok(at.expect("checked above"))
    }

    fn map_block(&self, block: u64, in_block: u64, len: u64, out: &mut Vec<Run>) -> Result<(), VhdxError> {
        let g = &self.geometry;
        let index = g.payload_index(block);
        let entry = self.bat_entry(index)?;
        let bat_at = self.regions.bat.file_offset + index * 8;
        let state = entry.payload_state().ok_or_else(|| {
            VhdxError::corrupt(
                "BAT entry",
                bat_at,
                format!("block {block} has the reserved state {}", entry.state_bits()),
            )
        })?;
        let run = |source| Run { len, source };
        match state {
            PayloadState::NotPresent if self.metadata.has_parent => out.push(run(Source::Parent)),
            PayloadState::NotPresent | PayloadState::Undefined | PayloadState::Zero | PayloadState::Unmapped => {
                out.push(run(Source::Zero))
            }
            PayloadState::FullyPresent => {
                let at = self.block_extent("block", block, entry.file_offset(), in_block, len)?;
                out.push(run(Source::Data { file_offset: at }));
            }
            PayloadState::PartiallyPresent => {
                if !self.metadata.has_parent {
                    return Err(VhdxError::corrupt(
                        "BAT entry",
                        bat_at,
                        format!("block {block} is partially present in a file without a parent"),
                    ));
                }
                let data_at = self.block_extent("block", block, entry.file_offset(), in_block, len)?;
                let chunk = block / g.chunk_ratio;
                let sb_index = g.bitmap_index(chunk);
                let sb = self.bat_entry(sb_index)?;
                if sb.bitmap_present() != Some(true) {
                    return Err(VhdxError::corrupt(
                        "BAT entry",
                        self.regions.bat.file_offset + sb_index * 8,
                        format!(
                            "block {block} is partially present, but the sector bitmap of chunk {chunk} has state {} instead of present (6)",
                            sb.state_bits()
                        ),
                    ));
                }
                let bitmap_at = self.block_extent("sector bitmap of chunk", chunk, sb.file_offset(), 0, MIB)?;
                let lss = g.logical_sector_size;
                let first = (block % g.chunk_ratio) * g.sectors_per_block() + in_block / lss;
                let count = len / lss;
                let bytes_at = first / 8;
                let bytes_len = (first + count).div_ceil(8) - bytes_at;
                let bits = self
                    .view
                    .read_vec(bitmap_at + bytes_at, bytes_len as usize, "sector bitmap")?;
                let mut pos = data_at;
                for (present, sectors) in sector_bitmap::runs(&bits, first % 8, count) {
                    let n = sectors * lss;
                    let source = if present {
                        Source::Data { file_offset: pos }
                    } else {
                        Source::Parent
                    };
                    out.push(Run { len: n, source });
                    pos += n;
                }
            }
        }
        Ok(())
    }
}

/// The field a child's parent locator names its parent by (MS-VHDX 2.6.2.6.1).
const IDENTITY_FIELD: &str = "DataWriteGuid";

/// A VHDX file starts with the signature "vhdxfile" (MS-VHDX 2.2.1).
pub fn detect(file: &ImageFile) -> std::io::Result<Detected> {
    let mut b = [0u8; 8];
    let n = file.read_up_to(header::FILE_IDENTIFIER_OFFSET, &mut b)?;
    Ok(match header::parse_file_identifier_signature(&b[..n]) {
        Ok(()) => Detected::Yes,
        Err(e) => Detected::No(e.to_string()),
    })
}

pub fn open_disk_file(file: ImageFile) -> Result<Arc<dyn DiskFile>> {
    Ok(Arc::new(VhdxFile::from_image(file)?))
}

impl DiskFile for VhdxFile {
    fn path(&self) -> &Path {
        VhdxFile::path(self)
    }

    fn format(&self) -> &'static str {
        "vhdx"
    }

    fn identity(&self) -> Identity {
        Identity {
            field: IDENTITY_FIELD,
            value: braced(&self.header.data_write_guid),
        }
    }

    fn parent(&self) -> Option<ParentRef> {
        let locator = self.parent_locator()?;
        Some(ParentRef {
            hints: locator
                .paths()
                .into_iter()
                .map(|(label, path)| PathHint {
                    label: label.to_string(),
                    path: path.to_string(),
                })
                .collect(),
            identities: locator
                .linkages()
                .unwrap_or_default()
                .iter()
                .map(|g| Identity {
                    field: IDENTITY_FIELD,
                    value: braced(g),
                })
                .collect(),
        })
    }

    fn layer(self: Arc<Self>, _state: usize) -> Arc<dyn Layer> {
        self
    }

    fn modified(&self) -> std::time::SystemTime {
        self.file_metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
    }

    fn info(&self) -> Result<FileInfo> {
        info::file_info(self)
    }
}

impl Layer for VhdxFile {
    fn path(&self) -> &Path {
        VhdxFile::path(self)
    }

    fn virtual_size(&self) -> u64 {
        self.metadata.virtual_size
    }

    fn logical_sector_size(&self) -> u32 {
        self.metadata.logical_sector_size
    }

    fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        let g = &self.geometry;
        let end = offset.checked_add(len).filter(|&e| e <= g.virtual_size);
        let aligned = offset % g.logical_sector_size == 0 && len % g.logical_sector_size == 0;
        let Some(end) = end.filter(|_| aligned) else {
            return Err(Error::OutOfRange {
                offset,
                len,
                size: g.virtual_size,
            });
        };
        let mut pos = offset;
        while pos < end {
            let block = pos / g.block_size;
            let in_block = pos % g.block_size;
            let n = (g.block_size - in_block).min(end - pos);
            self.map_block(block, in_block, n, out).map_err(|e| self.err(e))?;
            pos += n;
        }
        Ok(())
    }

    fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()> {
        self.view
            .read(file_offset, buf, "payload block")
            .map_err(|e| self.err(e))
    }

    fn prefetch(&self, file_offset: u64, len: u64) {
        self.view.file().prefetch(file_offset, len);
    }

    fn data_pieces<'a>(&'a self, file_offset: u64, len: u64, out: &mut Vec<crate::io::Piece<'a>>) -> bool {
        match self.view.plain_piece(file_offset, len) {
            Some(p) => {
                out.push(p);
                true
            }
            None => false,
        }
    }
}
