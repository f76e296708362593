//! The reference shared by the `mbr`, `gpt` and `partition_table` targets: a sparse
//! in-memory disk with an optional failing range, and `read_partition_table` rewritten
//! here from the rules its module documents (sector 0 classified as the Linux kernel and
//! libblkid do; EBR chains numbered 5, 6, ... across extended partitions; UEFI 2.10 §5.3
//! for the GPT with this reader's limits), reading the disk's bytes itself with its own
//! decoding and its own CRC-32.
//!
//! Warnings are compared exactly too, without copying their prose: each warning the
//! crate returns is classified by the phrase that names its case ([`classify`]), and the
//! numbers in its text (decimal, or `0x` hex) must be the reference's, all of them or,
//! for a warning that quotes another error, those before or after the quote.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use ckptfs::io::ReadAt;
use ckptfs::volume::partition::gpt::{GptEntry, GptHeader};
use ckptfs::volume::partition::mbr::{Ebr, MbrEntry, Sector0};
use ckptfs::volume::partition::{Partition, PartitionKind, PartitionTable, TableKind};
use ckptfs::Error;

use super::{guid_at, le16, le32, le64, put32, put64};

/// MBR, EBRs and the granule of the sparse disk.
pub const SECTOR: usize = 512;
/// Compared with as a slice: one `memcmp`, not one traced comparison a byte.
static ZEROS: [u8; SECTOR] = [0; SECTOR];
/// The limits the reader documents (`mbr::MAX_LOGICAL`, twice that many EBRs per chain,
/// `gpt::MAX_ENTRIES`, `gpt::MAX_ARRAY_BYTES`, 64 warnings, 8 overlap warnings).
pub const MAX_LOGICAL: u32 = 128;
pub const MAX_EBRS: usize = 256;
pub const MAX_ENTRIES: u32 = 16384;
pub const MAX_ARRAY_BYTES: u64 = 4 << 20;
pub const MAX_WARNINGS: usize = 64;
pub const MAX_OVERLAP_WARNINGS: usize = 8;

/// Known deviation, reported to the lead: with the primary GPT intact, the reader checks
/// the backup header (its own LBA, CRC, and that it lists the same array) but never
/// reads the backup's entry array, so a backup whose array is damaged earns no warning,
/// although `gpt::check_backup` exists to tell the user of "a damaged or diverging
/// backup ... before anyone repairs the disk from it". While this is `true` the model
/// follows the reader; set it to `false` once the backup array is checked too, and the
/// model expects the "backup GPT at LBA n: ...; the primary GPT is intact and used"
/// warning for it.
pub const BACKUP_ARRAY_UNCHECKED: bool = false;

/// Known deviation, reported to the lead: `place` computes the bytes an entry asks for
/// with `saturating_mul`, so on a disk of `u64::MAX` bytes an entry at LBA 0 asking for
/// 2^64 bytes or more saturates to exactly the room left and is cut without the
/// "reaches past the end of the disk; cut to" warning. Only a disk of 2^64 - 1 bytes
/// shows it. While this is `true` the model saturates too; set it to `false` once an
/// overflowing size counts as past the end.
pub const OVERFLOWING_SIZE_CUT_SILENTLY: bool = false;

pub const ESP: u128 = 0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b;
pub const MSR: u128 = 0xe3c9e316_0b5c_4db8_817d_f92df00215ae;
pub const BASIC: u128 = 0xebd0a0a2_b9e5_4433_87c0_68b6b72699c7;
pub const LINUX: u128 = 0x0fc63daf_8483_4772_8e79_3d69d8477de4;
pub const SWAP: u128 = 0x0657fd6d_a4ab_43c4_84e5_0933c84b4f4f;
pub const BIOS_BOOT: u128 = 0x21686148_6449_6e6f_744e_656564454649;

// ---- the disk ----

