//! `ParentLocator::parse`, `get`, `linkages`, `paths` and `parse_braced_guid`.
//!
//! Input: a mode byte. Bit 7: the rest is the item as-is. Otherwise the item is built
//! from key/value pairs (known keys, GUID values in several spellings, or strings from
//! the input), each field's offset and length optionally overridden or spoiled (odd
//! length, a lone surrogate), and the locator type is the VHDX one unless bit 0.
//!
//! Exact outcomes, against a reference written here: `Ok` exactly when the item has its
//! 20-byte header, all entries fit, every key and value lies inside the item at a
//! non-zero offset with a non-zero even length and is valid UTF-16, no key repeats, the
//! type is the VHDX locator type (else `Unsupported`), `parent_linkage` exists and it and
//! any `parent_linkage2` are GUIDs in braces; and then the entries are exactly the
//! decoded pairs in order.

use ckptfs::format::vhdx::parent_locator::{self as pl, ParentLocator};
use ckptfs::format::vhdx::VhdxError;
use uuid::Uuid;

use super::{guid_at, guid_bytes, kind, le16, le32, put16, put32, utf16, Input, Kind};

const KEYS: [&str; 6] = [
    "parent_linkage",
    "parent_linkage2",
    "relative_path",
    "volume_path",
    "absolute_win32_path",
    "Parent_Linkage",
];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let item = if mode & 0x80 != 0 {
        inp.rest().to_vec()
    } else {
        build(&mut inp, mode)
    };
    if let Ok(l) = check_item(&item, 0x20_0000) {
        for (_, v) in &l.entries {
            check_braced_guid(v);
        }
    }
    check_braced_guid(&String::from_utf8_lossy(data));
}

/// Parse `item` with the crate and the reference and compare; returns the crate's result
/// for callers (the metadata check) that need it.
pub fn check_item(item: &[u8], offset: u64) -> Result<ParentLocator, VhdxError> {
    let got = ParentLocator::parse(item, offset);
    let exp = reference(item);
    super::note(&format!("{:?}", exp.as_ref().map(|e| e.len())));
    match (&got, &exp) {
        (Ok(g), Ok(e)) => {
            assert_eq!(g.locator_type, pl::VHDX_LOCATOR_TYPE);
            assert_eq!(&g.entries, e, "parent locator entries");
            for (k, v) in e {
                assert_eq!(g.get(k), Some(v.as_str()));
            }
            let linkages = g.linkages().expect("a parsed locator has valid linkages");
            let mut want = vec![reference_guid(g.get("parent_linkage").unwrap()).unwrap()];
            if let Some(v) = g.get("parent_linkage2") {
                let l2 = reference_guid(v).unwrap();
                if !l2.is_nil() {
                    want.push(l2);
                }
            }
            assert_eq!(linkages, want);
            let paths: Vec<(&str, &str)> = ["relative_path", "volume_path", "absolute_win32_path"]
                .into_iter()
                .filter_map(|k| g.get(k).map(|v| (k, v)))
                .collect();
            assert_eq!(g.paths(), paths);
        }
        (Err(g), Err(e)) => assert_eq!(kind(g), *e, "{g}"),
        _ => panic!("parent locator: got {got:?}, the reference {exp:?}"),
    }
    got
}

fn field(b: &[u8], offset: u32, len: u16) -> Option<String> {
    let (start, len) = (offset as usize, usize::from(len));
    if offset == 0 || len == 0 || len % 2 == 1 || start + len > b.len() {
        return None;
    }
    let units: Vec<u16> = (start..start + len).step_by(2).map(|i| le16(b, i)).collect();
    String::from_utf16(&units).ok()
}

fn reference(b: &[u8]) -> Result<Vec<(String, String)>, Kind> {
    if b.len() < 20 {
        return Err(Kind::Corrupt);
    }
    let count = usize::from(le16(b, 18));
    if 20 + 12 * count > b.len() {
        return Err(Kind::Corrupt);
    }
    let mut entries: Vec<(String, String)> = Vec::new();
    for i in 0..count {
        let at = 20 + 12 * i;
        let key = field(b, le32(b, at), le16(b, at + 8)).ok_or(Kind::Corrupt)?;
        let value = field(b, le32(b, at + 4), le16(b, at + 10)).ok_or(Kind::Corrupt)?;
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(Kind::Corrupt);
        }
        entries.push((key, value));
    }
    if guid_at(b, 0) != pl::VHDX_LOCATOR_TYPE {
        return Err(Kind::Unsupported);
    }
    let get = |k: &str| entries.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    match get("parent_linkage") {
        Some(v) if reference_guid(&v).is_some() => {}
        _ => return Err(Kind::Corrupt),
    }
    if let Some(v) = get("parent_linkage2") {
        if reference_guid(&v).is_none() {
            return Err(Kind::Corrupt);
        }
    }
    Ok(entries)
}

