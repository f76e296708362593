//! Reparse points: the buffer of a `$REPARSE_POINT` attribute checked and decoded, and
//! symbolic links and junctions turned into POSIX symlink targets.
//!
//! A symlink's (IO_REPARSE_TAG_SYMLINK), a junction's (IO_REPARSE_TAG_MOUNT_POINT) or a
//! WSL symlink's (IO_REPARSE_TAG_LX_SYMLINK) node is a [`FileKind::Symlink`]. Targets
//! map as ntfs-3g maps them, except that ckptfs never makes a path through its own
//! mount point, so that links stay right in copies (`cp -a`) and inside the volume:
//!
//! - relative (`..\Users\x`): the same path with `/`, `..` resolved by name as Windows
//!   does (and kept at the volume root, where Windows keeps it), letter case corrected
//!   to the names on disk where they exist;
//! - rooted in this volume (`\Users\x`), or with a drive letter (`\??\C:\Users\x`,
//!   `C:\Users\x`) whose path exists on this volume: the path from the link's directory
//!   to it (`../Users/x`). ckptfs cannot know which letter the guest gave the volume, so
//!   like ntfs-3g it takes a path found here as meant for here;
//! - anything else (a drive-letter path not found here, `\??\Volume{GUID}\…`, UNC
//!   paths, devices): `<path to the volume root>/.NTFS-3G/<target with />`, e.g.
//!   `../.NTFS-3G/D:/data`, ntfs-3g's convention: a dangling link inside the volume,
//!   which a user can make resolve in a copy by creating `.NTFS-3G/D:` there.
//!
//! WSL symlinks hold a POSIX target already, which is given as stored.

use std::collections::HashSet;
use std::ffi::OsString;

use ntfs::structured_values::NtfsFileNamespace;
use ntfs::NtfsAttributeType;

use super::record::{u16_at, u32_at, u64_at, Attribute, Value};
use super::stream::stream;
use super::{Disk, NtfsFs, ROOT};
use crate::fs::{FileKind, GuestFs};
use crate::Result;

pub(super) const TAG_MOUNT_POINT: u32 = 0xA000_0003;
pub(super) const TAG_SYMLINK: u32 = 0xA000_000C;
pub(super) const TAG_LX_SYMLINK: u32 = 0xA000_001D;
/// Reparse data is at most 16 KiB (MAXIMUM_REPARSE_DATA_BUFFER_SIZE).
const MAX_REPARSE: u64 = 16 << 10;
/// Directory levels followed to find a link's place; far more than a path can hold.
const MAX_DEPTH: usize = 1024;
/// ntfs-3g's directory for targets outside the volume.
const ELSEWHERE: &str = ".NTFS-3G";

/// A checked reparse buffer.
pub(super) struct Reparse {
    pub tag: u32,
    /// The whole buffer, header included (as `system.ntfs_reparse_data` shows it).
    pub raw: Vec<u8>,
}

impl Reparse {
    /// The tag-specific data, after the header (and the GUID of a non-Microsoft tag).
    fn data(&self) -> &[u8] {
        let start = if self.tag & 0x8000_0000 != 0 { 8 } else { 24 };
        &self.raw[start..]
    }
}

/// What a link points to, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Link {
    /// A symlink or junction target in Windows form. (A symlink's "relative" flag is
    /// not needed: the target's form says the same.)
    Windows(String),
    /// A WSL symlink: already a POSIX path.
    Posix(Vec<u8>),
}

/// Check a reparse buffer's lengths: `data_length` must account for every byte after
/// the header (8 bytes, 24 for non-Microsoft tags, which carry a GUID), as Windows and
/// ntfs-3g require.
pub(super) fn check(raw: Vec<u8>) -> std::result::Result<Reparse, String> {
    if raw.len() < 8 {
        return Err(format!(
            "reparse buffer of {} bytes is shorter than its header",
            raw.len()
        ));
    }
    let tag = u32_at(&raw, 0);
    let declared = u16_at(&raw, 4) as usize;
    let header = if tag & 0x8000_0000 != 0 { 8 } else { 24 };
    if raw.len() != header + declared {
        return Err(format!(
            "reparse buffer with tag {tag:#010x} is {} bytes but its header accounts for {}",
            raw.len(),
            header + declared
        ));
    }
    Ok(Reparse { tag, raw })
}

