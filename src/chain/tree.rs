//! The checkpoint tree: from any one file of it, walk up the parent references to the
//! base, then find children by scanning the directories of the tree's files (and any
//! search directories) for disk files, recognised by content, whose parent is a member.
//! Each state a file holds (one for most formats) is one checkpoint: the disk as seen
//! through it and its ancestors. Nothing here knows a format: each answers through
//! [`DiskFile`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::layered_disk::{LayeredDisk, DEFAULT_CACHED_RUNS};
use super::naming::{assign_names, NameInput};
use super::parent::{canonical, locate_parent, FileCache};
use crate::format::{DiskFile, Layer};
use crate::{Error, Result};

/// Longest chain of parents accepted.
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// More directories to look in for parents and children.
    pub search_dirs: Vec<PathBuf>,
    /// Use a parent whose identity is not the one its child recorded (a VMDK whose
    /// parentCID is not the parent's CID, a VHDX whose parent_linkage is not the
    /// parent's DataWriteGuid, ...), with a warning, instead of refusing the chain.
    pub accept_parent_mismatch: bool,
}

/// One checkpoint state.
#[derive(Debug)]
pub struct Checkpoint {
    /// Directory name under the mount; unique in the tree.
    pub name: String,
    /// Canonical path of the file holding this state.
    pub path: PathBuf,
    pub file: Arc<dyn DiskFile>,
    /// Which of the file's states this is (an index into [`DiskFile::states`]).
    pub state: usize,
    /// The state's id inside its file (a qcow2 internal snapshot's); `None` where the
    /// file holds one state.
    pub snapshot: Option<String>,
    /// This state alone, without its ancestors.
    pub layer: Arc<dyn Layer>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// 1 for the base disk.
    pub depth: usize,
    /// When the state stopped changing: the time its format records, else the file's
    /// modification time.
    pub modified: SystemTime,
    /// The newest leaf: the state a running VM writes to.
    pub current: bool,
}

/// A state found during discovery, before the tree is ordered and named.
struct Member {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    state: usize,
    layer: Arc<dyn Layer>,
    parent: Option<usize>,
    depth: usize,
    modified: SystemTime,
    snapshot: Option<String>,
}

/// The states found so far, and for each file the member its children attach to.
#[derive(Default)]
struct Members {
    list: Vec<Member>,
    /// Canonical path → the member of that file's active state.
    active: HashMap<PathBuf, usize>,
}

impl Members {
    /// Add every state of `file`; states without a parent inside the file attach to
    /// `parent` (a member index). Checks depth, and that each state's layer agrees with
    /// the layer it is read over.
    fn add_file(&mut self, path: &Path, file: Arc<dyn DiskFile>, parent: Option<usize>) -> Result<()> {
        let states = file.states();
        let first = self.list.len();
        let count = states.len();
        // Parent inside the file, as a member index; out-of-range links count as none.
        let parent_of = |i: usize| match states[i].parent_in_file {
            Some(p) if p < count && p != i => Some(first + p),
            _ => parent,
        };
        // Depths in an order where parents come first; a loop among states is an error.
        let mut depth: Vec<Option<usize>> = vec![None; count];
        for i in 0..count {
            let mut trail = Vec::new();
            let mut at = i;
            while depth[at].is_none() {
                if trail.contains(&at) {
                    return Err(Error::ChainCycle {
                        child: path.to_path_buf(),
                        repeated: path.to_path_buf(),
                    });
                }
                trail.push(at);
                match parent_of(at) {
                    Some(m) if m >= first => at = m - first,
                    Some(m) => {
                        depth[at] = Some(self.list[m].depth + 1);
                    }
                    None => depth[at] = Some(1),
                }
            }
            while let Some(t) = trail.pop() {
                if depth[t].is_none() {
                    let m = parent_of(t).expect("only states with an in-file parent wait");
                    depth[t] = Some(depth[m - first].expect("set before its children") + 1);
                }
            }
        }
        let modified = file.modified();
        for (i, info) in states.iter().enumerate() {
            let d = depth[i].expect("every depth is set");
            if d > MAX_DEPTH {
                return Err(Error::ChainTooDeep {
                    child: path.to_path_buf(),
                    limit: MAX_DEPTH,
                });
            }
            let layer = file.clone().layer(i);
            self.list.push(Member {
                path: path.to_path_buf(),
                file: file.clone(),
                state: i,
                layer,
                parent: parent_of(i),
                depth: d,
                modified: info.created.unwrap_or(modified),
                snapshot: info.snapshot.clone(),
            });
        }
        for i in first..self.list.len() {
            if let Some(p) = self.list[i].parent {
                check_compatible(&self.list[i], &self.list[p])?;
            }
        }
        self.active
            .insert(path.to_path_buf(), first + file.active_state().min(count - 1));
        Ok(())
    }
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
        let mut up: Vec<(PathBuf, Arc<dyn DiskFile>)> = vec![(start_path.clone(), start_file)];
        let mut seen: HashSet<PathBuf> = HashSet::from([start_path]);
        loop {
            let (path, file) = up.last().cloned().expect("starts with one file");
            let Some(parent_ref) = file.parent() else {
                break;
            };
            if up.len() >= MAX_DEPTH {
                return Err(Error::ChainTooDeep {
                    child: start.to_path_buf(),
                    limit: MAX_DEPTH,
                });
            }
            let (ppath, pfile) = locate_parent(
                &parent_ref,
                &path,
                &search_dirs,
                &mut files,
                opts.accept_parent_mismatch,
            )?;
            if !seen.insert(ppath.clone()) {
                return Err(Error::ChainCycle {
                    child: path,
                    repeated: ppath,
                });
            }
            for w in file.parent_warnings(pfile.as_ref()) {
                log::warn!("{}: {w}", path.display());
            }
            up.push((ppath, pfile));
        }

