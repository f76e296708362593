//! `mbr::parse_mbr`, `mbr::parse_ebr` and `read_partition_table` on MBR disks: sector 0
//! and chains of EBRs over a sparse in-memory disk.
//!
//! Input: flags (bit 0: 4096-byte sectors; bit 1: sector 0 is 512 raw bytes of input;
//! bits 2-3: a FAT, NTFS or exFAT boot sector stamped over sector 0, its BPB spoiled as a
//! mask byte says; bit 4: a whole valid GPT written first, in the other sector size with
//! bit 6; bit 5: a failing range; bit 7: EBRs are 512 raw bytes at an absolute LBA), disk
//! size (sectors and extra bytes), sector 0 (four entries: status, type, start, length),
//! a generated chain (length, which EBRs lack a data entry, the slot whose start is its
//! base), then up to 63 EBRs, each at a position relative to a slot's start, with a
//! data entry, a link to another of them (or to any LBA), extra entries, a missing
//! signature or swapped slots.
//!
//! Exact outcomes: `parse_mbr` (at both sector sizes) classifies sector 0 as the
//! reference does (no signature; FAT/NTFS/exFAT boot sector by name; not a table on a
//! bad status byte, a used entry at LBA 0, or every data entry past the end; else
//! exactly the used slots), `parse_ebr` decodes every EBR written as the reference does,
//! and `read_partition_table` returns exactly the reference's table (partitions 1–4 cut
//! to the disk, logical partitions numbered 5, 6, ... across extended partitions, each
//! chain stopped at a loop, a link outside its extended partition or past the disk, an
//! unreadable or unsigned EBR, 128 logical partitions or 256 EBRs) with exactly its
//! warnings. Independently of the reference: a boot sector the stamp left intact means
//! no table, no partition and no warning whatever else the disk holds; every partition
//! lies inside the disk with a unique number, logical numbers increase along the walk,
//! and the reads stay bounded.

use ckptfs::volume::partition::mbr::{self, parse_ebr, parse_mbr};
use ckptfs::volume::partition::{read_partition_table, TableKind};

use super::partition::{
    check_invariants, compare_table, mbr_entry_bytes, mbr_sector, ref_ebr, ref_sector0, ref_table, write_plain_gpt,
    Disk, BASIC, MAX_READS, SECTOR,
};
use super::{le32, put16, Input};

/// What the input asked for, for the checks that do not go through the reference.
pub struct Built {
    pub disk: Disk,
    pub ss: u32,
    /// LBAs where EBRs were written, for `parse_ebr`.
    pub ebrs: Vec<u64>,
    /// A boot sector stamped whole (nothing spoiled) over sector 0.
    pub intact_boot_sector: bool,
}

struct EbrSpec {
    base_slot: usize,
    pos: u32,
    no_signature: bool,
    swap: bool,
    data: Option<(u8, u32, u32)>,
    link: Option<(u8, Target, u32)>,
    extras: Vec<(u8, u32, u32)>,
}

enum Target {
    Ebr(usize),
    Raw(u32),
}

