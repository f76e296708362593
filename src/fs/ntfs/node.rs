//! What a file record says about its node: kind, sizes, times, link count, and whether
//! (and how) its bytes can be read.

use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::NtfsAttributeType;

use super::record::{Attribute, Value, ATTR_COMPRESSION_MASK, ATTR_ENCRYPTED, ATTR_SPARSE, FLAG_DIRECTORY};
use super::runs::RunMap;
use super::stream::{stream, Stream};
use super::Disk;
use crate::fs::FileKind;

/// How a file's bytes are read.
#[derive(Debug)]
pub(super) enum Content {
    /// No unnamed `$DATA` (or a directory).
    None,
    Resident(Box<[u8]>),
    /// Through the node's run map.
    Runs,
    /// LZNT1-compressed, through the node's run map, in units of this many bytes.
    Lznt1 {
        unit: u32,
    },
    /// WOF-compressed; a non-resident `WofCompressedData` stream is the node's run map.
    Wof(super::wof::Wof),
    /// Reads fail with this reason: returning what the clusters hold would be wrong.
    Unreadable(String),
}

#[derive(Debug)]
pub(super) struct Node {
    pub kind: FileKind,
    pub size: u64,
    /// Bytes allocated, as ntfs-3g counts them for `st_blocks`.
    pub allocated: u64,
    pub nlink: u32,
    pub created: u64,
    pub modified: u64,
    pub changed: u64,
    pub accessed: u64,
    pub content: Content,
}

impl Node {
    /// Rough bytes held, for the cache budget.
    pub fn weight(&self) -> usize {
        let extra = match &self.content {
            Content::Resident(b) => b.len(),
            Content::Unreadable(s) => s.len(),
            _ => 0,
        };
        128 + extra
    }
}

// Reparse tags whose file keeps its own bytes in the unnamed `$DATA` (or has none): a
// link, a mount point, a WSL special file. Every other tag (WOF, deduplication, HSM,
// cloud placeholders, unknown ones) may leave a sparse or empty placeholder there, whose
// zeros are not the file's bytes.
const TAGS_WITH_OWN_DATA: &[u32] = &[
    0xA000_0003, // mount point (junction)
    0xA000_000C, // symbolic link
    0x8000_000A, // DFS
    0x8000_0012, // DFSR
    0x8000_0014, // NFS
    0x8000_001B, // app execution alias
    0xA000_001D, // WSL symlink
    0x8000_0023, // AF_UNIX socket
    0x8000_0024, // WSL FIFO
    0x8000_0025, // WSL character device
    0x8000_0026, // WSL block device
];
pub(super) const TAG_WOF: u32 = 0x8000_0017;

fn tag_name(tag: u32) -> &'static str {
    match tag {
        0x8000_0007 => "single-instance storage",
        0x8000_0013 => "deduplicated",
        0xC000_0004 | 0x8000_0006 => "HSM",
        0x8000_0018 | 0x9000_1018 => "container isolation",
        0x9000_001C => "projected file system",
        t if t & 0xFFFF_0FFF == 0x9000_001A => "cloud files placeholder",
        _ => "unknown",
    }
}

/// The record header facts a node needs.
pub(super) struct Header {
    pub flags: u16,
    pub link_count: u16,
}

