//! Checked big-endian field reads: every VHD structure is big-endian. The reads are
//! [`crate::bytes::Fields`]'s (`be16`, `be32`, ...), whose truncation error converts
//! into [`VhdError::Truncated`]; this adds what only VHD structures need.

use uuid::Uuid;

pub use crate::bytes::Fields;

use super::VhdError;

/// The checks every VHD structure opens with, and its UUIDs.
pub trait VhdFields {
    /// The structure's cookie at offset 0 must be `cookie`, and the checksum stored at
    /// `checksum_at` must match its bytes.
    fn check_cookie_and_checksum(&self, cookie: &'static [u8; 8], checksum_at: usize) -> Result<(), VhdError>;

    /// A UUID in RFC 4122 byte order, as VHD stores them.
    fn uuid(&self, at: usize) -> Result<Uuid, VhdError>;
}

impl VhdFields for Fields<'_> {
    fn check_cookie_and_checksum(&self, cookie: &'static [u8; 8], checksum_at: usize) -> Result<(), VhdError> {
        let found: [u8; 8] = self.array(0)?;
        if &found != cookie {
            return Err(VhdError::Cookie {
                structure: self.structure,
                offset: self.offset,
                expected: std::str::from_utf8(cookie).unwrap_or("?"),
                found: String::from_utf8_lossy(&found).escape_debug().to_string(),
            });
        }
        let stored = self.be32(checksum_at)?;
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

    fn uuid(&self, at: usize) -> Result<Uuid, VhdError> {
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
        assert_eq!(f.be16(0).unwrap(), 0x1234);
        assert_eq!(f.be32(1).unwrap(), 0x3456_789A);
        let e = VhdError::from(f.be32(2).unwrap_err()).to_string();
        assert!(e.contains("thing at offset 0x200"), "{e}");
        assert!(f.be64(usize::MAX - 2).is_err());
    }

    #[test]
    fn checksum_skips_its_field() {
        let mut b = vec![1u8; 16];
        b[4..8].copy_from_slice(&[0xFF; 4]);
        assert_eq!(checksum(&b, 4), !12u32);
        assert_eq!(code_text(*b"tap\0"), "tap\\x00");
    }
}
