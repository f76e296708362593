//! `metadata::parse_table`, `parse_items` and `parse_region`.
//!
//! Input: a flags byte, then items. Bit 0: no "metadata" signature; bit 1: the entry
//! count from the input; bit 2: the five standard items first, with values from the
//! input; bit 3: the region truncated or extended by an input amount. Each item is a
//! selector (one of the six known ids, or another), entry flags (user, virtual disk,
//! required, offset/length overrides), and its bytes.
//!
//! Exact outcomes, against a reference written here: the table parses exactly when it is
//! signed, has at most 2047 entries each inside the region (past the 64 KiB table, or
//! empty at offset 0) and at most 1 MiB, no (id, user) pair twice (all `Corrupt`), and no
//! unknown system item marked required (`Unsupported`), the first broken rule deciding.
//! The items then parse exactly when file parameters, size, disk id and both sector sizes
//! are present and long enough, block size a power of two in 1..=256 MiB, sector sizes
//! 512 or 4096, size a non-zero multiple of the logical sector up to 64 TiB, and, with a
//! parent, a parent locator that parses; and then every field equals its bytes.

use ckptfs::format::vhdx::metadata::{self as m, Metadata};
use ckptfs::format::vhdx::VhdxError;
use uuid::Uuid;

use super::{guid_at, guid_bytes, kind, le16, le32, le64, put16, put32, Input, Kind, MIB};

const KNOWN: [Uuid; 6] = [
    m::FILE_PARAMETERS,
    m::VIRTUAL_DISK_SIZE,
    m::VIRTUAL_DISK_ID,
    m::LOGICAL_SECTOR_SIZE,
    m::PHYSICAL_SECTOR_SIZE,
    m::PARENT_LOCATOR,
];

/// Where the region is said to be in the file; only used in messages.
const REGION_AT: u64 = 2 * MIB;

pub fn check(data: &[u8]) {
    let region = build(&mut Input::new(data));
    let _ = check_region(&region);
}

pub fn check_region(region: &[u8]) -> Result<Metadata, VhdxError> {
    let table = m::parse_table(region, REGION_AT, region.len() as u64);
    let exp_table = reference_table(region);
    match (&table, &exp_table) {
        (Ok(g), Ok(e)) => assert_eq!(g, e, "metadata table entries"),
        (Err(g), Err(e)) => assert_eq!(kind(g), *e, "{g}"),
        _ => panic!("metadata table: got {table:?}, the reference {exp_table:?}"),
    }
    super::note(&format!("table: {:?}", exp_table.as_ref().map(|e| e.len().min(8))));
    let got = m::parse_region(region, REGION_AT);
    let Ok(entries) = exp_table else {
        assert!(got.is_err(), "parse_region accepted a table parse_table refuses");
        return got;
    };
    let exp = reference_items(region, &entries);
    super::note(&format!(
        "items: {:?}",
        exp.as_ref()
            .map(|m| (m.has_parent, m.block_size >> 20, m.logical_sector_size))
    ));
    match (&got, &exp) {
        (Ok(g), Ok(e)) => {
            assert_eq!(g, e, "metadata items");
            // The properties the reader relies on, stated directly.
            assert!(g.block_size.is_power_of_two());
            assert!((MIB..=256 * MIB).contains(&u64::from(g.block_size)));
            assert!([512, 4096].contains(&g.logical_sector_size));
            assert!([512, 4096].contains(&g.physical_sector_size));
            assert!(g.virtual_size > 0 && g.virtual_size <= 64 << 40);
            assert_eq!(g.virtual_size % u64::from(g.logical_sector_size), 0);
            assert_eq!(g.has_parent, g.parent_locator.is_some());
        }
        (Err(g), Err(e)) => assert_eq!(kind(g), *e, "{g}"),
        _ => panic!("metadata items: got {got:?}, the reference {exp:?}"),
    }
    // The same items through `parse_items`, reading from the region.
    let again = m::parse_items(&entries, REGION_AT, |e| {
        Ok(region[e.offset as usize..][..e.length as usize].to_vec())
    });
    assert_eq!(format!("{again:?}"), format!("{got:?}"));
    got
}

