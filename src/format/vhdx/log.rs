//! The VHDX log (MS-VHDX 2.3): a ring buffer of entries, each a set of 4 KiB writes and
//! zeroed ranges to the file's metadata. When the header's LogGuid is non-zero the
//! newest complete sequence of entries must be replayed before anything else is read.
//! ckptfs never writes an image, so the replay goes into an in-memory [`Overlay`].

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use super::header::crc32c_with_zeroed_field;
use super::VhdxError;
use crate::bytes::{guid, le_u32, le_u64};

const SECTOR: usize = 4096;
const ENTRY_HEADER_SIZE: usize = 64;
const DESCRIPTOR_SIZE: usize = 32;
/// Hyper-V writes a 1 MiB log. A far larger one is refused rather than read into memory.
pub const MAX_LOG_LENGTH: u64 = 64 << 20;

/// Writes from a replayed log, held in memory in front of the file.
#[derive(Debug, Default, Clone)]
pub struct Overlay {
    /// 4 KiB-aligned file offset → the sector's new contents.
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Zeroed ranges, start → end, disjoint. A page written after a zeroing is kept in
    /// `pages`, which take precedence; zeroing removes the pages it covers.
    zeros: BTreeMap<u64, u64>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.zeros.is_empty()
    }

    fn write_page(&mut self, offset: u64, data: Box<[u8]>) {
        self.pages.insert(offset, data);
    }

    fn zero(&mut self, offset: u64, len: u64) {
        let (mut start, mut end) = (offset, offset + len);
        let covered: Vec<u64> = self.pages.range(start..end).map(|(k, _)| *k).collect();
        for k in covered {
            self.pages.remove(&k);
        }
        if let Some((&s, &e)) = self.zeros.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.zeros.remove(&s);
            }
        }
        let following: Vec<u64> = self.zeros.range(start..=end).map(|(k, _)| *k).collect();
        for k in following {
            end = end.max(self.zeros.remove(&k).unwrap_or(end));
        }
        self.zeros.insert(start, end);
    }

    /// End of the furthest byte the overlay writes.
    pub fn extent_end(&self) -> u64 {
        let pages = self.pages.keys().next_back().map_or(0, |k| k + SECTOR as u64);
        let zeros = self.zeros.values().next_back().copied().unwrap_or(0);
        pages.max(zeros)
    }

    /// Whether a replayed write changes any byte of `offset..offset + len`.
    pub fn touches(&self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len);
        let first_page = offset - offset % SECTOR as u64;
        let first_zero = self.zeros.range(..=offset).next_back().map_or(offset, |(s, _)| *s);
        self.pages.range(first_page..end).next().is_some()
            || self
                .zeros
                .range(first_zero..end)
                .any(|(&s, &e)| s.max(offset) < e.min(end))
    }

    /// Patch `buf`, which holds the file's bytes at `offset`, with the replayed writes.
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let first_zero = self.zeros.range(..=offset).next_back().map_or(offset, |(s, _)| *s);
        for (&s, &e) in self.zeros.range(first_zero..end) {
            let (a, b) = (s.max(offset), e.min(end));
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize].fill(0);
            }
        }
        let first_page = offset - offset % SECTOR as u64;
        for (&p, data) in self.pages.range(first_page..end) {
            let (a, b) = (p.max(offset), (p + SECTOR as u64).min(end));
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&data[(a - p) as usize..(b - p) as usize]);
            }
        }
    }
}

/// The outcome of a replay.
#[derive(Debug, Clone)]
pub struct Replay {
    pub overlay: Overlay,
    /// Entries replayed (the active sequence, tail to head).
    pub entries: usize,
    pub head_sequence: u64,
    pub flushed_file_offset: u64,
    pub last_file_offset: u64,
}

/// A log entry that passed every check; data is read again from the log at replay.
#[derive(Debug, Clone, Copy)]
struct Entry {
    position: u64,
    length: u64,
    tail: u64,
    sequence: u64,
    descriptors: usize,
    flushed_file_offset: u64,
    last_file_offset: u64,
}

