//! The virtual tree that both the CLI and the mount show:
//! `<checkpoint>/disk.img` is the checkpoint's whole virtual disk.

use crate::chain::CheckpointTree;
use crate::{Error, Result};

/// Name of the raw-disk file inside each checkpoint directory.
pub const DISK_IMAGE: &str = "disk.img";

/// What a path in the virtual tree names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Root,
    Checkpoint(usize),
    DiskImage(usize),
}

/// Resolve a `/`-separated path (leading and repeated slashes ignored).
pub fn resolve(tree: &CheckpointTree, path: &str) -> Result<Entry> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let not_found = || Error::NotFound(path.to_string());
    match parts.as_slice() {
        [] => Ok(Entry::Root),
        [name, rest @ ..] => {
            let index = tree.find(name).ok_or_else(|| {
                let names: Vec<&str> = tree.checkpoints.iter().map(|c| c.name.as_str()).collect();
                Error::NotFound(format!(
                    "{path} (no checkpoint {name:?}; the checkpoints are {})",
                    names.join(", ")
                ))
            })?;
            match rest {
                [] => Ok(Entry::Checkpoint(index)),
                [file] if *file == DISK_IMAGE => Ok(Entry::DiskImage(index)),
                _ => Err(not_found()),
            }
        }
    }
}
