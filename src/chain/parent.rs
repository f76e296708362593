//! Finding a differencing file's parent from the path hints its format records, and
//! checking that it is the right one (its identity is one the child accepts: a VHDX
//! DataWriteGuid, a VHD UUID, ...). The same for every format.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::format::{DiskFile, ParentRef};
use crate::{Error, Result};

/// Opens each image file once, however many times discovery asks for it.
#[derive(Default)]
pub struct FileCache {
    files: HashMap<PathBuf, Arc<dyn DiskFile>>,
}

impl FileCache {
    /// Open `path` (canonical), by its content, or return the copy already open.
    pub fn open(&mut self, path: &Path) -> Result<Arc<dyn DiskFile>> {
        if let Some(f) = self.files.get(path) {
            return Ok(f.clone());
        }
        let f = crate::format::open(path)?;
        self.files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }
}

/// Canonical absolute path of an existing file.
pub fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|source| Error::input(path, source))
}

/// The paths where a child's parent may be, most trusted first: each hint in the
/// order its format gives (a relative one joined to the child's directory, a Unix
/// absolute one as it is), then each hint's file name beside the child and in
/// `search_dirs` (a Windows absolute path means nothing on this machine, but the file
/// usually travels with its child).
pub fn candidate_paths(parent: &ParentRef, child_dir: &Path, search_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for hint in &parent.hints {
        let value = hint.path.trim_end_matches('\0');
        if value.starts_with('/') {
            // A hint written on Linux may hold a plain absolute path.
            out.push(PathBuf::from(value));
        } else if !value.is_empty() && !is_windows_absolute(value) {
            out.push(join_windows_relative(child_dir, value));
        }
        if let Some(name) = value
            .rsplit(['\\', '/'])
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        {
            names.push(name.to_string());
        }
    }
    for name in &names {
        out.push(child_dir.join(name));
        for dir in search_dirs {
            out.push(dir.join(name));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

fn is_windows_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('\\') || p.starts_with('/') || (b.len() >= 2 && b[1] == b':')
}

/// `..\..\dir\parent.vhdx` relative to `dir`, with `.` and `..` folded textually.
fn join_windows_relative(dir: &Path, rel: &str) -> PathBuf {
    let mut out = dir.to_path_buf();
    for part in rel.split(['\\', '/']) {
        match part {
            "" | "." => {}
            ".." => {
                if !matches!(out.components().next_back(), Some(Component::RootDir) | None) {
                    out.pop();
                }
            }
            p => out.push(p),
        }
    }
    out
}

/// If `path` does not exist, a file in the same directory whose name differs only in
/// letter case (Windows names are case-insensitive).
pub(crate) fn existing_case_insensitive(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let name = path.file_name()?.to_str()?.to_lowercase();
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_str().is_some_and(|n| n.to_lowercase() == name) && e.path().is_file())
        .map(|e| e.path())
}

/// Find and open the parent that `child_path` names in `parent`. Errors name the child,
/// the identities it accepts and every path tried; a file found at a hinted path with
/// another identity is a mismatch, unless `accept_mismatch`: then the first such file
/// is the parent, with a warning (the user says the parent's change is known).
pub fn locate_parent(
    parent: &ParentRef,
    child_path: &Path,
    search_dirs: &[PathBuf],
    files: &mut FileCache,
    accept_mismatch: bool,
) -> Result<(PathBuf, Arc<dyn DiskFile>)> {
    let child_dir = child_path.parent().unwrap_or(Path::new("/"));
    let candidates = candidate_paths(parent, child_dir, search_dirs);
    let mut mismatch: Option<(PathBuf, String)> = None;
    let mut usable_mismatch: Option<(PathBuf, Arc<dyn DiskFile>)> = None;
    for candidate in &candidates {
        let Some(found) = existing_case_insensitive(candidate) else {
            continue;
        };
        let path = canonical(&found)?;
        if path == child_path {
            continue;
        }
        let found_file = match files.open(&path) {
            Ok(p) => p,
            Err(e) => {
                log::warn!(
                    "{}: candidate parent {} cannot be opened: {e}",
                    child_path.display(),
                    path.display()
                );
                if mismatch.is_none() {
                    mismatch = Some((path, format!("(unreadable: {e})")));
                }
                continue;
            }
        };
        let identity = found_file.identity();
        if parent.accepts(&identity) {
            return Ok((path, found_file));
        }
        if mismatch.is_none() {
            mismatch = Some((path.clone(), identity.to_string()));
        }
        if usable_mismatch.is_none() {
            usable_mismatch = Some((path, found_file));
        }
    }
    let expected = if parent.identities.is_empty() {
        "no identity check".to_string()
    } else {
        parent
            .identities
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    };
    if let (true, Some((path, file))) = (accept_mismatch, usable_mismatch) {
        log::warn!(
            "{}: parent {} does not match: the child expects {expected} but the parent has {}; read anyway (--ignore-parent-mismatch): the parent may have changed since the child was made",
            child_path.display(),
            path.display(),
            file.identity()
        );
        return Ok((path, file));
    }
    Err(match mismatch {
        Some((parent, found)) => Error::ParentMismatch {
            child: child_path.to_path_buf(),
            parent,
            expected,
            found,
        },
        None => Error::MissingParent {
            child: child_path.to_path_buf(),
            named: parent
                .hints
                .first()
                .map_or("no path".to_string(), |h| format!("{} ({})", h.path, h.label)),
            linkage: expected,
            tried: candidates,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_relative_paths_fold_dots_and_backslashes() {
        let d = Path::new("/vms/a/b");
        assert_eq!(join_windows_relative(d, r".\p.vhdx"), Path::new("/vms/a/b/p.vhdx"));
        assert_eq!(join_windows_relative(d, r"..\..\x\p.vhdx"), Path::new("/vms/x/p.vhdx"));
        assert_eq!(
            join_windows_relative(Path::new("/"), r"..\p.vhdx"),
            Path::new("/p.vhdx")
        );
    }

    #[test]
    fn absolute_windows_paths_are_recognised() {
        assert!(is_windows_absolute(r"\\?\C:\x.vhdx"));
        assert!(is_windows_absolute(r"C:\x.vhdx"));
        assert!(!is_windows_absolute(r".\x.vhdx"));
        assert!(!is_windows_absolute(r"x.vhdx"));
    }

    #[test]
    fn case_insensitive_lookup_finds_differently_cased_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Base.VHDX"), b"x").unwrap();
        assert_eq!(
            existing_case_insensitive(&dir.path().join("base.vhdx")),
            Some(dir.path().join("Base.VHDX"))
        );
        assert_eq!(existing_case_insensitive(&dir.path().join("other.vhdx")), None);
    }
}
