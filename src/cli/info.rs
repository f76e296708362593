//! `ckptfs info FILE`: one file's own facts. Needs no parent, so it works on a
//! checkpoint whose parent is missing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::human_bytes;
use crate::bytes::braced;
use crate::format::vhdx::{LogState, PayloadState, VhdxFile};
use crate::Result;

#[derive(Serialize)]
struct Info {
    file: String,
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

pub fn run(file: &Path, json: bool) -> Result<()> {
    let f = VhdxFile::open(file)?;
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
        file: std::fs::canonicalize(file)
            .unwrap_or(file.to_path_buf())
            .display()
            .to_string(),
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
    if json {
        println!("{}", serde_json::to_string_pretty(&info).expect("info serializes"));
        return Ok(());
    }
    let row = |k: &str, v: String| println!("{:<22}{v}", format!("{k}:"));
    row("file", info.file.clone());
    row("type", info.kind.to_string());
    row("creator", info.creator.clone());
    row("virtual size", human_bytes(info.virtual_size));
    row("block size", human_bytes(u64::from(info.block_size)));
    row("logical sector size", format!("{} bytes", info.logical_sector_size));
    row("physical sector size", format!("{} bytes", info.physical_sector_size));
    row("virtual disk id", info.virtual_disk_id.clone());
    row("data write guid", info.data_write_guid.clone());
    row("file write guid", info.file_write_guid.clone());
    row(
        "header",
        format!(
            "copy {} of 2, sequence number {}",
            info.header_copy, info.header_sequence_number
        ),
    );
    row(
        "log",
        match f.log_state {
            LogState::Clean => "clean".to_string(),
            LogState::Replayed { entries, head_sequence } => {
                format!("replayed {entries} entries in memory (head sequence number {head_sequence})")
            }
        },
    );
    if let Some(locator) = f.parent_locator() {
        row("parent locator", String::new());
        for (k, v) in &locator.entries {
            println!("  {k:<20}{v}");
        }
    }
    row(
        "blocks",
        format!(
            "{} payload blocks, chunk ratio {}, {} sector bitmap blocks present",
            info.blocks.payload_blocks, info.blocks.chunk_ratio, info.blocks.sector_bitmap_blocks_present
        ),
    );
    for state in PayloadState::ALL {
        println!("  {:<20}{}", state.name(), info.blocks.states[state.name()]);
    }
    if info.blocks.invalid_states > 0 {
        println!("  {:<20}{}", "invalid state", info.blocks.invalid_states);
    }
    Ok(())
}