/// Find the active sequence in `log` (the whole log region) and replay it.
/// `log_offset` is only used in messages.
pub fn replay(log: &[u8], log_guid: Uuid, log_offset: u64) -> Result<Replay, VhdxError> {
    let active = find_active_sequence(log, log_guid).ok_or_else(|| {
        VhdxError::corrupt(
            "log",
            log_offset,
            format!(
                "the header says the log must be replayed (LogGuid {log_guid}), but the log holds no valid, complete sequence of entries"
            ),
        )
    })?;
    let head = *active.last().expect("an active sequence is never empty");
    let mut overlay = Overlay::default();
    for e in &active {
        apply_entry(log, e, &mut overlay);
    }
    Ok(Replay {
        overlay,
        entries: active.len(),
        head_sequence: head.sequence,
        flushed_file_offset: head.flushed_file_offset,
        last_file_offset: head.last_file_offset,
    })
}

/// MS-VHDX 2.3.3: scan the ring for sequences of valid entries with consecutive
/// sequence numbers whose head's tail lies inside the sequence; keep the one with the
/// highest head sequence number, from its tail entry on.
fn find_active_sequence(log: &[u8], log_guid: Uuid) -> Option<Vec<Entry>> {
    scan(log, log_guid).0
}

/// The active sequence, and how many entries the scan walked (to test that it is
/// linear).
fn scan(log: &[u8], log_guid: Uuid) -> (Option<Vec<Entry>>, usize) {
    let len = log.len() as u64;
    if len < SECTOR as u64 || len % SECTOR as u64 != 0 {
        return (None, 0);
    }
    // Each position is validated once, however many candidate sequences pass over it.
    let mut seen: HashMap<u64, Option<Entry>> = HashMap::new();
    let mut entry_at = |pos: u64| *seen.entry(pos).or_insert_with(|| parse_entry(log, pos, log_guid));
    // Starts known to fail: the later entries of an invalid sequence that ended at a
    // break. A sequence started at one of them is a suffix of that one, with the same
    // head, whose tail it cannot contain either. Without this, a ring of short entries
    // whose tail is nowhere costs quadratic time.
    let mut dead: HashSet<u64> = HashSet::new();
    let mut steps = 0usize;

    let mut best: Option<Vec<Entry>> = None;
    let mut start = 0u64;
    while start < len {
        if dead.contains(&start) {
            start += SECTOR as u64;
            continue;
        }
        let mut sequence: Vec<Entry> = Vec::new();
        let mut pos = start;
        let mut spanned = 0u64;
        let broke = loop {
            let Some(e) = entry_at(pos % len) else { break true };
            steps += 1;
            if sequence
                .last()
                .is_some_and(|last| e.sequence != last.sequence.wrapping_add(1))
            {
                break true;
            }
            if spanned + e.length > len {
                break false;
            }
            spanned += e.length;
            pos += e.length;
            sequence.push(e);
        };
        let tail_index = sequence
            .last()
            .and_then(|head| sequence.iter().position(|e| e.position == head.tail));
        match tail_index {
            Some(t) => {
                let head_seq = sequence.last().map_or(0, |h| h.sequence);
                if best
                    .as_ref()
                    .is_none_or(|b| head_seq > b.last().map_or(0, |h| h.sequence))
                {
                    best = Some(sequence[t..].to_vec());
                }
                start += spanned;
            }
            None => {
                if broke {
                    dead.extend(sequence.iter().skip(1).map(|e| e.position));
                }
                start += SECTOR as u64;
            }
        }
    }
    (best, steps)
}

/// The entry's bytes, which may wrap around the end of the ring.
fn entry_bytes(log: &[u8], pos: u64, length: u64) -> Vec<u8> {
    let (pos, length) = (pos as usize, length as usize);
    let first = length.min(log.len() - pos);
    let mut b = Vec::with_capacity(length);
    b.extend_from_slice(&log[pos..pos + first]);
    b.extend_from_slice(&log[..length - first]);
    b
}

fn descriptor_sectors(count: usize) -> usize {
    (ENTRY_HEADER_SIZE + count * DESCRIPTOR_SIZE).div_ceil(SECTOR)
}

