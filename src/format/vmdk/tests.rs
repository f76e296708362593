//! Unit tests: the descriptor parser on text, the sparse header on bytes, and whole
//! hosted sparse files built by hand in a temp dir (grain states, the redundant grain
//! directory, compressed grains and the stream footer).

use std::io::Write as _;
use std::path::Path;

use super::descriptor::{decode, looks_like_descriptor, parse, parse_bytes};
use super::sparse::{
    parse_header, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NL_DETECT, FLAG_RGD, FLAG_ZERO_GRAIN, GD_AT_END,
};
use super::*;
use crate::format::DiskFile;

const DESC: &str = "# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"x-flat.vmdk\" 0\nRDONLY 100 ZERO\nNOACCESS 8 FLAT \"y.vmdk\" 16\n\n#DDB\nddb.adapterType = \"lsilogic\"\n";

fn text(extra: &str) -> String {
    format!("# Disk DescriptorFile\nCID=00000001\ncreateType=\"twoGbMaxExtentSparse\"\n{extra}")
}

#[test]
fn descriptor_keys_and_extents() {
    let d = parse(DESC, None, "UTF-8").unwrap();
    assert_eq!(d.cid, 0x1234_abcd);
    assert!(!d.has_parent());
    assert_eq!(d.create_type, "monolithicFlat");
    assert_eq!(d.get("ddb.adapterType"), Some("lsilogic"));
    assert_eq!(d.version.as_deref(), Some("1"));
    assert_eq!(d.extents.len(), 3);
    let e = &d.extents[0];
    assert_eq!(
        (e.line, e.access, e.sectors, e.kind, e.file.as_deref(), e.offset),
        (8, Access::Rw, 2048, ExtentType::Flat, Some("x-flat.vmdk"), 0)
    );
    assert_eq!(
        (d.extents[1].kind, d.extents[1].file.as_deref()),
        (ExtentType::Zero, None)
    );
    assert_eq!((d.extents[2].access, d.extents[2].offset), (Access::NoAccess, 16));
}

#[test]
fn descriptor_parent_and_cid_forms() {
    let d = parse(
        &text("parentCID=a\nparentFileNameHint=\"C:\\VMs\\base.vmdk\"\nRW 8 SPARSE \"x-s001.vmdk\"\r\n"),
        None,
        "UTF-8",
    )
    .unwrap();
    assert_eq!(d.parent_cid, 0xa);
    assert!(d.has_parent());
    assert_eq!(d.parent_hint.as_deref(), Some(r"C:\VMs\base.vmdk"));
    for bad in ["CID=xyz", "CID=123456789", "CID="] {
        let t = format!("# Disk DescriptorFile\n{bad}\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"a\"\n");
        let e = parse(&t, None, "UTF-8").unwrap_err().to_string();
        assert!(e.contains("descriptor line 2") && e.contains("CID"), "{e}");
    }
}

#[test]
fn descriptor_errors_name_the_line() {
    let cases = [
        (
            text("createType=\"fancySparse\"\nRW 8 SPARSE \"a\"\n"),
            "line 4",
            "unknown createType",
        ),
        (text("RW 8 SPARSY \"a\"\n"), "line 4", "unknown extent type"),
        (text("RW eight SPARSE \"a\"\n"), "line 4", "not a number"),
        (text("RW 0 SPARSE \"a\"\n"), "line 4", "0 sectors"),
        (text("RW 8 SPARSE a.vmdk\n"), "line 4", "double quotes"),
        (text("RW 8 SPARSE \"a.vmdk\n"), "line 4", "closing quote"),
        (text("RW 8 SPARSE \"a.vmdk\" 5\n"), "line 4", "unexpected"),
        (text("RW 8 FLAT \"a.vmdk\" x\n"), "line 4", "offset"),
        (
            text("RW 8 SPARSE \"a\"\nthis is not a key value line\n"),
            "line 5",
            "neither",
        ),
        (text(""), "descriptor", "no extent lines"),
        (
            "# Disk DescriptorFile\ncreateType=\"vmfs\"\nRW 8 VMFS \"a\"\n".to_string(),
            "descriptor",
            "no CID",
        ),
    ];
    for (t, at, what) in cases {
        let e = parse(&t, None, "UTF-8").unwrap_err().to_string();
        assert!(e.contains(at) && e.contains(what), "{t:?}: {e}");
    }
    let e = parse(
        &text("createType=\"vmfsRawDeviceMap\"\nRW 8 VMFSRDM \"a\"\n"),
        None,
        "UTF-8",
    )
    .unwrap_err();
    assert!(e.to_string().contains("LUN"), "{e}");
}

