//! ext2/3/4 through `ext4-view` (patched, see vendor/ext4-view.patch).
//!
//! Two facts shape this module:
//! - `ext4_view::Ext4` is not `Send` (it shares state through `Rc`/`RefCell`), and
//!   [`GuestFs`] must be `Sync`. Metadata work (listings, stat, symlinks) runs on an
//!   instance checked out of a small pool: one thread at a time per instance, as many
//!   instances as threads want at once, up to the number of CPUs.
//! - `ext4_view::File` reads one block per call and seeks by walking the block list
//!   from the start. File data is instead read by block runs (`File::block_runs`, from
//!   the patch: extents with journal replay applied, unwritten extents as holes),
//!   mapped once per file, cached, and read straight from the volume in large pieces
//!   from any thread.
//! - Nodes are reached by inode number (`Ext4::inode_metadata`, `read_dir_inode`, …,
//!   from the patch), never by path: no table of paths that grows with every node seen
//!   (a walk over millions of files), and no path walk per `stat`.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStringExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType, Metadata};

use super::{Attr, DirEntry, FileKind, FsStats, GuestFs, NodeId, Volume};
use crate::bytes::{le_u16, le_u32};
use crate::cache::Cache;
use crate::{Error, Result};

const ROOT_INODE: NodeId = 2;
const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;

/// Bounds of the caches, per filesystem. Attributes: about 150 bytes each, so 36 MiB
/// at most, and a listed directory of up to that many entries is stat'ed from memory.
/// Listings: by count and by about 56 bytes an entry plus its name (32 MiB: a walk of
/// millions of files keeps the most recent half million or so entries).
const CACHED_ATTRS: usize = 1 << 18;
const CACHED_DIRS: usize = 4096;
const CACHED_DIR_BYTES: usize = 32 << 20;
const CACHED_RUN_MAPS: usize = 1024;

/// Does `superblock` (the 1024 bytes at offset 1024) look like ext2/3/4?
pub fn is_ext(superblock: &[u8]) -> bool {
    superblock.len() >= 0x3A && le_u16(superblock, 0x38) == MAGIC
}

/// What the superblock says, read once at open.
#[derive(Debug, Clone)]
struct Superblock {
    type_name: &'static str,
    label: Option<String>,
    block_size: u64,
    stats: FsStats,
}

impl Superblock {
    fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < SUPERBLOCK_SIZE || !is_ext(b) {
            return Err(fs_err("no ext2/3/4 superblock (magic 0xEF53 at offset 0x438)"));
        }
        let log_block_size = le_u32(b, 0x18);
        if log_block_size > 6 {
            return Err(fs_err(format!("block size 2^(10+{log_block_size}) is not allowed")));
        }
        let block_size = 1024u64 << log_block_size;
        let compat = le_u32(b, 0x5C);
        let incompat = le_u32(b, 0x60);
        let ro_compat = le_u32(b, 0x64);
        let is_64bit = incompat & 0x80 != 0;
        let hi = |at: usize| if is_64bit { u64::from(le_u32(b, at)) << 32 } else { 0 };
        // ext4 when any ext4-only feature is on: extents, 64bit, flex_bg, huge_file,
        // dir_nlink, extra_isize, metadata_csum; ext3 when it only adds a journal.
        let ext4_incompat = 0x40 | 0x80 | 0x200;
        let ext4_ro_compat = 0x8 | 0x20 | 0x40 | 0x400;
        let type_name = if incompat & ext4_incompat != 0 || ro_compat & ext4_ro_compat != 0 {
            "ext4"
        } else if compat & 0x4 != 0 {
            "ext3"
        } else {
            "ext2"
        };
        let label_bytes = &b[0x78..0x88];
        let end = label_bytes.iter().position(|&c| c == 0).unwrap_or(label_bytes.len());
        let label = String::from_utf8_lossy(&label_bytes[..end]).trim().to_string();
        Ok(Superblock {
            type_name,
            label: (!label.is_empty()).then_some(label),
            block_size,
            stats: FsStats {
                block_size: block_size as u32,
                blocks: u64::from(le_u32(b, 0x04)) | hi(0x150),
                free_blocks: u64::from(le_u32(b, 0x0C)) | hi(0x158),
                files: u64::from(le_u32(b, 0x00)),
                free_files: u64::from(le_u32(b, 0x10)),
            },
        })
    }
}

fn fs_err(what: impl Into<String>) -> Error {
    Error::Filesystem {
        fs: "ext4",
        what: what.into(),
    }
}

fn ext4_err(context: impl std::fmt::Display, e: Ext4Error) -> Error {
    fs_err(format!("{context}: {e}"))
}