/// Validate the entry at `pos`: header fields, LogGuid, checksum, every descriptor and
/// data sector. `None` for anything that is not a valid entry of this log.
fn parse_entry(log: &[u8], pos: u64, log_guid: Uuid) -> Option<Entry> {
    let len = log.len() as u64;
    let head = &log[pos as usize..pos as usize + SECTOR];
    if &head[..4] != b"loge" {
        return None;
    }
    let length = u64::from(le_u32(head, 8));
    let tail = u64::from(le_u32(head, 12));
    let sequence = le_u64(head, 16);
    let count = le_u32(head, 24) as usize;
    if length == 0 || length % SECTOR as u64 != 0 || length > len || tail % SECTOR as u64 != 0 || tail >= len {
        return None;
    }
    if sequence == 0 || guid(head, 32) != log_guid {
        return None;
    }
    if ENTRY_HEADER_SIZE + count.checked_mul(DESCRIPTOR_SIZE)? > length as usize {
        return None;
    }
    let b = entry_bytes(log, pos, length);
    if le_u32(&b, 4) != crc32c_with_zeroed_field(&b, 4) {
        return None;
    }
    let mut data_sector = descriptor_sectors(count);
    for i in 0..count {
        let d = &b[ENTRY_HEADER_SIZE + i * DESCRIPTOR_SIZE..][..DESCRIPTOR_SIZE];
        if le_u64(d, 24) != sequence {
            return None;
        }
        let file_offset = le_u64(d, 16);
        if file_offset % SECTOR as u64 != 0 {
            return None;
        }
        match &d[..4] {
            b"zero" => {
                let zero_len = le_u64(d, 8);
                if zero_len % SECTOR as u64 != 0 || file_offset.checked_add(zero_len).is_none() {
                    return None;
                }
            }
            b"desc" => {
                let s = b.get(data_sector * SECTOR..(data_sector + 1) * SECTOR)?;
                let high = (sequence >> 32) as u32;
                let low = sequence as u32;
                if &s[..4] != b"data" || le_u32(s, 4) != high || le_u32(s, SECTOR - 4) != low {
                    return None;
                }
                file_offset.checked_add(SECTOR as u64)?;
                data_sector += 1;
            }
            _ => return None,
        }
    }
    Some(Entry {
        position: pos,
        length,
        tail,
        sequence,
        descriptors: count,
        flushed_file_offset: le_u64(head, 48),
        last_file_offset: le_u64(head, 56),
    })
}