/// A disk of any size that stores only the 512-byte granules written; reads of the rest
/// are zeros. Reads overlapping `fault` fail with an I/O error. It counts the reads.
pub struct Disk {
    pub size: u64,
    granules: BTreeMap<u64, [u8; SECTOR]>,
    pub fault: Option<(u64, u64)>,
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl Disk {
    pub fn new(size: u64) -> Self {
        Disk {
            size,
            granules: BTreeMap::new(),
            fault: None,
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Write `bytes` at `offset`; what falls past the end of the disk is dropped.
    pub fn put(&mut self, offset: u64, bytes: &[u8]) {
        let end = offset.saturating_add(bytes.len() as u64).min(self.size);
        let mut pos = offset;
        while pos < end {
            let within = (pos % SECTOR as u64) as usize;
            let n = (SECTOR - within).min((end - pos) as usize);
            let src = &bytes[(pos - offset) as usize..][..n];
            let key = pos / SECTOR as u64;
            // Zeros over a granule never written change nothing: large arrays stay cheap.
            if src != &ZEROS[..n] || self.granules.contains_key(&key) {
                let g = self.granules.entry(key).or_insert([0; SECTOR]);
                g[within..within + n].copy_from_slice(src);
            }
            pos += n as u64;
        }
    }

    /// The written granules: (byte offset, bytes), in order.
    pub fn granules(&self) -> impl Iterator<Item = (u64, &[u8; SECTOR])> {
        self.granules.iter().map(|(g, b)| (g * SECTOR as u64, b))
    }

    fn fill(&self, offset: u64, buf: &mut [u8]) {
        buf.fill(0);
        if buf.is_empty() {
            return;
        }
        let end = offset + buf.len() as u64;
        let s = SECTOR as u64;
        for (&g, b) in self.granules.range(offset / s..=(end - 1) / s) {
            let g_at = g * s;
            let from = g_at.max(offset);
            let to = (g_at + s).min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&b[(from - g_at) as usize..(to - g_at) as usize]);
        }
    }

    fn faulty(&self, offset: u64, len: u64) -> bool {
        len > 0
            && self
                .fault
                .is_some_and(|(s, e)| offset < e && s < offset.saturating_add(len))
    }

    /// What `read_at` does, for the reference: `None` exactly when it fails.
    pub fn get(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let end = offset.checked_add(len)?;
        if end > self.size || self.faulty(offset, len) {
            return None;
        }
        let mut v = vec![0u8; len as usize];
        self.fill(offset, &mut v);
        Some(v)
    }

    /// The bytes stored at `offset`, faults ignored, zeros past the end.
    pub fn peek(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let have = self.size.saturating_sub(offset).min(len as u64) as usize;
        self.fill(offset, &mut v[..have]);
        v
    }

    pub fn reads(&self) -> (u64, u64) {
        (self.reads.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

impl ReadAt for Disk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> ckptfs::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        ckptfs::io::check_range(offset, buf.len(), self.size)?;
        if self.faulty(offset, buf.len() as u64) {
            return Err(Error::Io {
                path: "fuzz-disk".into(),
                what: format!("read at {offset:#x}"),
                source: std::io::Error::other("injected fault"),
            });
        }
        self.fill(offset, buf);
        Ok(())
    }
}

// ---- CRC-32 (zlib), independent of crc32fast ----

pub fn crc32(b: &[u8]) -> u32 {
    !crc32_update(!0, b)
}

/// Slicing-by-8 over the bitwise-derived table (arrays reach 4 MiB).
fn crc32_update(mut c: u32, b: &[u8]) -> u32 {
    static T: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = T.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for i in 0..256 {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            t[0][i] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xFF) as usize];
            }
        }
        t
    });
    let mut chunks = b.chunks_exact(8);
    for x in &mut chunks {
        let lo = c ^ u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][(lo >> 8 & 0xFF) as usize]
            ^ t[5][(lo >> 16 & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][usize::from(x[4])]
            ^ t[2][usize::from(x[5])]
            ^ t[1][usize::from(x[6])]
            ^ t[0][usize::from(x[7])];
    }
    for &x in chunks.remainder() {
        c = t[0][((c ^ u32::from(x)) & 0xFF) as usize] ^ (c >> 8);
    }
    c
}

/// The check value of CRC-32/ISO-HDLC, asserted once per process by the GPT checks.
pub fn assert_crc32_reference() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Slicing against the bytewise definition, at every length and alignment.
        let data: Vec<u8> = (0..80u32).map(|i| (i * 151 + 7) as u8).collect();
        for from in 0..8 {
            for len in 0..64 {
                let b = &data[from..from + len];
                let mut c = !0u32;
                for &x in b {
                    c ^= u32::from(x);
                    for _ in 0..8 {
                        c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                    }
                }
                assert_eq!(crc32(b), !c, "{from}+{len}");
            }
        }
    });
}

/// CRC-32 of the first `len` bytes of `b`, missing bytes taken as zero.
pub fn crc32_padded(b: &[u8], len: usize) -> u32 {
    let have = b.len().min(len);
    let mut c = crc32_update(!0, &b[..have]);
    let zeros = [0u8; 4096];
    let mut left = len - have;
    while left > 0 {
        let n = left.min(zeros.len());
        c = crc32_update(c, &zeros[..n]);
        left -= n;
    }
    !c
}

/// Store a GPT header's CRC: over its first `header_size` bytes (cut to the buffer,
/// and at least the 92 defined) with the CRC field zero.
pub fn fix_header_crc(b: &mut [u8]) {
    let size = (le32(b, 12) as usize).clamp(92, b.len());
    put32(b, 16, 0);
    let crc = crc32(&b[..size]);
    put32(b, 16, crc);
}

// ---- MBR ----

fn mbr_entry(s: &[u8], slot: usize) -> MbrEntry {
    let at = 446 + 16 * slot;
    MbrEntry {
        status: s[at],
        type_byte: s[at + 4],
        start_lba: le32(s, at + 8),
        sectors: le32(s, at + 12),
    }
}

fn unused(e: &MbrEntry) -> bool {
    e.type_byte == 0 || e.sectors == 0
}

pub fn is_extended(t: u8) -> bool {
    t == 0x05 || t == 0x0F || t == 0x85
}

/// What sector 0 is, by the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefSector0 {
    NoSignature,
    Boot(&'static str),
    NotATable,
    Table([Option<MbrEntry>; 4]),
}

pub fn ref_boot_sector(s: &[u8]) -> Option<&'static str> {
    if &s[3..11] == b"NTFS    " {
        return Some("NTFS");
    }
    if &s[3..11] == b"EXFAT   " {
        return Some("exFAT");
    }
    let jump = s[0] == 0xE9 || (s[0] == 0xEB && s[2] == 0x90);
    let label = &s[54..57] == b"FAT" || &s[82..87] == b"FAT32";
    let spc = s[13];
    let bpb = [512, 1024, 2048, 4096].contains(&le16(s, 11))
        && spc != 0
        && spc & (spc - 1) == 0
        && le16(s, 14) != 0
        && (s[16] == 1 || s[16] == 2)
        && (s[21] == 0xF0 || s[21] >= 0xF8);
    (jump && label && bpb).then_some("FAT")
}

