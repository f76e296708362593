//! NTFS, read-only.
//!
//! The `ntfs` crate reads and validates the boot sector and the volume label. Everything
//! else works from the file records' bytes, because the crate keeps private or gets wrong
//! what a faithful reader needs: attribute sizes (initialized and compressed sizes),
//! attribute-list pieces (it links them by instance number, which is only unique within
//! one record), index blocks smaller than a cluster, an `$MFT` described by an attribute
//! list, and a guard against looping index B-trees (see `stream` and `index`).
//!
//! Choices, where NTFS and POSIX differ:
//! - A node id is the file record number (root 5), so hard links share one.
//! - `nlink` counts the Win32/POSIX `$FILE_NAME`s, not a DOS 8.3 alias (ntfs-3g by
//!   default shows the header's link count, which includes a separately stored 8.3
//!   name; ntfs-3g -o posix_nlink and ntfs3 count as here). A directory's is 2 + its subdirectories, as on ext4 and as ntfs-3g shows
//!   with `-o posix_nlink` (by default it says 1); junctions and directory symlinks
//!   show as symlinks here and are not counted.
//! - A directory's size is its `$I30` index allocation's, 0 for a small directory whose
//!   index fits its record, as ntfs-3g and the kernel's ntfs3 show it.
//! - Listings hide DOS-only names and the metadata files (records below 16: `$MFT` …
//!   `$Extend`), as ntfs-3g does; `$RECYCLE.BIN`, "System Volume Information" and other
//!   ordinary files stay.
//! - LZNT1- and WOF-compressed files read as their decompressed bytes (`compressed`,
//!   `wof`). Encrypted files and other placeholders list with their right sizes, but
//!   reading them is an error.

mod cache;
mod compress;
mod compressed;
mod index;
mod node;
mod record;
mod reparse;
mod runs;
mod stream;
mod streams;
mod wof;
mod xattr;