/// Apply one validated entry's descriptors, in order.
fn apply_entry(log: &[u8], e: &Entry, overlay: &mut Overlay) {
    let b = entry_bytes(log, e.position, e.length);
    let mut data_sector = descriptor_sectors(e.descriptors);
    for i in 0..e.descriptors {
        let d = &b[ENTRY_HEADER_SIZE + i * DESCRIPTOR_SIZE..][..DESCRIPTOR_SIZE];
        let file_offset = le_u64(d, 16);
        if &d[..4] == b"zero" {
            overlay.zero(file_offset, le_u64(d, 8));
        } else {
            // The data sector lost its first 8 and last 4 bytes to the signature and the
            // sequence number; the descriptor keeps them.
            let s = &b[data_sector * SECTOR..(data_sector + 1) * SECTOR];
            let mut page = vec![0u8; SECTOR].into_boxed_slice();
            page[..8].copy_from_slice(&d[8..16]);
            page[8..SECTOR - 4].copy_from_slice(&s[8..SECTOR - 4]);
            page[SECTOR - 4..].copy_from_slice(&d[4..8]);
            overlay.write_page(file_offset, page);
            data_sector += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Uuid = uuid::uuid!("01020304-0506-0708-090a-0b0c0d0e0f10");

    enum D {
        Data(u64, u8),
        Zero(u64, u64),
    }

    /// Build one entry: header, descriptors, data sectors, checksum.
    fn entry(seq: u64, tail: u64, guid: Uuid, descs: &[D]) -> Vec<u8> {
        let data: Vec<&D> = descs.iter().filter(|d| matches!(d, D::Data(..))).collect();
        let nd = descriptor_sectors(descs.len());
        let mut b = vec![0u8; (nd + data.len()) * SECTOR];
        let len = b.len() as u32;
        b[..4].copy_from_slice(b"loge");
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..16].copy_from_slice(&(tail as u32).to_le_bytes());
        b[16..24].copy_from_slice(&seq.to_le_bytes());
        b[24..28].copy_from_slice(&(descs.len() as u32).to_le_bytes());
        b[32..48].copy_from_slice(&guid.to_bytes_le());
        b[48..56].copy_from_slice(&(1u64 << 20).to_le_bytes());
        b[56..64].copy_from_slice(&(8u64 << 20).to_le_bytes());
        let mut ds = nd;
        for (i, d) in descs.iter().enumerate() {
            let at = ENTRY_HEADER_SIZE + i * DESCRIPTOR_SIZE;
            match d {
                D::Zero(off, len) => {
                    b[at..at + 4].copy_from_slice(b"zero");
                    b[at + 8..at + 16].copy_from_slice(&len.to_le_bytes());
                    b[at + 16..at + 24].copy_from_slice(&off.to_le_bytes());
                }
                D::Data(off, fill) => {
                    b[at..at + 4].copy_from_slice(b"desc");
                    b[at + 4..at + 8].copy_from_slice(&[*fill; 4]); // trailing bytes
                    b[at + 8..at + 16].copy_from_slice(&[*fill; 8]); // leading bytes
                    b[at + 16..at + 24].copy_from_slice(&off.to_le_bytes());
                    let s = ds * SECTOR;
                    b[s..s + 4].copy_from_slice(b"data");
                    b[s + 4..s + 8].copy_from_slice(&((seq >> 32) as u32).to_le_bytes());
                    b[s + 8..s + SECTOR - 4].fill(*fill);
                    b[s + SECTOR - 4..s + SECTOR].copy_from_slice(&(seq as u32).to_le_bytes());
                    ds += 1;
                }
            }
            b[at + 24..at + 32].copy_from_slice(&seq.to_le_bytes());
        }
        let crc = crc32c_with_zeroed_field(&b, 4);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn put(log: &mut [u8], pos: usize, e: &[u8]) {
        for (i, byte) in e.iter().enumerate() {
            let at = (pos + i) % log.len();
            log[at] = *byte;
        }
    }

    fn read(o: &Overlay, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0xEE; len];
        o.apply(off, &mut b);
        b
    }

    #[test]
    fn a_single_entry_writes_its_sector_with_the_moved_bytes_restored() {
        let mut log = vec![0u8; 1 << 20];
        put(&mut log, 0, &entry(1, 0, G, &[D::Data(0x30_0000, 0xAA)]));
        let r = replay(&log, G, 0).unwrap();
        assert_eq!((r.entries, r.head_sequence), (1, 1));
        assert_eq!(read(&r.overlay, 0x30_0000, 4096), vec![0xAA; 4096]);
        // Untouched bytes stay as the file has them.
        assert_eq!(read(&r.overlay, 0x30_1000, 16), vec![0xEE; 16]);
    }

    #[test]
    fn the_newest_sequence_wins_and_is_replayed_from_its_tail_in_order() {
        let mut log = vec![0u8; 1 << 20];
        // An old complete sequence (seq 5) ...
        put(&mut log, 0x8_0000, &entry(5, 0x8_0000, G, &[D::Data(0x10_0000, 1)]));
        // ... and the newer one: 10 (already flushed, before the tail), 11 (tail), 12 (head).
        put(&mut log, 0, &entry(10, 0, G, &[D::Data(0x10_0000, 9)]));
        put(
            &mut log,
            0x2000,
            &entry(11, 0x2000, G, &[D::Data(0x10_0000, 2), D::Data(0x20_0000, 3)]),
        );
        put(
            &mut log,
            0x5000,
            &entry(12, 0x2000, G, &[D::Zero(0x20_0000, 0x1000), D::Data(0x10_0000, 4)]),
        );
        let r = replay(&log, G, 0).unwrap();
        assert_eq!((r.entries, r.head_sequence), (2, 12));
        assert_eq!(read(&r.overlay, 0x10_0000, 4096), vec![4; 4096]);
        assert_eq!(read(&r.overlay, 0x20_0000, 4096), vec![0; 4096]);
    }

    #[test]
    fn entries_wrapping_around_the_end_of_the_ring_are_read() {
        let mut log = vec![0u8; 64 * 1024];
        let e = entry(7, 0xF000, G, &[D::Data(0x40_0000, 0x5A), D::Data(0x40_1000, 0x5B)]);
        assert_eq!(e.len(), 3 * SECTOR);
        put(&mut log, 0xF000, &e); // starts in the last sector, wraps to 0
        let r = replay(&log, G, 0).unwrap();
        assert_eq!(read(&r.overlay, 0x40_1000, 4096), vec![0x5B; 4096]);
    }

    #[test]
    fn entries_of_another_log_guid_or_damaged_are_ignored() {
        let other = uuid::uuid!("ffffffff-0506-0708-090a-0b0c0d0e0f10");
        let mut log = vec![0u8; 1 << 20];
        put(&mut log, 0, &entry(3, 0, G, &[D::Data(0x10_0000, 1)]));
        put(&mut log, 0x2000, &entry(9, 0x2000, other, &[D::Data(0x10_0000, 2)]));
        let mut torn = entry(4, 0, G, &[D::Data(0x10_0000, 3)]);
        torn[SECTOR + 100] ^= 1; // checksum no longer matches
        put(&mut log, 0x4000, &torn);
        let r = replay(&log, G, 0).unwrap();
        assert_eq!((r.entries, r.head_sequence), (1, 3));
        assert_eq!(read(&r.overlay, 0x10_0000, 8), vec![1; 8]);
    }

    #[test]
    fn a_sequence_whose_tail_is_outside_it_is_not_valid() {
        let mut log = vec![0u8; 1 << 20];
        put(&mut log, 0x1000, &entry(2, 0x8000, G, &[D::Data(0x10_0000, 1)]));
        let err = replay(&log, G, 0x10_0000).unwrap_err().to_string();
        assert!(
            err.contains("no valid, complete sequence") && err.contains("0x100000"),
            "{err}"
        );
    }

    #[test]
    fn a_data_sector_with_the_wrong_sequence_number_invalidates_the_entry() {
        let mut e = entry(0x1_0000_0002, 0, G, &[D::Data(0x10_0000, 1)]);
        e[SECTOR + 4] ^= 1; // SequenceHigh
        let crc = crc32c_with_zeroed_field(&e, 4);
        e[4..8].copy_from_slice(&crc.to_le_bytes());
        let mut log = vec![0u8; 1 << 20];
        put(&mut log, 0, &e);
        assert!(replay(&log, G, 0).is_err());
    }

    /// A ring of one-sector entries with consecutive sequence numbers whose tail (0)
    /// holds no entry: every start fails, and the scan must stay linear.
    #[test]
    fn a_ring_of_entries_without_their_tail_is_scanned_in_linear_time() {
        let sectors = 1024;
        let mut log = vec![0u8; sectors * SECTOR];
        for i in 1..sectors {
            put(&mut log, i * SECTOR, &entry(i as u64, 0, G, &[]));
        }
        let (found, steps) = scan(&log, G);
        assert!(found.is_none());
        assert!(steps <= 3 * sectors, "{steps} steps for {sectors} sectors");
        assert!(replay(&log, G, 0).is_err());
    }

    #[test]
    fn zeroing_then_writing_and_writing_then_zeroing() {
        let mut o = Overlay::default();
        o.write_page(0x1000, vec![7; SECTOR].into_boxed_slice());
        o.zero(0, 0x3000);
        o.write_page(0x2000, vec![8; SECTOR].into_boxed_slice());
        o.zero(0x5000, 0x1000);
        o.zero(0x3000, 0x2000); // joins the two zero ranges
        assert_eq!(read(&o, 0x1000, 4), vec![0; 4]);
        assert_eq!(read(&o, 0x2000, 4), vec![8; 4]);
        assert_eq!(read(&o, 0x4FFE, 4), vec![0; 4]);
        assert_eq!(read(&o, 0x6000, 2), vec![0xEE; 2]);
        assert_eq!(o.extent_end(), 0x6000);
        assert_eq!(o.zeros.len(), 1);
    }
}
