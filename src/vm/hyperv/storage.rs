//! The Hyper-V configuration container ("HyperVStorage", VmDataStore): `.vmcx`, `.VMRS`
//! and the host's `data.vmcx`. A key/value tree (like a registry hive) kept in fixed
//! tables, with two headers and a replay log for crash safety.
//!
//! Layout, as public readers describe it (dissect.hypervisor, read only) and as every
//! sample in `../shared/samples/hyperv-config/` was checked to hold (all integers
//! little-endian, structures packed):
//!
//! - Two headers at 0x0 and 0x1000 (46 bytes): signature 0x01282014, CRC, sequence
//!   (u16), version (0x400), alignment, replay-log offset and size, header size. The
//!   valid one with the higher sequence is used (plain comparison: a sequence that
//!   wrapped past 65535 is not handled; the first header wins a tie).
//! - The replay log (34-byte header: signature 0x01110003, CRC, entry count, maximum),
//!   then 28-byte entries (target offset u64, size u32, data offset in the log u32, a
//!   zero u32, entry CRC, data CRC). Entries beyond the count are left over from earlier
//!   writes. A count above zero means a write was interrupted: the entries are applied,
//!   in order, to a copy in memory before anything else is read.
//! - The object table at 0x2000 (signature 0x01110001, count), 18-byte entries: type,
//!   CRC, offset u64, size u32, allocated. Types: 1 object table, 2 key table, 3 file
//!   (values of 2 KiB and more), 4 free, 5 unknown, 6 replay log, 7 change tracking.
//! - Key tables (10-byte header: signature 2, index, sequence, CRC), each of its index
//!   kept at its highest sequence, then key entries to the table's end: a 21-byte
//!   header (type u8 and flags u8, entry size u32, the parent's table index u16 and
//!   offset in that table u32 (index 0: a root), CRC, insertion sequence u32, name
//!   length with its NUL u8), the name, the value. Entry type 1 is free space.
//!
//! **Checksums.** Every one is CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320,
//! initial value and final xor 0xFFFFFFFF: zlib's `crc32`), computed with the checksum
//! field taken as zero, over: the header's 46 bytes, the replay-log header's 34 bytes,
//! each log entry's 28 bytes, each log entry's data (stored in its own field, not
//! zeroed), each object-table entry's 18 bytes (unused ones too), each key table's
//! 10-byte header (not its entries), and each key entry's header, name and value
//! (`21 + name length + value size` bytes, where a node's value is 12 bytes and a
//! value stored in a file object counts as its 12-byte pointer; entries are padded
//! past that). Free entries carry no checksum (zero). Found by computing these over
//! every structure of every sample: all of them match, with no exception.
//!
//! **What is refused** ([`VmcxError`], with the offset): a file over 64 MiB, neither
//! header valid (each one's reason given), another version, a replay-log or
//! object-table or key-table structure with a wrong signature, checksum, or a size
//! past the file, a dirty log entry that is damaged, an unknown object or key type, a
//! key entry whose size or value runs past its table, a parent pointer to no entry
//! or to a value, a loop of parents, a tree deeper than [`MAX_DEPTH`], key tables in
//! use that overlap, more than [`MAX_OBJECTS`] object entries, values in file objects
//! adding up to more than 64 MiB (these last three bound the work a small hostile
//! file can cause). **A key entry
//! whose checksum alone is wrong** is skipped with a warning, with its subtree: its
//! size was sound, so the table's other entries still parse, and one damaged setting
//! should not hide the rest of the VM.

use std::collections::{BTreeMap, HashMap};

pub use super::keys::{Key, KeyValue};

/// Configurations are small (tens of KiB); a larger file is no configuration.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// How deep keys may nest (real files: under 10).
pub const MAX_DEPTH: usize = 128;
/// Object-table entries read in all, nested tables included (real files: 227).
pub const MAX_OBJECTS: u64 = 1 << 22;

pub const HEADER_SIGNATURE: u32 = 0x0128_2014;
pub const HEADER_OFFSETS: [u64; 2] = [0, 0x1000];
pub const HEADER_LEN: usize = 46;
pub const VERSION: u32 = 0x400;
pub const LOG_SIGNATURE: u32 = 0x0111_0003;
pub const LOG_HEADER_LEN: usize = 34;
pub const LOG_ENTRY_LEN: usize = 28;
pub const OBJECT_TABLE_SIGNATURE: u32 = 0x0111_0001;
pub const OBJECT_TABLE_OFFSET: u64 = 0x2000;
pub const OBJECT_ENTRY_LEN: usize = 18;
pub const KEY_TABLE_SIGNATURE: u16 = 2;
pub const KEY_TABLE_HEADER_LEN: usize = 10;
pub const KEY_ENTRY_HEADER_LEN: usize = 21;
/// Key entry flag: the value lives in a file object.
pub const FLAG_FILE_OBJECT: u8 = 0x01;

/// Object-table entry types.
pub mod object_type {
    pub const OBJECT_TABLE: u8 = 1;
    pub const KEY_TABLE: u8 = 2;
    pub const FILE: u8 = 3;
    pub const FREE: u8 = 4;
    pub const UNKNOWN5: u8 = 5;
    pub const REPLAY_LOG: u8 = 6;
    pub const CHANGE_TRACKING: u8 = 7;
}

/// Key entry types (the low byte of the type field).
pub mod key_type {
    pub const FREE: u8 = 1;
    pub const INT: u8 = 3;
    pub const UINT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const STRING: u8 = 6;
    pub const ARRAY: u8 = 7;
    pub const BOOL: u8 = 8;
    pub const NODE: u8 = 9;
}