pub fn ref_sector0(s: &[u8], disk_size: u64, ss: u32) -> RefSector0 {
    if s.len() < SECTOR || s[510] != 0x55 || s[511] != 0xAA {
        return RefSector0::NoSignature;
    }
    if let Some(fs) = ref_boot_sector(s) {
        return RefSector0::Boot(fs);
    }
    let all: Vec<MbrEntry> = (0..4).map(|i| mbr_entry(s, i)).collect();
    if all.iter().any(|e| e.status & 0x7F != 0) {
        return RefSector0::NotATable;
    }
    let mut slots = [None; 4];
    for (i, e) in all.iter().enumerate() {
        if !unused(e) {
            if e.start_lba == 0 {
                return RefSector0::NotATable;
            }
            slots[i] = Some(*e);
        }
    }
    let sectors = disk_size / u64::from(ss);
    let data: Vec<&MbrEntry> = slots.iter().flatten().filter(|e| e.type_byte != 0xEE).collect();
    if !data.is_empty() && data.iter().all(|e| u64::from(e.start_lba) >= sectors) {
        return RefSector0::NotATable;
    }
    RefSector0::Table(slots)
}

pub fn same_sector0(got: &Sector0, exp: &RefSector0) -> bool {
    match (got, exp) {
        (Sector0::NoSignature, RefSector0::NoSignature) => true,
        (Sector0::BootSector(a), RefSector0::Boot(b)) => a == b,
        (Sector0::NotATable(_), RefSector0::NotATable) => true,
        (Sector0::Table(m), RefSector0::Table(s)) => m.slots == *s,
        _ => false,
    }
}

pub fn ref_ebr(s: &[u8]) -> Option<Ebr> {
    if s.len() < SECTOR || s[510] != 0x55 || s[511] != 0xAA {
        return None;
    }
    let mut ebr = Ebr {
        data: None,
        next: None,
        ignored: 0,
    };
    for i in 0..4 {
        let e = mbr_entry(s, i);
        if unused(&e) {
            continue;
        }
        let slot = if is_extended(e.type_byte) {
            &mut ebr.next
        } else {
            &mut ebr.data
        };
        match slot {
            None => *slot = Some(e),
            Some(_) => ebr.ignored += 1,
        }
    }
    Some(ebr)
}

// ---- GPT ----

pub fn ref_header(b: &[u8], lba: u64, ss: u32) -> Option<GptHeader> {
    if b.len() < 92 || &b[..8] != b"EFI PART" {
        return None;
    }
    let size = le32(b, 12) as usize;
    if size < 92 || size > b.len() || size > ss as usize {
        return None;
    }
    let mut copy = b[..size].to_vec();
    put32(&mut copy, 16, 0);
    if crc32(&copy) != le32(b, 16) {
        return None;
    }
    let h = GptHeader {
        my_lba: le64(b, 24),
        alternate_lba: le64(b, 32),
        first_usable_lba: le64(b, 40),
        last_usable_lba: le64(b, 48),
        disk_guid: guid_at(b, 56),
        entries_lba: le64(b, 72),
        entry_count: le32(b, 80),
        entry_size: le32(b, 84),
        entries_crc32: le32(b, 88),
    };
    let bytes = u64::from(h.entry_count) * u64::from(h.entry_size);
    let ok = h.my_lba == lba
        && h.first_usable_lba <= h.last_usable_lba
        && h.entry_size >= 128
        && h.entry_size % 8 == 0
        && h.entry_count <= MAX_ENTRIES
        && bytes <= MAX_ARRAY_BYTES
        && h.entries_lba != 0
        // The array (whole sectors) does not cover the header's own LBA.
        && !(bytes > 0
            && h.entries_lba <= lba
            && lba - h.entries_lba < bytes.div_ceil(u64::from(ss)));
    ok.then_some(h)
}

