//! A Hyper-V VM from its files, laid out as Hyper-V keeps them (and as Export-VM
//! writes them):
//!
//! ```text
//! <home>/Virtual Machines/<VM GUID>.vmcx     the VM: name, the disks it runs on now
//! <home>/Snapshots/<checkpoint GUID>.vmcx    one per checkpoint: its name, time, and
//!                                            the disk files frozen for it
//! <home>/Virtual Hard Disks/*.vhdx, *.avhdx
//! ```
//!
//! (2012 R2 writes `.xml` instead of `.vmcx`.) A checkpoint's configuration has the
//! VM's schema; the keys naming its parent checkpoint are not publicly documented, so
//! the parent is derived from the disks ([`Config::parents_from_disks`]): the
//! checkpoint whose frozen file is the nearest ancestor of its own. Checkpoints belong
//! to the VM whose `logical_id` they carry.
//!
//! Paths in configurations are absolute on the Hyper-V host (`C:\ClusterStorage\…`):
//! each file is looked for by name beside the configuration, in `<home>`, its `Virtual
//! Hard Disks/` and `Snapshots/`.

use std::path::{Path, PathBuf};

use super::keys::Key;
use super::machine::{self, Drive, Machine};
use super::{storage, xml};
use crate::chain::parent::existing_case_insensitive;
use crate::vm::locate::read_whole;
use crate::vm::{Config, ConfigCheckpoint, ConfigDisk, ConfigError};
use crate::{Error, Result};

/// Configurations larger than this are refused (real ones are under 1 MiB).
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Whether the first bytes of a file look like a Hyper-V configuration: the `.vmcx`
/// container (a header signature at 0x0 or 0x1000; `head` must reach 0x1004) or XML.
pub fn looks_like(head: &[u8]) -> bool {
    storage::looks_like_storage(head) || xml::looks_like(head)
}

/// The key tree of a Hyper-V configuration file. The container's warnings (a dirty
/// log replayed in memory, a damaged key skipped) are logged naming the file.
pub fn read_keys(path: &Path) -> Result<Key> {
    let bytes = read_whole(path, MAX_CONFIG_BYTES)?;
    if storage::looks_like_storage(&bytes) {
        let s = storage::parse(&bytes).map_err(|e| Error::VmConfig {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        for w in &s.warnings {
            log::warn!("{}: {w}", path.display());
        }
        return Ok(s.tree);
    }
    xml::parse(&bytes).map_err(|source| Error::VmConfig {
        path: path.to_path_buf(),
        source,
    })
}

fn read_machine(path: &Path) -> Result<Machine> {
    machine::read(&read_keys(path)?).map_err(|source| Error::VmConfig {
        path: path.to_path_buf(),
        source,
    })
}

/// The VM that the Hyper-V configuration at `path` belongs to; `Ok(None)` if `path` is
/// none. Given a checkpoint's configuration, its VM's.
pub fn read_config(path: &Path, head: &[u8]) -> Result<Option<Config>> {
    if !looks_like(head) {
        return Ok(None);
    }
    let m = read_machine(path)?;
    if in_folder_named(path, "Snapshots") {
        // A checkpoint's configuration: show its VM.
        let home = path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        let vm = configs_in(home)
            .into_iter()
            .find(|p| read_machine(p).is_ok_and(|vm| same_vm(&vm, &m)));
        return match vm {
            Some(vm_path) => vm_config(&vm_path, read_machine(&vm_path)?).map(Some),
            None => Err(Error::Usage(format!(
                "{}: a checkpoint's configuration without its VM: no configuration of VM {} in {}",
                path.display(),
                m.logical_id.as_deref().unwrap_or("?"),
                home.join("Virtual Machines").display()
            ))),
        };
    }
    vm_config(path, m).map(Some)
}

/// The VM configurations of a VM folder: in the folder itself and in its `Virtual
/// Machines/`, by content.
pub fn configs_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [dir.to_path_buf(), dir.join("Virtual Machines")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten())
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_machine_config(p))
        .collect();
    out.sort();
    out
}

