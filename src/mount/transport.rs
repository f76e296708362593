//! How ckptfs talks to the kernel's FUSE: what it negotiates at init, how it opens
//! files, how it replies to reads, and the readahead it raises afterwards. The
//! benchmark's no-I/O server (`examples/null_fuse.rs`) uses these same functions, so
//! that it measures the transport ckptfs actually runs on.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use fuser::{FopenFlags, InitFlags, KernelConfig};

use super::mountinfo;

/// Readahead and largest read request asked of the kernel: 255 pages, so that a whole
/// reply and its header fit a 1 MiB pipe (the most a process without CAP_SYS_RESOURCE
/// may have, root in a container included) and replies can be spliced (`splice.rs`).
pub const MAX_READ: u32 = (1 << 20) - 4096;

/// How many background (readahead) requests the kernel may queue for `threads`.
pub fn max_background(threads: usize) -> u16 {
    threads.clamp(16, usize::from(u16::MAX)) as u16
}

/// The init handshake: 1 MiB reads and readahead where the kernel allows, a queue for
/// every serving thread, and the capabilities a read-only tree benefits from. With
/// `direct_io`, files may still be mmapped (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6+;
/// older kernels refuse mmap of direct-I/O files).
pub fn negotiate(config: &mut KernelConfig, max_background: u16, direct_io: bool) {
    // The kernel offers its current readahead as the ceiling; take as much of MAX_READ
    // as it allows (`raise_readahead` raises the ceiling itself afterwards where it can).
    if let Err(max) = config.set_max_readahead(MAX_READ) {
        let _ = config.set_max_readahead(max);
    }
    // For a read-only filesystem max_write only sizes requests through max_pages:
    // MAX_READ reads where the kernel's page limit allows.
    let _ = config.set_max_write(MAX_READ);
    let _ = config.set_max_background(max_background);
    let mut caps = vec![
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_CACHE_SYMLINKS,
        InitFlags::FUSE_PARALLEL_DIROPS,
    ];
    if direct_io {
        caps.push(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
    }
    for cap in caps {
        if config.add_capabilities(cap).is_err() {
            log::debug!("the kernel does not offer {cap:?}");
        }
    }
}

/// How a regular file is opened. By default its pages stay cached across opens (the
/// bytes never change during a mount); with `direct_io` reads bypass the kernel's page
/// cache for the file and go straight into the reader's buffer, one copy fewer, at the
/// price of no caching between reads (see README "Speed").
pub fn file_open_flags(direct_io: bool) -> FopenFlags {
    if direct_io {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::FOPEN_KEEP_CACHE
    }
}

/// Largest read the kernel sends (256 pages), rounded up to a huge page.
pub const READ_BUF_SIZE: usize = 2 << 20;

/// A serving thread's read buffer: one 2 MiB-aligned allocation advised as a huge
/// page (MADV_HUGEPAGE: with transparent huge pages in `madvise` mode, the default on
/// Debian, alignment alone does not make one). Replying copies the data out of it in
/// the kernel, which first pins the buffer's pages: one page instead of 512.
struct ReadBuf(std::ptr::NonNull<u8>);

impl ReadBuf {
    fn new() -> Self {
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: posix_memalign with a power-of-two alignment; the result is checked.
        let rc = unsafe { libc::posix_memalign(&mut p, READ_BUF_SIZE, READ_BUF_SIZE) };
        assert!(rc == 0 && !p.is_null(), "cannot allocate the read buffer");
        // Before the first touch, so that the first fault maps a huge page. A kernel
        // without THP refuses the advice; the buffer then works with small pages.
        // SAFETY: `p` is a live allocation of READ_BUF_SIZE bytes.
        if unsafe { libc::madvise(p, READ_BUF_SIZE, libc::MADV_HUGEPAGE) } != 0 {
            log::debug!("MADV_HUGEPAGE refused: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `p` points to READ_BUF_SIZE bytes we own; initialise them once.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0, READ_BUF_SIZE) };
        ReadBuf(std::ptr::NonNull::new(p as *mut u8).expect("checked above"))
    }

    fn get(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: the allocation holds READ_BUF_SIZE initialised bytes, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), len.min(READ_BUF_SIZE)) }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign in `new`, freed once.
        unsafe { libc::free(self.0.as_ptr() as *mut libc::c_void) };
    }
}

thread_local! {
    /// Each serving thread's read buffer, reused so that a 1 MiB read does not map and
    /// fault in fresh pages every time.
    static READ_BUF: RefCell<ReadBuf> = RefCell::new(ReadBuf::new());
}

/// Run `f` on a buffer of `len` bytes for answering a read: the thread's huge-page
/// buffer where it fits, else a fresh one (only where the kernel allows requests
/// above 2 MiB, through a raised max_pages_limit).
pub fn with_read_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    if len <= READ_BUF_SIZE {
        READ_BUF.with_borrow_mut(|buf| f(buf.get(len)))
    } else {
        f(&mut vec![0u8; len])
    }
}

/// The kernel offers FUSE at most its default readahead (128 KiB) in the init
/// handshake; root may raise it through the mount's backing device afterwards, so
/// that sequential reads arrive as MAX_READ requests.
pub fn raise_readahead(mountpoint: &Path) {
    let Some(m) = mountinfo::find(mountpoint) else {
        return;
    };
    let path = PathBuf::from(format!("/sys/class/bdi/{}/read_ahead_kb", m.device));
    match std::fs::write(&path, format!("{}\n", MAX_READ / 1024)) {
        Ok(()) => log::debug!("{}: readahead {} KiB", mountpoint.display(), MAX_READ / 1024),
        Err(e) => log::debug!("{}: readahead stays at the kernel's: {e}", path.display()),
    }
}
