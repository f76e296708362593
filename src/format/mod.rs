//! Format readers: each answers, for a range of one checkpoint state's virtual disk,
//! "the bytes are at this file offset", "they are zeros" or "ask the parent". They do
//! not follow parents themselves: the checkpoint disk in [`crate::chain`] does, so that
//! depth handling and caching live in one place.

pub mod vhdx;

use std::fmt::Debug;
use std::path::Path;

use crate::Result;

/// Where the bytes of a guest range come from, as one layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Stored in this layer's file, starting at this offset.
    Data { file_offset: u64 },
    /// Defined as zeros by this layer.
    Zero,
    /// Not in this layer: the parent's bytes show through (zeros if there is no parent).
    Parent,
}

/// A run of `len` guest bytes with one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub len: u64,
    pub source: Source,
}

/// One checkpoint state as a single file stores it, without its ancestors.
///
/// Contract: `map` covers exactly the requested range with runs, in order, or returns an
/// error naming the file and the damaged structure; it never panics. Implementations are
/// shared between threads.
pub trait Layer: Send + Sync + Debug {
    /// The file holding this state.
    fn path(&self) -> &Path;

    fn virtual_size(&self) -> u64;

    fn logical_sector_size(&self) -> u32;

    /// Describe `offset..offset + len` (within the virtual size, both multiples of the
    /// logical sector size) by appending runs to `out`.
    fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()>;

    /// Read bytes that [`Layer::map`] placed at `file_offset`.
    fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()>;
}
