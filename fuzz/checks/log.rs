//! `log::replay` and the `Overlay` it returns.
//!
//! Input: a mode byte. Bit 7: raw, the rest is the log (each "loge" sector gets its
//! checksum fixed if bit 0; the length is cut to whole sectors if bit 1). Bit 6: clean,
//! one sequence of valid entries laid end to end in an otherwise empty ring, which has
//! an exact expected result. Otherwise dirty: entries anywhere (overwriting each other),
//! with arbitrary sequence numbers, tails, GUIDs and damage.
//!
//! Exact outcomes: replay is deterministic (same log, same result and same overlay, as
//! seen through `apply`). A clean log replays exactly the entries from the head's tail
//! to the head, in order: `entries`, `head_sequence`, the file offsets and every byte
//! `apply` produces equal a byte-by-byte model of the descriptors. For any log, every
//! byte `apply` changes lies in a 4 KiB page some data descriptor in the log writes (and
//! gets that descriptor's byte) or in a range some zero descriptor zeroes (and is zero),
//! and below `extent_end`.

use ckptfs::format::vhdx::log::{self as l, Overlay, Replay};
use uuid::Uuid;

use super::{fix_crc, guid_bytes, le32, le64, pattern, put32, put64, Input};

const SECTOR: u64 = 4096;
const S: usize = 4096;

/// What a descriptor does to the file.
#[derive(Debug, Clone)]
enum Op {
    Page(u64, Vec<u8>),
    Zero(u64, u64),
}

impl Op {
    fn range(&self) -> (u64, u64) {
        match self {
            Op::Page(o, _) => (*o, o.saturating_add(SECTOR)),
            Op::Zero(o, n) => (*o, o.saturating_add(*n)),
        }
    }

    /// The byte this op leaves at `x`, if it covers `x`.
    fn byte(&self, x: u64) -> Option<u8> {
        let (a, b) = self.range();
        if x < a || x >= b {
            return None;
        }
        Some(match self {
            Op::Page(o, p) => p[(x - o) as usize],
            Op::Zero(..) => 0,
        })
    }
}

/// One log entry to lay out.
struct EntrySpec {
    seq: u64,
    tail: u32,
    guid: Uuid,
    ops: Vec<Op>,
    flushed: u64,
    last: u64,
    extra_sectors: usize,
}

fn descriptor_sectors(count: usize) -> usize {
    (64 + 32 * count).div_ceil(S)
}

impl EntrySpec {
    fn sectors(&self) -> usize {
        let data = self.ops.iter().filter(|o| matches!(o, Op::Page(..))).count();
        descriptor_sectors(self.ops.len()) + data + self.extra_sectors
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.sectors() * S];
        b[..4].copy_from_slice(b"loge");
        let len = b.len() as u32;
        put32(&mut b, 8, len);
        put32(&mut b, 12, self.tail);
        put64(&mut b, 16, self.seq);
        put32(&mut b, 24, self.ops.len() as u32);
        b[32..48].copy_from_slice(&guid_bytes(&self.guid));
        put64(&mut b, 48, self.flushed);
        put64(&mut b, 56, self.last);
        let mut ds = descriptor_sectors(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let at = 64 + 32 * i;
            match op {
                Op::Zero(off, len) => {
                    b[at..at + 4].copy_from_slice(b"zero");
                    put64(&mut b, at + 8, *len);
                    put64(&mut b, at + 16, *off);
                }
                Op::Page(off, page) => {
                    b[at..at + 4].copy_from_slice(b"desc");
                    b[at + 4..at + 8].copy_from_slice(&page[S - 4..]);
                    b[at + 8..at + 16].copy_from_slice(&page[..8]);
                    put64(&mut b, at + 16, *off);
                    let s = ds * S;
                    b[s..s + 4].copy_from_slice(b"data");
                    put32(&mut b, s + 4, (self.seq >> 32) as u32);
                    b[s + 8..s + S - 4].copy_from_slice(&page[8..S - 4]);
                    put32(&mut b, s + S - 4, self.seq as u32);
                    ds += 1;
                }
            }
            put64(&mut b, at + 24, self.seq);
        }
        fix_crc(&mut b, 4);
        b
    }
}

fn put_ring(log: &mut [u8], pos: usize, e: &[u8]) {
    let n = log.len();
    for (i, &x) in e.iter().enumerate() {
        log[(pos + i) % n] = x;
    }
}

