//! The text descriptor: a file of its own, or embedded in a hosted sparse extent.
//!
//! ```text
//! # Disk DescriptorFile
//! version=1
//! encoding="windows-1252"
//! CID=fffffffe
//! parentCID=ffffffff
//! createType="monolithicSparse"
//! RW 16777216 SPARSE "test1.vmdk"
//! ddb.geometry.cylinders = "16383"
//! ```
//!
//! Rules:
//! - Text is cut at the first NUL (embedded descriptors are padded with them), then
//!   decoded with the `encoding` the descriptor declares (any WHATWG label:
//!   windows-1252, Shift_JIS, GBK, UTF-8, ...); without one, as UTF-8, else as
//!   windows-1252 when it is not valid UTF-8 (Workstation's default on Windows).
//! - Blank lines and lines starting with `#` are comments. A line starting with an
//!   access word (`RW`, `RDONLY`, `NOACCESS`) is an extent; any other line must be
//!   `key = value` (quotes around the value are dropped). Anything else is an error
//!   naming the line.
//! - `CID` (up to 8 hex digits) is required; `parentCID` defaults to `ffffffff` (no
//!   parent); `createType` is required and must be a type VMware defines.
//! - Extent lines: `ACCESS SECTORS TYPE "FILE" [OFFSET]`; SECTORS > 0; OFFSET (sectors)
//!   only for FLAT and VMFS extents (0 when absent); ZERO extents may omit the file.

use super::error::VmdkError;

/// `parentCID` of a disk without a parent.
pub const NO_PARENT: u32 = 0xffff_ffff;

/// The descriptor text must fit in this many bytes.
pub const MAX_DESCRIPTOR: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Rw,
    RdOnly,
    NoAccess,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Rw => "RW",
            Access::RdOnly => "RDONLY",
            Access::NoAccess => "NOACCESS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentType {
    /// Raw data in a file, from an offset (monolithicFlat, twoGbMaxExtentFlat).
    Flat,
    /// A hosted sparse (`KDMV`) extent, or a streamOptimized one.
    Sparse,
    /// Zeros, no file.
    Zero,
    /// Raw data in an ESXi `-flat.vmdk`.
    Vmfs,
    /// An ESXi `COWD` delta extent.
    VmfsSparse,
    /// An ESXi SESparse extent.
    SeSparse,
    /// Raw device mappings: the data is on a LUN, not in a file.
    VmfsRdm,
    VmfsRaw,
}

impl ExtentType {
    pub fn name(self) -> &'static str {
        match self {
            ExtentType::Flat => "FLAT",
            ExtentType::Sparse => "SPARSE",
            ExtentType::Zero => "ZERO",
            ExtentType::Vmfs => "VMFS",
            ExtentType::VmfsSparse => "VMFSSPARSE",
            ExtentType::SeSparse => "SESPARSE",
            ExtentType::VmfsRdm => "VMFSRDM",
            ExtentType::VmfsRaw => "VMFSRAW",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "FLAT" => ExtentType::Flat,
            "SPARSE" => ExtentType::Sparse,
            "ZERO" => ExtentType::Zero,
            "VMFS" => ExtentType::Vmfs,
            "VMFSSPARSE" => ExtentType::VmfsSparse,
            "SESPARSE" => ExtentType::SeSparse,
            "VMFSRDM" => ExtentType::VmfsRdm,
            "VMFSRAW" => ExtentType::VmfsRaw,
            _ => return None,
        })
    }
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// 1-based line number in the descriptor.
    pub line: usize,
    pub access: Access,
    pub sectors: u64,
    pub kind: ExtentType,
    /// The file name as written (relative to the descriptor's directory); `None` for a
    /// ZERO extent without one.
    pub file: Option<String>,
    /// Start of the data in the file, in sectors (FLAT, VMFS).
    pub offset: u64,
}

