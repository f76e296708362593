//! The virtual tree that both the CLI and the mount show:
//!
//! ```text
//! /<checkpoint>/disk.img              the checkpoint's whole virtual disk
//! /<checkpoint>/<volume>/<guest path> a guest filesystem
//! ```
//!
//! and for a VM the same one level down, under `/<checkpoint>/<disk>/` (see [`layout`]).
//!
//! Node numbers (inode numbers for FUSE) are computed from the node ([`numbers`]):
//! guest nodes from the filesystem's own node id, so hard links share one number, and
//! every number stays the same for the life of the tree without a table or a lock.
//! Lookups by name go through a per-directory index built once from the listing
//! ([`names`]). A checkpoint's disk and volumes are opened the first time something
//! inside it is asked for, so opening the tree stays fast at any chain depth.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::cache::Cache;
use crate::chain::layered_disk::DEFAULT_CACHED_RUNS;
use crate::chain::{CheckpointTree, LayeredDisk};
use crate::fs::{Attr, FileKind, FsOptions, FsStats, GuestFs, NodeId, StreamInfo};
use crate::io::{Piece, ReadAt};
use crate::vm::Vm;
use crate::volume::{self, Content, Volumes};
use crate::{Error, Result};

pub mod layout;
mod names;
mod numbers;

pub use layout::{Layout, Source};

use names::NameIndex;

/// Name of the raw-disk file inside each checkpoint directory.
pub const DISK_IMAGE: &str = "disk.img";

/// A node number, as FUSE calls it.
pub type Ino = u64;
pub const ROOT: Ino = 1;

/// Directories whose name index is kept, for lookups in large directories, and the
/// bytes they may hold together (about 70 bytes an entry: an 800,000-entry directory
/// fits; a larger one is listed again for each lookup: the limit of this design).
const CACHED_NAME_INDEXES: usize = 1024;
const NAME_INDEX_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Root,
    Checkpoint(usize),
    /// A disk's directory in a VM's checkpoint: slot `.0`.
    Disk(usize),
    /// The whole disk of slot `.0`.
    DiskImage(usize),
    /// The root directory of volume `.1` of slot `.0`.
    Volume(usize, usize),
    Guest(usize, usize, NodeId),
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub ino: Ino,
    pub kind: FileKind,
}

/// What a disk state opens on first use.
#[derive(Default)]
struct Opened {
    disk: OnceLock<Arc<LayeredDisk>>,
    /// The error is kept as text: it is reported again on every access.
    volumes: OnceLock<std::result::Result<Arc<Volumes>, String>>,
}

pub struct Vfs {
    source: Source,
    layout: Layout,
    fs_options: FsOptions,
    opened: Vec<Opened>,
    /// Numbers for the rare nodes that [`numbers::encode`] cannot number.
    numbers: numbers::Table,
    /// Directory → its entries by (folded) name.
    name_indexes: Cache<Ino, Arc<NameIndex>>,
    /// Keys the name indexes' hashes.
    hasher: RandomState,
    /// Name indexes built so far (tests check that lookups do not list again).
    name_index_builds: AtomicU64,
    /// Bound of each checkpoint disk's resolved-run cache.
    cached_runs: usize,
    uid: u32,
    gid: u32,
}

impl Vfs {
    /// The tree of a disk file's checkpoints.
    pub fn new(tree: CheckpointTree, fs_options: FsOptions) -> Self {
        Self::of(Source::Disk(tree), fs_options)
    }

    /// The tree of a VM's checkpoints and disks.
    pub fn of_vm(vm: Vm, fs_options: FsOptions) -> Self {
        Self::of(Source::Vm(vm), fs_options)
    }

    pub fn of(source: Source, fs_options: FsOptions) -> Self {
        let layout = Layout::new(&source);
        let opened = layout.states.iter().map(|_| Opened::default()).collect();
        let vfs = Vfs {
            source,
            layout,
            fs_options,
            opened,
            numbers: numbers::Table::default(),
            name_indexes: Cache::weighted(CACHED_NAME_INDEXES, NAME_INDEX_BYTES),
            hasher: RandomState::new(),
            name_index_builds: AtomicU64::new(0),
            cached_runs: DEFAULT_CACHED_RUNS,
            // Virtual nodes belong to whoever runs ckptfs.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
        };
        assert_eq!(vfs.ino(Node::Root), ROOT);
        vfs
    }

