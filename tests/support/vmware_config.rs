//! Test-only writer of VMware VM configurations: a `.vmx` naming the disks the VM runs
//! on and a `.vmsd` listing snapshots, in the `key = "value"` form Workstation writes
//! (keys, quoting, `|XX` escapes, the split creation time). Disk files are made by
//! others (qemu-img, the VHDX writer); this only names them.

use std::path::Path;

/// One disk line: device node and file name as the configuration stores it.
#[derive(Debug, Clone)]
pub struct DiskEntry {
    pub node: String,
    pub file_name: String,
}

impl DiskEntry {
    pub fn new(node: &str, file_name: &str) -> DiskEntry {
        DiskEntry {
            node: node.into(),
            file_name: file_name.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub slot: u32,
    pub uid: u32,
    pub parent: Option<u32>,
    pub name: String,
    pub description: Option<String>,
    /// Seconds since 1970, UTC.
    pub created_unix: Option<i64>,
    pub disks: Vec<DiskEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct VmConfig {
    pub display_name: String,
    /// The disks the VM runs on now.
    pub running: Vec<DiskEntry>,
    /// Nodes written with `.mode = "independent-persistent"`.
    pub independent: Vec<String>,
    /// A CD-ROM node with an ISO, which must not count as a disk.
    pub cdrom: Option<(String, String)>,
    pub snapshots: Vec<Snapshot>,
    pub current: Option<u32>,
    /// `.encoding` value; "windows-1252" writes names in that character set.
    pub encoding: String,
}

/// VMware's escape for a value: `"` → `|22`, `|` → `|7C`, newline → `|0A`.
pub fn escape(value: &str) -> String {
    value.replace('|', "|7C").replace('"', "|22").replace('\n', "|0A")
}

/// `createTimeHigh`/`createTimeLow` for a time in seconds: microseconds split into two
/// signed 32-bit halves.
pub fn create_time_halves(unix_seconds: i64) -> (i32, i32) {
    let micros = unix_seconds * 1_000_000;
    ((micros >> 32) as i32, micros as u32 as i32)
}

impl VmConfig {
    pub fn new(display_name: &str) -> VmConfig {
        VmConfig {
            display_name: display_name.into(),
            encoding: "UTF-8".into(),
            ..VmConfig::default()
        }
    }

    pub fn vmx_text(&self) -> String {
        let mut t = format!(
            ".encoding = \"{}\"\nconfig.version = \"8\"\nvirtualHW.version = \"21\"\ndisplayName = \"{}\"\nguestOS = \"windows11-64\"\n",
            self.encoding,
            escape(&self.display_name)
        );
        let mut controllers: Vec<String> = self
            .running
            .iter()
            .map(|d| d.node.split(':').next().unwrap_or("").to_string())
            .collect();
        controllers.dedup();
        for c in controllers {
            t += &format!("{c}.present = \"TRUE\"\n{c}.virtualDev = \"lsisas1068\"\n");
        }
        for d in &self.running {
            t += &format!(
                "{n}.present = \"TRUE\"\n{n}.fileName = \"{f}\"\n",
                n = d.node,
                f = escape(&d.file_name)
            );
            if self.independent.contains(&d.node) {
                t += &format!("{}.mode = \"independent-persistent\"\n", d.node);
            }
        }
        if let Some((node, iso)) = &self.cdrom {
            t += &format!(
                "{node}.present = \"TRUE\"\n{node}.deviceType = \"cdrom-image\"\n{node}.fileName = \"{iso}\"\n"
            );
        }
        t
    }

    pub fn vmsd_text(&self) -> String {
        let last_uid = self.snapshots.iter().map(|s| s.uid).max().unwrap_or(0);
        let mut t = format!(".encoding = \"{}\"\nsnapshot.lastUID = \"{last_uid}\"\n", self.encoding);
        if let Some(c) = self.current {
            t += &format!("snapshot.current = \"{c}\"\n");
        }
        for s in &self.snapshots {
            let p = format!("snapshot{}", s.slot);
            t += &format!(
                "{p}.uid = \"{}\"\n{p}.filename = \"vm-Snapshot{}.vmsn\"\n",
                s.uid, s.uid
            );
            if let Some(parent) = s.parent {
                t += &format!("{p}.parent = \"{parent}\"\n");
            }
            t += &format!("{p}.displayName = \"{}\"\n", escape(&s.name));
            if let Some(d) = &s.description {
                t += &format!("{p}.description = \"{}\"\n", escape(d));
            }
            if let Some(secs) = s.created_unix {
                let (high, low) = create_time_halves(secs);
                t += &format!("{p}.createTimeHigh = \"{high}\"\n{p}.createTimeLow = \"{low}\"\n");
            }
            t += &format!("{p}.numDisks = \"{}\"\n", s.disks.len());
            for (m, d) in s.disks.iter().enumerate() {
                t += &format!(
                    "{p}.disk{m}.fileName = \"{}\"\n{p}.disk{m}.node = \"{}\"\n",
                    escape(&d.file_name),
                    d.node
                );
            }
        }
        t += &format!("snapshot.numSnapshots = \"{}\"\n", self.snapshots.len());
        t
    }

    /// Write `<stem>.vmx` and `<stem>.vmsd` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) {
        let encode = |text: String| -> Vec<u8> {
            if self.encoding.eq_ignore_ascii_case("windows-1252") {
                text.chars()
                    .map(|c| match c {
                        '€' => 0x80,
                        c if (c as u32) < 0x100 => c as u32 as u8,
                        _ => b'?',
                    })
                    .collect()
            } else {
                text.into_bytes()
            }
        };
        std::fs::write(dir.join(format!("{stem}.vmx")), encode(self.vmx_text())).unwrap();
        std::fs::write(dir.join(format!("{stem}.vmsd")), encode(self.vmsd_text())).unwrap();
    }
}
