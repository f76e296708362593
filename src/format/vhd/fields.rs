//! Checked big-endian field reads: every VHD structure is big-endian, and a field read
//! past the end of the bytes given is a truncation error naming the structure, never a
//! panic.

use uuid::Uuid;

use super::VhdError;

/// The bytes of one structure, with where it was read from (for messages).
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

    /// `N` bytes at `at`.
    /// The structure's cookie at offset 0 must be `cookie`, and the checksum stored at
    /// `checksum_at` must match its bytes: the two checks every VHD structure opens with.
    pub fn check_cookie_and_checksum(&self, cookie: &'static [u8; 8], checksum_at: usize) -> Result<(), VhdError> {
        let found: [u8; 8] = self.array(0)?;
        if &found != cookie {
            return Err(VhdError::Cookie {
                structure: self.structure,
                offset: self.offset,
                expected: std::str::from_utf8(cookie).unwrap_or("?"),
                found: String::from_utf8_lossy(&found).escape_debug().to_string(),
            });
        }
        let stored = self.u32(checksum_at)?;
        let computed = checksum(self.bytes, checksum_at);
        if stored != computed {
            return Err(VhdError::Checksum {
                structure: self.structure,
                offset: self.offset,
                stored,
                computed,
            });
        }
        Ok(())
    }

    pub fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], VhdError> {
        at.checked_add(N)
            .and_then(|end| self.bytes.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(VhdError::Truncated {
                structure: self.structure,
                offset: self.offset,
                len: (at as u64).saturating_add(N as u64),
                file_len: self.offset.saturating_add(self.bytes.len() as u64),
            })
    }

    pub fn u8(&self, at: usize) -> Result<u8, VhdError> {
        Ok(self.array::<1>(at)?[0])
    }

    pub fn u16(&self, at: usize) -> Result<u16, VhdError> {
        Ok(u16::from_be_bytes(self.array(at)?))
    }

    pub fn u32(&self, at: usize) -> Result<u32, VhdError> {
        Ok(u32::from_be_bytes(self.array(at)?))
    }

    pub fn u64(&self, at: usize) -> Result<u64, VhdError> {
        Ok(u64::from_be_bytes(self.array(at)?))
    }

    /// A UUID in RFC 4122 byte order, as VHD stores them.
    pub fn uuid(&self, at: usize) -> Result<Uuid, VhdError> {
        Ok(Uuid::from_bytes(self.array(at)?))
    }
}

/// One's complement of the byte sum of `b`, with the 4-byte checksum field at `at`
/// counted as zero (the footer's and the dynamic header's checksum).
pub fn checksum(b: &[u8], at: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(at..at.saturating_add(4)).contains(i))
        .fold(0u32, |s, (_, &x)| s.wrapping_add(u32::from(x)));
    !sum
}

/// Four-character codes as text: `"vpc "`, `"W2ku"`; other bytes escaped.
pub fn code_text(code: [u8; 4]) -> String {
    code.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_reports_truncation() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9A];
        let f = Fields::new(&b, "thing", 0x200);
        assert_eq!(f.u16(0).unwrap(), 0x1234);
        assert_eq!(f.u32(1).unwrap(), 0x3456_789A);
        let e = f.u32(2).unwrap_err().to_string();
        assert!(e.contains("thing at offset 0x200"), "{e}");
        assert!(f.u64(usize::MAX - 2).is_err());
    }

    #[test]
    fn checksum_skips_its_field() {
        let mut b = vec![1u8; 16];
        b[4..8].copy_from_slice(&[0xFF; 4]);
        assert_eq!(checksum(&b, 4), !12u32);
        assert_eq!(code_text(*b"tap\0"), "tap\\x00");
    }
}
