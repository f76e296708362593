//! Extended attributes, named and encoded as ntfs-3g names and encodes them, so that
//! what works on an ntfs-3g mount works here:
//!
//! | name | value |
//! |---|---|
//! | `user.<stream>` | the bytes of alternate data stream `<stream>` (listed) |
//! | `system.ntfs_attrib` | the FILE_ATTRIBUTE_* flags, 4 bytes little-endian |
//! | `system.ntfs_attrib_be` | the same, big-endian (what `setfattr`/`getfattr -e hex` users type) |
//! | `system.ntfs_crtime` | creation time, 8 bytes little-endian, 100 ns units since 1601 |
//! | `system.ntfs_crtime_be` | the same, big-endian |
//! | `system.ntfs_times` | creation, modification, access, MFT change times: 4 × 8 bytes LE |
//! | `system.ntfs_times_be` | the same, each big-endian |
//! | `system.ntfs_reparse_data` | the raw reparse buffer (tag, length, data), if any |
//! | `system.ntfs_dos_name` | the DOS 8.3 name, if the file has a separate one |
//!
//! As on ntfs-3g, only the `user.` names are listed (`getfattr -d`, `cp -a` and
//! `rsync -X` see the streams); the `system.` ones answer when asked by name. Streams
//! larger than [`XATTR_MAX`] are listed but getting one fails with E2BIG (ntfs-3g lists
//! them too, and the kernel would refuse them anyway); they are read whole through the
//! CLI (`ckptfs cat PATH:stream`). The stream `WofCompressedData` of a WOF-compressed
//! file is its compressed contents, not a stream of its own, and is not listed.
//! Symlinks list no `user.` names: the kernel does not let them have any.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;

use ntfs::structured_values::NtfsFileNamespace;
use ntfs::NtfsAttributeType;

use super::record::{u32_at, u64_at, Value, FLAG_DIRECTORY};
use super::stream::stream;
use super::streams::{self, NamedStream, WOF_STREAM};
use super::{fs_err, NtfsFs};
use crate::fs::{FileKind, XATTR_MAX};
use crate::{Error, Result};

/// IO_REPARSE_TAG_WOF.
const TAG_WOF: u32 = 0x8000_0017;
const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;
const USER: &str = "user.";
/// Reparse buffers are at most 16 KiB.
const MAX_REPARSE: u64 = 16 << 10;

/// What the extended attributes of one node show, read from its record once.
pub(super) struct Extra {
    kind: FileKind,
    attrib: u32,
    /// Creation, modification, access, MFT change: ntfs-3g's order.
    times: [u64; 4],
    streams: Vec<NamedStream>,
    reparse: Option<Vec<u8>>,
    dos_name: Option<Vec<u8>>,
}

impl Extra {
    fn weight(&self) -> usize {
        let names: usize = self.streams.iter().map(|s| 32 + s.name.len()).sum();
        let reparse = self.reparse.as_ref().map_or(0, Vec::len);
        128 + names + reparse
    }
}

/// The names answered besides `user.*`.
const SYSTEM: [&str; 8] = [
    "system.ntfs_attrib",
    "system.ntfs_attrib_be",
    "system.ntfs_crtime",
    "system.ntfs_crtime_be",
    "system.ntfs_times",
    "system.ntfs_times_be",
    "system.ntfs_reparse_data",
    "system.ntfs_dos_name",
];