/// `ext4-view` reads the volume through this.
struct VolumeReader(Volume);

impl Ext4Read for VolumeReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.read_at(start_byte, dst).map_err(|e| Box::new(e) as _)
    }
}

/// An `Ext4` that may move between threads.
struct Instance(Ext4);

// SAFETY: `Ext4` is `!Send` only because it shares its state through `Rc` and
// `RefCell`, which must not be touched from two threads at once. An `Instance` is only
// ever used through `Pool::with`, by one thread at a time, and the closure there must
// return a `Send` value, so no `Rc` clone of the instance (an `ext4_view::File`,
// `ReadDir` or `DirEntry`, all `!Send`) can outlive the call or reach another thread.
// Every clone of the `Rc` is therefore used by the thread that holds the instance.
unsafe impl Send for Instance {}

/// Instances of one filesystem, checked out one thread at a time.
struct Pool {
    volume: Volume,
    idle: Mutex<(Vec<Instance>, usize)>,
    returned: Condvar,
    max: usize,
}

impl Pool {
    fn new(volume: Volume, first: Ext4) -> Self {
        let max = std::thread::available_parallelism()
            .map_or(2, NonZeroUsize::get)
            .clamp(2, 8);
        Pool {
            volume,
            idle: Mutex::new((vec![Instance(first)], 1)),
            returned: Condvar::new(),
            max,
        }
    }

    /// Run `f` on an instance. The result must be `Send`, so nothing borrowed from the
    /// instance escapes.
    fn with<R: Send>(&self, f: impl FnOnce(&Ext4) -> Result<R>) -> Result<R> {
        let instance = {
            let mut guard = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(i) = guard.0.pop() {
                    break Some(i);
                }
                if guard.1 < self.max {
                    guard.1 += 1;
                    break None;
                }
                guard = self.returned.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        };
        let instance = match instance {
            Some(i) => i,
            None => match Ext4::load(Box::new(VolumeReader(self.volume.clone()))) {
                Ok(fs) => Instance(fs),
                Err(e) => {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                    self.returned.notify_one();
                    return Err(ext4_err("loading the filesystem", e));
                }
            },
        };
        let result = f(&instance.0);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).0.push(instance);
        self.returned.notify_one();
        result
    }
}

/// A run of a file's blocks: `count` blocks from `file_block`, at `fs_block` on the
/// volume, or a hole when `fs_block` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockRun {
    file_block: u64,
    fs_block: u64,
    count: u64,
}

pub struct Ext4Fs {
    volume: Volume,
    sb: Superblock,
    pool: Pool,
    attrs: Cache<NodeId, Attr>,
    dirs: Cache<NodeId, Arc<[DirEntry]>>,
    runs: Cache<NodeId, Arc<[BlockRun]>>,
}

/// Open the ext2/3/4 filesystem on `volume`.
pub fn open(volume: Volume) -> Result<Ext4Fs> {
    let mut sb = vec![0u8; SUPERBLOCK_SIZE];
    volume.read_at(SUPERBLOCK_OFFSET, &mut sb)?;
    let sb = Superblock::parse(&sb)?;
    let first = Ext4::load(Box::new(VolumeReader(volume.clone()))).map_err(|e| ext4_err("opening", e))?;
    Ok(Ext4Fs {
        pool: Pool::new(volume.clone(), first),
        volume,
        sb,
        attrs: Cache::new(CACHED_ATTRS),
        dirs: Cache::weighted(CACHED_DIRS, CACHED_DIR_BYTES),
        runs: Cache::new(CACHED_RUN_MAPS),
    })
}

fn kind_of(t: FileType) -> FileKind {
    match t {
        FileType::Directory => FileKind::Dir,
        FileType::Regular => FileKind::File,
        FileType::Symlink => FileKind::Symlink,
        FileType::Fifo => FileKind::Fifo,
        FileType::Socket => FileKind::Socket,
        FileType::CharacterDevice => FileKind::CharDevice,
        FileType::BlockDevice => FileKind::BlockDevice,
    }
}

fn time(t: ext4_view::Timestamp) -> SystemTime {
    let secs = t.seconds();
    let base = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    base + Duration::from_nanos(u64::from(t.nanoseconds()))
}

fn attr_of(node: NodeId, md: &Metadata) -> Attr {
    Attr {
        node,
        kind: kind_of(md.file_type()),
        size: md.len(),
        blocks: md.blocks(),
        perm: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        nlink: u32::from(md.links_count()).max(1),
        rdev: 0,
        atime: time(md.accessed()),
        mtime: time(md.modified()),
        ctime: time(md.changed()),
        crtime: md.created().map(time),
    }
}

