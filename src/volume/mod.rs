//! The volumes of one checkpoint's disk: the partition table, what each partition
//! holds, and the guest filesystems ckptfs reads, opened and named.
//!
//! A readable volume becomes a directory `p<N>` (N as the table numbers it), followed by
//! `_<label>` when the filesystem has a label; a disk without a table has one volume,
//! `volume[_<label>]`. A filesystem that should be readable but fails to open still gets
//! its directory (which then fails with the reason); partitions ckptfs does not read
//! are listed with their type and why.

pub mod partition;

use std::sync::Arc;

use crate::chain::naming::safe_component;
use crate::fs::probe::{self, FsType, Probe};
use crate::fs::{self, FsOptions, GuestFs};
use crate::io::{ReadAt, Slice};
use crate::Result;
use partition::{read_partition_table, PartitionTable, TableKind};

/// One partition (or the whole disk) and what ckptfs makes of it.
pub struct VolumeEntry {
    /// As the table numbers it; `None` for a disk without a table.
    pub partition: Option<u32>,
    /// Byte range on the disk.
    pub start: u64,
    pub size: u64,
    /// What the partition table calls its type, e.g. "Microsoft basic data".
    pub table_type: Option<String>,
    pub content: Content,
}

pub enum Content {
    /// A filesystem ckptfs reads, opened.
    Filesystem { dir: String, fs: Arc<dyn GuestFs> },
    /// A filesystem ckptfs reads, which failed to open: its directory shows the error.
    Broken {
        dir: String,
        fs_type: &'static str,
        error: String,
    },
    /// Not shown as a directory; `what` says what it is and why.
    Hidden { what: String },
}

impl VolumeEntry {
    /// The directory name, if the volume has one.
    pub fn dir(&self) -> Option<&str> {
        match &self.content {
            Content::Filesystem { dir, .. } | Content::Broken { dir, .. } => Some(dir),
            Content::Hidden { .. } => None,
        }
    }
}

/// All volumes of one disk.
pub struct Volumes {
    pub table: PartitionTable,
    pub entries: Vec<VolumeEntry>,
}

impl Volumes {
    /// The volume with directory `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|v| v.dir() == Some(name))
    }
}

/// Read the partition table of `disk` and open every filesystem on it. A table that
/// cannot be read at all is an error; one damaged volume is not.
pub fn discover(disk: Arc<dyn ReadAt>, sector_size: u32, opts: &FsOptions) -> Result<Volumes> {
    let table = read_partition_table(disk.as_ref(), sector_size)?;
    for w in &table.warnings {
        log::info!("partition table: {w}");
    }
    let mut entries = Vec::new();
    if table.kind == TableKind::None {
        let size = disk.size();
        entries.push(examine(disk, None, 0, size, None, None, opts));
    } else {
        for p in &table.partitions {
            let volume: Arc<dyn ReadAt> = Arc::new(Slice::new(disk.clone(), p.start, p.size));
            let refusal = p.kind.not_a_filesystem();
            entries.push(examine(
                volume,
                Some(p.number),
                p.start,
                p.size,
                Some(p.kind.describe()),
                refusal,
                opts,
            ));
        }
    }
    Ok(Volumes { table, entries })
}

fn examine(
    volume: Arc<dyn ReadAt>,
    partition: Option<u32>,
    start: u64,
    size: u64,
    table_type: Option<String>,
    refusal: Option<&'static str>,
    opts: &FsOptions,
) -> VolumeEntry {
    let base = match partition {
        Some(n) => format!("p{n}"),
        None => "volume".to_string(),
    };
    let content = match refusal {
        Some(why) => Content::Hidden { what: why.to_string() },
        None => match probe::probe(volume.as_ref()) {
            Err(e) => Content::Hidden {
                what: format!("unreadable: {e}"),
            },
            Ok(Probe::Unknown) => Content::Hidden {
                what: "no filesystem ckptfs recognises".to_string(),
            },
            Ok(Probe::Unsupported(what)) => Content::Hidden { what: what.to_string() },
            Ok(Probe::Supported(kind)) => match fs::open(kind, volume, opts) {
                Ok(fs) => {
                    let dir = match fs.label() {
                        Some(label) => format!("{base}_{}", safe_component(&label)),
                        None => base,
                    };
                    Content::Filesystem { dir, fs }
                }
                Err(e) => {
                    log::debug!("{base}: {e}");
                    Content::Broken {
                        dir: base,
                        fs_type: fs_type_name(kind),
                        error: e.to_string(),
                    }
                }
            },
        },
    };
    VolumeEntry {
        partition,
        start,
        size,
        table_type,
        content,
    }
}

fn fs_type_name(kind: FsType) -> &'static str {
    match kind {
        FsType::Ntfs => "ntfs",
        FsType::Fat => "fat",
        FsType::Ext => "ext",
    }
}