#[test]
fn descriptor_encodings() {
    // windows-1252 declared: 0xE9 is é.
    let mut b = b"# Disk DescriptorFile\nencoding=\"windows-1252\"\nCID=1\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"caf\xe9.vmdk\"\n".to_vec();
    let d = parse_bytes(&b).unwrap();
    assert_eq!(d.extents[0].file.as_deref(), Some("café.vmdk"));
    assert_eq!(d.decoded_as, "windows-1252");
    // Shift_JIS: 0x83 0x65 is テ.
    b = b"# Disk DescriptorFile\nencoding=\"Shift_JIS\"\nCID=1\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"\x83\x65.vmdk\"\n".to_vec();
    assert_eq!(parse_bytes(&b).unwrap().extents[0].file.as_deref(), Some("テ.vmdk"));
    // No declaration: UTF-8, else windows-1252; cut at the first NUL.
    let (t, declared, used) = decode(b"CID=1\n\xe9\0garbage");
    assert_eq!((t.as_str(), declared, used), ("CID=1\né", None, "windows-1252"));
    let (t, _, used) = decode("\u{feff}x=é".as_bytes());
    assert_eq!((t.as_str(), used), ("x=é", "UTF-8"));
}

#[test]
fn descriptor_detection_needs_the_signature_line() {
    assert!(looks_like_descriptor(b"# Disk DescriptorFile\nversion=1"));
    assert!(looks_like_descriptor(b"\xEF\xBB\xBF \r\n# disk descriptorfile\n"));
    assert!(!looks_like_descriptor(b"# Disk Descriptor"));
    assert!(!looks_like_descriptor(b"version=1\n# Disk DescriptorFile"));
    assert!(!looks_like_descriptor(b"hello world, just some text\n"));
    assert_eq!(kind_of(b"# Disk DescriptorFile\n", 100), Some(Kind::Descriptor));
    assert_eq!(
        kind_of(b"# Disk DescriptorFile\n", 64 << 20),
        None,
        "too large to be one"
    );
    assert_eq!(kind_of(b"KDMV\x01", 100), Some(Kind::Sparse));
    assert_eq!(kind_of(b"COWD\x01", 100), Some(Kind::Cowd));
    assert_eq!(kind_of(&0xcafe_babe_u64.to_le_bytes(), 100), Some(Kind::SeSparse));
}

/// A 512-byte KDMV header.
pub(super) fn header(flags: u32, capacity: u64, grain: u64, desc: (u64, u64), gtes: u32, rgd: u64, gd: u64) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[0..4].copy_from_slice(b"KDMV");
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[8..12].copy_from_slice(&flags.to_le_bytes());
    b[12..20].copy_from_slice(&capacity.to_le_bytes());
    b[20..28].copy_from_slice(&grain.to_le_bytes());
    b[28..36].copy_from_slice(&desc.0.to_le_bytes());
    b[36..44].copy_from_slice(&desc.1.to_le_bytes());
    b[44..48].copy_from_slice(&gtes.to_le_bytes());
    b[48..56].copy_from_slice(&rgd.to_le_bytes());
    b[56..64].copy_from_slice(&gd.to_le_bytes());
    b[73..77].copy_from_slice(b"\n \r\n");
    b[77..79].copy_from_slice(&1u16.to_le_bytes());
    b
}

