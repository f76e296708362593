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

/// Open the directory `mountpoint` (before mounting on it, so the directory under the
/// mount) for the serving process to hold while it serves. An `O_PATH` descriptor
/// reads nothing and keeps nothing busy that the mount itself does not.
pub fn anchor(mountpoint: &Path) -> crate::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(mountpoint)
        .map_err(|source| crate::Error::Io {
            path: mountpoint.into(),
            what: "cannot open the mount point".into(),
            source,
        })
}

/// The process serving the ckptfs mount at `mountpoint` (canonical): a `ckptfs mount`
/// process (`mount` among its arguments) that holds the directory under the mount open
/// (see [`anchor`]); failing that, for a server that holds none (an older ckptfs), one
/// whose last argument is `mountpoint` itself. Processes of other users are visible to
/// root only, which is also who could see their mounts' files.
pub fn server_pid(mountpoint: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let me = std::process::id();
    let mut by_argument = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
        if !args.iter().skip(1).any(|a| *a == b"mount") {
            continue;
        }
        let holds_it = std::fs::read_dir(entry.path().join("fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == mountpoint))
        });
        if holds_it {
            return Some(pid);
        }
        if by_argument.is_none()
            && args
                .last()
                .is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)) == mountpoint)
        {
            by_argument = Some(pid);
        }
    }
    by_argument
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
