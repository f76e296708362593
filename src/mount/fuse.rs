//! The `fuser::Filesystem` adapter: FUSE requests answered from the virtual tree.
//!
//! Every answer comes from [`Vfs`]; this module adds only what FUSE needs on top:
//! attribute conversion, cache lifetimes, directory handles with stable offsets, and a
//! refusal of every write.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, PollEvents, PollFlags,
    PollNotifier, RenameFlags, ReplyAttr, ReplyBmap, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};

use super::transport;
use crate::cache::Cache;
use crate::fs::{Attr, FileKind};
use crate::vfs::{Entry, Ino, Vfs, ROOT};
use crate::Error;

/// How long the kernel may keep attributes, names and negative lookups. Nothing ckptfs
/// serves changes during a mount (see "Caching" in README.md), so the only bound is
/// memory, which the kernel reclaims on its own.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// `st_blksize`: what `cp` and friends take as the preferred I/O size.
const BLKSIZE: u32 = 128 * 1024;

/// Longest file name any supported filesystem stores, in bytes, as `statfs` reports it.
const NAME_MAX: u32 = 255;

/// Directories whose parent is remembered for `..` entries (the most recently seen;
/// an evicted one names itself as its parent, which no tool relies on).
const REMEMBERED_PARENTS: usize = 1 << 16;

/// EIO reasons remembered so that each is logged once; past this many the memory
/// starts over, so that a long session stays bounded.
const REMEMBERED_ERRORS: usize = 4096;

