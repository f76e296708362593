//! Field access for on-disk structures: [`Fields`], checked reads of either byte order
//! for the formats that parse guest-controlled bytes field by field (VHD, VMDK); and
//! the older direct little-endian helpers below, whose callers check the slice length
//! against the structure size first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// A field read past the end of a structure's bytes: the structure is cut short (a
/// truncated file). Each format's error type converts it into its own `Truncated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub structure: &'static str,
    /// Where the structure starts in the file.
    pub offset: u64,
    /// How far into the structure the read reached.
    pub len: u64,
    /// Where the bytes given end, counted in the file.
    pub file_len: u64,
}

/// The bytes of one structure, with where they were read from (for messages): every
/// field read is checked, so a short structure is a [`Truncated`] error, never a panic.
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
    pub fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], Truncated> {
        at.checked_add(N)
            .and_then(|end| self.bytes.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(Truncated {
                structure: self.structure,
                offset: self.offset,
                len: (at as u64).saturating_add(N as u64),
                file_len: self.offset.saturating_add(self.bytes.len() as u64),
            })
    }

    pub fn u8(&self, at: usize) -> Result<u8, Truncated> {
        Ok(self.array::<1>(at)?[0])
    }

    pub fn le16(&self, at: usize) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array(at)?))
    }

    pub fn le32(&self, at: usize) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(at)?))
    }

    pub fn le64(&self, at: usize) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array(at)?))
    }

    pub fn be16(&self, at: usize) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array(at)?))
    }

    pub fn be32(&self, at: usize) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array(at)?))
    }

    pub fn be64(&self, at: usize) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.array(at)?))
    }
}

pub fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Windows FILETIMEs (NTFS times, Hyper-V configurations) count 100 ns ticks from
/// 1601-01-01 UTC.
const TICKS_PER_SECOND: u64 = 10_000_000;
const SECONDS_1601_TO_1970: u64 = 11_644_473_600;

/// A FILETIME as a `SystemTime`, exactly (to the 100 ns tick); before 1970 too.
pub fn filetime(ticks: u64) -> SystemTime {
    let since_1601 = Duration::new(ticks / TICKS_PER_SECOND, (ticks % TICKS_PER_SECOND) as u32 * 100);
    let epoch = Duration::from_secs(SECONDS_1601_TO_1970);
    let t = if since_1601 >= epoch {
        UNIX_EPOCH.checked_add(since_1601 - epoch)
    } else {
        UNIX_EPOCH.checked_sub(epoch - since_1601)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// A GUID in Microsoft's mixed-endian binary layout.
pub fn guid(b: &[u8], at: usize) -> Uuid {
    Uuid::from_bytes_le(b[at..at + 16].try_into().unwrap())
}

/// A GUID as Windows writes it in text: braces, lower case.
pub fn braced(g: &Uuid) -> String {
    format!("{{{}}}", g.hyphenated())
}

/// Decode UTF-16LE text, stopping at the first NUL. Unpaired surrogates become U+FFFD.
pub fn utf16le_until_nul(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Bytes as a number and in binary units: `10485760 (10 MiB)`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if v.fract() == 0.0 {
        format!("{n} ({v} {})", UNITS[unit])
    } else {
        format!("{n} ({v:.1} {})", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetimes_convert_exactly() {
        // 1970-01-01 00:00:00 UTC.
        assert_eq!(filetime(116_444_736_000_000_000), UNIX_EPOCH);
        // One tick later keeps its 100 ns.
        assert_eq!(
            filetime(116_444_736_000_000_001),
            UNIX_EPOCH + Duration::from_nanos(100)
        );
        // 2024-02-29 12:34:56.1234567 UTC = 1709210096 s + 123456700 ns.
        let t = 116_444_736_000_000_000 + 1_709_210_096 * 10_000_000 + 1_234_567;
        assert_eq!(filetime(t), UNIX_EPOCH + Duration::new(1_709_210_096, 123_456_700));
        // Before 1970: 1601-01-01 itself, and 0.5 s before the Unix epoch.
        assert_eq!(filetime(0), UNIX_EPOCH - Duration::from_secs(SECONDS_1601_TO_1970));
        assert_eq!(
            filetime(116_444_736_000_000_000 - 5_000_000),
            UNIX_EPOCH - Duration::from_millis(500)
        );
        // The largest value does not panic.
        let _ = filetime(u64::MAX);
    }
}
