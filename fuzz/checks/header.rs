//! `header::parse_file_identifier`, `parse_header` and `choose_header`.
//!
//! Input: a mode byte. With bit 7 set the rest is header copy 1 as-is (any length,
//! also checked as a file type identifier) and copy 2 is empty. Otherwise two copies are
//! built field by field, each signed and checksummed unless its flags say not, so that
//! the fuzzer reaches the field checks behind the CRC.
//!
//! Exact outcomes: `parse_header` is `Ok` exactly when the copy is at least 4 KiB, starts
//! with "head" and its CRC-32C (computed here independently) matches, and then every
//! field equals its little-endian bytes; otherwise `Corrupt` naming the offset given.
//! `choose_header` picks the valid copy with the higher sequence number (copy 1 on a
//! tie) and refuses exactly: no valid copy (Corrupt), version != 1 (Unsupported), and
//! for a log to replay: log version != 0 (Unsupported), log offset not a multiple of
//! 1 MiB past 1 MiB or log length not a non-zero multiple of 1 MiB (Corrupt).

use ckptfs::format::vhdx::header::{self as h, Header};
use ckptfs::format::vhdx::VhdxError;

use super::{crc_with_zeroed, fix_crc, guid_at, kind, le16, le32, le64, put16, put32, put64};
use super::{Input, Kind, MIB};

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let (b1, b2) = if mode & 0x80 != 0 {
        let b1 = inp.rest().to_vec();
        check_file_identifier(&b1);
        (b1, Vec::new())
    } else {
        let b1 = build(&mut inp);
        let b2 = build(&mut inp);
        (b1, b2)
    };
    let [o1, o2] = h::HEADER_OFFSETS;
    let r1 = h::parse_header(&b1, o1);
    let r2 = h::parse_header(&b2, o2);
    let e1 = reference_parse(&b1);
    let e2 = reference_parse(&b2);
    compare_parse(&b1, o1, &r1, &e1);
    compare_parse(&b2, o2, &r2, &e2);

    super::note(&format!("copies valid: {} {}", e1.is_some(), e2.is_some()));
    let got = h::choose_header(r1, r2);
    let expected = reference_choose(e1, e2);
    match (&got, &expected) {
        (Ok((g, gi)), Ok((e, ei))) => {
            super::note(&format!("choose: copy {ei}, log {}", e.log_needs_replay()));
            assert_eq!((g, gi), (e, ei), "choose_header picked another copy");
            assert_eq!(g.version, 1);
            if g.log_needs_replay() {
                assert!(g.log_offset >= MIB && g.log_offset % MIB == 0);
                assert!(g.log_length > 0 && u64::from(g.log_length) % MIB == 0);
            }
        }
        (Err(g), Err(e)) => {
            super::note(&format!("choose: {e:?}"));
            assert_eq!(kind(g), *e, "choose_header: {g}")
        }
        _ => panic!("choose_header returned {got:?}, the reference {expected:?}"),
    }
}

/// One header copy from the input. Flags: bit 0 no signature, bit 1 no checksum fix,
/// bit 2 spoil one byte after the checksum, bit 3 truncate, bit 4 log offset in MiB,
/// bit 5 log length in MiB, bit 6 nil LogGuid, bit 7 version forced to 1.
fn build(inp: &mut Input) -> Vec<u8> {
    let flags = inp.u8();
    let mut b = vec![0u8; h::HEADER_SIZE];
    put64(&mut b, 8, inp.u64());
    for at in [16, 32, 48] {
        b[at..at + 16].copy_from_slice(&inp.array::<16>());
    }
    if flags & 0x40 != 0 {
        b[48..64].fill(0);
    }
    put16(&mut b, 64, inp.u16());
    put16(&mut b, 66, if flags & 0x80 != 0 { 1 } else { inp.u16() });
    let log_length = inp.u32();
    put32(
        &mut b,
        68,
        if flags & 0x20 != 0 {
            (log_length & 0xFF) << 20
        } else {
            log_length
        },
    );
    let log_offset = inp.u64();
    put64(
        &mut b,
        72,
        if flags & 0x10 != 0 {
            (log_offset & 0xFFFF) << 20
        } else {
            log_offset
        },
    );
    // Reserved bytes: whatever the input has left for them (a length byte, then bytes).
    let n = usize::from(inp.u8());
    let tail = inp.bytes(n);
    b[80..80 + tail.len()].copy_from_slice(tail);
    if flags & 1 == 0 {
        b[..4].copy_from_slice(b"head");
    }
    if flags & 2 == 0 {
        fix_crc(&mut b, 4);
    }
    let at = usize::from(inp.u16()) % h::HEADER_SIZE;
    if flags & 4 != 0 {
        b[at] ^= inp.u8() | 1;
    }
    if flags & 8 != 0 {
        b.truncate(at);
    }
    b
}