        // Members, base first.
        let mut members = Members::default();
        let mut parent = None;
        for (path, file) in up.into_iter().rev() {
            members.add_file(&path, file, parent)?;
            parent = Some(members.active[&path]);
        }

        // Down: scan directories for files whose parent is a member, until none is new.
        let mut candidates: Vec<PathBuf> = Vec::new();
        let mut dirs_scanned: HashSet<PathBuf> = HashSet::new();
        loop {
            let dirs: Vec<PathBuf> = members
                .list
                .iter()
                .filter_map(|m| m.path.parent().map(Path::to_path_buf))
                .chain(search_dirs.iter().cloned())
                .collect();
            for dir in dirs {
                if dirs_scanned.insert(dir.clone()) {
                    candidates.extend(files_in(&dir));
                }
            }
            let mut added = false;
            for cpath in &candidates {
                if members.active.contains_key(cpath) {
                    continue;
                }
                let cfile = match files.open(cpath) {
                    Ok(f) => f,
                    Err(e) => {
                        log::debug!("{}: not a disk file ckptfs reads, skipped: {e}", cpath.display());
                        continue;
                    }
                };
                let Some(parent_ref) = cfile.parent() else {
                    continue;
                };
                // Cheap filter before resolving paths: does it name a member's identity?
                if !opts.accept_parent_mismatch
                    && !parent_ref.identities.is_empty()
                    && !members.list.iter().any(|m| parent_ref.accepts(&m.file.identity()))
                {
                    continue;
                }
                let parent = match locate_parent(
                    &parent_ref,
                    cpath,
                    &search_dirs,
                    &mut files,
                    opts.accept_parent_mismatch,
                ) {
                    Ok((ppath, pfile)) => members.active.get(&ppath).copied().inspect(|_| {
                        for w in cfile.parent_warnings(pfile.as_ref()) {
                            log::warn!("{}: {w}", cpath.display());
                        }
                    }),
                    Err(e) => {
                        log::warn!("{}: skipped as a child: {e}", cpath.display());
                        None
                    }
                };
                let Some(parent) = parent else { continue };
                members.add_file(cpath, cfile, Some(parent))?;
                added = true;
            }
            if !added {
                break;
            }
        }
        Ok(Self::arrange(members.list))
    }

    /// Order the members for display and name them.
    fn arrange(members: Vec<Member>) -> Self {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        for (i, m) in members.iter().enumerate() {
            if let Some(p) = m.parent {
                children[p].push(i);
            }
        }
        let sort_key = |i: &usize| (members[*i].modified, members[*i].path.clone(), members[*i].state);
        for c in &mut children {
            c.sort_by_key(sort_key);
        }
        // Pre-order from the roots (states without a parent; the base file's come first).
        let mut order = Vec::with_capacity(members.len());
        let mut roots: Vec<usize> = (0..members.len()).filter(|i| members[*i].parent.is_none()).collect();
        roots.sort_by_key(|i| (*i != 0, sort_key(i)));
        let mut stack: Vec<usize> = roots.into_iter().rev().collect();
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
                depth: members[i].depth,
                modified: members[i].modified,
                current: i == current,
                stem: members[i]
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            })
            .collect();
        let names = assign_names(&inputs);

        let mut by_member: Vec<Option<Member>> = members.into_iter().map(Some).collect();
        let checkpoints = order
            .iter()
            .zip(names)
            .map(|(&i, name)| {
                let m = by_member[i].take().expect("each member is placed once");
                Checkpoint {
                    name,
                    path: m.path,
                    file: m.file,
                    state: m.state,
                    snapshot: m.snapshot,
                    layer: m.layer,
                    parent: m.parent.map(|p| position[&p]),
                    children: children[i].iter().map(|c| position[c]).collect(),
                    depth: m.depth,
                    modified: m.modified,
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
            layers.push(self.checkpoints[i].layer.clone());
            at = self.checkpoints[i].parent;
        }
        layers
    }

    /// The whole virtual disk of checkpoint `index`.
    pub fn disk(&self, index: usize) -> LayeredDisk {
        LayeredDisk::new(self.layers(index), DEFAULT_CACHED_RUNS)
    }
}