/// What is wrong with a container. Offsets are absolute in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmcxError {
    #[error("{size} bytes is too large for a Hyper-V configuration (limit {limit})")]
    TooLarge { size: u64, limit: u64 },

    #[error("not a Hyper-V configuration container: no header signature 0x01282014 at 0x0 or 0x1000")]
    NotStorage,

    #[error("no valid header: {first}; {second}")]
    Headers { first: String, second: String },

    #[error("header at {offset:#x}: version {version:#x} is not supported (only 0x400)")]
    Version { offset: u64, version: u32 },

    #[error("{what} at {offset:#x}: {len} bytes run past the end of the file ({file_len} bytes)")]
    Truncated {
        what: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },

    #[error("{what} at {offset:#x}: signature {found:#x}, expected {expected:#x}")]
    Signature {
        what: String,
        offset: u64,
        found: u32,
        expected: u32,
    },

    #[error("{what} at {offset:#x}: checksum {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        what: String,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    #[error("{what} at {offset:#x}: unknown type {found}")]
    UnknownType { what: String, offset: u64, found: u32 },

    #[error("key at {offset:#x}: its parent (table {table}, offset {parent_offset:#x}) {what}")]
    Parent {
        offset: u64,
        table: u16,
        parent_offset: u32,
        what: &'static str,
    },

    #[error("key at {offset:#x}: its parents form a loop")]
    Loop { offset: u64 },

    #[error("{what} at {offset:#x}: {reason}")]
    Corrupt { what: String, offset: u64, reason: String },
}

/// The header used, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 0x0 or 0x1000.
    pub offset: u64,
    pub sequence: u16,
    pub version: u32,
    pub alignment: u32,
    pub log_offset: u64,
    pub log_size: u64,
    pub header_size: u32,
}

/// A parsed container.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub header: Header,
    /// Replay-log entries applied in memory (0: the file was closed cleanly).
    pub replayed: usize,
    /// The keys, under a root node without a name.
    pub tree: Key,
    /// Things that did not stop the parse (a dirty log replayed, a damaged key
    /// skipped), one line each.
    pub warnings: Vec<String>,
}

/// Whether `head` (the file's first bytes) starts like a container: a header
/// signature at 0x0 or at 0x1000.
pub fn looks_like_storage(head: &[u8]) -> bool {
    HEADER_OFFSETS
        .iter()
        .any(|&o| u32_at(head, o as usize) == Some(HEADER_SIGNATURE))
}

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// CRC-32 of `b` with the four bytes at `at` taken as zero.
pub fn crc32_zeroed(b: &[u8], at: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let at = at.min(b.len());
    let end = at.saturating_add(4).min(b.len());
    h.update(&b[..at]);
    h.update(&[0u8; 4][..end - at]);
    h.update(&b[end..]);
    h.finalize()
}

/// `len` bytes at `offset` of `file`, or why not.
fn slice(file: &[u8], offset: u64, len: u64, what: impl FnOnce() -> String) -> Result<&[u8], VmcxError> {
    let got = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(o, l)| file.get(o..o.checked_add(l)?));
    got.ok_or_else(|| VmcxError::Truncated {
        what: what(),
        offset,
        len,
        file_len: file.len() as u64,
    })
}

/// Check the CRC-32 stored at `at` in `b` (a structure at `offset`).
fn check_crc(b: &[u8], at: usize, what: impl FnOnce() -> String, offset: u64) -> Result<(), VmcxError> {
    let stored = u32_at(b, at).unwrap_or(0);
    let computed = crc32_zeroed(b, at);
    if stored == computed {
        Ok(())
    } else {
        Err(VmcxError::Checksum {
            what: what(),
            offset,
            stored,
            computed,
        })
    }
}

/// One header, or why it is not usable.
fn parse_header(file: &[u8], offset: u64) -> Result<Header, VmcxError> {
    let b = slice(file, offset, HEADER_LEN as u64, || "header".into())?;
    let sig = u32_at(b, 0).unwrap_or(0);
    if sig != HEADER_SIGNATURE {
        return Err(VmcxError::Signature {
            what: "header".into(),
            offset,
            found: sig,
            expected: HEADER_SIGNATURE,
        });
    }
    check_crc(b, 4, || "header".into(), offset)?;
    let h = Header {
        offset,
        sequence: u16_at(b, 8).unwrap_or(0),
        version: u32_at(b, 10).unwrap_or(0),
        alignment: u32_at(b, 22).unwrap_or(0),
        log_offset: u64_at(b, 26).unwrap_or(0),
        log_size: u64_at(b, 34).unwrap_or(0),
        header_size: u32_at(b, 42).unwrap_or(0),
    };
    if h.version != VERSION {
        return Err(VmcxError::Version {
            offset,
            version: h.version,
        });
    }
    Ok(h)
}

