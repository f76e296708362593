//! VMware VMDK disks: the descriptor ([`descriptor`]) and its extents, hosted sparse and
//! streamOptimized ([`sparse`]), flat, zero, ESXi vmfsSparse ([`cowd`]) and SESparse
//! ([`sesparse`]). A [`VmdkFile`] is one disk: its descriptor (a text file, or the one
//! embedded in a monolithicSparse/streamOptimized file) and every extent it names, as
//! one [`Layer`].
//!
//! Rules where the specification is silent or writers disagree:
//!
//! - **What is a disk.** The descriptor is the disk file: a text descriptor, or a
//!   hosted sparse file with an embedded one (monolithicSparse, streamOptimized). An
//!   embedded descriptor's extent line is not followed: the file itself is the one
//!   extent and its header's capacity the size (qemu's rule; a renamed file still
//!   opens). Extent files without a descriptor (`-s001.vmdk`, `-flat.vmdk`,
//!   `-delta.vmdk`, `-sesparse.vmdk`; qemu's split extents have an empty descriptor
//!   area) are not disks: opening one alone is an error that
//!   says so (qemu opens a lone sparse extent as a disk of its own, but it has no CID
//!   and no parent, so a delta would read with zeros where its parent's data belongs).
//!   In a chain scan such files are skipped like any file that is not a disk, so a
//!   directory holding a chain yields exactly its descriptors as members.
//! - **Identity.** A disk's identity is its descriptor's `CID` (8 lower-case hex
//!   digits); a child names its parent by `parentCID` (`ffffffff`: no parent) and
//!   `parentFileNameHint` (relative, Windows absolute or `/vmfs/volumes/...`: each is
//!   tried, then its file name beside the child). A parentCID without a hint is an
//!   error.
//! - **Extents.** In descriptor order, each `SECTORS` long. A missing extent file is an
//!   error naming it (a relative name is taken from the descriptor's directory; a name
//!   with directories that does not exist there is also tried as a bare name beside the
//!   descriptor). A flat extent file shorter than its range is an error, not zeros. A
//!   sparse extent whose capacity is smaller than its line is an error; a larger one is
//!   read up to its line's size. `ZERO` extents read as zeros. A `NOACCESS` extent's
//!   range fails to read (EIO): VMware withholds it, and zeros would be wrong bytes.
//!   Raw device mappings (`VMFSRDM`, `VMFSRAW`, createType `vmfsRawDeviceMap`, ...)
//!   are refused: their data is on a LUN, not in a file.
//! - **Unallocated grains** read from the parent (zeros without one).
//! - **Addressing several files.** [`Source::Data`]'s `file_offset` packs the extent
//!   index into bits 48..63 and the byte offset in that extent's file into bits 0..48;
//!   for a compressed extent bit 63 is set and the low bits are the offset inside the
//!   extent's range of the virtual disk (its grains are inflated on read). Extent files
//!   and extents are limited to 2^48 bytes (256 TiB; VMFS's largest file is 62 TB) and
//!   to 32767 extents.
//! - **Times.** A state's time is the newest modification time of its descriptor and
//!   extent files: writes go to the extents, the descriptor changes only with the CID.

pub mod cowd;
pub mod descriptor;
mod error;
pub mod fields;
mod info;
pub mod sesparse;
pub mod sparse;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

pub use descriptor::{Access, Descriptor, ExtentLine, ExtentType};
pub use error::VmdkError;
pub use sparse::SparseHeader;

use super::probe::Detected;
use super::{DiskFile, FileInfo, Identity, Layer, ParentRef, PathHint, Run, Source};
use crate::cache::Cache;
use crate::io::{ImageFile, Piece};
use crate::{Error, Result};

/// The field a child's descriptor names its parent by.
pub const IDENTITY_FIELD: &str = "CID";

/// `file_offset` packing (see the module rules).
const COMPRESSED_BIT: u64 = 1 << 63;
const INDEX_SHIFT: u32 = 48;
const OFFSET_MASK: u64 = (1 << INDEX_SHIFT) - 1;
pub const MAX_EXTENTS: usize = 0x7fff;

