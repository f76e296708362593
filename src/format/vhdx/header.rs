//! The header section (MS-VHDX 2.2.1, 2.2.2): the file type identifier at 0 and the two
//! 4 KiB headers at 64 KiB and 128 KiB, of which the valid one with the higher sequence
//! number is current.

use uuid::Uuid;

use super::VhdxError;
use crate::bytes::{guid, le_u16, le_u32, le_u64, utf16le_until_nul};

pub const FILE_IDENTIFIER_OFFSET: u64 = 0;
pub const FILE_IDENTIFIER_SIZE: usize = 8 + 512;
pub const HEADER_OFFSETS: [u64; 2] = [64 * 1024, 128 * 1024];
pub const HEADER_SIZE: usize = 4096;

const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
const HEADER_SIGNATURE: &[u8; 4] = b"head";
const MIB: u64 = 1 << 20;

/// The file type identifier: only the creator string is of interest.
#[derive(Debug, Clone)]
pub struct FileIdentifier {
    pub creator: String,
}

/// Check the signature alone: the first 8 bytes of the file (fewer in a shorter file).
pub fn parse_file_identifier_signature(b: &[u8]) -> Result<(), VhdxError> {
    if b.len() < 8 || &b[..8] != FILE_SIGNATURE {
        let shown = &b[..b.len().min(8)];
        return Err(VhdxError::NotVhdx {
            found: String::from_utf8_lossy(shown).into_owned(),
        });
    }
    Ok(())
}