pub fn ref_entries(array: &[u8], h: &GptHeader) -> Option<Vec<GptEntry>> {
    let len = h.entry_count as usize * h.entry_size as usize;
    if array.len() < len || crc32(&array[..len]) != h.entries_crc32 {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..h.entry_count as usize {
        let e = &array[i * h.entry_size as usize..][..128];
        if e[..16] == ZEROS[..16] {
            continue;
        }
        let type_guid = guid_at(e, 0);
        let units = (0..36).map(|k| le16(e, 56 + 2 * k)).take_while(|&u| u != 0);
        let name: String = char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')).collect();
        out.push(GptEntry {
            number: i as u32 + 1,
            type_guid,
            unique_guid: guid_at(e, 16),
            first_lba: le64(e, 32),
            last_lba: le64(e, 40),
            attributes: le64(e, 48),
            name,
        });
    }
    Some(out)
}

fn read_header(d: &Disk, ss: u32, lba: u64) -> Option<GptHeader> {
    let at = lba.checked_mul(u64::from(ss))?;
    ref_header(&d.get(at, u64::from(ss))?, lba, ss)
}

fn read_entries(d: &Disk, ss: u32, h: &GptHeader) -> Option<Vec<GptEntry>> {
    let at = h.entries_lba.checked_mul(u64::from(ss))?;
    let len = u64::from(h.entry_count) * u64::from(h.entry_size);
    ref_entries(&d.get(at, len)?, h)
}

fn read_copy(d: &Disk, ss: u32, lba: u64) -> Option<(GptHeader, Vec<GptEntry>)> {
    let h = read_header(d, ss, lba)?;
    let e = read_entries(d, ss, &h)?;
    Some((h, e))
}

pub struct RefGpt {
    pub header: GptHeader,
    pub entries: Vec<GptEntry>,
    pub from_backup: bool,
    pub sector_size: u32,
    pub warnings: Vec<Warn>,
}

/// The GPT at `ss`-byte LBAs: the primary copy, else (unless `primary_header_required`
/// and the primary header is bad) the backup at the place the primary header names,
/// then at the last LBA.
pub fn ref_read_gpt(d: &Disk, ss: u32, primary_header_required: bool) -> Option<RefGpt> {
    let sectors = d.size / u64::from(ss);
    if sectors < 3 {
        return None;
    }
    let last = sectors - 1;
    let ph = read_header(d, ss, 1);
    if let Some(h) = &ph {
        if let Some(entries) = read_entries(d, ss, h) {
            let mut w = Vec::new();
            let alt = h.alternate_lba;
            if alt <= 1 {
                w.push(Warn::exact(Tag::BackupNotChecked, &[alt]));
            } else if alt > last {
                w.push(Warn::exact(Tag::BackupPastEnd, &[alt, last]));
            } else {
                if alt < last {
                    w.push(Warn::exact(Tag::BackupNotAtEnd, &[alt, last]));
                }
                match read_header(d, ss, alt) {
                    None => w.push(Warn::prefix(Tag::BackupBad, &[alt])),
                    Some(b) if !BACKUP_ARRAY_UNCHECKED && read_entries(d, ss, &b).is_none() => {
                        w.push(Warn::prefix(Tag::BackupBad, &[alt]))
                    }
                    Some(b) => {
                        if b.entry_count != h.entry_count
                            || b.entry_size != h.entry_size
                            || b.entries_crc32 != h.entries_crc32
                        {
                            w.push(Warn::exact(Tag::BackupDiffers, &[alt]));
                        }
                    }
                }
            }
            if h.last_usable_lba > last {
                w.push(Warn::exact(Tag::UsablePastEnd, &[h.last_usable_lba, last]));
            }
            return Some(RefGpt {
                header: h.clone(),
                entries,
                from_backup: false,
                sector_size: ss,
                warnings: w,
            });
        }
    }
    if primary_header_required && ph.is_none() {
        return None;
    }
    let mut places = Vec::new();
    if let Some(h) = &ph {
        if (2..=last).contains(&h.alternate_lba) {
            places.push(h.alternate_lba);
        }
    }
    if !places.contains(&last) {
        places.push(last);
    }
    for lba in places {
        if let Some((h, entries)) = read_copy(d, ss, lba) {
            let mut w = vec![Warn::suffix(Tag::UsingBackup, &[lba])];
            if h.alternate_lba != 1 {
                w.push(Warn::exact(Tag::BackupNamesPrimary, &[h.alternate_lba, 1]));
            }
            if h.last_usable_lba > last {
                w.push(Warn::exact(Tag::UsablePastEnd, &[h.last_usable_lba, last]));
            }
            return Some(RefGpt {
                header: h,
                entries,
                from_backup: true,
                sector_size: ss,
                warnings: w,
            });
        }
    }
    None
}

pub fn other_size(ss: u32) -> u32 {
    if ss == 512 {
        4096
    } else {
        512
    }
}

/// The GPT at the given sector size, else at the other one (with a warning first).
pub fn ref_find_gpt(d: &Disk, ss: u32, primary_header_required: bool) -> Option<RefGpt> {
    if let Some(g) = ref_read_gpt(d, ss, primary_header_required) {
        return Some(g);
    }
    let other = other_size(ss);
    let mut g = ref_read_gpt(d, other, primary_header_required)?;
    g.warnings.insert(
        0,
        Warn::exact(
            Tag::OtherSectorSize,
            &[u64::from(ss), u64::from(other), u64::from(other)],
        ),
    );
    Some(g)
}

pub fn ref_header_at_lba1(d: &Disk, ss: u32) -> Option<u32> {
    [ss, other_size(ss)]
        .into_iter()
        .find(|&s| read_header(d, s, 1).is_some())
}

// ---- the whole table ----

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefTable {
    pub kind: TableKind,
    pub sector_size: u32,
    pub partitions: Vec<Partition>,
    pub warnings: Vec<Warn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefError {
    /// The disk's own error (sector 0 unreadable).
    Io,
    /// `Error::PartitionTable`: a GPT announced and no copy intact.
    PartitionTable,
}

impl RefTable {
    /// A table entry in bytes: left out past the end of the disk, cut at it.
    #[allow(clippy::too_many_arguments)]
    fn place(&mut self, number: u32, first: u64, sectors: u64, size: u64, kind: PartitionKind, name: Option<String>) {
        let ss = u64::from(self.sector_size);
        let start = match first.checked_mul(ss) {
            Some(s) if s < size => s,
            _ => {
                self.warnings
                    .push(Warn::exact(Tag::LeftOut, &[u64::from(number), first, size / ss]));
                return;
            }
        };
        let room = size - start;
        let wanted = if OVERFLOWING_SIZE_CUT_SILENTLY {
            Some(sectors.saturating_mul(ss))
        } else {
            sectors.checked_mul(ss)
        };
        let len = match wanted {
            Some(l) if l <= room => l,
            _ => {
                self.warnings
                    .push(Warn::exact(Tag::Cut, &[u64::from(number), first, sectors, room]));
                room
            }
        };
        self.partitions.push(Partition {
            number,
            start,
            size: len,
            kind,
            name,
        });
    }

    fn use_gpt(&mut self, g: RefGpt, size: u64) {
        self.kind = TableKind::Gpt {
            from_backup: g.from_backup,
        };
        self.sector_size = g.sector_size;
        self.warnings.extend(g.warnings);
        let h = g.header;
        for e in g.entries {
            let n = u64::from(e.number);
            if e.last_lba < e.first_lba {
                self.warnings
                    .push(Warn::exact(Tag::EndsBeforeStart, &[n, e.last_lba, e.first_lba]));
                continue;
            }
            if e.first_lba < h.first_usable_lba || e.last_lba > h.last_usable_lba {
                self.warnings.push(Warn::exact(
                    Tag::OutsideUsable,
                    &[n, e.first_lba, e.last_lba, h.first_usable_lba, h.last_usable_lba],
                ));
            }
            let kind = PartitionKind::Gpt {
                type_guid: e.type_guid,
                unique_guid: e.unique_guid,
                attributes: e.attributes,
            };
            let name = if e.name.is_empty() { None } else { Some(e.name) };
            let sectors = (e.last_lba - e.first_lba).saturating_add(1);
            self.place(e.number, e.first_lba, sectors, size, kind, name);
        }
    }

    fn overlaps(&mut self) {
        let mut spans: Vec<&Partition> = self
            .partitions
            .iter()
            .filter(|p| !matches!(p.kind, PartitionKind::Mbr { type_byte } if is_extended(type_byte)))
            .collect();
        spans.sort_by_key(|p| (p.start, p.number));
        // Each partition overlapping one before it (in start order) is reported once,
        // with the first of those that reach furthest.
        let mut pairs = Vec::new();
        let mut furthest: Option<&Partition> = None;
        for p in spans {
            if let Some(f) = furthest {
                if p.start < f.start + f.size {
                    pairs.push((f.number, p.number));
                }
            }
            if furthest.is_none_or(|f| p.start + p.size > f.start + f.size) {
                furthest = Some(p);
            }
        }
        for &(a, b) in pairs.iter().take(MAX_OVERLAP_WARNINGS) {
            self.warnings
                .push(Warn::exact(Tag::Overlap, &[u64::from(a), u64::from(b)]));
        }
        if pairs.len() > MAX_OVERLAP_WARNINGS {
            self.warnings.push(Warn::exact(
                Tag::MoreOverlaps,
                &[(pairs.len() - MAX_OVERLAP_WARNINGS) as u64],
            ));
        }
    }
}

/// Logical numbering and the EBRs already read, shared by every chain of a disk.
struct Walk {
    next: u32,
    seen: HashSet<u64>,
}

impl Walk {
    fn chain(&mut self, d: &Disk, t: &mut RefTable, ext_no: u32, ext: &MbrEntry) {
        let ss = u64::from(t.sector_size);
        let n = u64::from(ext_no);
        let ext_start = u64::from(ext.start_lba);
        let ext_end = ext_start + u64::from(ext.sectors);
        let mut lba = ext_start;
        for _ in 0..MAX_EBRS {
            if self.next >= 5 + MAX_LOGICAL {
                t.warnings
                    .push(Warn::exact(Tag::ChainTooManyLogical, &[n, u64::from(MAX_LOGICAL)]));
                return;
            }
            if !self.seen.insert(lba) {
                t.warnings.push(Warn::exact(Tag::ChainLoop, &[n, lba]));
                return;
            }
            if lba >= ext_end {
                t.warnings
                    .push(Warn::exact(Tag::ChainOutside, &[n, lba, ext_start, ext_end - 1]));
                return;
            }
            if lba >= d.size / ss {
                t.warnings.push(Warn::exact(Tag::ChainPastDisk, &[n, lba, d.size / ss]));
                return;
            }
            let Some(sector) = d.get(lba * ss, SECTOR as u64) else {
                t.warnings.push(Warn::prefix(Tag::ChainUnreadable, &[n, lba]));
                return;
            };
            let Some(ebr) = ref_ebr(&sector) else {
                t.warnings.push(Warn::exact(Tag::ChainNoSignature, &[n, lba, 0x55AA]));
                return;
            };
            if ebr.ignored > 0 {
                t.warnings
                    .push(Warn::exact(Tag::EbrExtra, &[n, lba, ebr.ignored as u64]));
            }
            if let Some(e) = ebr.data {
                let number = self.next;
                self.next += 1;
                if e.start_lba == 0 {
                    t.warnings
                        .push(Warn::exact(Tag::LogicalOnEbr, &[u64::from(number), lba]));
                } else {
                    let start = lba + u64::from(e.start_lba);
                    let end = start + u64::from(e.sectors);
                    if end > ext_end {
                        t.warnings.push(Warn::exact(
                            Tag::LogicalPastExt,
                            &[u64::from(number), start, end - 1, n, ext_start, ext_end - 1],
                        ));
                    }
                    let kind = PartitionKind::Mbr { type_byte: e.type_byte };
                    t.place(number, start, u64::from(e.sectors), d.size, kind, None);
                }
            }
            match ebr.next {
                Some(link) => lba = ext_start + u64::from(link.start_lba),
                None => return,
            }
        }
        t.warnings
            .push(Warn::exact(Tag::ChainTooManyEbrs, &[n, MAX_EBRS as u64]));
    }
}

/// `read_partition_table(disk, ss)` by the reference.
pub fn ref_table(d: &Disk, ss: u32) -> Result<RefTable, RefError> {
    let mut t = RefTable {
        kind: TableKind::None,
        sector_size: ss,
        partitions: Vec::new(),
        warnings: Vec::new(),
    };
    if d.size < SECTOR as u64 {
        return Ok(t);
    }
    let s0 = d.get(0, SECTOR as u64).ok_or(RefError::Io)?;
    match ref_sector0(&s0, d.size, ss) {
        RefSector0::Table(slots) if slots.iter().flatten().any(|e| e.type_byte == 0xEE) => {
            if slots.iter().flatten().any(|e| e.type_byte != 0xEE) {
                t.warnings.push(Warn::exact(Tag::Hybrid, &[]));
            }
            let g = ref_find_gpt(d, ss, false).ok_or(RefError::PartitionTable)?;
            t.use_gpt(g, d.size);
        }
        RefSector0::Table(slots) => {
            t.kind = TableKind::Mbr;
            for (i, e) in slots.iter().enumerate() {
                if let Some(e) = e {
                    let kind = PartitionKind::Mbr { type_byte: e.type_byte };
                    t.place(
                        i as u32 + 1,
                        u64::from(e.start_lba),
                        u64::from(e.sectors),
                        d.size,
                        kind,
                        None,
                    );
                }
            }
            let ext: Vec<(u32, MbrEntry)> = slots
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.filter(|e| is_extended(e.type_byte)).map(|e| (i as u32 + 1, e)))
                .collect();
            if ext.len() > 1 {
                t.warnings.push(Warn::exact(Tag::ExtendedCount, &[ext.len() as u64]));
            }
            let mut walk = Walk {
                next: 5,
                seen: HashSet::new(),
            };
            for (n, e) in &ext {
                walk.chain(d, &mut t, *n, e);
            }
            if let Some(s) = ref_header_at_lba1(d, ss) {
                t.warnings.push(Warn::exact(Tag::GptIgnored, &[u64::from(s), 1]));
            }
        }
        RefSector0::Boot(_) => {}
        s0 @ (RefSector0::NoSignature | RefSector0::NotATable) => {
            let signed = s0 == RefSector0::NotATable;
            match ref_find_gpt(d, ss, true) {
                Some(g) => {
                    t.warnings.push(if signed {
                        Warn::prefix(Tag::GptWithoutMbr, &[0, 0x55AA])
                    } else {
                        Warn::exact(Tag::GptWithoutMbr, &[0, 1])
                    });
                    t.use_gpt(g, d.size);
                }
                None if ref_header_at_lba1(d, ss).is_some() => return Err(RefError::PartitionTable),
                None => {
                    if signed {
                        t.warnings.push(Warn::prefix(Tag::WholeDisk, &[0, 0x55AA]));
                    }
                }
            }
        }
    }
    t.overlaps();
    if t.warnings.len() > MAX_WARNINGS {
        let more = (t.warnings.len() - MAX_WARNINGS) as u64;
        t.warnings.truncate(MAX_WARNINGS);
        t.warnings.push(Warn::exact(Tag::MoreWarnings, &[more]));
    }
    Ok(t)
}

// ---- warnings ----

/// The case a warning reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Hybrid,
    ExtendedCount,
    GptIgnored,
    GptWithoutMbr,
    WholeDisk,
    EndsBeforeStart,
    OutsideUsable,
    Overlap,
    MoreOverlaps,
    MoreWarnings,
    LeftOut,
    Cut,
    ChainTooManyLogical,
    ChainLoop,
    ChainOutside,
    ChainPastDisk,
    ChainUnreadable,
    ChainNoSignature,
    ChainTooManyEbrs,
    EbrExtra,
    LogicalOnEbr,
    LogicalPastExt,
    OtherSectorSize,
    UsingBackup,
    BackupNamesPrimary,
    BackupNotChecked,
    BackupPastEnd,
    BackupNotAtEnd,
    BackupBad,
    BackupDiffers,
    UsablePastEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// The warning's numbers are exactly these.
    Exact,
    /// They start with these (the rest quote another error).
    Prefix,
    /// They end with these.
    Suffix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warn {
    pub tag: Tag,
    pub numbers: Vec<u64>,
    pub how: Numbers,
}

impl Warn {
    pub fn exact(tag: Tag, n: &[u64]) -> Self {
        Warn {
            tag,
            numbers: n.to_vec(),
            how: Numbers::Exact,
        }
    }
    pub fn prefix(tag: Tag, n: &[u64]) -> Self {
        Warn {
            tag,
            numbers: n.to_vec(),
            how: Numbers::Prefix,
        }
    }
    pub fn suffix(tag: Tag, n: &[u64]) -> Self {
        Warn {
            tag,
            numbers: n.to_vec(),
            how: Numbers::Suffix,
        }
    }

    fn matches(&self, w: &str) -> bool {
        let n = numbers(w);
        classify(w) == Some(self.tag)
            && match self.how {
                Numbers::Exact => n == self.numbers,
                Numbers::Prefix => n.starts_with(&self.numbers),
                Numbers::Suffix => n.ends_with(&self.numbers),
            }
    }
}

/// The case of a warning, by the phrase that names it. Warnings that quote another
/// message are recognised by how they start or end, so that the quote cannot decide.
pub fn classify(w: &str) -> Option<Tag> {
    let chain = "; no further logical partitions are read from it";
    let tag = if let Some(why) = w.strip_suffix(chain) {
        let why = why.split_once(": ").map_or("", |(_, why)| why);
        if why.starts_with("more than") && why.ends_with("logical partitions") {
            Tag::ChainTooManyLogical
        } else if why.starts_with("more than") && why.ends_with("EBRs") {
            Tag::ChainTooManyEbrs
        } else if why.starts_with("the EBR chain loops back to LBA") {
            Tag::ChainLoop
        } else if why.starts_with("an EBR link points to LBA") && why.contains(", outside the extended partition") {
            Tag::ChainOutside
        } else if why.starts_with("an EBR link points to LBA") && why.contains(", past the end of the disk") {
            Tag::ChainPastDisk
        } else if why.starts_with("the EBR at LBA") && why.contains(" cannot be read: ") {
            Tag::ChainUnreadable
        } else if why.starts_with("the EBR at LBA") && why.ends_with("no 0x55AA signature") {
            Tag::ChainNoSignature
        } else {
            return None;
        }
    } else if w.ends_with("; the whole disk is read as one volume") {
        Tag::WholeDisk
    } else if w.ends_with("; using the GPT at LBA 1 all the same") {
        Tag::GptWithoutMbr
    } else if w.ends_with("; the primary GPT is intact and used") && w.starts_with("backup GPT at LBA") {
        Tag::BackupBad
    } else if w.contains("; using the backup GPT at LBA ") {
        Tag::UsingBackup
    } else if w.starts_with("hybrid MBR:") {
        Tag::Hybrid
    } else if w.starts_with("the MBR has ") && w.contains(" extended partitions") {
        Tag::ExtendedCount
    } else if w.starts_with("a valid GPT header (") && w.contains("the MBR is used") {
        Tag::GptIgnored
    } else if w.starts_with("GPT partition ") && w.contains("before it starts (LBA") {
        Tag::EndsBeforeStart
    } else if w.starts_with("GPT partition ") && w.contains(" lies outside the usable area") {
        Tag::OutsideUsable
    } else if w.starts_with("partitions ") && w.ends_with(" overlap") {
        Tag::Overlap
    } else if w.starts_with("... and ") && w.ends_with(" more overlapping pairs") {
        Tag::MoreOverlaps
    } else if w.starts_with("... and ") && w.ends_with(" more warnings") {
        Tag::MoreWarnings
    } else if w.starts_with("partition ") && w.contains("past the end of the disk") && w.ends_with("left out") {
        Tag::LeftOut
    } else if w.starts_with("partition ") && w.contains("reaches past the end of the disk; cut to") {
        Tag::Cut
    } else if w.starts_with("extended partition ") && w.ends_with("extra entries, ignored") {
        Tag::EbrExtra
    } else if w.starts_with("logical partition ") && w.contains("starts on its own EBR") {
        Tag::LogicalOnEbr
    } else if w.starts_with("logical partition ") && w.contains("reaches past the end of extended partition") {
        Tag::LogicalPastExt
    } else if w.starts_with("the disk declares ") && w.contains("but its GPT is laid out in") {
        Tag::OtherSectorSize
    } else if w.starts_with("the backup GPT header names LBA") {
        Tag::BackupNamesPrimary
    } else if w.starts_with("the primary GPT header names LBA") && w.contains("as its backup's place") {
        Tag::BackupNotChecked
    } else if w.starts_with("the backup GPT header should be at LBA")
        && w.contains("smaller than when it was partitioned")
    {
        Tag::BackupPastEnd
    } else if w.starts_with("the backup GPT header is at LBA") && w.contains("enlarged") {
        Tag::BackupNotAtEnd
    } else if w.starts_with("the backup GPT at LBA") && w.contains("lists different partitions") {
        Tag::BackupDiffers
    } else if w.starts_with("the GPT's usable area ends at LBA") {
        Tag::UsablePastEnd
    } else {
        return None;
    };
    Some(tag)
}

/// The numbers in a text: runs of decimal digits, and `0x` followed by hex digits.
pub fn numbers(s: &str) -> Vec<u64> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let (radix, from) =
            if b[i] == b'0' && b.get(i + 1) == Some(&b'x') && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
                (16, i + 2)
            } else {
                (10, i)
            };
        let mut j = from;
        while j < b.len()
            && (if radix == 16 {
                b[j].is_ascii_hexdigit()
            } else {
                b[j].is_ascii_digit()
            })
        {
            j += 1;
        }
        out.push(u64::from_str_radix(&s[from..j], radix).unwrap_or(u64::MAX));
        i = j;
    }
    out
}

