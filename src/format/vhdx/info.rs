//! What `ckptfs info` shows for a VHDX/AVHDX file: its type, sizes, GUIDs, log, parent
//! locator and a count of blocks per state. The JSON form is relied on by tests and
//! scripts; fields are only ever added to it.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::{LogState, PayloadState, VhdxFile};
use crate::bytes::{braced, human_bytes};
use crate::format::FileInfo;
use crate::Result;

#[derive(Serialize)]
struct Info {
    file: String,
    format: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    creator: String,
    virtual_size: u64,
    block_size: u32,
    logical_sector_size: u32,
    physical_sector_size: u32,
    leave_blocks_allocated: bool,
    virtual_disk_id: String,
    data_write_guid: String,
    file_write_guid: String,
    header_copy: usize,
    header_sequence_number: u64,
    log: LogInfo,
    parent_locator: Option<BTreeMap<String, String>>,
    blocks: BlockInfo,
}

#[derive(Serialize)]
struct LogInfo {
    state: &'static str,
    entries_replayed: usize,
    head_sequence_number: Option<u64>,
}

#[derive(Serialize)]
struct BlockInfo {
    payload_blocks: u64,
    chunk_ratio: u64,
    /// Count per payload state (states with no block are listed with 0).
    states: BTreeMap<&'static str, u64>,
    invalid_states: u64,
    sector_bitmap_blocks_present: u64,
}

pub fn file_info(f: &VhdxFile) -> Result<FileInfo> {
    let counts = f.block_counts()?;
    let m = &f.metadata;
    let log = match f.log_state {
        LogState::Clean => LogInfo {
            state: "clean",
            entries_replayed: 0,
            head_sequence_number: None,
        },
        LogState::Replayed { entries, head_sequence } => LogInfo {
            state: "replayed",
            entries_replayed: entries,
            head_sequence_number: Some(head_sequence),
        },
    };
    let info = Info {
        file: f.path().display().to_string(),
        format: "vhdx",
        kind: f.kind().name(),
        creator: f.creator.clone(),
        virtual_size: m.virtual_size,
        block_size: m.block_size,
        logical_sector_size: m.logical_sector_size,
        physical_sector_size: m.physical_sector_size,
        leave_blocks_allocated: m.leave_blocks_allocated,
        virtual_disk_id: braced(&m.virtual_disk_id),
        data_write_guid: braced(&f.header.data_write_guid),
        file_write_guid: braced(&f.header.file_write_guid),
        header_copy: f.header_copy,
        header_sequence_number: f.header.sequence_number,
        log,
        parent_locator: f.parent_locator().map(|l| l.entries.iter().cloned().collect()),
        blocks: BlockInfo {
            payload_blocks: f.geometry.payload_blocks,
            chunk_ratio: f.geometry.chunk_ratio,
            states: PayloadState::ALL
                .iter()
                .map(|s| (s.name(), counts.payload.get(s).copied().unwrap_or(0)))
                .collect(),
            invalid_states: counts.payload_invalid,
            sector_bitmap_blocks_present: counts.bitmap_present,
        },
    };

    let mut t = String::new();
    row(&mut t, "file", &info.file);
    row(&mut t, "format", "VHDX");
    row(&mut t, "type", info.kind);
    row(&mut t, "creator", &info.creator);
    row(&mut t, "virtual size", &human_bytes(info.virtual_size));
    row(&mut t, "block size", &human_bytes(u64::from(info.block_size)));
    row(
        &mut t,
        "logical sector size",
        &format!("{} bytes", info.logical_sector_size),
    );
    row(
        &mut t,
        "physical sector size",
        &format!("{} bytes", info.physical_sector_size),
    );
    row(&mut t, "virtual disk id", &info.virtual_disk_id);
    row(&mut t, "data write guid", &info.data_write_guid);
    row(&mut t, "file write guid", &info.file_write_guid);
    let header = format!(
        "copy {} of 2, sequence number {}",
        info.header_copy, info.header_sequence_number
    );
    row(&mut t, "header", &header);
    let log = match f.log_state {
        LogState::Clean => "clean".to_string(),
        LogState::Replayed { entries, head_sequence } => {
            format!("replayed {entries} entries in memory (head sequence number {head_sequence})")
        }
    };
    row(&mut t, "log", &log);
    if let Some(locator) = f.parent_locator() {
        row(&mut t, "parent locator", "");
        for (k, v) in &locator.entries {
            sub_row(&mut t, k, v);
        }
    }
    let blocks = format!(
        "{} payload blocks, chunk ratio {}, {} sector bitmap blocks present",
        info.blocks.payload_blocks, info.blocks.chunk_ratio, info.blocks.sector_bitmap_blocks_present
    );
    row(&mut t, "blocks", &blocks);
    for state in PayloadState::ALL {
        sub_row(&mut t, state.name(), &info.blocks.states[state.name()].to_string());
    }
    if info.blocks.invalid_states > 0 {
        sub_row(&mut t, "invalid state", &info.blocks.invalid_states.to_string());
    }
    Ok(FileInfo {
        json: serde_json::to_value(&info).expect("info serializes"),
        text: t,
    })
}

/// `key:` padded to a column, then the value: the layout of every `info` row.
pub(crate) fn row(t: &mut String, key: &str, value: &str) {
    let _ = writeln!(t, "{:<22}{value}", format!("{key}:"));
}

/// An indented row under the one before it.
pub(crate) fn sub_row(t: &mut String, key: &str, value: &str) {
    let _ = writeln!(t, "  {key:<20}{value}");
}
