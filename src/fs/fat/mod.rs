//! FAT12, FAT16 and FAT32. `fatfs` 0.3 decodes directory listings (long names);
//! `layout` and `dirent` read the boot sector, the FAT and the raw directory entries
//! themselves (see `layout` for why), and `runs` maps file data.
//!
//! - `fatfs::FileSystem` is neither `Sync` nor even `Send`; it sits behind one mutex.
//!   FAT volumes are small (EFI system partitions, removable media) and their metadata
//!   is read once (listings are cached), so serializing `fatfs` calls costs little.
//! - File data does not go through `fatfs`: it opens files by path and seeks by
//!   following the cluster chain from its start, so every read re-walked the chain up
//!   to its offset, under the mutex, and reading a file in pieces was quadratic in its
//!   length (64 MiB file, 128 KiB reads as FUSE makes them: 20 MiB/s with 4 KiB
//!   clusters, 2 MiB/s with 512-byte ones). Instead each file's chain is followed once
//!   into runs of consecutive clusters (`runs`), the map is cached, and reads go
//!   straight to the volume, one read per run, from any thread.
//! - FAT has no inode numbers. A node's id is derived from the byte position of its
//!   short-name entry on the volume (the kernel identifies FAT inodes the same way):
//!   unique, known as soon as the entry is listed, and the same every time the volume
//!   is opened. The root, which has no entry, is 1.
//! - `fatfs` opens directories by path, so every listed node keeps its path and the
//!   attributes its entry had when listed. That table grows with the number of distinct
//!   nodes listed, which the volume's size bounds; listings are cached in an LRU.
//! - Before a directory or a file is read, its cluster chain is followed here: loops,
//!   links to clusters that do not exist and chains shorter than the file are errors
//!   that name the file, instead of a hang, a panic or someone else's bytes. The walk
//!   stops at the clusters the file's size needs, so its work is bounded by the size.

mod dirent;
mod layout;
mod runs;
mod time;

pub use time::FatTimeZone;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::UNIX_EPOCH;

use dirent::{RawDir, RawEntry};
use layout::{FatTable, Geometry, RootDir, MAX_DIR_BYTES};
use runs::ClusterMap;

use super::{Attr, DirEntry, FileKind, FsStats, GuestFs, NodeId, Volume};
use crate::bytes::le_u32;
use crate::cache::Cache;
use crate::io::Cursor;
use crate::{Error, Result};

const ROOT: NodeId = 1;
const CACHED_DIRS: usize = 4096;
const CACHED_CLUSTER_MAPS: usize = 1024;
/// Runs a file's cluster map may hold before it is sampled instead (see `runs`): with
/// 12-byte runs, at most 48 KiB a map and 48 MiB for all the cached maps. Files
/// written on a volume with room to spare have one run, or a few.
const MAX_RUNS: usize = 4096;

/// The id of the node whose short-name entry is at volume offset `pos`. Entries are 32
/// bytes and 32-byte aligned (directories start on sector boundaries), so distinct
/// entries get distinct ids, all above the root's.
fn node_id(pos: u64) -> NodeId {
    pos / dirent::ENTRY as u64 + 2
}

/// Sizes and link count of a directory, known once it has been read.
#[derive(Debug, Clone, Copy)]
struct DirFacts {
    /// Bytes of the clusters it occupies (what the kernel reports as its size).
    size: u64,
    nlink: u32,
}

struct Node {
    /// `/`-separated names from the root (empty for the root), as `fatfs` opens it.
    path: String,
    parent: NodeId,
    /// The entry as listed; None for the root.
    entry: Option<RawEntry>,
    /// Attributes as listed; a directory's size and link count come from `dir`.
    attr: Attr,
    dir: OnceLock<DirFacts>,
}

impl Node {
    fn show(&self) -> String {
        format!("/{}", self.path)
    }

    fn is_dir(&self) -> bool {
        self.attr.kind == FileKind::Dir
    }
}

/// A `fatfs` filesystem that may move between threads.
struct Mounted(fatfs::FileSystem<Disk>);

