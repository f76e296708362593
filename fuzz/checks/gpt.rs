//! `gpt::parse_header`, `gpt::parse_entries` and `read_partition_table` on GPT disks.
//!
//! Input: flags (bit 0: laid out in 4096-byte sectors; bit 1: read declaring the other
//! size; bit 2: raw mode, below; bits 3-4: sector 0 is a protective MBR, a hybrid MBR,
//! nothing, or an MBR without a protective entry; bit 5: a failing range; bit 6: the
//! backup array tells its entries apart by their unique GUIDs; bit 7: no backup written),
//! the disk size the table was made for and how much the disk grew or shrank since,
//! the entry count and size, up to 63 entries (slot, type, unique GUID, first LBA and
//! length, attributes, UTF-16 name), then for the primary and the backup copy a byte of
//! damage (header CRC, array CRC, signature) and overrides (header size, own LBA, other
//! copy's LBA, array LBA, usable range), and the backup's LBA.
//! Raw mode: sector size, LBA, header bytes, whether to fix its array CRC, own LBA and
//! header CRC, then the array: `parse_header` and `parse_entries` alone.
//!
//! Exact outcomes: `parse_header` is `Ok` exactly for "EFI PART", a header size in
//! 92..=min(sector, buffer), a matching CRC-32 (zlib, computed here), its own LBA, a
//! non-empty usable range, entries of a multiple of 8 of at least 128 bytes, at most
//! 16384 entries and 4 MiB, and an array that is not at LBA 0 nor covers the header;
//! then every field is the bytes'. `parse_entries` is `Ok` exactly when the array is
//! long enough and its CRC-32 matches, with exactly the entries whose type is not nil,
//! numbered index + 1, names decoded up to the first NUL. `read_partition_table` returns
//! exactly the reference's table and warnings (primary, else backup at the primary's
//! alternate LBA, else at the last LBA; the other sector size tried second).
//! Independently of the reference: an undamaged GPT in the declared size is read from
//! the primary with exactly the entries written (cut to the disk); a damaged primary
//! with an intact backup behind a protective MBR gives `from_backup` and never one of
//! the primary's entries; both damaged never gives a GPT in that sector size.

use ckptfs::volume::partition::gpt::{parse_entries, parse_header};
use ckptfs::volume::partition::{read_partition_table, PartitionKind, TableKind};

use super::partition::{
    assert_crc32_reference, check_invariants, compare_table, crc32, crc32_padded, fix_header_crc, gpt_entry_bytes,
    header_sector, mbr_entry_bytes, mbr_sector, other_size, ref_entries, ref_header, ref_table, Disk, HeaderSpec,
    BASIC, BIOS_BOOT, ESP, LINUX, MAX_ARRAY_BYTES, MAX_READS, MSR, SECTOR, SWAP,
};
use super::{le32, put32, put64, Input};

const TYPES: [u128; 6] = [ESP, MSR, BASIC, LINUX, SWAP, BIOS_BOOT];

/// Damage and overrides of one header copy.
#[derive(Default, Clone)]
struct Damage {
    ctl: u8,
    crc_at: u8,
    array_at: u16,
    header_size: u32,
    my_lba: u64,
    alternate: u64,
    entries_lba: u64,
    usable: (u64, u64),
}

impl Damage {
    fn read(inp: &mut Input) -> Damage {
        let ctl = inp.u8();
        let mut c = Damage {
            ctl,
            ..Damage::default()
        };
        if ctl & 1 != 0 {
            c.crc_at = inp.u8();
        }
        if ctl & 2 != 0 {
            c.array_at = inp.u16();
        }
        if ctl & 4 != 0 {
            c.header_size = inp.u32();
        }
        if ctl & 8 != 0 {
            c.my_lba = inp.u64();
        }
        if ctl & 0x10 != 0 {
            c.alternate = inp.u64();
        }
        if ctl & 0x20 != 0 {
            c.entries_lba = inp.u64();
        }
        if ctl & 0x40 != 0 {
            c.usable = (inp.u64(), inp.u64());
        }
        c
    }

    /// The header CRC or the array CRC broken, or the signature gone.
    fn damaged(&self) -> bool {
        self.ctl & 0x83 != 0
    }
}

/// An entry as written: slot, type, unique GUID, first, last, attributes, name.
#[derive(Clone)]
struct Entry {
    slot: usize,
    type_guid: u128,
    unique: u128,
    first: u64,
    last: u64,
    attributes: u64,
    name: Vec<u16>,
}