/// The valid header with the higher sequence (the first on a tie).
pub fn choose_header(file: &[u8]) -> Result<Header, VmcxError> {
    let first = parse_header(file, HEADER_OFFSETS[0]);
    let second = parse_header(file, HEADER_OFFSETS[1]);
    match (first, second) {
        (Ok(a), Ok(b)) => Ok(if b.sequence > a.sequence { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(a), Err(b)) => {
            let no_sig = |e: &VmcxError| matches!(e, VmcxError::Signature { .. } | VmcxError::Truncated { .. });
            if no_sig(&a) && no_sig(&b) && !looks_like_storage(file) {
                return Err(VmcxError::NotStorage);
            }
            // Both are containers of an unknown version: say that, not "damaged".
            if let (VmcxError::Version { .. }, VmcxError::Version { .. }) = (&a, &b) {
                return Err(a);
            }
            Err(VmcxError::Headers {
                first: a.to_string(),
                second: b.to_string(),
            })
        }
    }
}

/// The file with the replay log's counted entries applied, and how many there were;
/// `None` for a clean log.
fn replay(file: &[u8], h: &Header) -> Result<Option<(Vec<u8>, usize)>, VmcxError> {
    let lo = h.log_offset;
    let what = || "replay log header".to_string();
    let lh = slice(file, lo, LOG_HEADER_LEN as u64, what)?;
    let sig = u32_at(lh, 0).unwrap_or(0);
    if sig != LOG_SIGNATURE {
        return Err(VmcxError::Signature {
            what: what(),
            offset: lo,
            found: sig,
            expected: LOG_SIGNATURE,
        });
    }
    check_crc(lh, 4, what, lo)?;
    let count = u32_at(lh, 8).unwrap_or(0);
    let max = u32_at(lh, 13).unwrap_or(0);
    if count == 0 {
        return Ok(None);
    }
    if count > max {
        return Err(VmcxError::Corrupt {
            what: what(),
            offset: lo,
            reason: format!("{count} entries, more than its maximum of {max}"),
        });
    }
    // Check every entry before applying any: a damaged entry leaves the state unknown.
    let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..u64::from(count) {
        let eo = lo + LOG_HEADER_LEN as u64 + i * LOG_ENTRY_LEN as u64;
        let ewhat = || format!("replay log entry {i}");
        let e = slice(file, eo, LOG_ENTRY_LEN as u64, ewhat)?;
        check_crc(e, 20, ewhat, eo)?;
        let target = u64_at(e, 0).unwrap_or(0);
        let size = u64::from(u32_at(e, 8).unwrap_or(0));
        let data_at = u64::from(u32_at(e, 12).unwrap_or(0));
        let data_crc = u32_at(e, 24).unwrap_or(0);
        if data_at.saturating_add(size) > h.log_size {
            return Err(VmcxError::Corrupt {
                what: ewhat(),
                offset: eo,
                reason: format!(
                    "its data ({size} bytes at {data_at:#x} in the log) runs past the log's {:#x} bytes",
                    h.log_size
                ),
            });
        }
        let data = slice(file, lo + data_at, size, || format!("replay log entry {i}'s data"))?;
        let computed = crc32fast::hash(data);
        if computed != data_crc {
            return Err(VmcxError::Checksum {
                what: format!("replay log entry {i}'s data"),
                offset: lo + data_at,
                stored: data_crc,
                computed,
            });
        }
        let end = target.saturating_add(size);
        let overlaps = |a: u64, b: u64| target < b && a < end;
        if overlaps(0, OBJECT_TABLE_OFFSET) || overlaps(lo, lo.saturating_add(h.log_size)) || end > MAX_FILE_BYTES {
            return Err(VmcxError::Corrupt {
                what: ewhat(),
                offset: eo,
                reason: format!(
                    "it writes {size} bytes at {target:#x}: over the headers, the log itself, or past 64 MiB"
                ),
            });
        }
        writes.push((target, data.to_vec()));
    }
    let mut copy = file.to_vec();
    for (target, data) in &writes {
        // Checked above: `target + len` is at most 64 MiB.
        let t = *target as usize;
        let end = t + data.len();
        if copy.len() < end {
            copy.resize(end, 0);
        }
        if let Some(dst) = copy.get_mut(t..end) {
            dst.copy_from_slice(data);
        }
    }
    Ok(Some((copy, writes.len())))
}

/// An allocated object of the object tables.
#[derive(Debug, Clone, Copy)]
struct Object {
    kind: u8,
    offset: u64,
    size: u64,
}

/// Every allocated object, following nested object tables (each read once).
fn objects(file: &[u8]) -> Result<Vec<Object>, VmcxError> {
    let mut out = Vec::new();
    let mut tables = vec![OBJECT_TABLE_OFFSET];
    let mut seen = vec![OBJECT_TABLE_OFFSET];
    let mut total: u64 = 0;
    while let Some(to) = tables.pop() {
        let what = || "object table".to_string();
        let head = slice(file, to, 8, what)?;
        let sig = u32_at(head, 0).unwrap_or(0);
        if sig != OBJECT_TABLE_SIGNATURE {
            return Err(VmcxError::Signature {
                what: what(),
                offset: to,
                found: sig,
                expected: OBJECT_TABLE_SIGNATURE,
            });
        }
        let count = u64::from(u32_at(head, 4).unwrap_or(0));
        total += count;
        if total > MAX_OBJECTS {
            return Err(VmcxError::Corrupt {
                what: what(),
                offset: to,
                reason: format!("more than {MAX_OBJECTS} object-table entries in all"),
            });
        }
        let entries = slice(file, to + 8, count * OBJECT_ENTRY_LEN as u64, || {
            format!("object table's {count} entries")
        })?;
        for (i, e) in entries.chunks_exact(OBJECT_ENTRY_LEN).enumerate() {
            let eo = to + 8 + (i * OBJECT_ENTRY_LEN) as u64;
            let ewhat = || format!("object table entry {i}");
            check_crc(e, 1, ewhat, eo)?;
            let kind = u8_at(e, 0).unwrap_or(0);
            let offset = u64_at(e, 5).unwrap_or(0);
            let size = u64::from(u32_at(e, 13).unwrap_or(0));
            let allocated = u8_at(e, 17).unwrap_or(0);
            if allocated == 0 {
                continue;
            }
            if !(object_type::OBJECT_TABLE..=object_type::CHANGE_TRACKING).contains(&kind) {
                return Err(VmcxError::UnknownType {
                    what: ewhat(),
                    offset: eo,
                    found: kind.into(),
                });
            }
            if kind == object_type::OBJECT_TABLE && !seen.contains(&offset) {
                if seen.len() > 64 {
                    return Err(VmcxError::Corrupt {
                        what: ewhat(),
                        offset: eo,
                        reason: "more than 64 object tables".into(),
                    });
                }
                seen.push(offset);
                tables.push(offset);
            }
            out.push(Object { kind, offset, size });
        }
    }
    Ok(out)
}

/// The file objects by offset (their sizes), and how many value bytes may still be
/// read from them.
struct Files {
    sizes: HashMap<u64, u64>,
    budget: std::cell::Cell<u64>,
}

/// A key entry, decoded, before the tree is built.
struct Entry {
    /// Absolute offset, for messages.
    at: u64,
    parent: (u16, u32),
    insertion: u32,
    /// Why it is skipped (its checksum); its key is then a placeholder.
    damaged: Option<String>,
    key: Key,
}

/// A key table: (index, sequence, offset, bytes).
struct Table<'a> {
    index: u16,
    sequence: u16,
    offset: u64,
    bytes: &'a [u8],
}

