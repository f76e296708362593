//! Finding a differencing file's parent from its parent locator, and checking that it
//! is the right one (its DataWriteGuid equals `parent_linkage` or `parent_linkage2`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::bytes::braced;
use crate::format::vhdx::VhdxFile;
use crate::{Error, Result};

/// Opens each image file once, however many times discovery asks for it.
#[derive(Default)]
pub struct FileCache {
    files: HashMap<PathBuf, Arc<VhdxFile>>,
}

impl FileCache {
    /// Open `path` (canonical) or return the copy already open.
    pub fn open(&mut self, path: &Path) -> Result<Arc<VhdxFile>> {
        if let Some(f) = self.files.get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(VhdxFile::open(path)?);
        self.files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }
}

/// Canonical absolute path of an existing file.
pub fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        what: "cannot resolve path".into(),
        source,
    })
}

/// The paths where `child`'s parent may be, most trusted first: the locator's
/// relative_path, volume_path and absolute_win32_path as the specification orders them,
/// then each of their file names beside the child and in `search_dirs` (a Windows path
/// means nothing on this machine, but the file usually travels with its child).
pub fn candidate_paths(child: &VhdxFile, child_dir: &Path, search_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let Some(locator) = child.parent_locator() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (key, value) in locator.paths() {
        let value = value.trim_end_matches('\0');
        match key {
            "relative_path" if !is_windows_absolute(value) => out.push(join_windows_relative(child_dir, value)),
            // A locator written on Linux may hold a plain absolute path.
            _ if value.starts_with('/') => out.push(PathBuf::from(value)),
            _ => {}
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
fn existing_case_insensitive(path: &Path) -> Option<PathBuf> {
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

/// Find and open `child`'s parent. Errors name the child, the linkage and every path
/// tried; a file found at a locator path with another DataWriteGuid is a mismatch.
pub fn locate_parent(
    child: &VhdxFile,
    child_path: &Path,
    search_dirs: &[PathBuf],
    files: &mut FileCache,
) -> Result<(PathBuf, Arc<VhdxFile>)> {
    let locator = child
        .parent_locator()
        .expect("locate_parent is only called for differencing files");
    let linkages = locator.linkages().unwrap_or_default();
    let child_dir = child_path.parent().unwrap_or(Path::new("/"));
    let candidates = candidate_paths(child, child_dir, search_dirs);
    let mut mismatch: Option<(PathBuf, String)> = None;
    for candidate in &candidates {
        let Some(found) = existing_case_insensitive(candidate) else {
            continue;
        };
        let path = canonical(&found)?;
        if path == child_path {
            continue;
        }
        let parent = match files.open(&path) {
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
        if linkages.contains(&parent.header.data_write_guid) {
            return Ok((path, parent));
        }
        if mismatch.is_none() {
            mismatch = Some((path, braced(&parent.header.data_write_guid)));
        }
    }
    let expected = linkages.iter().map(braced).collect::<Vec<_>>().join(" or ");
    Err(match mismatch {
        Some((parent, found)) => Error::ParentMismatch {
            child: child_path.to_path_buf(),
            parent,
            expected,
            found,
        },
        None => Error::MissingParent {
            child: child_path.to_path_buf(),
            named: locator
                .paths()
                .first()
                .map_or("no path".to_string(), |(key, value)| format!("{value} ({key})")),
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