pub fn build(data: &[u8]) -> Built {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let ss: u32 = if flags & 1 != 0 { 4096 } else { 512 };
    let ss64 = u64::from(ss);
    let sectors = u64::from(inp.u32());
    let size = sectors * ss64 + u64::from(inp.u16()) % ss64;
    let mut disk = Disk::new(size);

    // Sector 0.
    let mut s0 = if flags & 2 != 0 {
        let mut s = inp.bytes(SECTOR).to_vec();
        s.resize(SECTOR, 0);
        s
    } else {
        let entries: Vec<[u8; 16]> = (0..4)
            .map(|_| {
                let s = inp.u8();
                // Mostly the two valid status bytes, any byte now and then.
                let status = if s & 0x40 != 0 { s } else { s & 0x80 };
                mbr_entry_bytes(status, inp.u8(), inp.u32(), inp.u32())
            })
            .collect();
        mbr_sector(&entries)
    };
    let stamp = flags >> 2 & 3;
    let mut intact_boot_sector = false;
    if stamp != 0 {
        let mask = inp.u8();
        intact_boot_sector = stamp_boot_sector(&mut s0, stamp, mask);
    }
    let base = |slot: usize| u64::from(le32(&s0, 446 + 16 * slot + 8));

    if flags & 0x10 != 0 {
        let gss = if flags & 0x40 != 0 {
            super::partition::other_size(ss)
        } else {
            ss
        };
        let g = u64::from(gss);
        let gsectors = size / g;
        let array_sectors = (128 * 128u64).div_ceil(g);
        if gsectors >= 2 * array_sectors + 4 {
            let first = 2 + array_sectors;
            let last = (first + 99).min(gsectors - 2 - array_sectors);
            write_plain_gpt(&mut disk, g, gsectors, &[(BASIC, first, last, "gpt")]);
        }
    }

    // A generated chain of EBRs two sectors apart, each with a one-sector logical
    // partition unless its index is a multiple of `every`.
    let n = usize::from(inp.u16() % 512);
    let every = usize::from(inp.u8());
    let chain_base = base(usize::from(inp.u8() & 3));
    let mut ebrs = Vec::new();
    for i in 0..n {
        let mut entries = Vec::new();
        if every == 0 || i % every != 0 {
            entries.push(mbr_entry_bytes(0, 0x83, 1, 1));
        } else {
            entries.push([0; 16]);
        }
        if i + 1 < n {
            entries.push(mbr_entry_bytes(0, 0x05, 2 * (i as u32 + 1), 2));
        }
        let lba = chain_base + 2 * i as u64;
        disk.put(lba * ss64, &mbr_sector(&entries));
        if i < 2 {
            ebrs.push(lba);
        }
    }

    // EBRs described one by one.
    let count = usize::from(inp.u8() % 64);
    if flags & 0x80 != 0 {
        for _ in 0..count {
            let lba = u64::from(inp.u32());
            let mut s = inp.bytes(SECTOR).to_vec();
            s.resize(SECTOR, 0);
            disk.put(lba * ss64, &s);
            ebrs.push(lba);
        }
    } else {
        let specs: Vec<EbrSpec> = (0..count).map(|_| ebr_spec(&mut inp)).collect();
        for s in &specs {
            let b = base(s.base_slot);
            let data = s.data.map(|(t, start, len)| mbr_entry_bytes(0, t, start, len));
            let link = s.link.as_ref().map(|(t, target, len)| {
                let at = match *target {
                    Target::Ebr(i) => specs[i % specs.len()].pos,
                    Target::Raw(v) => v,
                };
                mbr_entry_bytes(0, *t, at, *len)
            });
            let mut entries = Vec::new();
            let (first, second) = if s.swap { (link, data) } else { (data, link) };
            entries.extend(first);
            entries.extend(second);
            entries.extend(
                s.extras
                    .iter()
                    .map(|&(t, start, len)| mbr_entry_bytes(0, t, start, len)),
            );
            let mut sector = mbr_sector(&entries);
            if s.no_signature {
                sector[511] = 0;
            }
            let lba = b + u64::from(s.pos);
            disk.put(lba * ss64, &sector);
            ebrs.push(lba);
        }
    }

    if flags & 0x20 != 0 {
        let start = u64::from(inp.u32()) * SECTOR as u64;
        let len = u64::from(inp.u16()) * SECTOR as u64;
        disk.fault = Some((start, start + len));
    }
    disk.put(0, &s0);
    Built {
        disk,
        ss,
        ebrs,
        intact_boot_sector,
    }
}

fn ebr_spec(inp: &mut Input) -> EbrSpec {
    let ctl = inp.u8();
    let pos = inp.u32();
    let data = (ctl & 0x80 == 0).then(|| (inp.u8(), inp.u32(), inp.u32()));
    let link = (ctl & 0x40 == 0).then(|| {
        let t = match inp.u8() {
            0 => 0x05,
            1 => 0x0F,
            2 => 0x85,
            t => t,
        };
        let target = if ctl & 0x10 != 0 {
            Target::Raw(inp.u32())
        } else {
            Target::Ebr(usize::from(inp.u8()))
        };
        (t, target, u32::from(inp.u16()))
    });
    let extras = if ctl & 0x20 != 0 {
        (0..inp.u8() % 3).map(|_| (inp.u8(), inp.u32(), inp.u32())).collect()
    } else {
        Vec::new()
    };
    EbrSpec {
        base_slot: usize::from(ctl & 3),
        pos,
        no_signature: ctl & 4 != 0,
        swap: ctl & 8 != 0,
        data,
        link,
        extras,
    }
}

