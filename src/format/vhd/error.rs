//! What can be wrong with one VHD file. The path is added by the caller
//! ([`crate::Error::Vhd`]), so messages here name the structure and the offset.

#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    /// A structure failed a check: wrong cookie, checksum, field out of range.
    #[error("{structure} at offset {offset:#x}: {reason}")]
    Corrupt {
        structure: &'static str,
        offset: u64,
        reason: String,
    },

    /// A structure does not start with its cookie.
    #[error("{structure} at offset {offset:#x}: cookie is \"{found}\", not \"{expected}\"")]
    Cookie {
        structure: &'static str,
        offset: u64,
        expected: &'static str,
        found: String,
    },

    /// A structure's checksum does not match its bytes.
    #[error("{structure} at offset {offset:#x}: checksum is {stored:#010x}, the bytes sum to {computed:#010x}")]
    Checksum {
        structure: &'static str,
        offset: u64,
        stored: u32,
        computed: u32,
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

    /// Valid VHD that uses something this reader refuses.
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

impl VhdError {
    pub(crate) fn corrupt(structure: &'static str, offset: u64, reason: impl Into<String>) -> Self {
        VhdError::Corrupt {
            structure,
            offset,
            reason: reason.into(),
        }
    }
}

impl From<crate::bytes::Truncated> for VhdError {
    fn from(t: crate::bytes::Truncated) -> Self {
        VhdError::Truncated {
            structure: t.structure,
            offset: t.offset,
            len: t.len,
            file_len: t.file_len,
        }
    }
}
