//! Legacy VHD files (Microsoft Virtual Hard Disk Image Format Specification): fixed,
//! dynamic and differencing disks as Virtual PC, Virtual Server, Hyper-V 2008–2012,
//! Disk2vhd and Azure write them. One module per on-disk structure: [`footer`],
//! [`dynamic_header`], [`parent_locator`], [`bat`], [`sector_bitmap`]. A [`VhdFile`] is
//! one [`Layer`].
//!
//! Rules where the specification is silent or writers disagree:
//!
//! - **Disk size.** The footer's current size, except for disks made by Virtual PC
//!   (creator "vpc ") and old qemu ("qemu"), whose guests saw the CHS geometry's size
//!   (cylinders × heads × sectors × 512), unless the geometry is the maximum
//!   (65535/16/255), which would cut the disk: then the current size. This is qemu's
//!   rule (block/vpc.c), except that qemu also uses the geometry for creators it does
//!   not know ("vs  ", "vbox", ...); here only "vpc " and "qemu" do. The size is
//!   rounded down to whole sectors, as qemu does. `info` shows both sizes and the rule.
//! - **Footer copies.** The footer at the end (512 bytes, or 511 in old files) is used
//!   when it is valid; if it is damaged (no cookie, bad checksum) and the copy at offset
//!   0 of a dynamic or differencing disk is valid, the copy is used with a warning.
//! - **Dynamic disks, clear bitmap bits.** A sector of an allocated block whose bit is
//!   clear reads as zeros, as the specification says. qemu ignores the bitmap and reads
//!   the block's data area; the writers seen (Windows, Disk2vhd, qemu) set every bit of
//!   an allocated block or zero the data, so both read the same on real files.
//! - **Differencing disks.** An unallocated block, and a clear bit, read the parent.
//! - **Parent locators**: see [`parent_locator`].

pub mod bat;
pub mod dynamic_header;
mod error;
pub mod fields;
pub mod footer;
mod info;
pub mod parent_locator;
pub mod sector_bitmap;

use std::path::Path;
use std::sync::Arc;

pub use bat::BatGeometry;
pub use dynamic_header::DynamicHeader;
pub use error::VhdError;
pub use footer::{DiskType, Footer, SizeRule};
pub use parent_locator::LocatorEntry;

use super::probe::Detected;
use super::{DiskFile, FileInfo, Identity, Layer, ParentRef, PathHint, Run, Source};
use crate::bytes::braced;
use crate::cache::Cache;
use crate::io::ImageFile;
use crate::{Error, Result};

/// The footer's cookie, at the end of every VHD and at offset 0 of dynamic and
/// differencing ones.
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
pub const FOOTER_SIZE: u64 = 512;

/// BAT entries are cached in pages of this many (4 KiB).
const BAT_PAGE_ENTRIES: u64 = 1024;
/// BAT pages cached per file: 256 KiB, 65536 blocks (128 GiB at 2 MiB blocks).
const BAT_CACHE_PAGES: usize = 64;
/// Bytes of sector bitmaps cached per file (at most [`BITMAP_CACHE_MAX`] bitmaps).
const BITMAP_CACHE_BYTES: u64 = 1 << 20;
const BITMAP_CACHE_MAX: u64 = 2048;

/// The field a child's dynamic header names its parent by.
const IDENTITY_FIELD: &str = "UUID";

/// Which footer copy was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FooterCopy {
    /// The 512-byte footer at the end.
    End,
    /// A 511-byte footer at the end (files from before Virtual PC 2004).
    End511,
    /// The copy at offset 0: the one at the end is damaged.
    Start,
}

impl FooterCopy {
    pub fn name(self) -> &'static str {
        match self {
            FooterCopy::End => "end",
            FooterCopy::End511 => "end_511",
            FooterCopy::Start => "start",
        }
    }
}

/// A parent locator entry as opening found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub entry: LocatorEntry,
    /// The decoded path, or why the entry is not used.
    pub path: std::result::Result<String, String>,
}