/// `{8-4-4-4-12}` hex digits in any case, blanks and NULs around tolerated.
pub fn reference_guid(s: &str) -> Option<Uuid> {
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let inner = s.strip_prefix('{')?.strip_suffix('}')?.as_bytes();
    if inner.len() != 36 {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in inner.iter().enumerate() {
        if [8, 13, 18, 23].contains(&i) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        v = v << 4 | u128::from((c as char).to_digit(16)?);
    }
    Some(Uuid::from_u128(v))
}

fn value_text(inp: &mut Input) -> Vec<u8> {
    let g = Uuid::from_u128(u128::from(inp.u64()) << 64 | u128::from(inp.u64()));
    let sel = inp.u8();
    let text = match sel % 10 {
        0 => super::braced(&g),
        1 => super::braced(&g).to_uppercase(),
        2 => super::braced(&Uuid::nil()),
        3 => g.hyphenated().to_string(),
        4 => format!("{}\0", super::braced(&g)),
        5 => format!(" {} ", super::braced(&g)),
        6 => format!("{{{}}}", g.simple()),
        7 => r".\parent.avhdx".to_string(),
        8 => {
            let n = usize::from(inp.u8() % 64);
            return inp.bytes(n).to_vec();
        }
        _ => {
            let mut s = super::braced(&g);
            let at = usize::from(sel / 10) % s.len();
            s.replace_range(at..at + 1, "x");
            s
        }
    };
    utf16(&text)
}

/// Per pair: key selector (an index into `KEYS`, or text from the input), value, then
/// flags: bit 0/1 override key offset/length, bit 2/3 override value offset/length,
/// bit 4 add a lone surrogate to the value, bit 5 odd value length.
fn build(inp: &mut Input, mode: u8) -> Vec<u8> {
    let locator_type = if mode & 1 == 0 {
        pl::VHDX_LOCATOR_TYPE
    } else {
        Uuid::from_bytes(inp.array())
    };
    let n = usize::from(inp.u8() % 12);
    let mut b = vec![0u8; 20 + 12 * n];
    b[..16].copy_from_slice(&guid_bytes(&locator_type));
    put16(&mut b, 16, inp.u16()); // reserved
    put16(&mut b, 18, n as u16);
    for i in 0..n {
        let ksel = inp.u8();
        let key = match KEYS.get(usize::from(ksel)) {
            Some(k) => utf16(k),
            None => {
                let len = usize::from(ksel % 16);
                inp.bytes(len).to_vec()
            }
        };
        let mut value = value_text(inp);
        let flags = inp.u8();
        if flags & 0x10 != 0 {
            value.extend_from_slice(&0xD800u16.to_le_bytes());
        }
        let mut put = |bytes: &[u8]| {
            let off = b.len() as u32;
            b.extend_from_slice(bytes);
            (off, bytes.len() as u16)
        };
        let (mut ko, mut kl) = put(&key);
        let (mut vo, mut vl) = put(&value);
        if flags & 1 != 0 {
            ko = u32::from(inp.u16());
        }
        if flags & 2 != 0 {
            kl = inp.u16();
        }
        if flags & 4 != 0 {
            vo = u32::from(inp.u16());
        }
        if flags & 8 != 0 {
            vl = inp.u16();
        }
        if flags & 0x20 != 0 {
            vl |= 1;
        }
        let at = 20 + 12 * i;
        put32(&mut b, at, ko);
        put32(&mut b, at + 4, vo);
        put16(&mut b, at + 8, kl);
        put16(&mut b, at + 10, vl);
    }
    if mode & 2 != 0 {
        put16(&mut b, 18, inp.u16());
    }
    if mode & 4 != 0 {
        let keep = usize::from(inp.u16()) % (b.len() + 1);
        b.truncate(keep);
    }
    b
}

/// `parse_braced_guid` against the reference, for any text.
pub fn check_braced_guid(s: &str) {
    assert_eq!(pl::parse_braced_guid(s), reference_guid(s), "{s:?}");
}