pub struct CkptFs {
    vfs: Arc<Vfs>,
    /// Open directories: a listing taken at `opendir`, so that offsets stay valid
    /// however the kernel splits the reads.
    dirs: Mutex<HashMap<u64, Arc<[Entry]>>>,
    next_dir: AtomicU64,
    /// Directory → its parent, learned from lookups and listings, for `..` entries.
    parents: Cache<Ino, Ino>,
    /// EIO reasons already logged.
    logged: Mutex<HashSet<String>>,
    max_background: u16,
    /// Open files with FOPEN_DIRECT_IO (`-o direct_io`).
    direct_io: bool,
    /// Answer reads by splicing where possible (off with `-o nosplice`).
    splice: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is one map operation: a panic cannot leave it half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CkptFs {
    /// `threads`: how many requests are served at once, which sizes the kernel's queue
    /// of background (readahead) requests. `direct_io`: see [`transport::file_open_flags`].
    pub fn new(vfs: Arc<Vfs>, threads: usize, direct_io: bool, splice: bool) -> Self {
        CkptFs {
            vfs,
            dirs: Mutex::new(HashMap::new()),
            next_dir: AtomicU64::new(1),
            parents: Cache::new(REMEMBERED_PARENTS),
            logged: Mutex::new(HashSet::new()),
            max_background: transport::max_background(threads),
            direct_io,
            splice,
        }
    }

    /// The errno for `e`. An EIO means damaged or unreadable data, so its reason is
    /// logged (once per distinct reason: a file manager retries the same broken
    /// directory many times); other errors are ordinary answers.
    fn errno(&self, op: &str, ino: Ino, e: &Error) -> Errno {
        let n = e.errno();
        if n == libc::EIO {
            let msg = format!("{op} (node {ino}): {e}");
            let mut logged = lock(&self.logged);
            if logged.len() >= REMEMBERED_ERRORS {
                logged.clear();
            }
            if logged.insert(msg.clone()) {
                log::warn!("{msg}");
            } else {
                log::debug!("{msg}");
            }
        } else {
            log::debug!("{op} (node {ino}): {e}");
        }
        Errno::from_i32(n)
    }

    fn note_dir(&self, dir: Ino, parent: Ino) {
        if dir != ROOT {
            self.parents.put(dir, parent);
        }
    }

    /// The listing of `ino` with `.` and `..` first, as `readdir(3)` users expect.
    fn listing(&self, ino: Ino) -> crate::Result<Arc<[Entry]>> {
        let entries = self.vfs.readdir(ino)?;
        let parent = if ino == ROOT {
            ROOT
        } else {
            self.parents.get(&ino).unwrap_or(ino)
        };
        let mut out = Vec::with_capacity(entries.len() + 2);
        out.push(Entry {
            name: ".".into(),
            ino,
            kind: FileKind::Dir,
        });
        out.push(Entry {
            name: "..".into(),
            ino: parent,
            kind: FileKind::Dir,
        });
        for e in entries {
            if e.kind == FileKind::Dir {
                self.note_dir(e.ino, ino);
            }
            out.push(e);
        }
        Ok(out.into())
    }

    /// The listing behind a directory handle; a handle the kernel never got from us
    /// (cannot happen) is answered by listing again.
    fn dir_entries(&self, ino: Ino, fh: FileHandle) -> crate::Result<Arc<[Entry]>> {
        match lock(&self.dirs).get(&fh.0) {
            Some(entries) => Ok(entries.clone()),
            None => self.listing(ino),
        }
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.node),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime.unwrap_or(a.mtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// Attributes for a listed entry whose own attributes failed: enough for the kernel to
/// show the name, and given with no cache lifetime so that using it asks again and
/// gets the error.
fn placeholder_attr(e: &Entry) -> FileAttr {
    file_attr(&Attr {
        node: e.ino,
        kind: e.kind,
        size: 0,
        blocks: 0,
        perm: 0,
        uid: 0,
        gid: 0,
        nlink: 1,
        rdev: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: None,
    })
}

/// The xattr protocol: a size-0 request asks how large the value is; a buffer too small
/// for it is ERANGE.
fn reply_sized(reply: ReplyXattr, size: u32, value: &[u8]) {
    match u32::try_from(value.len()) {
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len <= size => reply.data(value),
        Ok(_) => reply.error(Errno::ERANGE),
        Err(_) => reply.error(Errno::E2BIG),
    }
}

impl Filesystem for CkptFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        transport::negotiate(config, self.max_background, self.direct_io);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name) {
            Ok(a) => {
                if a.kind == FileKind::Dir {
                    self.note_dir(a.node, parent.0);
                }
                reply.entry(&TTL, &file_attr(&a), Generation(0));
            }
            // A negative entry (node 0) lets the kernel remember the absence too: shells
            // and file managers probe for the same missing names over and over.
            Err(Error::NotFound(_)) => {
                let mut none = placeholder_attr(&Entry {
                    name: name.into(),
                    ino: 0,
                    kind: FileKind::File,
                });
                none.ino = INodeNo(0);
                reply.entry(&TTL, &none, Generation(0));
            }
            Err(e) => reply.error(self.errno("lookup", parent.0, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(self.errno("getattr", ino.0, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(target) => reply.data(target.as_encoded_bytes()),
            Err(e) => reply.error(self.errno("readlink", ino.0, &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.vfs.getattr(ino.0) {
            Ok(a) if a.kind == FileKind::Dir => reply.error(Errno::EISDIR),
            // The bytes never change during a mount, so pages read through an earlier
            // open stay valid (unless reads bypass the page cache: `-o direct_io`).
            Ok(_) => reply.opened(FileHandle(0), transport::file_open_flags(self.direct_io)),
            Err(e) => reply.error(self.errno("open", ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let reply = if self.splice {
            match super::splice::reply(&self.vfs, ino.0, offset, size, reply) {
                Some(reply) => reply,
                None => return,
            }
        } else {
            reply
        };
        let fill = |buf: &mut [u8]| -> Result<usize, crate::Error> {
            // A short answer means end of file to the kernel, so keep reading until the
            // request is filled or the file ends. An error fails the whole request:
            // partial data would be padded with zeros.
            let mut done = 0;
            while done < buf.len() {
                match self.vfs.read(ino.0, offset + done as u64, &mut buf[done..])? {
                    0 => break,
                    n => done += n,
                }
            }
            Ok(done)
        };
        transport::with_read_buf(size as usize, |buf| match fill(buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(self.errno("read", ino.0, &e)),
        });
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino.0) {
            Ok(entries) => {
                let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
                lock(&self.dirs).insert(fh, entries);
                // Listings never change: the kernel may cache them and keep them across opens.
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                );
            }
            Err(e) => reply.error(self.errno("opendir", ino.0, &e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.dir_entries(ino.0, fh) {
            Ok(e) => e,
            Err(e) => return reply.error(self.errno("readdir", ino.0, &e)),
        };
        // Offset n means "after the n-th entry", so entry i carries i + 1.
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, file_type(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let entries = match self.dir_entries(ino.0, fh) {
            Ok(e) => e,
            Err(e) => return reply.error(self.errno("readdirplus", ino.0, &e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let (attr, ttl) = match self.vfs.getattr(e.ino) {
                Ok(a) => (file_attr(&a), TTL),
                Err(err) => {
                    self.errno("readdirplus", e.ino, &err);
                    (placeholder_attr(e), Duration::ZERO)
                }
            };
            if reply.add(INodeNo(e.ino), i as u64 + 1, &e.name, &ttl, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.vfs.stats(ino.0) {
            Ok(s) => {
                let bsize = s.block_size.max(512);
                // Free space is reported as the guest saw it, so `df` tells how full each
                // volume was in that checkpoint; none of it is writable here.
                reply.statfs(
                    s.blocks,
                    s.free_blocks,
                    s.free_blocks,
                    s.files,
                    s.free_files,
                    bsize,
                    NAME_MAX,
                    bsize,
                )
            }
            Err(e) => reply.error(self.errno("statfs", ino.0, &e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name) {
            Ok(Some(value)) => reply_sized(reply, size, &value),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(self.errno("getxattr", ino.0, &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for n in names {
                    list.extend_from_slice(n.as_encoded_bytes());
                    list.push(0);
                }
                reply_sized(reply, size, &list)
            }
            Err(e) => reply.error(self.errno("listxattr", ino.0, &e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        match self.vfs.getattr(ino.0) {
            // Without `-o default_permissions` whoever may use the mount reads
            // everything, so only execution is refused, for files nobody may run.
            Ok(a) if mask.contains(AccessFlags::X_OK) && a.kind != FileKind::Dir && a.perm & 0o111 == 0 => {
                reply.error(Errno::EACCES)
            }
            Ok(_) => reply.ok(),
            Err(e) => reply.error(self.errno("access", ino.0, &e)),
        }
    }

    // Operations a plain file does not support. For poll, lseek (SEEK_DATA/SEEK_HOLE)
    // and bmap, ENOSYS makes the kernel answer by itself from then on; answering here
    // also spares the log fuser's "not implemented" warnings.

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _offset: i64, _whence: i32, reply: ReplyLseek) {
        reply.error(Errno::ENOSYS);
    }

    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        reply.error(Errno::ENOSYS);
    }

    // Every change is refused. The mount is also read-only for the kernel (MS_RDONLY),
    // which refuses most of these before they get here; these answers make sure.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _link_name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}