fn page(seed: u64) -> Vec<u8> {
    (0..SECTOR).map(|i| pattern(seed, i)).collect()
}

fn op(inp: &mut Input, raw_offsets: bool) -> Op {
    let kind = inp.u8();
    let off = if raw_offsets && kind & 2 != 0 {
        inp.u64() & !(SECTOR - 1)
    } else {
        u64::from(inp.u16() % 512) * SECTOR
    };
    if kind & 1 == 0 {
        Op::Page(off, page(u64::from(inp.u16())))
    } else {
        let len = if raw_offsets && kind & 4 != 0 {
            inp.u64() & !(SECTOR - 1)
        } else {
            u64::from(inp.u8() % 16) * SECTOR
        };
        Op::Zero(off, len)
    }
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    if mode & 0x80 != 0 {
        raw(&mut inp, mode);
    } else if mode & 0x40 != 0 {
        clean(&mut inp);
    } else {
        dirty(&mut inp);
    }
}

fn guid(inp: &mut Input) -> Uuid {
    let g = Uuid::from_bytes(inp.array());
    if g.is_nil() {
        Uuid::from_u128(1)
    } else {
        g
    }
}

fn clean(inp: &mut Input) {
    let n = 2 + usize::from(inp.u8() % 63);
    let g = guid(inp);
    let start = usize::from(inp.u8()) % n;
    let base = 1 + inp.u64() % (u64::MAX - 64);
    let k = 1 + usize::from(inp.u8() % 6);
    let mut specs: Vec<EntrySpec> = Vec::new();
    let mut used = 0;
    for i in 0..k {
        let m = usize::from(inp.u8() % 6);
        let ops: Vec<Op> = (0..m).map(|_| op(inp, false)).collect();
        let e = EntrySpec {
            seq: base + i as u64,
            tail: 0,
            guid: g,
            ops,
            flushed: inp.u64(),
            last: inp.u64(),
            extra_sectors: usize::from(inp.u8() % 2),
        };
        if used + e.sectors() > n {
            break;
        }
        used += e.sectors();
        specs.push(e);
    }
    if specs.is_empty() {
        return;
    }
    // Positions, then tails: any earlier entry of the sequence (or itself).
    let mut positions = Vec::new();
    let mut at = start;
    for e in &specs {
        positions.push(at % n);
        at += e.sectors();
    }
    for i in 0..specs.len() {
        let t = usize::from(inp.u8()) % (i + 1);
        specs[i].tail = (positions[t] * S) as u32;
    }
    let mut log = vec![0u8; n * S];
    for (e, &p) in specs.iter().zip(&positions) {
        put_ring(&mut log, p * S, &e.bytes());
    }
    let head = specs.last().unwrap();
    let t = positions.iter().position(|&p| p * S == head.tail as usize).unwrap();

    let all_ops = ops_in(&log);
    let r = replay_twice(&log, g, &all_ops);
    super::note(&format!("clean: {} entries from {}", specs.len(), t));
    let r = match r {
        Ok(r) => r,
        Err(e) => panic!("a clean log of {} entries was refused: {e}", specs.len()),
    };
    assert_eq!(r.entries, specs.len() - t, "entries replayed");
    assert_eq!(r.head_sequence, head.seq);
    assert_eq!((r.flushed_file_offset, r.last_file_offset), (head.flushed, head.last));
    let ops: Vec<Op> = specs[t..].iter().flat_map(|e| e.ops.clone()).collect();
    for (off, len) in probes(&ops, &mut Input::new(&[])) {
        let mut got = sentinel(off, len);
        r.overlay.apply(off, &mut got);
        let want = expected(&ops, off, len);
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
            panic!(
                "byte {:#x} after replay is {:#04x}, expected {:#04x}",
                off + i as u64,
                got[i],
                want[i]
            );
        }
    }
    assert!(!r.overlay.is_empty() || ops.iter().all(|o| matches!(o, Op::Zero(_, 0))));
}

