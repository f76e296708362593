// Copyright 2024 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::file_type::FileType;
use crate::inode::InodeMode;
use crate::timestamp::Timestamp;

/// Metadata information about a file.
#[derive(Clone, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
pub struct Metadata {
    /// Size in bytes of the file data.
    pub(crate) size_in_bytes: u64,

    /// Raw permissions and file type.
    pub(crate) mode: InodeMode,

    /// File type parsed from the `mode` bitfield.
    pub(crate) file_type: FileType,

    /// Owner user ID.
    pub(crate) uid: u32,

    /// Owner group ID.
    pub(crate) gid: u32,

    /// Last access time.
    pub(crate) atime: Timestamp,

    /// Last inode change time.
    pub(crate) ctime: Timestamp,

    /// Last data modification time.
    pub(crate) mtime: Timestamp,

    /// Creation time.
    /// Only present if inode is large enough.
    pub(crate) crtime: Option<Timestamp>,

    // ckptfs patch: the fields below are read from the inode but not
    // exposed by ext4-view 1.0.0 (upstream PRs #575 and #578 asked for
    // the same).
    /// Inode number.
    pub(crate) inode: u32,

    /// Hard link count (`i_links_count`).
    pub(crate) links_count: u16,

    /// Allocated space in 512-byte units (`i_blocks`).
    pub(crate) blocks_512: u64,

    /// The inode's contents are encrypted (`EXT4_ENCRYPT_FL`).
    pub(crate) encrypted: bool,
}

impl Metadata {
    /// Get the file type.
    #[must_use]
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// Return true if this metadata is for a directory.
    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.file_type.is_dir()
    }

    /// Return true if this metadata is for a symlink.
    #[must_use]
    pub fn is_symlink(&self) -> bool {
        self.file_type.is_symlink()
    }

    /// Get the size in bytes of the file.
    #[allow(clippy::len_without_is_empty)]
    #[must_use]
    pub fn len(&self) -> u64 {
        self.size_in_bytes
    }

    /// Get the file's UNIX permission bits.
    ///
    /// Diagram of the returned value's bits:
    ///
    /// ```text
    ///       top four bits are always zero
    ///       │   
    ///       │   set uid, set gid, sticky bit
    ///       │   │  
    ///       │   │  owner read/write/execute
    ///       │   │  │  
    ///       │   │  │  group read/write/execute
    ///       │   │  │  │  
    ///       │   │  │  │  other read/write/execute
    ///       │   │  │  │  │
    /// (msb) 0000xxxuuugggooo (lsb)
    /// ```
    ///
    /// See `st_mode` in [inode(7)][inode] for more details.
    ///
    /// [inode]: https://www.man7.org/linux/man-pages/man7/inode.7.html
    #[must_use]
    pub fn mode(&self) -> u16 {
        self.mode.bits() & 0o7777
    }

    /// Owner user ID.
    #[must_use]
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Owner group ID.
    #[must_use]
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Last access time.
    #[must_use]
    pub fn accessed(&self) -> Timestamp {
        self.atime
    }

    /// Last data modification time.
    #[must_use]
    pub fn modified(&self) -> Timestamp {
        self.mtime
    }

    /// Creation time.
    #[must_use]
    pub fn created(&self) -> Option<Timestamp> {
        self.crtime
    }

    /// Last inode change time (ckptfs patch).
    #[must_use]
    pub fn changed(&self) -> Timestamp {
        self.ctime
    }

    /// Inode number (ckptfs patch).
    #[must_use]
    pub fn inode(&self) -> u32 {
        self.inode
    }

    /// Hard link count as stored; a directory with more than 65000
    /// subdirectories stores 1 ("unknown") under `dir_nlink` (ckptfs
    /// patch).
    #[must_use]
    pub fn links_count(&self) -> u16 {
        self.links_count
    }

    /// Allocated space in 512-byte units, like `st_blocks` (ckptfs
    /// patch).
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.blocks_512
    }

    /// Whether the contents are encrypted (fscrypt), so the bytes on disk
    /// are ciphertext (ckptfs patch).
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }
}