#[test]
fn sparse_header_checks() {
    let h = parse_header(&header(FLAG_NL_DETECT, 2048, 128, (1, 1), 512, 0, 21), 0).unwrap();
    assert_eq!(
        (h.capacity, h.grain_size, h.gd_entries(), h.grains()),
        (2048, 128, 1, 16)
    );
    let mut b = header(FLAG_NL_DETECT, 2048, 128, (1, 1), 512, 0, 21);
    b[75] = b'\n';
    assert!(parse_header(&b, 0).unwrap_err().to_string().contains("text mode"));
    for (grain, gtes, what) in [
        (0, 512, "grain size"),
        (3, 512, "grain size"),
        (128, 0, "entries"),
        (128, 513, "entries"),
    ] {
        let e = parse_header(&header(0, 2048, grain, (0, 0), gtes, 0, 21), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{e}");
    }
    let mut b = header(0, 2048, 128, (0, 0), 512, 0, 21);
    b[4] = 4;
    assert!(parse_header(&b, 0).unwrap_err().to_string().contains("version 4"));
    b[0] = b'X';
    assert!(parse_header(&b, 0).unwrap_err().to_string().contains("magic"));
    assert!(parse_header(&b[..100], 0).is_err());
}

/// A monolithicSparse file of grains of 8 sectors (4 KiB), 4 entries per GT, with an
/// embedded descriptor, primary and redundant tables. `grains[i]`: None = unallocated,
/// Some(0) = zero grain, Some(b) = data filled with b. Layout (sectors): 0 header, 1
/// descriptor, 2 redundant GD, 3 redundant GT of table 0, 4 GD, 5.. GTs, then grains.
const G: u64 = 8; // sectors per grain
const N: u32 = 4; // entries per grain table

fn sparse_file(grains: &[Option<u8>], parent: Option<&str>) -> Vec<u8> {
    let cap = grains.len() as u64 * G;
    let desc = match parent {
        None => format!("# Disk DescriptorFile\nversion=1\nCID=0000abcd\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\nRW {cap} SPARSE \"t.vmdk\"\n"),
        Some(p) => format!("# Disk DescriptorFile\nversion=1\nCID=0000abce\nparentCID=0000abcd\nparentFileNameHint=\"{p}\"\ncreateType=\"monolithicSparse\"\nRW {cap} SPARSE \"t.vmdk\"\n"),
    };
    let mut f = header(FLAG_NL_DETECT | FLAG_RGD | FLAG_ZERO_GRAIN, cap, G, (1, 1), N, 2, 4);
    let mut d = desc.into_bytes();
    d.resize(512, 0);
    f.extend(d);
    let tables = grains.len().div_ceil(N as usize);
    let mut gd = Vec::new();
    let mut rgd = Vec::new();
    let mut gts = Vec::new();
    let mut data = Vec::new();
    // Table t at sector 5 + t (primary); the redundant copy holds table 0 at sector 3,
    // and every redundant GD entry points there (enough for tables of unallocated
    // grains beyond the first).
    for t in 0..tables {
        gd.extend((5 + t as u32).to_le_bytes());
        rgd.extend(3u32.to_le_bytes());
    }
    let first_data = 5 + tables as u32;
    let mut next = first_data;
    for t in 0..tables {
        let mut gt = vec![0u8; 512];
        for s in 0..N as usize {
            let i = t * N as usize + s;
            let v = match grains.get(i).copied().flatten() {
                None => 0,
                Some(0) => 1,
                Some(b) => {
                    data.extend(std::iter::repeat_n(b, (G * 512) as usize));
                    next += G as u32;
                    next - G as u32
                }
            };
            gt[s * 4..s * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        gts.extend(gt);
    }
    let mut rgd_sector = rgd;
    rgd_sector.resize(512, 0);
    f.extend(rgd_sector);
    let mut rgt = gts[..512].to_vec();
    rgt.resize(512, 0);
    f.extend(rgt);
    let mut gd_sector = gd;
    gd_sector.resize(512, 0);
    f.extend(gd_sector);
    f.extend(gts);
    assert_eq!(f.len() as u32, first_data * 512);
    f.extend(data);
    f
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn runs(f: &VmdkFile, offset: u64, len: u64) -> Vec<Run> {
    let mut out = Vec::new();
    Layer::map(f, offset, len, &mut out).unwrap();
    out
}

fn read(f: &VmdkFile, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut at = 0usize;
    for r in runs(f, offset, len as u64) {
        let dst = &mut out[at..at + r.len as usize];
        match r.source {
            Source::Data { file_offset } => f.read_data(file_offset, dst).unwrap(),
            Source::Zero | Source::Parent => dst.fill(0),
        }
        at += r.len as usize;
    }
    out
}

#[test]
fn hosted_sparse_grain_states() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "t.vmdk",
        &sparse_file(&[Some(0xA1), None, Some(0), Some(0xA4), None, Some(0xA6)], None),
    );
    let f = VmdkFile::open(&p).unwrap();
    assert_eq!(f.virtual_size(), 6 * 4096);
    assert_eq!(f.identity().value, "0000abcd");
    assert!(f.parent().is_none());
    let r = runs(&f, 0, 6 * 4096);
    let kinds: Vec<(u64, &str)> = r
        .iter()
        .map(|r| {
            (
                r.len,
                match r.source {
                    Source::Data { .. } => "data",
                    Source::Zero => "zero",
                    Source::Parent => "parent",
                },
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (4096, "data"),
            (4096, "parent"),
            (4096, "zero"),
            (4096, "data"),
            (4096, "parent"),
            (4096, "data")
        ]
    );
    let b = read(&f, 3 * 4096 - 512, 1024);
    assert_eq!(&b[..512], &[0u8; 512]);
    assert_eq!(&b[512..], &[0xA4; 512]);
    assert_eq!(read(&f, 5 * 4096, 4096), vec![0xA6; 4096]);
    let mut pieces = Vec::new();
    let Source::Data { file_offset } = r[0].source else {
        panic!()
    };
    assert!(f.data_pieces(file_offset, 4096, &mut pieces));
    assert!(Layer::map(&f, 6 * 4096, 512, &mut Vec::new()).is_err());
    assert!(Layer::map(&f, 1, 512, &mut Vec::new()).is_err());
    // The info counts allocated grains.
    assert_eq!(f.allocated_grains().unwrap(), vec![Some(3)]);
}

#[test]
fn child_names_its_parent_by_cid_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "c.vmdk", &sparse_file(&[None; 4], Some("base.vmdk")));
    let f = VmdkFile::open(&p).unwrap();
    let r = f.parent().unwrap();
    assert_eq!(r.identities[0].value, "0000abcd");
    assert_eq!(r.hints[0].path, "base.vmdk");
}

#[test]
fn damaged_primary_walk_falls_back_to_the_redundant_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = sparse_file(&[Some(0xB1), Some(0xB2), None, None], None);
    // The primary GT's entry of grain 1 points far past the end of the file.
    let at = 5 * 512 + 4;
    b[at..at + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    let p = write(dir.path(), "t.vmdk", &b);
    let f = VmdkFile::open(&p).unwrap();
    assert_eq!(read(&f, 4096, 4096), vec![0xB2; 4096]);
    assert_eq!(
        f.allocated_grains().unwrap(),
        vec![Some(2)],
        "counted through the redundant walk too"
    );
    // Both copies damaged: an error naming the grain table and the file.
    let rat = 3 * 512 + 4;
    b[rat..rat + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    let p = write(dir.path(), "t.vmdk", &b);
    let f = VmdkFile::open(&p).unwrap();
    let e = Layer::map(&f, 4096, 4096, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("t.vmdk") && e.contains("grain table at offset 0xa04") && e.contains("past the end"),
        "{e}"
    );
    // A GD entry pointing outside is damage too.
    let mut b = sparse_file(&[Some(0xC1), None, None, None], None);
    b[4 * 512..4 * 512 + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let p = write(dir.path(), "t.vmdk", &b);
    let f = VmdkFile::open(&p).unwrap();
    assert_eq!(read(&f, 0, 4096), vec![0xC1; 4096]);
}

#[test]
fn a_sparse_extent_without_descriptor_is_not_a_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = sparse_file(&[None; 4], None);
    b[28..44].fill(0);
    let p = write(dir.path(), "x-s001.vmdk", &b);
    let e = VmdkFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("x-s001.vmdk") && e.contains("without a descriptor"), "{e}");
}

/// A streamOptimized file: header with GD at the end, compressed grains with markers,
/// GT, GD, footer marker, footer, end of stream. `grains[i]`: Some(b) = grain of byte
/// b, compressed; `tamper` edits the bytes of one compressed grain.
fn stream_file(grains: &[Option<u8>], capacity_sectors: u64, tamper: impl Fn(usize, &mut Vec<u8>)) -> Vec<u8> {
    let flags = FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS;
    let desc = format!("# Disk DescriptorFile\nCID=00000777\ncreateType=\"streamOptimized\"\nRDONLY {capacity_sectors} SPARSE \"s.vmdk\"\n");
    let mut f = header(flags, capacity_sectors, G, (1, 1), N, 0, GD_AT_END);
    let mut d = desc.into_bytes();
    d.resize(512, 0);
    f.extend(d);
    let mut gt = vec![0u32; N as usize];
    for (i, g) in grains.iter().enumerate() {
        let Some(b) = g else { continue };
        let len = ((capacity_sectors * 512) - i as u64 * G * 512).min(G * 512) as usize;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&vec![*b; len]).unwrap();
        let mut c = z.finish().unwrap();
        tamper(i, &mut c);
        gt[i] = (f.len() / 512) as u32;
        f.extend((i as u64 * G).to_le_bytes());
        f.extend((c.len() as u32).to_le_bytes());
        f.extend(c);
        f.resize(f.len().div_ceil(512) * 512, 0);
    }
    let marker = |f: &mut Vec<u8>, kind: u32, sectors: u64| {
        f.extend(sectors.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend(kind.to_le_bytes());
        f.resize(f.len() + 496, 0);
    };
    marker(&mut f, 1, 1); // grain table
    let gt_sector = f.len() / 512;
    for e in gt {
        f.extend(e.to_le_bytes());
    }
    f.resize(f.len().div_ceil(512) * 512, 0);
    marker(&mut f, 2, 1); // grain directory
    let gd_sector = f.len() / 512;
    f.extend((gt_sector as u32).to_le_bytes());
    f.resize(f.len().div_ceil(512) * 512, 0);
    marker(&mut f, 3, 1); // footer
    f.extend(header(flags, capacity_sectors, G, (1, 1), N, 0, gd_sector as u64));
    marker(&mut f, 0, 0); // end of stream
    f
}

#[test]
fn stream_optimized_reads_from_the_footer_and_inflates_grains() {
    let dir = tempfile::tempdir().unwrap();
    // 3.5 grains: the last one is short and inflates to 2 KiB.
    let p = write(
        dir.path(),
        "s.vmdk",
        &stream_file(&[Some(0x51), None, Some(0x53), Some(0x54)], 28, |_, _| {}),
    );
    let f = VmdkFile::open(&p).unwrap();
    assert_eq!(f.virtual_size(), 28 * 512);
    assert_eq!(read(&f, 0, 4096), vec![0x51; 4096]);
    assert_eq!(read(&f, 4096, 4096), vec![0; 4096]);
    // Across two grains, the second one short.
    let b = read(&f, 2 * 4096 + 2048, 4096);
    assert_eq!(&b[..2048], &[0x53; 2048]);
    assert_eq!(&b[2048..], &[0x54; 2048]);
    let r = runs(&f, 0, 4096);
    let Source::Data { file_offset } = r[0].source else {
        panic!()
    };
    assert!(
        !f.data_pieces(file_offset, 4096, &mut Vec::new()),
        "compressed data is not spliced"
    );
}

#[test]
fn bad_compressed_grains_are_errors_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    type Tamper = fn(usize, &mut Vec<u8>);
    let cases: [(&str, Tamper); 2] = [
        ("does not inflate", |_, c| {
            c.truncate(4);
            c.extend([0xff; 8]);
        }),
        ("inflates to", |_, c| {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&[1u8; 100]).unwrap();
            *c = z.finish().unwrap();
        }),
    ];
    for (what, tamper) in cases {
        let p = write(dir.path(), "s.vmdk", &stream_file(&[Some(0x51)], 8, tamper));
        let f = VmdkFile::open(&p).unwrap();
        let r = runs(&f, 0, 4096);
        let Source::Data { file_offset } = r[0].source else {
            panic!()
        };
        let e = f.read_data(file_offset, &mut [0u8; 4096]).unwrap_err().to_string();
        assert!(
            e.contains("s.vmdk") && e.contains("compressed grain at offset 0x400") && e.contains(what),
            "{e}"
        );
    }
    // A footer that is no footer.
    let mut b = stream_file(&[Some(0x51)], 8, |_, _| {});
    let n = b.len();
    b[n - 1536 + 12] = 9;
    let p = write(dir.path(), "s.vmdk", &b);
    let e = VmdkFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("footer marker"), "{e}");
}

