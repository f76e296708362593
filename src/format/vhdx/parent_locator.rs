//! The parent locator metadata item (MS-VHDX 2.6.2.6): UTF-16 key/value pairs naming the
//! parent's DataWriteGuid (`parent_linkage`, `parent_linkage2`) and where to find it
//! (`relative_path`, `volume_path`, `absolute_win32_path`).

use uuid::{uuid, Uuid};

use super::VhdxError;
use crate::bytes::{guid, le_u16, le_u32};

pub const VHDX_LOCATOR_TYPE: Uuid = uuid!("B04AEFB7-D19E-4A81-B789-25B8E9445913");

const HEADER_SIZE: usize = 20;
const ENTRY_SIZE: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    pub locator_type: Uuid,
    /// Key/value pairs in the order stored.
    pub entries: Vec<(String, String)>,
}

impl ParentLocator {
    /// `item_offset` (the item's offset in the file) is only used in messages.
    pub fn parse(b: &[u8], item_offset: u64) -> Result<Self, VhdxError> {
        let corrupt = |reason: String| VhdxError::corrupt("parent locator", item_offset, reason);
        if b.len() < HEADER_SIZE {
            return Err(corrupt(format!(
                "only {} bytes, the header alone is {HEADER_SIZE}",
                b.len()
            )));
        }
        let locator_type = guid(b, 0);
        let count = usize::from(le_u16(b, 18));
        if HEADER_SIZE + count * ENTRY_SIZE > b.len() {
            return Err(corrupt(format!("{count} entries do not fit in {} bytes", b.len())));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = HEADER_SIZE + i * ENTRY_SIZE;
            let key = utf16_field(b, le_u32(b, at), le_u16(b, at + 8))
                .ok_or_else(|| corrupt(format!("entry {i}: key lies outside the item or is not UTF-16")))?;
            let value = utf16_field(b, le_u32(b, at + 4), le_u16(b, at + 10)).ok_or_else(|| {
                corrupt(format!(
                    "entry {i} ({key}): value lies outside the item or is not UTF-16"
                ))
            })?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(corrupt(format!("key {key:?} appears twice")));
            }
            entries.push((key, value));
        }
        let locator = ParentLocator { locator_type, entries };
        if locator_type != VHDX_LOCATOR_TYPE {
            return Err(VhdxError::Unsupported(format!(
                "parent locator at offset {item_offset:#x} has type {locator_type}, not the VHDX locator type"
            )));
        }
        if locator.get("parent_linkage").is_none() {
            return Err(corrupt("no parent_linkage entry".into()));
        }
        locator.linkages().map_err(corrupt)?;
        Ok(locator)
    }

    /// The value of `key` (keys are case sensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The DataWriteGuids a parent may have: `parent_linkage`, then `parent_linkage2`
    /// unless it is nil (Hyper-V writes a nil `parent_linkage2` when there is none).
    pub fn linkages(&self) -> Result<Vec<Uuid>, String> {
        let mut out = Vec::new();
        for key in ["parent_linkage", "parent_linkage2"] {
            if let Some(v) = self.get(key) {
                let g = parse_braced_guid(v).ok_or_else(|| format!("{key} {v:?} is not a GUID in braces"))?;
                if key == "parent_linkage" || !g.is_nil() {
                    out.push(g);
                }
            }
        }
        Ok(out)
    }

    /// Paths to try for the parent, in the order the specification gives.
    pub fn paths(&self) -> Vec<(&'static str, &str)> {
        ["relative_path", "volume_path", "absolute_win32_path"]
            .into_iter()
            .filter_map(|k| self.get(k).map(|v| (k, v)))
            .collect()
    }
}

