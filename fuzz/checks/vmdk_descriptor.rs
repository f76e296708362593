//! VMDK descriptor text: `descriptor::parse_bytes`.
//!
//! Input: a mode byte. Bit 7: the rest is descriptor bytes as-is; the outcome must be
//! `Ok` with at least one extent of a positive size and a known createType, or a
//! descriptor error (a line error's number within the text). Otherwise a descriptor is
//! built from the input: CID and parentCID (valid, or spoiled: not hex, too long,
//! missing), a createType (known, raw device, unknown, missing), an optional
//! parentFileNameHint, up to 5 extent lines (access, size (maybe 0), type (maybe
//! unknown), file name quoted or not, offset present or not), an optional line that is
//! neither a key nor an extent, and choices of encoding (UTF-8 or windows-1252 with a
//! non-ASCII file name), CRLF line ends and spaces around `=`.
//!
//! Exact outcomes, against a reference written here: the first bad line (in line
//! order) with its number; else a bad CID or parentCID with its line; else a missing
//! createType, an unknown one (its line), a raw-device one (unsupported); else no
//! extents; else `Ok` with every field and extent as built.

use ckptfs::format::vmdk::descriptor::{parse_bytes, Access, ExtentType};
use ckptfs::format::vmdk::VmdkError;

use super::Input;

const TYPES: [(&str, Option<ExtentType>); 9] = [
    ("FLAT", Some(ExtentType::Flat)),
    ("SPARSE", Some(ExtentType::Sparse)),
    ("ZERO", Some(ExtentType::Zero)),
    ("VMFS", Some(ExtentType::Vmfs)),
    ("VMFSSPARSE", Some(ExtentType::VmfsSparse)),
    ("SESPARSE", Some(ExtentType::SeSparse)),
    ("VMFSRDM", Some(ExtentType::VmfsRdm)),
    ("flat", None),
    ("SPARSY", None),
];
const ACCESS: [(&str, Access); 3] = [
    ("RW", Access::Rw),
    ("RDONLY", Access::RdOnly),
    ("NOACCESS", Access::NoAccess),
];
/// createType values: (text, known, raw device).
const CREATE: [(&str, bool, bool); 6] = [
    ("monolithicSparse", true, false),
    ("vmfsSparse", true, false),
    ("seSparse", true, false),
    ("twoGbMaxExtentFlat", true, false),
    ("vmfsRawDeviceMap", true, true),
    ("monolithicFancy", false, false),
];

#[derive(Debug, PartialEq)]
enum Expect {
    Line(usize),
    Whole,
    Unsupported,
    Ok,
}

struct Ext {
    access: Access,
    sectors: u64,
    kind: Option<ExtentType>,
    file: Option<String>,
    quoted: bool,
    offset: Option<u64>,
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    if mode & 0x80 != 0 {
        check_raw(inp.rest());
        return;
    }
    let crlf = mode & 1 != 0;
    let spaced = mode & 2 != 0;
    let latin = mode & 4 != 0;
    let cid_mode = inp.u8() % 6;
    let cid = inp.u32();
    let pcid_mode = inp.u8() % 5;
    let pcid = inp.u32();
    let (ct_text, ct_known, ct_raw) = CREATE[usize::from(inp.u8() % 6)];
    let ct_present = inp.u8() % 8 != 0;
    let hint = (inp.u8() % 2 == 1).then(|| format!("base{}.vmdk", inp.u8() % 4));
    let count = usize::from(inp.u8() % 6);
    let mut exts = Vec::new();
    for i in 0..count {
        let (a, access) = ACCESS[usize::from(inp.u8() % 3)];
        let _ = a;
        let sel = inp.u8();
        let sectors = if sel % 16 == 0 { 0 } else { u64::from(inp.u32()) + 1 };
        let kind_i = usize::from(inp.u8() % 9);
        let kind = TYPES[kind_i].1;
        let no_file = kind == Some(ExtentType::Zero) && sel & 0x20 != 0;
        let file = (!no_file).then(|| {
            if latin {
                format!("d\u{e9}{i}.vmdk")
            } else {
                format!("d-s{i:03}.vmdk")
            }
        });
        let quoted = sel & 0x40 != 0 || sel % 7 != 0;
        let offset = (sel & 0x80 != 0).then(|| u64::from(inp.u16()));
        exts.push((
            kind_i,
            Ext {
                access,
                sectors,
                kind,
                file,
                quoted,
                offset,
            },
        ));
    }
    let junk_at = (inp.u8() % 4 == 0).then(|| usize::from(inp.u8()));

