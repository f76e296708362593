//! What `ckptfs info` shows for a VHD file: its type, creator, both sizes and the rule
//! that chose the disk size, ids, time stamps, the footer copy used, the BAT and the
//! parent fields. The JSON form is relied on by tests and scripts; fields are only ever
//! added to it.

use serde::Serialize;

use super::footer::vhd_time_text;
use super::{DiskType, VhdFile};
use crate::bytes::{braced, human_bytes};
use crate::format::vhdx::info::{row, sub_row};
use crate::format::FileInfo;
use crate::Result;

#[derive(Serialize)]
struct Info {
    file: String,
    format: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    creator_app: String,
    creator_version: String,
    creator_host: String,
    original_size: u64,
    current_size: u64,
    geometry: Geometry,
    virtual_size: u64,
    size_rule: &'static str,
    unique_id: String,
    saved_state: bool,
    time_stamp: String,
    footer_copy: &'static str,
    dynamic: Option<Dynamic>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct Geometry {
    cylinders: u16,
    heads: u8,
    sectors_per_track: u8,
    size: u64,
}

#[derive(Serialize)]
struct Dynamic {
    header_offset: u64,
    table_offset: u64,
    block_size: u32,
    max_table_entries: u32,
    blocks: u64,
    allocated_blocks: u64,
    parent: Option<Parent>,
}

#[derive(Serialize)]
struct Parent {
    unique_id: String,
    time_stamp: String,
    name: String,
    locators: Vec<Locator>,
}

#[derive(Serialize)]
struct Locator {
    index: usize,
    code: String,
    data_space: u32,
    data_length: u32,
    data_offset: u64,
    path: Option<String>,
    error: Option<String>,
}

pub fn file_info(f: &VhdFile) -> Result<FileInfo> {
    let ft = &f.footer;
    let allocated = f.allocated_blocks()?;
    let dynamic = f.sparse.as_ref().map(|s| Dynamic {
        header_offset: s.header.offset,
        table_offset: s.header.table_offset,
        block_size: s.header.block_size,
        max_table_entries: s.header.max_table_entries,
        blocks: s.geometry.blocks,
        allocated_blocks: allocated,
        parent: (f.disk_type() == DiskType::Differencing).then(|| Parent {
            unique_id: braced(&s.header.parent_unique_id),
            time_stamp: vhd_time_text(s.header.parent_time_stamp),
            name: s.header.parent_name.clone(),
            locators: s
                .locators
                .iter()
                .map(|l| Locator {
                    index: l.entry.index,
                    code: l.entry.code_text(),
                    data_space: l.entry.data_space,
                    data_length: l.entry.data_length,
                    data_offset: l.entry.data_offset,
                    path: l.path.clone().ok(),
                    error: l.path.clone().err(),
                })
                .collect(),
        }),
    });
    let info = Info {
        file: f.path().display().to_string(),
        format: "vhd",
        kind: f.disk_type().name(),
        creator_app: ft.creator_app_text(),
        creator_version: ft.creator_version_text(),
        creator_host: ft.creator_host_text(),
        original_size: ft.original_size,
        current_size: ft.current_size,
        geometry: Geometry {
            cylinders: ft.geometry.cylinders,
            heads: ft.geometry.heads,
            sectors_per_track: ft.geometry.sectors_per_track,
            size: ft.geometry.size(),
        },
        virtual_size: f.size,
        size_rule: f.size_rule.name(),
        unique_id: braced(&ft.unique_id),
        saved_state: ft.saved_state != 0,
        time_stamp: vhd_time_text(ft.time_stamp),
        footer_copy: f.footer_copy.name(),
        dynamic,
        warnings: f.warnings.clone(),
    };

    let mut t = String::new();
    row(&mut t, "file", &info.file);
    row(&mut t, "format", "VHD");
    row(&mut t, "type", info.kind);
    let creator = format!(
        "\"{}\" version {} on \"{}\"",
        info.creator_app, info.creator_version, info.creator_host
    );
    row(&mut t, "creator", &creator);
    row(&mut t, "virtual size", &human_bytes(info.virtual_size));
    sub_row(&mut t, "from", f.size_rule.describe());
    sub_row(&mut t, "current size", &human_bytes(info.current_size));
    sub_row(&mut t, "original size", &human_bytes(info.original_size));
    let g = &info.geometry;
    let chs = format!(
        "{}/{}/{} = {}",
        g.cylinders,
        g.heads,
        g.sectors_per_track,
        human_bytes(g.size)
    );
    sub_row(&mut t, "geometry (C/H/S)", &chs);
    row(&mut t, "unique id", &info.unique_id);
    row(&mut t, "time stamp", &info.time_stamp);
    row(&mut t, "saved state", if info.saved_state { "yes" } else { "no" });
    let copy = match f.footer_copy {
        super::FooterCopy::End => "at the end",
        super::FooterCopy::End511 => "at the end (511 bytes, before Virtual PC 2004)",
        super::FooterCopy::Start => "the copy at offset 0 (the one at the end is damaged)",
    };
    row(&mut t, "footer", copy);
    if let Some(d) = &info.dynamic {
        row(&mut t, "block size", &human_bytes(u64::from(d.block_size)));
        let bat = format!(
            "at offset {:#x}, {} entries, {} blocks used, {} allocated",
            d.table_offset, d.max_table_entries, d.blocks, d.allocated_blocks
        );
        row(&mut t, "BAT", &bat);
        if let Some(p) = &d.parent {
            row(&mut t, "parent unique id", &p.unique_id);
            row(&mut t, "parent time stamp", &p.time_stamp);
            row(&mut t, "parent name", &p.name);
            row(&mut t, "parent locators", "");
            for l in &p.locators {
                let v = match (&l.path, &l.error) {
                    (Some(p), _) => p.clone(),
                    (None, Some(e)) => format!("({e})"),
                    _ => String::new(),
                };
                sub_row(&mut t, &format!("{} {}", l.index, l.code), &v);
            }
        }
    }
    for w in &info.warnings {
        row(&mut t, "warning", w);
    }
    Ok(FileInfo {
        json: serde_json::to_value(&info).expect("info serializes"),
        text: t,
    })
}
