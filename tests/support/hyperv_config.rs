//! Test-only writer of Hyper-V 2012 R2 VM configurations (`<GUID>.xml`, UTF-16 with a
//! byte order mark), in the schema of the real files in
//! ../shared/samples/hyperv-config/: typed elements (`type="string"`, `"integer"`,
//! `"bool"`, `"bytes"` in base64), the VM's devices under `_<instance>_`, storage
//! drives under `controllerN/driveM`, the manifest listing the synthetic devices (the
//! emulated IDE controller is left out, as 2012 R2 leaves it out), `properties` and
//! `settings/global/logical_id`. A checkpoint's configuration has the same schema with
//! its own `global_id` and `name` and the VM's `logical_id`.

/// The emulated IDE controller's device id (and instance), as in the real files.
pub const IDE_CONTROLLER: &str = "83f8638b-8dca-4152-9eda-2ca8b33039b4";
/// The synthetic SCSI controller's device id.
pub const SCSI_CONTROLLER: &str = "d422512d-2bf2-4752-809d-7b82b5fcb1b4";

#[derive(Debug, Clone)]
pub struct Drive {
    /// "ide" or "scsi".
    pub bus: &'static str,
    pub controller: u32,
    pub drive: u32,
    /// "VHD", "ISO", "NONE".
    pub kind: &'static str,
    /// As Hyper-V stores it: an absolute Windows path on the host.
    pub pathname: String,
}

impl Drive {
    pub fn vhd(bus: &'static str, controller: u32, drive: u32, pathname: &str) -> Drive {
        Drive {
            bus,
            controller,
            drive,
            kind: "VHD",
            pathname: pathname.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HvConfig {
    pub name: String,
    /// This configuration's id: the VM's, or the checkpoint's.
    pub global_id: String,
    /// The VM's id, in the VM's and in each of its checkpoints' configuration.
    pub logical_id: String,
    /// Seconds since 1970, written as a FILETIME in `properties/creation_time`.
    pub created_unix: Option<i64>,
    /// 1 or 2 (`properties/subtype` 0 or 1).
    pub generation: u8,
    pub drives: Vec<Drive>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Standard base64 with padding, as the XML's `bytes` values are written.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// 100 ns ticks since 1601-01-01 for a time in seconds since 1970.
pub fn filetime(unix_seconds: i64) -> u64 {
    (unix_seconds as u64 + 11_644_473_600) * 10_000_000
}

impl HvConfig {
    /// The XML text (before encoding).
    pub fn xml_text(&self) -> String {
        let mut t = String::from("<?xml version=\"1.0\" encoding=\"UTF-16\" standalone=\"yes\"?>\n<configuration>\n");
        let scsi_instance = format!("{}-5ab5-4a53-9e81-80d1fcc18237", &self.global_id.to_lowercase()[..8]);
        for (bus, instance) in [("ide", IDE_CONTROLLER.to_string()), ("scsi", scsi_instance.clone())] {
            let drives: Vec<&Drive> = self.drives.iter().filter(|d| d.bus == bus).collect();
            t.push_str(&format!(
                "  <_{instance}_>\n    <VDEVVersion type=\"integer\">1280</VDEVVersion>\n"
            ));
            let mut controllers: Vec<u32> = drives.iter().map(|d| d.controller).collect();
            controllers.sort();
            controllers.dedup();
            for c in controllers {
                t.push_str(&format!("    <controller{c}>\n"));
                for d in drives.iter().filter(|d| d.controller == c) {
                    t.push_str(&format!(
                        "      <drive{}>\n        <iops_limit type=\"integer\">0</iops_limit>\n        <pathname type=\"string\">{}</pathname>\n        <type type=\"string\">{}</type>\n      </drive{}>\n",
                        d.drive,
                        esc(&d.pathname),
                        d.kind,
                        d.drive
                    ));
                }
                t.push_str(&format!("    </controller{c}>\n"));
            }
            t.push_str(&format!("  </_{instance}_>\n"));
        }
        t.push_str("  <global_settings>\n    <snapshots>\n      <list>\n        <size type=\"integer\">0</size>\n      </list>\n    </snapshots>\n  </global_settings>\n");
        t.push_str(&format!(
            "  <manifest>\n    <size type=\"integer\">1</size>\n    <vdev001>\n      <device type=\"string\">{SCSI_CONTROLLER}</device>\n      <flags type=\"integer\">1</flags>\n      <instance type=\"string\">{}</instance>\n      <name type=\"string\">Synthetic SCSI Controller</name>\n    </vdev001>\n    <version type=\"integer\">260</version>\n  </manifest>\n",
            scsi_instance.to_uppercase()
        ));
        t.push_str("  <properties>\n");
        if let Some(secs) = self.created_unix {
            t.push_str(&format!(
                "    <creation_time type=\"bytes\">{}</creation_time>\n",
                base64(&filetime(secs).to_le_bytes())
            ));
        }
        t.push_str(&format!(
            "    <global_id type=\"string\">{}</global_id>\n    <highly_available type=\"bool\">False</highly_available>\n    <name type=\"string\">{}</name>\n    <notes type=\"string\"></notes>\n    <subtype type=\"integer\">{}</subtype>\n    <type_id type=\"string\">Virtual Machines</type_id>\n    <version type=\"integer\">1280</version>\n  </properties>\n",
            self.global_id,
            esc(&self.name),
            self.generation.saturating_sub(1)
        ));
        t.push_str(&format!(
            "  <settings>\n    <global>\n      <logical_id type=\"string\">{}</logical_id>\n    </global>\n  </settings>\n</configuration>\n",
            self.logical_id
        ));
        t
    }

    /// The file's bytes: UTF-16LE with a byte order mark, CRLF line ends, as Hyper-V
    /// writes them.
    pub fn xml_bytes(&self) -> Vec<u8> {
        let text = self.xml_text().replace('\n', "\r\n");
        let mut out = vec![0xff, 0xfe];
        out.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        out
    }
}
