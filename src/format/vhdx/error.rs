//! What can be wrong with one VHDX file. The path is added by the caller
//! ([`crate::Error::Vhdx`]), so messages here name the structure and the offset.

#[derive(Debug, thiserror::Error)]
pub enum VhdxError {
    #[error("not a VHDX file: the file type identifier at offset 0 is {found:?}, not \"vhdxfile\"")]
    NotVhdx { found: String },

    /// A structure failed a check: wrong signature, checksum, field out of range.
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

    /// Valid VHDX that uses something this reader refuses by the specification's rules
    /// (an unknown region or metadata item marked required, another format version).
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

impl VhdxError {
    pub(crate) fn corrupt(structure: &'static str, offset: u64, reason: impl Into<String>) -> Self {
        VhdxError::Corrupt {
            structure,
            offset,
            reason: reason.into(),
        }
    }
}
