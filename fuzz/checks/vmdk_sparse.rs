//! Hosted sparse and streamOptimized VMDK files written to a temp dir:
//! `VmdkFile::open`, `map`, `read_data`, `identity`, `parent`.
//!
//! Input: mode (bit 0 streamOptimized: compressed grains with markers, grain directory
//! in the footer; bit 1 a redundant grain directory (hosted only); bit 2 the zeroed-
//! grain flag; bit 3 damage one header field; bit 4 cut the file's last bytes; bit 5 a
//! child with a parentCID and hint; bit 6 a capacity one sector short of whole grains),
//! grain size 1 << 0..3 sectors, 1 to 4 entries per grain table, 1 to 12 grains, then
//! per table a state (allocated; unallocated; primary GD entry past the end; both GD
//! entries past the end) and per grain a state (hosted: unallocated, entry 1, data,
//! primary entry past the end, both entries past the end; stream: unallocated, entry 1,
//! good grain (zlib or raw deflate, full or cut at the capacity), wrong sector in the
//! marker, too short or too long when inflated, bad checksum, zero size).
//!
//! Exact outcomes, against a reference written here from the documented rules: open
//! fails with the kind the damaged field calls for (or the footer's, or the missing
//! grain directory's); every grain maps to the parent, zeros or data, through the
//! primary walk, else through the redundant one when the primary is damaged (an entry
//! past the end of the file), else fails; data reads back the file's bytes, or for a
//! compressed grain the bytes compressed, or fails as a bad grain.

use ckptfs::format::vmdk::{VmdkError, VmdkFile};
use ckptfs::format::{DiskFile, Layer, Source};
use ckptfs::Error;

use super::{pattern, put16, put32, put64, Input};

/// The error classes compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum K {
    Corrupt,
    Truncated,
    Unsupported,
    ExtentOnly,
    BadGrain,
    Other,
}

pub fn kind(e: &Error) -> K {
    match e {
        Error::Vmdk { source, .. } => match source {
            VmdkError::Corrupt { .. } => K::Corrupt,
            VmdkError::Truncated { .. } => K::Truncated,
            VmdkError::Unsupported(_) => K::Unsupported,
            VmdkError::ExtentOnly { .. } => K::ExtentOnly,
            VmdkError::BadGrain { .. } => K::BadGrain,
            _ => K::Other,
        },
        _ => K::Other,
    }
}

/// Adler-32, written here.
pub fn adler32(b: &[u8]) -> u32 {
    let (mut a, mut s) = (1u32, 0u32);
    for &x in b {
        a = (a + u32::from(x)) % 65521;
        s = (s + a) % 65521;
    }
    s << 16 | a
}

