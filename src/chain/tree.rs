//! The checkpoint tree: from any one file of it, walk up the parent locators to the
//! base, then find children by scanning the directories of the tree's files (and any
//! search directories) for VHDX/AVHDX files whose parent is a member. Each file is one
//! checkpoint state: the disk as seen through it and its ancestors.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::layered_disk::{LayeredDisk, DEFAULT_CACHED_RUNS};
use super::naming::{assign_names, NameInput};
use super::parent::{canonical, locate_parent, FileCache};
use crate::format::vhdx::VhdxFile;
use crate::format::Layer;
use crate::{Error, Result};

/// Longest chain of parents accepted.
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// More directories to look in for parents and children.
    pub search_dirs: Vec<PathBuf>,
}

/// One checkpoint state.
#[derive(Debug)]
pub struct Checkpoint {
    /// Directory name under the mount; unique in the tree.
    pub name: String,
    /// Canonical path of the file holding this state.
    pub path: PathBuf,
    pub file: Arc<VhdxFile>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// 1 for the base disk.
    pub depth: usize,
    /// The file's modification time.
    pub modified: SystemTime,
    /// The newest leaf: the state a running VM writes to.
    pub current: bool,
}

/// All states of one tree, in display order (pre-order, siblings oldest first).
#[derive(Debug)]
pub struct CheckpointTree {
    pub checkpoints: Vec<Checkpoint>,
}

impl CheckpointTree {
    /// Find the whole tree that `start` belongs to.
    pub fn discover(start: &Path, opts: &DiscoverOptions) -> Result<Self> {
        let mut files = FileCache::default();
        let search_dirs: Vec<PathBuf> = opts.search_dirs.iter().filter_map(|d| canonical(d).ok()).collect();
        let start_path = canonical(start)?;
        let start_file = files.open(&start_path)?;

        // Up: start, its parent, ..., the base.
        let mut up: Vec<(PathBuf, Arc<VhdxFile>)> = vec![(start_path.clone(), start_file)];
        let mut seen: HashSet<PathBuf> = HashSet::from([start_path]);
        loop {
            let (path, file) = up.last().cloned().unwrap();
            if !file.metadata.has_parent {
                break;
            }
            if up.len() >= MAX_DEPTH {
                return Err(Error::ChainTooDeep {
                    child: start.to_path_buf(),
                    limit: MAX_DEPTH,
                });
            }
            let (ppath, pfile) = locate_parent(&file, &path, &search_dirs, &mut files)?;
            if !seen.insert(ppath.clone()) {
                return Err(Error::ChainCycle {
                    child: path,
                    repeated: ppath,
                });
            }
            check_compatible(&path, &file, &ppath, &pfile)?;
            up.push((ppath, pfile));
        }

        // Members, base first; parent indices point into this list.
        let mut members: Vec<(PathBuf, Arc<VhdxFile>, Option<usize>, usize)> = Vec::new();
        for (i, (p, f)) in up.into_iter().rev().enumerate() {
            members.push((p, f, i.checked_sub(1), i + 1));
        }
        let mut index: HashMap<PathBuf, usize> = members.iter().enumerate().map(|(i, m)| (m.0.clone(), i)).collect();

        // Down: scan directories for files whose parent is a member, until none is new.
        let mut candidates: Vec<PathBuf> = Vec::new();
        let mut dirs_scanned: HashSet<PathBuf> = HashSet::new();
        loop {
            let dirs: Vec<PathBuf> = members
                .iter()
                .filter_map(|m| m.0.parent().map(Path::to_path_buf))
                .chain(search_dirs.iter().cloned())
                .collect();
            for dir in dirs {
                if dirs_scanned.insert(dir.clone()) {
                    candidates.extend(disk_files_in(&dir));
                }
            }
            let mut added = false;
            for cpath in &candidates {
                if index.contains_key(cpath) {
                    continue;
                }
                let Ok(cfile) = files.open(cpath) else {
                    log::debug!("{}: not a readable VHDX, skipped", cpath.display());
                    continue;
                };
                let Some(linkages) = cfile.parent_locator().and_then(|l| l.linkages().ok()) else {
                    continue;
                };
                // Cheap filter before resolving paths: does it name a member's DataWriteGuid?
                if !members.iter().any(|m| linkages.contains(&m.1.header.data_write_guid)) {
                    continue;
                }
                let parent = match locate_parent(&cfile, cpath, &search_dirs, &mut files) {
                    Ok((ppath, _)) => index.get(&ppath).copied(),
                    Err(e) => {
                        log::warn!("{}: skipped as a child: {e}", cpath.display());
                        None
                    }
                };
                let Some(parent) = parent else { continue };
                let depth = members[parent].3 + 1;
                if depth > MAX_DEPTH {
                    return Err(Error::ChainTooDeep {
                        child: cpath.clone(),
                        limit: MAX_DEPTH,
                    });
                }
                check_compatible(cpath, &cfile, &members[parent].0, &members[parent].1)?;
                index.insert(cpath.clone(), members.len());
                members.push((cpath.clone(), cfile, Some(parent), depth));
                added = true;
            }
            if !added {
                break;
            }
        }
        Ok(Self::arrange(members))
    }

