//! Positional, thread-safe reads: the one interface every stage of the data path
//! (image file → format layer → checkpoint disk → partition → filesystem) is built on.

pub mod cursor;
mod image_file;
mod slice;

pub use cursor::Cursor;
pub use image_file::ImageFile;
pub use slice::Slice;

use crate::Result;

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
