//! Hyper-V VMs. [`storage`] reads the configuration container (`.vmcx`, `.VMRS`, the
//! host's `data.vmcx`) into a [`KeyTree`]; this module reads a VM's facts from that
//! tree: its name, ids, creation time, generation, version and drives.
//!
//! Keys, as the samples hold them (`configuration/…`):
//! - `properties/name`, `properties/global_id`, `properties/creation_time` (an 8-byte
//!   FILETIME, stored as bytes), `properties/subtype` (0: generation 1, 1: generation
//!   2), `properties/version` (the configuration version, major in the high byte:
//!   2304 = 9.0), `settings/global/logical_id`.
//! - `manifest/vdevNNN/{device,instance,name}`: the VM's devices; a controller's
//!   drives are at `_<instance>_/controllerN/driveM/{type,pathname}` (type `VHD` for a
//!   virtual hard disk; `ISO`, `VFD` and `NONE` are no disks).
//! - `global_settings/snapshots/list/size`: 0 in every sample (none has a checkpoint);
//!   the list's other keys are shown as they are.
//! - The host's `data.vmcx`: `Configurations/VirtualMachines/_<id>_` = the path of
//!   each VM's configuration.

pub mod storage;

/// The test-only container writer, for the unit tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/support/vmcx_writer.rs"]
mod test_writer;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use storage::{looks_like_storage, parse, Key, KeyTree, KeyValue, Storage, VmcxError, MAX_FILE_BYTES};

use super::locate::read_whole;
use crate::{Error, Result};

/// Read and parse the container at `path`; errors name the file.
pub fn read(path: &Path) -> Result<Storage> {
    let bytes = read_whole(path, MAX_FILE_BYTES)?;
    storage::parse(&bytes).map_err(|e| Error::VmConfig {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// A VM configuration's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct VmFacts {
    pub name: Option<String>,
    pub global_id: Option<String>,
    pub logical_id: Option<String>,
    pub created: Option<SystemTime>,
    /// 1 or 2.
    pub generation: Option<u8>,
    /// `9.0`.
    pub version: Option<String>,
    /// `properties/type_id` (`Virtual Machines`).
    pub type_id: Option<String>,
    pub drives: Vec<Drive>,
    /// `global_settings/snapshots/list`: its `size`, and the text of its other keys
    /// (no sample has a checkpoint, so what they hold is not known yet).
    pub snapshot_list: Option<(i64, Vec<String>)>,
}

/// A drive of a storage controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// `ide0:1`, `scsi0:0`: the bus (from the controller's device name), the controller
    /// number (IDE: `controllerN`; SCSI: the controller's rank among the VM's SCSI
    /// controllers in manifest order, each having one `controller0`) and the drive.
    pub location: String,
    /// The controller's device name (`Microsoft Emulated IDE Controller`).
    pub controller: String,
    /// The controller's instance id.
    pub instance: String,
    /// `VHD`, `ISO`, `VFD`, `NONE`.
    pub kind: String,
    /// The path as the configuration writes it (a Windows path of the host).
    pub pathname: String,
}

impl Drive {
    /// A virtual hard disk (not an ISO, floppy or empty drive).
    pub fn is_disk(&self) -> bool {
        self.kind.eq_ignore_ascii_case("VHD") && !self.pathname.is_empty()
    }
}

/// A FILETIME (100 ns units since 1601) as a time; `None` for 0.
pub fn filetime(ft: u64) -> Option<SystemTime> {
    const EPOCH_DIFF: u64 = 11_644_473_600;
    if ft == 0 {
        return None;
    }
    let secs = ft / 10_000_000;
    let nanos = (ft % 10_000_000) * 100;
    if secs >= EPOCH_DIFF {
        UNIX_EPOCH.checked_add(Duration::new(secs - EPOCH_DIFF, nanos as u32))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(EPOCH_DIFF - secs))
    }
}

