//! The crate's error type. Each failed check has its own variant and carries the file it
//! concerns, so that one line tells the user which file, which structure and which
//! offset is wrong. [`Error::errno`] maps every variant to the errno FUSE returns.

use std::path::PathBuf;

use crate::format::vhd::VhdError;
use crate::format::vhdx::VhdxError;
use crate::format::vmdk::VmdkError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {what}: {}", path.display(), os_message(source))]
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

    #[error("{}: {source}", path.display())]
    Vhd {
        path: PathBuf,
        #[source]
        source: VhdError,
    },

    #[error("{}: {source}", path.display())]
    Vmdk {
        path: PathBuf,
        #[source]
        source: VmdkError,
    },

    /// A VM configuration file (`.vmx`, `.vmsd`, ...) that cannot be used.
    #[error("{}: {source}", path.display())]
    VmConfig {
        path: PathBuf,
        #[source]
        source: crate::vm::ConfigError,
    },

    /// No format recognised the file; one reason per format tried.
    #[error("{}: not a disk image ckptfs reads: {}", path.display(), reasons.join("; "))]
    UnknownFormat { path: PathBuf, reasons: Vec<String> },

    #[error(
        "{}: parent not found: it names {named} with {linkage}; looked for {} (add --search-dir DIR if the parent is elsewhere)",
        child.display(), list_paths(tried)
    )]
    MissingParent {
        child: PathBuf,
        /// The first path hint and its label, e.g. `.\base.vhdx (relative_path)`.
        named: String,
        /// The identities the parent may have, e.g. `DataWriteGuid {…}`.
        linkage: String,
        tried: Vec<PathBuf>,
    },

    #[error(
        "{}: parent {} does not match: the child expects {expected} but the parent has {found} (--ignore-parent-mismatch reads it anyway)",
        child.display(), parent.display()
    )]
    ParentMismatch {
        child: PathBuf,
        parent: PathBuf,
        expected: String,
        found: String,
    },

    /// A child and its parent disagree on something the read depends on.
    #[error("{}: {what} differs from its parent {}: {child_value} here, {parent_value} there", child.display(), parent.display())]
    ParentIncompatible {
        child: PathBuf,
        parent: PathBuf,
        what: &'static str,
        child_value: String,
        parent_value: String,
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

    /// A command that went on past failures, each already reported on its own line
    /// (`cp`): it ends with exit status 1 and nothing more to say.
    #[error("{0} items failed")]
    Reported(u64),

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

/// A system error's message without the " (os error N)" Rust adds: the user reads
/// `No such file or directory`, as from other tools.
pub(crate) fn os_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_string),
        None => text,
    }
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

    pub(crate) fn vhd(path: impl Into<PathBuf>, source: VhdError) -> Self {
        Error::Vhd {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn vmdk(path: impl Into<PathBuf>, source: VmdkError) -> Self {
        Error::Vmdk {
            path: path.into(),
            source,
        }
    }

    /// A file the user named (an image, a configuration, a parent) that cannot be
    /// opened or read: the same words whichever command met it, e.g.
    /// `/vms/vm.vhdx: cannot open: No such file or directory`.
    pub(crate) fn input(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let opening = matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        ) || matches!(
            source.raw_os_error(),
            Some(libc::EISDIR | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
        );
        Error::Io {
            path: path.into(),
            what: if opening { "cannot open" } else { "cannot read" }.into(),
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
