//! Positional, thread-safe reads: the one interface every stage of the data path
//! (image file → format layer → checkpoint disk → partition → filesystem) is built on.

pub mod cursor;
mod image_file;
mod slice;

pub use cursor::Cursor;
pub use image_file::ImageFile;
pub use slice::Slice;

use crate::Result;

/// Where a range of bytes lies when it is stored plainly: part of an image file, or
/// zeros. Lets the mount reply to a read by moving the image file's pages into FUSE
/// (splice) instead of copying the bytes through a buffer.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    File { file: &'a ImageFile, offset: u64, len: u64 },
    Zero { len: u64 },
}

/// A byte-addressed source that many threads may read at once.
///
/// Contract, for every implementation:
/// - `read_at` fills the whole of `buf` or returns an error; it never returns short data;
/// - it must not panic for any `offset`/`buf` combination: a range that ends past
///   [`ReadAt::size`] is an [`Error::OutOfRange`](crate::Error::OutOfRange);
/// - it never writes to the underlying image.
pub trait ReadAt: Send + Sync {
    /// Total number of readable bytes.
    fn size(&self) -> u64;

    /// Fill `buf` with the bytes at `offset..offset + buf.len()`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Describe `offset..offset + len` (inside [`ReadAt::size`]) as pieces of image
    /// files and zeros appended to `out`, in order, when every byte of it is stored
    /// plainly (not decompressed, not patched in memory). `Ok(false)`: it is not, or
    /// this reader cannot tell; `out` may then hold a partial answer, and the caller
    /// reads with [`ReadAt::read_at`] instead. An error is one `read_at` would give too.
    fn pieces<'a>(&'a self, _offset: u64, _len: u64, _out: &mut Vec<Piece<'a>>) -> Result<bool> {
        Ok(false)
    }
}

/// Check that `offset..offset+len` lies inside `0..size`; the shared bounds check of
/// every [`ReadAt`] implementation.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(crate::Error::OutOfRange {
            offset,
            len: len as u64,
            size,
        }),
    }
}