/// The `createType`s VMware defines; `Some(reason)` for those whose data is not in
/// files (raw devices), which are refused.
pub const CREATE_TYPES: &[(&str, Option<&str>)] = &[
    ("monolithicSparse", None),
    ("monolithicFlat", None),
    ("twoGbMaxExtentSparse", None),
    ("twoGbMaxExtentFlat", None),
    ("streamOptimized", None),
    ("vmfs", None),
    ("vmfsSparse", None),
    ("vmfsThin", None),
    ("vmfsPreallocated", None),
    ("vmfsEagerZeroedThick", None),
    ("seSparse", None),
    ("custom", None),
    ("vsanSparse", Some("vSAN objects are not files")),
    ("vmfsRaw", Some("a raw device: the data is on a LUN, not in a file")),
    (
        "vmfsRawDeviceMap",
        Some("a raw device mapping: the data is on a LUN, not in a file"),
    ),
    (
        "vmfsPassthroughRawDeviceMap",
        Some("a raw device mapping: the data is on a LUN, not in a file"),
    ),
    (
        "fullDevice",
        Some("a physical disk: the data is on a device, not in a file"),
    ),
    (
        "partitionedDevice",
        Some("physical partitions: the data is on a device, not in a file"),
    ),
];

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub version: Option<String>,
    /// The declared encoding label, if any, and the one used to decode.
    pub encoding: Option<String>,
    pub decoded_as: &'static str,
    pub cid: u32,
    pub parent_cid: u32,
    pub create_type: String,
    pub parent_hint: Option<String>,
    pub extents: Vec<ExtentLine>,
    /// Every `key = value` line, in order (including the ones above).
    pub keys: Vec<(String, String)>,
}

impl Descriptor {
    /// The value of `key` (case-insensitive), the last one if it repeats.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_parent(&self) -> bool {
        self.parent_cid != NO_PARENT
    }
}

/// Whether `b` (the start of a file) begins like a text descriptor: optional UTF-8 BOM
/// and whitespace, then `# Disk DescriptorFile`.
pub fn looks_like_descriptor(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let rest = &b[start..];
    const SIG: &[u8] = b"# Disk DescriptorFile";
    rest.len() >= SIG.len() && rest[..SIG.len()].eq_ignore_ascii_case(SIG)
}

/// Decode descriptor bytes as the rules above say; returns the text and the encoding
/// used.
pub fn decode(bytes: &[u8]) -> (String, Option<String>, &'static str) {
    let bytes = &bytes[..bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len())];
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // The encoding line is ASCII in every encoding a descriptor may use.
    let declared = bytes.split(|&c| c == b'\n').find_map(|l| {
        let l = String::from_utf8_lossy(l);
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("encoding")
            .then(|| unquote(v.trim()).to_string())
    });
    let chosen = declared
        .as_deref()
        .and_then(|l| encoding_rs::Encoding::for_label(l.trim().as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    if chosen == encoding_rs::UTF_8 {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return (s.to_string(), declared, "UTF-8");
        }
        let (s, _, _) = encoding_rs::WINDOWS_1252.decode(bytes);
        return (s.into_owned(), declared, "windows-1252");
    }
    let (s, _) = chosen.decode_without_bom_handling(bytes);
    (s.into_owned(), declared, chosen.name())
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

fn parse_cid(line: usize, key: &str, v: &str) -> Result<u32, VmdkError> {
    let ok = !v.is_empty() && v.len() <= 8 && v.bytes().all(|c| c.is_ascii_hexdigit());
    ok.then(|| u32::from_str_radix(v, 16).ok()).flatten().ok_or_else(|| {
        VmdkError::line(
            line,
            format!("{key}={v:?} is not a hexadecimal number of up to 8 digits"),
        )
    })
}

/// Parse one extent line (already trimmed); `None` if it does not start with an access
/// word.
fn parse_extent(line: usize, text: &str) -> Option<Result<ExtentLine, VmdkError>> {
    let (word, rest) = text.split_once(|c: char| c.is_ascii_whitespace())?;
    let access = match word {
        "RW" => Access::Rw,
        "RDONLY" => Access::RdOnly,
        "NOACCESS" => Access::NoAccess,
        _ => return None,
    };
    Some(parse_extent_rest(line, access, rest.trim_start()))
}

fn parse_extent_rest(line: usize, access: Access, rest: &str) -> Result<ExtentLine, VmdkError> {
    let bad = |what: String| VmdkError::line(line, format!("bad extent line: {what}"));
    let (sectors, rest) = rest
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| bad("no extent type after the size".into()))?;
    let sectors: u64 = sectors
        .parse()
        .map_err(|_| bad(format!("size {sectors:?} is not a number of sectors")))?;
    if sectors == 0 {
        return Err(bad("size is 0 sectors".into()));
    }
    if sectors > u64::MAX / 512 {
        return Err(bad(format!("size {sectors} sectors is too large")));
    }
    let rest = rest.trim_start();
    let (kind_text, rest) = rest.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((rest, ""));
    let kind = ExtentType::parse(kind_text).ok_or_else(|| bad(format!("unknown extent type {kind_text:?}")))?;
    let rest = rest.trim_start();
    let (file, rest) = if let Some(q) = rest.strip_prefix('"') {
        let end = q
            .find('"')
            .ok_or_else(|| bad("the file name has no closing quote".into()))?;
        if q[..end].is_empty() {
            return Err(bad("the file name is empty".into()));
        }
        (Some(q[..end].to_string()), q[end + 1..].trim())
    } else if rest.is_empty() && kind == ExtentType::Zero {
        (None, "")
    } else {
        return Err(bad("the file name must be in double quotes".into()));
    };
    let offset = match rest {
        "" => 0,
        o if matches!(kind, ExtentType::Flat | ExtentType::Vmfs) => o
            .parse()
            .map_err(|_| bad(format!("offset {o:?} is not a number of sectors")))?,
        o => {
            return Err(bad(format!(
                "unexpected {o:?} after the file name of a {} extent",
                kind.name()
            )))
        }
    };
    Ok(ExtentLine {
        line,
        access,
        sectors,
        kind,
        file,
        offset,
    })
}

