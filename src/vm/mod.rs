//! Whole VMs: a hypervisor's configuration names the checkpoints as the admin sees them
//! ("Before upgrade", its time, its parent) and, for each checkpoint, the file holding
//! each of the VM's disks. Each hypervisor's reader (one submodule per hypervisor)
//! turns its files into one neutral [`Config`]; [`assemble`] then finds each disk's
//! checkpoint tree through the format-agnostic chain, checks the configuration against
//! the disks, and names everything for the mount. Formats stay below this module, the
//! mount and the CLI above it.
//!
//! Without a configuration (a disk file given), the disk's own tree is shown instead,
//! as [`crate::chain`] builds it.

mod assemble;
mod error;
pub mod hyperv;
mod locate;
mod naming;
pub mod vmware;

use std::path::PathBuf;
use std::time::SystemTime;

pub use assemble::assemble;
pub use error::ConfigError;
pub use locate::{open, Choice};

use crate::chain::CheckpointTree;

/// A VM's configuration, as a hypervisor's reader found it, before any disk is opened.
#[derive(Debug, Clone)]
pub struct Config {
    /// "vmware", "hyper-v", ...
    pub hypervisor: &'static str,
    /// The configuration file read (the `.vmx` for VMware).
    pub path: PathBuf,
    /// The VM's name as the hypervisor shows it.
    pub name: String,
    /// The checkpoints, in any order; parents are indexes into this list.
    pub checkpoints: Vec<ConfigCheckpoint>,
    /// The checkpoint the running state was made from.
    pub current: Option<usize>,
    /// The disks the VM runs on now.
    pub running: Vec<ConfigDisk>,
    /// The configuration records no parents (Hyper-V): each checkpoint's parent, and
    /// the checkpoint the running state was made from, are derived from the disks (the
    /// checkpoint whose file is the nearest ancestor of its own).
    pub parents_from_disks: bool,
}

#[derive(Debug, Clone)]
pub struct ConfigCheckpoint {
    /// The hypervisor's id for it (a VMware uid), for messages.
    pub id: String,
    /// The name the admin gave.
    pub title: String,
    pub description: Option<String>,
    pub created: Option<SystemTime>,
    pub parent: Option<usize>,
    pub disks: Vec<ConfigDisk>,
}

/// One disk of a checkpoint: where it sits in the VM and which file holds its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDisk {
    /// The controller location (`scsi0:0`): the same disk in every checkpoint.
    pub location: String,
    /// The file as the configuration names it, resolved against the VM's folder; it may
    /// not exist.
    pub file: PathBuf,
    /// The state inside the file (a qcow2 internal snapshot's id); `None` for its live
    /// state.
    pub snapshot: Option<String>,
}

/// A VM with its disks found: what the mount and `list` show.
#[derive(Debug)]
pub struct Vm {
    pub name: String,
    pub config: PathBuf,
    pub hypervisor: &'static str,
    /// In display order: each checkpoint after its parent, siblings oldest first, the
    /// running state last.
    pub checkpoints: Vec<VmCheckpoint>,
    /// Each disk's checkpoint tree (the states of [`VmDisk::state`] index into these).
    pub trees: Vec<CheckpointTree>,
}

#[derive(Debug)]
pub struct VmCheckpoint {
    /// Directory name under the mount: the creation time and the title, made safe;
    /// unique in the VM.
    pub name: String,
    /// The name as the hypervisor shows it.
    pub title: String,
    pub description: Option<String>,
    pub created: Option<SystemTime>,
    /// Index into [`Vm::checkpoints`].
    pub parent: Option<usize>,
    /// 1 for a checkpoint without a parent.
    pub depth: usize,
    /// The running state: what the VM writes to now.
    pub current: bool,
    pub disks: Vec<VmDisk>,
}

/// A tree's checkpoint: `(tree, checkpoint)` indexes into [`Vm::trees`].
pub type StateRef = (usize, usize);

#[derive(Debug)]
pub struct VmDisk {
    /// Directory name under the checkpoint; the same for this disk in every checkpoint.
    pub dir: String,
    pub location: String,
    /// The file holding this disk's state, as the configuration names it.
    pub file: PathBuf,
    pub snapshot: Option<String>,
    /// The state, or why it cannot be read (a missing file, a file outside the disk's
    /// chain): only this disk of this checkpoint is then unreadable.
    pub state: std::result::Result<StateRef, String>,
}