/// The reparse point of a file, checked; `None` if it has none.
pub(super) fn read(disk: &Disk, attrs: &[Attribute]) -> std::result::Result<Option<Reparse>, String> {
    let Some(s) = stream(attrs, NtfsAttributeType::ReparsePoint, "")? else {
        return Ok(None);
    };
    let raw = disk
        .read_all("$REPARSE_POINT".into(), &s, MAX_REPARSE)
        .map_err(|e| e.to_string())?;
    check(raw).map(Some)
}

/// The link a reparse point makes, if it is one; an error if its tag says link but its
/// names do not fit the buffer.
pub(super) fn link(r: &Reparse) -> std::result::Result<Option<Link>, String> {
    let d = r.data();
    let header = match r.tag {
        TAG_SYMLINK => {
            if d.len() < 12 {
                return Err(format!("symlink reparse data of {} bytes", d.len()));
            }
            12
        }
        TAG_MOUNT_POINT => {
            if d.len() < 8 {
                return Err(format!("junction reparse data of {} bytes", d.len()));
            }
            8
        }
        TAG_LX_SYMLINK => {
            if d.len() < 4 || u32_at(d, 0) != 2 {
                return Err("WSL symlink reparse data is not version 2".into());
            }
            if d.len() == 4 {
                return Err("WSL symlink with an empty target".into());
            }
            return Ok(Some(Link::Posix(d[4..].to_vec())));
        }
        _ => return Ok(None),
    };
    let names = &d[header..];
    let name = |off: usize, len: usize, what: &str| -> std::result::Result<String, String> {
        if len % 2 != 0 {
            return Err(format!("{what} has an odd length {len}"));
        }
        let b = names
            .get(off..off + len)
            .ok_or_else(|| format!("{what} ({off}+{len}) lies past the {} bytes of names", names.len()))?;
        let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        Ok(String::from_utf16_lossy(&units))
    };
    let substitute = name(u16_at(d, 0) as usize, u16_at(d, 2) as usize, "its substitute name")?;
    let print = name(u16_at(d, 4) as usize, u16_at(d, 6) as usize, "its print name")?;
    // Windows follows the substitute name; a print name is only for display.
    let target = if substitute.is_empty() { print } else { substitute };
    if target.is_empty() {
        return Err("link with an empty target".into());
    }
    Ok(Some(Link::Windows(target)))
}

/// Whether a file record is a link, from its attributes. A link tag whose buffer is
/// damaged is not one (the reason is logged): the node shows as the file or directory
/// it is, and reading a file fails.
pub(super) fn is_link(disk: &Disk, n: u64, attrs: &[Attribute]) -> bool {
    match read(disk, attrs).and_then(|r| r.map_or(Ok(None), |r| link(&r))) {
        Ok(l) => l.is_some(),
        Err(why) => {
            log::warn!("ntfs: file record {n}: damaged reparse point: {why}");
            false
        }
    }
}

/// The tag of a file's reparse point, `None` if it has none or its buffer is damaged
/// (which [`is_link`], asked first for every node, has logged): a link tag whose names
/// do not fit says nothing sure about the file's data either.
pub(super) fn valid_tag(disk: &Disk, attrs: &[Attribute]) -> Option<u32> {
    let r = read(disk, attrs).ok().flatten()?;
    link(&r).ok()?;
    Some(r.tag)
}

/// How a Windows target is anchored.
#[derive(Debug, PartialEq, Eq)]
enum Anchor {
    /// The link's directory.
    Relative,
    /// This volume's root (`\x`).
    Root,
    /// A drive's root (`C:\x`): this volume if the path is found here.
    Drive(String),
    /// Somewhere ckptfs cannot reach: the text to keep, already with `/`.
    Elsewhere(String),
}

fn split(path: &str) -> Vec<String> {
    path.split(['\\', '/'])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// `X:` followed by nothing or a separator.
fn drive(s: &str) -> Option<(String, &str)> {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b.len() == 2 || b[2] == b'\\' || b[2] == b'/') {
        Some((format!("{}:", (b[0] as char).to_ascii_uppercase()), &s[2..]))
    } else {
        None
    }
}

