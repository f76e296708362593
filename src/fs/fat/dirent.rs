//! Directory entries as stored: 32-byte short-name (8.3) entries, the long-name (LFN)
//! entries before them, deleted and volume-label entries. `fatfs` decodes the names;
//! this parse supplies what it keeps to itself (each entry's position on the volume
//! and first cluster), following exactly the rules of `fatfs`'s `DirIter` so that the
//! two sequences line up entry for entry.

use crate::bytes::{le_u16, le_u32};

pub(super) const ENTRY: usize = 32;

const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
/// Read-only, hidden, system and volume together mark a long-name entry.
const ATTR_LFN: u8 = 0x0F;
const DELETED: u8 = 0xE5;

/// A short-name entry, as `fatfs` would yield it (neither deleted nor a volume label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawEntry {
    /// Byte offset of the entry on the volume.
    pub pos: u64,
    pub name: [u8; 11],
    pub attr: u8,
    pub created_hundredths: u8,
    pub created_time: u16,
    pub created_date: u16,
    pub accessed_date: u16,
    pub modified_time: u16,
    pub modified_date: u16,
    pub cluster: u32,
    pub size: u32,
}

impl RawEntry {
    pub(super) fn is_dir(&self) -> bool {
        self.attr & ATTR_DIR != 0
    }

    /// `.` or `..`.
    pub(super) fn is_dot(&self) -> bool {
        &self.name == b".          " || &self.name == b"..         "
    }
}

#[derive(Debug, Default)]
pub(super) struct RawDir {
    pub entries: Vec<RawEntry>,
    /// The first volume-label entry's name (meaningful in the root directory).
    pub label: Option<[u8; 11]>,
    /// That entry's modification (date, time): when the volume was formatted or
    /// labelled.
    pub label_modified: Option<(u16, u16)>,
}

/// Parse directory bytes; `pos(i)` is the volume offset of byte `i`.
pub(super) fn parse(bytes: &[u8], fat32: bool, pos: impl Fn(usize) -> u64) -> RawDir {
    let mut dir = RawDir::default();
    for (i, e) in bytes.chunks_exact(ENTRY).enumerate() {
        let attr = e[11];
        if e[0] == 0 {
            break;
        }
        if e[0] == DELETED || attr & ATTR_LFN == ATTR_LFN {
            continue;
        }
        let name: [u8; 11] = e[..11].try_into().unwrap();
        if attr & ATTR_VOLUME != 0 {
            if dir.label.is_none() {
                dir.label = Some(name);
                dir.label_modified = Some((le_u16(e, 24), le_u16(e, 22)));
            }
            continue;
        }
        let hi = if fat32 { u32::from(le_u16(e, 20)) } else { 0 };
        dir.entries.push(RawEntry {
            pos: pos(i * ENTRY),
            name,
            attr,
            created_hundredths: e[13],
            created_time: le_u16(e, 14),
            created_date: le_u16(e, 16),
            accessed_date: le_u16(e, 18),
            modified_time: le_u16(e, 22),
            modified_date: le_u16(e, 24),
            cluster: hi << 16 | u32::from(le_u16(e, 26)),
            size: le_u32(e, 28),
        });
    }
    dir
}

/// The short name as `fatfs` shows it (`DirEntry::short_file_name_as_bytes`): base and
/// extension without padding, joined by a dot if there is an extension, with a leading
/// 0x05 (the escape for a name starting with 0xE5) turned back into 0xE5.
pub(super) fn short_name_bytes(name: &[u8; 11]) -> Vec<u8> {
    let trim = |s: &[u8]| s.len() - s.iter().rev().take_while(|&&c| c == b' ').count();
    let (base, ext) = (&name[..8], &name[8..]);
    let mut out = base[..trim(base)].to_vec();
    if trim(ext) > 0 {
        out.push(b'.');
        out.extend_from_slice(&ext[..trim(ext)]);
    }
    if out.first() == Some(&0x05) {
        out[0] = 0xE5;
    }
    out
}

/// A volume label as stored (11 bytes, space-padded, code page 437), or None if it is
/// empty or the placeholder "NO NAME" that formatters write when there is none.
pub(super) fn label_text(raw: &[u8; 11]) -> Option<String> {
    let mut bytes = raw.to_vec();
    if bytes[0] == 0x05 {
        bytes[0] = 0xE5;
    }
    let end = bytes.len() - bytes.iter().rev().take_while(|&&c| c == b' ' || c == 0).count();
    let text: String = bytes[..end].iter().map(|&b| cp437(b)).collect();
    (!text.is_empty() && text != "NO NAME").then_some(text)
}