impl Ext4Fs {
    /// The inode number of `node`, for ext4-view.
    fn inode(node: NodeId) -> Result<u32> {
        u32::try_from(node)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| Error::NotFound(format!("ext4 inode {node}")))
    }

    fn describe(&self, node: NodeId) -> String {
        format!("inode {node}")
    }

    /// Walk up to `len` bytes of regular file `node` from `offset` as spans of the
    /// volume (`Some(volume offset)`) or holes (`None`), in order, handing each to `f`.
    /// Returns how many bytes the walk covered (fewer at the end of the file), or
    /// `None` as soon as `f` returns `false`.
    fn spans(
        &self,
        node: NodeId,
        offset: u64,
        len: u64,
        mut f: impl FnMut(u64, Option<u64>) -> Result<bool>,
    ) -> Result<Option<u64>> {
        let attr = self.attr(node)?;
        if attr.kind != FileKind::File {
            return Err(fs_err(format!("{} is not a regular file", self.describe(node))));
        }
        if offset >= attr.size || len == 0 {
            return Ok(Some(0));
        }
        let n = len.min(attr.size - offset);
        let runs = self.block_runs(node)?;
        let bs = self.sb.block_size;
        let mut done = 0u64;
        while done < n {
            let pos = offset + done;
            let block = pos / bs;
            let run = runs.partition_point(|r| r.file_block + r.count <= block);
            let want = n - done;
            let (len, source) = match runs.get(run).filter(|r| r.file_block <= block) {
                Some(r) => {
                    let run_end = (r.file_block + r.count) * bs;
                    let len = want.min(run_end - pos);
                    let source = (r.fs_block != 0).then(|| (r.fs_block + (block - r.file_block)) * bs + pos % bs);
                    (len, source)
                }
                // Past the mapped blocks (or before the next run): a hole.
                None => {
                    let next = runs.get(run).map_or(u64::MAX, |r| r.file_block * bs);
                    (want.min(next.saturating_sub(pos)), None)
                }
            };
            if !f(len, source)? {
                return Ok(None);
            }
            done += len;
        }
        Ok(Some(n))
    }

    /// The file's block runs, mapped once and cached.
    fn block_runs(&self, node: NodeId) -> Result<Arc<[BlockRun]>> {
        self.runs.get_or_try_insert(node, || {
            let inode = Self::inode(node)?;
            let runs: Vec<BlockRun> = self.pool.with(|fs| {
                let file = fs.open_inode(inode).map_err(|e| ext4_err(self.describe(node), e))?;
                let runs = file.block_runs().map_err(|e| ext4_err(self.describe(node), e))?;
                Ok(runs
                    .into_iter()
                    .map(|(file_block, fs_block, count)| BlockRun {
                        file_block,
                        fs_block,
                        count,
                    })
                    .collect())
            })?;
            Ok(runs.into())
        })
    }
}