/// A configuration with a name and devices (a `.vmrs` runtime-state file, in the same
/// container, has neither).
fn is_machine_config(path: &Path) -> bool {
    crate::vm::locate::sniff(path).is_ok_and(|h| looks_like(&h)) && read_machine(path).is_ok_and(|m| m.name.is_some())
}

fn same_vm(vm: &Machine, checkpoint: &Machine) -> bool {
    match (&vm.logical_id, &checkpoint.logical_id) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn in_folder_named(path: &Path, name: &str) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(name))
}

fn vm_config(path: &Path, vm: Machine) -> Result<Config> {
    let config_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let home = if in_folder_named(path, "Virtual Machines") {
        config_dir.parent().unwrap_or(&config_dir).to_path_buf()
    } else {
        config_dir.clone()
    };
    let look_in = [
        config_dir.clone(),
        home.clone(),
        home.join("Virtual Hard Disks"),
        home.join("Snapshots"),
    ];
    let disks = |drives: &[Drive]| -> Vec<ConfigDisk> {
        drives
            .iter()
            .filter(|d| d.is_disk())
            .map(|d| ConfigDisk {
                location: d.location.clone(),
                file: find_named_file(&d.pathname, &look_in),
                snapshot: None,
            })
            .collect()
    };
    let mut checkpoints = Vec::new();
    for snap_path in snapshot_configs(&home.join("Snapshots")) {
        let snap = match read_machine(&snap_path) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{e}: checkpoint configuration skipped");
                continue;
            }
        };
        if !same_vm(&vm, &snap) || snap.global_id == vm.global_id {
            continue;
        }
        let id = snap
            .global_id
            .clone()
            .unwrap_or_else(|| snap_path.file_stem().unwrap_or_default().to_string_lossy().into_owned());
        checkpoints.push(ConfigCheckpoint {
            title: snap.name.clone().unwrap_or_else(|| format!("checkpoint {id}")),
            id,
            description: None,
            created: snap.created,
            parent: None,
            disks: disks(&snap.drives),
        });
    }
    Ok(Config {
        hypervisor: "hyper-v",
        path: path.to_path_buf(),
        name: vm.name.clone().ok_or_else(|| Error::VmConfig {
            path: path.to_path_buf(),
            source: ConfigError::Value {
                key: "configuration/properties/name".into(),
                what: "missing".into(),
            },
        })?,
        checkpoints,
        current: None,
        running: disks(&vm.drives),
        parents_from_disks: true,
    })
}

/// The configuration files in a `Snapshots/` folder (`.vmcx` or `.xml`; the `.vmrs`
/// and `.vmgs` beside them hold runtime state).
fn snapshot_configs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && crate::vm::locate::sniff(p).is_ok_and(|h| looks_like(&h)))
        .collect();
    out.sort();
    out
}

/// A file a configuration names by a path on the Hyper-V host: the first directory of
/// `dirs` holding a file of that name (any letter case), else the name in the first
/// directory (for the message saying it does not exist).
fn find_named_file(named: &str, dirs: &[PathBuf]) -> PathBuf {
    let name = named.rsplit(['\\', '/']).next().unwrap_or(named);
    if let Some(found) = dirs.iter().find_map(|dir| existing_case_insensitive(&dir.join(name))) {
        return found;
    }
    dirs.first().map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_found_by_name_in_the_vm_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("Virtual Hard Disks")).unwrap();
        std::fs::write(d.join("Virtual Hard Disks/Web.VHDX"), b"").unwrap();
        std::fs::write(d.join("data.vhdx"), b"").unwrap();
        let dirs = [
            d.join("Virtual Machines"),
            d.to_path_buf(),
            d.join("Virtual Hard Disks"),
        ];
        assert_eq!(
            find_named_file(r"C:\ClusterStorage\Volume1\Web\Web.vhdx", &dirs),
            d.join("Virtual Hard Disks/Web.VHDX")
        );
        assert_eq!(find_named_file(r"D:\x\data.vhdx", &dirs), d.join("data.vhdx"));
        assert_eq!(
            find_named_file(r"D:\x\gone.avhdx", &dirs),
            d.join("Virtual Machines/gone.avhdx")
        );
    }
}