// SAFETY: `fatfs::FileSystem` is `!Send` for one reason: its options hold
// `&'static dyn OemCpConverter` and `&'static dyn TimeProvider`, trait objects without
// a `Sync` bound. The two passed here (`dirent::CP437`, a unit struct, and fatfs's
// default time provider, a struct holding `()`) are immutable statics with no interior
// mutability, so sharing references to them across threads is sound. The rest of its
// state (`RefCell`s, `Cell`s, the `Disk`) is `Send`. Every `Dir`, `File` and
// `DirEntry` borrowing it lives inside one `FatFs::with_fatfs` call, under the mutex.
unsafe impl Send for Mounted {}

/// What `fatfs` reads the volume through: a [`Cursor`], plus a stand-in for a damaged
/// FAT32 FSInfo sector (`fatfs` refuses to mount without a valid one; the kernel only
/// uses it as a hint, and so would this reader if it allocated clusters), and a count
/// of attempted writes.
struct Disk {
    cursor: Cursor,
    pos: u64,
    fs_info: Option<(u64, Box<[u8]>)>,
    writes: Arc<AtomicU64>,
}

impl Read for Disk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.cursor.read(buf)?;
        if let Some((at, sector)) = &self.fs_info {
            let (start, end) = (self.pos, self.pos + n as u64);
            let (s, e) = (start.max(*at), end.min(at + sector.len() as u64));
            if s < e {
                buf[(s - start) as usize..(e - start) as usize]
                    .copy_from_slice(&sector[(s - at) as usize..(e - at) as usize]);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Disk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.cursor.seek(to)?;
        Ok(self.pos)
    }
}

