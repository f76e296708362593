//! ckptfs: every state of a Hyper-V checkpoint tree as a read-only directory tree.
//!
//! The data path, one module per stage, each a positional, thread-safe read:
//! `io` (image files) → `format` (what one disk file says about a guest range) →
//! `chain` (a checkpoint state's whole virtual disk, and the tree of checkpoints) →
//! `volume` (partition tables, what each partition holds) → `fs` (NTFS, FAT, ext2/3/4)
//! → `vfs` (the tree of checkpoints, volumes and guest files) → `cli` and `mount`.

pub mod bytes;
pub mod cache;
pub mod chain;
pub mod cli;
pub mod error;
pub mod format;
pub mod fs;
pub mod io;
pub mod mount;
pub mod vfs;
pub mod vm;
pub mod volume;

pub use error::{Error, Result};
