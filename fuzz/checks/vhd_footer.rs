//! VHD `footer::parse_footer`, `Footer::disk_size` and the time stamp conversions.
//!
//! Input: a mode byte. Bit 7: the rest is the footer as-is (any length). Otherwise a
//! footer is built: creator (one of eight known, or four bytes from the input), disk
//! type (2/3/4 or a u32), version (1.0 or a u32), sizes, geometry (from the input or
//! the maximum), data offset, time stamp, unique id, saved state; then spoiled as the
//! mode says: bit 0 checksum, bit 1 cookie, bit 2 cut to 511 bytes (the old footer),
//! bit 3 cut to a length from the input.
//!
//! Exact outcomes, against a reference written here from the specification: shorter
//! than 511 bytes `Truncated`, else no "conectix" `Cookie`, else a byte sum that is not
//! the stored checksum `Checksum`, else a major version other than 1 `Unsupported`, else
//! a disk type other than 2/3/4 `Corrupt`; and `Ok` with every field as stored, and the
//! disk size by qemu's rule ("vpc "/"qemu": the geometry unless it is 65535/16/255),
//! rounded down to sectors.

use ckptfs::format::vhd::footer::{self, parse_footer, DiskType, SizeRule};

use super::{be16, be32, be64, vhd_fix, vhd_kind, vhd_sum, Input, VhdKind};

const CREATORS: [&[u8; 4]; 8] = [b"vpc ", b"win ", b"d2v ", b"qemu", b"qem2", b"tap\0", b"CTXS", b"vs  "];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let b = if mode & 0x80 != 0 {
        inp.rest().to_vec()
    } else {
        build(&mut inp, mode)
    };
    check_bytes(&b, 0x1234_0000);
}

pub fn build(inp: &mut Input, mode: u8) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..8].copy_from_slice(b"conectix");
    b[8..12].copy_from_slice(&inp.u32().to_be_bytes());
    let sel = inp.u8();
    let version = if sel % 4 == 0 { inp.u32() } else { 0x0001_0000 };
    b[12..16].copy_from_slice(&version.to_be_bytes());
    b[16..24].copy_from_slice(&inp.u64().to_be_bytes());
    b[24..28].copy_from_slice(&inp.u32().to_be_bytes());
    let c = inp.u8();
    let creator = match CREATORS.get(usize::from(c % 10)) {
        Some(k) => **k,
        None => inp.array(),
    };
    b[28..32].copy_from_slice(&creator);
    b[32..36].copy_from_slice(&inp.u32().to_be_bytes());
    b[36..40].copy_from_slice(if c & 0x80 != 0 { b"Mac " } else { b"Wi2k" });
    let sizes = inp.u8();
    let current = match sizes % 4 {
        0 => inp.u64(),
        1 => u64::from(inp.u32()) << 9,
        2 => u64::from(inp.u16()) << 20,
        _ => u64::from(inp.u32()),
    };
    b[40..48].copy_from_slice(&inp.u64().to_be_bytes());
    b[48..56].copy_from_slice(&current.to_be_bytes());
    let (cyl, heads, spt) = if sizes & 0x10 != 0 {
        (65535, 16, 255)
    } else {
        (inp.u16(), inp.u8(), inp.u8())
    };
    b[56..58].copy_from_slice(&cyl.to_be_bytes());
    b[58] = heads;
    b[59] = spt;
    let t = inp.u8();
    let disk_type = if t % 8 == 7 { inp.u32() } else { 2 + u32::from(t % 3) };
    b[60..64].copy_from_slice(&disk_type.to_be_bytes());
    let id: [u8; 16] = inp.array();
    b[68..84].copy_from_slice(&id);
    b[84] = inp.u8();
    vhd_fix(&mut b, 64);
    if mode & 1 != 0 {
        let at = 64 + usize::from(inp.u8()) % 4;
        b[at] ^= 1 | inp.u8();
    }
    if mode & 2 != 0 {
        b[usize::from(inp.u8() % 8)] ^= 0x20;
    }
    if mode & 4 != 0 {
        // An old footer: the last reserved byte is not there, and was zero.
        b.truncate(511);
    }
    if mode & 8 != 0 {
        let n = usize::from(inp.u16()) % 600;
        b.resize(n, 0);
    }
    b
}

fn reference(b: &[u8]) -> Result<(), VhdKind> {
    if b.len() < 511 {
        return Err(VhdKind::Truncated);
    }
    let b = &b[..b.len().min(512)];
    if &b[..8] != b"conectix" {
        return Err(VhdKind::Cookie);
    }
    if vhd_sum(b, 64) != be32(b, 64) {
        return Err(VhdKind::Checksum);
    }
    if be32(b, 12) >> 16 != 1 {
        return Err(VhdKind::Unsupported);
    }
    if !(2..=4).contains(&be32(b, 60)) {
        return Err(VhdKind::Corrupt);
    }
    Ok(())
}

pub fn check_bytes(b: &[u8], offset: u64) {
    let got = parse_footer(b, offset);
    let exp = reference(b);
    super::note(&format!("vhd_footer {exp:?}"));
    let f = match (got, exp) {
        (Ok(f), Ok(())) => f,
        (Err(g), Err(e)) => {
            assert_eq!(vhd_kind(&g), e, "{g}");
            assert!(
                g.to_string().contains(&format!("{offset:#x}")) || e == VhdKind::Unsupported,
                "{g}"
            );
            return;
        }
        (g, e) => panic!("footer: got {g:?}, the reference {e:?}"),
    };
    assert_eq!(f.features, be32(b, 8));
    assert_eq!(f.version, be32(b, 12));
    assert_eq!(f.data_offset, be64(b, 16));
    assert_eq!(f.time_stamp, be32(b, 24));
    assert_eq!(&f.creator_app, &b[28..32]);
    assert_eq!(f.creator_version, be32(b, 32));
    assert_eq!(&f.creator_host, &b[36..40]);
    assert_eq!(f.original_size, be64(b, 40));
    assert_eq!(f.current_size, be64(b, 48));
    let chs = (be16(b, 56), b[58], b[59]);
    assert_eq!(
        (f.geometry.cylinders, f.geometry.heads, f.geometry.sectors_per_track),
        chs
    );
    let want_type = match be32(b, 60) {
        2 => DiskType::Fixed,
        3 => DiskType::Dynamic,
        _ => DiskType::Differencing,
    };
    assert_eq!(f.disk_type, want_type);
    assert_eq!(f.checksum, be32(b, 64));
    assert_eq!(f.unique_id.as_bytes(), &b[68..84]);
    assert_eq!(f.saved_state, b[84]);

    // qemu's size rule, as block/vpc.c has it for these two creators.
    let chs_size = u64::from(chs.0) * u64::from(chs.1) * u64::from(chs.2) * 512;
    let (size, rule) = match &b[28..32] {
        b"vpc " | b"qemu" if chs == (65535, 16, 255) => (f.current_size, SizeRule::CurrentSizeMaxGeometry),
        b"vpc " | b"qemu" => (chs_size, SizeRule::Geometry),
        _ => (f.current_size, SizeRule::CurrentSize),
    };
    assert_eq!(f.disk_size(), (size / 512 * 512, rule));
    assert_eq!(f.geometry.size(), chs_size);

    // Time stamps: seconds since 2000-01-01 UTC, both ways.
    let t = footer::vhd_time(f.time_stamp);
    let unix = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(unix, 946_684_800 + u64::from(f.time_stamp));
    assert_eq!(footer::to_vhd_seconds(t), Some(f.time_stamp));
}