impl Write for Disk {
    // `fatfs` writes only to allocate, rename, delete, update times or mark the volume
    // dirty, none of which this reader asks for (accessed-date updates are off). A
    // write here is a bug, counted so that tests catch it; it fails, and fatfs reports
    // a failed write in `Drop` with one log line, not a panic.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        log::debug!("fatfs attempted a write at offset {:#x}", self.pos);
        self.cursor.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A FAT12/16/32 filesystem, read-only.
pub struct FatFs {
    volume: Volume,
    geo: Geometry,
    fat: FatTable,
    zone: FatTimeZone,
    label: Option<String>,
    mounted: Mutex<Mounted>,
    nodes: RwLock<HashMap<NodeId, Arc<Node>>>,
    dirs: Cache<NodeId, Arc<[DirEntry]>>,
    maps: Cache<NodeId, Arc<ClusterMap>>,
    max_runs: usize,
    writes: Arc<AtomicU64>,
}

fn fs_err(fs: &'static str, what: impl Into<String>) -> Error {
    Error::Filesystem { fs, what: what.into() }
}

/// Open the FAT12/16/32 filesystem on `volume`, whose timestamps were written by a
/// clock in `time_zone`. exFAT is refused (its boot sector says "EXFAT").
pub fn open(volume: Volume, time_zone: FatTimeZone) -> Result<FatFs> {
    let mut boot = [0u8; 512];
    if volume.size() < boot.len() as u64 {
        return Err(fs_err(
            "fat",
            format!("the volume is {} bytes: smaller than a boot sector", volume.size()),
        ));
    }
    volume
        .read_at(0, &mut boot)
        .map_err(|e| fs_err("fat", format!("reading the boot sector: {e}")))?;
    let geo = Geometry::parse(&boot).map_err(|w| fs_err("fat", format!("boot sector: {w}")))?;
    let name = geo.kind.name();
    if geo.volume_len > volume.size() {
        log::warn!(
            "{name}: the boot sector describes {} bytes but the volume has {}: what lies past the end cannot be read",
            geo.volume_len,
            volume.size()
        );
    }
    let writes = Arc::new(AtomicU64::new(0));
    let disk = Disk {
        cursor: Cursor::new(volume.clone()),
        pos: 0,
        fs_info: fs_info_stand_in(&volume, &geo)?,
        writes: writes.clone(),
    };
    let options = fatfs::FsOptions::new()
        .update_accessed_date(false)
        .oem_cp_converter(&dirent::CP437);
    let mounted = fatfs::FileSystem::new(disk, options).map_err(|e| fs_err(name, format!("mounting: {e}")))?;
    let fatfs_kind = match mounted.fat_type() {
        fatfs::FatType::Fat12 => layout::FatKind::Fat12,
        fatfs::FatType::Fat16 => layout::FatKind::Fat16,
        fatfs::FatType::Fat32 => layout::FatKind::Fat32,
    };
    if fatfs_kind != geo.kind {
        return Err(fs_err(
            name,
            format!("fatfs reads this volume as {}", fatfs_kind.name()),
        ));
    }
    let mut root_attr = Attr {
        node: ROOT,
        kind: FileKind::Dir,
        size: 0,
        blocks: 0,
        perm: 0o555,
        uid: 0,
        gid: 0,
        nlink: 2,
        rdev: 0,
        // The root has no directory entry, hence no times of its own (the kernel shows
        // the epoch); set below from the entries it holds.
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: None,
    };
    let mut root = Node {
        path: String::new(),
        parent: ROOT,
        entry: None,
        attr: root_attr.clone(),
        dir: OnceLock::new(),
    };
    let mut fs = FatFs {
        fat: FatTable::new(volume.clone(), geo.clone()),
        volume,
        geo,
        zone: time_zone,
        label: None,
        mounted: Mutex::new(Mounted(mounted)),
        nodes: RwLock::new(HashMap::new()),
        dirs: Cache::new(CACHED_DIRS),
        maps: Cache::new(CACHED_CLUSTER_MAPS),
        max_runs: MAX_RUNS,
        writes,
    };
    // Reading the root now finds its label and, like the kernel's mount, refuses a
    // volume whose root directory cannot be read.
    let (raw, _) = fs.raw_dir(&root)?;
    fs.label = raw
        .label
        .as_ref()
        .and_then(dirent::label_text)
        .or_else(|| fs.geo.bpb_label.as_ref().and_then(dirent::label_text));
    if let Some(t) = root_time(&raw, fs.zone) {
        (root_attr.atime, root_attr.mtime, root_attr.ctime) = (t, t, t);
        root.attr = root_attr;
    }
    fs.nodes
        .get_mut()
        .unwrap_or_else(|p| p.into_inner())
        .insert(ROOT, Arc::new(root));
    Ok(fs)
}

/// The root directory's time, which FAT does not record: the newest time written in it,
/// of the volume label entry (when the volume was formatted or labelled) and of each
/// entry's creation and modification (an entry made there changed the root). None for
/// an empty root without a label, which then shows the epoch as the kernel's does.
/// Unset (zero) dates are left out.
fn root_time(raw: &dirent::RawDir, zone: FatTimeZone) -> Option<std::time::SystemTime> {
    let label = raw.label_modified.map(|(date, time)| (date, time, 0));
    let entries = raw.entries.iter().filter(|e| !e.is_dot()).flat_map(|e| {
        [
            (e.created_date, e.created_time, e.created_hundredths),
            (e.modified_date, e.modified_time, 0),
        ]
    });
    label
        .into_iter()
        .chain(entries)
        .filter(|&(date, _, _)| date != 0)
        .map(|(date, time, hundredths)| zone.instant(date, time, hundredths))
        .max()
}

/// A valid, empty FSInfo sector to show `fatfs` in place of a damaged one.
fn fs_info_stand_in(volume: &Volume, geo: &Geometry) -> Result<Option<(u64, Box<[u8]>)>> {
    let Some(at) = geo.fs_info else {
        return Ok(None);
    };
    let mut s = vec![0u8; 512];
    volume
        .read_at(at, &mut s)
        .map_err(|e| fs_err(geo.kind.name(), format!("reading the FSInfo sector: {e}")))?;
    if le_u32(&s, 0) == 0x4161_5252 && le_u32(&s, 484) == 0x6141_7272 && le_u32(&s, 508) == 0xAA55_0000 {
        return Ok(None);
    }
    log::info!(
        "{}: the FSInfo sector is damaged; ignored, as the kernel does",
        geo.kind.name()
    );
    s.fill(0);
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    // Free count and next free cluster unknown.
    s[488..496].fill(0xFF);
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    Ok(Some((at, s.into())))
}

impl FatFs {
    fn err(&self, what: impl Into<String>) -> Error {
        fs_err(self.geo.kind.name(), what)
    }

    fn node(&self, id: NodeId) -> Result<Arc<Node>> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{} node {id}", self.geo.kind.name())))
    }