    /// Bound each checkpoint disk's cache of resolved runs (see [`LayeredDisk`]) to
    /// `runs` entries; takes effect for disks not opened yet.
    pub fn with_cached_runs(mut self, runs: usize) -> Self {
        self.cached_runs = runs;
        self
    }

    /// What the tree was opened from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn ino(&self, node: Node) -> Ino {
        numbers::encode(node).unwrap_or_else(|| self.numbers.number(node))
    }

    fn node(&self, ino: Ino) -> Result<Node> {
        let node = numbers::decode(ino).or_else(|| self.numbers.node(ino));
        let l = &self.layout;
        match node {
            Some(n @ Node::Root) => Ok(n),
            Some(n @ Node::Checkpoint(ci)) if ci < l.checkpoints.len() => Ok(n),
            Some(n @ Node::Disk(slot)) if l.disk_level && slot < l.slots.len() => Ok(n),
            Some(n @ (Node::DiskImage(slot) | Node::Volume(slot, _) | Node::Guest(slot, ..)))
                if slot < l.slots.len() =>
            {
                Ok(n)
            }
            _ => Err(Error::NotFound(format!("node {ino}"))),
        }
    }

    /// How many directory name indexes have been built: one per directory looked up
    /// in, while the index stays cached. For tests.
    #[doc(hidden)]
    pub fn name_index_builds(&self) -> u64 {
        self.name_index_builds.load(Ordering::Relaxed)
    }

    /// The disk state that slot `slot` shows, or why it cannot be read.
    fn state_of(&self, slot: usize) -> Result<usize> {
        let s = &self.layout.slots[slot];
        s.state
            .clone()
            .map_err(|why| Error::Filesystem { fs: "disk", what: why })
    }

    /// The whole virtual disk of state `si` (for a disk file, checkpoint `si`).
    pub fn disk(&self, si: usize) -> Arc<LayeredDisk> {
        self.disk_ref(si).clone()
    }

    /// The disk of state `si`, borrowed for as long as the tree lives.
    fn disk_ref(&self, si: usize) -> &Arc<LayeredDisk> {
        self.opened[si].disk.get_or_init(|| {
            Arc::new(LayeredDisk::new(
                self.layout.states[si].layers.clone(),
                self.cached_runs,
            ))
        })
    }

    /// The volumes of state `si` (for a disk file, checkpoint `si`), found and opened
    /// on first use.
    pub fn volumes(&self, si: usize) -> Result<Arc<Volumes>> {
        self.volumes_ref(si).cloned()
    }

    /// The volumes of state `si`, borrowed for as long as the tree lives.
    fn volumes_ref(&self, si: usize) -> Result<&Arc<Volumes>> {
        self.opened[si]
            .volumes
            .get_or_init(|| {
                let disk = self.disk(si);
                let sector = disk.logical_sector_size();
                volume::discover(disk, sector, &self.fs_options)
                    .map(Arc::new)
                    .map_err(|e| {
                        let msg = format!("{}: {e}", self.layout.states[si].label);
                        log::debug!("{msg}");
                        msg
                    })
            })
            .as_ref()
            .map_err(|what| Error::Filesystem {
                fs: "volumes",
                what: what.clone(),
            })
    }

    /// The opened filesystem of volume `vi` of slot `slot`.
    fn guest(&self, slot: usize, vi: usize) -> Result<Arc<dyn GuestFs>> {
        self.guest_ref(slot, vi).cloned()
    }

    /// The filesystem of volume `vi` of slot `slot`, borrowed for as long as the tree
    /// lives.
    fn guest_ref(&self, slot: usize, vi: usize) -> Result<&Arc<dyn GuestFs>> {
        let volumes = self.volumes_ref(self.state_of(slot)?)?;
        let Some(volume) = volumes.entries.get(vi) else {
            return Err(Error::NotFound(format!(
                "{}: volume {vi}",
                self.layout.slots[slot].label
            )));
        };
        match &volume.content {
            Content::Filesystem { fs, .. } => Ok(fs),
            Content::Broken { dir, error, .. } => Err(Error::Filesystem {
                fs: "volume",
                what: format!("{}/{dir}: {error}", self.layout.slots[slot].label),
            }),
            Content::Hidden { what } => Err(Error::NotFound(what.clone())),
        }
    }

    /// The guest node behind a volume or guest node.
    fn guest_node(&self, node: Node) -> Option<(usize, usize, Option<NodeId>)> {
        match node {
            Node::Volume(ci, vi) => Some((ci, vi, None)),
            Node::Guest(ci, vi, id) => Some((ci, vi, Some(id))),
            _ => None,
        }
    }

    fn guest_to_node(&self, ci: usize, vi: usize, fs: &dyn GuestFs, id: NodeId) -> Node {
        if id == fs.root() {
            Node::Volume(ci, vi)
        } else {
            Node::Guest(ci, vi, id)
        }
    }

    fn dir_attr(&self, ino: Ino, time: SystemTime, nlink: u32) -> Attr {
        Attr {
            node: ino,
            kind: FileKind::Dir,
            size: 0,
            blocks: 0,
            perm: 0o555,
            uid: self.uid,
            gid: self.gid,
            nlink,
            rdev: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: None,
        }
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let node = self.node(ino)?;
        match node {
            Node::Root => {
                let newest = self
                    .layout
                    .checkpoints
                    .iter()
                    .map(|c| c.modified)
                    .max()
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(self.dir_attr(ino, newest, 2))
            }
            Node::Checkpoint(ci) => Ok(self.dir_attr(ino, self.layout.checkpoints[ci].modified, 2)),
            Node::Disk(slot) => Ok(self.dir_attr(ino, self.layout.slots[slot].modified, 2)),
            Node::DiskImage(slot) => {
                let state = &self.layout.states[self.state_of(slot)?];
                let size = state.layers.first().map_or(0, |l| l.virtual_size());
                Ok(Attr {
                    kind: FileKind::File,
                    size,
                    blocks: size.div_ceil(512),
                    perm: 0o444,
                    nlink: 1,
                    ..self.dir_attr(ino, state.modified, 1)
                })
            }
            Node::Volume(slot, vi) => match self.guest(slot, vi) {
                Ok(fs) => Ok(Attr {
                    node: ino,
                    ..fs.attr(fs.root())?
                }),
                // A volume that failed to open is still a directory; entering it fails.
                Err(_) => Ok(self.dir_attr(ino, self.layout.slots[slot].modified, 2)),
            },
            Node::Guest(ci, vi, id) => {
                let fs = self.guest(ci, vi)?;
                Ok(Attr {
                    node: ino,
                    ..fs.attr(id)?
                })
            }
        }
    }

    /// The entries of directory `ino`.
    pub fn readdir(&self, ino: Ino) -> Result<Vec<Entry>> {
        let node = self.node(ino)?;
        let entry = |name: &str, node: Node, kind| Entry {
            name: name.into(),
            ino: self.ino(node),
            kind,
        };
        match node {
            Node::Root => Ok((0..self.layout.checkpoints.len())
                .map(|ci| entry(&self.layout.checkpoints[ci].name, Node::Checkpoint(ci), FileKind::Dir))
                .collect()),
            Node::Checkpoint(ci) if self.layout.disk_level => Ok(self.layout.checkpoints[ci]
                .slots
                .iter()
                .map(|&slot| entry(&self.layout.slots[slot].dir, Node::Disk(slot), FileKind::Dir))
                .collect()),
            Node::Checkpoint(ci) => match self.layout.checkpoints[ci].slots.first() {
                Some(&slot) => self.disk_entries(slot),
                None => Ok(Vec::new()),
            },
            Node::Disk(slot) => self.disk_entries(slot),
            Node::DiskImage(slot) => Err(Error::NotADirectory(format!(
                "{}/{DISK_IMAGE}",
                self.layout.slots[slot].label
            ))),
            Node::Volume(..) | Node::Guest(..) => {
                let (ci, vi, id) = self.guest_node(node).unwrap();
                let fs = self.guest(ci, vi)?;
                let dir = id.unwrap_or_else(|| fs.root());
                Ok(fs
                    .read_dir(dir)?
                    .iter()
                    .map(|e| Entry {
                        name: e.name.clone(),
                        ino: self.ino(self.guest_to_node(ci, vi, fs.as_ref(), e.node)),
                        kind: e.kind,
                    })
                    .collect())
            }
        }
    }

    /// What a disk's directory holds: its raw image and its volumes.
    fn disk_entries(&self, slot: usize) -> Result<Vec<Entry>> {
        let si = self.state_of(slot)?;
        let entry = |name: &str, node: Node, kind| Entry {
            name: name.into(),
            ino: self.ino(node),
            kind,
        };
        let mut out = vec![entry(DISK_IMAGE, Node::DiskImage(slot), FileKind::File)];
        // A disk whose table cannot be read still shows its raw image.
        if let Ok(volumes) = self.volumes(si) {
            for (vi, v) in volumes.entries.iter().enumerate() {
                if let Some(dir) = v.dir() {
                    out.push(entry(dir, Node::Volume(slot, vi), FileKind::Dir));
                }
            }
        }
        Ok(out)
    }

    /// The slot whose content directory `node` is, if it is one.
    fn content_slot(&self, node: Node) -> Option<usize> {
        match node {
            Node::Disk(slot) => Some(slot),
            Node::Checkpoint(ci) if !self.layout.disk_level => self.layout.checkpoints[ci].slots.first().copied(),
            _ => None,
        }
    }

    /// The attributes of `name` in directory `parent`.
    ///
    /// In a guest directory the name is found through the directory's name index,
    /// built from its listing on the first lookup there and cached, so each further
    /// lookup costs the same at any directory size.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let node = self.node(parent)?;
        // The raw disk needs no volume opened.
        if let Some(slot) = self.content_slot(node) {
            if name == DISK_IMAGE {
                return self.getattr(self.ino(Node::DiskImage(slot)));
            }
        }
        let not_found = || Error::NotFound(name.to_string_lossy().into_owned());
        let Some((ci, vi, id)) = self.guest_node(node) else {
            // The top levels hold a few entries each: checkpoints, disks, volumes.
            let entries = self.readdir(parent)?;
            let e = entries.iter().find(|e| e.name == name).ok_or_else(not_found)?;
            return self.getattr(e.ino);
        };
        let fs = self.guest_ref(ci, vi)?;
        let dir = id.unwrap_or_else(|| fs.root());
        let index = match self.name_indexes.get(&parent) {
            Some(index) => index,
            None => {
                let index = Arc::new(NameIndex::build(fs.read_dir(dir)?, fs.case_insensitive(), &self.hasher));
                self.name_index_builds.fetch_add(1, Ordering::Relaxed);
                self.name_indexes.put_weighed(parent, index.clone(), index.weight());
                index
            }
        };
        let e = index.get(name, &self.hasher).ok_or_else(not_found)?;
        let ino = self.ino(self.guest_to_node(ci, vi, fs.as_ref(), e.node));
        Ok(Attr {
            node: ino,
            ..fs.attr(e.node)?
        })
    }

    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match self.node(ino)? {
            Node::DiskImage(slot) => {
                let disk = self.disk(self.state_of(slot)?);
                let n = disk.size().saturating_sub(offset).min(buf.len() as u64) as usize;
                disk.read_at(offset, &mut buf[..n])?;
                Ok(n)
            }
            Node::Guest(ci, vi, id) => self.guest(ci, vi)?.read(id, offset, buf),
            _ => Err(Error::IsADirectory(format!("node {ino}"))),
        }
    }

    /// Where up to `len` bytes of file `ino` from `offset` lie, as pieces of image files
    /// and zeros, and how many bytes that is; `None` where they are not stored plainly
    /// (see [`crate::io::ReadAt::pieces`]): then [`Vfs::read`] reads them.
    pub fn pieces<'a>(&'a self, ino: Ino, offset: u64, len: u64, out: &mut Vec<Piece<'a>>) -> Result<Option<u64>> {
        match self.node(ino)? {
            Node::DiskImage(slot) => {
                let disk = self.disk_ref(self.state_of(slot)?);
                let n = disk.size().saturating_sub(offset).min(len);
                if n == 0 {
                    return Ok(Some(0));
                }
                Ok(disk.pieces(offset, n, out)?.then_some(n))
            }
            Node::Guest(ci, vi, id) => self.guest_ref(ci, vi)?.pieces(id, offset, len, out),
            _ => Err(Error::IsADirectory(format!("node {ino}"))),
        }
    }

    pub fn readlink(&self, ino: Ino) -> Result<OsString> {
        match self.node(ino)? {
            Node::Guest(ci, vi, id) => self.guest(ci, vi)?.read_link(id),
            _ => Err(Error::NotASymlink(format!("node {ino}"))),
        }
    }

    /// The guest filesystem and node behind `ino`, if it is a guest node and its volume
    /// opens (a volume that does not is a directory without attributes).
    fn guest_of(&self, ino: Ino) -> Result<Option<(Arc<dyn GuestFs>, NodeId)>> {
        match self.guest_node(self.node(ino)?) {
            Some((ci, vi, id)) => match self.guest(ci, vi) {
                Ok(fs) => {
                    let id = id.unwrap_or_else(|| fs.root());
                    Ok(Some((fs, id)))
                }
                Err(_) if id.is_none() => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// The extended attribute names of `ino`, as `listxattr` lists them.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>> {
        match self.guest_of(ino)? {
            Some((fs, id)) => fs.xattr_names(id),
            None => Ok(Vec::new()),
        }
    }

    /// Extended attribute `name` of `ino`; `None` if it has none of that name.
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Option<Vec<u8>>> {
        match self.guest_of(ino)? {
            Some((fs, id)) => fs.xattr(id, name),
            None => Ok(None),
        }
    }

    /// The named data streams of `ino` (NTFS alternate data streams).
    pub fn streams(&self, ino: Ino) -> Result<Vec<StreamInfo>> {
        match self.guest_of(ino)? {
            Some((fs, id)) => fs.streams(id),
            None => Ok(Vec::new()),
        }
    }

    /// Read stream `name` of `ino` at `offset`, as [`Vfs::read`] reads its contents.
    pub fn read_stream(&self, ino: Ino, name: &OsStr, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match self.guest_of(ino)? {
            Some((fs, id)) => fs.read_stream(id, name, offset, buf),
            None => Err(Error::NotFound(format!(
                "node {ino}: stream {:?}",
                name.to_string_lossy()
            ))),
        }
    }

    /// The node at `path`, or a named stream of one: `dir/file.txt:Zone.Identifier`.
    ///
    /// A `:` is a stream separator only where the path as given does not exist, only in
    /// its last component, and only on a filesystem with streams (NTFS): a name with a
    /// colon (legal on ext4, and in NTFS's POSIX namespace) is found as itself first.
    /// A trailing `:$DATA` (Windows' full form) is dropped, then the component splits at
    /// its last colon (stream names hold none, POSIX file names may), so
    /// `file.txt::$DATA` is the file itself and `a:b.txt:s` stream `s` of `a:b.txt`.
    pub fn resolve_stream(&self, path: &str) -> Result<(Ino, Option<OsString>)> {
        let err = match self.resolve(path) {
            Ok(ino) => return Ok((ino, None)),
            Err(e @ Error::NotFound(_)) => e,
            Err(e) => return Err(e),
        };
        let trimmed = path.trim_end_matches('/');
        let (dir, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        let last = match last.len().checked_sub(6) {
            Some(i) if last.is_char_boundary(i) && last[i..].eq_ignore_ascii_case(":$DATA") => &last[..i],
            _ => last,
        };
        let Some((file, stream)) = last.rsplit_once(':') else {
            return Err(err);
        };
        if file.is_empty() {
            return Err(err);
        }
        let ino = match self.resolve(&format!("{dir}/{file}")) {
            Ok(ino) => ino,
            Err(Error::NotFound(_)) => return Err(err),
            Err(e) => return Err(e),
        };
        match self.guest_of(ino)? {
            Some((fs, _)) if fs.type_name() == "ntfs" => {}
            _ => return Err(err),
        }
        Ok((ino, (!stream.is_empty()).then(|| OsString::from(stream))))
    }

    /// Sizes for `statfs` of the filesystem holding `ino`.
    pub fn stats(&self, ino: Ino) -> Result<FsStats> {
        match self.guest_node(self.node(ino)?) {
            Some((ci, vi, _)) => Ok(self.guest(ci, vi)?.stats()),
            // Outside a volume, `df` shows the largest virtual disk as the size, all used.
            None => {
                let largest = self
                    .layout
                    .states
                    .iter()
                    .filter_map(|s| s.layers.first())
                    .map(|l| l.virtual_size())
                    .max()
                    .unwrap_or(0);
                Ok(FsStats {
                    block_size: 4096,
                    blocks: largest.div_ceil(4096),
                    files: self.layout.checkpoints.len() as u64,
                    ..FsStats::default()
                })
            }
        }
    }

    /// The node at `path` (`/`-separated, relative to the root; empty parts and `.`
    /// ignored).
    pub fn resolve(&self, path: &str) -> Result<Ino> {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            ino = match self.lookup(ino, OsStr::new(part)) {
                Ok(a) => a.node,
                Err(Error::NotFound(_)) if ino == ROOT => {
                    let names: Vec<&str> = self.layout.checkpoints.iter().map(|c| c.name.as_str()).collect();
                    return Err(Error::NotFound(format!(
                        "{path} (no checkpoint {part:?}; the checkpoints are {})",
                        names.join(", ")
                    )));
                }
                Err(Error::NotFound(_)) => return Err(Error::NotFound(path.to_string())),
                Err(e) => return Err(e),
            };
        }
        Ok(ino)
    }
}
