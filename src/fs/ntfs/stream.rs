//! Attributes gathered across a file's records, and their values as streams.
//!
//! A file whose attributes do not fit its base record keeps an `$ATTRIBUTE_LIST` naming
//! the extension record of each attribute, and a long non-resident value may be split
//! into pieces, each in its own record, covering consecutive VCN ranges. The `ntfs`
//! crate links such pieces by their attribute instance number, but instance numbers are
//! only unique within one record (ntfs-3g and Windows number each extension record's
//! attributes afresh), so pieces are gathered here by (record, instance) from the list
//! and ordered by their lowest VCN.

use std::collections::HashMap;

use ntfs::NtfsAttributeType;

use super::record::{parse_attribute_list, Attribute, NonResident, Record, Value};
use super::runs::RunMap;
use super::Disk;
use crate::Result;

/// A legitimate attribute list stays far below this (Windows caps it at 256 KiB).
const MAX_ATTRIBUTE_LIST: u64 = 4 << 20;
/// Extension records one file may use; the attribute list size bounds it anyway.
const MAX_EXTENSION_RECORDS: usize = 1 << 16;

/// An attribute's whole value.
pub(super) enum Stream<'a> {
    Resident(&'a [u8]),
    NonResident {
        /// The piece at VCN 0: the only one whose sizes are meaningful.
        head: &'a NonResident,
        flags: u16,
        pieces: Vec<&'a NonResident>,
    },
}

impl Stream<'_> {
    pub fn size(&self) -> u64 {
        match self {
            Stream::Resident(v) => v.len() as u64,
            Stream::NonResident { head, .. } => head.size,
        }
    }
}

/// The value of the attribute of type `ty` named `name` ("" for unnamed), if any.
pub(super) fn stream<'a>(
    attrs: &'a [Attribute],
    ty: NtfsAttributeType,
    name: &str,
) -> std::result::Result<Option<Stream<'a>>, String> {
    let parts: Vec<&Attribute> = attrs.iter().filter(|a| a.ty == ty as u32 && a.name_is(name)).collect();
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let mut pieces = Vec::with_capacity(parts.len());
    for a in &parts {
        match &a.value {
            Value::Resident(v) if parts.len() == 1 => return Ok(Some(Stream::Resident(v))),
            Value::Resident(_) => return Err(format!("{ty} {name:?} is both resident and split")),
            Value::NonResident(nr) => pieces.push(nr),
        }
    }
    pieces.sort_by_key(|p| p.lowest_vcn);
    let head = pieces[0];
    if head.lowest_vcn != 0 {
        return Err(format!("{ty} {name:?} has no piece at VCN 0"));
    }
    Ok(Some(Stream::NonResident {
        head,
        flags: first.flags,
        pieces,
    }))
}

impl Disk {
    /// Where a non-resident stream's bytes are. `what` names it in errors.
    pub fn map(&self, what: String, s: &Stream) -> std::result::Result<RunMap, String> {
        let Stream::NonResident { head, pieces, .. } = s else {
            return Err(format!("{what} is resident"));
        };
        let extents: Vec<_> = pieces.iter().flat_map(|p| p.extents.iter().copied()).collect();
        RunMap::new(
            what,
            self.cluster_size,
            self.total_clusters,
            &extents,
            head.size,
            head.initialized,
        )
    }

    /// A whole stream in memory, for small metadata values; `cap` bounds a damaged size.
    pub fn read_all(&self, what: String, s: &Stream, cap: u64) -> Result<Vec<u8>> {
        match s {
            Stream::Resident(v) => Ok(v.to_vec()),
            Stream::NonResident { head, .. } => {
                if head.size > cap {
                    return Err(super::fs_err(format!(
                        "{what} is {} bytes, more than the {cap} a sound volume has",
                        head.size
                    )));
                }
                let map = self
                    .map(what.clone(), s)
                    .map_err(|e| super::fs_err(format!("{what}: {e}")))?;
                let mut buf = vec![0u8; head.size as usize];
                map.read(&*self.volume, 0, &mut buf)?;
                Ok(buf)
            }
        }
    }

    /// Every attribute of the file whose base record is `base`, following its attribute
    /// list into extension records. `read_record` reads a record by number; it is given
    /// the attributes gathered so far (the `$MFT` needs its own `$DATA` pieces to find its
    /// extension records).
    pub fn collect(
        &self,
        base: &Record,
        mut read_record: impl FnMut(u64, &[Attribute]) -> Result<Option<Record>>,
    ) -> Result<Vec<Attribute>> {
        let n = base.number;
        let mut out = base.attributes().map_err(super::fs_err)?;
        let list = stream(&out, NtfsAttributeType::AttributeList, "")
            .map_err(|e| super::fs_err(format!("file record {n}: {e}")))?;
        let Some(list) = list else {
            return Ok(out);
        };
        let bytes = self.read_all(format!("file record {n}: $ATTRIBUTE_LIST"), &list, MAX_ATTRIBUTE_LIST)?;
        let entries = parse_attribute_list(&bytes)
            .map_err(|e| super::fs_err(format!("file record {n}: $ATTRIBUTE_LIST: {e}")))?;
        let mut extensions: HashMap<u64, Vec<Attribute>> = HashMap::new();
        for e in entries.into_iter().filter(|e| e.record != n) {
            if !extensions.contains_key(&e.record) {
                if extensions.len() >= MAX_EXTENSION_RECORDS {
                    return Err(super::fs_err(format!(
                        "file record {n}: its attribute list names more than {MAX_EXTENSION_RECORDS} records"
                    )));
                }
                let rec = read_record(e.record, &out)?.ok_or_else(|| {
                    super::fs_err(format!(
                        "file record {n}: its attribute list names record {}, which is empty",
                        e.record
                    ))
                })?;
                if rec.base_record() != n {
                    return Err(super::fs_err(format!(
                        "file record {n}: its attribute list names record {}, which belongs to record {}",
                        e.record,
                        rec.base_record()
                    )));
                }
                extensions.insert(e.record, rec.attributes().map_err(super::fs_err)?);
            }
            let found = extensions[&e.record]
                .iter()
                .find(|a| a.ty == e.ty && a.instance == e.instance)
                .ok_or_else(|| {
                    super::fs_err(format!(
                        "file record {n}: attribute {:#x} instance {} is not in record {} as its attribute list says",
                        e.ty, e.instance, e.record
                    ))
                })?;
            out.push(found.clone());
        }
        Ok(out)
    }
}
