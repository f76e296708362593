//! VMware VMs (Workstation, Fusion, ESXi): the `.vmx` names the VM and the disks it
//! runs on now; the `.vmsd` beside it lists the snapshots with their names, times,
//! parents and, per disk, the file frozen when each was taken. One module per file
//! kind: [`dictionary`] (the shared `key = "value"` syntax), [`vmx`], [`vmsd`].

pub mod dictionary;
pub mod vmsd;
pub mod vmx;

use std::path::{Path, PathBuf};

use dictionary::{looks_like_dictionary, Dictionary, MAX_DICTIONARY_BYTES};

use super::locate::{read_whole, resolve_named_file, sniff};
use super::{Config, ConfigCheckpoint, ConfigDisk};
use crate::{Error, Result};

/// The `.vmx` and `.vmsd` of the VM that `path` belongs to, as a neutral [`Config`];
/// `Ok(None)` if `path` is no VMware configuration file. `head` is its first bytes.
pub fn read_config(path: &Path, head: &[u8]) -> Result<Option<Config>> {
    if !looks_like_dictionary(head) {
        return Ok(None);
    }
    let dict = parse(path)?;
    let (vmx_path, vmx_dict, vmsd_path) = if vmx::is_vmx(&dict) {
        let vmsd = sibling(path, "vmsd", vmsd::is_vmsd);
        (path.to_path_buf(), dict, vmsd)
    } else if vmsd::is_vmsd(&dict) {
        let Some(vmx_path) = sibling(path, "vmx", vmx::is_vmx) else {
            return Err(Error::Usage(format!(
                "{}: a snapshot list without its VM: no .vmx beside it",
                path.display()
            )));
        };
        let vmx_dict = parse(&vmx_path)?;
        (vmx_path, vmx_dict, Some(path.to_path_buf()))
    } else {
        return Ok(None);
    };
    let vm_dir = vmx_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let vmx = vmx::parse(&vmx_dict);
    let snapshots = match &vmsd_path {
        Some(p) => vmsd::parse(&parse(p)?).map_err(|source| Error::VmConfig {
            path: p.clone(),
            source,
        })?,
        None => vmsd::Vmsd::default(),
    };

    let disk = |node: &vmx::Node, file_name: &str| ConfigDisk {
        location: node.to_string(),
        file: resolve_named_file(&vm_dir, file_name),
        snapshot: None,
    };
    let uid_index = |uid: &str| snapshots.snapshots.iter().position(|s| s.uid == uid);
    let checkpoints = snapshots
        .snapshots
        .iter()
        .map(|s| ConfigCheckpoint {
            id: s.uid.clone(),
            title: s.display_name.clone().unwrap_or_else(|| format!("snapshot {}", s.uid)),
            description: s.description.clone(),
            created: s.created,
            parent: s.parent.as_deref().and_then(uid_index),
            disks: s.disks.iter().map(|d| disk(&d.node, &d.file_name)).collect(),
        })
        .collect();
    let name = vmx
        .display_name
        .clone()
        .or_else(|| vmx_path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    Ok(Some(Config {
        hypervisor: "vmware",
        path: vmx_path,
        name,
        checkpoints,
        current: snapshots.current.as_deref().and_then(uid_index),
        running: vmx.disks.iter().map(|d| disk(&d.node, &d.file_name)).collect(),
        parents_from_disks: false,
    }))
}

/// The `.vmx` files in `dir` (by content), for a VM given as its folder.
pub fn configs_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_dictionary_file(p, vmx::is_vmx))
        .collect();
    out.sort();
    out
}

fn parse(path: &Path) -> Result<Dictionary> {
    let bytes = read_whole(path, MAX_DICTIONARY_BYTES)?;
    Dictionary::parse(&bytes).map_err(|source| Error::VmConfig {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `path` is a dictionary file of the kind `is_kind` tells.
fn is_dictionary_file(path: &Path, is_kind: fn(&Dictionary) -> bool) -> bool {
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_DICTIONARY_BYTES);
    small
        && sniff(path).is_ok_and(|head| looks_like_dictionary(&head))
        && std::fs::read(path)
            .ok()
            .filter(|b| looks_like_dictionary(b))
            .and_then(|b| Dictionary::parse(&b).ok())
            .is_some_and(|d| is_kind(&d))
}

/// The file of kind `is_kind` that belongs with `path`: the one of the same stem with
/// extension `ext`, else the only one of that kind in the folder.
fn sibling(path: &Path, ext: &str, is_kind: fn(&Dictionary) -> bool) -> Option<PathBuf> {
    // The same stem decides on the text's look alone, so that a damaged file is
    // reported when it is parsed instead of being passed over.
    let same_stem = path.with_extension(ext);
    let head_looks_right = sniff(&same_stem).is_ok_and(|b| looks_like_dictionary(&b));
    if same_stem.is_file() && head_looks_right {
        return Some(same_stem);
    }
    let dir = path.parent()?;
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p != path && p.is_file())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)) && is_dictionary_file(p, is_kind));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}
