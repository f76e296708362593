//! `read_partition_table` over a whole in-memory disk given as raw sectors, read with
//! both sector sizes.
//!
//! Input: flags (bit 0 and bit 1: fix up GPT CRCs laid out in 512- and 4096-byte
//! sectors after the sectors are written, so that mutated headers and arrays get past
//! their checksums; bit 2: a failing range), the disk size in bytes (any u64), the
//! failing range, then runs of 512-byte sectors: position (counted from the start, or
//! from the end with bit 0 of a control byte), sector count, bytes (zeros once the input
//! runs out). The partition tables written by real tools (`fuzz/tables/`) are seeds in
//! this form.
//!
//! Exact outcomes, with 512- and 4096-byte sectors: `read_partition_table` returns
//! exactly the reference's table and warnings, or its error. Whatever the disk: no
//! panic; every partition lies inside the disk, starts on a sector and is not empty;
//! numbers are unique (1–132 on an MBR disk, 1–16384 on a GPT disk); at most 65
//! warnings; at most `MAX_READS` reads; the same table on a second call; and every
//! partition kind describes itself.

use ckptfs::volume::partition::read_partition_table;

use super::partition::{
    check_invariants, compare_table, crc32_padded, fix_header_crc, ref_table, Disk, MAX_ARRAY_BYTES, MAX_READS, SECTOR,
};
use super::{le32, le64, put32, Input};

pub fn build(data: &[u8]) -> Disk {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let mut d = Disk::new(inp.u64());
    let fault = (inp.u64(), inp.u32());
    let sectors = d.size / SECTOR as u64;
    while !inp.is_empty() {
        let ctl = inp.u8();
        let pos = u64::from(inp.u32());
        let n = usize::from(inp.u8());
        let at = if ctl & 1 != 0 {
            sectors.saturating_sub(pos + n as u64)
        } else {
            pos
        };
        let mut bytes = inp.bytes(n * SECTOR).to_vec();
        bytes.resize(n * SECTOR, 0);
        d.put(at * SECTOR as u64, &bytes);
    }
    for (bit, ss) in [(1, 512), (2, 4096)] {
        if flags & bit != 0 {
            fix_gpt(&mut d, ss);
        }
    }
    if flags & 4 != 0 {
        d.fault = Some((fault.0, fault.0.saturating_add(u64::from(fault.1) + 1)));
    }
    d
}

/// Store the array CRC and the header CRC of whatever "EFI PART" header sits at LBA 1,
/// at the LBA it names as the other copy's, and at the last LBA (backups first).
fn fix_gpt(d: &mut Disk, ss: u64) {
    let last = (d.size / ss).saturating_sub(1);
    let alt = le64(&d.peek(ss, 512), 32);
    for lba in [last, alt, 1] {
        let Some(at) = lba.checked_mul(ss).filter(|&at| at < d.size && lba > 0) else {
            continue;
        };
        let mut h = d.peek(at, ss as usize);
        if &h[..8] != b"EFI PART" {
            continue;
        }
        let len = u64::from(le32(&h, 80)) * u64::from(le32(&h, 84));
        if let Some(array_at) = le64(&h, 72).checked_mul(ss) {
            if len <= MAX_ARRAY_BYTES {
                let array = d.peek(array_at, len as usize);
                put32(&mut h, 88, crc32_padded(&array, len as usize));
            }
        }
        fix_header_crc(&mut h);
        d.put(at, &h);
    }
}

/// The input that rebuilds `d` (without its fault): for seeds.
pub fn encode(d: &Disk, flags: u8) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&d.size.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    for (at, g) in d.granules() {
        if g.iter().all(|&b| b == 0) {
            continue;
        }
        let lba = at / SECTOR as u64;
        match runs.last_mut() {
            Some((first, bytes)) if *first + (bytes.len() / SECTOR) as u64 == lba && bytes.len() < 255 * SECTOR => {
                bytes.extend_from_slice(g)
            }
            _ => runs.push((lba, g.to_vec())),
        }
    }
    for (first, bytes) in runs {
        out.push(0);
        out.extend_from_slice(&(first as u32).to_le_bytes());
        out.push((bytes.len() / SECTOR) as u8);
        out.extend_from_slice(&bytes);
    }
    out
}

pub fn check(data: &[u8]) {
    let d = build(data);
    for ss in [512, 4096] {
        let before = d.reads().0;
        let got = read_partition_table(&d, ss);
        let reads = d.reads().0 - before;
        assert!(reads <= MAX_READS, "{reads} reads at {ss}");
        let exp = ref_table(&d, ss);
        compare_table(&format!("read_partition_table at {ss}"), &got, &exp);
        match &got {
            Ok(t) => {
                super::note(&format!("{ss}: {:?}, {} partitions", t.kind, t.partitions.len().min(5)));
                for w in &t.warnings {
                    super::note(&format!("warning: {:?}", super::partition::classify(w)));
                }
                check_invariants(&d, t);
                for p in &t.partitions {
                    assert!(!p.kind.describe().is_empty());
                    let _ = p.kind.not_a_filesystem();
                }
            }
            Err(e) => super::note(&format!(
                "{ss}: error {}",
                e.to_string().split(':').next().unwrap_or("")
            )),
        }
        let again = read_partition_table(&d, ss);
        match (&got, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "a second call differs"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("a second call differs: {got:?} then {again:?}"),
        }
    }
}