/// Where a Windows target is anchored and its components.
fn classify(target: &str) -> (Anchor, Vec<String>) {
    let nt = ["\\??\\", "\\\\?\\", "\\\\.\\"]
        .iter()
        .find_map(|p| target.strip_prefix(p));
    if let Some(rest) = nt {
        if let Some((letter, path)) = drive(rest) {
            return (Anchor::Drive(letter), split(path));
        }
        let shown = rest.trim_end_matches(['\\', '/']).replace('\\', "/");
        return (Anchor::Elsewhere(shown), Vec::new());
    }
    if let Some(unc) = target.strip_prefix("\\\\") {
        return (
            Anchor::Elsewhere(format!("UNC/{}", unc.trim_end_matches('\\').replace('\\', "/"))),
            Vec::new(),
        );
    }
    if let Some((letter, path)) = drive(target) {
        return (Anchor::Drive(letter), split(path));
    }
    if target.starts_with('\\') {
        return (Anchor::Root, split(target));
    }
    (Anchor::Relative, split(target))
}

/// One step of a resolved path: the name to show and the node, while it is known.
#[derive(Clone)]
struct Step {
    name: String,
    node: Option<u64>,
}

impl NtfsFs {
    /// The POSIX target of link node `n`. Its directory and the names along the target
    /// are looked up; damage there only leaves names as stored.
    pub(super) fn link_target(&self, n: u64) -> Result<OsString> {
        let (_, attrs) = self.attributes(n)?;
        let reparse = read(&self.disk, &attrs)
            .and_then(|r| r.ok_or_else(|| "it has no reparse point".to_string()))
            .map_err(|e| super::fs_err(format!("file record {n}: {e}")))?;
        let link = link(&reparse).map_err(|e| super::fs_err(format!("file record {n}: reparse point: {e}")))?;
        let target = match link {
            None => return Err(crate::Error::NotASymlink(format!("ntfs file record {n}"))),
            Some(Link::Posix(t)) => return Ok(bytes_to_os(t)),
            Some(Link::Windows(target)) => target,
        };
        let here = self.place(n, &attrs)?;
        let (anchor, parts) = classify(&target);
        let root = || {
            vec![Step {
                name: String::new(),
                node: Some(ROOT),
            }]
        };
        let path = match anchor {
            Anchor::Relative => self.walk(here.clone(), &parts).0,
            Anchor::Root => self.walk(root(), &parts).0,
            Anchor::Drive(letter) => match self.walk(root(), &parts) {
                (path, true) => path,
                (_, false) => {
                    let mut p = root();
                    p.push(Step {
                        name: ELSEWHERE.into(),
                        node: None,
                    });
                    p.push(Step {
                        name: letter,
                        node: None,
                    });
                    p.extend(parts.into_iter().map(|name| Step { name, node: None }));
                    p
                }
            },
            Anchor::Elsewhere(text) => {
                let mut p = root();
                p.push(Step {
                    name: ELSEWHERE.into(),
                    node: None,
                });
                p.push(Step { name: text, node: None });
                p
            }
        };
        Ok(OsString::from(relative_path(&here, &path)))
    }

    /// The directories from the root to the one holding node `n`, by its first
    /// Win32/POSIX name (as ntfs-3g picks a hard-linked file's directory).
    fn place(&self, n: u64, attrs: &[Attribute]) -> Result<Vec<Step>> {
        let mut chain = Vec::new();
        let mut seen = HashSet::new();
        let mut dir = parent(attrs).ok_or_else(|| super::fs_err(format!("file record {n} has no file name")))?;
        while dir != ROOT {
            if !seen.insert(dir) || chain.len() >= MAX_DEPTH {
                return Err(super::fs_err(format!("file record {n}: its parent directories loop")));
            }
            let (_, attrs) = self.attributes(dir)?;
            let name =
                own_name(&attrs).ok_or_else(|| super::fs_err(format!("directory record {dir} has no file name")))?;
            chain.push(Step { name, node: Some(dir) });
            dir = parent(&attrs).unwrap_or(ROOT);
        }
        chain.push(Step {
            name: String::new(),
            node: Some(ROOT),
        });
        chain.reverse();
        Ok(chain)
    }