fn key_table<'a>(file: &'a [u8], o: &Object) -> Result<Table<'a>, VmcxError> {
    let what = || "key table".to_string();
    let bytes = slice(file, o.offset, o.size, what)?;
    let h = slice(bytes, 0, KEY_TABLE_HEADER_LEN as u64, what).map_err(|_| VmcxError::Corrupt {
        what: what(),
        offset: o.offset,
        reason: format!("{} bytes cannot hold its header", o.size),
    })?;
    let sig = u16_at(h, 0).unwrap_or(0);
    if sig != KEY_TABLE_SIGNATURE {
        return Err(VmcxError::Signature {
            what: what(),
            offset: o.offset,
            found: sig.into(),
            expected: KEY_TABLE_SIGNATURE.into(),
        });
    }
    check_crc(h, 6, what, o.offset)?;
    let index = u16_at(h, 2).unwrap_or(0);
    if index == 0 {
        return Err(VmcxError::Corrupt {
            what: what(),
            offset: o.offset,
            reason: "index 0 (which parent pointers use for \"no parent\")".into(),
        });
    }
    Ok(Table {
        index,
        sequence: u16_at(h, 4).unwrap_or(0),
        offset: o.offset,
        bytes,
    })
}

/// Where a value stored in a file object is, checked against the file objects.
fn file_object_value<'a>(
    file: &'a [u8],
    files: &Files,
    size: u32,
    offset: u64,
    at: u64,
) -> Result<&'a [u8], VmcxError> {
    let what = || "key".to_string();
    // Values in file objects add up to at most the largest file read: objects that
    // overlap, or keys sharing one, cannot make a small file expand without end.
    let left = files.budget.get();
    if u64::from(size) > left {
        return Err(VmcxError::Corrupt {
            what: what(),
            offset: at,
            reason: format!("values in file objects add up to more than {MAX_FILE_BYTES} bytes"),
        });
    }
    files.budget.set(left - u64::from(size));
    let Some(&obj_size) = files.sizes.get(&offset) else {
        return Err(VmcxError::Corrupt {
            what: what(),
            offset: at,
            reason: format!("its value points to {offset:#x}, where no file object is"),
        });
    };
    if u64::from(size) > obj_size {
        return Err(VmcxError::Corrupt {
            what: what(),
            offset: at,
            reason: format!("its value of {size} bytes is larger than its file object ({obj_size} bytes)"),
        });
    }
    slice(file, offset, size.into(), || "file object".into())
}

