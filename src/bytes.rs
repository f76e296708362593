//! Little-endian field access for on-disk structures. Callers check the slice length
//! against the structure size first; these helpers index directly.

use uuid::Uuid;

pub fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
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