/// What a dynamic or differencing disk has past its footer.
#[derive(Debug)]
pub struct Sparse {
    pub header: DynamicHeader,
    pub geometry: BatGeometry,
    pub locators: Vec<Locator>,
    bat_pages: Cache<u64, Arc<[u32]>>,
    bitmaps: Cache<u64, Arc<[u8]>>,
}

/// One VHD file, opened read-only.
#[derive(Debug)]
pub struct VhdFile {
    file: ImageFile,
    pub footer: Footer,
    pub footer_copy: FooterCopy,
    /// The virtual disk size and the rule that chose it.
    pub size: u64,
    pub size_rule: SizeRule,
    /// `None` for a fixed disk.
    pub sparse: Option<Sparse>,
    /// What opening tolerated: a damaged footer, unusable parent locators.
    pub warnings: Vec<String>,
}

impl VhdFile {
    /// Open `path` read-only and check every structure needed to read it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_image(ImageFile::open(path)?)
    }

    pub fn from_image(file: ImageFile) -> Result<Self> {
        let path = file.path().to_path_buf();
        let f = Self::from_file(file).map_err(|e| Error::vhd(&path, e))?;
        for w in &f.warnings {
            log::warn!("{}: {w}", path.display());
        }
        Ok(f)
    }

    fn from_file(file: ImageFile) -> Result<Self, VhdError> {
        let len = file.len();
        let mut warnings = Vec::new();
        let (footer, footer_copy) = choose_footer(&file, &mut warnings)?;
        let (size, size_rule) = footer.disk_size();
        if size == 0 {
            return Err(VhdError::corrupt(
                "footer",
                len.saturating_sub(FOOTER_SIZE),
                format!("the disk size is 0 (by {})", size_rule.describe()),
            ));
        }
        let sparse = match footer.disk_type {
            DiskType::Fixed => {
                let footer_len = if footer_copy == FooterCopy::End511 { 511 } else { 512 };
                if size > len.saturating_sub(footer_len) {
                    return Err(VhdError::Truncated {
                        structure: "fixed disk data",
                        offset: 0,
                        len: size,
                        file_len: len,
                    });
                }
                None
            }
            DiskType::Dynamic | DiskType::Differencing => {
                let at = footer.data_offset;
                let b = read_vec(&file, at, dynamic_header::HEADER_SIZE, "dynamic header")?;
                let header = dynamic_header::parse_dynamic_header(&b, at)?;
                let geometry = BatGeometry::new(
                    size,
                    header.block_size,
                    header.max_table_entries,
                    header.table_offset,
                    at,
                    len,
                )?;
                let locators = if footer.disk_type == DiskType::Differencing {
                    read_locators(&file, &header, &mut warnings)?
                } else {
                    Vec::new()
                };
                let bitmap_slots = (BITMAP_CACHE_BYTES / geometry.bitmap_size).clamp(1, BITMAP_CACHE_MAX);
                Some(Sparse {
                    header,
                    geometry,
                    locators,
                    bat_pages: Cache::new(BAT_CACHE_PAGES),
                    bitmaps: Cache::new(bitmap_slots as usize),
                })
            }
        };
        Ok(VhdFile {
            file,
            footer,
            footer_copy,
            size,
            size_rule,
            sparse,
            warnings,
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    pub fn disk_type(&self) -> DiskType {
        self.footer.disk_type
    }

    fn err(&self, e: VhdError) -> Error {
        Error::vhd(self.path(), e)
    }

    /// The BAT entry of `block` (a sector number, or [`bat::UNALLOCATED`]), through the
    /// page cache. `None` for a fixed disk.
    pub fn bat_entry(&self, block: u64) -> Result<Option<u32>, VhdError> {
        let Some(s) = &self.sparse else {
            return Ok(None);
        };
        let g = &s.geometry;
        if block >= u64::from(g.max_table_entries) {
            return Err(VhdError::corrupt(
                "BAT",
                g.table_offset,
                format!("block {block} is past the {} entries of the table", g.max_table_entries),
            ));
        }
        let page = block / BAT_PAGE_ENTRIES;
        let entries = s.bat_pages.get_or_try_insert(page, || {
            let first = page * BAT_PAGE_ENTRIES;
            let count = BAT_PAGE_ENTRIES.min(u64::from(g.max_table_entries) - first);
            let b = read_vec(&self.file, g.entry_offset(first), count as usize * 4, "BAT")?;
            Ok::<Arc<[u32]>, VhdError>(
                b.chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        })?;
        let slot = (block % BAT_PAGE_ENTRIES) as usize;
        entries.get(slot).copied().map(Some).ok_or_else(|| {
            VhdError::corrupt(
                "BAT",
                g.entry_offset(block),
                format!("entry of block {block} was not read"),
            )
        })
    }

    /// Count the allocated blocks among those the disk uses, streaming the BAT.
    pub fn allocated_blocks(&self) -> Result<u64> {
        let Some(s) = &self.sparse else {
            return Ok(0);
        };
        let g = &s.geometry;
        let mut count = 0;
        let mut block = 0;
        while block < g.blocks {
            let n = (64 * 1024).min(g.blocks - block);
            let b = read_vec(&self.file, g.entry_offset(block), n as usize * 4, "BAT").map_err(|e| self.err(e))?;
            count += b.chunks_exact(4).filter(|c| c != &[0xFF; 4]).count() as u64;
            block += n;
        }
        Ok(count)
    }

    fn map_block(&self, s: &Sparse, block: u64, in_block: u64, len: u64, out: &mut Vec<Run>) -> Result<(), VhdError> {
        let g = &s.geometry;
        let missing = if self.footer.disk_type == DiskType::Differencing {
            Source::Parent
        } else {
            Source::Zero
        };
        let sector = self.bat_entry(block)?.unwrap_or(bat::UNALLOCATED);
        if sector == bat::UNALLOCATED {
            out.push(Run { len, source: missing });
            return Ok(());
        }
        let (bitmap_at, data_at) = g.block_extent(block, sector, in_block + len)?;
        let bits = s.bitmaps.get_or_try_insert(block, || {
            read_vec(&self.file, bitmap_at, g.bitmap_size as usize, "sector bitmap").map(Arc::from)
        })?;
        let mut pos = data_at + in_block;
        for (present, sectors) in sector_bitmap::runs(&bits, in_block / 512, len / 512) {
            let n = sectors * 512;
            let source = if present {
                Source::Data { file_offset: pos }
            } else {
                missing
            };
            out.push(Run { len: n, source });
            pos += n;
        }
        Ok(())
    }

    /// The hints to the parent, most trusted first: W2ru, W2ku, Wi2r, Wi2k, then the
    /// parent's name from the dynamic header.
    pub fn parent_hints(&self) -> Vec<PathHint> {
        let Some(s) = self
            .sparse
            .as_ref()
            .filter(|_| self.disk_type() == DiskType::Differencing)
        else {
            return Vec::new();
        };
        let mut hints = Vec::new();
        for code in parent_locator::PATH_CODES {
            for l in s.locators.iter().filter(|l| &l.entry.code == code) {
                if let Ok(p) = &l.path {
                    hints.push(PathHint {
                        label: l.entry.code_text(),
                        path: p.clone(),
                    });
                }
            }
        }
        if !s.header.parent_name.is_empty() {
            hints.push(PathHint {
                label: "parent_name".into(),
                path: s.header.parent_name.clone(),
            });
        }
        hints
    }
}

fn read_vec(file: &ImageFile, offset: u64, len: usize, structure: &'static str) -> Result<Vec<u8>, VhdError> {
    if offset.checked_add(len as u64).is_none_or(|end| end > file.len()) {
        return Err(VhdError::Truncated {
            structure,
            offset,
            len: len as u64,
            file_len: file.len(),
        });
    }
    let mut b = vec![0u8; len];
    file.read_exact_at(offset, &mut b).map_err(|source| VhdError::Io {
        offset,
        len: len as u64,
        source,
    })?;
    Ok(b)
}

/// The footer at the end (512, else 511 bytes), else the copy at offset 0 of a dynamic
/// or differencing disk, with a warning. With no usable copy, the end footer's error.
fn choose_footer(file: &ImageFile, warnings: &mut Vec<String>) -> Result<(Footer, FooterCopy), VhdError> {
    let len = file.len();
    let end = |size: usize| -> Result<Footer, VhdError> {
        let at = len.checked_sub(size as u64).ok_or(VhdError::Truncated {
            structure: "footer",
            offset: 0,
            len: size as u64,
            file_len: len,
        })?;
        footer::parse_footer(&read_vec(file, at, size, "footer")?, at)
    };
    let end_error = match end(footer::FOOTER_SIZE) {
        Ok(f) => return Ok((f, FooterCopy::End)),
        Err(e512) => match end(footer::OLD_FOOTER_SIZE) {
            Ok(f) => return Ok((f, FooterCopy::End511)),
            // A 511-byte footer is only meant when the 512-byte one has no cookie.
            Err(e511) if matches!(e512, VhdError::Cookie { .. }) && !matches!(e511, VhdError::Cookie { .. }) => e511,
            Err(_) => e512,
        },
    };
    let start = read_vec(file, 0, footer::FOOTER_SIZE, "footer copy").and_then(|b| footer::parse_footer(&b, 0));
    match start {
        Ok(f) if f.disk_type != DiskType::Fixed => {
            warnings.push(format!(
                "the footer at the end is damaged ({end_error}); using its copy at offset 0"
            ));
            Ok((f, FooterCopy::Start))
        }
        _ => Err(end_error),
    }
}

/// Read and decode the path of every used locator; damaged ones become warnings. An
/// error only if some locator is damaged and nothing is left to find the parent by.
fn read_locators(file: &ImageFile, h: &DynamicHeader, warnings: &mut Vec<String>) -> Result<Vec<Locator>, VhdError> {
    let mut out = Vec::new();
    let mut first_error = None;
    for entry in h.locators.iter().filter(|e| e.is_used()) {
        let path = if entry.encoding().is_none() {
            Err("not a Windows path: ignored".to_string())
        } else {
            let decoded = entry.check_extent(file.len()).and_then(|()| {
                let data = read_vec(
                    file,
                    entry.data_offset,
                    entry.data_length as usize,
                    "parent locator data",
                )?;
                entry.decode_path(&data)
            });
            decoded.map_err(|e| {
                warnings.push(format!("{e}; the entry is skipped"));
                let text = e.to_string();
                first_error.get_or_insert(e);
                text
            })
        };
        out.push(Locator {
            entry: entry.clone(),
            path,
        });
    }
    let usable = out.iter().any(|l| l.path.is_ok()) || !h.parent_name.is_empty();
    match first_error {
        Some(e) if !usable => Err(e),
        _ => Ok(out),
    }
}

/// A VHD has its footer in the last 512 bytes (511 in files from before Virtual PC
/// 2004), and dynamic and differencing disks a copy at offset 0.
pub fn detect(file: &ImageFile) -> std::io::Result<Detected> {
    let len = file.len();
    let mut at_end = [0u8; 8];
    let mut places = vec![0u64];
    places.extend(
        [FOOTER_SIZE, FOOTER_SIZE - 1]
            .iter()
            .filter_map(|n| len.checked_sub(*n)),
    );
    for at in places {
        if file.read_up_to(at, &mut at_end)? == 8 && &at_end == FOOTER_COOKIE {
            return Ok(Detected::Yes);
        }
    }
    Ok(Detected::No(
        "not a VHD file: no \"conectix\" footer at its end or copy at offset 0".into(),
    ))
}

pub fn open_disk_file(file: ImageFile) -> Result<Arc<dyn DiskFile>> {
    Ok(Arc::new(VhdFile::from_image(file)?))
}

impl DiskFile for VhdFile {
    fn path(&self) -> &Path {
        VhdFile::path(self)
    }

    fn format(&self) -> &'static str {
        "vhd"
    }

    fn identity(&self) -> Identity {
        Identity {
            field: IDENTITY_FIELD,
            value: braced(&self.footer.unique_id),
        }
    }

    fn parent(&self) -> Option<ParentRef> {
        if self.disk_type() != DiskType::Differencing {
            return None;
        }
        let s = self.sparse.as_ref()?;
        Some(ParentRef {
            hints: self.parent_hints(),
            identities: vec![Identity {
                field: IDENTITY_FIELD,
                value: braced(&s.header.parent_unique_id),
            }],
        })
    }

    fn layer(self: Arc<Self>, _state: usize) -> Arc<dyn Layer> {
        self
    }

    fn modified(&self) -> std::time::SystemTime {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
    }

    /// Hyper-V warns when the parent's modification time is not the time stamp its
    /// child recorded: the parent may have changed since.
    fn parent_warnings(&self, parent: &dyn DiskFile) -> Vec<String> {
        let Some(s) = self
            .sparse
            .as_ref()
            .filter(|_| self.disk_type() == DiskType::Differencing)
        else {
            return Vec::new();
        };
        let recorded = s.header.parent_time_stamp;
        let modified = parent.modified();
        if footer::to_vhd_seconds(modified) == Some(recorded) {
            return Vec::new();
        }
        vec![format!(
            "the parent time stamp in the dynamic header is {} but the parent {} was modified at {}",
            footer::vhd_time_text(recorded),
            parent.path().display(),
            humantime::format_rfc3339_seconds(modified)
        )]
    }

    fn info(&self) -> Result<FileInfo> {
        info::file_info(self)
    }
}

impl Layer for VhdFile {
    fn path(&self) -> &Path {
        VhdFile::path(self)
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn logical_sector_size(&self) -> u32 {
        512
    }

    fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        let end = offset.checked_add(len).filter(|&e| e <= self.size);
        let aligned = offset % 512 == 0 && len % 512 == 0;
        let Some(end) = end.filter(|_| aligned) else {
            return Err(Error::OutOfRange {
                offset,
                len,
                size: self.size,
            });
        };
        let Some(s) = &self.sparse else {
            if len > 0 {
                out.push(Run {
                    len,
                    source: Source::Data { file_offset: offset },
                });
            }
            return Ok(());
        };
        let bs = s.geometry.block_size;
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let in_block = pos % bs;
            let n = (bs - in_block).min(end - pos);
            self.map_block(s, block, in_block, n, out).map_err(|e| self.err(e))?;
            pos += n;
        }
        Ok(())
    }

    fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        let io = |source| VhdError::Io {
            offset: file_offset,
            len,
            source,
        };
        if file_offset.checked_add(len).is_none_or(|end| end > self.file.len()) {
            return Err(self.err(VhdError::Truncated {
                structure: "block data",
                offset: file_offset,
                len,
                file_len: self.file.len(),
            }));
        }
        self.file.read_exact_at(file_offset, buf).map_err(|e| self.err(io(e)))
    }

    fn prefetch(&self, file_offset: u64, len: u64) {
        self.file.prefetch(file_offset, len);
    }

    fn data_pieces<'a>(&'a self, file_offset: u64, len: u64, out: &mut Vec<crate::io::Piece<'a>>) -> bool {
        // Block data is stored as it is: a piece of the file wherever the file holds it
        // (else `read_data` reports the truncation).
        if file_offset.checked_add(len).is_none_or(|end| end > self.file.len()) {
            return false;
        }
        out.push(crate::io::Piece::File {
            file: &self.file,
            offset: file_offset,
            len,
        });
        true
    }
}

#[cfg(test)]
mod tests;