    // The lines, and what each is expected to be.
    let eq = if spaced { " = " } else { "=" };
    let mut lines: Vec<(String, Option<bool>)> = vec![("# Disk DescriptorFile".into(), None)];
    lines.push((format!("version{eq}1"), None));
    lines.push((
        format!("encoding{eq}\"{}\"", if latin { "windows-1252" } else { "UTF-8" }),
        None,
    ));
    let cid_text = match cid_mode {
        0 => Some(format!("{cid:08x}")),
        1 => Some(format!("{cid:x}")),
        2 => Some(format!("{cid:08X}")),
        3 => Some("xyz".to_string()),
        4 => Some(format!("1{cid:08x}")),
        _ => None,
    };
    let cid_ok = cid_mode <= 2;
    let mut cid_line = None;
    if let Some(t) = &cid_text {
        lines.push((format!("CID{eq}{t}"), None));
        cid_line = Some(lines.len());
    }
    let (pcid_text, pcid_value, pcid_ok) = match pcid_mode {
        0 => (Some("ffffffff".to_string()), 0xffff_ffff, true),
        1 | 2 => (Some(format!("{pcid:08x}")), pcid, true),
        3 => (Some("12345678g".to_string()), 0, false),
        _ => (None, 0xffff_ffff, true),
    };
    let mut pcid_line = None;
    if let Some(t) = &pcid_text {
        lines.push((format!("parentCID{eq}{t}"), None));
        pcid_line = Some(lines.len());
    }
    if let Some(h) = &hint {
        lines.push((format!("parentFileNameHint{eq}\"{h}\""), None));
    }
    let mut ct_line = None;
    if ct_present {
        lines.push((format!("createType{eq}\"{ct_text}\""), None));
        ct_line = Some(lines.len());
    }
    lines.push((String::new(), None));
    lines.push(("# Extent description".into(), None));
    let mut ext_lines = Vec::new();
    for (kind_i, e) in &exts {
        let access = ACCESS.iter().find(|(_, a)| *a == e.access).unwrap().0;
        let mut l = format!("{access} {} {}", e.sectors, TYPES[*kind_i].0);
        if let Some(f) = &e.file {
            if e.quoted {
                l += &format!(" \"{f}\"");
            } else {
                l += &format!(" {f}");
            }
        }
        if let Some(o) = e.offset {
            l += &format!(" {o}");
        }
        let good = e.sectors > 0
            && e.kind.is_some()
            && (e.file.is_none() || e.quoted)
            && (e.offset.is_none() || matches!(e.kind, Some(ExtentType::Flat | ExtentType::Vmfs)));
        lines.push((l, Some(good)));
        ext_lines.push(lines.len());
    }
    lines.push(("# The Disk Data Base".into(), None));
    lines.push((format!("ddb.adapterType{eq}\"lsilogic\""), None));
    if let Some(at) = junk_at {
        let at = 1 + at % lines.len();
        lines.insert(at, ("just some words".into(), Some(false)));
        for l in [&mut cid_line, &mut pcid_line, &mut ct_line].into_iter().flatten() {
            if *l > at {
                *l += 1;
            }
        }
        for l in &mut ext_lines {
            if *l > at {
                *l += 1;
            }
        }
    }
    let nl = if crlf { "\r\n" } else { "\n" };
    let text: String = lines.iter().map(|(l, _)| format!("{l}{nl}")).collect();
    let bytes: Vec<u8> = if latin {
        text.chars()
            .map(|c| if c == '\u{e9}' { 0xE9 } else { c as u8 })
            .collect()
    } else {
        text.clone().into_bytes()
    };

