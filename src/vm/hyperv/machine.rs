//! What a Hyper-V configuration says about its VM, whichever container held the keys:
//! the VM's (or checkpoint's) name, ids, creation time, and its drives with their
//! controller locations.
//!
//! Keys read (from the real files in ../shared/samples/hyperv-config):
//! - `configuration/properties/{name, global_id, creation_time, version, subtype,
//!   type_id}`: `creation_time` is a FILETIME (8 bytes little-endian in a `.vmcx`),
//!   `subtype` 0 is generation 1, 1 generation 2;
//! - `configuration/settings/global/logical_id`: the VM's id, the same in every
//!   checkpoint of it;
//! - `configuration/manifest/vdevNNN/{device, instance, name}`: the VM's devices; a
//!   storage controller's drives are under `configuration/_<instance>_/controllerN/
//!   driveM/{type, pathname}`. Drives of type `VHD` with a path are disks; `ISO`, `VFD`
//!   (floppy), `NONE` and empty paths are not.

use std::time::SystemTime;

use super::keys::Key;
use crate::vm::ConfigError;

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// `properties/name`: the VM's name, or a checkpoint's.
    pub name: Option<String>,
    pub global_id: Option<String>,
    pub logical_id: Option<String>,
    pub type_id: Option<String>,
    pub created: Option<SystemTime>,
    /// Configuration version (`properties/version`, e.g. 2304 for 9.0).
    pub version: Option<i128>,
    /// 1 or 2, from `properties/subtype`.
    pub generation: Option<u8>,
    /// Every drive with a type, in the manifest's order.
    pub drives: Vec<Drive>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// Bus, controller and drive: `ide0:1`, `scsi1:3`.
    pub location: String,
    /// `VHD`, `ISO`, `VFD`, `NONE`, `PASSTHRU`, ...
    pub kind: String,
    /// As stored: an absolute path on the Hyper-V host, or empty.
    pub pathname: String,
}

impl Drive {
    /// A virtual hard disk file (not a DVD, floppy, pass-through disk or empty slot).
    pub fn is_disk(&self) -> bool {
        self.kind.eq_ignore_ascii_case("VHD") && !self.pathname.trim().is_empty()
    }
}

/// Read the facts from a key tree (the root above `configuration`).
pub fn read(root: &Key) -> Result<Machine, ConfigError> {
    let Some(config) = root.child("configuration") else {
        return Err(ConfigError::NotAConfig("no \"configuration\" key".into()));
    };
    let props = "properties";
    let created = match config.get("properties/creation_time") {
        None => None,
        Some(k) => Some(filetime(k).ok_or_else(|| ConfigError::Value {
            key: "configuration/properties/creation_time".into(),
            what: format!("{} is not a FILETIME", k.value),
        })?),
    };
    Ok(Machine {
        name: config.string(&format!("{props}/name")).map(str::to_string),
        global_id: config.string(&format!("{props}/global_id")).map(str::to_string),
        logical_id: config.string("settings/global/logical_id").map(str::to_string),
        type_id: config.string(&format!("{props}/type_id")).map(str::to_string),
        created,
        version: config.integer(&format!("{props}/version")),
        generation: match config.integer(&format!("{props}/subtype")) {
            Some(0) => Some(1),
            Some(1) => Some(2),
            _ => None,
        },
        drives: drives(config),
    })
}

/// Device ids of storage controllers, for devices the manifest does not list (2012 R2
/// leaves the emulated IDE controller out) or lists without a name.
const KNOWN_CONTROLLERS: &[(&str, &str)] = &[
    ("83f8638b-8dca-4152-9eda-2ca8b33039b4", "ide"),
    ("d422512d-2bf2-4752-809d-7b82b5fcb1b4", "scsi"),
    ("8f0d2762-0b00-4e04-af4f-19010527cb93", "floppy"),
];