/// The entries of one key table. `Ok(Err(reason))` for an entry skipped for its
/// checksum, with its offset, so that keys below it can be dropped too.
fn table_entries(file: &[u8], files: &Files, t: &Table, entries: &mut Vec<Entry>) -> Result<(), VmcxError> {
    let b = t.bytes;
    let mut o = KEY_TABLE_HEADER_LEN;
    while o + KEY_ENTRY_HEADER_LEN <= b.len() {
        let at = t.offset + o as u64;
        let size = u32_at(b, o + 2).unwrap_or(0) as usize;
        if size == 0 {
            break;
        }
        let corrupt = |reason: String| VmcxError::Corrupt {
            what: "key".into(),
            offset: at,
            reason,
        };
        if size < KEY_ENTRY_HEADER_LEN {
            return Err(corrupt(format!("entry size {size} is less than its header")));
        }
        let Some(e) = o.checked_add(size).and_then(|end| b.get(o..end)) else {
            return Err(corrupt(format!(
                "entry size {size} runs past its key table (table at {:#x}, {} bytes)",
                t.offset,
                b.len()
            )));
        };
        o += size;
        let kind = u8_at(e, 0).unwrap_or(0);
        let flags = u8_at(e, 1).unwrap_or(0);
        if kind == key_type::FREE {
            continue;
        }
        if !(key_type::INT..=key_type::NODE).contains(&kind) {
            return Err(VmcxError::UnknownType {
                what: "key".into(),
                offset: at,
                found: kind.into(),
            });
        }
        let name_len = usize::from(u8_at(e, 20).unwrap_or(0));
        let h = KEY_ENTRY_HEADER_LEN;
        let Some(name_bytes) = e.get(h..h + name_len) else {
            return Err(corrupt(format!(
                "its name of {name_len} bytes runs past its entry of {size}"
            )));
        };
        let Some((&0, name)) = name_bytes.split_last() else {
            return Err(corrupt("its name has no terminating NUL".into()));
        };
        let v = h + name_len;
        let in_file = flags & FLAG_FILE_OBJECT != 0;
        let value_len = match kind {
            key_type::INT | key_type::UINT | key_type::DOUBLE => 8,
            key_type::BOOL => 4,
            key_type::NODE => 12,
            _ if in_file => 12,
            _ => 4 + u32_at(e, v).map_or(0, |n| n as usize),
        };
        let Some(value) = v.checked_add(value_len).and_then(|end| e.get(v..end)) else {
            return Err(corrupt(format!(
                "its value of {value_len} bytes runs past its entry of {size}"
            )));
        };
        let covered = &e[..v + value_len];
        let stored = u32_at(e, 12).unwrap_or(0);
        let computed = crc32_zeroed(covered, 12);
        if stored != computed {
            let name = String::from_utf8_lossy(name);
            // Recorded so that its children can be told from orphans.
            entries.push(Entry {
                at,
                parent: (0, 0),
                insertion: u32::MAX,
                damaged: Some(format!(
                    "key {name:?} at {at:#x}: checksum {stored:#010x}, computed {computed:#010x}"
                )),
                key: Key {
                    name: String::new(),
                    value: KeyValue::Node,
                    flags: 0,
                    children: Vec::new(),
                },
            });
            continue;
        }
        let blob = |value: &[u8]| -> Result<Vec<u8>, VmcxError> {
            if in_file {
                let size = u32_at(value, 0).unwrap_or(0);
                let offset = u64_at(value, 4).unwrap_or(0);
                Ok(file_object_value(file, files, size, offset, at)?.to_vec())
            } else {
                Ok(value.get(4..).unwrap_or_default().to_vec())
            }
        };
        let value = match kind {
            key_type::INT => KeyValue::Int(i64::from_le_bytes(value.try_into().unwrap_or_default())),
            key_type::UINT => KeyValue::UInt(u64_at(value, 0).unwrap_or(0)),
            key_type::DOUBLE => KeyValue::Double(f64::from_bits(u64_at(value, 0).unwrap_or(0))),
            key_type::BOOL => KeyValue::Bool(u32_at(value, 0).unwrap_or(0) != 0),
            key_type::NODE => KeyValue::Node,
            key_type::ARRAY => KeyValue::Bytes(blob(value)?),
            _ => {
                let bytes = blob(value)?;
                if bytes.len() % 2 != 0 {
                    return Err(corrupt(format!("its UTF-16 string has an odd length, {}", bytes.len())));
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                KeyValue::String(String::from_utf16_lossy(&units))
            }
        };
        entries.push(Entry {
            at,
            parent: (u16_at(e, 6).unwrap_or(0), u32_at(e, 8).unwrap_or(0)),
            insertion: u32_at(e, 16).unwrap_or(0),
            damaged: None,
            key: Key {
                name: String::from_utf8_lossy(name).into_owned(),
                value,
                flags,
                children: Vec::new(),
            },
        });
    }
    Ok(())
}

/// Parse a whole container. Never writes; `bytes` is not changed (a dirty log is
/// replayed into a copy).
pub fn parse(bytes: &[u8]) -> Result<Storage, VmcxError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(VmcxError::TooLarge {
            size: bytes.len() as u64,
            limit: MAX_FILE_BYTES,
        });
    }
    let header = choose_header(bytes)?;
    let mut warnings = Vec::new();
    let replayed_copy = replay(bytes, &header)?;
    let (file, replayed) = match &replayed_copy {
        Some((copy, n)) => {
            warnings.push(format!(
                "the file was not closed cleanly: {n} replay-log entries applied in memory"
            ));
            (copy.as_slice(), *n)
        }
        None => (bytes, 0),
    };
    let objects = objects(file)?;
    let files = Files {
        sizes: objects
            .iter()
            .filter(|o| o.kind == object_type::FILE)
            .map(|o| (o.offset, o.size))
            .collect(),
        budget: std::cell::Cell::new(MAX_FILE_BYTES),
    };

    // The highest sequence of each index.
    let mut tables: BTreeMap<u16, Table> = BTreeMap::new();
    for o in objects.iter().filter(|o| o.kind == object_type::KEY_TABLE) {
        let t = key_table(file, o)?;
        match tables.get(&t.index) {
            Some(old) if old.sequence == t.sequence => {
                return Err(VmcxError::Corrupt {
                    what: "key table".into(),
                    offset: t.offset,
                    reason: format!(
                        "index {} with sequence {} as the table at {:#x} too",
                        t.index, t.sequence, old.offset
                    ),
                })
            }
            Some(old) if old.sequence > t.sequence => {}
            _ => {
                tables.insert(t.index, t);
            }
        }
    }
    // The tables in use must not overlap: each byte is parsed once, so a small file
    // cannot make the parse large.
    let mut spans: Vec<(u64, u64)> = tables.values().map(|t| (t.offset, t.bytes.len() as u64)).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[0].0 + w[0].1 > w[1].0 {
            return Err(VmcxError::Corrupt {
                what: "key table".into(),
                offset: w[1].0,
                reason: format!("it overlaps the key table at {:#x}", w[0].0),
            });
        }
    }
    let mut entries = Vec::new();
    // Where each entry is: (table index, offset in the table) → index in `entries`.
    let mut by_place: HashMap<(u16, u32), usize> = HashMap::new();
    for t in tables.values() {
        let first = entries.len();
        table_entries(file, &files, t, &mut entries)?;
        for (i, e) in entries.iter().enumerate().skip(first) {
            by_place.insert((t.index, (e.at - t.offset) as u32), i);
        }
    }
    let tree = build_tree(entries, &by_place, &mut warnings)?;
    Ok(Storage {
        header,
        replayed,
        tree,
        warnings,
    })
}