/// A key holding a FILETIME: 8 bytes, or a number.
fn key_time(k: &Key) -> Option<SystemTime> {
    match &k.value {
        KeyValue::Array(b) => filetime(u64::from_le_bytes(b.as_slice().try_into().ok()?)),
        KeyValue::UInt(v) => filetime(*v),
        KeyValue::Int(v) => filetime(u64::try_from(*v).ok()?),
        _ => None,
    }
}

/// The facts of a VM (or checkpoint) configuration; `None` if the tree is none (no
/// `configuration/properties` with a `name` or `global_id`: a `.VMRS` runtime state
/// has `properties/version` only).
pub fn vm_facts(tree: &KeyTree) -> Option<VmFacts> {
    let props = tree
        .get("configuration/properties")
        .filter(|p| p.get("name").is_some() || p.get("global_id").is_some())?;
    let s = |k: &Key, p: &str| k.get(p).and_then(Key::as_str).map(str::to_string);
    let generation = props.get("subtype").and_then(Key::as_i64).and_then(|v| match v {
        0 => Some(1),
        1 => Some(2),
        _ => None,
    });
    let version = props
        .get("version")
        .and_then(Key::as_i64)
        .map(|v| format!("{}.{}", v >> 8, v & 0xff));
    Some(VmFacts {
        name: s(props, "name"),
        global_id: s(props, "global_id"),
        logical_id: tree.str("configuration/settings/global/logical_id").map(str::to_string),
        created: props.get("creation_time").and_then(key_time),
        generation,
        version,
        type_id: s(props, "type_id"),
        drives: drives(tree),
        snapshot_list: tree.get("configuration/global_settings/snapshots/list").map(|l| {
            let size = l.get("size").and_then(Key::as_i64).unwrap_or(0);
            let items = l
                .children
                .iter()
                .filter(|k| k.name != "size")
                .map(|k| format!("{} = {}", k.name, k.value))
                .collect();
            (size, items)
        }),
    })
}

/// Every drive of every storage controller the manifest lists, in manifest order.
pub fn drives(tree: &KeyTree) -> Vec<Drive> {
    let Some(config) = tree.get("configuration") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut per_bus: Vec<(String, usize)> = Vec::new();
    for vdev in config.all("manifest/*") {
        let (Some(instance), name) = (
            vdev.get("instance").and_then(Key::as_str),
            vdev.get("name").and_then(Key::as_str).unwrap_or_default(),
        ) else {
            continue;
        };
        let wanted = format!("_{instance}_");
        let Some(dev) = config.children.iter().find(|k| k.name.eq_ignore_ascii_case(&wanted)) else {
            continue;
        };
        let controllers: Vec<(u32, &Key)> = dev
            .children
            .iter()
            .filter_map(|k| Some((k.name.strip_prefix("controller")?.parse().ok()?, k)))
            .collect();
        if controllers.is_empty() {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let bus = ["ide", "scsi", "floppy"]
            .into_iter()
            .find(|b| lower.contains(b))
            .unwrap_or("controller")
            .to_string();
        let rank = match per_bus.iter_mut().find(|(b, _)| *b == bus) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                per_bus.push((bus.clone(), 1));
                0
            }
        };
        for (cn, c) in controllers {
            let number = if bus == "ide" { cn as usize } else { rank + cn as usize };
            for d in &c.children {
                let Some(dn) = d.name.strip_prefix("drive").and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                out.push(Drive {
                    location: format!("{bus}{number}:{dn}"),
                    controller: name.to_string(),
                    instance: instance.to_string(),
                    kind: d.get("type").and_then(Key::as_str).unwrap_or_default().to_string(),
                    pathname: d.get("pathname").and_then(Key::as_str).unwrap_or_default().to_string(),
                });
            }
        }
    }
    out
}

/// The host's list of VMs (`data.vmcx`): (id, configuration path) pairs; `None` if
/// the tree is no such list.
pub fn host_vms(tree: &KeyTree) -> Option<Vec<(String, String)>> {
    let list = tree.get("Configurations/VirtualMachines")?;
    Some(
        list.children
            .iter()
            .map(|k| {
                let id = k.name.trim_matches('_').to_string();
                (id, k.as_str().unwrap_or_default().to_string())
            })
            .collect(),
    )
}