/// `data` as deflate stored blocks, wrapped in zlib (header 78 01, Adler-32) or raw.
pub fn stored(data: &[u8], zlib: bool) -> Vec<u8> {
    let mut out = if zlib { vec![0x78, 0x01] } else { Vec::new() };
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        out.extend((c.len() as u16).to_le_bytes());
        out.extend((!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    if zlib {
        out.extend(adler32(data).to_be_bytes());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Parent,
    Zero,
    /// Plain bytes at this file offset.
    Plain(u64),
    /// Compressed: the fill byte and the count of bytes compressed.
    Packed(u8, u64),
    Fails(K),
}

const FAR: u32 = 0x00f0_0000; // a sector far past the end of any file built here

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let stream = mode & 1 != 0;
    let rgd = mode & 2 != 0 && !stream;
    let zero_flag = mode & 4 != 0;
    let damage = (mode & 8 != 0).then(|| inp.u8() % 9);
    let cut = if mode & 16 != 0 {
        u64::from(inp.u16() % 1024) + 1
    } else {
        0
    };
    let child = mode & 32 != 0;
    let gs = 1u64 << (inp.u8() % 4);
    let n = 1 + u64::from(inp.u8() % 4);
    let grains = 1 + u64::from(inp.u8() % 12);
    let short = mode & 64 != 0 && gs > 1;
    let capacity = grains * gs - u64::from(short);
    let gb = gs * 512;
    let cap_bytes = capacity * 512;
    let tables = grains.div_ceil(n);
    let table_state: Vec<u8> = (0..tables).map(|_| inp.u8() % 4).collect();
    let grain_sel: Vec<u8> = (0..grains).map(|_| inp.u8()).collect();
    let need = |g: u64| gb.min(cap_bytes - g * gb);

    // Layout in sectors: 0 header, 1 descriptor, then (hosted) RGD, redundant GTs, GD,
    // GTs (one sector each: at most 4 entries), then grains; (stream) grains, GT
    // markers and tables, GD marker and GD, footer marker, footer, end of stream.
    let cid = 0x0bad_cafe_u32;
    let desc = if child {
        format!("# Disk DescriptorFile\nversion=1\nCID={cid:08x}\nparentCID=12345678\nparentFileNameHint=\"p.vmdk\"\ncreateType=\"{}\"\nRW {capacity} SPARSE \"x.vmdk\"\n", if stream { "streamOptimized" } else { "monolithicSparse" })
    } else {
        format!("# Disk DescriptorFile\nversion=1\nCID={cid:08x}\nparentCID=ffffffff\ncreateType=\"{}\"\nRW {capacity} SPARSE \"x.vmdk\"\n", if stream { "streamOptimized" } else { "monolithicSparse" })
    };
    let mut flags = 1u32 | if rgd { 2 } else { 0 } | if zero_flag { 4 } else { 0 };
    if stream {
        flags |= 1 << 16 | 1 << 17;
    }
    let header = |gd: u64, rgd_at: u64| -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[0..4].copy_from_slice(b"KDMV");
        put32(&mut h, 4, if stream { 3 } else { 1 });
        put32(&mut h, 8, flags);
        put64(&mut h, 12, capacity);
        put64(&mut h, 20, gs);
        put64(&mut h, 28, 1);
        put64(&mut h, 36, 1);
        put32(&mut h, 44, n as u32);
        put64(&mut h, 48, rgd_at);
        put64(&mut h, 56, gd);
        put64(&mut h, 64, 2);
        h[73..77].copy_from_slice(b"\n \r\n");
        put16(&mut h, 77, u16::from(stream));
        h
    };
    let mut file = vec![0u8; 1024];
    let mut d = desc.into_bytes();
    d.truncate(512);
    file[512..512 + d.len()].copy_from_slice(&d);
    let sector = |f: &Vec<u8>| (f.len() / 512) as u64;
    let pad = |f: &mut Vec<u8>| f.resize(f.len().div_ceil(512) * 512, 0);

    // Per grain: the primary and redundant entries, and the model of the grain.
    let mut gte = vec![[0u32; 2]; grains as usize];
    let mut packed: Vec<Option<(u8, u64, bool, i8)>> = vec![None; grains as usize];
    let mut gd_entries = vec![[0u32; 2]; tables as usize];
    let (gd_at, rgd_at, footer_gd);
    if !stream {
        // Sectors: RGD, redundant GTs, GD, GTs, data.
        let rgd_sector = 2;
        let rgt0 = 3;
        let gd_sector = rgt0 + tables;
        let gt0 = gd_sector + 1;
        let mut next_data = gt0 + tables;
        for g in 0..grains {
            let sel = grain_sel[g as usize] % 5;
            let v = match sel {
                0 => [0, 0],
                1 => [1, 1],
                2 => {
                    next_data += gs;
                    [(next_data - gs) as u32; 2]
                }
                3 => {
                    next_data += gs;
                    [FAR, (next_data - gs) as u32]
                }
                _ => [FAR, FAR],
            };
            gte[g as usize] = v;
        }
        for t in 0..tables {
            gd_entries[t as usize] = match table_state[t as usize] {
                1 => [0, 0],
                2 => [FAR, (rgt0 + t) as u32],
                3 => [FAR, FAR],
                _ => [(gt0 + t) as u32, (rgt0 + t) as u32],
            };
        }
        file.resize((gt0 + tables) as usize * 512, 0);
        for t in 0..tables {
            put32(&mut file, (gd_sector * 512 + t * 4) as usize, gd_entries[t as usize][0]);
            if rgd {
                put32(
                    &mut file,
                    (rgd_sector * 512 + t * 4) as usize,
                    gd_entries[t as usize][1],
                );
            }
            for s in 0..n {
                let g = t * n + s;
                if g < grains {
                    put32(&mut file, ((gt0 + t) * 512 + s * 4) as usize, gte[g as usize][0]);
                    put32(&mut file, ((rgt0 + t) * 512 + s * 4) as usize, gte[g as usize][1]);
                }
            }
        }
        for g in 0..grains {
            if grain_sel[g as usize] % 5 == 2 || grain_sel[g as usize] % 5 == 3 {
                let at = gte[g as usize][1] as usize * 512;
                file.resize(file.len().max(at + gb as usize), 0);
                for i in 0..gb as usize {
                    file[at + i] = pattern(g, i as u64);
                }
            }
        }
        gd_at = gd_sector;
        rgd_at = if rgd { rgd_sector } else { 0 };
        footer_gd = None;
    } else {
        for g in 0..grains {
            let sel = grain_sel[g as usize];
            let v = match sel % 8 {
                0 => 0,
                1 => 1,
                k => {
                    let fill = sel | 1;
                    let full = sel & 0x10 != 0;
                    let zlib = sel & 0x20 == 0;
                    let mut len = if full { gb } else { need(g) };
                    let mut lba = g * gs;
                    match k {
                        3 => lba += 1,
                        4 => len = if sel & 0x40 != 0 { gb + 512 } else { need(g) - 1 },
                        _ => {}
                    }
                    let mut c = stored(&vec![fill; len as usize], zlib || k == 5);
                    if k == 5 {
                        let l = c.len();
                        c[l - 1] ^= 0x55;
                    }
                    let size = if k == 6 { 0 } else { c.len() as u32 };
                    let at = sector(&file);
                    file.extend(lba.to_le_bytes());
                    file.extend(size.to_le_bytes());
                    file.extend(c);
                    pad(&mut file);
                    packed[g as usize] = Some((fill, len, lba == g * gs, k as i8));
                    at as u32
                }
            };
            gte[g as usize] = [v, 0];
        }
        let mut gt_sectors = Vec::new();
        for t in 0..tables {
            if table_state[t as usize] == 1 {
                gt_sectors.push(0);
                continue;
            }
            file.extend(1u64.to_le_bytes());
            file.extend(0u32.to_le_bytes());
            file.extend(1u32.to_le_bytes());
            pad(&mut file);
            gt_sectors.push(sector(&file) as u32);
            for s in 0..n {
                let g = t * n + s;
                file.extend(if g < grains { gte[g as usize][0] } else { 0 }.to_le_bytes());
            }
            pad(&mut file);
        }
        for t in 0..tables {
            gd_entries[t as usize] = match table_state[t as usize] {
                1 => [0, 0],
                0 => [gt_sectors[t as usize], 0],
                _ => [FAR, 0],
            };
        }
        file.extend(1u64.to_le_bytes());
        file.extend(0u32.to_le_bytes());
        file.extend(2u32.to_le_bytes());
        pad(&mut file);
        let gd = sector(&file);
        for e in &gd_entries {
            file.extend(e[0].to_le_bytes());
        }
        pad(&mut file);
        file.extend(1u64.to_le_bytes());
        file.extend(0u32.to_le_bytes());
        file.extend(3u32.to_le_bytes());
        pad(&mut file);
        file.extend(header(gd, 0));
        file.extend([0u8; 512]);
        gd_at = u64::MAX;
        rgd_at = 0;
        footer_gd = Some(gd);
    }
    let h = header(gd_at, rgd_at);
    file[..512].copy_from_slice(&h);

    // Damage, and the outcome of open it calls for.
    let mut open_fails: Option<K> = None;
    let mut primary_gd_gone = false;
    let footer_at = file.len() - 1024;
    match damage {
        Some(0) => {
            file[3] = b'X';
            open_fails = Some(K::Corrupt);
        }
        Some(1) => {
            put32(&mut file, 4, 4);
            open_fails = Some(K::Unsupported);
        }
        Some(2) => {
            put64(&mut file, 20, 3);
            open_fails = Some(K::Corrupt);
        }
        Some(3) => {
            put32(&mut file, 44, 513);
            open_fails = Some(K::Corrupt);
        }
        Some(4) => {
            file[75] = b'\n';
            open_fails = Some(K::Corrupt);
        }
        Some(5) => {
            put64(&mut file, 36, 0);
            open_fails = Some(K::ExtentOnly);
        }
        Some(6) if !stream => {
            put64(&mut file, 56, u64::from(FAR));
            primary_gd_gone = true;
            if !rgd {
                open_fails = Some(K::Truncated);
            }
        }
        Some(7) if stream => {
            put16(&mut file, footer_at + 77, 2);
            open_fails = Some(K::Unsupported);
        }
        Some(8) if stream => {
            file[footer_at - 512 + 12] = 9;
            open_fails = Some(K::Corrupt);
        }
        _ => {}
    }
    if cut > 0 && file.len() > 4096 {
        // Cut into the last sector only where it holds grain data (hosted).
        let cut = if stream { 0 } else { cut.min(511) };
        file.truncate(file.len() - cut as usize);
    }
    let len = file.len() as u64;
    let _ = footer_gd;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.vmdk");
    std::fs::write(&path, &file).unwrap();
    let got = VmdkFile::open(&path);
    if let Some(k) = open_fails {
        super::note(&format!("open fails {k:?}"));
        match got {
            Err(e) => assert_eq!(kind(&e), k, "{e}"),
            Ok(_) => panic!("opened despite damage {damage:?}"),
        }
        return;
    }
    let f = got.unwrap_or_else(|e| panic!("a good file is refused: {e}"));
    assert_eq!(f.virtual_size(), cap_bytes);
    assert_eq!(f.identity().value, format!("{cid:08x}"));
    match f.parent() {
        Some(p) => {
            assert!(child);
            assert_eq!(p.identities[0].value, "12345678");
            assert_eq!(p.hints[0].path, "p.vmdk");
        }
        None => assert!(!child),
    }

    // The reference walk for each grain.
    let inside = |at: u64, l: u64| at.checked_add(l).is_some_and(|e| e <= len);
    let walk = |copy: usize, g: u64| -> Result<Model, K> {
        let t = (g / n) as usize;
        if copy == 0 && primary_gd_gone {
            return Err(K::Truncated);
        }
        let e = u64::from(gd_entries[t][copy]);
        if e == 0 {
            return Ok(Model::Parent);
        }
        if !inside(e * 512, n * 4) {
            return Err(K::Corrupt);
        }
        let v = gte[g as usize][copy];
        if v == 0 {
            return Ok(Model::Parent);
        }
        if v == 1 && zero_flag {
            return Ok(Model::Zero);
        }
        let at = u64::from(v) * 512;
        if stream {
            if !inside(at, 12) {
                return Err(K::Corrupt);
            }
            return Ok(match packed[g as usize] {
                None => Model::Fails(K::BadGrain), // entry 1: the descriptor is no marker
                Some((fill, l, lba_ok, k)) => {
                    if !lba_ok || k == 5 || k == 6 || l > gb || l < need(g) {
                        Model::Fails(K::BadGrain)
                    } else {
                        Model::Packed(fill, l)
                    }
                }
            });
        }
        if !inside(at, need(g)) {
            return Err(K::Corrupt);
        }
        Ok(Model::Plain(at))
    };
    for g in 0..grains {
        let expect = match walk(0, g) {
            Ok(m) => m,
            Err(k) => match (rgd, walk(1, g)) {
                (true, Ok(m)) => m,
                _ => Model::Fails(k),
            },
        };
        super::note(
            &format!("{} grain {expect:?}", if stream { "stream" } else { "hosted" })
                .replace(|c: char| c.is_ascii_digit(), ""),
        );
        let l = need(g);
        let mut runs = Vec::new();
        let r = f.map(g * gb, l, &mut runs);
        match expect {
            Model::Fails(k) if k != K::BadGrain => {
                let e = r.expect_err("the walk is damaged");
                assert_eq!(kind(&e), k, "grain {g}: {e}");
                continue;
            }
            _ => r.unwrap_or_else(|e| panic!("grain {g}: {e}")),
        }
        assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), l);
        assert_eq!(runs.len(), 1, "grain {g}: one run");
        let run = runs[0];
        match (expect, run.source) {
            (Model::Parent, Source::Parent) | (Model::Zero, Source::Zero) => {}
            (Model::Plain(at), Source::Data { file_offset }) => {
                let mut b = vec![0u8; l as usize];
                f.read_data(file_offset, &mut b).unwrap();
                assert!(b[..] == file[at as usize..(at + l) as usize], "grain {g}: bytes");
            }
            (Model::Packed(fill, n_bytes), Source::Data { file_offset }) => {
                let mut b = vec![0u8; l as usize];
                f.read_data(file_offset, &mut b)
                    .unwrap_or_else(|e| panic!("grain {g}: {e}"));
                for (i, x) in b.iter().enumerate() {
                    assert_eq!(*x, if (i as u64) < n_bytes { fill } else { 0 }, "grain {g} byte {i}");
                }
            }
            (Model::Fails(K::BadGrain), Source::Data { file_offset }) => {
                let e = f
                    .read_data(file_offset, &mut vec![0u8; l as usize])
                    .expect_err("a bad grain");
                assert_eq!(kind(&e), K::BadGrain, "grain {g}: {e}");
            }
            (m, s) => panic!("grain {g}: expected {m:?}, mapped {s:?}"),
        }
    }
}

