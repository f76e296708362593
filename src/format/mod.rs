//! Format readers. Each format answers two questions, and nothing in `chain/`, `vfs/` or
//! the mount knows which format answered:
//!
//! - as a **file** ([`DiskFile`]): who am I (an [`Identity`]), who is my parent (a
//!   [`ParentRef`]: path hints plus the identity the parent must have), which states do
//!   I hold, and a [`Layer`] for each;
//! - as a **layer** ([`Layer`]): for a range of one state's virtual disk, "the bytes are
//!   at this file offset", "they are zeros" or "ask the parent". Layers do not follow
//!   parents themselves: the checkpoint disk in [`crate::chain`] does, so that depth
//!   handling and caching live in one place.
//!
//! Files are opened by content ([`open`]), never by their extension.

pub mod bitmap;
pub mod probe;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::io::Piece;
use crate::Result;

pub use probe::open;

/// Where the bytes of a guest range come from, as one layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Stored in this layer's file, starting at this offset.
    Data { file_offset: u64 },
    /// Defined as zeros by this layer.
    Zero,
    /// Not in this layer: the parent's bytes show through (zeros if there is no parent).
    Parent,
}

/// A run of `len` guest bytes with one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub len: u64,
    pub source: Source,
}

/// One checkpoint state as a single file stores it, without its ancestors.
///
/// Contract: `map` covers exactly the requested range with runs, in order, or returns an
/// error naming the file and the damaged structure; it never panics. Implementations are
/// shared between threads.
pub trait Layer: Send + Sync + Debug {
    /// The file holding this state.
    fn path(&self) -> &Path;

    fn virtual_size(&self) -> u64;

    fn logical_sector_size(&self) -> u32;

    /// Describe `offset..offset + len` (within the virtual size, both multiples of the
    /// logical sector size) by appending runs to `out`.
    fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()>;

    /// Read bytes that [`Layer::map`] placed at `file_offset`.
    fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Where bytes that [`Layer::map`] placed at `file_offset..file_offset + len` lie in
    /// the image file, if they are stored there plainly (see [`crate::io::ReadAt::pieces`]);
    /// `false` (the default) makes the caller read them with [`Layer::read_data`].
    fn data_pieces<'a>(&'a self, _file_offset: u64, _len: u64, _out: &mut Vec<Piece<'a>>) -> bool {
        false
    }

    /// A hint that bytes [`Layer::map`] placed at `file_offset..file_offset + len` will
    /// be read soon: start reading them from disk. Never fails; the default does nothing.
    fn prefetch(&self, _file_offset: u64, _len: u64) {}
}

/// The value a format uses to check that a parent is the one its child was made from:
/// which field (for messages: "DataWriteGuid", "UUID") and its value as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub field: &'static str,
    pub value: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.value)
    }
}

/// One place a child says its parent is, as the format recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHint {
    /// What the format calls this entry, for messages ("relative_path", "W2ru").
    pub label: String,
    /// The path as stored: a Windows path, relative or absolute, or a Unix one.
    pub path: String,
}

/// What a differencing file records about its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    /// Where the parent may be, most trusted first. Relative hints are relative to the
    /// child's directory; the chain also tries each hint's file name beside the child.
    pub hints: Vec<PathHint>,
    /// The identities the parent may have (any one matches). Empty for a format that
    /// records none: then the path alone decides.
    pub identities: Vec<Identity>,
}

impl ParentRef {
    /// Whether `candidate` has one of the identities this child accepts.
    pub fn accepts(&self, candidate: &Identity) -> bool {
        self.identities.is_empty() || self.identities.contains(candidate)
    }
}

/// One state a file holds: a disk file holds one, a qcow2 file with internal snapshots
/// several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateInfo {
    /// The format's id of the state inside its file (a qcow2 snapshot id); `None` for
    /// the file's live state.
    pub snapshot: Option<String>,
    /// The name the format gives the state, if any.
    pub name: Option<String>,
    /// When the format says the state was made, if it says.
    pub created: Option<SystemTime>,
    /// The state of the same file this one was made from; `None`: the file's parent
    /// (or no parent).
    pub parent_in_file: Option<usize>,
}

/// What `info` prints about one file: the format's own facts.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// For `info --json`.
    pub json: serde_json::Value,
    /// For `info`: lines of text, ready to print.
    pub text: String,
}

/// One disk file of any format, opened read-only.
pub trait DiskFile: Send + Sync + Debug {
    /// The path it was opened from.
    fn path(&self) -> &Path;

    /// The format's short name, lower case: "vhdx", "vhd", "vmdk".
    fn format(&self) -> &'static str;

    /// What a child of this file records to name it.
    fn identity(&self) -> Identity;

    /// What this file records about its parent; `None` for a file without one.
    fn parent(&self) -> Option<ParentRef>;

    /// The states it holds; never empty. Children build on [`DiskFile::active_state`].
    fn states(&self) -> Vec<StateInfo> {
        vec![StateInfo::default()]
    }

    /// The state that children of this file were made from: the live one.
    fn active_state(&self) -> usize {
        0
    }

    /// The layer of state `state` (an index into [`DiskFile::states`]).
    fn layer(self: Arc<Self>, state: usize) -> Arc<dyn Layer>;

    /// The file's modification time.
    fn modified(&self) -> SystemTime {
        std::fs::metadata(self.path())
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Warnings about a parent that passed the identity check but disagrees with what
    /// this child recorded about it (a VHD's parent time stamp); none by default.
    fn parent_warnings(&self, _parent: &dyn DiskFile) -> Vec<String> {
        Vec::new()
    }

    /// The format's own facts, for `info`.
    fn info(&self) -> Result<FileInfo>;
}