fn dirty(inp: &mut Input) {
    let n = 1 + usize::from(inp.u8() % 64);
    let g = guid(inp);
    let other = Uuid::from_u128(0xFFFF);
    let k = usize::from(inp.u8() % 8);
    let mut log = vec![0u8; n * S];
    let base = inp.u64();
    for i in 0..k {
        let flags = inp.u8();
        let m = usize::from(inp.u8() % 6);
        let ops: Vec<Op> = (0..m).map(|_| op(inp, flags & 0x40 != 0)).collect();
        let e = EntrySpec {
            seq: if flags & 1 != 0 {
                inp.u64()
            } else {
                base.wrapping_add(i as u64)
            },
            tail: if flags & 2 != 0 {
                inp.u32()
            } else {
                u32::from(inp.u8()) * S as u32
            },
            guid: if flags & 4 != 0 { other } else { g },
            ops,
            flushed: inp.u64(),
            last: inp.u64(),
            extra_sectors: usize::from(flags >> 7),
        };
        let mut b = e.bytes();
        if flags & 8 != 0 {
            // Damage one byte, possibly restoring the checksum after it.
            let at = usize::from(inp.u16()) % b.len();
            b[at] ^= inp.u8() | 1;
            if flags & 0x10 != 0 {
                fix_crc(&mut b, 4);
            }
        }
        if flags & 0x20 != 0 {
            put32(&mut b, 8, inp.u32());
        }
        let pos = usize::from(inp.u8()) % n;
        put_ring(&mut log, pos * S, &b);
    }
    let ops = ops_in(&log);
    let r = replay_twice(&log, g, &ops);
    super::note(&format!("dirty: {:?}", r.as_ref().map(|r| r.entries).map_err(|_| ())));
    if let Ok(r) = &r {
        check_sound(&r.overlay, &ops, inp);
    }
}

fn raw(inp: &mut Input, mode: u8) {
    let g = guid(inp);
    let mut log = inp.rest().to_vec();
    if mode & 2 != 0 {
        log.truncate(log.len() / S * S);
    }
    if mode & 1 != 0 && log.len() % S == 0 {
        for pos in (0..log.len()).step_by(S) {
            if &log[pos..pos + 4] == b"loge" {
                let len = le32(&log, pos + 8) as usize;
                if len >= 8 && len <= log.len() && len % S == 0 {
                    let mut e: Vec<u8> = (0..len).map(|i| log[(pos + i) % log.len()]).collect();
                    fix_crc(&mut e, 4);
                    put_ring(&mut log, pos, &e[..8]);
                }
            }
        }
    }
    let ops = ops_in(&log);
    let r = replay_twice(&log, g, &ops);
    super::note(&format!("raw: {:?}", r.as_ref().map(|r| r.entries).map_err(|_| ())));
    if let Ok(r) = &r {
        check_sound(&r.overlay, &ops, &mut Input::new(&[]));
    }
}

/// Replay twice (the second time from a copy) and check both give the same result.
fn replay_twice(log: &[u8], g: Uuid, ops: &[Op]) -> Result<Replay, String> {
    let a = l::replay(log, g, 0x10_0000);
    let copy = log.to_vec();
    let b = l::replay(&copy, g, 0x10_0000);
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.entries, a.head_sequence, a.flushed_file_offset, a.last_file_offset),
                (b.entries, b.head_sequence, b.flushed_file_offset, b.last_file_offset),
                "replay is not deterministic"
            );
            assert_eq!(a.overlay.extent_end(), b.overlay.extent_end());
            assert_eq!(a.overlay.is_empty(), b.overlay.is_empty());
            for (off, len) in probes(ops, &mut Input::new(&[])) {
                let (mut x, mut y) = (sentinel(off, len), sentinel(off, len));
                a.overlay.apply(off, &mut x);
                b.overlay.apply(off, &mut y);
                assert!(x == y, "replay is not deterministic at {off:#x}");
            }
            assert!(a.entries >= 1 && a.head_sequence >= 1);
            Ok(a)
        }
        (Err(a), Err(b)) => {
            assert!(matches!(a, ckptfs::format::vhdx::VhdxError::Corrupt { .. }), "{a}");
            assert_eq!(a.to_string(), b.to_string());
            Err(a.to_string())
        }
        (a, b) => panic!("replay is not deterministic: {a:?} then {b:?}"),
    }
}

