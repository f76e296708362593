//! The `.vmx`: the VM's name and the disks it runs on now. Each disk is a device node
//! `BUSn:u` (`scsi0:0`, `sata0:1`, `nvme0:0`, `ide1:0`) with `.present`, `.deviceType`
//! and `.fileName`; CD-ROMs, ISO images and floppies are not disks.

use super::dictionary::Dictionary;

/// Buses whose devices can hold disks, in the order disks are listed.
const BUSES: &[&str] = &["ide", "sata", "scsi", "nvme"];

/// One device node, parsed: `scsi0:1` → ("scsi", 0, 1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node {
    bus: usize,
    controller: u32,
    unit: u32,
}

impl Node {
    /// Parse `scsi0:1` (any letter case).
    pub fn parse(s: &str) -> Option<Node> {
        let lower = s.to_ascii_lowercase();
        let bus = BUSES.iter().position(|b| lower.starts_with(b))?;
        let (controller, unit) = lower[BUSES[bus].len()..].split_once(':')?;
        Some(Node {
            bus,
            controller: controller.parse().ok()?,
            unit: unit.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}:{}", BUSES[self.bus], self.controller, self.unit)
    }
}

/// One disk of the running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmxDisk {
    pub node: Node,
    /// As written: relative to the VM's folder, or absolute.
    pub file_name: String,
    /// `independent-persistent` and the like: such disks are left out of snapshots.
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Vmx {
    pub display_name: Option<String>,
    /// In node order.
    pub disks: Vec<VmxDisk>,
}

/// Whether a dictionary is a `.vmx` (and not a `.vmsd`, `.vmxf` or disk descriptor).
pub fn is_vmx(d: &Dictionary) -> bool {
    d.get("config.version").is_some() || d.get("virtualHW.version").is_some()
}

pub fn parse(d: &Dictionary) -> Vmx {
    let mut disks: Vec<VmxDisk> = d
        .entries()
        .filter_map(|(key, value)| {
            let prefix = key.strip_suffix(".fileName").or_else(|| {
                key.to_ascii_lowercase()
                    .ends_with(".filename")
                    .then(|| &key[..key.len() - ".filename".len()])
            })?;
            let node = Node::parse(prefix)?;
            Some((prefix.to_string(), node, value.to_string()))
        })
        .filter(|(prefix, _, file)| is_disk(d, prefix, file))
        .map(|(prefix, node, file_name)| VmxDisk {
            node,
            file_name,
            mode: d.get(&format!("{prefix}.mode")).map(str::to_string),
        })
        .collect();
    disks.sort_by(|a, b| a.node.cmp(&b.node));
    disks.dedup_by(|a, b| a.node == b.node);
    Vmx {
        display_name: d.get("displayName").map(str::to_string),
        disks,
    }
}

/// A node holds a disk when it is present, is not a CD-ROM or floppy, and names a file
/// that is not an ISO image.
fn is_disk(d: &Dictionary, prefix: &str, file: &str) -> bool {
    if d.flag(&format!("{prefix}.present")) == Some(false) {
        return false;
    }
    let device = d
        .get(&format!("{prefix}.deviceType"))
        .unwrap_or("")
        .to_ascii_lowercase();
    if device.contains("cdrom") || device.contains("floppy") {
        return false;
    }
    let lower = file.trim().to_ascii_lowercase();
    !(lower.is_empty() || lower.ends_with(".iso") || lower == "auto detect")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_the_present_non_cdrom_nodes_in_order() {
        let d = Dictionary::parse(
            br#".encoding = "UTF-8"
config.version = "8"
displayName = "Win11 lab"
scsi0.present = "TRUE"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "data-000002.vmdk"
scsi0:1.mode = "independent-persistent"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "Win11-000003.vmdk"
sata0:1.present = "TRUE"
sata0:1.deviceType = "cdrom-image"
sata0:1.fileName = "C:\iso\win11.iso"
ide1:0.present = "TRUE"
ide1:0.fileName = "tools.iso"
nvme0:0.present = "FALSE"
nvme0:0.fileName = "old.vmdk"
SATA0:0.Present = "TRUE"
sata0:0.filename = "extra.vmdk"
"#,
        )
        .unwrap();
        assert!(is_vmx(&d));
        let vmx = parse(&d);
        assert_eq!(vmx.display_name.as_deref(), Some("Win11 lab"));
        let nodes: Vec<String> = vmx.disks.iter().map(|d| d.node.to_string()).collect();
        assert_eq!(nodes, ["sata0:0", "scsi0:0", "scsi0:1"]);
        assert_eq!(vmx.disks[1].file_name, "Win11-000003.vmdk");
        assert_eq!(vmx.disks[2].mode.as_deref(), Some("independent-persistent"));
    }

    #[test]
    fn nodes_parse_and_print() {
        assert_eq!(Node::parse("NVMe1:15").unwrap().to_string(), "nvme1:15");
        assert!(Node::parse("ethernet0:1").is_none());
        assert!(Node::parse("scsi0").is_none());
        assert!(Node::parse("scsi0:x").is_none());
    }
}