    /// Run `f` on the `fatfs` filesystem; nothing borrowed from it outlives the call.
    fn with_fatfs<R>(&self, f: impl FnOnce(&fatfs::FileSystem<Disk>) -> R) -> R {
        let guard: MutexGuard<'_, Mounted> = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard.0)
    }

    /// `st_blocks` as the kernel computes it: the size rounded up to whole clusters.
    fn blocks(&self, size: u64) -> u64 {
        let cs = u64::from(self.geo.cluster_size);
        size.div_ceil(cs) * cs / 512
    }

    fn entry_attr(&self, id: NodeId, e: &RawEntry) -> Attr {
        let dir = e.is_dir();
        let size = if dir { 0 } else { u64::from(e.size) };
        let mtime = self.zone.instant(e.modified_date, e.modified_time, 0);
        Attr {
            node: id,
            kind: if dir { FileKind::Dir } else { FileKind::File },
            size,
            blocks: self.blocks(size),
            // Read-only either way; the READ_ONLY attribute would only take write bits
            // away.
            perm: if dir { 0o555 } else { 0o444 },
            uid: 0,
            gid: 0,
            nlink: if dir { 2 } else { 1 },
            rdev: 0,
            atime: self.zone.instant(e.accessed_date, 0, 0),
            mtime,
            ctime: mtime,
            crtime: Some(self.zone.instant(e.created_date, e.created_time, e.created_hundredths)),
        }
    }

    /// The raw entries of directory `node` and the bytes its clusters span, after
    /// checking its chain.
    fn raw_dir(&self, node: &Node) -> Result<(RawDir, u64)> {
        let fat32 = self.geo.kind == layout::FatKind::Fat32;
        let first = match (&node.entry, self.geo.root) {
            (None, RootDir::Region { offset, len }) => {
                let mut bytes = vec![0u8; len as usize];
                self.volume
                    .read_at(offset, &mut bytes)
                    .map_err(|e| self.err(format!("reading the root directory at volume offset {offset:#x}: {e}")))?;
                return Ok((dirent::parse(&bytes, fat32, |i| offset + i as u64), len));
            }
            (None, RootDir::Chain(c)) => c,
            (Some(e), _) => e.cluster,
        };
        let what = |w: &str| self.err(format!("directory {}: {w}", node.show()));
        if first == 0 {
            // Cluster 0 in an entry means "the root" (it is what `..` says in a
            // directory just below the root): a directory elsewhere cannot be empty
            // of clusters, it always holds `.` and `..`.
            return Err(what("its entry gives it no cluster"));
        }
        // Parents were all listed before their children, so this walk ends at the root.
        let mut up = node.entry.is_some().then_some(node.parent);
        while let Some(a) = up {
            let a = self.node(a)?;
            let a_first = match (&a.entry, self.geo.root) {
                (Some(e), _) => e.cluster,
                (None, RootDir::Chain(c)) => c,
                (None, RootDir::Region { .. }) => 0,
            };
            if a_first == first {
                return Err(what(&format!(
                    "it is the same directory as {} (cluster {first}): the tree would loop",
                    a.show()
                )));
            }
            up = a.entry.is_some().then_some(a.parent);
        }
        let cs = u64::from(self.geo.cluster_size);
        let limit = (MAX_DIR_BYTES / cs).max(1);
        let mut clusters = Vec::new();
        let ended = self
            .fat
            .walk(first, limit + 1, |c| clusters.push(c))
            .map_err(|w| what(&w))?;
        if !ended || clusters.len() as u64 > limit {
            return Err(what(&format!(
                "its cluster chain is longer than {} KiB, the most a directory may have",
                MAX_DIR_BYTES / 1024
            )));
        }
        let mut bytes = vec![0u8; clusters.len() * cs as usize];
        let mut i = 0;
        while i < clusters.len() {
            // One read per run of consecutive clusters.
            let run = 1 + clusters[i + 1..]
                .iter()
                .zip(&clusters[i..])
                .take_while(|(n, p)| **n == **p + 1)
                .count();
            let at = self.geo.cluster_offset(clusters[i]);
            let dst = &mut bytes[i * cs as usize..(i + run) * cs as usize];
            self.volume.read_at(at, dst).map_err(|e| {
                what(&format!(
                    "reading cluster {} at volume offset {at:#x}: {e}",
                    clusters[i]
                ))
            })?;
            i += run;
        }
        let offsets: Vec<u64> = clusters.iter().map(|&c| self.geo.cluster_offset(c)).collect();
        let raw = dirent::parse(&bytes, fat32, |i| offsets[i / cs as usize] + (i as u64 % cs));
        Ok((raw, bytes.len() as u64))
    }

