//! A window onto part of another reader: a partition of a disk.

use std::sync::Arc;

use super::{check_range, Piece, ReadAt};
use crate::Result;

pub struct Slice {
    inner: Arc<dyn ReadAt>,
    start: u64,
    len: u64,
}

impl Slice {
    /// Bytes `start..start + len` of `inner`, cut to what `inner` holds.
    pub fn new(inner: Arc<dyn ReadAt>, start: u64, len: u64) -> Self {
        let len = len.min(inner.size().saturating_sub(start));
        Slice { inner, start, len }
    }
}

impl ReadAt for Slice {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len)?;
        self.inner.read_at(self.start + offset, buf)
    }

    fn pieces<'a>(&'a self, offset: u64, len: u64, out: &mut Vec<Piece<'a>>) -> Result<bool> {
        check_range(offset, len as usize, self.len)?;
        self.inner.pieces(self.start + offset, len, out)
    }
}