/// The drives of every storage controller: those of the manifest's devices in its
/// order, then any other device node holding `controllerN/driveM` keys. Controllers
/// are numbered per bus in the order met: the IDE device's `controller0`/`controller1`
/// are `ide0`/`ide1`, the first SCSI controller device is `scsi0`, the next `scsi1`.
fn drives(config: &Key) -> Vec<Drive> {
    // (device node, bus) in order.
    let mut devices: Vec<(&Key, String)> = Vec::new();
    if let Some(manifest) = config.child("manifest") {
        for vdev in manifest.children.iter().filter(|k| is_vdev(&k.name)) {
            let Some(instance) = vdev.string("instance") else {
                continue;
            };
            let Some(device) = config.child(&format!("_{instance}_")) else {
                continue;
            };
            let by_name = bus_of(vdev.string("name").unwrap_or(""));
            let bus = match (by_name, vdev.string("device")) {
                (Some(b), _) => b,
                (None, Some(id)) => known_bus(id).unwrap_or("controller"),
                (None, None) => "controller",
            };
            devices.push((device, bus.to_string()));
        }
    }
    for node in &config.children {
        let listed = devices.iter().any(|(d, _)| std::ptr::eq(*d, node));
        let guid = node.name.strip_prefix('_').and_then(|n| n.strip_suffix('_'));
        let has_drives = node
            .children
            .iter()
            .any(|c| numbered(&c.name, "controller").is_some() && c.children.iter().any(|d| d.child("type").is_some()));
        if let (false, Some(guid), true) = (listed, guid, has_drives) {
            devices.push((node, known_bus(guid).unwrap_or("controller").to_string()));
        }
    }
    let mut per_bus: Vec<(String, usize)> = Vec::new();
    // (bus rank, controller, drive) for the order: IDE, SCSI, NVMe, floppy, others.
    let mut out: Vec<((usize, usize, u32), Drive)> = Vec::new();
    for (device, bus) in devices {
        for controller in device
            .children
            .iter()
            .filter(|k| numbered(&k.name, "controller").is_some())
        {
            let next = match per_bus.iter_mut().find(|(b, _)| *b == bus) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    per_bus.push((bus.clone(), 1));
                    0
                }
            };
            for drive in &controller.children {
                let (Some(slot), Some(kind)) = (numbered(&drive.name, "drive"), drive.string("type")) else {
                    continue;
                };
                let rank = BUS_ORDER.iter().position(|b| *b == bus).unwrap_or(BUS_ORDER.len());
                out.push((
                    (rank, next, slot),
                    Drive {
                        location: format!("{bus}{next}:{slot}"),
                        kind: kind.to_string(),
                        pathname: drive.string("pathname").unwrap_or("").to_string(),
                    },
                ));
            }
        }
    }
    out.sort_by_key(|(order, _)| *order);
    out.into_iter().map(|(_, d)| d).collect()
}

/// Buses in the order their drives are listed (the boot disk is usually first).
const BUS_ORDER: &[&str] = &["ide", "scsi", "nvme", "floppy"];

fn is_vdev(name: &str) -> bool {
    numbered(name, "vdev").is_some()
}

/// `N` of `<prefix>N`.
fn numbered(name: &str, prefix: &str) -> Option<u32> {
    let rest = name
        .get(..prefix.len())?
        .eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then(|| rest.parse().ok())?
}

/// The bus a controller device's manifest name says: "Microsoft Emulated IDE
/// Controller" is `ide`, "Synthetic SCSI Controller" `scsi`.
fn bus_of(device_name: &str) -> Option<&'static str> {
    let lower = device_name.to_ascii_lowercase();
    ["ide", "scsi", "nvme", "floppy"]
        .into_iter()
        .find(|b| lower.split_whitespace().any(|w| w == *b))
}

fn known_bus(device_id: &str) -> Option<&'static str> {
    KNOWN_CONTROLLERS
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(device_id.trim_matches(['{', '}'])))
        .map(|(_, bus)| *bus)
}

/// A FILETIME (100 ns since 1601-01-01 UTC) stored as 8 bytes or as an integer; 0 is
/// "never".
fn filetime(key: &Key) -> Option<SystemTime> {
    use super::keys::KeyValue;
    let ticks: u64 = match &key.value {
        KeyValue::Bytes(b) => u64::from_le_bytes(b.as_slice().try_into().ok()?),
        KeyValue::UInt(v) => *v,
        KeyValue::Int(v) => u64::try_from(*v).ok()?,
        _ => return None,
    };
    // Refused: before 1970 (0 included), and past what 64 bits of nanoseconds since
    // 1970 hold (the year 2554): no creation time a configuration can have.
    let time = crate::bytes::filetime(ticks);
    let since_1970 = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    u64::try_from(since_1970.as_nanos()).ok()?;
    Some(time)
}