impl NtfsFs {
    fn extra(&self, n: u64) -> Result<Arc<Extra>> {
        if let Some(e) = self.extra.get(n) {
            return Ok(e);
        }
        let kind = self.node(n)?.kind;
        let (header, attrs) = self.attributes(n)?;
        let si = attrs
            .iter()
            .find(|a| a.ty == NtfsAttributeType::StandardInformation as u32)
            .and_then(|a| match &a.value {
                Value::Resident(v) if v.len() >= 48 => Some(v.as_slice()),
                _ => None,
            })
            .ok_or_else(|| fs_err(format!("file record {n}: $STANDARD_INFORMATION is damaged")))?;
        // As ntfs-3g: the directory bit from the record (NTFS keeps it out of
        // $STANDARD_INFORMATION), and NORMAL when no flag is set.
        let mut attrib = u32_at(si, 32);
        if header.flags & FLAG_DIRECTORY != 0 {
            attrib |= FILE_ATTRIBUTE_DIRECTORY;
        } else {
            attrib &= !FILE_ATTRIBUTE_DIRECTORY;
        }
        if attrib == 0 {
            attrib = FILE_ATTRIBUTE_NORMAL;
        }
        let reparse = match stream(&attrs, NtfsAttributeType::ReparsePoint, "") {
            Ok(Some(s)) => self.disk.read_all("$REPARSE_POINT".into(), &s, MAX_REPARSE).ok(),
            _ => None,
        };
        let wof = reparse
            .as_ref()
            .is_some_and(|r| r.len() >= 4 && u32_at(r, 0) == TAG_WOF);
        let mut list = streams::list(&attrs);
        if wof {
            list.retain(|s| s.name != WOF_STREAM);
        }
        let dos_name = attrs.iter().find_map(|a| match &a.value {
            Value::Resident(v)
                if a.ty == NtfsAttributeType::FileName as u32
                    && v.len() >= 66
                    && v[65] == NtfsFileNamespace::Dos as u8 =>
            {
                let units: Vec<u16> = v[66..]
                    .chunks_exact(2)
                    .take(v[64] as usize)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Some(String::from_utf16_lossy(&units).into_bytes())
            }
            _ => None,
        });
        let extra = Arc::new(Extra {
            kind,
            attrib,
            times: [u64_at(si, 0), u64_at(si, 8), u64_at(si, 24), u64_at(si, 16)],
            streams: list,
            reparse,
            dos_name,
        });
        self.extra.put(n, extra.clone(), extra.weight());
        Ok(extra)
    }

    pub(super) fn list_xattrs(&self, n: u64) -> Result<Vec<OsString>> {
        let e = self.extra(n)?;
        if e.kind == FileKind::Symlink {
            return Ok(Vec::new());
        }
        Ok(e.streams
            .iter()
            .map(|s| OsString::from(format!("{USER}{}", s.name)))
            .collect())
    }

    pub(super) fn get_xattr(&self, n: u64, name: &OsStr) -> Result<Option<Vec<u8>>> {
        let name = name.to_string_lossy();
        // Tools ask every file for names no NTFS file has (security.selinux,
        // system.posix_acl_access): answered without reading its record.
        if !name.starts_with(USER) && !SYSTEM.contains(&name.as_ref()) {
            self.node(n)?;
            return Ok(None);
        }
        let e = self.extra(n)?;
        let be = |v: &[u64]| v.iter().flat_map(|t| t.to_be_bytes()).collect::<Vec<u8>>();
        let le = |v: &[u64]| v.iter().flat_map(|t| t.to_le_bytes()).collect::<Vec<u8>>();
        Ok(match name.as_ref() {
            "system.ntfs_attrib" => Some(e.attrib.to_le_bytes().to_vec()),
            "system.ntfs_attrib_be" => Some(e.attrib.to_be_bytes().to_vec()),
            "system.ntfs_crtime" => Some(le(&e.times[..1])),
            "system.ntfs_crtime_be" => Some(be(&e.times[..1])),
            "system.ntfs_times" => Some(le(&e.times)),
            "system.ntfs_times_be" => Some(be(&e.times)),
            "system.ntfs_reparse_data" => e.reparse.clone(),
            "system.ntfs_dos_name" => e.dos_name.clone(),
            _ => {
                let stream = &name[USER.len()..];
                if e.kind == FileKind::Symlink {
                    return Ok(None);
                }
                let Some(s) = streams::find(&e.streams, stream) else {
                    return Ok(None);
                };
                if s.size > XATTR_MAX {
                    return Err(Error::TooLarge(format!(
                        "ntfs file record {n}: stream {:?} is {} bytes, more than the {XATTR_MAX} an extended attribute may hold (read it as FILE:{})",
                        s.name, s.size, s.name
                    )));
                }
                let mut buf = vec![0u8; s.size as usize];
                let got = self.read_named(n, &s.name, 0, &mut buf)?;
                buf.truncate(got);
                Some(buf)
            }
        })
    }

    pub(super) fn stream_list(&self, n: u64) -> Result<Vec<NamedStream>> {
        Ok(self.extra(n)?.streams.clone())
    }
}