/// Parse a descriptor's text.
pub fn parse(text: &str, encoding: Option<String>, decoded_as: &'static str) -> Result<Descriptor, VmdkError> {
    let mut keys = Vec::new();
    let mut extents = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(e) = parse_extent(line, t) {
            extents.push(e?);
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(VmdkError::line(
                line,
                format!("{:?} is neither `key = value` nor an extent line", truncate(t)),
            ));
        };
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-:".contains(&c)) {
            return Err(VmdkError::line(line, format!("{:?} is not a key", truncate(k))));
        }
        keys.push((line, k.to_string(), unquote(v.trim()).to_string()));
    }
    let find = |key: &str| keys.iter().rev().find(|(_, k, _)| k.eq_ignore_ascii_case(key));
    let (cid_line, _, cid_text) = find("CID").ok_or_else(|| VmdkError::Descriptor("no CID".into()))?;
    let cid = parse_cid(*cid_line, "CID", cid_text)?;
    let parent_cid = match find("parentCID") {
        Some((l, _, v)) => parse_cid(*l, "parentCID", v)?,
        None => NO_PARENT,
    };
    let (ct_line, _, create_type) = find("createType").ok_or_else(|| VmdkError::Descriptor("no createType".into()))?;
    match CREATE_TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(create_type)) {
        None => {
            return Err(VmdkError::line(*ct_line, format!("unknown createType {create_type:?}")));
        }
        Some((n, Some(why))) => {
            return Err(VmdkError::Unsupported(format!("createType \"{n}\" is {why}")));
        }
        Some(_) => {}
    }
    let parent_hint = find("parentFileNameHint")
        .map(|(_, _, v)| v.clone())
        .filter(|v| !v.is_empty());
    if extents.is_empty() {
        return Err(VmdkError::Descriptor("no extent lines".into()));
    }
    Ok(Descriptor {
        version: find("version").map(|(_, _, v)| v.clone()),
        encoding,
        decoded_as,
        cid,
        parent_cid,
        create_type: create_type.clone(),
        parent_hint,
        extents,
        keys: keys.into_iter().map(|(_, k, v)| (k, v)).collect(),
    })
}

/// Decode and parse descriptor bytes.
pub fn parse_bytes(bytes: &[u8]) -> Result<Descriptor, VmdkError> {
    let (text, declared, used) = decode(bytes);
    parse(&text, declared, used)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}
