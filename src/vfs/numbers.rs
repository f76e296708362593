//! Node numbers (FUSE inode numbers) computed from the node itself, not kept in a table:
//! no lock to take and no memory that grows with the files seen, and the same number
//! for a node for the whole life of the tree, however often the kernel forgets it.
//!
//! ```text
//! 63      62..40                 39..0
//! 0       0                      1                           the root
//! 0       0                      (index + 1) << 2 | kind     checkpoint 1, disk 2, disk.img 3
//! 0       1 + (slot << 8 | vol)  0                           a volume's root directory
//! 0       1 + (slot << 8 | vol)  1 + guest node id           a guest node
//! 1       a counter                                          anything that does not fit
//! ```
//!
//! Guest node ids are the filesystem's own numbers (ext4 inodes are 32 bits, NTFS file
//! records and FAT entry positions stay far below 2^40 on any real volume), so hard
//! links share a number. What does not fit (a 257th volume on one disk, a disk slot
//! past 32,767, an id of 2^40 or more) is numbered from a table instead, which such
//! trees alone ever use.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Ino, Node, ROOT};

const LOW_BITS: u32 = 40;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;
const VOLUME_BITS: u32 = 8;
/// Volume numbers `fs` run from 1 to below this (23 bits, under the table's bit).
const FS_LIMIT: u64 = 1 << (63 - LOW_BITS);
const TABLE: u64 = 1 << 63;

const CHECKPOINT: u64 = 1;
const DISK: u64 = 2;
const DISK_IMAGE: u64 = 3;

/// The number of a volume of a slot, if it fits.
fn fs_number(slot: usize, vi: usize) -> Option<u64> {
    if vi >= 1 << VOLUME_BITS {
        return None;
    }
    let n = ((slot as u64) << VOLUME_BITS | vi as u64).checked_add(1)?;
    (n < FS_LIMIT).then_some(n)
}

fn top(index: usize, kind: u64) -> Option<Ino> {
    let i = (index as u64).checked_add(1)?;
    (i < 1 << (LOW_BITS - 2)).then_some(i << 2 | kind)
}

/// The computed number of `node`, if it has one.
pub(super) fn encode(node: Node) -> Option<Ino> {
    match node {
        Node::Root => Some(ROOT),
        Node::Checkpoint(ci) => top(ci, CHECKPOINT),
        Node::Disk(slot) => top(slot, DISK),
        Node::DiskImage(slot) => top(slot, DISK_IMAGE),
        Node::Volume(slot, vi) => Some(fs_number(slot, vi)? << LOW_BITS),
        Node::Guest(slot, vi, id) => {
            let low = id.checked_add(1).filter(|&l| l <= LOW_MASK)?;
            Some(fs_number(slot, vi)? << LOW_BITS | low)
        }
    }
}

/// The node a computed number stands for (its shape only: whether that checkpoint,
/// slot or guest node exists is for the caller to check); `None` for a table number
/// or one never handed out.
pub(super) fn decode(ino: Ino) -> Option<Node> {
    if ino & TABLE != 0 {
        return None;
    }
    let fs = ino >> LOW_BITS;
    let low = ino & LOW_MASK;
    if fs == 0 {
        if ino == ROOT {
            return Some(Node::Root);
        }
        let index = usize::try_from((low >> 2).checked_sub(1)?).ok()?;
        return match low & 3 {
            CHECKPOINT => Some(Node::Checkpoint(index)),
            DISK => Some(Node::Disk(index)),
            DISK_IMAGE => Some(Node::DiskImage(index)),
            _ => None,
        };
    }
    let n = fs - 1;
    let slot = usize::try_from(n >> VOLUME_BITS).ok()?;
    let vi = (n & ((1 << VOLUME_BITS) - 1)) as usize;
    Some(match low {
        0 => Node::Volume(slot, vi),
        _ => Node::Guest(slot, vi, low - 1),
    })
}

/// Numbers for the nodes [`encode`] cannot number. Only trees with hundreds of
/// partitions on a disk or tens of thousands of disk slots ever get here, so one
/// read-mostly lock is enough.
#[derive(Default)]
pub(super) struct Table {
    inner: RwLock<(HashMap<Node, Ino>, Vec<Node>)>,
}

impl Table {
    pub fn number(&self, node: Node) -> Ino {
        if let Some(&ino) = self.inner.read().unwrap_or_else(|p| p.into_inner()).0.get(&node) {
            return ino;
        }
        let mut t = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&ino) = t.0.get(&node) {
            return ino;
        }
        t.1.push(node);
        let ino = TABLE | t.1.len() as u64;
        t.0.insert(node, ino);
        ino
    }

    pub fn node(&self, ino: Ino) -> Option<Node> {
        let i = (ino & !TABLE).checked_sub(1)?;
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .get(usize::try_from(i).ok()?)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_never_collide() {
        let nodes = [
            Node::Root,
            Node::Checkpoint(0),
            Node::Checkpoint(41),
            Node::Disk(0),
            Node::Disk(7),
            Node::DiskImage(0),
            Node::DiskImage(7),
            Node::Volume(0, 0),
            Node::Volume(0, 1),
            Node::Volume(1, 0),
            Node::Volume(32766, 255),
            Node::Guest(0, 0, 0),
            Node::Guest(0, 0, 2),
            Node::Guest(0, 1, 2),
            Node::Guest(1, 0, 2),
            Node::Guest(3, 4, u32::MAX as u64),
            Node::Guest(3, 4, LOW_MASK - 1),
        ];
        let mut seen = std::collections::HashSet::new();
        for n in nodes {
            let ino = encode(n).unwrap_or_else(|| panic!("{n:?} has no number"));
            assert!(ino != 0 && ino & TABLE == 0, "{n:?}: {ino:#x}");
            assert_eq!(decode(ino), Some(n), "{ino:#x}");
            assert!(seen.insert(ino), "{n:?} shares {ino:#x}");
        }
    }

    #[test]
    fn what_does_not_fit_goes_to_the_table() {
        for n in [
            Node::Volume(0, 256),
            Node::Volume(1 << 15, 0),
            Node::Guest(0, 0, LOW_MASK),
            Node::Guest(0, 0, u64::MAX),
        ] {
            assert_eq!(encode(n), None, "{n:?}");
        }
        let t = Table::default();
        let a = t.number(Node::Volume(0, 256));
        let b = t.number(Node::Guest(0, 0, u64::MAX));
        assert_ne!(a, b);
        assert_eq!(t.number(Node::Volume(0, 256)), a);
        assert_eq!(t.node(a), Some(Node::Volume(0, 256)));
        assert_eq!(t.node(b), Some(Node::Guest(0, 0, u64::MAX)));
        assert_eq!(decode(a), None);
        assert_eq!(t.node(TABLE | 99), None);
    }

    #[test]
    fn numbers_never_handed_out_decode_to_nothing() {
        assert_eq!(decode(0), None);
        assert_eq!(decode(4), None, "kind 0 of index 0");
        assert_eq!(decode(2), None, "index 0 is the root's place");
    }
}