#[test]
fn flat_zero_and_noaccess_extents_in_one_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "x-flat.vmdk", &vec![0x77u8; 2048 * 512]);
    write(dir.path(), "y.vmdk", &vec![0x88u8; 24 * 512]);
    let p = write(dir.path(), "x.vmdk", DESC.as_bytes());
    let f = VmdkFile::open(&p).unwrap();
    assert_eq!(f.virtual_size(), (2048 + 100 + 8) * 512);
    assert_eq!(read(&f, 2047 * 512, 1024), [vec![0x77; 512], vec![0; 512]].concat());
    let e = Layer::map(&f, 2148 * 512, 512, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOACCESS") && e.contains("line 10"), "{e}");
    // A flat file shorter than its line, and a missing one.
    write(dir.path(), "x-flat.vmdk", &vec![0x77u8; 2047 * 512]);
    let e = VmdkFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("x-flat.vmdk") && e.contains("truncated"), "{e}");
    std::fs::remove_file(dir.path().join("x-flat.vmdk")).unwrap();
    let e = VmdkFile::open(&p).unwrap_err().to_string();
    assert!(
        e.contains("x.vmdk: descriptor line 8") && e.contains("\"x-flat.vmdk\" is missing"),
        "{e}"
    );
}

#[test]
fn packed_offsets_address_the_right_extent() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.vmdk", &vec![0x0Au8; 4096]);
    write(dir.path(), "b.vmdk", &[vec![0u8; 1024], vec![0x0Bu8; 4096]].concat());
    let d = "# Disk DescriptorFile\nCID=1\ncreateType=\"twoGbMaxExtentFlat\"\nRW 8 FLAT \"a.vmdk\" 0\nRW 8 FLAT \"sub/b.vmdk\" 2\n";
    let p = write(dir.path(), "d.vmdk", d.as_bytes());
    let f = VmdkFile::open(&p).unwrap();
    let r = runs(&f, 0, 8192);
    assert_eq!(r.len(), 2, "two files never merge: {r:?}");
    assert_eq!(
        r[1].source,
        Source::Data {
            file_offset: (1 << 48) | 1024
        }
    );
    assert_eq!(read(&f, 3584, 1024), [vec![0x0A; 512], vec![0x0B; 512]].concat());
    assert!(f.read_data(5 << 48, &mut [0u8; 1]).is_err());
}