/// Every byte the overlay changes is explained by some descriptor in the log.
fn check_sound(o: &Overlay, ops: &[Op], inp: &mut Input) {
    let end = o.extent_end();
    for (off, len) in probes(ops, inp) {
        let mut b = sentinel(off, len);
        o.apply(off, &mut b);
        // Which bytes a 4 KiB-aligned page or zeroed range of some descriptor explains.
        let wend = off + len as u64;
        let mut explained = vec![false; len];
        for op in ops {
            let (a, z) = op.range();
            let (from, to) = (a.max(off), z.min(wend));
            if a % SECTOR != 0 || z % SECTOR != 0 || from >= to {
                continue;
            }
            for x in from..to {
                let i = (x - off) as usize;
                explained[i] |= op.byte(x) == Some(b[i]);
            }
        }
        for (i, &v) in b.iter().enumerate() {
            let x = off + i as u64;
            if v == sentinel_byte(x) {
                continue;
            }
            assert!(!o.is_empty(), "an empty overlay changed byte {x:#x}");
            assert!(x < end, "byte {x:#x} changed at or past extent_end {end:#x}");
            assert!(
                explained[i],
                "byte {x:#x} became {v:#04x}, which no aligned descriptor in the log writes"
            );
        }
    }
}

/// Every descriptor of every "loge" sector in the log, valid or not: a superset of what
/// a replay may apply.
fn ops_in(log: &[u8]) -> Vec<Op> {
    let mut out = Vec::new();
    if log.is_empty() || log.len() % S != 0 {
        return out;
    }
    let n = log.len();
    // `len` bytes at `at` in the entry starting at `pos`, around the ring.
    let ring = |pos: usize, at: usize, len: usize| -> Vec<u8> { (0..len).map(|i| log[(pos + at + i) % n]).collect() };
    for pos in (0..n).step_by(S) {
        if &log[pos..pos + 4] != b"loge" {
            continue;
        }
        let len = (le32(log, pos + 8) as usize).min(n);
        let count = (le32(log, pos + 24) as usize).min(len.saturating_sub(64) / 32);
        let descriptors = ring(pos, 64, 32 * count);
        let mut ds = descriptor_sectors(count);
        for d in descriptors.chunks_exact(32) {
            let off = le64(d, 16);
            match &d[..4] {
                b"zero" => out.push(Op::Zero(off, le64(d, 8))),
                b"desc" => {
                    if (ds + 1) * S <= len {
                        let s = ring(pos, ds * S, S);
                        let mut p = vec![0u8; S];
                        p[..8].copy_from_slice(&d[8..16]);
                        p[8..S - 4].copy_from_slice(&s[8..S - 4]);
                        p[S - 4..].copy_from_slice(&d[4..8]);
                        out.push(Op::Page(off, p));
                    }
                    ds += 1;
                }
                _ => {}
            }
        }
    }
    out
}

/// The bytes of `off..off + len` after applying `ops` in order over the sentinel.
fn expected(ops: &[Op], off: u64, len: usize) -> Vec<u8> {
    let mut b = sentinel(off, len);
    let end = off + len as u64;
    for op in ops {
        let (a, z) = op.range();
        let (from, to) = (a.max(off), z.min(end));
        if from >= to {
            continue;
        }
        let dst = &mut b[(from - off) as usize..(to - off) as usize];
        match op {
            Op::Page(p, data) => dst.copy_from_slice(&data[(from - p) as usize..(to - p) as usize]),
            Op::Zero(..) => dst.fill(0),
        }
    }
    b
}

/// Windows to look at: both sides of the start and end of every op (capped), a little
/// of its middle, then places from the input.
fn probes(ops: &[Op], inp: &mut Input) -> Vec<(u64, usize)> {
    let mut w = Vec::new();
    let add = |w: &mut Vec<(u64, usize)>, at: u64, radius: u64| {
        let off = at.saturating_sub(radius).min(u64::MAX - 2 * radius);
        w.push((off, 2 * radius as usize));
    };
    for op in ops.iter().take(48) {
        let (a, b) = op.range();
        add(&mut w, a, SECTOR + 3);
        add(&mut w, b, SECTOR + 3);
        add(&mut w, a / 2 + b / 2, 64);
    }
    add(&mut w, 0, 64);
    while !inp.is_empty() && w.len() < 64 {
        add(&mut w, u64::from(inp.u32()) * 16, 256);
    }
    w
}

/// Even and non-zero, so never a byte of a data page (odd) nor of a zeroed range.
fn sentinel_byte(x: u64) -> u8 {
    (x as u8 ^ (x >> 9) as u8) & 0xFE | 2
}

fn sentinel(off: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| sentinel_byte(off + i)).collect()
}