    /// Follow `parts` from `from` (a path from the root), by name as Windows would:
    /// `..` drops a step (never the root), `.` is nothing, other names are looked up
    /// without regard to case and take their spelling on disk. Returns the path and
    /// whether every name was found; past a name not found, a file, or another link
    /// (which is not followed, as ntfs-3g does not), names stay as stored.
    fn walk(&self, mut path: Vec<Step>, parts: &[String]) -> (Vec<Step>, bool) {
        let mut found = true;
        for part in parts {
            match part.as_str() {
                "." => {}
                ".." => {
                    if path.len() > 1 {
                        path.pop();
                    }
                }
                _ => {
                    let dir = path.last().and_then(|s| s.node);
                    let hit = dir.and_then(|d| self.find(d, part));
                    if dir.is_some() && hit.is_none() {
                        found = false;
                    }
                    path.push(match hit {
                        Some((name, node)) => Step { name, node },
                        None => Step {
                            name: part.clone(),
                            node: None,
                        },
                    });
                }
            }
        }
        (path, found)
    }

    /// `name` in directory `dir`, exactly or else without regard to case: the name as
    /// stored, and the node if it is a directory that can be looked into.
    fn find(&self, dir: u64, name: &str) -> Option<(String, Option<u64>)> {
        let entries = self.read_dir(dir).ok()?;
        let key = name.to_uppercase();
        let e = entries
            .iter()
            .find(|e| e.name == name)
            .or_else(|| entries.iter().find(|e| e.name.to_string_lossy().to_uppercase() == key))?;
        let into = (self.node(e.node).ok()?.kind == FileKind::Dir).then_some(e.node);
        Some((e.name.to_string_lossy().into_owned(), into))
    }
}

