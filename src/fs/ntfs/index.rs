//! Directory listings: an in-order walk of the `$I30` B-tree (`$INDEX_ROOT`, then index
//! blocks of `$INDEX_ALLOCATION`), so entries come in the filesystem's collation order.
//!
//! Not the `ntfs` crate's `NtfsIndexEntries`: it converts an index block's VCN to bytes
//! with the cluster size, but when index blocks are smaller than a cluster (4 KiB blocks
//! on a 64 KiB-cluster volume, common for data disks) VCNs count 512-byte units, and the
//! crate fails such directories. It also follows subnode pointers without a guard, so a
//! damaged index that points back up loops while its stack grows. Here each block is
//! read at most once per listing.

use std::collections::HashSet;
use std::ffi::OsString;

use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::NtfsAttributeType;

use super::record::{apply_fixups, u16_at, u32_at, u64_at, Attribute};
use super::reparse::{TAG_LX_SYMLINK, TAG_MOUNT_POINT, TAG_SYMLINK};
use super::runs::RunMap;
use super::stream::{stream, Stream};
use super::{Disk, FIRST_USER_RECORD};
use crate::fs::{DirEntry, FileKind};

/// Far deeper than any real B-tree of file names gets.
const MAX_DEPTH: usize = 64;
const ENTRY_HAS_SUBNODE: u16 = 0x01;
const ENTRY_LAST: u16 = 0x02;

struct Walk<'a> {
    disk: &'a Disk,
    dir: u64,
    allocation: Option<RunMap>,
    block_size: usize,
    vcn_bytes: u64,
    visited: HashSet<u64>,
    out: Vec<DirEntry>,
    /// Entries that may be links, whose kind only their record tells.
    maybe_links: Vec<usize>,
}

/// The visible entries of directory `dir`, whose attributes are `attrs`, and which of
/// them are reparse points that may be links (symlinks, junctions): the index keeps
/// their tag, but whether their reparse data is sound only their record says.
pub(super) fn list(disk: &Disk, dir: u64, attrs: &[Attribute]) -> Result<(Vec<DirEntry>, Vec<usize>), String> {
    let root = match stream(attrs, NtfsAttributeType::IndexRoot, "$I30")? {
        Some(Stream::Resident(v)) => v,
        Some(_) => return Err("its $I30 index root is not resident".into()),
        None => return Err("it has no $I30 index root".into()),
    };
    if root.len() < 32 || u32_at(root, 0) != NtfsAttributeType::FileName as u32 {
        return Err("its $I30 index root is damaged or not a file-name index".into());
    }
    let block_size = u32_at(root, 8) as usize;
    let allocation = match stream(attrs, NtfsAttributeType::IndexAllocation, "$I30")? {
        Some(s @ Stream::NonResident { .. }) => Some(
            disk.map(format!("directory record {dir}: $INDEX_ALLOCATION"), &s)
                .map_err(|e| format!("$INDEX_ALLOCATION: {e}"))?,
        ),
        Some(_) => return Err("its $I30 index allocation is resident".into()),
        None => None,
    };
    let mut walk = Walk {
        disk,
        dir,
        allocation,
        block_size,
        // Index block VCNs count clusters, or 512-byte units when a block is smaller
        // than a cluster.
        vcn_bytes: if block_size as u64 >= disk.cluster_size {
            disk.cluster_size
        } else {
            512
        },
        visited: HashSet::new(),
        out: Vec::new(),
        maybe_links: Vec::new(),
    };
    let (start, end) = node_bounds(root, 16)?;
    walk.node(root, start, end, 0)?;
    Ok((walk.out, walk.maybe_links))
}

/// Where a node's entries lie in `buf`, from the node header at `header`.
fn node_bounds(buf: &[u8], header: usize) -> Result<(usize, usize), String> {
    let first = u32_at(buf, header) as usize;
    let used = u32_at(buf, header + 4) as usize;
    let (start, end) = (header + first, header + used);
    if first < 16 || start > end || end > buf.len() {
        return Err(format!("index node header is damaged (entries {first}..{used})"));
    }
    Ok((start, end))
}

