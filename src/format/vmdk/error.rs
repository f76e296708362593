//! What can be wrong with a VMDK disk. The path of the file concerned is added by the
//! caller ([`crate::Error::Vmdk`]): the descriptor for descriptor and extent-list
//! errors, the extent file for errors inside an extent. Messages here name the
//! structure, the line or the offset.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    /// A descriptor line that cannot be used.
    #[error("descriptor line {line}: {reason}")]
    DescriptorLine { line: usize, reason: String },

    /// The descriptor as a whole is unusable (a required key missing, no extents).
    #[error("descriptor: {0}")]
    Descriptor(String),

    /// An extent file the descriptor names does not exist or cannot be opened.
    #[error("descriptor line {line}: extent file \"{name}\" is missing: looked for {}", path.display())]
    MissingExtent { line: usize, name: String, path: PathBuf },

    /// A structure failed a check: wrong magic, field out of range, pointer outside the
    /// file.
    #[error("{structure} at offset {offset:#x}: {reason}")]
    Corrupt {
        structure: &'static str,
        offset: u64,
        reason: String,
    },

    /// The file is shorter than a structure it declares.
    #[error(
        "file is truncated: {structure} at offset {offset:#x} ({len:#x} bytes) ends past the end of the file ({file_len:#x} bytes)"
    )]
    Truncated {
        structure: &'static str,
        offset: u64,
        len: u64,
        file_len: u64,
    },

    /// An extent file opened on its own: it has no descriptor, so neither an identity
    /// nor a parent, and its bytes are only part of a disk.
    #[error("a VMDK {kind} extent without a descriptor: it is part of another disk; open the descriptor (.vmdk) that names it")]
    ExtentOnly { kind: &'static str },

    /// A compressed grain that does not inflate to its grain.
    #[error("compressed grain at offset {offset:#x} (guest sector {lba}): {reason}")]
    BadGrain { offset: u64, lba: u64, reason: String },

    /// A SESparse extent whose journal holds changes not yet applied.
    #[error("SESparse journal at offset {offset:#x} needs replay ({reason}): ESXi did not close the disk cleanly; ckptfs refuses it rather than show stale data")]
    JournalNeedsReplay { offset: u64, reason: String },

    /// A range of the disk the descriptor marks NOACCESS.
    #[error("descriptor line {line}: the extent is NOACCESS: its data is withheld")]
    NoAccess { line: usize },

    /// Valid VMDK that uses something this reader does not read.
    #[error("unsupported: {0}")]
    Unsupported(String),

    #[error(
        "read of {len:#x} bytes at offset {offset:#x} failed: {}",
        crate::error::os_message(source)
    )]
    Io {
        offset: u64,
        len: u64,
        #[source]
        source: std::io::Error,
    },
}

impl VmdkError {
    pub(crate) fn corrupt(structure: &'static str, offset: u64, reason: impl Into<String>) -> Self {
        VmdkError::Corrupt {
            structure,
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn line(line: usize, reason: impl Into<String>) -> Self {
        VmdkError::DescriptorLine {
            line,
            reason: reason.into(),
        }
    }
}

impl From<crate::bytes::Truncated> for VmdkError {
    fn from(t: crate::bytes::Truncated) -> Self {
        VmdkError::Truncated {
            structure: t.structure,
            offset: t.offset,
            len: t.len,
            file_len: t.file_len,
        }
    }
}