/// Link entries to their parents; children in insertion order (then by place). A
/// damaged entry is linked to no parent (its pointer may be what is damaged); it and
/// everything below it are left out, with one warning.
fn build_tree(
    entries: Vec<Entry>,
    by_place: &HashMap<(u16, u32), usize>,
    warnings: &mut Vec<String>,
) -> Result<Key, VmcxError> {
    let n = entries.len();
    let bad: Vec<bool> = entries.iter().map(|e| e.damaged.is_some()).collect();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    // Where the depth-first walk starts: the roots and the damaged entries.
    let mut starts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let (table, off) = e.parent;
        if bad[i] {
            starts.push(i);
            continue;
        }
        if table == 0 {
            roots.push(i);
            starts.push(i);
            continue;
        }
        let Some(&p) = by_place.get(&(table, off)) else {
            return Err(VmcxError::Parent {
                offset: e.at,
                table,
                parent_offset: off,
                what: "is no key entry",
            });
        };
        if !bad[p] && entries[p].key.value != KeyValue::Node {
            return Err(VmcxError::Parent {
                offset: e.at,
                table,
                parent_offset: off,
                what: "is a value, not a node",
            });
        }
        parent[i] = Some(p);
        children[p].push(i);
    }
    let order = |v: &mut Vec<usize>| v.sort_by_key(|&i| (entries[i].insertion, entries[i].at));
    order(&mut roots);
    for c in &mut children {
        order(c);
    }
    // Depth-first; whatever is not reached hangs on a loop. `under_bad`: the nearest
    // damaged entry above (the entry is then left out).
    let mut depth = vec![usize::MAX; n];
    let mut under_bad: Vec<Option<usize>> = vec![None; n];
    let mut below_bad = vec![0usize; n];
    let mut preorder = Vec::with_capacity(n);
    for &s in &starts {
        depth[s] = 0;
    }
    let mut stack = starts;
    while let Some(i) = stack.pop() {
        preorder.push(i);
        if depth[i] >= MAX_DEPTH {
            return Err(VmcxError::Corrupt {
                what: "key".into(),
                offset: entries[i].at,
                reason: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        for &c in &children[i] {
            depth[c] = depth[i] + 1;
            under_bad[c] = if bad[i] { Some(i) } else { under_bad[i] };
            if let (Some(b), false) = (under_bad[c], bad[c]) {
                below_bad[b] += 1;
            }
            stack.push(c);
        }
    }
    if let Some(i) = (0..n).find(|&i| depth[i] == usize::MAX) {
        // Report an entry on the loop itself: follow parents until one repeats.
        let mut seen = vec![false; n];
        let mut j = i;
        while !seen[j] {
            seen[j] = true;
            j = parent[j].unwrap_or(j);
        }
        return Err(VmcxError::Loop { offset: entries[j].at });
    }
    for (i, e) in entries.iter().enumerate() {
        if let Some(msg) = &e.damaged {
            let rest = match below_bad[i] {
                0 => String::new(),
                k => format!(" (with the {k} keys below it)"),
            };
            warnings.push(format!("{msg}: key skipped{rest}"));
        }
    }
    // Build bottom-up: children before parents (reverse preorder).
    let keep: Vec<bool> = (0..n).map(|i| !bad[i] && under_bad[i].is_none()).collect();
    let mut keys: Vec<Option<Key>> = entries.into_iter().map(|e| Some(e.key)).collect();
    let mut built: Vec<Vec<Key>> = vec![Vec::new(); n];
    for &i in preorder.iter().rev() {
        let mut kids = Vec::new();
        for &c in &children[i] {
            if keep[c] {
                if let Some(mut k) = keys[c].take() {
                    k.children = std::mem::take(&mut built[c]);
                    kids.push(k);
                }
            }
        }
        built[i] = kids;
    }
    let mut out = Vec::new();
    for &r in &roots {
        if let Some(mut k) = keys[r].take() {
            k.children = std::mem::take(&mut built[r]);
            out.push(k);
        }
    }
    Ok(Key::node("", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_writer::{fix_crc, item, node, text, write, Item, Options, Value};

    /// The tree the reader should give for `items`.
    fn expected(items: &[Item]) -> Vec<Key> {
        items
            .iter()
            .map(|i| Key {
                name: i.name.clone(),
                flags: i.flags,
                value: match &i.value {
                    Value::Node(_) => KeyValue::Node,
                    Value::Int(v) => KeyValue::Int(*v),
                    Value::UInt(v) => KeyValue::UInt(*v),
                    Value::Double(v) => KeyValue::Double(*v),
                    Value::Str(s) => KeyValue::String(s.clone()),
                    Value::Bytes(b) => KeyValue::Bytes(b.clone()),
                    Value::Bool(b) => KeyValue::Bool(*b),
                },
                children: match &i.value {
                    Value::Node(c) => expected(c),
                    _ => Vec::new(),
                },
            })
            .collect()
    }

    /// Clear the file-object flag the writer sets on big values.
    fn unflag(keys: &mut [Key]) {
        for k in keys {
            k.flags &= !FLAG_FILE_OBJECT;
            unflag(&mut k.children);
        }
    }

    fn sample() -> Vec<Item> {
        vec![node(
            "configuration",
            vec![
                node(
                    "properties",
                    vec![text("name", "Win11 – ü"), item("version", Value::Int(2304))],
                ),
                node(
                    "list",
                    vec![
                        text("entry", "one"),
                        text("entry", "two"),
                        item("entry", Value::Bool(true)),
                        item("n", Value::UInt(u64::MAX)),
                        item("d", Value::Double(-1.5)),
                        item("neg", Value::Int(-7)),
                        item("blob", Value::Bytes(vec![1, 2, 3])),
                        text("empty", ""),
                    ],
                ),
                node("empty_node", vec![]),
            ],
        )]
    }

    fn parse_ok(b: &[u8]) -> Storage {
        parse(b).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn written_trees_parse_back_exactly() {
        let items = sample();
        let w = write(&items, &Options::default());
        let s = parse_ok(&w.bytes);
        assert_eq!(s.tree.children, expected(&items));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.replayed, 0);
        assert_eq!(s.header.offset, 0, "sequence 3 at 0x0 beats 2 at 0x1000");
        assert_eq!(s.tree.string("configuration/properties/name"), Some("Win11 – ü"));
        let list: Vec<String> = s
            .tree
            .all("configuration/list/entry")
            .iter()
            .map(|k| k.value.to_string())
            .collect();
        assert_eq!(list, ["\"one\"", "\"two\"", "true"]);
        assert_eq!(s.tree.all("configuration/*").len(), 3);
        assert_eq!(s.tree.all("*/*/entry").len(), 3);
        assert!(s.tree.get("configuration/nothing").is_none());
    }

    #[test]
    fn small_tables_padding_big_values_and_stale_tables() {
        let big = "x".repeat(3000);
        let items = vec![node(
            "root",
            (0..40)
                .map(|i| text(&format!("k{i}"), &format!("value {i}")))
                .chain([text("big", &big), item("bytes", Value::Bytes(vec![7; 5000]))])
                .collect(),
        )];
        let opts = Options {
            table_size: 0x200,
            pad: 5,
            stale_tables: true,
            sequences: [1, 9],
            ..Options::default()
        };
        let w = write(&items, &opts);
        assert!(w.tables.len() > 3 && w.file_objects.len() == 2);
        let s = parse_ok(&w.bytes);
        let mut got = s.tree.children.clone();
        unflag(&mut got);
        assert_eq!(got, expected(&items));
        assert_eq!(s.header.offset, 0x1000);
        assert_eq!(s.tree.string("root/big"), Some(big.as_str()));
    }

    fn kind(e: &VmcxError) -> &'static str {
        match e {
            VmcxError::TooLarge { .. } => "too large",
            VmcxError::NotStorage => "not storage",
            VmcxError::Headers { .. } => "headers",
            VmcxError::Version { .. } => "version",
            VmcxError::Truncated { .. } => "truncated",
            VmcxError::Signature { .. } => "signature",
            VmcxError::Checksum { .. } => "checksum",
            VmcxError::UnknownType { .. } => "unknown type",
            VmcxError::Parent { .. } => "parent",
            VmcxError::Loop { .. } => "loop",
            VmcxError::Corrupt { .. } => "corrupt",
        }
    }

    fn err(b: &[u8]) -> VmcxError {
        match parse(b) {
            Ok(s) => panic!("parsed: {:?}", s.tree),
            Err(e) => e,
        }
    }

    #[test]
    fn headers() {
        let w = write(&sample(), &Options::default());
        // First header damaged: the second is used.
        let mut b = w.bytes.clone();
        b[20] ^= 1;
        assert_eq!(parse_ok(&b).header.offset, 0x1000);
        // Both damaged: both reasons.
        b[0x1000 + 20] ^= 1;
        let e = err(&b);
        assert_eq!(kind(&e), "headers");
        assert!(
            e.to_string().contains("no valid header: header at 0x0: checksum"),
            "{e}"
        );
        // No signature at all.
        assert_eq!(err(&[0u8; 0x3000]), VmcxError::NotStorage);
        assert_eq!(err(b"short"), VmcxError::NotStorage);
        // Another version (checksum fixed): refused as such.
        let mut b = w.bytes.clone();
        for h in [0, 0x1000] {
            b[h + 10] = 0x00;
            b[h + 11] = 0x05;
            fix_crc(&mut b, h, 46, 4);
        }
        assert!(matches!(err(&b), VmcxError::Version { version: 0x500, .. }));
        // Truncated inside the key tables.
        let e = err(&w.bytes[..0x3100]);
        assert_eq!(kind(&e), "truncated", "{e}");
        // Too large.
        let big = vec![0u8; MAX_FILE_BYTES as usize + 1];
        assert_eq!(kind(&err(&big)), "too large");
    }

    #[test]
    fn object_and_key_table_damage() {
        let w = write(&sample(), &Options::default());
        // An object-table entry.
        let mut b = w.bytes.clone();
        b[0x2008 + 18 * 5 + 7] ^= 1;
        let e = err(&b);
        assert_eq!(kind(&e), "checksum");
        assert!(e.to_string().starts_with("object table entry 5 at 0x2062"), "{e}");
        // An unknown object type (checksum fixed).
        let mut b = w.bytes.clone();
        b[0x2008] = 9;
        fix_crc(&mut b, 0x2008, 18, 1);
        assert_eq!(kind(&err(&b)), "unknown type");
        // The object table's signature.
        let mut b = w.bytes.clone();
        b[0x2000] = 0;
        assert_eq!(kind(&err(&b)), "signature");
        // A key table header.
        let mut b = w.bytes.clone();
        b[w.tables[0] as usize + 4] ^= 1;
        assert_eq!(kind(&err(&b)), "checksum");
        // Two tables of one index and sequence.
        let opts = Options {
            stale_tables: true,
            ..Options::default()
        };
        let w2 = write(&sample(), &opts);
        let mut b = w2.bytes.clone();
        let old = w2.tables[0] as usize - 0x1000;
        b[old + 4] = 2;
        fix_crc(&mut b, old, 10, 6);
        assert_eq!(kind(&err(&b)), "corrupt");
    }

    #[test]
    fn overlapping_tables_are_refused() {
        let items = vec![node(
            "r",
            (0..200).map(|i| text(&format!("k{i}"), "some text")).collect(),
        )];
        let w = write(&items, &Options::default());
        assert!(w.tables.len() >= 2);
        // Table 1's object entry grows over table 2.
        let mut b = w.bytes.clone();
        b[0x2008 + 13..0x2008 + 17].copy_from_slice(&0x2000u32.to_le_bytes());
        fix_crc(&mut b, 0x2008, 18, 1);
        let e = err(&b);
        assert!(e.to_string().contains("overlaps the key table at 0x3000"), "{e}");
    }

    /// Change a key entry's bytes and fix its checksum.
    fn edit_key(b: &mut [u8], at: u64, f: impl FnOnce(&mut [u8])) {
        let at = at as usize;
        let kind = b[at];
        f(&mut b[at..]);
        let name_len = usize::from(b[at + 20]);
        let value_len = match kind {
            3..=5 => 8,
            8 => 4,
            9 => 12,
            _ => 4 + u32::from_le_bytes(b[at + 21 + name_len..][..4].try_into().unwrap()) as usize,
        };
        fix_crc(b, at, 21 + name_len + value_len, 12);
    }

    #[test]
    fn key_damage() {
        let w = write(&sample(), &Options::default());
        // A bad checksum: that key and its subtree are skipped, with a warning.
        let mut b = w.bytes.clone();
        let list = w.key_offset("configuration/list") as usize;
        b[list + 16] ^= 1; // its insertion sequence
        let s = parse_ok(&b);
        assert!(s.tree.get("configuration/list").is_none());
        assert!(s.tree.get("configuration/properties/name").is_some());
        assert_eq!(s.warnings.len(), 1);
        assert!(
            s.warnings[0].contains("\"list\"") && s.warnings[0].contains("with the 8 keys below it"),
            "{:?}",
            s.warnings
        );
        // A damaged parent pointer is a damaged key too, not a dangling parent.
        let mut b = w.bytes.clone();
        b[w.key_offset("configuration/list/n") as usize + 9] ^= 0x10;
        let s = parse_ok(&b);
        assert!(s.tree.get("configuration/list/n").is_none());
        assert_eq!(s.tree.all("configuration/list/*").len(), 7);
        assert_eq!(s.warnings.len(), 1);
        // A size past the table.
        let mut b = w.bytes.clone();
        edit_key(&mut b, w.key_offset("configuration/properties/name"), |e| {
            e[2..6].copy_from_slice(&0x10000u32.to_le_bytes())
        });
        let e = err(&b);
        assert!(e.to_string().contains("runs past its key table"), "{e}");
        // A size smaller than a header.
        let mut b = w.bytes.clone();
        edit_key(&mut b, w.key_offset("configuration"), |e| {
            e[2..6].copy_from_slice(&5u32.to_le_bytes())
        });
        assert_eq!(kind(&err(&b)), "corrupt");
        // A string length past its entry.
        let mut b = w.bytes.clone();
        let at = w.key_offset("configuration/properties/name") as usize;
        let n = usize::from(b[at + 20]);
        b[at + 21 + n..][..4].copy_from_slice(&0x100u32.to_le_bytes());
        let e = err(&b);
        assert!(e.to_string().contains("value of 260 bytes runs past its entry"), "{e}");
        // A parent pointer to nothing.
        let mut b = w.bytes.clone();
        edit_key(&mut b, w.key_offset("configuration/properties"), |e| {
            e[8..12].copy_from_slice(&0x11u32.to_le_bytes())
        });
        assert_eq!(kind(&err(&b)), "parent");
        // To a table that does not exist.
        let mut b = w.bytes.clone();
        edit_key(&mut b, w.key_offset("configuration/properties"), |e| {
            e[6..8].copy_from_slice(&7u16.to_le_bytes())
        });
        assert_eq!(kind(&err(&b)), "parent");
        // To a value.
        let mut b = w.bytes.clone();
        let name_at = w.key_offset("configuration/properties/name") - w.tables[0];
        edit_key(&mut b, w.key_offset("configuration/list/n"), |e| {
            e[8..12].copy_from_slice(&(name_at as u32).to_le_bytes())
        });
        assert!(err(&b).to_string().contains("is a value, not a node"));
        // A loop: configuration's parent is its own child.
        let mut b = w.bytes.clone();
        let props_at = w.key_offset("configuration/properties") - w.tables[0];
        edit_key(&mut b, w.key_offset("configuration"), |e| {
            e[6..8].copy_from_slice(&1u16.to_le_bytes());
            e[8..12].copy_from_slice(&(props_at as u32).to_le_bytes());
        });
        assert_eq!(kind(&err(&b)), "loop");
        // An unknown key type.
        let mut b = w.bytes.clone();
        edit_key(&mut b, w.key_offset("configuration/list/n"), |e| e[0] = 2);
        assert_eq!(kind(&err(&b)), "unknown type");
        // A name without its NUL.
        let mut b = w.bytes.clone();
        edit_key(&mut b, w.key_offset("configuration/list/n"), |e| e[21 + 1] = b'x');
        assert!(err(&b).to_string().contains("no terminating NUL"));
        // A file-object pointer to no file object.
        let w3 = write(&[text("big", &"y".repeat(1500))], &Options::default());
        let mut b = w3.bytes.clone();
        let at = w3.key_offset("big") as usize;
        b[at + 21 + 4 + 4..][..8].copy_from_slice(&0x2000u64.to_le_bytes());
        b[at + 1] = 1;
        fix_crc(&mut b, at, 21 + 4 + 12, 12);
        assert!(err(&b).to_string().contains("where no file object is"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut it = item("leaf", Value::Bool(true));
        for i in 0..MAX_DEPTH + 1 {
            it = node(&format!("n{i}"), vec![it]);
        }
        let w = write(&[it], &Options::default());
        assert!(err(&w.bytes).to_string().contains("deeper than 128"));
    }

    #[test]
    fn dirty_log_is_replayed_in_memory() {
        let items = sample();
        let opts = Options {
            dirty: true,
            table_size: 0x100,
            ..Options::default()
        };
        let w = write(&items, &opts);
        let before = w.bytes.clone();
        let s = parse_ok(&w.bytes);
        assert_eq!(w.bytes, before);
        assert_eq!(s.tree.children, expected(&items));
        assert_eq!(s.replayed, w.tables.len());
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("not closed cleanly"));
        // A damaged entry in the counted part: refused.
        let mut b = w.bytes.clone();
        b[w.log_offset as usize + 34 + 3] ^= 1;
        assert_eq!(kind(&err(&b)), "checksum");
        // Damaged data.
        let mut b = w.bytes.clone();
        b[w.log_offset as usize + 0x1000 + 11] ^= 1;
        assert!(err(&b).to_string().contains("replay log entry 0's data"));
        // A clean log ignores its left-over entries (junk data for table 1).
        let w = write(&items, &Options::default());
        assert_eq!(parse_ok(&w.bytes).tree.children, expected(&items));
    }

    #[test]
    fn garbage_never_panics() {
        let w = write(
            &sample(),
            &Options {
                table_size: 0x100,
                ..Options::default()
            },
        );
        let mut x: u64 = 0x1234_5678;
        for _ in 0..3000 {
            let mut b = w.bytes.clone();
            for _ in 0..1 + x % 4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % b.len();
                b[at] = (x >> 40) as u8;
            }
            let _ = parse(&b);
            let cut = (x >> 20) as usize % b.len();
            let _ = parse(&b[..cut]);
        }
    }
}
