//! Checked reads for the VMDK structures: fields through [`crate::bytes::Fields`]
//! (`le32`, `le64`, ...; a truncation converts into [`VmdkError::Truncated`]), and
//! reads of whole structures from the file, all inside it.

pub use crate::bytes::Fields;

use super::VmdkError;
use crate::io::ImageFile;

/// Read `len` bytes at `offset` of `file`, all inside it, else a truncation error
/// naming `structure`.
pub fn read_vec(file: &ImageFile, offset: u64, len: usize, structure: &'static str) -> Result<Vec<u8>, VmdkError> {
    check_inside(file.len(), offset, len as u64, structure)?;
    let mut b = vec![0u8; len];
    read_into(file, offset, &mut b)?;
    Ok(b)
}

pub fn read_into(file: &ImageFile, offset: u64, buf: &mut [u8]) -> Result<(), VmdkError> {
    file.read_exact_at(offset, buf).map_err(|source| VmdkError::Io {
        offset,
        len: buf.len() as u64,
        source,
    })
}

/// `offset..offset + len` must lie inside a file of `file_len` bytes.
pub fn check_inside(file_len: u64, offset: u64, len: u64, structure: &'static str) -> Result<(), VmdkError> {
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(VmdkError::Truncated {
            structure,
            offset,
            len,
            file_len,
        });
    }
    Ok(())
}

/// Little-endian u32 entries of a table.
pub fn u32_entries(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian u64 entries of a table.
pub fn u64_entries(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}