/// Table pages and grain tables cached per disk (GTs of 512 entries: 1 MiB).
const TABLE_CACHE: usize = 512;
/// Bytes of inflated grains cached per disk.
const GRAIN_CACHE_BYTES: u64 = 16 << 20;
/// Grain directory entries read and cached at once.
const GD_PAGE: u64 = 1024;

/// A text descriptor larger than this is not one.
const MAX_TEXT_DESCRIPTOR: u64 = descriptor::MAX_DESCRIPTOR as u64;

/// A grain table as read: its byte offset in the file and its entries.
type GrainTable = (u64, Arc<[u32]>);

/// One extent of a disk.
#[derive(Debug)]
pub struct Extent {
    pub line: ExtentLine,
    /// The extent file, resolved (`None` for ZERO and NOACCESS extents).
    pub path: Option<PathBuf>,
    /// Where it starts in the virtual disk, and its length, in bytes.
    pub start: u64,
    pub len: u64,
    pub kind: ExtentKind,
}

#[derive(Debug)]
pub enum ExtentKind {
    /// Raw bytes from `offset` of `file` (FLAT, VMFS).
    Flat {
        file: ImageFile,
        offset: u64,
    },
    Zero,
    NoAccess,
    /// Hosted sparse or streamOptimized (`KDMV`).
    Sparse(Box<HostedSparse>),
    /// ESXi vmfsSparse (`COWD`).
    Cowd(Box<cowd::CowdExtent>),
    /// ESXi SESparse.
    SeSparse(Box<sesparse::SeSparseExtent>),
}

impl ExtentKind {
    fn file(&self) -> Option<&ImageFile> {
        match self {
            ExtentKind::Flat { file, .. } => Some(file),
            ExtentKind::Sparse(s) => Some(&s.file),
            ExtentKind::Cowd(c) => Some(&c.file),
            ExtentKind::SeSparse(s) => Some(&s.file),
            ExtentKind::Zero | ExtentKind::NoAccess => None,
        }
    }
}

/// A hosted sparse extent file.
#[derive(Debug)]
pub struct HostedSparse {
    pub file: ImageFile,
    /// The header at offset 0.
    pub header0: SparseHeader,
    /// The header used: the one at 0, or the stream footer's copy.
    pub header: SparseHeader,
    /// Set once the redundant grain directory had to be used (warned once).
    redundant_used: AtomicBool,
}

/// One VMDK disk, opened read-only: its descriptor and its extents.
#[derive(Debug)]
pub struct VmdkFile {
    path: PathBuf,
    pub descriptor: Descriptor,
    /// The header of the file holding the descriptor, if it is embedded.
    pub embedded_in: Option<SparseHeader>,
    pub extents: Vec<Extent>,
    size: u64,
    tables: Cache<(u32, u8, u64), Arc<[u32]>>,
    tables64: Cache<(u32, u8, u64), Arc<[u64]>>,
    grains: Cache<(u32, u64), Arc<[u8]>>,
    pub warnings: Vec<String>,
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Descriptor,
    Sparse,
    Cowd,
    SeSparse,
}

/// Recognise a VMDK file by its first bytes.
pub fn kind_of(head: &[u8], file_len: u64) -> Option<Kind> {
    if head.starts_with(sparse::MAGIC) {
        Some(Kind::Sparse)
    } else if head.starts_with(cowd::MAGIC) {
        Some(Kind::Cowd)
    } else if head.starts_with(&sesparse::CONST_MAGIC.to_le_bytes()) {
        Some(Kind::SeSparse)
    } else if file_len <= MAX_TEXT_DESCRIPTOR && descriptor::looks_like_descriptor(head) {
        Some(Kind::Descriptor)
    } else {
        None
    }
}

pub fn detect(file: &ImageFile) -> std::io::Result<Detected> {
    let mut head = [0u8; 512];
    let n = file.read_up_to(0, &mut head)?;
    Ok(match kind_of(&head[..n], file.len()) {
        Some(_) => Detected::Yes,
        None => Detected::No(
            "not a VMDK file: no \"KDMV\", \"COWD\" or SESparse magic at offset 0 and no \"# Disk DescriptorFile\" text".into(),
        ),
    })
}

pub fn open_disk_file(file: ImageFile) -> Result<Arc<dyn DiskFile>> {
    Ok(Arc::new(VmdkFile::from_image(file)?))
}

