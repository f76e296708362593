//! Checked little-endian reads, shared by the VMDK structures: a field read past the
//! bytes given is a truncation error naming the structure, never a panic.

use super::VmdkError;
use crate::io::ImageFile;

#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub bytes: &'a [u8],
    pub structure: &'static str,
    pub offset: u64,
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8], structure: &'static str, offset: u64) -> Self {
        Fields {
            bytes,
            structure,
            offset,
        }
    }

    pub fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], VmdkError> {
        at.checked_add(N)
            .and_then(|end| self.bytes.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(VmdkError::Truncated {
                structure: self.structure,
                offset: self.offset,
                len: (at as u64).saturating_add(N as u64),
                file_len: self.offset.saturating_add(self.bytes.len() as u64),
            })
    }

    pub fn u8(&self, at: usize) -> Result<u8, VmdkError> {
        Ok(self.array::<1>(at)?[0])
    }

    pub fn u16(&self, at: usize) -> Result<u16, VmdkError> {
        Ok(u16::from_le_bytes(self.array(at)?))
    }

    pub fn u32(&self, at: usize) -> Result<u32, VmdkError> {
        Ok(u32::from_le_bytes(self.array(at)?))
    }

    pub fn u64(&self, at: usize) -> Result<u64, VmdkError> {
        Ok(u64::from_le_bytes(self.array(at)?))
    }
}

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