    /// Order the members for display and name them.
    fn arrange(members: Vec<(PathBuf, Arc<VhdxFile>, Option<usize>, usize)>) -> Self {
        let modified: Vec<SystemTime> = members
            .iter()
            .map(|m| {
                m.1.file_metadata()
                    .and_then(|md| md.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            })
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        for (i, m) in members.iter().enumerate() {
            if let Some(p) = m.2 {
                children[p].push(i);
            }
        }
        let sort_key = |i: &usize| (modified[*i], members[*i].0.clone());
        for c in &mut children {
            c.sort_by_key(sort_key);
        }
        // Pre-order from the base (member 0).
        let mut order = Vec::with_capacity(members.len());
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            order.push(i);
            stack.extend(children[i].iter().rev());
        }
        let current = (0..members.len())
            .filter(|i| children[*i].is_empty())
            .max_by_key(sort_key)
            .unwrap_or(0);

        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(pos, i)| (*i, pos)).collect();
        let inputs: Vec<NameInput> = order
            .iter()
            .map(|&i| NameInput {
                depth: members[i].3,
                modified: modified[i],
                current: i == current,
                stem: members[i]
                    .0
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            })
            .collect();
        let names = assign_names(&inputs);

        let mut by_member: Vec<Option<(PathBuf, Arc<VhdxFile>, Option<usize>, usize)>> =
            members.into_iter().map(Some).collect();
        let checkpoints = order
            .iter()
            .zip(names)
            .map(|(&i, name)| {
                let (path, file, parent, depth) = by_member[i].take().unwrap();
                Checkpoint {
                    name,
                    path,
                    file,
                    parent: parent.map(|p| position[&p]),
                    children: children[i].iter().map(|c| position[c]).collect(),
                    depth,
                    modified: modified[i],
                    current: i == current,
                }
            })
            .collect();
        CheckpointTree { checkpoints }
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.checkpoints.iter().position(|c| c.name == name)
    }

    /// The files of checkpoint `index` and its ancestors, newest first.
    pub fn layers(&self, index: usize) -> Vec<Arc<dyn Layer>> {
        let mut layers: Vec<Arc<dyn Layer>> = Vec::new();
        let mut at = Some(index);
        while let Some(i) = at {
            layers.push(self.checkpoints[i].file.clone());
            at = self.checkpoints[i].parent;
        }
        layers
    }

    /// The whole virtual disk of checkpoint `index`.
    pub fn disk(&self, index: usize) -> LayeredDisk {
        LayeredDisk::new(self.layers(index), DEFAULT_CACHED_RUNS)
    }
}

/// A child and its parent must agree on the sector size, which the sector bitmap
/// depends on (MS-VHDX 2.6.2.4).
fn check_compatible(child_path: &Path, child: &VhdxFile, parent_path: &Path, parent: &VhdxFile) -> Result<()> {
    let (c, p) = (child.metadata.logical_sector_size, parent.metadata.logical_sector_size);
    if c != p {
        return Err(Error::Usage(format!(
            "{}: logical sector size {c} differs from its parent {} ({p})",
            child_path.display(),
            parent_path.display()
        )));
    }
    if child.metadata.virtual_size != parent.metadata.virtual_size {
        log::warn!(
            "{}: virtual size {} differs from its parent {} ({})",
            child_path.display(),
            child.metadata.virtual_size,
            parent_path.display(),
            parent.metadata.virtual_size
        );
    }
    Ok(())
}

/// The `.vhdx` and `.avhdx` files in `dir` (any letter case), canonical, sorted.
fn disk_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.eq_ignore_ascii_case("vhdx") || x.eq_ignore_ascii_case("avhdx"))
        })
        .filter(|p| p.is_file())
        .filter_map(|p| canonical(&p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}
