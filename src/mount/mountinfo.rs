//! What the kernel says is mounted where (`/proc/self/mountinfo`, proc(5)).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted filesystem.
    pub device: String,
    pub mount_point: PathBuf,
    /// e.g. `fuse.ckptfs`.
    pub fs_type: String,
    pub source: String,
}

/// The topmost mount at `path` (which must be absolute and free of symlinks and `..`).
pub fn find(path: &Path) -> Option<MountEntry> {
    let text = std::fs::read("/proc/self/mountinfo").ok()?;
    parse(&text).into_iter().rev().find(|m| m.mount_point == path)
}

/// Every mount, in mount order (so later entries are on top).
pub fn parse(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
// (ID, parent, major:minor, root, mount point, options, optional fields up to "-",
// then type, source, super options.)
fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let sep = fields.iter().position(|f| *f == b"-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    Some(MountEntry {
        device: String::from_utf8_lossy(fields[2]).into_owned(),
        mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
        fs_type: String::from_utf8_lossy(&unescape(fields[sep + 1])).into_owned(),
        source: String::from_utf8_lossy(&unescape(fields[sep + 2])).into_owned(),
    })
}

/// The kernel writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (field[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mount_point_type_source_and_device() {
        let text = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            95 22 0:52 / /mnt/my\\040ckpt ro,nosuid,nodev shared:7 - fuse.ckptfs /vms/vm.vhdx ro,user_id=0\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mount_point, Path::new("/mnt/my ckpt"));
        assert_eq!(m[1].fs_type, "fuse.ckptfs");
        assert_eq!(m[1].source, "/vms/vm.vhdx");
        assert_eq!(m[1].device, "0:52");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse(b"garbage\n1 2 3\n\n").is_empty());
    }

    #[test]
    fn unescapes_octal_and_keeps_lone_backslashes() {
        assert_eq!(unescape(b"a\\134b\\011c\\x"), b"a\\b\tc\\x");
    }
}