/// The path from directory `from` to `to`, both paths from the root.
fn relative_path(from: &[Step], to: &[Step]) -> String {
    let same = |a: &Step, b: &Step| match (a.node, b.node) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    let common = from.iter().zip(to).take_while(|(a, b)| same(a, b)).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(to[common..].iter().map(|s| s.name.as_str()));
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// The directory of the first Win32/POSIX name of a file.
pub(super) fn parent(attrs: &[Attribute]) -> Option<u64> {
    file_names(attrs).next().map(|v| u64_at(v, 0) & 0xFFFF_FFFF_FFFF)
}

fn own_name(attrs: &[Attribute]) -> Option<String> {
    file_names(attrs).next().map(|v| {
        let chars = v[64] as usize;
        let units: Vec<u16> = v[66..]
            .chunks_exact(2)
            .take(chars)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    })
}

/// Values of the `$FILE_NAME`s that are names of their own (not a DOS 8.3 alias).
fn file_names(attrs: &[Attribute]) -> impl Iterator<Item = &[u8]> {
    attrs.iter().filter_map(|a| match &a.value {
        Value::Resident(v)
            if a.ty == NtfsAttributeType::FileName as u32
                && v.len() >= 66
                && v[65] != NtfsFileNamespace::Dos as u8
                && v.len() >= 66 + 2 * v[64] as usize =>
        {
            Some(v.as_slice())
        }
        _ => None,
    })
}

fn bytes_to_os(b: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(tag: u32, data: &[u8]) -> Vec<u8> {
        let mut b = tag.to_le_bytes().to_vec();
        b.extend((data.len() as u16).to_le_bytes());
        b.extend([0, 0]);
        b.extend(data);
        b
    }

    fn names(substitute: &str, print: &str, flags: Option<u32>) -> Vec<u8> {
        let s: Vec<u8> = substitute.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let p: Vec<u8> = print.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut d = Vec::new();
        for v in [0, s.len(), s.len(), p.len()] {
            d.extend((v as u16).to_le_bytes());
        }
        if let Some(f) = flags {
            d.extend(f.to_le_bytes());
        }
        d.extend(s);
        d.extend(p);
        d
    }

    #[test]
    fn links_decode_and_bad_lengths_are_errors() {
        let sym = check(buffer(TAG_SYMLINK, &names("..\\a\\b", "..\\a\\b", Some(1)))).unwrap();
        assert_eq!(link(&sym).unwrap(), Some(Link::Windows("..\\a\\b".into())));
        let junction = check(buffer(TAG_MOUNT_POINT, &names("\\??\\C:\\x", "C:\\x", None))).unwrap();
        assert_eq!(link(&junction).unwrap(), Some(Link::Windows("\\??\\C:\\x".into())));
        let mut wsl = 2u32.to_le_bytes().to_vec();
        wsl.extend(b"/usr/bin/env");
        assert_eq!(
            link(&check(buffer(TAG_LX_SYMLINK, &wsl)).unwrap()).unwrap(),
            Some(Link::Posix(b"/usr/bin/env".to_vec()))
        );
        // Not a link.
        assert_eq!(link(&check(buffer(0x8000_0013, &[1, 2, 3])).unwrap()).unwrap(), None);

        // data_length disagrees with the buffer.
        let mut b = buffer(TAG_SYMLINK, &names("a", "a", Some(1)));
        b[4] += 2;
        assert!(check(b).is_err());
        assert!(check(vec![0x0C, 0, 0]).is_err());
        // A non-Microsoft tag needs its GUID.
        assert!(check(buffer(0x0000_1234, &[])).is_err());
        assert!(check(buffer(0x0000_1234, &[0; 16])).is_err());
        let mut guid = buffer(0x0000_1234, &[]);
        guid.extend([0; 16]);
        assert!(check(guid).is_ok());
        // A name past the end of the buffer, an odd length, a short header.
        let mut d = names("abc", "abc", Some(0));
        d[2] = 200;
        assert!(link(&check(buffer(TAG_SYMLINK, &d)).unwrap()).is_err());
        let mut d = names("abc", "abc", Some(0));
        d[2] = 5;
        assert!(link(&check(buffer(TAG_SYMLINK, &d)).unwrap()).is_err());
        assert!(link(&check(buffer(TAG_SYMLINK, &[0; 10])).unwrap()).is_err());
        assert!(link(&check(buffer(TAG_MOUNT_POINT, &names("", "", None))).unwrap()).is_err());
        assert!(link(&check(buffer(TAG_LX_SYMLINK, &1u32.to_le_bytes())).unwrap()).is_err());
    }

    #[test]
    fn targets_are_classified() {
        let c = classify;
        assert_eq!(
            c("\\??\\C:\\Users\\x"),
            (Anchor::Drive("C:".into()), vec!["Users".into(), "x".into()])
        );
        assert_eq!(c("d:\\"), (Anchor::Drive("D:".into()), vec![]));
        assert_eq!(c("\\\\?\\C:\\a"), (Anchor::Drive("C:".into()), vec!["a".into()]));
        assert_eq!(c("\\Users\\x"), (Anchor::Root, vec!["Users".into(), "x".into()]));
        assert_eq!(
            c("..\\a\\.\\b"),
            (Anchor::Relative, vec!["..".into(), "a".into(), ".".into(), "b".into()])
        );
        assert_eq!(
            c("\\??\\Volume{1234}\\"),
            (Anchor::Elsewhere("Volume{1234}".into()), vec![])
        );
        assert_eq!(
            c("\\??\\UNC\\server\\share\\f"),
            (Anchor::Elsewhere("UNC/server/share/f".into()), vec![])
        );
        assert_eq!(
            c("\\\\server\\share"),
            (Anchor::Elsewhere("UNC/server/share".into()), vec![])
        );
    }

    #[test]
    fn relative_paths_between_places() {
        let p = |v: &[(&str, Option<u64>)]| -> Vec<Step> {
            v.iter()
                .map(|(n, id)| Step {
                    name: n.to_string(),
                    node: *id,
                })
                .collect()
        };
        let here = p(&[("", Some(5)), ("a", Some(40)), ("b", Some(41))]);
        assert_eq!(
            relative_path(&here, &p(&[("", Some(5)), ("Users", Some(50))])),
            "../../Users"
        );
        assert_eq!(relative_path(&here, &here), ".");
        assert_eq!(relative_path(&here, &p(&[("", Some(5)), ("a", Some(40))])), "..");
        assert_eq!(
            relative_path(
                &here,
                &p(&[("", Some(5)), ("a", Some(40)), ("b", Some(41)), ("x", None)])
            ),
            "x"
        );
        assert_eq!(
            relative_path(&p(&[("", Some(5))]), &p(&[("", Some(5)), ("y", None)])),
            "y"
        );
    }
}
