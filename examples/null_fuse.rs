//! The FUSE transport's ceiling, for scripts/bench.sh: a FUSE server that does no I/O.
//! It serves one file, `/big.bin`, whose reads are answered from the thread's reply
//! buffer without touching any disk, through ckptfs's own transport: the same mount
//! options (`MountOptions::config`), init handshake, open flags, huge-page reply buffer
//! and raised readahead. Whatever ckptfs reads slower than this, it loses in its own
//! work, not in FUSE. Dev tool, not part of ckptfs.
//!
//! ```text
//! null_fuse MOUNTPOINT SIZE_BYTES [direct_io]    # foreground; `umount MOUNTPOINT` ends it
//! ```

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ckptfs::mount::transport;
use ckptfs::mount::MountOptions;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, KernelConfig, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen, Request,
};

const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
const ROOT: u64 = 1;
const FILE: u64 = 2;
const NAME: &str = "big.bin";
const THREADS: usize = 16;
const ENTRIES: [(u64, &str); 3] = [(ROOT, "."), (ROOT, ".."), (FILE, NAME)];

struct NullFs {
    size: u64,
    direct_io: bool,
}

impl NullFs {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, perm, nlink) = if ino == ROOT {
            (FileType::Directory, 0, 0o555, 2)
        } else {
            (FileType::RegularFile, self.size, 0o444, 1)
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        transport::negotiate(config, transport::max_background(THREADS), self.direct_io);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == ROOT && name == NAME {
            reply.entry(&TTL, &self.attr(FILE), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            ROOT | FILE => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match ino.0 {
            FILE => reply.opened(FileHandle(0), transport::file_open_flags(self.direct_io)),
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let n = u64::from(size).min(self.size.saturating_sub(offset)) as usize;
        transport::with_read_buf(n, |buf| reply.data(buf));
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        for (i, (ino, name)) in ENTRIES.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, self.attr(*ino).kind, name) {
                break;
            }
        }
        reply.ok();
    }

    // ckptfs's handshake asks for READDIRPLUS, so `ls` comes here.
    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        for (i, (ino, name)) in ENTRIES.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, name, &TTL, &self.attr(*ino), Generation(0)) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 || args.get(2).is_some_and(|a| a != "direct_io") {
        eprintln!("usage: null_fuse MOUNTPOINT SIZE_BYTES [direct_io]");
        std::process::exit(2);
    }
    let mountpoint = PathBuf::from(&args[0]);
    let size: u64 = args[1].parse().expect("SIZE_BYTES is a number");
    let direct_io = args.len() == 3;
    let config = MountOptions::default().config(&PathBuf::from("null"), THREADS);
    let session = fuser::Session::new(NullFs { size, direct_io }, &mountpoint, &config)?;
    transport::raise_readahead(&mountpoint);
    session.run()
}