pub fn parse_file_identifier(b: &[u8]) -> Result<FileIdentifier, VhdxError> {
    parse_file_identifier_signature(b)?;
    if b.len() < FILE_IDENTIFIER_SIZE {
        return Err(VhdxError::NotVhdx {
            found: String::from_utf8_lossy(&b[..8]).into_owned(),
        });
    }
    Ok(FileIdentifier {
        creator: utf16le_until_nul(&b[8..FILE_IDENTIFIER_SIZE]),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sequence_number: u64,
    pub file_write_guid: Uuid,
    pub data_write_guid: Uuid,
    pub log_guid: Uuid,
    pub log_version: u16,
    pub version: u16,
    pub log_length: u32,
    pub log_offset: u64,
}

impl Header {
    /// A non-zero LogGuid means the log holds updates that must be replayed.
    pub fn log_needs_replay(&self) -> bool {
        !self.log_guid.is_nil()
    }
}

/// Parse and validate one header copy (signature and CRC-32C). `offset` is only used
/// in error messages.
pub fn parse_header(b: &[u8], offset: u64) -> Result<Header, VhdxError> {
    let corrupt = |reason: String| VhdxError::corrupt("header", offset, reason);
    if b.len() < HEADER_SIZE {
        return Err(corrupt(format!("only {} of {HEADER_SIZE} bytes", b.len())));
    }
    let b = &b[..HEADER_SIZE];
    if &b[..4] != HEADER_SIGNATURE {
        return Err(corrupt(format!(
            "signature is {:?}, not \"head\"",
            String::from_utf8_lossy(&b[..4])
        )));
    }
    check_crc32c(b, 4, "header", offset)?;
    Ok(Header {
        sequence_number: le_u64(b, 8),
        file_write_guid: guid(b, 16),
        data_write_guid: guid(b, 32),
        log_guid: guid(b, 48),
        log_version: le_u16(b, 64),
        version: le_u16(b, 66),
        log_length: le_u32(b, 68),
        log_offset: le_u64(b, 72),
    })
}

/// Which header copy is current, as MS-VHDX 2.2.2 defines it, and check that this
/// reader can process it.
pub fn choose_header(
    first: Result<Header, VhdxError>,
    second: Result<Header, VhdxError>,
) -> Result<(Header, usize), VhdxError> {
    let (header, index) = match (first, second) {
        (Ok(a), Ok(b)) if b.sequence_number > a.sequence_number => (b, 2),
        (Ok(a), _) => (a, 1),
        (Err(_), Ok(b)) => (b, 2),
        (Err(a), Err(b)) => {
            return Err(VhdxError::corrupt(
                "headers",
                HEADER_OFFSETS[0],
                format!("no valid header: first copy: {a}; second copy: {b}"),
            ))
        }
    };
    let offset = HEADER_OFFSETS[index - 1];
    if header.version != 1 {
        return Err(VhdxError::Unsupported(format!(
            "header at offset {offset:#x} has format version {}, only version 1 is defined",
            header.version
        )));
    }
    if header.log_needs_replay() {
        if header.log_version != 0 {
            return Err(VhdxError::Unsupported(format!(
                "header at offset {offset:#x}: the log must be replayed but its version is {}, only 0 is defined",
                header.log_version
            )));
        }
        if header.log_offset % MIB != 0 || header.log_offset < MIB {
            return Err(VhdxError::corrupt(
                "header",
                offset,
                format!(
                    "log offset {:#x} is not a multiple of 1 MiB past the header section",
                    header.log_offset
                ),
            ));
        }
        if header.log_length == 0 || u64::from(header.log_length) % MIB != 0 {
            return Err(VhdxError::corrupt(
                "header",
                offset,
                format!(
                    "log length {:#x} is not a non-zero multiple of 1 MiB",
                    header.log_length
                ),
            ));
        }
    }
    Ok((header, index))
}

/// Verify the CRC-32C of `b`, whose checksum field (u32 at `at`) counts as zero.
pub fn check_crc32c(b: &[u8], at: usize, structure: &'static str, offset: u64) -> Result<(), VhdxError> {
    let stored = le_u32(b, at);
    let computed = crc32c_with_zeroed_field(b, at);
    if stored != computed {
        return Err(VhdxError::corrupt(
            structure,
            offset,
            format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    Ok(())
}

/// CRC-32C of `b` with its 4-byte checksum field at `at` taken as zero.
pub fn crc32c_with_zeroed_field(b: &[u8], at: usize) -> u32 {
    let crc = crc32c::crc32c(&b[..at]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &b[at + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(seq: u64, version: u16) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[..4].copy_from_slice(b"head");
        b[8..16].copy_from_slice(&seq.to_le_bytes());
        b[32] = 0xAB; // DataWriteGuid, first byte
        b[66..68].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c_with_zeroed_field(&b, 4);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn valid_header_parses_and_its_guid_is_mixed_endian() {
        let h = parse_header(&header_bytes(7, 1), 0x10000).unwrap();
        assert_eq!(h.sequence_number, 7);
        assert_eq!(h.data_write_guid.as_fields().0, 0xAB);
        assert!(!h.log_needs_replay());
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum_and_names_the_offset() {
        let mut b = header_bytes(7, 1);
        b[100] ^= 1;
        let err = parse_header(&b, 0x20000).unwrap_err().to_string();
        assert!(err.contains("0x20000") && err.contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn the_valid_header_with_the_higher_sequence_number_is_current() {
        let a = parse_header(&header_bytes(5, 1), 0);
        let b = parse_header(&header_bytes(6, 1), 0);
        assert_eq!(choose_header(a, b).unwrap().1, 2);
        let a = parse_header(&header_bytes(9, 1), 0);
        let b = parse_header(&header_bytes(6, 1), 0);
        assert_eq!(choose_header(a, b).unwrap().1, 1);
        // A corrupt copy with a higher sequence number loses to a valid one.
        let mut bad = header_bytes(99, 1);
        bad[200] = 1;
        let a = parse_header(&header_bytes(3, 1), 0);
        assert_eq!(choose_header(a, parse_header(&bad, 0)).unwrap().0.sequence_number, 3);
    }

    #[test]
    fn no_valid_header_is_an_error_naming_both() {
        let err = choose_header(parse_header(&[0; 4096], 0x10000), parse_header(&[0; 10], 0x20000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("first copy") && err.contains("second copy"), "{err}");
    }

    #[test]
    fn other_format_versions_are_refused() {
        let a = parse_header(&header_bytes(1, 2), 0);
        let err = choose_header(a, parse_header(&[0; 4096], 0)).unwrap_err();
        assert!(matches!(err, VhdxError::Unsupported(_)), "{err}");
    }

    #[test]
    fn file_identifier_needs_its_signature() {
        let mut b = vec![0u8; FILE_IDENTIFIER_SIZE];
        b[..8].copy_from_slice(b"vhdxfile");
        for (i, c) in "qemu".encode_utf16().enumerate() {
            b[8 + 2 * i..10 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        assert_eq!(parse_file_identifier(&b).unwrap().creator, "qemu");
        b[0] = b'x';
        assert!(matches!(parse_file_identifier(&b), Err(VhdxError::NotVhdx { .. })));
        assert!(matches!(parse_file_identifier(b"vhd"), Err(VhdxError::NotVhdx { .. })));
    }
}