/// A child and its parent must agree on the logical sector size, which sector bitmaps
/// count in; a size difference is only worth a warning (the child's size rules).
fn check_compatible(child: &Member, parent: &Member) -> Result<()> {
    let (c, p) = (&child.layer, &parent.layer);
    if c.logical_sector_size() != p.logical_sector_size() {
        return Err(Error::ParentIncompatible {
            child: child.path.clone(),
            parent: parent.path.clone(),
            what: "logical sector size",
            child_value: c.logical_sector_size().to_string(),
            parent_value: p.logical_sector_size().to_string(),
        });
    }
    if c.virtual_size() != p.virtual_size() {
        log::warn!(
            "{}: virtual size {} differs from its parent {} ({})",
            child.path.display(),
            c.virtual_size(),
            parent.path.display(),
            p.virtual_size()
        );
    }
    Ok(())
}

/// The regular files in `dir`, canonical, sorted: each is probed by content.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| canonical(&p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileInfo, Identity, ParentRef, Run, Source, StateInfo};

    /// A file holding several states, as a qcow2 file with internal snapshots does.
    #[derive(Debug)]
    struct MultiState {
        path: PathBuf,
        /// Parent state inside the file, per state.
        parents: Vec<Option<usize>>,
        active: usize,
        sector: u32,
    }

    impl Layer for MultiState {
        fn path(&self) -> &Path {
            &self.path
        }
        fn virtual_size(&self) -> u64 {
            1 << 20
        }
        fn logical_sector_size(&self) -> u32 {
            self.sector
        }
        fn map(&self, _offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
            out.push(Run {
                len,
                source: Source::Parent,
            });
            Ok(())
        }
        fn read_data(&self, _: u64, _: &mut [u8]) -> Result<()> {
            unreachable!("maps nothing to data")
        }
    }

    impl DiskFile for MultiState {
        fn path(&self) -> &Path {
            &self.path
        }
        fn format(&self) -> &'static str {
            "test"
        }
        fn identity(&self) -> Identity {
            Identity {
                field: "name",
                value: self.path.display().to_string(),
            }
        }
        fn parent(&self) -> Option<ParentRef> {
            None
        }
        fn states(&self) -> Vec<StateInfo> {
            self.parents
                .iter()
                .enumerate()
                .map(|(i, p)| StateInfo {
                    snapshot: Some(i.to_string()),
                    parent_in_file: *p,
                    ..StateInfo::default()
                })
                .collect()
        }
        fn active_state(&self) -> usize {
            self.active
        }
        fn layer(self: Arc<Self>, _state: usize) -> Arc<dyn Layer> {
            self
        }
        fn modified(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
        fn info(&self) -> Result<FileInfo> {
            unreachable!()
        }
    }

    fn file(name: &str, parents: Vec<Option<usize>>, active: usize, sector: u32) -> Arc<dyn DiskFile> {
        Arc::new(MultiState {
            path: PathBuf::from(name),
            parents,
            active,
            sector,
        })
    }

    #[test]
    fn states_of_one_file_link_to_each_other_and_to_the_files_parent() {
        let mut m = Members::default();
        m.add_file(Path::new("/base"), file("/base", vec![None], 0, 512), None)
            .unwrap();
        // State 2 was made from state 0, state 1 from state 2; state 0 from the base file.
        m.add_file(
            Path::new("/top"),
            file("/top", vec![None, Some(2), Some(0)], 1, 512),
            Some(0),
        )
        .unwrap();
        let links: Vec<(Option<usize>, usize, Option<String>)> =
            m.list.iter().map(|x| (x.parent, x.depth, x.snapshot.clone())).collect();
        assert_eq!(
            links,
            [
                (None, 1, Some("0".into())),
                (Some(0), 2, Some("0".into())),
                (Some(3), 4, Some("1".into())),
                (Some(1), 3, Some("2".into())),
            ]
        );
        // Children of /top attach to its active state.
        assert_eq!(m.active[Path::new("/top")], 2);
    }

    #[test]
    fn a_loop_among_a_files_states_is_an_error_not_a_hang() {
        let mut m = Members::default();
        let err = m
            .add_file(Path::new("/f"), file("/f", vec![Some(1), Some(0)], 0, 512), None)
            .unwrap_err();
        assert!(matches!(err, Error::ChainCycle { .. }), "{err}");
        // A state naming itself or a state that does not exist hangs off the file's parent.
        let mut m = Members::default();
        m.add_file(Path::new("/g"), file("/g", vec![Some(0), Some(9)], 0, 512), None)
            .unwrap();
        assert!(m.list.iter().all(|x| x.parent.is_none() && x.depth == 1));
    }

    #[test]
    fn a_child_with_another_sector_size_is_refused() {
        let mut m = Members::default();
        m.add_file(Path::new("/a"), file("/a", vec![None], 0, 512), None)
            .unwrap();
        let err = m
            .add_file(Path::new("/b"), file("/b", vec![None], 0, 4096), Some(0))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("logical sector size") && msg.contains("4096") && msg.contains("/a"),
            "{msg}"
        );
    }
}