fn reference_table(b: &[u8]) -> Result<Vec<m::MetadataEntry>, Kind> {
    if b.len() < m::TABLE_SIZE || &b[..8] != b"metadata" {
        return Err(Kind::Corrupt);
    }
    let count = le16(b, 10);
    if count > 2047 {
        return Err(Kind::Corrupt);
    }
    let mut out: Vec<m::MetadataEntry> = Vec::new();
    for i in 0..usize::from(count) {
        let at = 32 + 32 * i;
        let flags = le32(b, at + 24);
        let e = m::MetadataEntry {
            item_id: guid_at(b, at),
            offset: le32(b, at + 16),
            length: le32(b, at + 20),
            is_user: flags & 1 != 0,
            is_virtual_disk: flags & 2 != 0,
            is_required: flags & 4 != 0,
        };
        let inside = if e.length == 0 {
            e.offset == 0
        } else {
            e.offset as usize >= m::TABLE_SIZE && u64::from(e.offset) + u64::from(e.length) <= b.len() as u64
        };
        if !inside || u64::from(e.length) > MIB {
            return Err(Kind::Corrupt);
        }
        if out.iter().any(|o| o.item_id == e.item_id && o.is_user == e.is_user) {
            return Err(Kind::Corrupt);
        }
        if !e.is_user && e.is_required && !KNOWN.contains(&e.item_id) {
            return Err(Kind::Unsupported);
        }
        out.push(e);
    }
    Ok(out)
}

fn reference_items(b: &[u8], entries: &[m::MetadataEntry]) -> Result<Metadata, Kind> {
    let item = |id: Uuid, min: usize| -> Result<Option<(&[u8], u64)>, Kind> {
        match entries.iter().find(|e| e.item_id == id && !e.is_user) {
            None => Ok(None),
            Some(e) => {
                let bytes = &b[e.offset as usize..][..e.length as usize];
                if bytes.len() < min {
                    Err(Kind::Corrupt)
                } else {
                    Ok(Some((bytes, REGION_AT + u64::from(e.offset))))
                }
            }
        }
    };
    let need = |id, min| item(id, min)?.ok_or(Kind::Corrupt);
    let (params, _) = need(m::FILE_PARAMETERS, 8)?;
    let block_size = le32(params, 0);
    let flags = le32(params, 4);
    if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&u64::from(block_size)) {
        return Err(Kind::Corrupt);
    }
    let virtual_size = le64(need(m::VIRTUAL_DISK_SIZE, 8)?.0, 0);
    let id = guid_at(need(m::VIRTUAL_DISK_ID, 16)?.0, 0);
    let sector = |id| -> Result<u32, Kind> {
        match le32(need(id, 4)?.0, 0) {
            v @ (512 | 4096) => Ok(v),
            _ => Err(Kind::Corrupt),
        }
    };
    let lss = sector(m::LOGICAL_SECTOR_SIZE)?;
    let pss = sector(m::PHYSICAL_SECTOR_SIZE)?;
    if virtual_size == 0 || virtual_size % u64::from(lss) != 0 || virtual_size > 64 << 40 {
        return Err(Kind::Corrupt);
    }
    let has_parent = flags & 2 != 0;
    let parent_locator = if has_parent {
        let (bytes, at) = need(m::PARENT_LOCATOR, 0)?;
        Some(super::parent_locator::check_item(bytes, at).map_err(|e| kind(&e))?)
    } else {
        None
    };
    Ok(Metadata {
        block_size,
        leave_blocks_allocated: flags & 1 != 0,
        has_parent,
        virtual_size,
        virtual_disk_id: id,
        logical_sector_size: lss,
        physical_sector_size: pss,
        parent_locator,
    })
}