    /// List directory `id`: the raw entries give positions and clusters, `fatfs` the
    /// names; the two must agree entry for entry.
    fn list(&self, id: NodeId) -> Result<Arc<[DirEntry]>> {
        let node = self.node(id)?;
        if !node.is_dir() {
            return Err(self.err(format!("{}: not a directory", node.show())));
        }
        let (raw, size) = self.raw_dir(&node)?;
        struct Named {
            name: String,
            short: Vec<u8>,
            short_text: String,
            attrs: u8,
            len: u64,
        }
        let expected = raw.entries.len();
        let named: Vec<Named> = self.with_fatfs(|fs| -> Result<Vec<Named>> {
            let root = fs.root_dir();
            let dir = if node.path.is_empty() {
                root
            } else {
                root.open_dir(&node.path)
                    .map_err(|e| self.err(format!("directory {}: {e}", node.show())))?
            };
            let mut out = Vec::with_capacity(expected);
            for e in dir.iter() {
                let e = e.map_err(|e| self.err(format!("directory {}: {e}", node.show())))?;
                if out.len() == expected {
                    return Err(self.err(format!(
                        "directory {}: fatfs lists more than its {expected} entries",
                        node.show()
                    )));
                }
                out.push(Named {
                    name: e.file_name(),
                    short: e.short_file_name_as_bytes().to_vec(),
                    short_text: e.short_file_name(),
                    attrs: e.attributes().bits(),
                    len: e.len(),
                });
            }
            Ok(out)
        })?;
        if named.len() != expected {
            return Err(self.err(format!(
                "directory {}: fatfs lists {} entries, the directory holds {expected}",
                node.show(),
                named.len()
            )));
        }

        let subdirs = raw.entries.iter().filter(|e| e.is_dir()).count() as u32;
        // The kernel's count: every subdirectory entry, `.` and `..` included, plus 2
        // for the root, which has neither.
        let nlink = if node.entry.is_none() {
            subdirs + 2
        } else {
            subdirs.max(2)
        };
        node.dir.get_or_init(|| DirFacts { size, nlink });

        let fold = |s: &str| s.chars().flat_map(char::to_uppercase).collect::<String>();
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        let mut children = Vec::new();
        for (e, n) in raw.entries.into_iter().zip(named) {
            if n.short != dirent::short_name_bytes(&e.name) || n.attrs != e.attr & 0x3F || n.len != u64::from(e.size) {
                return Err(self.err(format!(
                    "directory {}: fatfs and the entry at volume offset {:#x} disagree",
                    node.show(),
                    e.pos
                )));
            }
            // fatfs opens a path's first entry whose long or short name matches,
            // ignoring case: a later entry with such a name cannot be reached.
            let shadowed = !seen.insert(fold(&n.name));
            seen.insert(fold(&n.short_text));
            if e.is_dot() {
                continue;
            }
            let name = n.name;
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                log::warn!(
                    "{}: directory {}: skipped an entry named {name:?}",
                    self.geo.kind.name(),
                    node.show()
                );
                continue;
            }
            if shadowed {
                log::warn!(
                    "{}: directory {}: skipped a second entry named {name:?} (names ignore case)",
                    self.geo.kind.name(),
                    node.show()
                );
                continue;
            }
            let child = node_id(e.pos);
            let path = if node.path.is_empty() {
                name.clone()
            } else {
                format!("{}/{name}", node.path)
            };
            let attr = self.entry_attr(child, &e);
            entries.push(DirEntry {
                name: OsString::from(name),
                node: child,
                kind: attr.kind,
            });
            children.push(Node {
                path,
                parent: id,
                entry: Some(e),
                attr,
                dir: OnceLock::new(),
            });
        }
        {
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            for c in children {
                // A node listed before keeps its first path (two directories can only
                // share entries on a damaged volume, with cross-linked clusters).
                nodes.entry(c.attr.node).or_insert_with(|| Arc::new(c));
            }
        }
        let entries: Arc<[DirEntry]> = entries.into();
        self.dirs.put(id, entries.clone());
        Ok(entries)
    }

    /// Where non-empty file `node`'s clusters are, its chain checked to cover its size.
    fn cluster_map(&self, node: &Node, e: &RawEntry) -> Result<Arc<ClusterMap>> {
        self.maps.get_or_try_insert(node.attr.node, || {
            ClusterMap::build(&self.fat, e.cluster, e.size, self.geo.cluster_size, self.max_runs)
                .map(Arc::new)
                .map_err(|w| self.err(format!("file {}: {w}", node.show())))
        })
    }

    /// Writes `fatfs` attempted on the volume (always 0; for tests).
    #[doc(hidden)]
    pub fn write_attempts(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl GuestFs for FatFs {
    fn type_name(&self) -> &'static str {
        self.geo.kind.name()
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

    fn attr(&self, id: NodeId) -> Result<Attr> {
        let node = self.node(id)?;
        let mut attr = node.attr.clone();
        if node.is_dir() {
            if node.dir.get().is_none() {
                // A directory's size and link count need its own entries (so does the
                // kernel's stat). If they cannot be read, stat still answers; the error
                // comes when the directory is listed.
                if let Err(e) = self.read_dir(id) {
                    log::debug!("{e}");
                }
            }
            if let Some(f) = node.dir.get() {
                attr.size = f.size;
                attr.blocks = self.blocks(f.size);
                attr.nlink = f.nlink;
            }
        }
        Ok(attr)
    }

    fn read_dir(&self, dir: NodeId) -> Result<Arc<[DirEntry]>> {
        if let Some(d) = self.dirs.get(&dir) {
            return Ok(d);
        }
        self.list(dir)
    }

    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let node = self.node(id)?;
        let Some(e) = node.entry.as_ref().filter(|_| !node.is_dir()) else {
            return Err(self.err(format!("{}: is a directory", node.show())));
        };
        let size = u64::from(e.size);
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((size - offset).min(usize::MAX as u64) as usize);
        let map = self.cluster_map(&node, e)?;
        let what = |w: String| self.err(format!("file {}: {w}", node.show()));
        let cs = u64::from(self.geo.cluster_size);
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let into = pos % cs;
            let (cluster, count) = map
                .locate(&self.fat, pos / cs, (into + (n - done) as u64).div_ceil(cs))
                .map_err(what)?;
            let len = (n - done).min((count * cs - into).min(usize::MAX as u64) as usize);
            let at = self.geo.cluster_offset(cluster) + into;
            if at + len as u64 > self.volume.size() {
                // The chain covers the size, and clusters lie inside the boot sector's
                // layout: the volume is shorter than that layout.
                return Err(what(format!(
                    "its data stops at offset {}: the volume ends at byte {}, short of the {} bytes its boot sector describes",
                    pos + self.volume.size().saturating_sub(at),
                    self.volume.size(),
                    self.geo.volume_len
                )));
            }
            self.volume.read_at(at, &mut buf[done..done + len]).map_err(|err| {
                what(format!(
                    "reading at offset {pos} (cluster {cluster}, volume offset {at:#x}): {err}"
                ))
            })?;
            done += len;
        }
        Ok(n)
    }

    fn read_link(&self, id: NodeId) -> Result<OsString> {
        let node = self.node(id)?;
        Err(self.err(format!("{}: not a symbolic link (FAT has none)", node.show())))
    }

    fn stats(&self) -> FsStats {
        let free = self.fat.free_clusters().unwrap_or_else(|w| {
            log::warn!("{}: counting free clusters: {w}", self.geo.kind.name());
            0
        });
        FsStats {
            block_size: self.geo.cluster_size,
            blocks: u64::from(self.geo.clusters),
            free_blocks: free,
            // FAT has no inode table; the kernel reports 0 for both too.
            files: 0,
            free_files: 0,
        }
    }
}

#[cfg(test)]
mod tests;
