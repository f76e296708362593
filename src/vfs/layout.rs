//! What the virtual tree shows at its top levels, whether it was opened from a disk
//! file or from a VM:
//!
//! ```text
//! disk file:  /<checkpoint>/disk.img, /<checkpoint>/<volume>/...
//! VM:         /<checkpoint>/<disk>/disk.img, /<checkpoint>/<disk>/<volume>/...
//! ```
//!
//! A *slot* is one disk directory's content (a disk image and its volumes) at one
//! checkpoint; a *state* is the disk state behind it. Slots of different checkpoints
//! may show one state (a disk left out of later snapshots): the state is opened once,
//! but each slot keeps its own node numbers, so no directory has two parents.

use std::sync::Arc;
use std::time::SystemTime;

use crate::chain::CheckpointTree;
use crate::format::Layer;
use crate::vm::Vm;

/// How the tree was opened, kept for `list`.
#[derive(Debug)]
pub enum Source {
    Disk(CheckpointTree),
    Vm(Vm),
}

/// A top-level directory.
#[derive(Debug)]
pub struct CheckpointDir {
    pub name: String,
    pub modified: SystemTime,
    /// Its slots: one for a disk file's checkpoint, one per disk for a VM's.
    pub slots: Vec<usize>,
}

/// A disk directory at one checkpoint.
#[derive(Debug)]
pub struct Slot {
    /// For messages: "<checkpoint>" or "<checkpoint>/<disk>".
    pub label: String,
    /// Its directory name under the checkpoint (unused where there is no disk level).
    pub dir: String,
    pub modified: SystemTime,
    /// The state it shows, or why it cannot be read.
    pub state: std::result::Result<usize, String>,
}

/// One disk state: the layers to read, newest first.
#[derive(Debug)]
pub struct State {
    /// For messages: "<checkpoint>" or "<checkpoint>/<disk>".
    pub label: String,
    pub layers: Vec<Arc<dyn Layer>>,
    pub modified: SystemTime,
}

#[derive(Debug)]
pub struct Layout {
    pub checkpoints: Vec<CheckpointDir>,
    pub slots: Vec<Slot>,
    pub states: Vec<State>,
    /// Whether checkpoint directories hold disk directories (a VM) or a disk's content.
    pub disk_level: bool,
}

impl Layout {
    pub fn new(source: &Source) -> Layout {
        match source {
            Source::Disk(tree) => Self::of_tree(tree),
            Source::Vm(vm) => Self::of_vm(vm),
        }
    }

    fn of_tree(tree: &CheckpointTree) -> Layout {
        let mut layout = Layout {
            checkpoints: Vec::new(),
            slots: Vec::new(),
            states: Vec::new(),
            disk_level: false,
        };
        for (ci, c) in tree.checkpoints.iter().enumerate() {
            layout.states.push(State {
                label: c.name.clone(),
                layers: tree.layers(ci),
                modified: c.modified,
            });
            layout.slots.push(Slot {
                label: c.name.clone(),
                dir: String::new(),
                modified: c.modified,
                state: Ok(ci),
            });
            layout.checkpoints.push(CheckpointDir {
                name: c.name.clone(),
                modified: c.modified,
                slots: vec![ci],
            });
        }
        layout
    }

    fn of_vm(vm: &Vm) -> Layout {
        let mut layout = Layout {
            checkpoints: Vec::new(),
            slots: Vec::new(),
            states: Vec::new(),
            disk_level: true,
        };
        // (tree, checkpoint) → state index, so a state shown twice is opened once.
        let mut state_of = std::collections::HashMap::new();
        let config_time = std::fs::metadata(&vm.config)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for c in &vm.checkpoints {
            let mut slots = Vec::new();
            for d in &c.disks {
                let state = d.state.clone().map(|(t, ci)| {
                    *state_of.entry((t, ci)).or_insert_with(|| {
                        let tree = &vm.trees[t];
                        layout.states.push(State {
                            label: format!("{}/{}", c.name, d.dir),
                            layers: tree.layers(ci),
                            modified: tree.checkpoints[ci].modified,
                        });
                        layout.states.len() - 1
                    })
                });
                let modified = match &state {
                    Ok(s) => layout.states[*s].modified,
                    Err(_) => c.created.unwrap_or(config_time),
                };
                slots.push(layout.slots.len());
                layout.slots.push(Slot {
                    label: format!("{}/{}", c.name, d.dir),
                    dir: d.dir.clone(),
                    modified,
                    state,
                });
            }
            layout.checkpoints.push(CheckpointDir {
                name: c.name.clone(),
                modified: c.created.unwrap_or_else(|| {
                    slots
                        .iter()
                        .map(|&s| layout.slots[s].modified)
                        .max()
                        .unwrap_or(config_time)
                }),
                slots,
            });
        }
        layout
    }
}