/// Code page 437's upper half, the Linux kernel's default for short names
/// (`codepage=437`) and mtools' too.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{A0}";

pub(super) fn cp437(b: u8) -> char {
    if b < 0x80 {
        char::from(b)
    } else {
        CP437_HIGH.chars().nth(usize::from(b - 0x80)).unwrap_or('\u{FFFD}')
    }
}

/// Short names in code page 437 for `fatfs` (whose default turns every byte above 0x7F
/// into U+FFFD, so an 8.3 name like `CAFÉ.TXT` written by DOS would not match what the
/// kernel shows).
#[derive(Debug)]
pub(super) struct Cp437;

pub(super) static CP437: Cp437 = Cp437;

impl fatfs::OemCpConverter for Cp437 {
    fn decode(&self, oem_char: u8) -> char {
        cp437(oem_char)
    }

    fn encode(&self, uni_char: char) -> Option<u8> {
        if uni_char.is_ascii() {
            return Some(uni_char as u8);
        }
        CP437_HIGH.chars().position(|c| c == uni_char).map(|i| 0x80 + i as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8; 11], attr: u8) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e
    }

    #[test]
    fn skips_what_fatfs_skips() {
        let mut d = Vec::new();
        d.extend_from_slice(&entry(b"MYLABEL    ", ATTR_VOLUME));
        d.extend_from_slice(&entry(b".          ", ATTR_DIR));
        let mut lfn = entry(b"\x41a\0b\0c\0\0\0\xFF\xFF", ATTR_LFN);
        lfn[13] = 0x12;
        d.extend_from_slice(&lfn);
        let mut deleted = entry(b"\xE5OLD    TXT", 0x20);
        deleted[28] = 9;
        d.extend_from_slice(&deleted);
        let mut f = entry(b"\x05BC     TXT", 0x21);
        f[20..22].copy_from_slice(&0x0001u16.to_le_bytes());
        f[26..28].copy_from_slice(&0x0005u16.to_le_bytes());
        f[28..32].copy_from_slice(&1234u32.to_le_bytes());
        d.extend_from_slice(&f);
        d.extend_from_slice(&[0u8; 32]);
        d.extend_from_slice(&entry(b"AFTER   END", 0x20));

        let dir = parse(&d, true, |i| 1000 + i as u64);
        assert_eq!(dir.label, Some(*b"MYLABEL    "));
        assert_eq!(dir.entries.len(), 2);
        assert!(dir.entries[0].is_dot() && dir.entries[0].is_dir());
        let f = &dir.entries[1];
        assert_eq!(f.pos, 1000 + 4 * 32);
        assert_eq!(f.cluster, 0x1_0005);
        assert_eq!(f.size, 1234);
        assert_eq!(f.attr, 0x21);
        assert!(!f.is_dir());
        assert_eq!(short_name_bytes(&f.name), b"\xE5BC.TXT");
        // FAT12/16 keep the high word for other uses: it is not part of the cluster.
        assert_eq!(parse(&d, false, |i| i as u64).entries[1].cluster, 5);
    }

    #[test]
    fn short_names_and_labels() {
        assert_eq!(short_name_bytes(b"README     "), b"README");
        assert_eq!(short_name_bytes(b"A       B  "), b"A.B");
        assert_eq!(short_name_bytes(b"..         "), b"..");
        assert_eq!(label_text(b"MY DISK    ").as_deref(), Some("MY DISK"));
        assert_eq!(label_text(b"NO NAME    "), None);
        assert_eq!(label_text(b"           "), None);
        assert_eq!(label_text(b"CAF\x90       ").as_deref(), Some("CAFÉ"));
    }

    #[test]
    fn code_page_437() {
        use fatfs::OemCpConverter;
        assert_eq!(CP437_HIGH.chars().count(), 128);
        assert_eq!(cp437(b'A'), 'A');
        assert_eq!(cp437(0x82), 'é');
        assert_eq!(cp437(0xE1), 'ß');
        assert_eq!(cp437(0xFF), '\u{A0}');
        for b in 0..=255u8 {
            assert_eq!(CP437.encode(CP437.decode(b)), Some(b));
        }
        assert_eq!(CP437.encode('日'), None);
    }
}
