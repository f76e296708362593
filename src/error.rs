//! The crate's error type. Each failed check has its own variant and carries the file it
//! concerns, so that one line tells the user which file, which structure and which
//! offset is wrong. [`Error::errno`] maps every variant to the errno FUSE returns.

use std::path::PathBuf;

use crate::format::vhdx::VhdxError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {source}", path.display())]
    Vhdx {
        path: PathBuf,
        #[source]
        source: VhdxError,
    },

    #[error(
        "{}: parent not found: its locator names {named} with DataWriteGuid {linkage}; looked for {} (add --search-dir DIR if the parent is elsewhere)",
        child.display(), list_paths(tried)
    )]
    MissingParent {
        child: PathBuf,
        /// The locator's first path and its key, e.g. `.\base.vhdx (relative_path)`.
        named: String,
        linkage: String,
        tried: Vec<PathBuf>,
    },

    #[error(
        "{}: parent {} does not match: the child expects DataWriteGuid {expected} but the parent has {found}",
        child.display(), parent.display()
    )]
    ParentMismatch {
        child: PathBuf,
        parent: PathBuf,
        expected: String,
        found: String,
    },

    #[error("{}: the chain of parents is deeper than {limit} files", child.display())]
    ChainTooDeep { child: PathBuf, limit: usize },

    #[error("{}: the chain of parents loops back to {}", child.display(), repeated.display())]
    ChainCycle { child: PathBuf, repeated: PathBuf },

    #[error("read of {len} bytes at offset {offset:#x} is past the end of the disk ({size:#x} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },

    #[error("{0}: no such file or directory")]
    NotFound(String),

    #[error("{0}: not a directory")]
    NotADirectory(String),

    #[error("{0}: is a directory")]
    IsADirectory(String),

    #[error("{0}: not a symbolic link")]
    NotASymlink(String),

    /// A value too large to hand out whole, such as an alternate data stream asked for
    /// as an extended attribute (the kernel takes at most 64 KiB).
    #[error("{0}")]
    TooLarge(String),

    #[error("{0}")]
    Usage(String),

    /// An error met while working on `path` of the virtual tree.
    #[error("{path}: {source}")]
    InPath {
        path: String,
        #[source]
        source: Box<Error>,
    },

    #[error("partition table: {0}")]
    PartitionTable(String),

    /// A guest filesystem is damaged or uses something this reader refuses.
    #[error("{fs}: {what}")]
    Filesystem { fs: &'static str, what: String },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no candidate path)".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    pub(crate) fn vhdx(path: impl Into<PathBuf>, source: VhdxError) -> Self {
        Error::Vhdx {
            path: path.into(),
            source,
        }
    }

    /// The errno a filesystem call fails with when it meets this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::NotFound(_) => libc::ENOENT,
            Error::NotADirectory(_) => libc::ENOTDIR,
            Error::IsADirectory(_) => libc::EISDIR,
            Error::NotASymlink(_) => libc::EINVAL,
            Error::TooLarge(_) => libc::E2BIG,
            Error::OutOfRange { .. } => libc::EINVAL,
            Error::Usage(_) => libc::EINVAL,
            Error::InPath { source, .. } => source.errno(),
            _ => libc::EIO,
        }
    }
}
