//! Read replies without copying the data through ckptfs: the pieces of image files
//! behind a read are spliced into a pipe (page references move, bytes do not), zeros
//! come from a static zero buffer, and the whole reply is spliced into `/dev/fuse`
//! (fuser patch `ReplyData::data_spliced`, see vendor/README.md). The kernel then
//! copies each byte once, from the image file's page cache into FUSE's pages (or the
//! reader's buffer under `-o direct_io`), as the no-I/O server's reply does; the copy
//! path (`pread` into a buffer, then `write`) copies every byte twice.
//!
//! A reply must fit its pipe whole: one slot per page it spans, plus one for the header.
//! Pipes may hold 1 MiB (256 slots) without CAP_SYS_RESOURCE, so requests are capped at
//! 255 pages (`transport::MAX_READ`). A reply that would need more slots (many small
//! pieces), or whose bytes are not stored plainly (resident or compressed NTFS data, a
//! VHDX log replayed in memory, FAT files so far), takes the copy path.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use fuser::ReplyData;

use crate::io::Piece;
use crate::vfs::{Ino, Vfs};

/// The pipe: 1 MiB, the default `/proc/sys/fs/pipe-max-size`.
const PIPE_SIZE: libc::c_int = 1 << 20;
const PAGE: u64 = 4096;
/// Pipe slots, one per page spanned by a piece, and one for the reply header.
const PIPE_SLOTS: u64 = PIPE_SIZE as u64 / PAGE;

/// Zeros to vmsplice from, page-aligned so that each page of it fills one slot.
#[repr(C, align(4096))]
struct Zeros([u8; 64 * 1024]);
static ZEROS: Zeros = Zeros([0; 64 * 1024]);

/// Pipe slots the pieces take: a piece of a file takes one per page it touches; zeros
/// one per page (the zero buffer is page-aligned).
fn slots(pieces: &[Piece<'_>]) -> u64 {
    pieces
        .iter()
        .map(|p| match *p {
            Piece::File { offset, len, .. } => (offset + len).div_ceil(PAGE) - offset / PAGE,
            Piece::Zero { len } => len.div_ceil(PAGE),
        })
        .sum::<u64>()
        + 1
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // Non-blocking, so that a pipe filled past its room fails instead of waiting for
        // a reader that is this very thread.
        // SAFETY: pipe2 writes two descriptors into the array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
        if unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) } < PIPE_SIZE {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe { read, write })
    }
}

enum State {
    Untried,
    Ready(Pipe),
    /// This thread cannot have a large enough pipe (not root): the copy path answers.
    Unavailable,
}

thread_local! {
    static PIPE: RefCell<State> = const { RefCell::new(State::Untried) };
}

/// Answer a read of `size` bytes of `ino` at `offset` by splicing, if its bytes are
/// stored plainly and this thread has a pipe. Gives the reply back where it did not
/// answer, for the copy path.
pub fn reply(vfs: &Vfs, ino: Ino, offset: u64, size: u32, reply: ReplyData) -> Option<ReplyData> {
    PIPE.with_borrow_mut(|state| {
        if matches!(state, State::Untried) {
            *state = match Pipe::new() {
                Ok(p) => State::Ready(p),
                Err(e) => {
                    log::debug!("no pipe for spliced replies ({e}); reads are copied");
                    State::Unavailable
                }
            };
        }
        let State::Ready(pipe) = state else {
            return Some(reply);
        };
        let mut pieces = Vec::new();
        let n = match vfs.pieces(ino, offset, u64::from(size), &mut pieces) {
            Ok(Some(n)) if n > 0 && slots(&pieces) <= PIPE_SLOTS => n,
            // Nothing to splice, too many slots, not stored plainly, or an error the
            // copy path reports.
            _ => return Some(reply),
        };
        let fds = (pipe.read.as_fd(), pipe.write.as_fd());
        match reply.data_spliced(fds, n as usize, |w| fill(w, &pieces)) {
            Ok(()) => None,
            Err((reply, e)) => {
                log::debug!("spliced reply failed, copying instead: {e}");
                // The pipe may hold part of the reply: start the next one on a new pipe.
                *state = State::Untried;
                Some(reply)
            }
        }
    })
}

/// Put exactly the bytes of `pieces` into the pipe `w`.
fn fill(w: BorrowedFd<'_>, pieces: &[Piece<'_>]) -> io::Result<()> {
    for piece in pieces {
        match *piece {
            Piece::File { file, offset, len } => {
                let mut off = i64::try_from(offset).map_err(io::Error::other)?;
                let mut left = len as usize;
                while left > 0 {
                    // SAFETY: both descriptors are open; `off` is a live i64 the kernel
                    // advances.
                    let n = unsafe {
                        libc::splice(
                            file.as_fd().as_raw_fd(),
                            &mut off,
                            w.as_raw_fd(),
                            std::ptr::null_mut(),
                            left,
                            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                        )
                    };
                    match n {
                        n if n < 0 => return Err(io::Error::last_os_error()),
                        0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                        n => left -= n as usize,
                    }
                }
            }
            Piece::Zero { len } => {
                let mut left = len as usize;
                while left > 0 {
                    let chunk = left.min(ZEROS.0.len());
                    let iov = libc::iovec {
                        iov_base: ZEROS.0.as_ptr() as *mut libc::c_void,
                        iov_len: chunk,
                    };
                    // SAFETY: the iovec points into a static that is never written, so
                    // the pages the pipe references stay zeros.
                    let n = unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
                    match n {
                        n if n < 0 => return Err(io::Error::last_os_error()),
                        0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                        n => left -= n as usize,
                    }
                }
            }
        }
    }
    Ok(())
}