use std::ffi::{OsStr, OsString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use ntfs::{KnownNtfsFileRecordNumber, Ntfs, NtfsAttributeType};

use self::cache::Cache;
use self::node::{Content, Header, Node};
use self::record::{Attribute, Record, FLAG_IN_USE};
use self::runs::RunMap;
use self::stream::{stream, Stream};
use super::{Attr, DirEntry, FileKind, FsStats, GuestFs, NodeId, StreamInfo, Volume};
use crate::bytes::filetime;
use crate::io::Cursor;
use crate::{Error, Result};

/// Records below this hold the metadata files; ntfs-3g hides them too.
const FIRST_USER_RECORD: u64 = 16;
const ROOT: u64 = KnownNtfsFileRecordNumber::RootDirectory as u64;
/// Counting free clusters reads the whole `$Bitmap`; past this size (a 2 PiB volume at
/// 4 KiB clusters) `statfs` reports no free space rather than stall.
const MAX_BITMAP_SCAN: u64 = 64 << 20;

fn fs_err(what: impl Into<String>) -> Error {
    Error::Filesystem {
        fs: "ntfs",
        what: what.into(),
    }
}

/// The volume and its geometry: what every structure read needs.
struct Disk {
    volume: Volume,
    cluster_size: u64,
    total_clusters: u64,
    record_size: u64,
}

impl Disk {
    /// File record `n` read through the `$MFT` map `mft`; `None` past the end of the
    /// `$MFT` or for a record never written.
    fn record(&self, mft: &RunMap, n: u64) -> Result<Option<Record>> {
        let rs = self.record_size;
        if n >= mft.size() / rs {
            return Ok(None);
        }
        let mut buf = vec![0u8; rs as usize];
        if mft.read(&*self.volume, n * rs, &mut buf)? < buf.len() {
            return Ok(None);
        }
        Record::parse(n, buf).map_err(fs_err)
    }
}

/// A read-only NTFS volume. Cheap to share between threads: reads position themselves.
pub struct NtfsFs {
    disk: Disk,
    mft: RunMap,
    label: Option<String>,
    nodes: Cache<Arc<Node>>,
    dirs: Cache<Arc<[DirEntry]>>,
    data: Cache<Arc<RunMap>>,
    /// Streams, flags and link targets: what extended attributes and symlinks show.
    extra: Cache<Arc<xattr::Extra>>,
    links: Cache<Arc<OsStr>>,
    decoded: compressed::Decoded,
    stats: OnceLock<FsStats>,
}

/// Open the NTFS filesystem on `volume` (one whole partition).
pub fn open(volume: Volume) -> Result<NtfsFs> {
    let mut cursor = Cursor::new(volume.clone());
    let ntfs = catch_unwind(AssertUnwindSafe(|| Ntfs::new(&mut cursor)))
        .map_err(|_| fs_err("not an NTFS volume: its boot sector could not be parsed"))?
        .map_err(|e| fs_err(format!("not an NTFS volume: {e}")))?;
    let cluster_size = u64::from(ntfs.cluster_size());
    let record_size = u64::from(ntfs.file_record_size());
    if !(512..=1 << 16).contains(&record_size) || !record_size.is_power_of_two() {
        return Err(fs_err(format!("boot sector: bad file record size {record_size}")));
    }
    if volume.size() < ntfs.size() {
        log::warn!(
            "ntfs: the boot sector says the volume is {} bytes but only {} are there; reads past the end will fail",
            ntfs.size(),
            volume.size()
        );
    }
    let disk = Disk {
        volume,
        cluster_size,
        total_clusters: ntfs.size() / cluster_size,
        record_size,
    };
    let mft_position = ntfs.mft_position().value().map_or(0, |p| p.get());
    let mft = map_mft(&disk, mft_position)?;
    let label = read_label(&disk.volume, &ntfs);
    // Budgets of tens of MiB: enough for the nodes, listings and run maps of a busy
    // tree walk, small next to what a mount may hold per checkpoint.
    let fs = NtfsFs {
        disk,
        mft,
        label,
        nodes: Cache::new(16 << 10, 16 << 20),
        dirs: Cache::new(4 << 10, 64 << 20),
        data: Cache::new(4 << 10, 32 << 20),
        extra: Cache::new(16 << 10, 16 << 20),
        links: Cache::new(4 << 10, 4 << 20),
        decoded: compressed::Decoded::new(),
        stats: OnceLock::new(),
    };
    if fs.node(ROOT)?.kind != FileKind::Dir {
        return Err(fs_err("file record 5, the root, is not a directory"));
    }
    Ok(fs)
}

/// The `$MFT`'s own map, from record 0. Its `$DATA` may continue in extension records
/// named by an attribute list (a much-fragmented `$MFT`), which are found through the
/// pieces gathered before them.
fn map_mft(disk: &Disk, position: u64) -> Result<RunMap> {
    let mut buf = vec![0u8; disk.record_size as usize];
    disk.volume.read_at(position, &mut buf)?;
    let rec0 = Record::parse(0, buf)
        .map_err(|e| fs_err(format!("$MFT: {e}")))?
        .ok_or_else(|| fs_err("$MFT: record 0 is empty"))?;
    let mft_data = |attrs: &[Attribute]| -> Result<RunMap> {
        match stream(attrs, NtfsAttributeType::Data, "") {
            Ok(Some(s @ Stream::NonResident { .. })) => disk
                .map("$MFT $DATA".into(), &s)
                .map_err(|e| fs_err(format!("$MFT: $DATA: {e}"))),
            Ok(_) => Err(fs_err("$MFT: record 0 has no non-resident $DATA")),
            Err(e) => Err(fs_err(format!("$MFT: {e}"))),
        }
    };
    // Rebuilt only when another piece of $DATA has turned up.
    let mut partial: Option<(usize, RunMap)> = None;
    let attrs = disk.collect(&rec0, |n, so_far| {
        let pieces = so_far.iter().filter(|a| a.ty == NtfsAttributeType::Data as u32).count();
        let map = match partial.take() {
            Some((p, map)) if p == pieces => map,
            _ => mft_data(so_far)?,
        };
        let record = disk.record(&map, n);
        partial = Some((pieces, map));
        record
    })?;
    let mft = mft_data(&attrs)?;
    if mft.size() < FIRST_USER_RECORD * disk.record_size {
        return Err(fs_err(format!("$MFT: only {} bytes long", mft.size())));
    }
    Ok(mft)
}

fn read_label(volume: &Volume, ntfs: &Ntfs) -> Option<String> {
    let mut cursor = Cursor::new(volume.clone());
    match catch_unwind(AssertUnwindSafe(|| ntfs.volume_name(&mut cursor))) {
        Ok(None) => None,
        Ok(Some(Ok(name))) => Some(name.name().to_string_lossy()).filter(|s| !s.is_empty()),
        Ok(Some(Err(e))) => {
            log::warn!("ntfs: cannot read the volume label: {e}");
            None
        }
        Err(_) => {
            log::warn!("ntfs: cannot read the volume label: $Volume is damaged");
            None
        }
    }
}

impl NtfsFs {
    fn not_found(n: u64) -> Error {
        Error::NotFound(format!("ntfs file record {n}"))
    }

    /// The header and every attribute of base record `n`.
    fn attributes(&self, n: u64) -> Result<(Header, Vec<Attribute>)> {
        let rec = self.disk.record(&self.mft, n)?.ok_or_else(|| Self::not_found(n))?;
        if rec.flags() & FLAG_IN_USE == 0 || rec.base_record() != 0 {
            return Err(Self::not_found(n));
        }
        let attrs = self.disk.collect(&rec, |m, _| self.disk.record(&self.mft, m))?;
        let header = Header {
            flags: rec.flags(),
            link_count: rec.link_count(),
        };
        Ok((header, attrs))
    }

    fn load(&self, n: u64) -> Result<(Arc<Node>, Option<RunMap>)> {
        let (header, attrs) = self.attributes(n)?;
        let (node, map) =
            node::build(&self.disk, n, &header, &attrs).map_err(|e| fs_err(format!("file record {n}: {e}")))?;
        let node = Arc::new(node);
        self.nodes.put(n, node.clone(), node.weight());
        Ok((node, map))
    }

    fn node(&self, n: u64) -> Result<Arc<Node>> {
        match self.nodes.get(n) {
            Some(node) => Ok(node),
            None => Ok(self.load(n)?.0),
        }
    }

    fn data_map(&self, n: u64) -> Result<Arc<RunMap>> {
        if let Some(m) = self.data.get(n) {
            return Ok(m);
        }
        let map = self
            .load(n)?
            .1
            .ok_or_else(|| fs_err(format!("file record {n}: its $DATA has no data runs")))?;
        let map = Arc::new(map);
        self.data.put(n, map.clone(), 64 + 24 * map.len());
        Ok(map)
    }

    /// The target of link node `n`, made once.
    fn link(&self, n: u64) -> Result<Arc<OsStr>> {
        if let Some(t) = self.links.get(n) {
            return Ok(t);
        }
        let t: Arc<OsStr> = self.link_target(n)?.into();
        self.links.put(n, t.clone(), 64 + t.len());
        Ok(t)
    }

    fn count_free_clusters(&self) -> Result<u64> {
        let bitmap = KnownNtfsFileRecordNumber::Bitmap as u64;
        let bytes = self.disk.total_clusters.div_ceil(8);
        if bytes > MAX_BITMAP_SCAN {
            return Ok(0);
        }
        let mut buf = vec![0u8; bytes.min(1 << 20) as usize];
        let (mut off, mut free) = (0u64, 0u64);
        while off < bytes {
            let want = ((bytes - off) as usize).min(buf.len());
            let got = self.read(bitmap, off, &mut buf[..want])?;
            if got < want {
                return Err(fs_err(format!(
                    "$Bitmap is shorter than the volume's {} clusters",
                    self.disk.total_clusters
                )));
            }
            free += zero_bits(&buf[..got], self.disk.total_clusters - off * 8);
            off += got as u64;
        }
        Ok(free)
    }

    fn count_free_records(&self) -> Result<u64> {
        let records = self.mft.size() / self.disk.record_size;
        let (_, attrs) = self.attributes(0)?;
        let s = stream(&attrs, NtfsAttributeType::Bitmap, "")
            .map_err(fs_err)?
            .ok_or_else(|| fs_err("$MFT has no $BITMAP"))?;
        let bits = self.disk.read_all("$MFT $BITMAP".into(), &s, MAX_BITMAP_SCAN)?;
        Ok(zero_bits(&bits, records))
    }
}

/// Clear bits among the first `limit` bits of `bytes`.
fn zero_bits(bytes: &[u8], limit: u64) -> u64 {
    let mut n = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        let first = i as u64 * 8;
        if first >= limit {
            break;
        }
        let valid = (limit - first).min(8) as u32;
        let mask = if valid == 8 { 0xFF } else { (1u8 << valid) - 1 };
        n += u64::from((!b & mask).count_ones());
    }
    n
}