/// A COWD extent: `grains` of 8 sectors, 4096 per table; `table_of[i]` = data byte of
/// grain i (None: unallocated). Layout: header, GD at sector 1, one GT at sector 2
/// (32 sectors), grains from sector 34 in reverse order.
fn cowd_file(grains: &[Option<u8>]) -> Vec<u8> {
    let cap = grains.len() as u32 * 8;
    let mut f = vec![0u8; 512];
    f[0..4].copy_from_slice(b"COWD");
    for (at, v) in [(4, 1u32), (8, 3), (12, cap), (16, 8), (20, 1), (24, 1), (28, 0)] {
        f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    let mut gd = 2u32.to_le_bytes().to_vec();
    gd.resize(512, 0);
    f.extend(gd);
    let allocated: Vec<usize> = (0..grains.len()).filter(|i| grains[*i].is_some()).rev().collect();
    let mut gt = vec![0u8; 4096 * 4];
    let mut data = Vec::new();
    for (n, &i) in allocated.iter().enumerate() {
        let sector = 34 + n as u32 * 8;
        gt[i * 4..i * 4 + 4].copy_from_slice(&sector.to_le_bytes());
        data.extend(std::iter::repeat_n(grains[i].unwrap(), 4096));
    }
    f.extend(gt);
    assert_eq!(f.len(), 34 * 512);
    f.extend(data);
    f
}

#[test]
fn cowd_delta_extent() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "vm-000001-delta.vmdk",
        &cowd_file(&[None, Some(0xD1), None, Some(0xD3)]),
    );
    let desc = "# Disk DescriptorFile\nversion=1\nCID=00000002\nparentCID=00000001\ncreateType=\"vmfsSparse\"\nparentFileNameHint=\"/vmfs/volumes/ds1/vm/vm.vmdk\"\nRW 32 VMFSSPARSE \"vm-000001-delta.vmdk\"\n";
    let p = write(dir.path(), "vm-000001.vmdk", desc.as_bytes());
    let f = VmdkFile::open(&p).unwrap();
    assert_eq!(f.virtual_size(), 32 * 512);
    let r = runs(&f, 0, 16384);
    let parents: Vec<bool> = r.iter().map(|r| r.source == Source::Parent).collect();
    assert_eq!(parents, [true, false, true, false]);
    assert_eq!(read(&f, 4096, 4096), vec![0xD1; 4096]);
    assert_eq!(read(&f, 3 * 4096 + 512, 512), vec![0xD3; 512]);
    assert_eq!(f.allocated_grains().unwrap(), vec![Some(2)]);
    assert_eq!(f.parent().unwrap().hints[0].path, "/vmfs/volumes/ds1/vm/vm.vmdk");
    // Opened alone, the extent is not a disk.
    let e = VmdkFile::open(&dir.path().join("vm-000001-delta.vmdk"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("COWD") && e.contains("without a descriptor"), "{e}");
    // A grain table entry past the end of the file.
    let mut b = cowd_file(&[None, Some(0xD1), None, Some(0xD3)]);
    b[1024 + 4..1024 + 8].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    write(dir.path(), "vm-000001-delta.vmdk", &b);
    let f = VmdkFile::open(&p).unwrap();
    let e = Layer::map(&f, 4096, 512, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("vm-000001-delta.vmdk") && e.contains("COWD grain table at offset 0x404"),
        "{e}"
    );
    // A capacity smaller than the line, a grain directory outside the file.
    let mut b = cowd_file(&[None; 4]);
    b[12..16].copy_from_slice(&16u32.to_le_bytes());
    write(dir.path(), "vm-000001-delta.vmdk", &b);
    assert!(VmdkFile::open(&p)
        .unwrap_err()
        .to_string()
        .contains("less than the descriptor"));
    let mut b = cowd_file(&[None; 4]);
    b[20..24].copy_from_slice(&9999u32.to_le_bytes());
    write(dir.path(), "vm-000001-delta.vmdk", &b);
    assert!(VmdkFile::open(&p)
        .unwrap_err()
        .to_string()
        .contains("not inside the file"));
}