pub(super) fn build(
    disk: &Disk,
    n: u64,
    header: &Header,
    attrs: &[Attribute],
) -> Result<(Node, Option<RunMap>), String> {
    let si = attrs
        .iter()
        .find(|a| a.ty == NtfsAttributeType::StandardInformation as u32)
        .ok_or("no $STANDARD_INFORMATION")?;
    let si = match &si.value {
        Value::Resident(v) if v.len() >= 48 => v,
        _ => return Err("$STANDARD_INFORMATION is damaged".into()),
    };
    let time = |o: usize| u64::from_le_bytes(si[o..o + 8].try_into().unwrap());
    let file_attributes = NtfsFileAttributeFlags::from_bits_retain(u32::from_le_bytes(si[32..36].try_into().unwrap()));

    // Only Win32/POSIX names count: a DOS 8.3 name is a second spelling of a Win32 name,
    // not a link. (ntfs-3g reports the header's link count, which counts the 8.3 name
    // too when it has its own $FILE_NAME; the kernel's ntfs3 counts as here.)
    let names = attrs
        .iter()
        .filter(|a| a.ty == NtfsAttributeType::FileName as u32)
        .filter(|a| match &a.value {
            Value::Resident(v) => v.len() >= 66 && v[65] != NtfsFileNamespace::Dos as u8,
            Value::NonResident(_) => false,
        })
        .count();
    let nlink = if names > 0 {
        names as u32
    } else {
        u32::from(header.link_count.max(1))
    };

    let mut node = Node {
        kind: FileKind::File,
        size: 0,
        allocated: 0,
        nlink,
        created: time(0),
        modified: time(8),
        changed: time(16),
        accessed: time(24),
        content: Content::None,
    };

    // Symlinks and junctions: their target is in the reparse point (see `reparse`).
    if super::reparse::is_link(disk, n, attrs) {
        node.kind = FileKind::Symlink;
        return Ok((node, None));
    }

    if header.flags & FLAG_DIRECTORY != 0 {
        node.kind = FileKind::Dir;
        // As ntfs-3g: the size of the $I30 index allocation, 0 for a small directory.
        if let Ok(Some(Stream::NonResident { head, .. })) = stream(attrs, NtfsAttributeType::IndexAllocation, "$I30") {
            node.size = head.size;
            node.allocated = head.allocated;
        }
        return Ok((node, None));
    }

    let data = match stream(attrs, NtfsAttributeType::Data, "") {
        Ok(Some(d)) => d,
        Ok(None) => return Ok((node, None)),
        Err(e) => {
            node.content = Content::Unreadable(e);
            return Ok((node, None));
        }
    };
    node.size = data.size();
    // Allocation as ntfs-3g counts it: clusters really held (without holes) for sparse
    // and compressed data, the value rounded to 8 bytes for resident data.
    let flags = match &data {
        Stream::Resident(v) => {
            node.allocated = (v.len() as u64 + 7) & !7;
            0
        }
        Stream::NonResident { head, flags, .. } => {
            node.allocated = match head.compressed {
                Some(c) if flags & (ATTR_COMPRESSION_MASK | ATTR_SPARSE) != 0 => c,
                _ => head.allocated,
            };
            *flags
        }
    };

    let encrypted = file_attributes.contains(NtfsFileAttributeFlags::ENCRYPTED);
    if let Some((content, map)) = super::compressed::content(disk, n, attrs, encrypted, flags, &data) {
        node.content = content;
        return Ok((node, map));
    }
    if let Some(why) = unreadable(disk, attrs, file_attributes, flags) {
        node.content = Content::Unreadable(why);
        return Ok((node, None));
    }
    match &data {
        Stream::Resident(v) => {
            node.content = Content::Resident(v.to_vec().into_boxed_slice());
            Ok((node, None))
        }
        Stream::NonResident { .. } => match disk.map(format!("file record {n}: $DATA"), &data) {
            Ok(map) => {
                node.content = Content::Runs;
                Ok((node, Some(map)))
            }
            Err(e) => {
                node.content = Content::Unreadable(format!("$DATA: {e}"));
                Ok((node, None))
            }
        },
    }
}

/// Why a file's bytes cannot be served as they lie on disk, if they cannot.
fn unreadable(
    disk: &Disk,
    attrs: &[Attribute],
    file_attributes: NtfsFileAttributeFlags,
    data_flags: u16,
) -> Option<String> {
    if data_flags & ATTR_ENCRYPTED != 0 || file_attributes.contains(NtfsFileAttributeFlags::ENCRYPTED) {
        return Some("EFS-encrypted; ckptfs cannot decrypt it".into());
    }
    // Reparse points are shown as the file or directory their record is (their own
    // issue); but for a WOF-compressed file (tag 0x80000017, data in the
    // `WofCompressedData` stream) and other placeholders, the unnamed $DATA is a sparse
    // stand-in whose zeros are not the file's bytes, so reading it must fail.
    let reparse = match stream(attrs, NtfsAttributeType::ReparsePoint, "") {
        Ok(None) => None,
        // A buffer whose lengths disagree is damaged whatever its tag says.
        Ok(Some(_)) => Some(super::reparse::valid_tag(disk, attrs)),
        Err(_) => Some(None),
    };
    match reparse {
        None => None,
        Some(Some(tag)) if TAGS_WITH_OWN_DATA.contains(&tag) => None,
        Some(Some(TAG_WOF)) => Some(format!(
            "WOF-compressed (reparse tag {TAG_WOF:#010x}{}); decompression is not supported yet",
            if stream(attrs, NtfsAttributeType::Data, "WofCompressedData").is_ok_and(|s| s.is_some()) {
                ", data in its WofCompressedData stream"
            } else {
                ""
            }
        )),
        Some(Some(tag)) => Some(format!(
            "reparse point with tag {tag:#010x} ({}): its bytes may be kept outside the file; not supported yet",
            tag_name(tag)
        )),
        Some(None) => Some("its reparse point is damaged".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_tags_are_named() {
        assert_eq!(tag_name(0x9000_101A), "cloud files placeholder");
        assert_eq!(tag_name(0x8000_0013), "deduplicated");
        assert_eq!(tag_name(0x1234_5678), "unknown");
    }
}
