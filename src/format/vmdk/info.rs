//! What `ckptfs info` shows for a VMDK disk: the descriptor (version, encoding, CIDs,
//! createType, parent hint, `ddb.*` keys), each extent with its file and, for sparse
//! extents, the header's facts and the allocated grains. The JSON form is only ever
//! added to.

use std::fmt::Write as _;

use serde::Serialize;

use super::{ExtentKind, VmdkFile};
use crate::bytes::human_bytes;
use crate::format::vhdx::info::{row, sub_row};
use crate::format::FileInfo;
use crate::Result;

#[derive(Serialize)]
struct Info {
    file: String,
    format: &'static str,
    create_type: String,
    virtual_size: u64,
    version: Option<String>,
    encoding: Option<String>,
    decoded_as: &'static str,
    cid: String,
    parent_cid: String,
    parent_file_name_hint: Option<String>,
    /// The header of the file holding an embedded descriptor.
    embedded_in: Option<Header>,
    extents: Vec<ExtentInfo>,
    ddb: serde_json::Map<String, serde_json::Value>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct ExtentInfo {
    line: usize,
    access: &'static str,
    sectors: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    file: Option<String>,
    path: Option<String>,
    offset: u64,
    start: u64,
    /// Sparse extents: the header used and the allocated grains.
    header: Option<Header>,
    allocated_grains: Option<u64>,
    /// Extra facts of COWD and SESparse extents.
    #[serde(skip_serializing_if = "Option::is_none")]
    esx: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Header {
    offset: u64,
    version: u32,
    flags: u32,
    capacity: u64,
    grain_size: u64,
    descriptor_offset: u64,
    descriptor_size: u64,
    num_gtes_per_gt: u32,
    rgd_offset: u64,
    gd_offset: u64,
    overhead: u64,
    unclean_shutdown: bool,
    compressed: bool,
    markers: bool,
    zeroed_grains: bool,
    redundant_gd: bool,
}

fn header(h: &super::SparseHeader) -> Header {
    Header {
        offset: h.offset,
        version: h.version,
        flags: h.flags,
        capacity: h.capacity,
        grain_size: h.grain_size,
        descriptor_offset: h.descriptor_offset,
        descriptor_size: h.descriptor_size,
        num_gtes_per_gt: h.num_gtes_per_gt,
        rgd_offset: h.rgd_offset,
        gd_offset: h.gd_offset,
        overhead: h.overhead,
        unclean_shutdown: h.unclean_shutdown,
        compressed: h.compressed(),
        markers: h.markers(),
        zeroed_grains: h.zero_grain(),
        redundant_gd: h.redundant().is_some(),
    }
}

pub fn file_info(f: &VmdkFile) -> Result<FileInfo> {
    let d = &f.descriptor;
    let allocated = f.allocated_grains()?;
    let extents: Vec<ExtentInfo> = f
        .extents
        .iter()
        .zip(allocated)
        .map(|(x, alloc)| ExtentInfo {
            line: x.line.line,
            access: x.line.access.name(),
            sectors: x.line.sectors,
            kind: x.line.kind.name(),
            file: x.line.file.clone(),
            path: x.path.as_ref().map(|p| p.display().to_string()),
            offset: x.line.offset,
            start: x.start,
            header: match &x.kind {
                ExtentKind::Sparse(s) => Some(header(&s.header)),
                _ => None,
            },
            allocated_grains: alloc,
            esx: match &x.kind {
                ExtentKind::Cowd(c) => Some(c.info()),
                ExtentKind::SeSparse(s) => Some(s.info()),
                _ => None,
            },
        })
        .collect();
    let info = Info {
        file: f.path().display().to_string(),
        format: "vmdk",
        create_type: d.create_type.clone(),
        virtual_size: f.virtual_size(),
        version: d.version.clone(),
        encoding: d.encoding.clone(),
        decoded_as: d.decoded_as,
        cid: format!("{:08x}", d.cid),
        parent_cid: format!("{:08x}", d.parent_cid),
        parent_file_name_hint: d.parent_hint.clone(),
        embedded_in: f.embedded_in.as_ref().map(header),
        extents,
        ddb: d
            .keys
            .iter()
            .filter(|(k, _)| k.starts_with("ddb."))
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
        warnings: f.warnings.clone(),
    };

    let mut t = String::new();
    row(&mut t, "file", &info.file);
    row(&mut t, "format", "VMDK");
    row(&mut t, "create type", &info.create_type);
    row(&mut t, "virtual size", &human_bytes(info.virtual_size));
    let where_ = if f.embedded_in.is_some() {
        "embedded in the sparse extent"
    } else {
        "a text file"
    };
    row(&mut t, "descriptor", where_);
    sub_row(&mut t, "version", info.version.as_deref().unwrap_or("(none)"));
    let enc = match &info.encoding {
        Some(e) => format!("{e} (decoded as {})", info.decoded_as),
        None => format!("(none; decoded as {})", info.decoded_as),
    };
    sub_row(&mut t, "encoding", &enc);
    row(&mut t, "CID", &info.cid);
    let parent = if d.has_parent() {
        info.parent_cid.clone()
    } else {
        format!("{} (no parent)", info.parent_cid)
    };
    row(&mut t, "parent CID", &parent);
    if let Some(h) = &info.parent_file_name_hint {
        row(&mut t, "parent hint", h);
    }
    for x in &info.extents {
        let file = x.file.as_deref().map(|f| format!(" \"{f}\"")).unwrap_or_default();
        let off = if x.offset != 0 {
            format!(" from sector {}", x.offset)
        } else {
            String::new()
        };
        row(
            &mut t,
            &format!("extent (line {})", x.line),
            &format!("{} {} {}{file}{off}", x.access, human_bytes(x.sectors * 512), x.kind),
        );
        if let Some(h) = &x.header {
            sub_row(&mut t, "header version", &h.version.to_string());
            let mut flags = Vec::new();
            if h.compressed {
                flags.push("compressed grains");
            }
            if h.markers {
                flags.push("markers");
            }
            if h.zeroed_grains {
                flags.push("zeroed-grain entries");
            }
            if h.redundant_gd {
                flags.push("redundant grain directory");
            }
            sub_row(&mut t, "flags", &format!("{:#010x} {}", h.flags, flags.join(", ")));
            sub_row(&mut t, "capacity", &human_bytes(h.capacity * 512));
            sub_row(&mut t, "grain size", &human_bytes(h.grain_size * 512));
            sub_row(&mut t, "grain tables", &format!("{} entries each", h.num_gtes_per_gt));
            let gd = if h.offset != 0 {
                format!("sector {} (from the stream footer)", h.gd_offset)
            } else {
                format!("sector {}", h.gd_offset)
            };
            sub_row(&mut t, "grain directory", &gd);
            if h.redundant_gd {
                sub_row(&mut t, "redundant GD", &format!("sector {}", h.rgd_offset));
            }
            if h.unclean_shutdown {
                sub_row(&mut t, "unclean shutdown", "yes");
            }
        }
        if let Some(e) = &x.esx {
            if let Some(o) = e.as_object() {
                for (k, v) in o {
                    sub_row(&mut t, k, &v.to_string());
                }
            }
        }
        if let Some(a) = x.allocated_grains {
            sub_row(&mut t, "allocated grains", &a.to_string());
        }
    }
    if !info.ddb.is_empty() {
        row(&mut t, "disk database", "");
    }
    for (k, v) in &info.ddb {
        let _ = writeln!(t, "  {k} = \"{}\"", v.as_str().unwrap_or(""));
    }
    for w in &info.warnings {
        row(&mut t, "warning", w);
    }
    Ok(FileInfo {
        json: serde_json::to_value(&info).expect("info serializes"),
        text: t,
    })
}