fn reference_parse(b: &[u8]) -> Option<Header> {
    if b.len() < h::HEADER_SIZE {
        return None;
    }
    let b = &b[..h::HEADER_SIZE];
    if &b[..4] != b"head" || le32(b, 4) != crc_with_zeroed(b, 4) {
        return None;
    }
    Some(Header {
        sequence_number: le64(b, 8),
        file_write_guid: guid_at(b, 16),
        data_write_guid: guid_at(b, 32),
        log_guid: guid_at(b, 48),
        log_version: le16(b, 64),
        version: le16(b, 66),
        log_length: le32(b, 68),
        log_offset: le64(b, 72),
    })
}

fn compare_parse(b: &[u8], offset: u64, got: &Result<Header, VhdxError>, exp: &Option<Header>) {
    match (got, exp) {
        (Ok(g), Some(e)) => assert_eq!(g, e, "parse_header fields differ from the bytes"),
        (Err(VhdxError::Corrupt { offset: o, .. }), None) => {
            assert_eq!(*o, offset, "the error names another offset")
        }
        _ => panic!(
            "parse_header of {} bytes (signature {:?}) returned {got:?}, the reference {exp:?}",
            b.len(),
            &b[..b.len().min(4)]
        ),
    }
}

fn reference_choose(a: Option<Header>, b: Option<Header>) -> Result<(Header, usize), Kind> {
    let (hdr, index) = match (a, b) {
        (Some(a), Some(b)) if b.sequence_number > a.sequence_number => (b, 2),
        (Some(a), _) => (a, 1),
        (None, Some(b)) => (b, 2),
        (None, None) => return Err(Kind::Corrupt),
    };
    if hdr.version != 1 {
        return Err(Kind::Unsupported);
    }
    if !hdr.log_guid.is_nil() {
        if hdr.log_version != 0 {
            return Err(Kind::Unsupported);
        }
        if hdr.log_offset < MIB || hdr.log_offset % MIB != 0 {
            return Err(Kind::Corrupt);
        }
        if hdr.log_length == 0 || u64::from(hdr.log_length) % MIB != 0 {
            return Err(Kind::Corrupt);
        }
    }
    Ok((hdr, index))
}

/// `parse_file_identifier`: `Ok` exactly for 520 bytes or more starting "vhdxfile", with
/// the creator decoded up to the first NUL; `NotVhdx` showing the first 8 bytes otherwise.
fn check_file_identifier(b: &[u8]) {
    let got = h::parse_file_identifier(b);
    if b.len() >= h::FILE_IDENTIFIER_SIZE && &b[..8] == b"vhdxfile" {
        let units: Vec<u16> = b[8..h::FILE_IDENTIFIER_SIZE]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let creator = String::from_utf16_lossy(&units);
        match got {
            Ok(id) => assert_eq!(id.creator, creator),
            Err(e) => panic!("valid file identifier refused: {e}"),
        }
    } else {
        match got {
            Err(VhdxError::NotVhdx { found }) => {
                assert_eq!(found, String::from_utf8_lossy(&b[..b.len().min(8)]))
            }
            other => panic!("file identifier {:?}: {other:?}", &b[..b.len().min(8)]),
        }
    }
}