impl GuestFs for NtfsFs {
    fn type_name(&self) -> &'static str {
        "ntfs"
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn case_insensitive(&self) -> bool {
        true
    }

    fn attr(&self, n: NodeId) -> Result<Attr> {
        let node = self.node(n)?;
        // A symlink's size is its target's length; a target that cannot be made is
        // reported by readlink, and stat still works.
        let size = match node.kind {
            FileKind::Symlink => self.link(n).map_or(0, |t| t.len() as u64),
            _ => node.size,
        };
        // A directory: 2 + its subdirectories, as ext4 and ntfs-3g -o posix_nlink count
        // (`.` and each subdirectory's `..`), from its own listing (cached; the index
        // alone, no child record except for reparse points). If the listing fails, 1, the
        // "not counted" of ntfs-3g's default; the error comes when it is listed.
        let nlink = match node.kind {
            FileKind::Dir => self.read_dir(n).map_or(node.nlink, |entries| {
                2 + entries.iter().filter(|e| e.kind == FileKind::Dir).count() as u32
            }),
            _ => node.nlink,
        };
        Ok(Attr {
            node: n,
            kind: node.kind,
            size,
            blocks: node.allocated.div_ceil(512),
            perm: match node.kind {
                FileKind::Dir => 0o555,
                FileKind::Symlink => 0o777,
                _ => 0o444,
            },
            uid: 0,
            gid: 0,
            nlink,
            rdev: 0,
            atime: filetime(node.accessed),
            mtime: filetime(node.modified),
            ctime: filetime(node.changed),
            crtime: Some(filetime(node.created)),
        })
    }

