//! Checkpoint chains: the virtual disk of one state ([`LayeredDisk`]), finding parents
//! ([`parent`]), the whole tree ([`CheckpointTree`]) and its names ([`naming`]).

pub mod layered_disk;
pub mod naming;
pub mod parent;
pub mod tree;

pub use layered_disk::LayeredDisk;
pub use tree::{Checkpoint, CheckpointTree, DiscoverOptions};