#[cfg(test)]
mod tests {
    use super::super::keys::KeyValue;
    use super::*;

    fn s(v: &str) -> KeyValue {
        KeyValue::String(v.into())
    }

    fn drive(kind: &str, path: &str) -> Key {
        Key::node(
            "drive",
            vec![Key::leaf("type", s(kind)), Key::leaf("pathname", s(path))],
        )
    }

    fn named(mut k: Key, name: &str) -> Key {
        k.name = name.into();
        k
    }

    #[test]
    fn drives_are_numbered_per_bus_and_only_vhds_are_disks() {
        let vdev = |n: &str, inst: &str, name: &str| {
            Key::node(
                n,
                vec![
                    Key::leaf("instance", s(inst)),
                    Key::leaf("name", s(name)),
                    Key::leaf("device", s(inst)),
                ],
            )
        };
        let root = Key::node(
            "",
            vec![Key::node(
                "configuration",
                vec![
                    Key::node(
                        "manifest",
                        vec![
                            Key::leaf("size", KeyValue::Int(3)),
                            vdev("vdev001", "aaa", "Microsoft Emulated IDE Controller"),
                            vdev("vdev002", "bbb", "Synthetic SCSI Controller"),
                            vdev("vdev003", "ccc", "Synthetic SCSI Controller"),
                        ],
                    ),
                    Key::node(
                        "_aaa_",
                        vec![
                            Key::node("controller0", vec![named(drive("VHD", r"C:\a.vhdx"), "drive0")]),
                            Key::node(
                                "controller1",
                                vec![
                                    named(drive("ISO", r"C:\x.iso"), "drive0"),
                                    named(drive("NONE", ""), "drive1"),
                                ],
                            ),
                            Key::leaf("VDEVVersion", KeyValue::Int(1792)),
                        ],
                    ),
                    Key::node(
                        "_bbb_",
                        vec![Key::node("controller0", vec![named(drive("VHD", ""), "drive0")])],
                    ),
                    Key::node(
                        "_ccc_",
                        vec![Key::node(
                            "controller0",
                            vec![named(drive("VHD", r"C:\d\data.avhdx"), "drive5")],
                        )],
                    ),
                    Key::node(
                        "properties",
                        vec![
                            Key::leaf("name", s("Web")),
                            Key::leaf("subtype", KeyValue::Int(1)),
                            // 2024-05-16T17:03:49Z (1715879029 s since 1970) = 133603526290000000 ticks.
                            Key::leaf(
                                "creation_time",
                                KeyValue::Bytes(133_603_526_290_000_000u64.to_le_bytes().to_vec()),
                            ),
                        ],
                    ),
                ],
            )],
        );
        let m = read(&root).unwrap();
        assert_eq!(m.name.as_deref(), Some("Web"));
        assert_eq!(m.generation, Some(2));
        assert_eq!(
            m.created,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_715_879_029))
        );
        let got: Vec<(&str, &str, bool)> = m
            .drives
            .iter()
            .map(|d| (d.location.as_str(), d.kind.as_str(), d.is_disk()))
            .collect();
        assert_eq!(
            got,
            [
                ("ide0:0", "VHD", true),
                ("ide1:0", "ISO", false),
                ("ide1:1", "NONE", false),
                ("scsi0:0", "VHD", false),
                ("scsi1:5", "VHD", true),
            ]
        );
    }

    #[test]
    fn a_creation_time_that_is_no_filetime_is_an_error_naming_the_key() {
        let root = Key::node(
            "",
            vec![Key::node(
                "configuration",
                vec![Key::node(
                    "properties",
                    vec![Key::leaf("creation_time", KeyValue::Bytes(vec![1, 2]))],
                )],
            )],
        );
        let err = read(&root).unwrap_err().to_string();
        assert!(err.contains("configuration/properties/creation_time"), "{err}");
    }
}