    fn read_dir(&self, dir: NodeId) -> Result<Arc<[DirEntry]>> {
        if let Some(d) = self.dirs.get(dir) {
            return Ok(d);
        }
        match self.node(dir)?.kind {
            FileKind::Dir => {}
            // Paths are not followed through links here (the kernel follows them in the
            // mount): say where this one leads.
            FileKind::Symlink => {
                let to = self
                    .link(dir)
                    .map_or_else(|_| "?".into(), |t| t.to_string_lossy().into_owned());
                return Err(Error::NotADirectory(format!("ntfs file record {dir} (a link to {to})")));
            }
            _ => return Err(fs_err(format!("file record {dir} is not a directory"))),
        }
        let (_, attrs) = self.attributes(dir)?;
        let (mut entries, maybe_links) =
            index::list(&self.disk, dir, &attrs).map_err(|e| fs_err(format!("directory record {dir}: {e}")))?;
        for i in maybe_links {
            if let Ok(node) = self.node(entries[i].node) {
                entries[i].kind = node.kind;
            }
        }
        let entries: Arc<[DirEntry]> = entries.into();
        let weight = entries.iter().map(|e| 48 + e.name.len()).sum::<usize>();
        self.dirs.put(dir, entries.clone(), weight);
        Ok(entries)
    }

