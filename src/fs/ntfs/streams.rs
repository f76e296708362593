//! Named data streams (alternate data streams): the named `$DATA` attributes of a file,
//! listed with their sizes and read by offset like the unnamed one.
//!
//! Names are matched exactly, else without regard to case, as Windows matches them.
//! Streams are read with the same care as file contents: LZNT1-compressed ones are
//! decompressed (a file in a compressed directory has its streams compressed too), an
//! encrypted one is an error, never its bytes on disk; holes and the tail past the valid
//! data length read as zeros.

use ntfs::structured_values::NtfsFileAttributeFlags;
use ntfs::NtfsAttributeType;

use super::record::{u32_at, Attribute, Value, ATTR_COMPRESSION_MASK, ATTR_ENCRYPTED};
use super::stream::{stream, Stream};
use super::{fs_err, NtfsFs};
use crate::{Error, Result};

/// The stream in which a WOF-compressed file keeps its compressed bytes: part of how the
/// file is stored, not a stream of its own, so Windows does not list it either.
pub(super) const WOF_STREAM: &str = "WofCompressedData";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NamedStream {
    pub name: String,
    pub size: u64,
}

fn is_data(a: &Attribute) -> bool {
    a.ty == NtfsAttributeType::Data as u32 && !a.name.is_empty()
}

fn lossy(name: &[u16]) -> String {
    String::from_utf16_lossy(name)
}

/// Every named stream of a file, once each (a long one is split over several
/// attributes), in record order. A stream whose pieces do not fit together is listed
/// with size 0; reading it says why.
pub(super) fn list(attrs: &[Attribute]) -> Vec<NamedStream> {
    let mut out: Vec<NamedStream> = Vec::new();
    for a in attrs.iter().filter(|a| is_data(a)) {
        let name = lossy(&a.name);
        if out.iter().any(|s| s.name == name) {
            continue;
        }
        let size = String::from_utf16(&a.name)
            .ok()
            .and_then(|n| {
                stream(attrs, NtfsAttributeType::Data, &n)
                    .ok()
                    .flatten()
                    .map(|s| s.size())
            })
            .unwrap_or(0);
        out.push(NamedStream { name, size });
    }
    out
}

/// The stored name of stream `name` of a file: exactly, else without regard to case.
pub(super) fn find<'a>(streams: &'a [NamedStream], name: &str) -> Option<&'a NamedStream> {
    streams.iter().find(|s| s.name == name).or_else(|| {
        let key = name.to_uppercase();
        streams.iter().find(|s| s.name.to_uppercase() == key)
    })
}

impl NtfsFs {
    /// Read at most `buf.len()` bytes of stream `name` of file record `n` at `offset`.
    pub(super) fn read_named(&self, n: u64, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (_, attrs) = self.attributes(n)?;
        let streams = list(&attrs);
        let found =
            find(&streams, name).ok_or_else(|| Error::NotFound(format!("ntfs file record {n}: stream {name:?}")))?;
        let index = streams.iter().position(|s| s.name == found.name).unwrap_or(0) as u64;
        let what = format!("file record {n}: stream {:?}", found.name);
        // The stored name as UTF-16 for the lookup: a name that is not valid UTF-16
        // (allowed on disk) cannot be asked for by its lossy spelling.
        let stored = attrs
            .iter()
            .filter(|a| is_data(a))
            .find(|a| lossy(&a.name) == found.name)
            .map(|a| a.name.clone())
            .unwrap_or_default();
        let stored =
            String::from_utf16(&stored).map_err(|_| fs_err(format!("{what}: its name is not valid UTF-16")))?;
        let s = stream(&attrs, NtfsAttributeType::Data, &stored)
            .map_err(|e| fs_err(format!("{what}: {e}")))?
            .ok_or_else(|| Error::NotFound(what.clone()))?;
        if let Some(why) = unreadable(&attrs, &s) {
            log::warn!("ntfs: {what} cannot be read: {why}");
            return Err(fs_err(format!("{what}: {why}")));
        }
        if offset >= s.size() || buf.is_empty() {
            return Ok(0);
        }
        match &s {
            Stream::Resident(v) => {
                let start = offset as usize;
                let len = buf.len().min(v.len() - start);
                buf[..len].copy_from_slice(&v[start..start + len]);
                Ok(len)
            }
            Stream::NonResident { head, flags, .. } => {
                let map = self
                    .disk
                    .map(what.clone(), &s)
                    .map_err(|e| fs_err(format!("{what}: {e}")))?;
                if flags & ATTR_COMPRESSION_MASK == 0 {
                    return map.read(&*self.disk.volume, offset, buf);
                }
                let unit = self.lznt1_unit(*flags, head.compression_unit).map_err(|why| {
                    log::warn!("ntfs: {what} cannot be read: {why}");
                    fs_err(format!("{what}: {why}"))
                })?;
                // Decoded units are cached by (key, unit): the key must differ from every
                // record number (the unnamed streams' keys) and between a file's streams.
                let key = 1 << 63 | (index & 0x7FFF) << 48 | n;
                self.read_compressed(key, &map, unit, offset, buf)
                    .inspect_err(|e| log::warn!("{e}"))
            }
        }
    }

    /// The compression unit of an LZNT1-compressed stream, in bytes, if it is one
    /// Windows writes (as for the unnamed stream, see `compressed`).
    fn lznt1_unit(&self, flags: u16, shift: u8) -> std::result::Result<u64, String> {
        let method = flags & ATTR_COMPRESSION_MASK;
        if method != 1 {
            return Err(format!("compressed with method {method:#x}, not LZNT1"));
        }
        let unit = self.disk.cluster_size.checked_shl(u32::from(shift)).unwrap_or(u64::MAX);
        if shift == 0 || unit > 64 << 10 || unit % 4096 != 0 {
            return Err(format!(
                "LZNT1-compressed in units of {unit} bytes, which Windows never writes"
            ));
        }
        Ok(unit)
    }
}

/// Why a stream's bytes on disk are not its contents, if they are not.
fn unreadable(attrs: &[Attribute], s: &Stream) -> Option<String> {
    let si_encrypted = attrs.iter().any(|a| {
        a.ty == NtfsAttributeType::StandardInformation as u32
            && matches!(&a.value, Value::Resident(v) if v.len() >= 36
                && NtfsFileAttributeFlags::from_bits_retain(u32_at(v, 32)).contains(NtfsFileAttributeFlags::ENCRYPTED))
    });
    let flags = match s {
        Stream::NonResident { flags, .. } => *flags,
        Stream::Resident(_) => 0,
    };
    if si_encrypted || flags & ATTR_ENCRYPTED != 0 {
        return Some("EFS-encrypted; ckptfs cannot decrypt it".into());
    }
    None
}
