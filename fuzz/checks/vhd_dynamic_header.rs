//! VHD `dynamic_header::parse_dynamic_header`.
//!
//! Input: a mode byte. Bit 7: the rest is the header as-is. Otherwise a header is
//! built: BAT offset, max table entries, block size (a power of two 2^0..2^31, or a
//! u32), version (1.0 or a u32), parent id and time stamp, a parent name (UTF-16BE
//! text from the input, up to 256 units, possibly unterminated), eight locator entries
//! (codes from a list or the input); then spoiled as the mode says: bit 0 checksum,
//! bit 1 cookie, bit 2 cut to a length from the input.
//!
//! Exact outcomes, against a reference written here: shorter than 1024 bytes
//! `Truncated`, else no "cxsparse" `Cookie`, else a bad byte sum `Checksum`, else a
//! major version other than 1 `Unsupported`, else a block size that is not a power of
//! two of at least 512 `Corrupt`; and `Ok` with every field as stored, the parent name
//! decoded up to its first NUL, and the eight locator entries at their offsets.

use ckptfs::format::vhd::dynamic_header::parse_dynamic_header;

use super::{be32, be64, vhd_fix, vhd_kind, vhd_sum, Input, VhdKind};

const CODES: [&[u8; 4]; 7] = [b"W2ru", b"W2ku", b"Wi2r", b"Wi2k", b"Mac ", b"MacX", &[0; 4]];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let b = if mode & 0x80 != 0 {
        inp.rest().to_vec()
    } else {
        build(&mut inp, mode)
    };
    check_bytes(&b, 0x200);
}

fn build(inp: &mut Input, mode: u8) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[..8].copy_from_slice(b"cxsparse");
    b[8..16].copy_from_slice(&inp.u64().to_be_bytes());
    b[16..24].copy_from_slice(&inp.u64().to_be_bytes());
    let sel = inp.u8();
    let version = if sel & 0x80 != 0 { inp.u32() } else { 0x0001_0000 };
    b[24..28].copy_from_slice(&version.to_be_bytes());
    b[28..32].copy_from_slice(&inp.u32().to_be_bytes());
    let bs = if sel & 0x40 != 0 { inp.u32() } else { 1u32 << (sel % 32) };
    b[32..36].copy_from_slice(&bs.to_be_bytes());
    let parent: [u8; 16] = inp.array();
    b[40..56].copy_from_slice(&parent);
    b[56..60].copy_from_slice(&inp.u32().to_be_bytes());
    let units = usize::from(inp.u8());
    for i in 0..units {
        let u = inp.u16();
        b[64 + 2 * i..66 + 2 * i].copy_from_slice(&u.to_be_bytes());
    }
    for i in 0..8 {
        let at = 576 + 24 * i;
        let c = inp.u8();
        let code = match CODES.get(usize::from(c % 8)) {
            Some(k) => **k,
            None => inp.array(),
        };
        b[at..at + 4].copy_from_slice(&code);
        b[at + 4..at + 8].copy_from_slice(&u32::from(inp.u16()).to_be_bytes());
        b[at + 8..at + 12].copy_from_slice(&u32::from(inp.u16()).to_be_bytes());
        b[at + 16..at + 24].copy_from_slice(&u64::from(inp.u32()).to_be_bytes());
    }
    vhd_fix(&mut b, 36);
    if mode & 1 != 0 {
        let at = 36 + usize::from(inp.u8()) % 4;
        b[at] ^= 1 | inp.u8();
    }
    if mode & 2 != 0 {
        b[usize::from(inp.u8() % 8)] ^= 0x20;
    }
    if mode & 4 != 0 {
        let n = usize::from(inp.u16()) % 1100;
        b.resize(n, 0);
    }
    b
}

fn reference(b: &[u8]) -> Result<(), VhdKind> {
    if b.len() < 1024 {
        return Err(VhdKind::Truncated);
    }
    let b = &b[..1024];
    if &b[..8] != b"cxsparse" {
        return Err(VhdKind::Cookie);
    }
    if vhd_sum(b, 36) != be32(b, 36) {
        return Err(VhdKind::Checksum);
    }
    if be32(b, 24) >> 16 != 1 {
        return Err(VhdKind::Unsupported);
    }
    let bs = be32(b, 32);
    if bs < 512 || bs & (bs - 1) != 0 {
        return Err(VhdKind::Corrupt);
    }
    Ok(())
}

fn check_bytes(b: &[u8], offset: u64) {
    let got = parse_dynamic_header(b, offset);
    let exp = reference(b);
    super::note(&format!("vhd_dynamic_header {exp:?}"));
    let h = match (got, exp) {
        (Ok(h), Ok(())) => h,
        (Err(g), Err(e)) => {
            assert_eq!(vhd_kind(&g), e, "{g}");
            return;
        }
        (g, e) => panic!("dynamic header: got {g:?}, the reference {e:?}"),
    };
    assert_eq!(h.offset, offset);
    assert_eq!(h.data_offset, be64(b, 8));
    assert_eq!(h.table_offset, be64(b, 16));
    assert_eq!(h.version, be32(b, 24));
    assert_eq!(h.max_table_entries, be32(b, 28));
    assert_eq!(h.block_size, be32(b, 32));
    assert_eq!(h.checksum, be32(b, 36));
    assert_eq!(h.parent_unique_id.as_bytes(), &b[40..56]);
    assert_eq!(h.parent_time_stamp, be32(b, 56));
    let mut units = Vec::new();
    for i in 0..256 {
        let u = u16::from_be_bytes([b[64 + 2 * i], b[65 + 2 * i]]);
        if u == 0 {
            break;
        }
        units.push(u);
    }
    let name: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    assert_eq!(h.parent_name, name);
    assert_eq!(h.locators.len(), 8);
    for (i, l) in h.locators.iter().enumerate() {
        let at = 576 + 24 * i;
        assert_eq!(l.index, i);
        assert_eq!(l.entry_offset, offset + at as u64);
        assert_eq!(&l.code, &b[at..at + 4]);
        assert_eq!(l.data_space, be32(b, at + 4));
        assert_eq!(l.data_length, be32(b, at + 8));
        assert_eq!(l.data_offset, be64(b, at + 16));
        assert_eq!(l.is_used(), b[at..at + 4] != [0; 4]);
    }
}
