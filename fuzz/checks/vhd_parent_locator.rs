//! VHD `LocatorEntry::check_extent`, `decode_path`, `encoding`.
//!
//! Input: a code selector (the six known codes, none, or four bytes from the input),
//! data space, data length and data offset (each small, near a limit, or a raw value
//! as the selector bits say), a file length, then the data bytes.
//!
//! Exact outcomes, against a reference written here: `check_extent` is `Ok` exactly
//! when the length is non-zero, at most 64 KiB, at most the space × 512 (the space in
//! sectors; a space in bytes that fits also fits so), and offset + length does not pass
//! the file's end (nor wrap); else `Corrupt`. `decode_path` of the data: for "W2ru"/
//! "W2ku" the UTF-16LE units before the first NUL (unpaired surrogates as U+FFFD), for
//! "Wi2r"/"Wi2k" the bytes before the first NUL as UTF-8 if valid else Latin-1; `Corrupt`
//! for any other code or an empty path.

use ckptfs::format::vhd::parent_locator::{Encoding, LocatorEntry};

use super::{vhd_kind, Input, VhdKind};

const CODES: [&[u8; 4]; 7] = [b"W2ru", b"W2ku", b"Wi2r", b"Wi2k", b"Mac ", b"MacX", &[0; 4]];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let c = inp.u8();
    let code = match CODES.get(usize::from(c % 8)) {
        Some(k) => **k,
        None => inp.array(),
    };
    let sel = inp.u8();
    let space = match sel % 4 {
        0 => u32::from(inp.u8()),
        1 => u32::from(inp.u16()),
        2 => u32::MAX - u32::from(inp.u8()),
        _ => inp.u32(),
    };
    let length = match (sel >> 2) % 4 {
        0 => u32::from(inp.u16()),
        1 => space
            .wrapping_mul(512)
            .wrapping_add(u32::from(inp.u8() % 3))
            .wrapping_sub(1),
        2 => 65536 - 1 + u32::from(inp.u8() % 3),
        _ => inp.u32(),
    };
    let offset = match (sel >> 4) % 4 {
        0 => u64::from(inp.u32()),
        1 => u64::MAX - u64::from(inp.u16()),
        _ => inp.u64(),
    };
    let file_len = match (sel >> 6) % 4 {
        0 => offset
            .wrapping_add(u64::from(length))
            .wrapping_sub(u64::from(inp.u8() % 3))
            .wrapping_add(1),
        1 => u64::MAX,
        _ => inp.u64(),
    };
    let e = LocatorEntry {
        index: usize::from(c % 8),
        entry_offset: 0x240 + 24 * u64::from(c % 8),
        code,
        data_space: space,
        data_length: length,
        data_offset: offset,
    };
    let exp = length != 0
        && length <= 65536
        && u64::from(length) <= u64::from(space) * 512
        && offset.checked_add(u64::from(length)).is_some_and(|end| end <= file_len);
    let got = e.check_extent(file_len);
    super::note(&format!("vhd_parent_locator extent {exp}"));
    match got {
        Ok(()) => assert!(exp, "check_extent accepted {e:?} in {file_len:#x}"),
        Err(g) => {
            assert!(!exp, "check_extent refused {e:?} in {file_len:#x}: {g}");
            assert_eq!(vhd_kind(&g), VhdKind::Corrupt);
            assert!(g.to_string().contains(&format!("entry {}", e.index)), "{g}");
        }
    }

    let data = inp.rest();
    let encoding = match &code {
        b"W2ru" | b"W2ku" => Some(Encoding::Utf16Le),
        b"Wi2r" | b"Wi2k" => Some(Encoding::Ansi),
        _ => None,
    };
    assert_eq!(e.encoding(), encoding);
    assert_eq!(e.is_used(), code != [0; 4]);
    let path = match encoding {
        None => None,
        Some(Encoding::Utf16Le) => {
            let mut units = Vec::new();
            let mut i = 0;
            while i + 1 < data.len() {
                let u = u16::from_le_bytes([data[i], data[i + 1]]);
                if u == 0 {
                    break;
                }
                units.push(u);
                i += 2;
            }
            Some(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect::<String>(),
            )
        }
        Some(Encoding::Ansi) => {
            let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
            Some(match String::from_utf8(data[..end].to_vec()) {
                Ok(s) => s,
                Err(_) => data[..end].iter().map(|&c| c as char).collect(),
            })
        }
    }
    .filter(|p| !p.is_empty());
    match (e.decode_path(data), path) {
        (Ok(g), Some(p)) => assert_eq!(g, p),
        (Err(g), None) => assert_eq!(vhd_kind(&g), VhdKind::Corrupt),
        (g, p) => panic!("decode_path: got {g:?}, the reference {p:?}"),
    }
}