    fn read(&self, n: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let node = self.node(n)?;
        if node.kind != FileKind::File {
            return Err(fs_err(format!("file record {n} is a directory")));
        }
        if offset >= node.size || buf.is_empty() {
            return Ok(0);
        }
        match &node.content {
            Content::None => Ok(0),
            Content::Resident(data) => {
                let start = offset as usize;
                let len = buf.len().min(data.len().saturating_sub(start));
                buf[..len].copy_from_slice(&data[start..start + len]);
                Ok(len)
            }
            Content::Unreadable(why) => {
                log::warn!("ntfs: file record {n} cannot be read: {why}");
                Err(fs_err(format!("file record {n}: {why}")))
            }
            Content::Runs => self.data_map(n)?.read(&*self.disk.volume, offset, buf),
            Content::Lznt1 { unit } => self.read_lznt1(n, *unit, offset, buf),
            Content::Wof(w) => self.read_wof(n, w, node.size, offset, buf),
        }
    }

    fn pieces<'a>(
        &'a self,
        n: NodeId,
        offset: u64,
        len: u64,
        out: &mut Vec<crate::io::Piece<'a>>,
    ) -> Result<Option<u64>> {
        let node = self.node(n)?;
        match &node.content {
            // Plain runs only: resident data lives in the record, compressed data must
            // be decompressed.
            Content::Runs if node.kind == FileKind::File => {
                self.data_map(n)?.pieces(&*self.disk.volume, offset, len, out)
            }
            _ => Ok(None),
        }
    }

    fn read_link(&self, n: NodeId) -> Result<OsString> {
        if self.node(n)?.kind != FileKind::Symlink {
            return Err(Error::NotASymlink(format!("ntfs file record {n}")));
        }
        self.link(n).map(|t| t.to_os_string())
    }

    fn xattr_names(&self, n: NodeId) -> Result<Vec<OsString>> {
        self.list_xattrs(n)
    }

    fn xattr(&self, n: NodeId, name: &OsStr) -> Result<Option<Vec<u8>>> {
        self.get_xattr(n, name)
    }

    fn streams(&self, n: NodeId) -> Result<Vec<StreamInfo>> {
        Ok(self
            .stream_list(n)?
            .into_iter()
            .map(|s| StreamInfo {
                name: s.name.into(),
                size: s.size,
            })
            .collect())
    }

    fn read_stream(&self, n: NodeId, name: &OsStr, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_named(n, &name.to_string_lossy(), offset, buf)
    }

    fn stats(&self) -> FsStats {
        *self.stats.get_or_init(|| {
            let free_blocks = self.count_free_clusters().unwrap_or_else(|e| {
                log::warn!("ntfs: cannot count free clusters: {e}");
                0
            });
            let free_files = self.count_free_records().unwrap_or_else(|e| {
                log::warn!("ntfs: cannot count free file records: {e}");
                0
            });
            FsStats {
                block_size: self.disk.cluster_size as u32,
                blocks: self.disk.total_clusters,
                free_blocks,
                // The $MFT grows on demand; its current records are what can be counted.
                files: self.mft.size() / self.disk.record_size,
                free_files,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bits_stop_at_the_limit() {
        assert_eq!(zero_bits(&[0x00, 0x00], 16), 16);
        assert_eq!(zero_bits(&[0x0F, 0x00], 12), 8);
        assert_eq!(zero_bits(&[0xFF, 0xFE], 9), 1);
        assert_eq!(zero_bits(&[0x00], 100), 8);
    }
}
