//! Guest filesystems: which one a volume holds ([`probe`]), and readers for those
//! ckptfs reads ([`open`]). Each reader turns a volume (a [`ReadAt`] over one partition) into
//! nodes, directory listings, attributes and file bytes behind one thread-safe trait,
//! [`GuestFs`], that the virtual tree serves to both the CLI and the mount.

pub mod ext4;
pub mod fat;
pub mod ntfs;
pub mod probe;

pub use probe::{FsType, Probe};

use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

use crate::io::ReadAt;
use crate::Result;

/// A node's identity inside one filesystem: the filesystem's own number where it has
/// one (ext4 inode number, NTFS file record number), so hard links share it; a number
/// the reader assigns otherwise (FAT). Stable for the life of the reader.
pub type NodeId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// What `stat` shows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub node: NodeId,
    pub kind: FileKind,
    /// Bytes (for a symlink, the length of its target).
    pub size: u64,
    /// Space allocated, in 512-byte units (`st_blocks`), so that `du` works.
    pub blocks: u64,
    /// Permission bits (`0o7777` at most): the filesystem's own where it has them
    /// (ext4), read-only defaults derived from the node's attributes otherwise.
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// Device number of a character or block device.
    pub rdev: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    /// Inode change time; filesystems without one report the modification time.
    pub ctime: SystemTime,
    /// Creation time, where the filesystem records it.
    pub crtime: Option<SystemTime>,
}

/// One directory entry. `.` and `..` are never listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub node: NodeId,
    pub kind: FileKind,
}

/// One named data stream of a node: an NTFS alternate data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: OsString,
    pub size: u64,
}

/// The largest extended attribute value handed out whole: the kernel's own limit
/// (`XATTR_SIZE_MAX`), so nothing larger could reach a `getxattr` caller anyway.
pub const XATTR_MAX: u64 = 64 << 10;

/// Sizes for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    pub files: u64,
    pub free_files: u64,
}

/// A mounted guest filesystem, read-only.
///
/// Contract for every implementation: methods take `&self` and may be called from many
/// threads at once; they never panic on a damaged filesystem but return an error that
/// says what is wrong (which node, which structure); they never write to the volume;
/// what they read is cached within bounds, so repeated listings and lookups do not
/// re-parse the disk. An unknown `NodeId` is [`crate::Error::NotFound`].
pub trait GuestFs: Send + Sync {
    /// Short name of the filesystem type: "ntfs", "fat12", "fat16", "fat32", "ext2",
    /// "ext3", "ext4".
    fn type_name(&self) -> &'static str;

    /// The volume label, if the filesystem has a non-empty one.
    fn label(&self) -> Option<String>;

    fn root(&self) -> NodeId;

    /// Whether names compare without regard to letter case (NTFS, FAT).
    fn case_insensitive(&self) -> bool;

    fn attr(&self, node: NodeId) -> Result<Attr>;

    /// The entries of directory `dir`, in the filesystem's order. Hidden from the
    /// listing: `.`/`..`, DOS 8.3 duplicate names, and filesystem metadata files (NTFS
    /// `$MFT` and friends).
    fn read_dir(&self, dir: NodeId) -> Result<Arc<[DirEntry]>>;

    /// Read at most `buf.len()` bytes of file `node` at `offset`; returns the count, 0 at
    /// or past the end. Never returns bytes that are not the file's (compressed or
    /// encrypted data the reader cannot decode is an error).
    fn read(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Where up to `len` bytes of file `node` from `offset` lie, as pieces of image files
    /// and zeros (see [`crate::io::ReadAt::pieces`]), and how many bytes they cover
    /// (fewer at the end of the file). `None` (the default) where the bytes are not
    /// stored plainly or the filesystem cannot tell: the caller then uses `read`.
    fn pieces<'a>(
        &'a self,
        _node: NodeId,
        _offset: u64,
        _len: u64,
        _out: &mut Vec<crate::io::Piece<'a>>,
    ) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The target of symlink `node`, as stored.
    fn read_link(&self, node: NodeId) -> Result<OsString>;

    fn stats(&self) -> FsStats;

    /// The names `listxattr` shows for `node`. Filesystems that expose no extended
    /// attributes keep this default: none.
    fn xattr_names(&self, node: NodeId) -> Result<Vec<OsString>> {
        self.attr(node).map(|_| Vec::new())
    }

    /// The value of extended attribute `name` of `node`, `None` if it has none of that
    /// name (which may also be a name `xattr_names` does not list). A value larger than
    /// [`XATTR_MAX`] is [`crate::Error::TooLarge`].
    fn xattr(&self, node: NodeId, name: &OsStr) -> Result<Option<Vec<u8>>> {
        let _ = name;
        self.attr(node).map(|_| None)
    }

    /// The named data streams of `node` (NTFS alternate data streams), which may be far
    /// larger than an extended attribute can be. Default: none.
    fn streams(&self, node: NodeId) -> Result<Vec<StreamInfo>> {
        self.attr(node).map(|_| Vec::new())
    }

    /// Read at most `buf.len()` bytes of stream `name` of `node` at `offset`, as
    /// [`GuestFs::read`] reads the unnamed one.
    fn read_stream(&self, node: NodeId, name: &OsStr, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let _ = (offset, buf);
        self.attr(node)?;
        Err(crate::Error::NotFound(format!("stream {:?}", name.to_string_lossy())))
    }
}

/// Shared handle to a volume's bytes.
pub type Volume = Arc<dyn ReadAt>;

/// Choices the user makes about how filesystems are read.
#[derive(Debug, Clone, Default)]
pub struct FsOptions {
    /// What zone FAT's zone-less local times are in.
    pub fat_time_zone: fat::FatTimeZone,
}

/// Open the filesystem `kind` on `volume`.
pub fn open(kind: FsType, volume: Volume, opts: &FsOptions) -> Result<Arc<dyn GuestFs>> {
    Ok(match kind {
        FsType::Ext => Arc::new(ext4::open(volume)?),
        FsType::Fat => Arc::new(fat::open(volume, opts.fat_time_zone)?),
        FsType::Ntfs => Arc::new(ntfs::open(volume)?),
    })
}
