//! Parent locator entries (eight in the dynamic header of a differencing disk): where
//! the parent was, as a Windows path in the platform's encoding.
//!
//! Choices where the specification is silent or contradicted by writers:
//! - *Data space units*: the specification says sectors, Hyper-V writes bytes. Both are
//!   accepted: the only rule is that the data length fits the space read as sectors
//!   (which every length that fits the space read as bytes also does), and that the data
//!   lies inside the file.
//! - *A damaged entry* (data past its space or the file, an empty or overlong path) is
//!   skipped with a warning, since the parent is checked by its unique id and a skipped
//!   locator cannot cause a misread; opening fails only when no way to find the parent
//!   is left (see [`super::VhdFile`]).

use super::fields::code_text;
use super::VhdError;

/// Longest locator data read: a Windows path of 32767 UTF-16 units, and some slack.
pub const MAX_DATA_LENGTH: u32 = 64 * 1024;

/// The platform codes, in the order their paths are tried.
pub const PATH_CODES: [&[u8; 4]; 4] = [b"W2ru", b"W2ku", b"Wi2r", b"Wi2k"];

/// One raw 24-byte entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatorEntry {
    /// 0..8: its place in the header.
    pub index: usize,
    /// Where the entry itself is in the file (for messages).
    pub entry_offset: u64,
    pub code: [u8; 4],
    pub data_space: u32,
    pub data_length: u32,
    pub data_offset: u64,
}

/// How a platform code's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// "W2ru", "W2ku": UTF-16 little-endian.
    Utf16Le,
    /// "Wi2r", "Wi2k" (deprecated): the writer's ANSI code page; read as UTF-8 when
    /// valid, else as Latin-1.
    Ansi,
}

impl LocatorEntry {
    pub fn is_used(&self) -> bool {
        self.code != [0; 4]
    }

    pub fn code_text(&self) -> String {
        code_text(self.code)
    }

    /// The encoding of a code whose data is a path; `None` for "Mac ", "MacX" and
    /// unknown codes, which are ignored.
    pub fn encoding(&self) -> Option<Encoding> {
        match &self.code {
            b"W2ru" | b"W2ku" => Some(Encoding::Utf16Le),
            b"Wi2r" | b"Wi2k" => Some(Encoding::Ansi),
            _ => None,
        }
    }

    /// Check the data's extent: non-empty, at most [`MAX_DATA_LENGTH`], inside its data
    /// space (see the module documentation for the units) and inside a file of
    /// `file_len` bytes.
    pub fn check_extent(&self, file_len: u64) -> Result<(), VhdError> {
        let corrupt = |reason: String| {
            VhdError::corrupt(
                "parent locator entry",
                self.entry_offset,
                format!("entry {} ({}): {reason}", self.index, self.code_text()),
            )
        };
        let len = u64::from(self.data_length);
        if len == 0 {
            return Err(corrupt("its data length is 0".into()));
        }
        if self.data_length > MAX_DATA_LENGTH {
            return Err(corrupt(format!(
                "its data length {len:#x} is more than a path needs ({MAX_DATA_LENGTH:#x} bytes)"
            )));
        }
        if len > u64::from(self.data_space) * 512 {
            return Err(corrupt(format!(
                "its data length {len:#x} runs past its data space of {} (sectors or bytes)",
                self.data_space
            )));
        }
        match self.data_offset.checked_add(len) {
            Some(end) if end <= file_len => Ok(()),
            _ => Err(corrupt(format!(
                "its data at offset {:#x} ({len:#x} bytes) runs past the end of the file ({file_len:#x} bytes)",
                self.data_offset
            ))),
        }
    }

    /// The path in `data` (the entry's data bytes), without trailing NULs; an error if
    /// the code is not a path code or the path is empty.
    pub fn decode_path(&self, data: &[u8]) -> Result<String, VhdError> {
        let corrupt = |reason: &str| {
            VhdError::corrupt(
                "parent locator entry",
                self.entry_offset,
                format!("entry {} ({}): {reason}", self.index, self.code_text()),
            )
        };
        let path = match self.encoding() {
            None => return Err(corrupt("not a path platform code")),
            Some(Encoding::Utf16Le) => {
                let units: Vec<u16> = data
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                String::from_utf16_lossy(&units)
            }
            Some(Encoding::Ansi) => {
                let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
                let bytes = &data[..end];
                match std::str::from_utf8(bytes) {
                    Ok(s) => s.to_string(),
                    Err(_) => bytes.iter().map(|&c| char::from(c)).collect(),
                }
            }
        };
        if path.is_empty() {
            return Err(corrupt("the path is empty"));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: &[u8; 4], space: u32, len: u32, off: u64) -> LocatorEntry {
        LocatorEntry {
            index: 2,
            entry_offset: 0x270,
            code: *code,
            data_space: space,
            data_length: len,
            data_offset: off,
        }
    }

    #[test]
    fn space_in_sectors_or_bytes_both_fit() {
        // Sectors (as specified) and bytes (as Hyper-V writes).
        assert!(entry(b"W2ku", 1, 300, 0x1000).check_extent(0x2000).is_ok());
        assert!(entry(b"W2ku", 512, 300, 0x1000).check_extent(0x2000).is_ok());
        let e = entry(b"W2ku", 1, 513, 0x1000)
            .check_extent(0x2000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parent locator entry at offset 0x270")
                && e.contains("entry 2 (W2ku)")
                && e.contains("data space"),
            "{e}"
        );
    }

    #[test]
    fn data_past_the_file_or_empty_is_refused() {
        let e = entry(b"W2ru", 1, 24, 0x1FF0)
            .check_extent(0x2000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("0x1ff0") && e.contains("past the end of the file"), "{e}");
        assert!(entry(b"W2ru", 1, 24, u64::MAX - 8).check_extent(u64::MAX).is_err());
        assert!(entry(b"W2ru", 1, 0, 0x1000).check_extent(0x2000).is_err());
        assert!(entry(b"W2ru", 1000, MAX_DATA_LENGTH + 2, 0)
            .check_extent(u64::MAX)
            .is_err());
    }

    #[test]
    fn decodes_utf16_and_ansi_paths() {
        let w: Vec<u8> = ".\\päre nt.vhd\0\0"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(entry(b"W2ru", 1, 0, 0).decode_path(&w).unwrap(), ".\\päre nt.vhd");
        assert_eq!(
            entry(b"Wi2k", 1, 0, 0).decode_path(b"C:\\a.vhd\0junk").unwrap(),
            "C:\\a.vhd"
        );
        assert_eq!(entry(b"Wi2r", 1, 0, 0).decode_path(&[b'x', 0xE9]).unwrap(), "x\u{e9}");
        assert!(entry(b"MacX", 1, 0, 0).decode_path(b"file://x").is_err());
        assert!(entry(b"W2ku", 1, 0, 0).decode_path(&[0, 0]).is_err());
        assert_eq!(entry(b"W2ku", 1, 0, 0).decode_path(&[b'a', 0, b'b']).unwrap(), "a");
    }
}