/// An SESparse extent of 2 grain tables' worth (2 × 4096 grains of 4 KiB): GD at
/// sector 2, GTs at sector 3 (64 sectors each), grains at sector 3 + 128. `entries`:
/// (grain, raw GT entry); the GD points table 0 at GT index 1 and table 1 nowhere.
fn sesparse_file(entries: &[(u64, u64)], grains: &[(u64, u8)], replay: u64) -> Vec<u8> {
    let cap = 2 * 4096 * 8u64;
    let mut h = vec![0u8; 512];
    let mut put = |at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(0, 0xcafe_babe);
    put(8, 0x0000_0002_0000_0001);
    put(16, cap);
    put(24, 8);
    put(32, 64);
    put(80, 1); // volatile header
    put(88, 1);
    put(112, 1); // journal (unused here)
    put(128, 2); // GD: one sector, 64 entries
    put(136, 1);
    put(144, 3); // GTs
    put(152, 128);
    put(192, 3 + 128); // grains
    let mut f = h;
    let mut v = vec![0u8; 512];
    v[0..8].copy_from_slice(&0xcafe_cafe_u64.to_le_bytes());
    v[24..32].copy_from_slice(&replay.to_le_bytes());
    f.extend(v);
    let mut gd = vec![0u8; 512];
    gd[0..8].copy_from_slice(&0x1000_0000_0000_0001_u64.to_le_bytes());
    f.extend(gd);
    let mut gts = vec![0u8; 128 * 512];
    for (grain, raw) in entries {
        let at = (4096 + grain) as usize * 8; // table index 1
        gts[at..at + 8].copy_from_slice(&raw.to_le_bytes());
    }
    f.extend(gts);
    let mut data = Vec::new();
    for (n, byte) in grains {
        let at = *n as usize * 4096;
        if data.len() < at + 4096 {
            data.resize(at + 4096, 0);
        }
        data[at..at + 4096].fill(*byte);
    }
    f.extend(data);
    f
}