    let expect = if let Some(bad) = lines.iter().position(|(_, good)| *good == Some(false)) {
        Expect::Line(bad + 1)
    } else if let (None, _) | (_, false) = (cid_line, cid_ok) {
        cid_line.map_or(Expect::Whole, Expect::Line)
    } else if let (Some(l), false) = (pcid_line, pcid_ok) {
        Expect::Line(l)
    } else if !ct_present {
        Expect::Whole
    } else if let (Some(l), false) = (ct_line, ct_known) {
        Expect::Line(l)
    } else if ct_raw {
        Expect::Unsupported
    } else if exts.is_empty() {
        Expect::Whole
    } else {
        Expect::Ok
    };
    super::trace(|| format!("{expect:?}\n{text}"));
    super::note(&format!("{expect:?}").replace(|c: char| c.is_ascii_digit(), ""));
    let got = parse_bytes(&bytes);
    let kind = match &got {
        Ok(_) => Expect::Ok,
        Err(VmdkError::DescriptorLine { line, .. }) => Expect::Line(*line),
        Err(VmdkError::Descriptor(_)) => Expect::Whole,
        Err(VmdkError::Unsupported(_)) => Expect::Unsupported,
        Err(e) => panic!("unexpected error kind: {e}"),
    };
    assert_eq!(kind, expect, "{got:?}\n{text}");
    let Ok(d) = got else { return };
    assert_eq!(d.cid, cid);
    assert_eq!(d.parent_cid, pcid_value);
    assert_eq!(d.create_type, ct_text);
    assert_eq!(d.parent_hint, hint);
    assert_eq!(d.version.as_deref(), Some("1"));
    assert_eq!(d.get("ddb.adapterType"), Some("lsilogic"));
    assert_eq!(d.decoded_as, if latin { "windows-1252" } else { "UTF-8" });
    assert_eq!(d.extents.len(), exts.len());
    for ((g, (_, e)), line) in d.extents.iter().zip(&exts).zip(&ext_lines) {
        assert_eq!(g.line, *line);
        assert_eq!(g.access, e.access);
        assert_eq!(g.sectors, e.sectors);
        assert_eq!(Some(g.kind), e.kind);
        assert_eq!(g.file, e.file);
        assert_eq!(g.offset, e.offset.unwrap_or(0));
    }
}

/// Any bytes: a typed outcome; an accepted descriptor has extents of positive sizes.
fn check_raw(bytes: &[u8]) {
    let lines = String::from_utf8_lossy(bytes).lines().count().max(1);
    match parse_bytes(bytes) {
        Ok(d) => {
            assert!(!d.extents.is_empty());
            assert!(d.extents.iter().all(|e| e.sectors > 0 && e.line >= 1));
        }
        Err(VmdkError::DescriptorLine { line, .. }) => {
            assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}")
        }
        Err(VmdkError::Descriptor(_) | VmdkError::Unsupported(_)) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

/// Seeds: a valid twoGbMaxExtentSparse-like descriptor in windows-1252 with CRLF, one
/// with a bad extent line, one with a raw device, and raw Workstation text.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // mode, cid mode, cid, pcid mode, pcid, createType, present, hint flag [+ n],
    // count, per extent: access, sel, [sectors], type, [offset], junk flag.
    let mut valid = vec![0b111, 0];
    valid.extend(0x216b_c064u32.to_le_bytes());
    valid.push(1);
    valid.extend(0x1234_5678u32.to_le_bytes());
    valid.extend([0, 1, 1, 2, 3]);
    for (access, sel, ty) in [(0u8, 0x41u8, 1u8), (1, 0x42, 0), (0, 0x61, 2)] {
        valid.extend([access, sel]);
        valid.extend(8_323_072u32.to_le_bytes());
        valid.push(ty);
        if sel & 0x80 != 0 {
            valid.extend(0u16.to_le_bytes());
        }
    }
    valid.push(1);
    let mut flat = vec![0, 0];
    flat.extend(7u32.to_le_bytes());
    flat.push(0);
    flat.extend(0u32.to_le_bytes());
    flat.extend([3, 1, 0, 2]);
    flat.extend([0, 0xC1]);
    flat.extend(2048u32.to_le_bytes());
    flat.extend([0, 16, 0]);
    flat.extend([2, 0x41]);
    flat.extend(100u32.to_le_bytes());
    flat.extend([8, 0]);
    let mut raw = vec![2, 0];
    raw.extend(9u32.to_le_bytes());
    raw.push(0);
    raw.extend(0u32.to_le_bytes());
    raw.extend([4, 1, 0, 1, 0, 0x41]);
    raw.extend(64u32.to_le_bytes());
    raw.extend([6, 0, 0]);
    let mut text = vec![0x80];
    text.extend_from_slice(
        b"# Disk DescriptorFile\nversion=1\nencoding=\"windows-1252\"\nCID=fffffffe\nparentCID=ffffffff\nisNativeSnapshot=\"no\"\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW 16777216 SPARSE \"test1.vmdk\"\n\n# The Disk Data Base \n#DDB\n\nddb.virtualHWVersion = \"9\"\nddb.uuid = \"60 00 C2 99 3c 3b c5 c0-29 99 4b e2 5b 11 a2 45\"\n",
    );
    vec![
        ("vmdk_descriptor", "split_sparse_windows_1252_crlf", valid),
        ("vmdk_descriptor", "flat_with_bad_extent", flat),
        ("vmdk_descriptor", "raw_device", raw),
        ("vmdk_descriptor", "workstation_text", text),
    ]
}