fn utf16_field(b: &[u8], offset: u32, len: u16) -> Option<String> {
    let start = offset as usize;
    let end = start.checked_add(usize::from(len))?;
    if offset == 0 || len == 0 || len % 2 != 0 || end > b.len() {
        return None;
    }
    let units: Vec<u16> = b[start..end]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// `{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}`, any letter case; surrounding blanks and a
/// trailing NUL (written by some tools) are tolerated.
pub fn parse_braced_guid(s: &str) -> Option<Uuid> {
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    if inner.len() != 36 {
        return None;
    }
    Uuid::parse_str(inner).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn locator_bytes(locator_type: Uuid, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE + pairs.len() * ENTRY_SIZE];
        b[..16].copy_from_slice(&locator_type.to_bytes_le());
        b[18..20].copy_from_slice(&(pairs.len() as u16).to_le_bytes());
        for (i, (k, v)) in pairs.iter().enumerate() {
            let mut put = |s: &str| {
                let off = b.len() as u32;
                let bytes: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
                b.extend_from_slice(&bytes);
                (off, bytes.len() as u16)
            };
            let (ko, kl) = put(k);
            let (vo, vl) = put(v);
            let at = HEADER_SIZE + i * ENTRY_SIZE;
            b[at..at + 4].copy_from_slice(&ko.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&vo.to_le_bytes());
            b[at + 8..at + 10].copy_from_slice(&kl.to_le_bytes());
            b[at + 10..at + 12].copy_from_slice(&vl.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_hyperv_style_entries() {
        let b = locator_bytes(
            VHDX_LOCATOR_TYPE,
            &[
                ("parent_linkage", "{FF34003B-11ED-4CF8-A166-B2BE05E20B80}"),
                ("relative_path", r".\Generation 1_49C4BAF3.avhdx"),
                ("absolute_win32_path", r"\\?\C:\VMs\Generation 1_49C4BAF3.avhdx"),
            ],
        );
        let l = ParentLocator::parse(&b, 0).unwrap();
        assert_eq!(
            l.linkages().unwrap(),
            vec![uuid!("ff34003b-11ed-4cf8-a166-b2be05e20b80")]
        );
        assert_eq!(l.paths()[0], ("relative_path", r".\Generation 1_49C4BAF3.avhdx"));
        assert_eq!(l.paths()[1].0, "absolute_win32_path");
    }

    #[test]
    fn linkage2_is_a_second_accepted_parent_guid() {
        let b = locator_bytes(
            VHDX_LOCATOR_TYPE,
            &[
                ("parent_linkage", "{00000000-0000-0000-0000-000000000001}"),
                ("parent_linkage2", "{00000000-0000-0000-0000-00000000000a}"),
            ],
        );
        assert_eq!(ParentLocator::parse(&b, 0).unwrap().linkages().unwrap().len(), 2);
        let nil2 = locator_bytes(
            VHDX_LOCATOR_TYPE,
            &[
                ("parent_linkage", "{00000000-0000-0000-0000-000000000001}"),
                ("parent_linkage2", "{00000000-0000-0000-0000-000000000000}"),
            ],
        );
        assert_eq!(ParentLocator::parse(&nil2, 0).unwrap().linkages().unwrap().len(), 1);
    }

    #[test]
    fn bad_linkage_type_and_bounds_are_reported() {
        let no_braces = locator_bytes(
            VHDX_LOCATOR_TYPE,
            &[("parent_linkage", "ff34003b-11ed-4cf8-a166-b2be05e20b80")],
        );
        assert!(ParentLocator::parse(&no_braces, 0)
            .unwrap_err()
            .to_string()
            .contains("not a GUID in braces"));
        let missing = locator_bytes(VHDX_LOCATOR_TYPE, &[("relative_path", "x.vhdx")]);
        assert!(ParentLocator::parse(&missing, 0)
            .unwrap_err()
            .to_string()
            .contains("no parent_linkage"));
        let other_type = locator_bytes(
            Uuid::nil(),
            &[("parent_linkage", "{ff34003b-11ed-4cf8-a166-b2be05e20b80}")],
        );
        assert!(matches!(
            ParentLocator::parse(&other_type, 0),
            Err(VhdxError::Unsupported(_))
        ));
        let mut out_of_bounds = locator_bytes(
            VHDX_LOCATOR_TYPE,
            &[("parent_linkage", "{ff34003b-11ed-4cf8-a166-b2be05e20b80}")],
        );
        out_of_bounds[HEADER_SIZE + 4..HEADER_SIZE + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert!(ParentLocator::parse(&out_of_bounds, 0).is_err());
        assert!(ParentLocator::parse(&[0; 5], 0).is_err());
    }

    #[test]
    fn braced_guid_any_case() {
        let g = uuid!("83ed0ec3-24c8-49a6-a959-5e4bf1288bfb");
        assert_eq!(parse_braced_guid("{83ED0EC3-24C8-49A6-A959-5E4BF1288BFB}"), Some(g));
        assert_eq!(parse_braced_guid("{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}\0"), Some(g));
        assert_eq!(parse_braced_guid("{83ed0ec324c849a6a9595e4bf1288bfb}"), None);
        assert_eq!(parse_braced_guid("83ed0ec3-24c8-49a6-a959-5e4bf1288bfb"), None);
    }
}