pub fn check(data: &[u8]) {
    assert_crc32_reference();
    let mut inp = Input::new(data);
    let flags = inp.u8();
    if flags & 4 != 0 {
        return check_raw(flags, &mut inp);
    }
    let lss: u32 = if flags & 1 != 0 { 4096 } else { 512 };
    let ss = u64::from(lss);
    let declared = if flags & 2 != 0 { other_size(lss) } else { lss };
    let mbr_kind = flags >> 3 & 3;
    let layout_sectors = u64::from(inp.u32());
    let delta = i64::from(inp.u16() as i16);
    let disk_sectors = layout_sectors.saturating_add_signed(delta);
    let mut d = Disk::new(disk_sectors * ss);

    let count = u32::from(inp.u16());
    let entry_size = match inp.u8() {
        0 => 128,
        1 => 256,
        2 => 512,
        3 => 1024,
        _ => inp.u32(),
    };
    let len = count as usize * entry_size as usize;
    let sane = entry_size >= 128 && entry_size % 8 == 0 && count <= 16384 && len as u64 <= MAX_ARRAY_BYTES;
    let mut entries = Vec::new();
    for _ in 0..inp.u8() % 64 {
        let slot = usize::from(inp.u16()) % (count.max(1) as usize);
        let type_guid = match inp.u8() {
            t @ 0..=5 => TYPES[usize::from(t)],
            6 => 0,
            7 => u128::from_le_bytes(inp.array()),
            t => 0x1111_0000 + u128::from(t),
        };
        let unique = u128::from(inp.u64()) << 8 | 0x0A;
        let first = inp.u64();
        let span = inp.u32();
        let last = first.wrapping_add(u64::from(span)).wrapping_sub(1);
        let attributes = inp.u64();
        let n = inp.u8();
        let units = if n & 0x80 != 0 { 36 } else { usize::from(n % 37) };
        let name: Vec<u16> = (0..units).map(|_| inp.u16()).collect();
        entries.push(Entry {
            slot,
            type_guid,
            unique,
            first,
            last,
            attributes,
            name,
        });
    }
    let primary = Damage::read(&mut inp);
    let backup = Damage::read(&mut inp);
    let backup_sel = inp.u8();
    let backup_raw = if backup_sel != 0 { u64::from(inp.u32()) } else { 0 };

    // The arrays: the primary's, and the backup's (told apart by its unique GUIDs when
    // bit 6 says so). Beyond the reader's limit only what the disk would hold is built.
    let built_len = if sane { len } else { len.min(64 << 10) };
    let mut arrays = [vec![0u8; built_len], vec![0u8; built_len]];
    if sane && count > 0 {
        for e in &entries {
            for (k, a) in arrays.iter_mut().enumerate() {
                let unique = if k == 1 && flags & 0x40 != 0 {
                    e.unique ^ 0xB0
                } else {
                    e.unique
                };
                let bytes = gpt_entry_bytes(
                    e.type_guid,
                    unique,
                    e.first,
                    e.last,
                    e.attributes,
                    &e.name,
                    entry_size as usize,
                );
                a[e.slot * entry_size as usize..][..entry_size as usize].copy_from_slice(&bytes);
            }
        }
    }
    let array_sectors = (len as u64).div_ceil(ss);
    let last = layout_sectors.saturating_sub(1);
    let backup_lba = if backup_sel != 0 { backup_raw } else { last };
    let spec = |c: &Damage, mine: u64, other: u64, entries_lba: u64| HeaderSpec {
        my_lba: if c.ctl & 8 != 0 { c.my_lba } else { mine },
        alternate_lba: if c.ctl & 0x10 != 0 { c.alternate } else { other },
        first_usable: if c.ctl & 0x40 != 0 {
            c.usable.0
        } else {
            2 + array_sectors
        },
        last_usable: if c.ctl & 0x40 != 0 {
            c.usable.1
        } else {
            backup_lba.saturating_sub(array_sectors + 1)
        },
        disk_guid: [0x5D; 16],
        entries_lba: if c.ctl & 0x20 != 0 { c.entries_lba } else { entries_lba },
        entry_count: count,
        entry_size,
        header_size: if c.ctl & 4 != 0 { c.header_size } else { 92 },
    };
    let specs = [
        spec(&primary, 1, backup_lba, 2),
        spec(&backup, backup_lba, 1, backup_lba.saturating_sub(array_sectors)),
    ];
    let copies = [primary, backup];

    // Sector 0.
    let cover = u32::try_from(last).unwrap_or(u32::MAX);
    let mbr = match mbr_kind {
        0 => mbr_sector(&[mbr_entry_bytes(0, 0xEE, 1, cover)]),
        1 => {
            let (start, sectors) = entries.first().map_or((2048, 2048), |e| {
                (e.first as u32, e.last.wrapping_sub(e.first).wrapping_add(1) as u32)
            });
            mbr_sector(&[
                mbr_entry_bytes(0, 0xEE, 1, start.saturating_sub(1).max(1)),
                mbr_entry_bytes(0x80, 0x0C, start.max(1), sectors.max(1)),
            ])
        }
        2 => vec![0; SECTOR],
        _ => mbr_sector(&[mbr_entry_bytes(0, 0x83, 2048, 2048)]),
    };
    d.put(0, &mbr);
    // The backup first, so that where the two overlap the primary is what is on disk.
    let mut written = Vec::new();
    for k in [1, 0] {
        if k == 1 && flags & 0x80 != 0 {
            continue;
        }
        let (c, s) = (&copies[k], &specs[k]);
        let mut array = arrays[k].clone();
        let mut h = header_sector(s, &array, ss as usize);
        if c.ctl & 2 != 0 && !array.is_empty() {
            let at = usize::from(c.array_at) % array.len().min(len.max(1));
            array[at] ^= 0x5A;
        }
        if c.ctl & 1 != 0 {
            // A byte of the first 92, which every valid header size covers.
            h[16 + usize::from(c.crc_at) % 76] ^= 0xA5;
        }
        if c.ctl & 0x80 != 0 {
            h[0] = b'e';
        }
        let lba = if k == 0 { 1 } else { backup_lba };
        if let Some(at) = s.entries_lba.checked_mul(ss) {
            d.put(at, &array);
        }
        if let Some(at) = lba.checked_mul(ss) {
            d.put(at, &h);
            written.push((k, lba));
        }
    }
    let sector0_as_written = d.peek(0, SECTOR) == mbr;
    if flags & 0x20 != 0 {
        let start = inp.u64() % d.size.max(1);
        d.fault = Some((start, start + u64::from(inp.u16()) + 1));
    }

    // parse_header and parse_entries on what the disk holds for each copy.
    for &(k, lba) in &written {
        let sector = d.peek(lba * ss, ss as usize);
        for hs in [lss, other_size(lss)] {
            let bytes = &sector[..(hs as usize).min(sector.len())];
            let got = parse_header(bytes, lba, hs);
            let exp = ref_header(bytes, lba, hs);
            assert_eq!(
                got.as_ref().ok(),
                exp.as_ref(),
                "parse_header of copy {k} at LBA {lba}, {hs}-byte sectors: {got:?}"
            );
            super::note(&format!("header {k} at {hs}: {}", exp.is_some()));
        }
        if let Ok(h) = parse_header(&sector, lba, lss) {
            let array = h
                .entries_lba
                .checked_mul(ss)
                .map(|at| d.peek(at, h.entries_bytes()))
                .unwrap_or_default();
            for cut in [array.len(), array.len().saturating_sub(1)] {
                let got = parse_entries(&array[..cut], &h);
                let exp = ref_entries(&array[..cut], &h);
                assert_eq!(got.as_ref().ok(), exp.as_ref(), "parse_entries of copy {k}: {got:?}");
                if cut == array.len() {
                    super::note(&format!("entries {k}: {}", exp.is_some()));
                }
            }
        }
    }

    let before = d.reads().0;
    let got = read_partition_table(&d, declared);
    let reads = d.reads().0 - before;
    assert!(reads <= MAX_READS, "{reads} reads");
    let exp = ref_table(&d, declared);
    compare_table("read_partition_table", &got, &exp);
    if let Ok(t) = &got {
        super::note(&format!("table: {:?}", t.kind));
        for w in &t.warnings {
            super::note(&format!("warning: {:?}", super::partition::classify(w)));
        }
        check_invariants(&d, t);
    } else {
        super::note("table: error");
    }

    // What the input says should happen, without the reference.
    let plain_layout = sane
        && count > 0
        && declared == lss
        && d.fault.is_none()
        && backup_sel == 0
        && delta >= 0
        && flags & 0x80 == 0
        && layout_sectors >= 2 * array_sectors + 4
        && (2 + array_sectors) <= backup_lba.saturating_sub(array_sectors + 1)
        && sector0_as_written
        // Damage only: no override that moves a structure onto another.
        && copies.iter().all(|c| c.ctl & 0x7C == 0);
    let untouched = |c: &Damage| c.ctl == 0;
    let primary_ids: Vec<u128> = entries.iter().map(|e| e.unique).collect();
    if plain_layout && mbr_kind != 3 && untouched(&copies[0]) {
        let t = got.as_ref().expect("an intact GPT refused");
        assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
        assert_eq!(t.sector_size, lss);
        let mut expected = Vec::new();
        for slot in 0..count as usize {
            let Some(e) = entries.iter().rev().find(|e| e.slot == slot) else {
                continue;
            };
            if e.type_guid == 0 || e.last < e.first || e.first.checked_mul(ss).is_none_or(|s| s >= d.size) {
                continue;
            }
            let name = String::from_utf16_lossy(&e.name.iter().copied().take_while(|&u| u != 0).collect::<Vec<_>>());
            expected.push((
                slot as u32 + 1,
                e.first * ss,
                e.unique,
                e.attributes,
                (!name.is_empty()).then_some(name),
            ));
        }
        let found: Vec<_> = t
            .partitions
            .iter()
            .map(|p| match p.kind {
                PartitionKind::Gpt {
                    unique_guid,
                    attributes,
                    ..
                } => (p.number, p.start, unique_guid.as_u128(), attributes, p.name.clone()),
                _ => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(found, expected, "the GPT written");
    }
    // Without an intact primary header only the last LBA is searched: the disk must be
    // the size it was partitioned at.
    if plain_layout && delta == 0 && mbr_kind == 0 && copies[0].damaged() && untouched(&copies[1]) {
        let t = got.as_ref().expect("an intact backup refused");
        assert_eq!(t.kind, TableKind::Gpt { from_backup: true });
        if flags & 0x40 != 0 {
            for p in &t.partitions {
                if let PartitionKind::Gpt { unique_guid, .. } = p.kind {
                    assert!(
                        !primary_ids.contains(&unique_guid.as_u128()),
                        "partition {} from the damaged primary",
                        p.number
                    );
                }
            }
        }
    }
    if plain_layout && copies[0].damaged() && (copies[1].damaged() || flags & 0x80 != 0) {
        if let Ok(t) = &got {
            assert!(
                !(matches!(t.kind, TableKind::Gpt { .. }) && t.sector_size == lss),
                "a GPT read from two damaged copies: {t:?}"
            );
        }
    }
}

/// Raw mode: flags bit 0 is the sector size; then the LBA, the header length and bytes,
/// a fix-up byte (bit 0: store the array's CRC, bit 1: the header's, bit 2: set its own
/// LBA to the one asked for, before the CRC), and the array.
fn check_raw(flags: u8, inp: &mut Input) {
    let ss: u32 = if flags & 1 != 0 { 4096 } else { 512 };
    let lba = inp.u64();
    let n = usize::from(inp.u16()) % 4097;
    let mut header = inp.bytes(n).to_vec();
    let fix = inp.u8();
    let array = inp.rest();
    if header.len() >= 92 {
        if fix & 1 != 0 {
            let len = le32(&header, 80) as usize * le32(&header, 84) as usize;
            if len as u64 <= MAX_ARRAY_BYTES {
                put32(&mut header, 88, crc32_padded(array, len));
            }
        }
        if fix & 4 != 0 {
            put64(&mut header, 24, lba);
        }
        if fix & 2 != 0 {
            fix_header_crc(&mut header);
        }
    }
    let got = parse_header(&header, lba, ss);
    let exp = ref_header(&header, lba, ss);
    assert_eq!(got.as_ref().ok(), exp.as_ref(), "parse_header: {got:?}");
    super::note(&format!("raw header: {}", exp.is_some()));
    if let Ok(h) = got {
        let got = parse_entries(array, &h);
        let exp = ref_entries(array, &h);
        assert_eq!(got.as_ref().ok(), exp.as_ref(), "parse_entries: {got:?}");
        super::note(&format!("raw entries: {}", exp.is_some()));
        if let Some(e) = exp {
            let len = h.entries_bytes();
            assert_eq!(crc32(&array[..len]), h.entries_crc32);
            assert!(e.iter().all(|e| e.number >= 1 && e.number <= h.entry_count));
        }
    }
}
