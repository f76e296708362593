//! Tree walks for differential tests: the same bytes seen through a ckptfs reader and
//! through the kernel (or ntfs-3g, or mtools) must give the same walk.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use ckptfs::fs::{FileKind, GuestFs, NodeId};

/// One node as a walk records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 'd' directory, 'f' regular file, 'l' symlink, 'o' other.
    pub kind: char,
    pub size: u64,
    /// sha256 of a file's bytes, a symlink's target, empty for directories.
    pub content: String,
    /// Modification time, seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
}

/// Path (relative, `/`-separated) → node.
pub type Walk = BTreeMap<String, Node>;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn secs_nanos(t: std::time::SystemTime) -> (i64, u32) {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                (-(d.as_secs() as i64), 0)
            } else {
                (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

/// Walk a ckptfs guest filesystem from its root.
pub fn walk_guest(fs: &dyn GuestFs) -> Walk {
    let mut out = Walk::new();
    walk_guest_dir(fs, fs.root(), "", &mut out);
    out
}

fn walk_guest_dir(fs: &dyn GuestFs, dir: NodeId, prefix: &str, out: &mut Walk) {
    let entries = fs.read_dir(dir).unwrap_or_else(|e| panic!("read_dir {prefix:?}: {e}"));
    for e in entries.iter() {
        let name = e.name.to_string_lossy();
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let attr = fs.attr(e.node).unwrap_or_else(|err| panic!("attr {path}: {err}"));
        assert_eq!(attr.kind, e.kind, "{path}: kind in listing vs attr");
        let (kind, content) = match attr.kind {
            FileKind::Dir => ('d', String::new()),
            FileKind::Symlink => {
                let t = fs
                    .read_link(e.node)
                    .unwrap_or_else(|err| panic!("read_link {path}: {err}"));
                ('l', hex(&Sha256::digest(t.as_encoded_bytes())))
            }
            FileKind::File => {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut off = 0u64;
                loop {
                    let n = fs
                        .read(e.node, off, &mut buf)
                        .unwrap_or_else(|err| panic!("read {path} at {off}: {err}"));
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    off += n as u64;
                }
                assert_eq!(off, attr.size, "{path}: bytes read vs size");
                ('f', hex(&h.finalize()))
            }
            _ => ('o', String::new()),
        };
        let size = if kind == 'd' { 0 } else { attr.size };
        out.insert(
            path.clone(),
            Node {
                kind,
                size,
                content,
                mtime: secs_nanos(attr.mtime),
            },
        );
        if kind == 'd' {
            walk_guest_dir(fs, e.node, &path, out);
        }
    }
}

/// Walk a directory of this machine (a kernel or FUSE mount), skipping `skip` names at
/// the top (e.g. "lost+found" is listed by both, "System Volume Information" only by
/// ntfs-3g).
pub fn walk_host(root: &Path, skip: &[&str]) -> Walk {
    let mut out = Walk::new();
    walk_host_dir(root, "", skip, &mut out);
    out
}

fn walk_host_dir(dir: &Path, prefix: &str, skip: &[&str], out: &mut Walk) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        if prefix.is_empty() && skip.contains(&name.as_str()) {
            continue;
        }
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        let (kind, content) = if ft.is_dir() {
            ('d', String::new())
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).unwrap();
            ('l', hex(&Sha256::digest(t.as_os_str().as_encoded_bytes())))
        } else if ft.is_file() {
            ('f', hex(&Sha256::digest(std::fs::read(e.path()).unwrap())))
        } else {
            ('o', String::new())
        };
        let size = if kind == 'd' { 0 } else { md.len() };
        out.insert(
            path.clone(),
            Node {
                kind,
                size,
                content,
                mtime: (md.mtime(), md.mtime_nsec() as u32),
            },
        );
        if kind == 'd' {
            walk_host_dir(&e.path(), &path, skip, out);
        }
    }
}

/// Compare two walks; report every difference at once.
pub fn assert_same_walk(actual: &Walk, expected: &Walk, what: &str) {
    let mut diffs = Vec::new();
    for (p, e) in expected {
        match actual.get(p) {
            None => diffs.push(format!("missing: {p}")),
            Some(a) if a != e => diffs.push(format!("differs: {p}\n   ckptfs: {a:?}\n expected: {e:?}")),
            _ => {}
        }
    }
    for p in actual.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("extra: {p}"));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(
        !expected.is_empty(),
        "{what}: the expected walk is empty: the test proves nothing"
    );
}