/// Resolve an extent's file name against the descriptor's directory.
fn extent_path(dir: &Path, name: &str) -> PathBuf {
    let direct = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        dir.join(name)
    };
    if direct.is_file() {
        return direct;
    }
    match name.rsplit(['/', '\\']).next().filter(|b| !b.is_empty() && *b != name) {
        Some(base) if dir.join(base).is_file() => dir.join(base),
        _ => direct,
    }
}

impl VmdkFile {
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_image(ImageFile::open(path)?)
    }

    pub fn from_image(file: ImageFile) -> Result<Self> {
        let path = file.path().to_path_buf();
        let f = Self::from_file(file)?;
        for w in &f.warnings {
            log::warn!("{}: {w}", path.display());
        }
        Ok(f)
    }

    fn from_file(file: ImageFile) -> Result<Self> {
        let path = file.path().to_path_buf();
        let e = |source| Error::vmdk(&path, source);
        let mut head = [0u8; 512];
        let n = file.read_up_to(0, &mut head).map_err(|source| {
            e(VmdkError::Io {
                offset: 0,
                len: 512,
                source,
            })
        })?;
        let mut warnings = Vec::new();
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        match kind_of(&head[..n], file.len()) {
            Some(Kind::Sparse) => {
                let (h0, h) = sparse::read_headers(&file).map_err(e)?;
                // qemu's split extents reserve a descriptor area and leave it empty.
                let bytes = sparse::read_embedded_descriptor(&file, &h0)
                    .map_err(e)?
                    .filter(|b| b.iter().any(|c| !c.is_ascii_whitespace() && *c != 0));
                let Some(bytes) = bytes else {
                    return Err(e(VmdkError::ExtentOnly { kind: "hosted sparse" }));
                };
                let descriptor = descriptor::parse_bytes(&bytes).map_err(e)?;
                check_parent_keys(&descriptor).map_err(e)?;
                let len = h.capacity_bytes();
                let listed = descriptor
                    .extents
                    .iter()
                    .fold(0u64, |a, x| a.saturating_add(x.sectors * 512));
                if listed != len || descriptor.extents.len() != 1 {
                    warnings.push(format!(
                        "the embedded descriptor lists {} extent(s) of {listed} bytes; the file itself, {len} bytes by its header, is read (qemu's rule)",
                        descriptor.extents.len()
                    ));
                }
                if len == 0 {
                    return Err(e(VmdkError::corrupt("sparse extent header", 0, "the capacity is 0")));
                }
                let line = ExtentLine {
                    line: descriptor.extents[0].line,
                    access: descriptor.extents[0].access,
                    sectors: h.capacity,
                    kind: ExtentType::Sparse,
                    file: path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    offset: 0,
                };
                let sparse = HostedSparse::new(file, h0.clone(), h).map_err(e)?;
                let extents = vec![Extent {
                    line,
                    path: Some(path.clone()),
                    start: 0,
                    len,
                    kind: ExtentKind::Sparse(Box::new(sparse)),
                }];
                Self::assemble(path, descriptor, Some(h0), extents, warnings)
            }
            Some(Kind::Cowd) => Err(e(VmdkError::ExtentOnly {
                kind: "vmfsSparse (COWD)",
            })),
            Some(Kind::SeSparse) => Err(e(VmdkError::ExtentOnly { kind: "SESparse" })),
            Some(Kind::Descriptor) => {
                let bytes = fields::read_vec(&file, 0, file.len() as usize, "descriptor").map_err(e)?;
                let descriptor = descriptor::parse_bytes(&bytes).map_err(e)?;
                check_parent_keys(&descriptor).map_err(e)?;
                if descriptor.extents.len() > MAX_EXTENTS {
                    return Err(e(VmdkError::Descriptor(format!(
                        "{} extents; ckptfs reads at most {MAX_EXTENTS}",
                        descriptor.extents.len()
                    ))));
                }
                let mut extents = Vec::with_capacity(descriptor.extents.len());
                let mut start = 0u64;
                for line in &descriptor.extents {
                    let len = line.sectors * 512;
                    let ext = open_extent(&path, &dir, line, start, len, &mut warnings)?;
                    start = start.checked_add(len).filter(|s| *s <= u64::MAX / 2).ok_or_else(|| {
                        e(VmdkError::line(
                            line.line,
                            "the extents add up to more than a disk can hold",
                        ))
                    })?;
                    extents.push(ext);
                }
                Self::assemble(path, descriptor, None, extents, warnings)
            }
            None => Err(e(VmdkError::corrupt(
                "descriptor",
                0,
                "neither a descriptor nor a sparse extent",
            ))),
        }
    }

    fn assemble(
        path: PathBuf,
        descriptor: Descriptor,
        embedded_in: Option<SparseHeader>,
        extents: Vec<Extent>,
        warnings: Vec<String>,
    ) -> Result<Self> {
        let size = extents.iter().map(|x| x.len).sum();
        let max_grain = extents
            .iter()
            .filter_map(|x| match &x.kind {
                ExtentKind::Sparse(s) if s.header.compressed() => Some(s.header.grain_bytes()),
                _ => None,
            })
            .max()
            .unwrap_or(64 << 10);
        for x in &extents {
            if x.len > OFFSET_MASK || x.kind.file().is_some_and(|f| f.len() > OFFSET_MASK) {
                return Err(Error::vmdk(
                    &path,
                    VmdkError::Unsupported(format!(
                        "descriptor line {}: an extent or extent file larger than 2^48 bytes",
                        x.line.line
                    )),
                ));
            }
        }
        Ok(VmdkFile {
            path,
            descriptor,
            embedded_in,
            extents,
            size,
            tables: Cache::new(TABLE_CACHE),
            tables64: Cache::new(TABLE_CACHE),
            grains: Cache::new((GRAIN_CACHE_BYTES / max_grain).clamp(2, 256) as usize),
            warnings,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn virtual_size(&self) -> u64 {
        self.size
    }

    fn extent_err(&self, idx: usize, e: VmdkError) -> Error {
        let p = self
            .extents
            .get(idx)
            .and_then(|x| x.path.clone())
            .unwrap_or_else(|| self.path.clone());
        Error::vmdk(p, e)
    }

    /// Map `rel..rel + len` of extent `idx`.
    fn map_extent(&self, idx: usize, rel: u64, len: u64, out: &mut Vec<Run>) -> Result<(), VmdkError> {
        let x = &self.extents[idx];
        let tag = (idx as u64) << INDEX_SHIFT;
        match &x.kind {
            ExtentKind::Flat { offset, .. } => push(
                out,
                len,
                Source::Data {
                    file_offset: tag | (offset + rel),
                },
            ),
            ExtentKind::Zero => push(out, len, Source::Zero),
            ExtentKind::NoAccess => return Err(VmdkError::NoAccess { line: x.line.line }),
            ExtentKind::Sparse(s) => {
                let h = &s.header;
                let gb = h.grain_bytes();
                let mut pos = rel;
                while pos < rel + len {
                    let grain = pos / gb;
                    let in_grain = pos % gb;
                    let n = (gb - in_grain).min(rel + len - pos);
                    let source = match self.hosted_grain(idx, s, grain)? {
                        sparse::Grain::Unallocated => Source::Parent,
                        sparse::Grain::Zero => Source::Zero,
                        sparse::Grain::At(_) if h.compressed() => Source::Data {
                            file_offset: COMPRESSED_BIT | tag | pos,
                        },
                        sparse::Grain::At(sector) => Source::Data {
                            file_offset: tag | (sector * 512 + in_grain),
                        },
                    };
                    push(out, n, source);
                    pos += n;
                }
            }
            ExtentKind::Cowd(c) => c.map(self, idx, rel, len, tag, out)?,
            ExtentKind::SeSparse(s) => s.map(self, idx, rel, len, tag, out)?,
        }
        Ok(())
    }

    /// The grain entry of `grain` in a hosted sparse extent: the primary walk, else the
    /// redundant one (see [`sparse`]).
    fn hosted_grain(&self, idx: usize, s: &HostedSparse, grain: u64) -> Result<sparse::Grain, VmdkError> {
        match self.hosted_walk(idx, s, sparse::Copy::Primary, grain) {
            Ok(g) => Ok(g),
            Err(e) if s.header.redundant().is_some() => {
                match self.hosted_walk(idx, s, sparse::Copy::Redundant, grain) {
                    Ok(g) => {
                        if !s.redundant_used.swap(true, Ordering::Relaxed) {
                            log::warn!(
                                "{}: the grain directory walk is damaged ({e}); using the redundant grain directory",
                                s.file.path().display()
                            );
                        }
                        Ok(g)
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Grain table `table` of `copy`, through the cache; `None` if it is not allocated.
    fn hosted_table(
        &self,
        idx: usize,
        s: &HostedSparse,
        copy: sparse::Copy,
        table: u64,
    ) -> Result<Option<GrainTable>, VmdkError> {
        let h = &s.header;
        let (gd_tag, gt_tag) = match copy {
            sparse::Copy::Primary => (0u8, 2u8),
            sparse::Copy::Redundant => (1, 3),
        };
        let page = table / GD_PAGE;
        let entries = self.tables.get_or_try_insert((idx as u32, gd_tag, page), || {
            let first = page * GD_PAGE;
            let count = GD_PAGE.min(h.gd_entries() - first);
            sparse::read_gd(&s.file, h, copy, first, count).map(Arc::from)
        })?;
        let entry = entries[(table % GD_PAGE) as usize];
        let gd_at = sparse::gd_sector(h, copy).unwrap_or(0).saturating_mul(512) + table * 4;
        let Some(gt_at) = sparse::check_gd_entry(h, s.file.len(), table, entry, gd_at)? else {
            return Ok(None);
        };
        let gt = self.tables.get_or_try_insert((idx as u32, gt_tag, gt_at), || {
            sparse::read_gt(&s.file, h, gt_at).map(Arc::from)
        })?;
        Ok(Some((gt_at, gt)))
    }

    fn hosted_walk(
        &self,
        idx: usize,
        s: &HostedSparse,
        copy: sparse::Copy,
        grain: u64,
    ) -> Result<sparse::Grain, VmdkError> {
        let h = &s.header;
        let n = u64::from(h.num_gtes_per_gt);
        let table = grain / n;
        if grain >= h.grains() {
            return Err(VmdkError::corrupt(
                "grain directory",
                h.gd_offset.saturating_mul(512),
                format!("grain {grain} is past the capacity"),
            ));
        }
        let Some((gt_at, gt)) = self.hosted_table(idx, s, copy, table)? else {
            return Ok(sparse::Grain::Unallocated);
        };
        let slot = grain % n;
        sparse::check_grain(h, s.file.len(), grain, gt[slot as usize], gt_at + slot * 4)
    }

    /// Allocated grains of a hosted sparse extent, for `info`: grain tables that lie
    /// one after another are read in one go (up to 1 MiB) without the cache, so that a
    /// 62 TB disk is counted in seconds; a damaged walk falls back to the redundant
    /// grain directory grain by grain, as reads do.
    fn hosted_allocated(&self, idx: usize, s: &HostedSparse) -> Result<u64, VmdkError> {
        let h = &s.header;
        let n = u64::from(h.num_gtes_per_gt);
        let gt_len = n * 4;
        let file_len = s.file.len();
        let tables = h.gd_entries();
        let mut count = 0;
        let slow = |table: u64| -> Result<u64, VmdkError> {
            let mut c = 0;
            for grain in table * n..((table + 1) * n).min(h.grains()) {
                if let sparse::Grain::At(_) = self.hosted_grain(idx, s, grain)? {
                    c += 1;
                }
            }
            Ok(c)
        };
        let mut table = 0;
        while table < tables {
            let page_first = table / GD_PAGE * GD_PAGE;
            let page_end = (page_first + GD_PAGE).min(tables);
            let Ok(entries) = sparse::read_gd(&s.file, h, sparse::Copy::Primary, page_first, page_end - page_first)
            else {
                for t in table..page_end {
                    count += slow(t)?;
                }
                table = page_end;
                continue;
            };
            let entry = |t: u64| u64::from(entries[(t - page_first) as usize]) * 512;
            let at = entry(table);
            if at == 0 {
                table += 1;
                continue;
            }
            let mut end = table + 1;
            while end < page_end && (end - table) * gt_len < (1 << 20) && entry(end) == at + (end - table) * gt_len {
                end += 1;
            }
            let len = (end - table) * gt_len;
            let bytes = if at.checked_add(len).is_some_and(|e| e <= file_len) {
                fields::read_vec(&s.file, at, len as usize, "grain table").ok()
            } else {
                None
            };
            let Some(bytes) = bytes else {
                for t in table..end {
                    count += slow(t)?;
                }
                table = end;
                continue;
            };
            for (k, gte) in fields::u32_entries(&bytes).into_iter().enumerate() {
                let grain = table * n + k as u64;
                if grain >= h.grains() {
                    break;
                }
                let g = match sparse::check_grain(h, file_len, grain, gte, at + k as u64 * 4) {
                    Ok(g) => g,
                    Err(_) => self.hosted_grain(idx, s, grain)?,
                };
                if let sparse::Grain::At(_) = g {
                    count += 1;
                }
            }
            table = end;
        }
        Ok(count)
    }

    /// Read `buf.len()` bytes of a compressed extent from `rel` in its range.
    fn read_compressed(&self, idx: usize, s: &HostedSparse, rel: u64, buf: &mut [u8]) -> Result<(), VmdkError> {
        let gb = s.header.grain_bytes();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = rel + done as u64;
            let grain = pos / gb;
            let in_grain = (pos % gb) as usize;
            let n = (gb as usize - in_grain).min(buf.len() - done);
            let sparse::Grain::At(sector) = self.hosted_grain(idx, s, grain)? else {
                return Err(VmdkError::corrupt(
                    "grain table",
                    0,
                    format!("grain {grain} is no longer stored (read of data the map did not place)"),
                ));
            };
            let data = self.grains.get_or_try_insert((idx as u32, grain), || {
                sparse::inflate_grain(&s.file, &s.header, grain, sector).map(Arc::<[u8]>::from)
            })?;
            buf[done..done + n].copy_from_slice(&data[in_grain..in_grain + n]);
            done += n;
        }
        Ok(())
    }

    /// Split a packed `file_offset`: (compressed, extent index, offset).
    fn unpack(&self, file_offset: u64) -> Result<(bool, usize, u64)> {
        let idx = ((file_offset & !COMPRESSED_BIT) >> INDEX_SHIFT) as usize;
        if idx >= self.extents.len() {
            return Err(Error::vmdk(
                &self.path,
                VmdkError::corrupt("extent", file_offset, "no such extent (a read the map did not place)"),
            ));
        }
        Ok((file_offset & COMPRESSED_BIT != 0, idx, file_offset & OFFSET_MASK))
    }

    /// The plain file and offset of packed `file_offset`, if the bytes are stored as is.
    fn plain(&self, file_offset: u64, len: u64) -> Option<(&ImageFile, u64)> {
        let (compressed, idx, off) = self.unpack(file_offset).ok()?;
        if compressed {
            return None;
        }
        let file = self.extents[idx].kind.file()?;
        if off.checked_add(len).is_none_or(|e| e > file.len()) {
            return None;
        }
        Some((file, off))
    }

    /// Cached u32 table (COWD) or u64 table (SESparse) reads for the extent modules.
    pub(crate) fn table32(
        &self,
        idx: usize,
        tag: u8,
        key: u64,
        make: impl FnOnce() -> Result<Vec<u32>, VmdkError>,
    ) -> Result<Arc<[u32]>, VmdkError> {
        self.tables
            .get_or_try_insert((idx as u32, tag, key), || make().map(Arc::from))
    }

    pub(crate) fn table64(
        &self,
        idx: usize,
        tag: u8,
        key: u64,
        make: impl FnOnce() -> Result<Vec<u64>, VmdkError>,
    ) -> Result<Arc<[u64]>, VmdkError> {
        self.tables64
            .get_or_try_insert((idx as u32, tag, key), || make().map(Arc::from))
    }

    /// Count the allocated grains of every sparse extent, streaming the tables (`info`).
    pub fn allocated_grains(&self) -> Result<Vec<Option<u64>>> {
        self.extents
            .iter()
            .enumerate()
            .map(|(idx, x)| match &x.kind {
                ExtentKind::Sparse(s) => self
                    .hosted_allocated(idx, s)
                    .map(Some)
                    .map_err(|e| self.extent_err(idx, e)),
                ExtentKind::Cowd(c) => c.allocated(self, idx).map(Some).map_err(|e| self.extent_err(idx, e)),
                ExtentKind::SeSparse(s) => s.allocated(self, idx).map(Some).map_err(|e| self.extent_err(idx, e)),
                _ => Ok(None),
            })
            .collect()
    }
}

impl HostedSparse {
    fn new(file: ImageFile, header0: SparseHeader, header: SparseHeader) -> Result<Self, VmdkError> {
        let len = file.len();
        if let Err(primary) = sparse::gd_inside(&header, len, sparse::Copy::Primary) {
            if header.redundant().is_none() || sparse::gd_inside(&header, len, sparse::Copy::Redundant).is_err() {
                return Err(primary);
            }
            log::warn!(
                "{}: {primary}; the redundant grain directory is used",
                file.path().display()
            );
        }
        Ok(HostedSparse {
            file,
            header0,
            header,
            redundant_used: AtomicBool::new(false),
        })
    }
}

/// Append a run, extending the last one where it continues it.
pub(crate) fn push(out: &mut Vec<Run>, len: u64, source: Source) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        let joins = match (last.source, source) {
            (Source::Zero, Source::Zero) | (Source::Parent, Source::Parent) => true,
            (Source::Data { file_offset: a }, Source::Data { file_offset: b }) => a.checked_add(last.len) == Some(b),
            _ => false,
        };
        if joins {
            last.len += len;
            return;
        }
    }
    out.push(Run { len, source });
}

fn check_parent_keys(d: &Descriptor) -> Result<(), VmdkError> {
    if d.has_parent() && d.parent_hint.is_none() {
        return Err(VmdkError::Descriptor(format!(
            "parentCID={:08x} names a parent, but there is no parentFileNameHint to find it by",
            d.parent_cid
        )));
    }
    Ok(())
}

/// Open the extent of one descriptor line.
fn open_extent(
    descriptor: &Path,
    dir: &Path,
    line: &ExtentLine,
    start: u64,
    len: u64,
    warnings: &mut Vec<String>,
) -> Result<Extent> {
    let mk = |path: Option<PathBuf>, kind| Extent {
        line: line.clone(),
        path,
        start,
        len,
        kind,
    };
    if line.access == Access::NoAccess {
        return Ok(mk(None, ExtentKind::NoAccess));
    }
    if line.kind == ExtentType::Zero {
        return Ok(mk(None, ExtentKind::Zero));
    }
    if matches!(line.kind, ExtentType::VmfsRdm | ExtentType::VmfsRaw) {
        return Err(Error::vmdk(
            descriptor,
            VmdkError::Unsupported(format!(
                "descriptor line {}: a {} extent is a raw device mapping: the data is on a LUN, not in a file",
                line.line,
                line.kind.name()
            )),
        ));
    }
    let name = line.file.clone().unwrap_or_default();
    let path = extent_path(dir, &name);
    // A file that exists but cannot be opened (permissions, too many open files) keeps
    // its own error; only a file that is not there is "missing".
    let file = ImageFile::open(&path).map_err(|e| match std::fs::symlink_metadata(&path) {
        Ok(_) => e,
        Err(_) => Error::vmdk(
            descriptor,
            VmdkError::MissingExtent {
                line: line.line,
                name: name.clone(),
                path: path.clone(),
            },
        ),
    })?;
    let e = |source| Error::vmdk(&path, source);
    let kind = match line.kind {
        ExtentType::Flat | ExtentType::Vmfs => {
            let offset = line
                .offset
                .checked_mul(512)
                .ok_or_else(|| e(VmdkError::line(line.line, "the offset overflows")))?;
            fields::check_inside(file.len(), offset, len, "flat extent data").map_err(e)?;
            ExtentKind::Flat { file, offset }
        }
        ExtentType::Sparse | ExtentType::VmfsSparse | ExtentType::SeSparse => {
            let mut head = [0u8; 16];
            let n = file.read_up_to(0, &mut head).map_err(|source| {
                e(VmdkError::Io {
                    offset: 0,
                    len: 16,
                    source,
                })
            })?;
            match kind_of(&head[..n], u64::MAX) {
                Some(Kind::Sparse) => {
                    let (h0, h) = sparse::read_headers(&file).map_err(e)?;
                    if h.capacity < line.sectors {
                        return Err(e(VmdkError::corrupt(
                            "sparse extent header",
                            h.offset,
                            format!(
                                "capacity {} sectors is less than the {} of descriptor line {}",
                                h.capacity, line.sectors, line.line
                            ),
                        )));
                    }
                    if h.capacity > line.sectors {
                        warnings.push(format!(
                            "extent {}: capacity {} sectors is more than the {} of descriptor line {}; the rest is not read",
                            path.display(),
                            h.capacity,
                            line.sectors,
                            line.line
                        ));
                    }
                    ExtentKind::Sparse(Box::new(HostedSparse::new(file, h0, h).map_err(e)?))
                }
                Some(Kind::Cowd) => ExtentKind::Cowd(Box::new(cowd::CowdExtent::open(file, line.sectors).map_err(e)?)),
                Some(Kind::SeSparse) => {
                    ExtentKind::SeSparse(Box::new(sesparse::SeSparseExtent::open(file, line.sectors).map_err(e)?))
                }
                _ => {
                    return Err(e(VmdkError::corrupt(
                        "extent header",
                        0,
                        format!(
                            "descriptor line {} says {}, but the file has no KDMV, COWD or SESparse magic",
                            line.line,
                            line.kind.name()
                        ),
                    )))
                }
            }
        }
        ExtentType::Zero | ExtentType::VmfsRdm | ExtentType::VmfsRaw => unreachable!("handled above"),
    };
    Ok(mk(Some(path), kind))
}

impl DiskFile for VmdkFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn format(&self) -> &'static str {
        "vmdk"
    }

    fn identity(&self) -> Identity {
        Identity {
            field: IDENTITY_FIELD,
            value: format!("{:08x}", self.descriptor.cid),
        }
    }

    fn parent(&self) -> Option<ParentRef> {
        if !self.descriptor.has_parent() {
            return None;
        }
        Some(ParentRef {
            hints: self
                .descriptor
                .parent_hint
                .iter()
                .map(|p| PathHint {
                    label: "parentFileNameHint".into(),
                    path: p.clone(),
                })
                .collect(),
            identities: vec![Identity {
                field: IDENTITY_FIELD,
                value: format!("{:08x}", self.descriptor.parent_cid),
            }],
        })
    }

    fn layer(self: Arc<Self>, _state: usize) -> Arc<dyn Layer> {
        self
    }

    fn modified(&self) -> SystemTime {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        std::iter::once(mtime(&self.path))
            .chain(self.extents.iter().map(|x| x.path.as_deref().and_then(mtime)))
            .flatten()
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn info(&self) -> Result<FileInfo> {
        info::file_info(self)
    }
}

impl Layer for VmdkFile {
    fn path(&self) -> &Path {
        &self.path
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
        let mut pos = offset;
        while pos < end {
            let idx = self.extents.partition_point(|x| x.start + x.len <= pos);
            let x = &self.extents[idx];
            let rel = pos - x.start;
            let n = (x.len - rel).min(end - pos);
            self.map_extent(idx, rel, n, out).map_err(|e| self.extent_err(idx, e))?;
            pos += n;
        }
        Ok(())
    }

    fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()> {
        let (compressed, idx, off) = self.unpack(file_offset)?;
        let len = buf.len() as u64;
        let x = &self.extents[idx];
        if compressed {
            let ExtentKind::Sparse(s) = &x.kind else {
                return Err(self.extent_err(idx, VmdkError::corrupt("extent", off, "not a compressed extent")));
            };
            return self
                .read_compressed(idx, s, off, buf)
                .map_err(|e| self.extent_err(idx, e));
        }
        let Some(file) = x.kind.file() else {
            return Err(self.extent_err(idx, VmdkError::corrupt("extent", off, "holds no data")));
        };
        fields::check_inside(file.len(), off, len, "extent data").map_err(|e| self.extent_err(idx, e))?;
        fields::read_into(file, off, buf).map_err(|e| self.extent_err(idx, e))
    }

    fn data_pieces<'a>(&'a self, file_offset: u64, len: u64, out: &mut Vec<Piece<'a>>) -> bool {
        match self.plain(file_offset, len) {
            Some((file, offset)) => {
                out.push(Piece::File { file, offset, len });
                true
            }
            None => false,
        }
    }

    fn prefetch(&self, file_offset: u64, len: u64) {
        if let Some((file, offset)) = self.plain(file_offset, len) {
            file.prefetch(offset, len);
        }
    }
}

#[cfg(test)]
mod tests;