/// A metadata region: the table, then each item's bytes in order, then padding.
pub fn region(items: &[(Uuid, u32, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; m::TABLE_SIZE];
    b[..8].copy_from_slice(b"metadata");
    put16(&mut b, 10, items.len() as u16);
    for (i, (id, flags, data)) in items.iter().enumerate() {
        let at = 32 + 32 * i;
        let off = b.len() as u32;
        b.extend_from_slice(data);
        b[at..at + 16].copy_from_slice(&guid_bytes(id));
        put32(&mut b, at + 16, if data.is_empty() { 0 } else { off });
        put32(&mut b, at + 20, data.len() as u32);
        put32(&mut b, at + 24, *flags);
    }
    b
}

/// The five items every VHDX has, and a parent locator if `flags` has bit 1.
pub fn standard_items(block_size: u32, flags: u32, size: u64, lss: u32, pss: u32) -> Vec<(Uuid, u32, Vec<u8>)> {
    let mut params = block_size.to_le_bytes().to_vec();
    params.extend_from_slice(&flags.to_le_bytes());
    let mut items = vec![
        (m::FILE_PARAMETERS, 4, params),
        (m::VIRTUAL_DISK_SIZE, 6, size.to_le_bytes().to_vec()),
        (m::VIRTUAL_DISK_ID, 6, [7u8; 16].to_vec()),
        (m::LOGICAL_SECTOR_SIZE, 6, lss.to_le_bytes().to_vec()),
        (m::PHYSICAL_SECTOR_SIZE, 6, pss.to_le_bytes().to_vec()),
    ];
    if flags & 2 != 0 {
        items.push((m::PARENT_LOCATOR, 4, locator(&Uuid::from_u128(0x1234))));
    }
    items
}

/// A VHDX parent locator naming `linkage` and a relative path.
pub fn locator(linkage: &Uuid) -> Vec<u8> {
    let pairs = [
        ("parent_linkage".to_string(), super::braced(linkage)),
        ("relative_path".to_string(), r".\parent.vhdx".to_string()),
    ];
    let mut b = vec![0u8; 20 + 12 * pairs.len()];
    b[..16].copy_from_slice(&guid_bytes(&ckptfs::format::vhdx::parent_locator::VHDX_LOCATOR_TYPE));
    put16(&mut b, 18, pairs.len() as u16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        let (k, v) = (super::utf16(k), super::utf16(v));
        let at = 20 + 12 * i;
        let ko = b.len() as u32;
        b.extend_from_slice(&k);
        let vo = b.len() as u32;
        b.extend_from_slice(&v);
        put32(&mut b, at, ko);
        put32(&mut b, at + 4, vo);
        put16(&mut b, at + 8, k.len() as u16);
        put16(&mut b, at + 10, v.len() as u16);
    }
    b
}

fn build(inp: &mut Input) -> Vec<u8> {
    let flags = inp.u8();
    let mut items: Vec<(Uuid, u32, Vec<u8>)> = Vec::new();
    if flags & 4 != 0 {
        let bs = (MIB as u32) << (inp.u8() % 10);
        let lss = if inp.bool() { 4096 } else { 512 };
        let size = (u64::from(inp.u32()) * u64::from(lss)) << (inp.u8() % 16);
        items = standard_items(bs, u32::from(inp.u8() % 4), size, lss, 4096);
    }
    let overrides: Vec<(usize, u32, u32)> = {
        let n = usize::from(inp.u8() % 16);
        let mut o = Vec::new();
        for _ in 0..n {
            if inp.is_empty() {
                break;
            }
            let sel = inp.u8();
            let ef = inp.u8();
            let id = match KNOWN.get(usize::from(sel % 8)) {
                Some(k) => *k,
                None if sel % 8 == 6 => Uuid::from_u128(u128::from(sel >> 3)),
                None => Uuid::from_bytes(inp.array()),
            };
            let len = usize::from(inp.u8());
            let bytes = inp.bytes(len).to_vec();
            if ef & 0x18 != 0 {
                o.push((items.len(), inp.u32(), inp.u32()));
            }
            let mut entry_flags = u32::from(ef & 7);
            if ef & 0x18 == 0x18 {
                entry_flags |= inp.u32() & !7;
            }
            items.push((id, entry_flags, bytes));
        }
        o
    };
    let mut b = region(&items);
    for (i, off, len) in overrides {
        let at = 32 + 32 * i;
        put32(&mut b, at + 16, off);
        put32(&mut b, at + 20, len & 0x1F_FFFF);
    }
    if flags & 1 != 0 {
        b[..8].copy_from_slice(&inp.array::<8>());
    }
    if flags & 2 != 0 {
        put16(&mut b, 10, inp.u16());
    }
    if flags & 8 != 0 {
        let amount = usize::from(inp.u16());
        if inp.bool() {
            b.resize(b.len() + amount, 0);
        } else {
            b.truncate(b.len().saturating_sub(amount));
        }
    }
    b
}