#[test]
fn sesparse_grain_types_and_the_swizzle() {
    // Grain number 0x1003 is stored as 0x3000_0000_0000_0001 | 0x003 << 48.
    let swizzled = 0x3000_0000_0000_0000 | (0x003 << 48) | 0x1;
    assert_eq!(sesparse::decode_gte(swizzled), Some(sesparse::Grain::At(0x1003)));
    assert_eq!(
        sesparse::decode_gte(0x3000_0000_0000_0002),
        Some(sesparse::Grain::At(0x2000))
    );
    assert_eq!(
        sesparse::decode_gte(0x3005_0000_0000_0000),
        Some(sesparse::Grain::At(5))
    );
    assert_eq!(sesparse::decode_gte(0), Some(sesparse::Grain::Unallocated));
    assert_eq!(sesparse::decode_gte(0x0000_0000_0000_0001), None);
    assert_eq!(sesparse::decode_gte(0x1000_0000_0000_0000), Some(sesparse::Grain::Zero));
    assert_eq!(sesparse::decode_gte(0x2000_0000_0000_0007), Some(sesparse::Grain::Zero));
    assert_eq!(sesparse::decode_gte(0x4000_0000_0000_0000), None);
    assert_eq!(sesparse::decode_gde(0x1000_0000_0000_0005), Some(Some(5)));
    assert_eq!(sesparse::decode_gde(0x2000_0000_0000_0005), None);

    let dir = tempfile::tempdir().unwrap();
    let entries = [
        (0, 0x3000_0000_0000_0000 | (1 << 48)), // grain number 1
        (1, 0x1000_0000_0000_0000),             // unmapped
        (2, 0x2000_0000_0000_0000),             // zero
        (4, 0x3000_0000_0000_0000),             // grain number 0
    ];
    let ext = sesparse_file(&entries, &[(0, 0xE0), (1, 0xE1)], 0);
    write(dir.path(), "d-sesparse.vmdk", &ext);
    let desc = "# Disk DescriptorFile\nCID=00000003\nparentCID=00000001\nparentFileNameHint=\"d.vmdk\"\ncreateType=\"seSparse\"\nRW 65536 SESPARSE \"d-sesparse.vmdk\"\n";
    let p = write(dir.path(), "d-000001.vmdk", desc.as_bytes());
    let f = VmdkFile::open(&p).unwrap();
    let r = runs(&f, 0, 5 * 4096);
    let kinds: Vec<&str> = r
        .iter()
        .map(|r| match r.source {
            Source::Data { .. } => "data",
            Source::Zero => "zero",
            Source::Parent => "parent",
        })
        .collect();
    assert_eq!(kinds, ["data", "zero", "parent", "data"]);
    assert_eq!(read(&f, 0, 4096), vec![0xE1; 4096]);
    assert_eq!(read(&f, 4 * 4096, 4096), vec![0xE0; 4096]);
    // Table 1 of the directory is not allocated: the parent's.
    assert_eq!(runs(&f, 4096 * 4096, 4096)[0].source, Source::Parent);
    assert_eq!(f.allocated_grains().unwrap(), vec![Some(2)]);
    // An unknown type, a grain past the end of the file.
    for (raw, what) in [
        (0x5000_0000_0000_0000u64, "unknown type"),
        (0x3000_0000_0000_0fff, "past the end"),
    ] {
        write(dir.path(), "d-sesparse.vmdk", &sesparse_file(&[(0, raw)], &[(0, 1)], 0));
        let f = VmdkFile::open(&p).unwrap();
        let e = Layer::map(&f, 0, 4096, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains("d-sesparse.vmdk") && e.contains("SESparse grain table") && e.contains(what),
            "{e}"
        );
    }
    // A journal that needs replay is refused.
    write(
        dir.path(),
        "d-sesparse.vmdk",
        &sesparse_file(&entries, &[(0, 1), (1, 2)], 1),
    );
    let e = VmdkFile::open(&p).unwrap_err().to_string();
    assert!(
        e.contains("d-sesparse.vmdk") && e.contains("journal") && e.contains("replay"),
        "{e}"
    );
    // A version qemu does not know.
    let mut b = sesparse_file(&entries, &[], 0);
    b[8] = 2;
    write(dir.path(), "d-sesparse.vmdk", &b);
    assert!(VmdkFile::open(&p).unwrap_err().to_string().contains("version"));
}