/// Stamp the first 90 bytes of a boot sector (1 FAT, 2 NTFS, 3 exFAT) over `s`, spoiled
/// as `mask` says; whether the result is still a whole, recognisable boot sector.
fn stamp_boot_sector(s: &mut [u8], which: u8, mask: u8) -> bool {
    s[510] = 0x55;
    s[511] = 0xAA;
    if which != 1 {
        s[..3].copy_from_slice(&[0xEB, 0x52, 0x90]);
        s[3..11].copy_from_slice(if which == 2 { b"NTFS    " } else { b"EXFAT   " });
        if mask & 1 != 0 {
            s[10] = b'x';
        }
        return mask & 1 == 0;
    }
    // FAT: jump, OEM name, BPB (512 bytes a sector, 8 a cluster, 32 reserved, 2 FATs,
    // media 0xF8), "FAT32   " at 82 or "FAT16   " at 54; each mask bit spoils one.
    s[..3].copy_from_slice(if mask & 1 != 0 {
        &[0xEB, 0x58, 0x00]
    } else {
        &[0xEB, 0x58, 0x90]
    });
    s[3..11].copy_from_slice(b"MSWIN4.1");
    put16(s, 11, if mask & 4 != 0 { 513 } else { 512 });
    s[13] = if mask & 8 != 0 { 6 } else { 8 };
    put16(s, 14, if mask & 0x10 != 0 { 0 } else { 32 });
    s[16] = if mask & 0x20 != 0 { 3 } else { 2 };
    s[21] = if mask & 0x40 != 0 { 0xF1 } else { 0xF8 };
    let label_at = if mask & 0x80 != 0 { 54 } else { 82 };
    s[54..62].fill(b' ');
    s[82..90].fill(b' ');
    if mask & 2 == 0 {
        s[label_at..label_at + 8].copy_from_slice(if label_at == 54 { b"FAT16   " } else { b"FAT32   " });
    }
    mask & 0x7F == 0
}

pub fn check(data: &[u8]) {
    let b = build(data);
    let d = &b.disk;
    // Sector 0 as written (parse_mbr is pure), and whether the reader can read it.
    let s0 = d.peek(0, SECTOR);
    let s0_readable = d.get(0, SECTOR as u64).is_some();

    for ss in [512, 4096] {
        let got = parse_mbr(&s0, d.size, ss);
        let exp = ref_sector0(&s0, d.size, ss);
        assert!(
            super::partition::same_sector0(&got, &exp),
            "parse_mbr at {ss}: {got:?}, the reference {exp:?}"
        );
        if ss == b.ss {
            super::note(&format!(
                "sector 0: {}",
                format!("{exp:?}").split('(').next().unwrap_or("")
            ));
        }
    }
    assert_eq!(parse_mbr(&s0[..511], d.size, b.ss), mbr::Sector0::NoSignature);
    for &lba in &b.ebrs {
        if let Some(at) = lba.checked_mul(u64::from(b.ss)) {
            let sector = d.peek(at, SECTOR);
            assert_eq!(
                parse_ebr(&sector).ok(),
                ref_ebr(&sector),
                "parse_ebr of the EBR at LBA {lba}"
            );
        }
    }

    let before = d.reads();
    let got = read_partition_table(d, b.ss);
    let reads = d.reads().0 - before.0;
    assert!(reads <= MAX_READS, "{reads} reads");
    let exp = ref_table(d, b.ss);
    compare_table("read_partition_table", &got, &exp);
    match &got {
        Ok(t) => {
            super::note(&format!("table: {:?}", t.kind));
            for w in &t.warnings {
                super::note(&format!("warning: {:?}", super::partition::classify(w)));
            }
            check_invariants(d, t);
            if b.intact_boot_sector && s0_readable {
                assert_eq!(t.kind, TableKind::None, "a boot sector taken for a table");
                assert!(t.partitions.is_empty() && t.warnings.is_empty(), "{t:?}");
            }
            if t.kind == TableKind::Mbr {
                let logical: Vec<u32> = t.partitions.iter().map(|p| p.number).filter(|&n| n >= 5).collect();
                assert!(logical.windows(2).all(|w| w[0] < w[1]), "logical numbers {logical:?}");
                assert!(t.partitions.iter().all(|p| p.name.is_none()));
            }
        }
        Err(e) => super::note(&format!("error: {}", e.to_string().split(':').next().unwrap_or(""))),
    }
}