// ---- comparison ----

/// Compare `read_partition_table(disk, ss)` with the reference, exactly: the error class,
/// or the kind, sector size, every partition field and every warning.
pub fn compare_table(what: &str, got: &ckptfs::Result<PartitionTable>, exp: &Result<RefTable, RefError>) {
    match (got, exp) {
        (Ok(g), Ok(e)) => {
            assert_eq!(g.kind, e.kind, "{what}: table kind");
            assert_eq!(g.sector_size, e.sector_size, "{what}: sector size");
            assert_eq!(g.partitions, e.partitions, "{what}: partitions");
            let ok =
                g.warnings.len() == e.warnings.len() && g.warnings.iter().zip(&e.warnings).all(|(g, e)| e.matches(g));
            assert!(
                ok,
                "{what}: warnings differ\n got:\n{}\n expected:\n{}",
                g.warnings
                    .iter()
                    .map(|w| format!("  {:?} {:?} {w}", classify(w), numbers(w)))
                    .collect::<Vec<_>>()
                    .join("\n"),
                e.warnings
                    .iter()
                    .map(|w| format!("  {:?} {:?} {:?}", w.tag, w.how, w.numbers))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        (Err(Error::PartitionTable(_)), Err(RefError::PartitionTable)) => {}
        (Err(Error::Io { .. }), Err(RefError::Io)) => {}
        _ => panic!(
            "{what}: read_partition_table returned {:?}, the reference {:?}",
            got.as_ref().map(|t| (t.kind, t.partitions.len(), &t.warnings)),
            exp.as_ref().map(|t| (t.kind, t.partitions.len(), &t.warnings))
        ),
    }
}

/// What holds for every table whatever the disk: partitions inside the disk and not
/// empty, numbers unique (1–4 and from 5 up for an MBR, entry index + 1 for a GPT),
/// at most 65 warnings, and a bounded number of reads.
pub fn check_invariants(d: &Disk, t: &PartitionTable) {
    let mut numbers = HashSet::new();
    for p in &t.partitions {
        assert!(p.size > 0, "empty partition {p:?}");
        assert!(
            p.start < d.size && p.size <= d.size - p.start,
            "partition {p:?} outside the disk of {} bytes",
            d.size
        );
        assert!(
            p.start % u64::from(t.sector_size) == 0,
            "partition {p:?} not on a sector"
        );
        assert!(numbers.insert(p.number), "partition number {} twice", p.number);
        match (t.kind, p.kind) {
            (TableKind::Mbr, PartitionKind::Mbr { .. }) => assert!(p.number >= 1 && p.number < 5 + MAX_LOGICAL),
            (TableKind::Gpt { .. }, PartitionKind::Gpt { .. }) => assert!(p.number >= 1 && p.number <= MAX_ENTRIES),
            _ => panic!("{:?} partition in a {:?} table", p.kind, t.kind),
        }
    }
    if t.kind == TableKind::None {
        assert!(t.partitions.is_empty());
    }
    assert!(t.warnings.len() <= MAX_WARNINGS + 1, "{} warnings", t.warnings.len());
}

/// Reads a table may cost: sector 0, a few GPT headers and arrays in both sector
/// sizes, and at most [`MAX_EBRS`] EBRs for each of 4 extended partitions.
pub const MAX_READS: u64 = 4 * MAX_EBRS as u64 + 32;

// ---- builders shared by the checks and the seeds ----

/// A 16-byte MBR or EBR entry.
pub fn mbr_entry_bytes(status: u8, type_byte: u8, start: u32, sectors: u32) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = status;
    e[4] = type_byte;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    e
}

/// A 512-byte MBR or EBR: `entries` in slots 1, 2, ..., and the 0x55AA signature.
pub fn mbr_sector(entries: &[[u8; 16]]) -> Vec<u8> {
    let mut s = vec![0u8; SECTOR];
    for (i, e) in entries.iter().enumerate().take(4) {
        s[446 + 16 * i..][..16].copy_from_slice(e);
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// The fields of a GPT header the builders set.
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: [u8; 16],
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub header_size: u32,
}

/// A header sector of `ss` bytes, its array CRC taken over `array` (zero-padded to the
/// size the header gives) and its own CRC fixed.
pub fn header_sector(s: &HeaderSpec, array: &[u8], ss: usize) -> Vec<u8> {
    let mut b = vec![0u8; ss];
    b[..8].copy_from_slice(b"EFI PART");
    put32(&mut b, 8, 0x0001_0000);
    put32(&mut b, 12, s.header_size);
    put64(&mut b, 24, s.my_lba);
    put64(&mut b, 32, s.alternate_lba);
    put64(&mut b, 40, s.first_usable);
    put64(&mut b, 48, s.last_usable);
    b[56..72].copy_from_slice(&s.disk_guid);
    put64(&mut b, 72, s.entries_lba);
    put32(&mut b, 80, s.entry_count);
    put32(&mut b, 84, s.entry_size);
    // Past the reader's limit the header is refused before its array is read.
    let len = s.entry_count as usize * s.entry_size as usize;
    let crc = if len as u64 <= MAX_ARRAY_BYTES {
        crc32_padded(array, len)
    } else {
        0
    };
    put32(&mut b, 88, crc);
    fix_header_crc(&mut b);
    b
}

/// One GPT entry of `size` bytes (at least 128).
pub fn gpt_entry_bytes(
    type_guid: u128,
    unique: u128,
    first: u64,
    last: u64,
    attributes: u64,
    name: &[u16],
    size: usize,
) -> Vec<u8> {
    let mut e = vec![0u8; size.max(128)];
    e[..16].copy_from_slice(&super::guid_bytes(&uuid::Uuid::from_u128(type_guid)));
    e[16..32].copy_from_slice(&super::guid_bytes(&uuid::Uuid::from_u128(unique)));
    put64(&mut e, 32, first);
    put64(&mut e, 40, last);
    put64(&mut e, 48, attributes);
    for (i, u) in name.iter().take(36).enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    e
}

/// A whole valid GPT as a partitioning tool writes it on a disk of `sectors` LBAs of
/// `ss` bytes: protective MBR, header and array after it, backup array and header at
/// the end; `entries` are (type, first LBA, last LBA, name), in slots 1, 2, ...
pub fn write_plain_gpt(d: &mut Disk, ss: u64, sectors: u64, entries: &[(u128, u64, u64, &str)]) {
    let count = 128u32;
    let mut array = Vec::new();
    for (i, &(t, first, last, name)) in entries.iter().enumerate() {
        let name: Vec<u16> = name.encode_utf16().collect();
        array.extend(gpt_entry_bytes(t, 0x1000 + i as u128, first, last, 0, &name, 128));
    }
    array.resize(count as usize * 128, 0);
    let array_sectors = (array.len() as u64).div_ceil(ss);
    let last = sectors - 1;
    let spec = HeaderSpec {
        my_lba: 1,
        alternate_lba: last,
        first_usable: 2 + array_sectors,
        last_usable: last - 1 - array_sectors,
        disk_guid: [0x42; 16],
        entries_lba: 2,
        entry_count: count,
        entry_size: 128,
        header_size: 92,
    };
    let backup = HeaderSpec {
        my_lba: last,
        alternate_lba: 1,
        entries_lba: last - array_sectors,
        ..spec.clone()
    };
    let protective = mbr_entry_bytes(0, 0xEE, 1, u32::try_from(last).unwrap_or(u32::MAX));
    d.put(0, &mbr_sector(&[protective]));
    d.put(ss, &header_sector(&spec, &array, ss as usize));
    d.put(2 * ss, &array);
    d.put(backup.entries_lba * ss, &array);
    d.put(last * ss, &header_sector(&backup, &array, ss as usize));
}

/// A disk from a sparse dump (see `fuzz/tables/make.sh`): disk size, then runs of
/// 512-byte sectors.
pub fn disk_from_dump(dump: &[u8]) -> Disk {
    let mut d = Disk::new(le64(dump, 0));
    let mut at = 8;
    while at + 6 <= dump.len() {
        let first = u64::from(le32(dump, at));
        let n = usize::from(le16(dump, at + 4));
        let bytes = &dump[at + 6..(at + 6 + n * SECTOR).min(dump.len())];
        d.put(first * SECTOR as u64, bytes);
        at += 6 + n * SECTOR;
    }
    d
}