impl GuestFs for Ext4Fs {
    fn type_name(&self) -> &'static str {
        self.sb.type_name
    }

    fn label(&self) -> Option<String> {
        self.sb.label.clone()
    }

    fn root(&self) -> NodeId {
        ROOT_INODE
    }

    fn case_insensitive(&self) -> bool {
        false
    }

    fn attr(&self, node: NodeId) -> Result<Attr> {
        self.attrs.get_or_try_insert(node, || {
            let inode = Self::inode(node)?;
            let md = self
                .pool
                .with(|fs| fs.inode_metadata(inode).map_err(|e| ext4_err(self.describe(node), e)))?;
            Ok(attr_of(node, &md))
        })
    }

    fn read_dir(&self, dir: NodeId) -> Result<Arc<[DirEntry]>> {
        if let Some(d) = self.dirs.get(&dir) {
            return Ok(d);
        }
        // Paths are not followed through links here (the kernel follows them in the
        // mount), as on NTFS.
        let kind = self.attr(dir)?.kind;
        if kind != FileKind::Dir {
            return Err(Error::NotADirectory(format!("ext4 {} ({kind:?})", self.describe(dir))));
        }
        let inode = Self::inode(dir)?;
        // Listing reads each entry's inode too, so stat after readdir costs nothing.
        let listed: Vec<(DirEntry, Attr)> = self.pool.with(|fs| {
            let entries = fs.read_dir_inode(inode).map_err(|e| ext4_err(self.describe(dir), e))?;
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| ext4_err(self.describe(dir), e))?;
                let name = entry.file_name();
                if name.as_ref() == b"." || name.as_ref() == b".." {
                    continue;
                }
                names.push((OsString::from_vec(name.as_ref().to_vec()), entry.inode()));
            }
            // The inodes are read in the order of their numbers, not of the listing:
            // an htree directory lists in hash order, which would visit the inode
            // table at random, a block read for nearly every entry (the kernel reads
            // the table ahead instead). In order, one read serves a run of inodes.
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_unstable_by_key(|&i| names[i].1);
            let mut attrs: Vec<Option<Attr>> = vec![None; names.len()];
            for i in order {
                let (name, ino) = &names[i];
                let md = fs
                    .inode_metadata(*ino)
                    .map_err(|e| ext4_err(format!("{} in {}", name.to_string_lossy(), self.describe(dir)), e))?;
                attrs[i] = Some(attr_of(NodeId::from(*ino), &md));
            }
            Ok(names
                .into_iter()
                .zip(attrs)
                .map(|((name, ino), attr)| {
                    let attr = attr.expect("every entry's inode was read");
                    (
                        DirEntry {
                            name,
                            node: NodeId::from(ino),
                            kind: attr.kind,
                        },
                        attr,
                    )
                })
                .collect())
        })?;
        for (e, a) in &listed {
            self.attrs.put(e.node, a.clone());
        }
        let entries: Arc<[DirEntry]> = listed.into_iter().map(|(e, _)| e).collect();
        let weight = entries.iter().map(|e| 56 + e.name.len()).sum();
        self.dirs.put_weighed(dir, entries.clone(), weight);
        Ok(entries)
    }

    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0usize;
        let n = self.spans(node, offset, buf.len() as u64, |len, source| {
            let dst = &mut buf[done..done + len as usize];
            match source {
                Some(at) => self.volume.read_at(at, dst).map_err(|e| {
                    fs_err(format!(
                        "{}: reading block data at volume offset {at:#x}: {e}",
                        self.describe(node)
                    ))
                })?,
                None => dst.fill(0),
            }
            done += len as usize;
            Ok(true)
        })?;
        Ok(n.unwrap_or(0) as usize)
    }

    fn pieces<'a>(
        &'a self,
        node: NodeId,
        offset: u64,
        len: u64,
        out: &mut Vec<crate::io::Piece<'a>>,
    ) -> Result<Option<u64>> {
        self.spans(node, offset, len, |n, source| match source {
            Some(at) => self.volume.pieces(at, n, out),
            None => {
                out.push(crate::io::Piece::Zero { len: n });
                Ok(true)
            }
        })
    }

    fn read_link(&self, node: NodeId) -> Result<OsString> {
        let inode = Self::inode(node)?;
        let target = self.pool.with(|fs| {
            fs.read_link_inode(inode)
                .map(|t| t.as_ref().to_vec())
                .map_err(|e| ext4_err(self.describe(node), e))
        })?;
        Ok(OsString::from_vec(target))
    }

    fn stats(&self) -> FsStats {
        self.sb.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(compat: u32, incompat: u32, ro: u32, label: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        b[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        b[0x18..0x1C].copy_from_slice(&2u32.to_le_bytes());
        b[0x5C..0x60].copy_from_slice(&compat.to_le_bytes());
        b[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        b[0x64..0x68].copy_from_slice(&ro.to_le_bytes());
        b[0x78..0x78 + label.len()].copy_from_slice(label);
        b
    }

    #[test]
    fn the_type_follows_the_features() {
        assert_eq!(
            Superblock::parse(&superblock(0, 0x2, 0, b"")).unwrap().type_name,
            "ext2"
        );
        assert_eq!(
            Superblock::parse(&superblock(0x4, 0x2, 0, b"")).unwrap().type_name,
            "ext3"
        );
        assert_eq!(
            Superblock::parse(&superblock(0x4, 0x2 | 0x40, 0, b""))
                .unwrap()
                .type_name,
            "ext4"
        );
        assert_eq!(
            Superblock::parse(&superblock(0, 0x2, 0x400, b"")).unwrap().type_name,
            "ext4"
        );
    }

    #[test]
    fn label_and_block_size() {
        let sb = Superblock::parse(&superblock(0, 2, 0, b"rootfs")).unwrap();
        assert_eq!(sb.label.as_deref(), Some("rootfs"));
        assert_eq!(sb.block_size, 4096);
        assert_eq!(Superblock::parse(&superblock(0, 2, 0, b"")).unwrap().label, None);
        let mut bad = superblock(0, 2, 0, b"");
        bad[0x18..0x1C].copy_from_slice(&30u32.to_le_bytes());
        assert!(Superblock::parse(&bad).is_err());
        assert!(Superblock::parse(&[0u8; 1024]).is_err());
    }
}
