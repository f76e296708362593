//! The `.vmsd`: the VM's snapshot tree. `snapshotN` is a slot index, not an id: each
//! slot has a `uid`, and `.parent` and `snapshot.current` name uids. Per slot:
//! `displayName`, `description`, `createTimeHigh`/`createTimeLow` (the two signed 32-bit
//! halves of microseconds since 1970, UTC), `filename` (the `.vmsn` memory/state file)
//! and for each disk `diskM.node` and `diskM.fileName`, the file that was frozen when
//! the snapshot was taken.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::dictionary::Dictionary;
use super::vmx::Node;
use crate::vm::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmsdDisk {
    pub node: Node,
    pub file_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmsdSnapshot {
    /// The slot: `snapshot3` → 3.
    pub slot: u32,
    pub uid: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub created: Option<SystemTime>,
    pub parent: Option<String>,
    pub state_file: Option<String>,
    pub disks: Vec<VmsdDisk>,
}

#[derive(Debug, Clone, Default)]
pub struct Vmsd {
    /// The uid of the snapshot the running state was made from.
    pub current: Option<String>,
    /// In slot order.
    pub snapshots: Vec<VmsdSnapshot>,
}

/// Whether a dictionary is a `.vmsd`.
pub fn is_vmsd(d: &Dictionary) -> bool {
    d.get("snapshot.lastUID").is_some() || d.get("snapshot.numSnapshots").is_some()
}

/// Parse and check the tree: uids unique, every parent and `current` a known uid, no
/// loop through parents.
pub fn parse(d: &Dictionary) -> Result<Vmsd, ConfigError> {
    // slot → key suffix → value, for every `snapshotN.…` key.
    let mut slots: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in d.entries() {
        let lower = key.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix("snapshot") else {
            continue;
        };
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with('.') {
            continue;
        }
        let Ok(slot) = rest[..digits].parse::<u32>() else {
            continue;
        };
        slots
            .entry(slot)
            .or_default()
            .insert(rest[digits + 1..].to_string(), value.to_string());
    }
    let mut snapshots = Vec::new();
    for (slot, keys) in slots {
        let Some(uid) = keys.get("uid").map(|u| u.trim().to_string()) else {
            // A slot without a uid is a leftover VMware ignores too.
            log::debug!("snapshot{slot} has no uid: ignored");
            continue;
        };
        snapshots.push(VmsdSnapshot {
            slot,
            uid,
            display_name: keys.get("displayname").cloned(),
            description: keys.get("description").cloned().filter(|d| !d.is_empty()),
            created: create_time(&keys, slot)?,
            parent: keys.get("parent").map(|p| p.trim().to_string()),
            state_file: keys.get("filename").cloned(),
            disks: disks(&keys, slot)?,
        });
    }
    let vmsd = Vmsd {
        current: d.get("snapshot.current").map(|c| c.trim().to_string()),
        snapshots,
    };
    check_tree(&vmsd)?;
    Ok(vmsd)
}

/// `createTimeHigh`/`createTimeLow`: two signed 32-bit numbers, together the
/// microseconds since 1970 (the low half is the unsigned low word written signed).
fn create_time(keys: &BTreeMap<String, String>, slot: u32) -> Result<Option<SystemTime>, ConfigError> {
    let (Some(high), Some(low)) = (keys.get("createtimehigh"), keys.get("createtimelow")) else {
        return Ok(None);
    };
    let bad = |what: &str, v: &str| ConfigError::Value {
        key: format!("snapshot{slot}.{what}"),
        what: format!("{v:?} is not a 32-bit number"),
    };
    let high: i64 = high
        .trim()
        .parse::<i32>()
        .map_err(|_| bad("createTimeHigh", high))?
        .into();
    let low = low.trim().parse::<i32>().map_err(|_| bad("createTimeLow", low))? as u32;
    let micros = (high << 32) | i64::from(low);
    Ok(u64::try_from(micros)
        .ok()
        .map(|m| UNIX_EPOCH + Duration::from_micros(m)))
}

fn disks(keys: &BTreeMap<String, String>, slot: u32) -> Result<Vec<VmsdDisk>, ConfigError> {
    // diskM → (node, fileName)
    let mut by_disk: BTreeMap<u32, (Option<String>, Option<String>)> = BTreeMap::new();
    for (suffix, value) in keys {
        let Some(rest) = suffix.strip_prefix("disk") else {
            continue;
        };
        let Some((m, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(m) = m.parse::<u32>() else { continue };
        let entry = by_disk.entry(m).or_default();
        match field {
            "node" => entry.0 = Some(value.clone()),
            "filename" => entry.1 = Some(value.clone()),
            _ => {}
        }
    }
    by_disk
        .into_iter()
        .map(|(m, (node, file))| {
            let key = |f: &str| format!("snapshot{slot}.disk{m}.{f}");
            let node_text = node.ok_or_else(|| ConfigError::Value {
                key: key("node"),
                what: "missing".into(),
            })?;
            let node = Node::parse(&node_text).ok_or_else(|| ConfigError::Value {
                key: key("node"),
                what: format!("{node_text:?} is not a device node like scsi0:0"),
            })?;
            let file_name = file.ok_or_else(|| ConfigError::Value {
                key: key("fileName"),
                what: "missing".into(),
            })?;
            Ok(VmsdDisk { node, file_name })
        })
        .collect()
}

fn check_tree(vmsd: &Vmsd) -> Result<(), ConfigError> {
    let title = |s: &VmsdSnapshot| format!("snapshot{} ({:?})", s.slot, s.display_name.as_deref().unwrap_or(""));
    let find = |uid: &str| vmsd.snapshots.iter().position(|s| s.uid == uid);
    for (i, s) in vmsd.snapshots.iter().enumerate() {
        if find(&s.uid) != Some(i) {
            return Err(ConfigError::Tree(format!(
                "{} has uid {}, as an earlier snapshot does",
                title(s),
                s.uid
            )));
        }
        if let Some(p) = &s.parent {
            if find(p).is_none() {
                return Err(ConfigError::Tree(format!(
                    "{} names parent uid {p}, which no snapshot has",
                    title(s)
                )));
            }
        }
    }
    if let Some(c) = &vmsd.current {
        if find(c).is_none() && !vmsd.snapshots.is_empty() {
            return Err(ConfigError::Tree(format!(
                "snapshot.current is uid {c}, which no snapshot has"
            )));
        }
    }
    for (i, s) in vmsd.snapshots.iter().enumerate() {
        let mut at = i;
        for _ in 0..=vmsd.snapshots.len() {
            match vmsd.snapshots[at].parent.as_deref().and_then(find) {
                Some(p) => at = p,
                None => break,
            }
            if at == i {
                return Err(ConfigError::Tree(format!("{}'s parents lead back to itself", title(s))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmsd(text: &str) -> Result<Vmsd, ConfigError> {
        parse(&Dictionary::parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn slots_uids_times_and_disks() {
        // 2026-11-26T10:08:23.5Z (date -u -d @1795687703), as microseconds.
        let micros: i64 = 1_795_687_703_500_000;
        let high = (micros >> 32) as i32;
        let low = micros as u32 as i32;
        let v = vmsd(&format!(
            r#".encoding = "UTF-8"
snapshot.lastUID = "7"
snapshot.numSnapshots = "2"
snapshot.current = "7"
snapshot0.uid = "3"
snapshot0.filename = "vm-Snapshot3.vmsn"
snapshot0.displayName = "Before upgrade"
snapshot0.description = "line 1|0Aline 2"
snapshot0.createTimeHigh = "{high}"
snapshot0.createTimeLow = "{low}"
snapshot0.numDisks = "2"
snapshot0.disk0.fileName = "vm.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot0.disk1.fileName = "data.vmdk"
snapshot0.disk1.node = "scsi0:1"
snapshot5.uid = "7"
snapshot5.parent = "3"
snapshot5.displayName = "After"
snapshot5.disk0.fileName = "vm-000001.vmdk"
snapshot5.disk0.node = "scsi0:0"
"#
        ))
        .unwrap();
        assert_eq!(v.current.as_deref(), Some("7"));
        assert_eq!(v.snapshots.len(), 2);
        let s = &v.snapshots[0];
        assert_eq!((s.slot, s.uid.as_str()), (0, "3"));
        assert_eq!(s.display_name.as_deref(), Some("Before upgrade"));
        assert_eq!(s.description.as_deref(), Some("line 1\nline 2"));
        assert_eq!(s.created, Some(UNIX_EPOCH + Duration::from_micros(micros as u64)));
        assert_eq!(s.disks.len(), 2);
        assert_eq!(s.disks[1].node.to_string(), "scsi0:1");
        assert_eq!(v.snapshots[1].parent.as_deref(), Some("3"));
        assert_eq!(v.snapshots[1].created, None);
    }

    #[test]
    fn a_negative_low_half_is_the_unsigned_low_word() {
        let mut keys = BTreeMap::new();
        keys.insert("createtimehigh".to_string(), "1".to_string());
        keys.insert("createtimelow".to_string(), "-1".to_string());
        let t = create_time(&keys, 0).unwrap().unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_micros((1 << 32) + 0xffff_ffff));
    }

    #[test]
    fn bad_trees_are_refused_with_what_is_wrong() {
        let e = vmsd("snapshot.lastUID = \"2\"\nsnapshot0.uid = \"1\"\nsnapshot0.parent = \"9\"\n").unwrap_err();
        assert!(e.to_string().contains("parent uid 9"), "{e}");
        let e = vmsd(
            "snapshot.lastUID = \"2\"\nsnapshot0.uid = \"1\"\nsnapshot0.parent = \"2\"\nsnapshot1.uid = \"2\"\nsnapshot1.parent = \"1\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("lead back to itself"), "{e}");
        let e = vmsd("snapshot.lastUID = \"2\"\nsnapshot0.uid = \"1\"\nsnapshot1.uid = \"1\"\n").unwrap_err();
        assert!(e.to_string().contains("as an earlier snapshot"), "{e}");
        let e = vmsd("snapshot.current = \"4\"\nsnapshot0.uid = \"1\"\n").unwrap_err();
        assert!(e.to_string().contains("snapshot.current is uid 4"), "{e}");
        let e = vmsd("snapshot.lastUID = \"1\"\nsnapshot0.uid = \"1\"\nsnapshot0.disk0.node = \"tape0\"\nsnapshot0.disk0.fileName = \"a\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("snapshot0.disk0.node"), "{e}");
        let e = vmsd("snapshot.lastUID = \"1\"\nsnapshot0.uid = \"1\"\nsnapshot0.createTimeHigh = \"x\"\nsnapshot0.createTimeLow = \"1\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("createTimeHigh"), "{e}");
    }
}