impl Walk<'_> {
    fn node(&mut self, buf: &[u8], start: usize, end: usize, depth: usize) -> Result<(), String> {
        let mut pos = start;
        loop {
            if pos + 16 > end {
                return Err(format!("index entry at byte {pos} runs past its node"));
            }
            let len = u16_at(buf, pos + 8) as usize;
            let key_len = u16_at(buf, pos + 10) as usize;
            let flags = u16_at(buf, pos + 12);
            if len < 16 || pos + len > end {
                return Err(format!("index entry at byte {pos} has a bad length {len}"));
            }
            let entry = &buf[pos..pos + len];
            if flags & ENTRY_HAS_SUBNODE != 0 {
                if len < 24 {
                    return Err(format!("index entry at byte {pos} is too short for a subnode"));
                }
                self.subnode(u64_at(entry, len - 8), depth)?;
            }
            if flags & ENTRY_LAST != 0 {
                return Ok(());
            }
            let key = entry
                .get(16..16 + key_len)
                .filter(|k| k.len() >= 66)
                .ok_or_else(|| format!("index entry at byte {pos} has a bad key length {key_len}"))?;
            self.emit(u64_at(entry, 0) & 0xFFFF_FFFF_FFFF, key)?;
            pos += len;
        }
    }

    fn subnode(&mut self, vcn: u64, depth: usize) -> Result<(), String> {
        if depth >= MAX_DEPTH {
            return Err(format!("index is deeper than {MAX_DEPTH} levels"));
        }
        if !self.visited.insert(vcn) {
            return Err(format!("index block at VCN {vcn} is reached twice (the index loops)"));
        }
        let block = self.read_block(vcn)?;
        let (start, end) = node_bounds(&block, 24).map_err(|e| format!("index block at VCN {vcn}: {e}"))?;
        self.node(&block, start, end, depth + 1).map_err(|e| {
            if e.starts_with("index block") {
                e
            } else {
                format!("index block at VCN {vcn}: {e}")
            }
        })
    }

    fn read_block(&self, vcn: u64) -> Result<Vec<u8>, String> {
        let map = self
            .allocation
            .as_ref()
            .ok_or_else(|| format!("an entry points to index block VCN {vcn} but there is no $INDEX_ALLOCATION"))?;
        if !(512..=1 << 16).contains(&self.block_size) || self.block_size % 512 != 0 {
            return Err(format!("bad index block size {}", self.block_size));
        }
        let offset = vcn
            .checked_mul(self.vcn_bytes)
            .filter(|o| o.checked_add(self.block_size as u64).is_some_and(|e| e <= map.size()))
            .ok_or_else(|| {
                format!(
                    "index block VCN {vcn} lies past the index allocation ({} bytes)",
                    map.size()
                )
            })?;
        let mut block = vec![0u8; self.block_size];
        map.read(&*self.disk.volume, offset, &mut block)
            .map_err(|e| e.to_string())?;
        if &block[..4] != b"INDX" {
            return Err(format!("index block at VCN {vcn} has no INDX signature"));
        }
        apply_fixups(&mut block).map_err(|e| format!("index block at VCN {vcn}: {e}"))?;
        let own = u64_at(&block, 16);
        if own != vcn {
            return Err(format!("index block at VCN {vcn} says it is VCN {own}"));
        }
        Ok(block)
    }

    fn emit(&mut self, record: u64, key: &[u8]) -> Result<(), String> {
        let chars = key[64] as usize;
        let namespace = key[65];
        let name = key
            .get(66..66 + 2 * chars)
            .ok_or_else(|| format!("index key of record {record} has a name past its end"))?;
        // The 8.3 alias of a Win32 name, the metadata files ($MFT … $Extend, records
        // below 16, as ntfs-3g hides them) and the root's entry for itself are not shown.
        if namespace == NtfsFileNamespace::Dos as u8 || record < FIRST_USER_RECORD || record == self.dir {
            return Ok(());
        }
        let units: Vec<u16> = name.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        // Unpaired surrogates (legal in NTFS names) become U+FFFD.
        let name = String::from_utf16_lossy(&units);
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Ok(());
        }
        let attributes = NtfsFileAttributeFlags::from_bits_retain(u32_at(key, 56));
        let kind = if attributes.contains(NtfsFileAttributeFlags::IS_DIRECTORY) {
            FileKind::Dir
        } else {
            FileKind::File
        };
        // With the reparse flag, the key's EA-size field holds the tag (0 where a writer
        // left it out). Other tags (WOF, dedup, cloud files) never make a link, which
        // spares loading the records of every WOF-compressed system file.
        if attributes.contains(NtfsFileAttributeFlags::REPARSE_POINT)
            && matches!(u32_at(key, 60), 0 | TAG_SYMLINK | TAG_MOUNT_POINT | TAG_LX_SYMLINK)
        {
            self.maybe_links.push(self.out.len());
        }
        self.out.push(DirEntry {
            name: OsString::from(name),
            node: record,
            kind,
        });
        Ok(())
    }
}