/// Seeds: hosted with a redundant GD and every grain and table state; a stream with
/// every grain kind; a short capacity; header and footer damage.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut hosted = vec![0b0000_0110, 3, 3, 11];
    hosted.extend([0, 0, 2, 3]);
    hosted.extend([2, 0, 1, 3, 4, 2, 2, 3, 0, 2, 4]);
    let mut stream = vec![0b0100_0101, 3, 3, 11];
    stream.extend([0, 1, 0, 2]);
    stream.extend([2, 0x12, 0x32, 3, 4, 0x44, 5, 6, 1, 0x22, 2]);
    let mut damaged_footer = vec![0b0000_1001, 8, 1, 1, 4, 0, 2, 2, 2, 2];
    damaged_footer.extend([0; 4]);
    let mut gd_gone = vec![0b0011_1010, 6, 2, 2, 6, 0, 0, 2, 2, 2, 3, 2, 2];
    gd_gone.extend([0; 4]);
    let mut cut = vec![0b0101_0000, 0x00, 0x01, 3, 1, 5, 0, 2, 2, 2, 2, 2, 2];
    cut.extend([0; 4]);
    vec![
        ("vmdk_sparse", "hosted_every_state", hosted),
        ("vmdk_sparse", "stream_every_grain_kind", stream),
        ("vmdk_sparse", "stream_footer_marker_damaged", damaged_footer),
        ("vmdk_sparse", "primary_gd_gone_redundant_used", gd_gone),
        ("vmdk_sparse", "hosted_cut_short", cut),
    ]
}
