//! Test-only VHDX/AVHDX writer, written from the MS-VHDX specification alone.
//!
//! It exists so the crate's reader can be tested against files whose layout was
//! derived independently (no code is shared with `src/`). Everything a reader
//! could get wrong is made explicit and configurable: which header is current,
//! the BAT interleaving of sector-bitmap entries, partially present blocks, and
//! a dirty log whose newest structures exist only in log entries.
//!
//! `scripts/crosscheck_writer.py` checks the output against readers nobody on
//! the team wrote (qemu-img, libvhdi, dissect.hypervisor, 7-Zip, FATtools).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::model::Model;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
/// Log entries, descriptors and data sectors work in 4 KiB units whatever the
/// disk's sector sizes are (MS-VHDX 2.3.1).
pub const LOG_SECTOR: u64 = 4096;
/// Sectors described by one sector-bitmap block (1 MiB of bits).
pub const SECTORS_PER_CHUNK: u64 = 1 << 23;

/// Well-known GUIDs of MS-VHDX (region table 2.2.3.2, metadata items 2.6.2,
/// VHDX parent locator type 2.6.2.6.3).
pub mod guid {
    use uuid::Uuid;
    pub const BAT_REGION: Uuid = Uuid::from_u128(0x2DC27766_F623_4200_9D64_115E9BFD4A08);
    pub const METADATA_REGION: Uuid = Uuid::from_u128(0x8B7CA206_4790_4B9A_B8FE_575F050F886E);
    pub const FILE_PARAMETERS: Uuid = Uuid::from_u128(0xCAA16737_FA36_4D43_B3B6_33F0AA44E76B);
    pub const VIRTUAL_DISK_SIZE: Uuid = Uuid::from_u128(0x2FA54224_CD1B_4876_B211_5DBED83BF4B8);
    pub const VIRTUAL_DISK_ID: Uuid = Uuid::from_u128(0xBECA12AB_B2E6_4523_93EF_C309E000C746);
    pub const LOGICAL_SECTOR_SIZE: Uuid = Uuid::from_u128(0x8141BF1D_A96F_4709_BA47_F233A8FAAB5F);
    pub const PHYSICAL_SECTOR_SIZE: Uuid = Uuid::from_u128(0xCDA348C7_445D_4471_9CC9_E9885251C556);
    pub const PARENT_LOCATOR: Uuid = Uuid::from_u128(0xA8D35F2D_B30B_454D_ABF7_D3D84834AB0C);
    pub const VHDX_LOCATOR_TYPE: Uuid = Uuid::from_u128(0xB04AEFB7_D19E_4A81_B789_25B8E9445913);
}

/// Payload BAT entry states (2.5.1.1) and sector-bitmap states (2.5.1.2).
pub mod bat {
    pub const PAYLOAD_BLOCK_NOT_PRESENT: u64 = 0;
    pub const PAYLOAD_BLOCK_UNDEFINED: u64 = 1;
    pub const PAYLOAD_BLOCK_ZERO: u64 = 2;
    pub const PAYLOAD_BLOCK_UNMAPPED: u64 = 3;
    /// Reserved by the current spec; older Hyper-V builds wrote it for UNMAPPED.
    pub const PAYLOAD_BLOCK_UNMAPPED_LEGACY: u64 = 5;
    pub const PAYLOAD_BLOCK_FULLY_PRESENT: u64 = 6;
    pub const PAYLOAD_BLOCK_PARTIALLY_PRESENT: u64 = 7;
    pub const SB_BLOCK_NOT_PRESENT: u64 = 0;
    pub const SB_BLOCK_PRESENT: u64 = 6;
}

// ---------------------------------------------------------------------------
// Public description of a file
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub virtual_size: u64,
    pub block_size: u32,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
}

impl Geometry {
    /// Physical sector size defaults to 4096, as Hyper-V creates disks.
    pub fn new(virtual_size: u64, block_size: u32, logical_sector_size: u32) -> Geometry {
        Geometry {
            virtual_size,
            block_size,
            logical_sector_size,
            physical_sector_size: 4096,
        }
    }

    /// Bytes of virtual disk covered by one sector-bitmap block (2.4).
    pub fn chunk_size(&self) -> u64 {
        SECTORS_PER_CHUNK * self.logical_sector_size as u64
    }

    /// Payload blocks per chunk.
    pub fn chunk_ratio(&self) -> u64 {
        self.chunk_size() / self.block_size as u64
    }

    pub fn sectors_per_block(&self) -> u64 {
        self.block_size as u64 / self.logical_sector_size as u64
    }

    /// Ceil(VirtualDiskSize / BlockSize).
    pub fn data_blocks(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size as u64)
    }

    /// Ceil(DataBlocksCount / ChunkRatio).
    pub fn bitmap_blocks(&self) -> u64 {
        self.data_blocks().div_ceil(self.chunk_ratio())
    }

    /// Total BAT entries (2.5). A fixed/dynamic BAT ends at the last payload
    /// entry; a differencing BAT must also hold the last chunk's bitmap entry.
    pub fn bat_entries(&self, differencing: bool) -> u64 {
        let cr = self.chunk_ratio();
        if differencing {
            self.bitmap_blocks() * (cr + 1)
        } else {
            let n = self.data_blocks();
            n + (n - 1) / cr
        }
    }

    /// BAT index of a payload block: every chunk's payload entries are followed
    /// by that chunk's sector bitmap entry.
    pub fn payload_bat_index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio()
    }

    pub fn bitmap_bat_index(&self, chunk: u64) -> u64 {
        chunk * (self.chunk_ratio() + 1) + self.chunk_ratio()
    }

    /// Virtual bytes in `block` (the last block is short when the disk size is
    /// not a multiple of the block size).
    pub fn block_len(&self, block: u64) -> u64 {
        let start = block * self.block_size as u64;
        (self.virtual_size - start).min(self.block_size as u64)
    }

    fn validate(&self) -> io::Result<()> {
        let bs = self.block_size as u64;
        if !(MIB..=256 * MIB).contains(&bs) || !bs.is_power_of_two() {
            return Err(invalid(format!("block size {bs} not a power of two in 1..256 MiB")));
        }
        for s in [self.logical_sector_size, self.physical_sector_size] {
            if s != 512 && s != 4096 {
                return Err(invalid(format!("sector size {s} is not 512 or 4096")));
            }
        }
        if self.virtual_size == 0 || self.virtual_size % self.logical_sector_size as u64 != 0 {
            return Err(invalid(format!(
                "virtual size {} not a non-zero multiple of the logical sector size",
                self.virtual_size
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockState {
    NotPresent,
    Undefined,
    Zero,
    Unmapped,
    /// BAT state 5, which older Hyper-V wrote for unmapped blocks.
    UnmappedLegacy,
    /// `block_size` bytes (the last block may be shorter if virtual_size is not
    /// a multiple). An empty Vec means "all zeros", so fixed disks need not hold
    /// every block in memory.
    FullyPresent(Vec<u8>),
    /// `present` has one flag per logical sector of the block: true = the
    /// sector's data is `data[sector]` in this file, false = read the parent.
    PartiallyPresent {
        data: Vec<u8>,
        present: Vec<bool>,
    },
}

impl BlockState {
    pub fn bat_state(&self) -> u64 {
        match self {
            BlockState::NotPresent => bat::PAYLOAD_BLOCK_NOT_PRESENT,
            BlockState::Undefined => bat::PAYLOAD_BLOCK_UNDEFINED,
            BlockState::Zero => bat::PAYLOAD_BLOCK_ZERO,
            BlockState::Unmapped => bat::PAYLOAD_BLOCK_UNMAPPED,
            BlockState::UnmappedLegacy => bat::PAYLOAD_BLOCK_UNMAPPED_LEGACY,
            BlockState::FullyPresent(_) => bat::PAYLOAD_BLOCK_FULLY_PRESENT,
            BlockState::PartiallyPresent { .. } => bat::PAYLOAD_BLOCK_PARTIALLY_PRESENT,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            BlockState::NotPresent => "NOT_PRESENT",
            BlockState::Undefined => "UNDEFINED",
            BlockState::Zero => "ZERO",
            BlockState::Unmapped => "UNMAPPED",
            BlockState::UnmappedLegacy => "UNMAPPED_LEGACY_5",
            BlockState::FullyPresent(_) => "FULLY_PRESENT",
            BlockState::PartiallyPresent { .. } => "PARTIALLY_PRESENT",
        }
    }

    /// True for the states the project defines as "reads as zeros, never from
    /// the parent" although the spec lets readers return other data.
    pub fn reads_as_zero(&self) -> bool {
        matches!(
            self,
            BlockState::Undefined | BlockState::Zero | BlockState::Unmapped | BlockState::UnmappedLegacy
        )
    }

    fn allocated(&self) -> bool {
        matches!(self, BlockState::FullyPresent(_) | BlockState::PartiallyPresent { .. })
    }
}

/// The VHDX parent locator (2.6.2.6.3). Keys are written in the order
/// parent_linkage, parent_linkage2, relative_path, volume_path,
/// absolute_win32_path, then `extra`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentLink {
    pub linkage: String,
    pub linkage2: Option<String>,
    pub relative_path: Option<String>,
    pub volume_path: Option<String>,
    pub absolute_win32_path: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl ParentLink {
    /// What Hyper-V writes for a checkpoint next to its parent: the parent's
    /// DataWriteGuid in lower-case braces plus relative and absolute paths.
    pub fn hyperv(parent_data_write_guid: Uuid, parent_file_name: &str) -> ParentLink {
        ParentLink {
            linkage: braced(parent_data_write_guid),
            linkage2: None,
            relative_path: Some(format!(".\\{parent_file_name}")),
            volume_path: None,
            absolute_win32_path: Some(format!("\\\\?\\C:\\VMs\\{parent_file_name}")),
            extra: Vec::new(),
        }
    }

    fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![("parent_linkage".to_string(), self.linkage.clone())];
        let opt = [
            ("parent_linkage2", &self.linkage2),
            ("relative_path", &self.relative_path),
            ("volume_path", &self.volume_path),
            ("absolute_win32_path", &self.absolute_win32_path),
        ];
        for (k, val) in opt {
            if let Some(val) = val {
                v.push((k.to_string(), val.clone()));
            }
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// `{xxxxxxxx-...}` in lower case, the form the spec prescribes for linkage.
pub fn braced(g: Uuid) -> String {
    format!("{{{}}}", g.hyphenated())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSpec {
    Clean,
    Dirty(DirtyLog),
}

/// A log that must be replayed before the file is consistent. The writer first
/// builds the final file, then moves the selected 4 KiB pages into log entries
/// and leaves stale content in their place, so only a correct replay yields
/// the expected disk. `Default` turns every trap on; `DirtyLog::minimal()`
/// turns them all off except "BAT only in the log".
///
/// Independent confirmation (see scripts/crosscheck_writer.py): qemu-img
/// replays all of this except entries lying wholly after the wrap point (it
/// ignores Tail, so the default `wrap` is beyond it) and entries with more
/// than 126 descriptors, which FATtools' replayer confirms instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyLog {
    /// Log position in the file (multiple of 1 MiB). None = right after the
    /// header section (1 MiB), as Hyper-V places it.
    pub log_offset: Option<u64>,
    /// Log size (multiple of 1 MiB). None = a 1 MiB multiple certain to hold
    /// every entry this spec generates; an explicit size that turns out too
    /// small makes `write_vhdx` fail.
    pub log_length: Option<u32>,
    /// The BAT in place is the pre-allocation BAT (all NOT_PRESENT).
    pub bat_in_log: bool,
    /// The metadata region in place is zero: metadata table and all items
    /// exist only in the log.
    pub metadata_in_log: bool,
    /// Both region-table copies in place are zero.
    pub region_table_in_log: bool,
    /// Differencing disks: allocated sector bitmap blocks are zero in place.
    pub sector_bitmaps_in_log: bool,
    /// How many non-zero 4 KiB payload pages (spread over the allocated
    /// blocks) hold stale data in place and their newest data in the log. The
    /// spec says payload is not updated through the log, but replay is generic
    /// (write the sector at FileOffset), so a reader must handle it.
    pub payload_pages_in_log: usize,
    /// Zero descriptors: all-zero final pages in the logged structures (and one
    /// payload page) carry junk in place and a zero descriptor in the log.
    pub zero_descriptors: bool,
    /// Zero descriptors stay between the data descriptors (in file order), so
    /// the n-th data sector belongs to the n-th *data* descriptor, not to
    /// descriptor n. When false all zero descriptors follow all data
    /// descriptors of the sequence.
    pub interleave_zero_descriptors: bool,
    /// Where the active sequence crosses the end of the circular log.
    pub wrap: LogWrap,
    /// Number of entries in the active sequence (descriptors are spread
    /// evenly; an entry with more than 126 descriptors gets more descriptor
    /// sectors).
    pub entries: usize,
    /// The first entry also writes an older version of the last logged page;
    /// a later descriptor overwrites it, so replay order matters.
    pub overwritten_in_sequence: bool,
    /// A valid, checksummed entry with a newer sequence number but the LogGuid
    /// of the stale header: it must be ignored.
    pub stale_log_guid_entry: bool,
    /// An older complete sequence (same LogGuid, lower sequence numbers) that
    /// writes junk over a page the active sequence rewrites.
    pub superseded_sequence: bool,
    /// An entry right after the head with sequence head+1 whose data sector is
    /// torn (checksum and sequence mismatch): the active sequence ends before it.
    pub torn_entry_after_head: bool,
    /// The file ends 1 MiB before LastFileOffset (FlushedFileOffset = the
    /// short length). Non-zero pages of the lost tail exist only in the log;
    /// replay must extend the file. Skipped when the cut would reach into the
    /// log, the metadata region or the BAT (e.g. a log placed last).
    pub truncate_file: bool,
}

impl Default for DirtyLog {
    fn default() -> Self {
        DirtyLog {
            log_offset: None,
            log_length: None,
            bat_in_log: true,
            metadata_in_log: true,
            region_table_in_log: true,
            sector_bitmaps_in_log: true,
            payload_pages_in_log: 4,
            zero_descriptors: true,
            interleave_zero_descriptors: true,
            wrap: LogWrap::InsideEntry(1),
            entries: 3,
            overwritten_in_sequence: true,
            stale_log_guid_entry: true,
            superseded_sequence: true,
            torn_entry_after_head: true,
            truncate_file: true,
        }
    }
}

impl DirtyLog {
    /// One entry that carries the BAT, nothing else.
    pub fn minimal() -> Self {
        DirtyLog {
            log_offset: None,
            log_length: None,
            bat_in_log: true,
            metadata_in_log: false,
            region_table_in_log: false,
            sector_bitmaps_in_log: false,
            payload_pages_in_log: 0,
            zero_descriptors: false,
            interleave_zero_descriptors: true,
            wrap: LogWrap::None,
            entries: 1,
            overwritten_in_sequence: false,
            stale_log_guid_entry: false,
            superseded_sequence: false,
            torn_entry_after_head: false,
            truncate_file: false,
        }
    }
}

/// How the active log sequence sits in the circular log. Entry indexes are
/// clamped to the last entry (so `usize::MAX` means "the head").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogWrap {
    /// The active sequence lies in one piece.
    None,
    /// The end of the log falls inside entry n: its first sectors are at the
    /// end of the log, the rest continue at log offset 0. Entries after n lie
    /// wholly after the wrap, so a reader must check that the head's Tail lies
    /// inside the sequence instead of taking the run it meets first.
    InsideEntry(usize),
    /// Entry n (n >= 1) starts exactly at log offset 0; the entries before it
    /// end exactly at the end of the log.
    BeforeEntry(usize),
}

#[derive(Clone, Debug)]
pub struct VhdxSpec {
    pub geometry: Geometry,
    /// true for fixed disks (File Parameters LeaveBlockAllocated).
    pub leave_blocks_allocated: bool,
    /// Some => HasParent (differencing).
    pub parent: Option<ParentLink>,
    pub data_write_guid: Uuid,
    pub file_write_guid: Uuid,
    pub virtual_disk_id: Uuid,
    /// Missing => NOT_PRESENT.
    pub blocks: BTreeMap<u64, BlockState>,
    pub log: LogSpec,
    pub creator: String,
    /// Which header slot (0 = 64 KiB, 1 = 128 KiB) is current. The other slot
    /// holds a valid but older header (sequence - 1) with a different
    /// DataWriteGuid and LogGuid, so a reader that picks the wrong one fails
    /// the parent linkage check or replays the wrong log.
    pub current_header: usize,
    /// SequenceNumber of the current header (must be >= 1).
    pub header_sequence: u64,
    /// Differencing disks: give every chunk a sector bitmap block (SB_PRESENT),
    /// not only the chunks with PARTIALLY_PRESENT blocks. Bits outside
    /// partially present blocks stay 0. Some readers (libvhdi) consult the
    /// bitmap for NOT_PRESENT blocks too and need this.
    pub sector_bitmaps_for_all_chunks: bool,
}

impl VhdxSpec {
    /// Random GUIDs, clean log, dynamic (no blocks), second header current.
    pub fn new(geometry: Geometry) -> Self {
        VhdxSpec {
            geometry,
            leave_blocks_allocated: false,
            parent: None,
            data_write_guid: random_uuid(),
            file_write_guid: random_uuid(),
            virtual_disk_id: random_uuid(),
            blocks: BTreeMap::new(),
            log: LogSpec::Clean,
            creator: "ckptfs test writer".to_string(),
            current_header: 1,
            header_sequence: 0x1234_5678_9ABC,
            sector_bitmaps_for_all_chunks: false,
        }
    }

    pub fn is_differencing(&self) -> bool {
        self.parent.is_some()
    }
}

/// Where each structure landed, so tests can damage exact bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub header_offsets: [u64; 2],
    pub region_table_offsets: [u64; 2],
    pub bat_offset: u64,
    pub bat_length: u64,
    pub metadata_offset: u64,
    pub metadata_length: u64,
    pub log_offset: u64,
    pub log_length: u64,
    /// payload block -> file offset
    pub block_offsets: BTreeMap<u64, u64>,
    /// chunk -> file offset
    pub sector_bitmap_offsets: BTreeMap<u64, u64>,
    /// Length of the file as written (shorter than `last_file_offset` when a
    /// dirty log truncates it).
    pub file_len: u64,
    /// Size that holds every structure (the log's LastFileOffset).
    pub last_file_offset: u64,
    /// Metadata item -> (offset inside the metadata region, length).
    pub metadata_items: BTreeMap<Uuid, (u32, u32)>,
    /// File offsets of the active log sequence's entries, tail first.
    pub log_entry_offsets: Vec<u64>,
    /// DescriptorCount of each active entry (same order).
    pub log_entry_descriptors: Vec<usize>,
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

pub fn write_vhdx(path: &Path, spec: &VhdxSpec) -> io::Result<Layout> {
    let g = &spec.geometry;
    g.validate()?;
    validate_blocks(spec)?;
    if spec.current_header > 1 || spec.header_sequence == 0 {
        return Err(invalid("current_header must be 0 or 1 and header_sequence >= 1".into()));
    }
    let differencing = spec.is_differencing();

    let mut layout = plan_layout(spec)?;
    let mut img = Image::default();

    // File type identifier: signature + UTF-16 creator (diagnostic only).
    let mut ident = vec![0u8; 8 + 512];
    ident[..8].copy_from_slice(b"vhdxfile");
    for (i, u) in spec.creator.encode_utf16().take(255).enumerate() {
        ident[8 + 2 * i..10 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    img.put(0, &ident);

    let rt = region_table(&layout);
    for off in layout.region_table_offsets {
        img.put(off, &rt);
    }

    let (meta, items) = metadata_region(spec);
    layout.metadata_items = items;
    img.put(layout.metadata_offset, &meta);

    img.put(layout.bat_offset, &bat_bytes(spec, &layout));

    for (&b, &off) in &layout.block_offsets {
        match &spec.blocks[&b] {
            BlockState::FullyPresent(data) => img.put(off, data),
            BlockState::PartiallyPresent { data, present } => put_partial_block(&mut img, g, off, data, present),
            _ => unreachable!("only allocated blocks get an offset"),
        }
    }
    if differencing {
        for (&chunk, &off) in &layout.sector_bitmap_offsets {
            img.put(off, &sector_bitmap(spec, chunk));
        }
    }

    // Headers come last: their LogGuid depends on whether a log was written.
    let old_log_guid = random_uuid();
    let mut log_guid = Uuid::nil();
    let mut file_len = layout.last_file_offset;
    if let LogSpec::Dirty(d) = &spec.log {
        log_guid = random_uuid();
        file_len = write_dirty_log(&mut img, spec, d, &mut layout, log_guid, old_log_guid)?;
    }
    layout.file_len = file_len;

    let cur = spec.current_header;
    let current = header_bytes(&HeaderFields {
        sequence: spec.header_sequence,
        file_write_guid: spec.file_write_guid,
        data_write_guid: spec.data_write_guid,
        log_guid,
        log_length: layout.log_length as u32,
        log_offset: layout.log_offset,
    });
    // The stale header is what the file looked like before its last open:
    // different write GUIDs and (for dirty logs) the LogGuid of the stale entries.
    let stale = header_bytes(&HeaderFields {
        sequence: spec.header_sequence - 1,
        file_write_guid: random_uuid(),
        data_write_guid: random_uuid(),
        log_guid: if log_guid.is_nil() { Uuid::nil() } else { old_log_guid },
        log_length: layout.log_length as u32,
        log_offset: layout.log_offset,
    });
    img.put(layout.header_offsets[cur], &current);
    img.put(layout.header_offsets[1 - cur], &stale);

    img.write_file(path, file_len)?;
    Ok(layout)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn validate_blocks(spec: &VhdxSpec) -> io::Result<()> {
    let g = &spec.geometry;
    for (&b, st) in &spec.blocks {
        if b >= g.data_blocks() {
            return Err(invalid(format!(
                "block {b} beyond the disk ({} blocks)",
                g.data_blocks()
            )));
        }
        let full = g.block_size as u64;
        let short = g.block_len(b);
        match st {
            BlockState::FullyPresent(d) => {
                let n = d.len() as u64;
                if n != 0 && n != full && n != short {
                    return Err(invalid(format!("block {b}: {n} data bytes")));
                }
            }
            BlockState::PartiallyPresent { data, present } => {
                let n = data.len() as u64;
                if n != full && n != short {
                    return Err(invalid(format!("block {b}: {n} data bytes")));
                }
                let sectors = n / g.logical_sector_size as u64;
                if present.len() as u64 != sectors {
                    return Err(invalid(format!(
                        "block {b}: {} present flags for {sectors} sectors",
                        present.len()
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Places every structure at a 1 MiB boundary (2.1): header section, log,
/// metadata region, BAT, then payload blocks with each chunk's sector bitmap
/// block right after that chunk's payload blocks.
fn plan_layout(spec: &VhdxSpec) -> io::Result<Layout> {
    let g = &spec.geometry;
    let differencing = spec.is_differencing();
    let bat_length = (g.bat_entries(differencing) * 8).next_multiple_of(MIB);
    let (log_offset, log_length) = match &spec.log {
        LogSpec::Clean => (MIB, MIB),
        LogSpec::Dirty(d) => {
            let need = dirty_log_size_bound(spec, d, bat_length);
            // An explicit length only has to hold the entries actually
            // written (checked when they are placed); the bound is for the
            // automatic size.
            let len = match d.log_length {
                Some(l) if l == 0 || l as u64 % MIB != 0 => {
                    return Err(invalid(format!("log length {l} must be a non-zero 1 MiB multiple")));
                }
                Some(l) => l as u64,
                None => need,
            };
            let off = d.log_offset.unwrap_or(MIB);
            if off % MIB != 0 || off < MIB {
                return Err(invalid(format!("log offset {off} must be a 1 MiB multiple >= 1 MiB")));
            }
            (off, len)
        }
    };

    // Bump allocator that steps over the log wherever the spec put it.
    let mut next = MIB;
    let mut alloc = |len: u64| {
        if next < log_offset + log_length && next + len > log_offset {
            next = log_offset + log_length;
        }
        let at = next;
        next += len.next_multiple_of(MIB);
        at
    };
    let metadata_offset = alloc(MIB);
    let bat_offset = alloc(bat_length);
    let mut block_offsets = BTreeMap::new();
    let mut sector_bitmap_offsets = BTreeMap::new();
    for chunk in 0..g.bitmap_blocks() {
        let first = chunk * g.chunk_ratio();
        let last = (first + g.chunk_ratio()).min(g.data_blocks());
        let mut partial = false;
        for (&b, st) in spec.blocks.range(first..last) {
            if st.allocated() {
                block_offsets.insert(b, alloc(g.block_size as u64));
            }
            partial |= matches!(st, BlockState::PartiallyPresent { .. });
        }
        // A dynamic disk never gets bitmap blocks (2.5.1.2), even if a test
        // put a PARTIALLY_PRESENT block into it.
        if differencing && (partial || spec.sector_bitmaps_for_all_chunks) {
            sector_bitmap_offsets.insert(chunk, alloc(MIB));
        }
    }
    let end = next.max(log_offset + log_length);
    Ok(Layout {
        header_offsets: [64 * KIB, 128 * KIB],
        region_table_offsets: [192 * KIB, 256 * KIB],
        bat_offset,
        bat_length,
        metadata_offset,
        metadata_length: MIB,
        log_offset,
        log_length,
        block_offsets,
        sector_bitmap_offsets,
        file_len: end,
        last_file_offset: end,
        metadata_items: BTreeMap::new(),
        log_entry_offsets: Vec::new(),
        log_entry_descriptors: Vec::new(),
    })
}

struct HeaderFields {
    sequence: u64,
    file_write_guid: Uuid,
    data_write_guid: Uuid,
    log_guid: Uuid,
    log_length: u32,
    log_offset: u64,
}

/// One 4 KiB header (2.2.2); the CRC covers all 4 KiB with Checksum = 0.
fn header_bytes(h: &HeaderFields) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[0..4].copy_from_slice(b"head");
    b[8..16].copy_from_slice(&h.sequence.to_le_bytes());
    b[16..32].copy_from_slice(&h.file_write_guid.to_bytes_le());
    b[32..48].copy_from_slice(&h.data_write_guid.to_bytes_le());
    b[48..64].copy_from_slice(&h.log_guid.to_bytes_le());
    b[64..66].copy_from_slice(&0u16.to_le_bytes()); // LogVersion
    b[66..68].copy_from_slice(&1u16.to_le_bytes()); // Version
    b[68..72].copy_from_slice(&h.log_length.to_le_bytes());
    b[72..80].copy_from_slice(&h.log_offset.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The 64 KiB region table (2.2.3); the CRC covers the whole 64 KiB.
fn region_table(layout: &Layout) -> Vec<u8> {
    let mut b = vec![0u8; 64 * KIB as usize];
    b[0..4].copy_from_slice(b"regi");
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let entries = [
        (guid::BAT_REGION, layout.bat_offset, layout.bat_length),
        (guid::METADATA_REGION, layout.metadata_offset, layout.metadata_length),
    ];
    for (i, (g, off, len)) in entries.iter().enumerate() {
        let e = 16 + 32 * i;
        b[e..e + 16].copy_from_slice(&g.to_bytes_le());
        b[e + 16..e + 24].copy_from_slice(&off.to_le_bytes());
        b[e + 24..e + 28].copy_from_slice(&(*len as u32).to_le_bytes());
        b[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes()); // Required
    }
    let crc = crc32c::crc32c(&b);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Metadata table flag bits (2.6.1.2).
const IS_VIRTUAL_DISK: u32 = 1 << 1;
const IS_REQUIRED: u32 = 1 << 2;

/// The 1 MiB metadata region: table at offset 0, items packed back to back
/// from 64 KiB (the spec allows unaligned items, so no padding is used — a
/// reader that assumes alignment will notice).
fn metadata_region(spec: &VhdxSpec) -> (Vec<u8>, BTreeMap<Uuid, (u32, u32)>) {
    let g = &spec.geometry;
    let mut params = Vec::with_capacity(8);
    params.extend_from_slice(&g.block_size.to_le_bytes());
    let mut bits = 0u32;
    if spec.leave_blocks_allocated {
        bits |= 1;
    }
    if spec.parent.is_some() {
        bits |= 2;
    }
    params.extend_from_slice(&bits.to_le_bytes());

    let mut items: Vec<(Uuid, u32, Vec<u8>)> = vec![
        (guid::FILE_PARAMETERS, IS_REQUIRED, params),
        (
            guid::VIRTUAL_DISK_SIZE,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            g.virtual_size.to_le_bytes().to_vec(),
        ),
        (
            guid::VIRTUAL_DISK_ID,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            spec.virtual_disk_id.to_bytes_le().to_vec(),
        ),
        (
            guid::LOGICAL_SECTOR_SIZE,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            g.logical_sector_size.to_le_bytes().to_vec(),
        ),
        (
            guid::PHYSICAL_SECTOR_SIZE,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            g.physical_sector_size.to_le_bytes().to_vec(),
        ),
    ];
    if let Some(p) = &spec.parent {
        items.push((guid::PARENT_LOCATOR, IS_REQUIRED, parent_locator(p)));
    }

    let mut b = vec![0u8; MIB as usize];
    b[0..8].copy_from_slice(b"metadata");
    b[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
    let mut at = 64 * KIB as usize;
    let mut placed = BTreeMap::new();
    for (i, (id, flags, data)) in items.iter().enumerate() {
        let e = 32 + 32 * i;
        b[e..e + 16].copy_from_slice(&id.to_bytes_le());
        b[e + 16..e + 20].copy_from_slice(&(at as u32).to_le_bytes());
        b[e + 20..e + 24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        b[e + 24..e + 28].copy_from_slice(&flags.to_le_bytes());
        b[at..at + data.len()].copy_from_slice(data);
        placed.insert(*id, (at as u32, data.len() as u32));
        at += data.len();
    }
    (b, placed)
}

/// Parent locator item (2.6.2.6): 20-byte header, 12-byte entries, then the
/// UTF-16LE keys and values (no terminating NUL, lengths in bytes).
fn parent_locator(p: &ParentLink) -> Vec<u8> {
    let pairs = p.pairs();
    let mut b = vec![0u8; 20 + 12 * pairs.len()];
    b[0..16].copy_from_slice(&guid::VHDX_LOCATOR_TYPE.to_bytes_le());
    b[18..20].copy_from_slice(&(pairs.len() as u16).to_le_bytes());
    for (i, (k, v)) in pairs.iter().enumerate() {
        let ko = b.len();
        b.extend(k.encode_utf16().flat_map(u16::to_le_bytes));
        let vo = b.len();
        b.extend(v.encode_utf16().flat_map(u16::to_le_bytes));
        let vl = b.len() - vo;
        let e = 20 + 12 * i;
        b[e..e + 4].copy_from_slice(&(ko as u32).to_le_bytes());
        b[e + 4..e + 8].copy_from_slice(&(vo as u32).to_le_bytes());
        b[e + 8..e + 10].copy_from_slice(&((vo - ko) as u16).to_le_bytes());
        b[e + 10..e + 12].copy_from_slice(&(vl as u16).to_le_bytes());
    }
    b
}

fn bat_bytes(spec: &VhdxSpec, layout: &Layout) -> Vec<u8> {
    let g = &spec.geometry;
    let entries = g.bat_entries(spec.is_differencing());
    let mut b = vec![0u8; layout.bat_length as usize];
    let mut set = |index: u64, state: u64, offset: u64| {
        assert!(index < entries, "BAT index {index} >= {entries}");
        assert_eq!(offset % MIB, 0);
        let v = state | ((offset / MIB) << 20);
        let i = index as usize * 8;
        b[i..i + 8].copy_from_slice(&v.to_le_bytes());
    };
    for (&blk, st) in &spec.blocks {
        let off = layout.block_offsets.get(&blk).copied().unwrap_or(0);
        set(g.payload_bat_index(blk), st.bat_state(), off);
    }
    for (&chunk, &off) in &layout.sector_bitmap_offsets {
        set(g.bitmap_bat_index(chunk), bat::SB_BLOCK_PRESENT, off);
    }
    b
}

/// Sector bitmap block for one chunk: bit n (bit n%8 of byte n/8) is the n-th
/// logical sector of the chunk; 1 = in this file. Only PARTIALLY_PRESENT
/// blocks set bits. The bits of FULLY_PRESENT blocks stay 0 on purpose: the
/// spec says a reader must not inspect the bitmap for them, and a reader that
/// does would wrongly go to the parent.
fn sector_bitmap(spec: &VhdxSpec, chunk: u64) -> Vec<u8> {
    let g = &spec.geometry;
    let mut bm = vec![0u8; MIB as usize];
    let first = chunk * g.chunk_ratio();
    for (&b, st) in spec.blocks.range(first..first + g.chunk_ratio()) {
        if let BlockState::PartiallyPresent { present, .. } = st {
            let base = (b - first) * g.sectors_per_block();
            for (s, &p) in present.iter().enumerate() {
                if p {
                    let bit = base + s as u64;
                    bm[(bit / 8) as usize] |= 1 << (bit % 8);
                }
            }
        }
    }
    bm
}

/// Writes the present sectors of a partially present block. The absent
/// sectors next to each present run get a recognisable junk pattern, so a
/// reader that is off by one in the bitmap, or ignores it, returns junk
/// instead of silently matching zeros. (Only runs' edges are junked to keep
/// 256 MiB blocks cheap on disk.)
fn put_partial_block(img: &mut Image, g: &Geometry, off: u64, data: &[u8], present: &[bool]) {
    let ss = g.logical_sector_size as usize;
    const EDGE: usize = 8;
    let n = present.len();
    for s in 0..n {
        let at = off + (s * ss) as u64;
        if present[s] {
            img.put(at, &data[s * ss..(s + 1) * ss]);
        } else {
            let lo = s.saturating_sub(EDGE);
            let hi = (s + EDGE + 1).min(n);
            if present[lo..hi].iter().any(|&p| p) {
                img.put(at, &junk(b"NOT-PRESENT-SECTOR", at, ss));
            }
        }
    }
}

/// A non-zero, self-describing filler ("TAG@offset ...") that shows up clearly
/// in a hex dump of a wrong read.
fn junk(tag: &[u8], at: u64, len: usize) -> Vec<u8> {
    let text = format!("{}@{at:#x} ", String::from_utf8_lossy(tag));
    text.bytes().cycle().take(len).collect()
}

// ---------------------------------------------------------------------------
// The dirty log
// ---------------------------------------------------------------------------

enum Desc {
    /// A 4 KiB write: leading 8 and trailing 4 bytes go into the descriptor.
    Data { file_offset: u64, page: Vec<u8> },
    /// ZeroLength bytes of zeros at FileOffset (both multiples of 4 KiB).
    Zero { file_offset: u64, len: u64 },
}

/// An upper bound for everything `write_dirty_log` puts into the log, so the
/// layout (which depends on the log length) can be fixed before the content
/// exists. Generous on purpose: unused log space is a sparse hole.
fn dirty_log_size_bound(spec: &VhdxSpec, d: &DirtyLog, bat_length: u64) -> u64 {
    let g = &spec.geometry;
    let mut pages = 0u64;
    if d.region_table_in_log {
        pages += 2 * 16;
    }
    if d.metadata_in_log {
        pages += MIB / LOG_SECTOR;
    }
    if d.bat_in_log {
        pages += bat_length / LOG_SECTOR;
    }
    if d.sector_bitmaps_in_log && spec.is_differencing() {
        pages += g.bitmap_blocks() * MIB / LOG_SECTOR;
    }
    pages += d.payload_pages_in_log as u64 + 2;
    if d.truncate_file {
        pages += MIB / LOG_SECTOR;
    }
    let entries = d.entries.max(1) as u64;
    // data sectors + descriptor sectors + a sector per entry, then the trap
    // entries (superseded: 2 x 2, stale: 2, torn: 2) and slack.
    let active = pages + pages.div_ceil(126) + entries + 1;
    let total = (active + 16) * LOG_SECTOR + 64 * KIB;
    total.next_multiple_of(MIB)
}

/// Moves the selected pages of the finished image into log entries, leaves
/// stale bytes in their place, writes the log region and returns the length
/// the file must be written with.
fn write_dirty_log(
    img: &mut Image,
    spec: &VhdxSpec,
    d: &DirtyLog,
    layout: &mut Layout,
    log_guid: Uuid,
    old_log_guid: Uuid,
) -> io::Result<u64> {
    let g = &spec.geometry;
    let last_file_offset = layout.last_file_offset;
    let struct_end = [
        layout.log_offset + layout.log_length,
        layout.metadata_offset + layout.metadata_length,
        layout.bat_offset + layout.bat_length,
    ]
    .into_iter()
    .max()
    .unwrap();
    let file_len = if d.truncate_file && last_file_offset >= struct_end + MIB {
        last_file_offset - MIB
    } else {
        last_file_offset
    };

    let mut plan = LogPlan::default();
    if d.region_table_in_log {
        for off in layout.region_table_offsets {
            plan.structure(img, off, 64 * KIB, d.zero_descriptors, None);
        }
    }
    if d.metadata_in_log {
        // Only the table area and the packed items: the rest of the 1 MiB is
        // free space whose content does not matter.
        let used = 64 * KIB
            + layout
                .metadata_items
                .values()
                .map(|&(_, l)| l as u64)
                .sum::<u64>()
                .next_multiple_of(LOG_SECTOR);
        plan.structure(img, layout.metadata_offset, used, d.zero_descriptors, None);
    }
    if d.bat_in_log {
        let used = (g.bat_entries(spec.is_differencing()) * 8).next_multiple_of(LOG_SECTOR);
        plan.structure(img, layout.bat_offset, used, d.zero_descriptors, None);
    }
    if d.sector_bitmaps_in_log && spec.is_differencing() {
        for &off in layout.sector_bitmap_offsets.values() {
            // Zero pages of a bitmap are zero in place anyway: only data pages.
            plan.structure(img, off, MIB, false, None);
        }
    }
    if d.payload_pages_in_log > 0 || d.zero_descriptors {
        plan.payload(img, spec, layout, d);
    }
    if file_len < last_file_offset {
        // Whatever lived in the lost tail survives only in the log.
        let first = file_len / LOG_SECTOR;
        let last = last_file_offset / LOG_SECTOR;
        let tail: Vec<u64> = img.pages.range(first..last).map(|(&k, _)| k).collect();
        for k in tail {
            plan.data_page(img, k * LOG_SECTOR, None);
        }
    }

    let mut descs = std::mem::take(&mut plan.descs);
    if !d.interleave_zero_descriptors {
        // Stable partition: data first, zeros last. Zero and data targets
        // never overlap, so the replay result is unchanged.
        let (data, zeros): (Vec<Desc>, Vec<Desc>) = descs.into_iter().partition(|x| matches!(x, Desc::Data { .. }));
        descs = data;
        descs.extend(zeros);
    }
    if d.overwritten_in_sequence {
        if let Some(Desc::Data { file_offset, .. }) = descs.iter().rev().find(|x| matches!(x, Desc::Data { .. })) {
            let o = *file_offset;
            descs.insert(
                0,
                Desc::Data {
                    file_offset: o,
                    page: junk(b"OVERWRITTEN-LATER-IN-SEQUENCE", o, LOG_SECTOR as usize),
                },
            );
        }
    }
    if descs.is_empty() {
        return Err(invalid("dirty log selected no pages to log".into()));
    }

    // Split the descriptors evenly into the requested number of entries.
    let n_entries = d.entries.max(1);
    let per = descs.len().div_ceil(n_entries);
    let mut groups: Vec<Vec<Desc>> = Vec::new();
    let mut it = descs.into_iter().peekable();
    for _ in 0..n_entries {
        groups.push(it.by_ref().take(per).collect());
    }
    let lens: Vec<u64> = groups.iter().map(|g| entry_len(g)).collect();
    let active_len: u64 = lens.iter().sum();

    let log_len = layout.log_length;
    let common = EntryCommon {
        log_guid,
        flushed_file_offset: file_len,
        last_file_offset,
    };
    // Sequence numbers above 2^32 so SequenceHigh is non-zero in data sectors.
    let seq0: u64 = 0x0000_0001_0000_0100;

    // Trap entries first (their sizes decide the placement).
    let junk_target = layout.bat_offset;
    let zero_bat_page = {
        // A plausible BAT page that marks 512 blocks ZERO: replaying it by
        // mistake silently hides data instead of failing to parse.
        let mut p = vec![0u8; LOG_SECTOR as usize];
        for e in p.chunks_mut(8) {
            e.copy_from_slice(&bat::PAYLOAD_BLOCK_ZERO.to_le_bytes());
        }
        p
    };
    let first_active_data = groups
        .iter()
        .flatten()
        .find_map(|x| match x {
            Desc::Data { file_offset, .. } => Some(*file_offset),
            _ => None,
        })
        .unwrap();

    let torn = d.torn_entry_after_head.then(|| {
        vec![Desc::Data {
            file_offset: junk_target,
            page: zero_bat_page.clone(),
        }]
    });
    let superseded: Vec<Vec<Desc>> = if d.superseded_sequence {
        (0..2)
            .map(|i| {
                vec![Desc::Data {
                    file_offset: first_active_data,
                    page: junk(
                        format!("SUPERSEDED-SEQUENCE-{i}").as_bytes(),
                        first_active_data,
                        LOG_SECTOR as usize,
                    ),
                }]
            })
            .collect()
    } else {
        Vec::new()
    };
    let stale = d.stale_log_guid_entry.then(|| {
        vec![Desc::Data {
            file_offset: junk_target,
            page: zero_bat_page.clone(),
        }]
    });

    let torn_len = torn.as_ref().map_or(0, |t| entry_len(t));
    let sup_len: u64 = superseded.iter().map(|s| entry_len(s)).sum();
    let stale_len = stale.as_ref().map_or(0, |s| entry_len(s));
    if active_len + torn_len + sup_len + stale_len + LOG_SECTOR > log_len {
        return Err(invalid(format!("log of {log_len} bytes too small")));
    }

    // Where the active sequence starts in the ring.
    let last = n_entries - 1;
    let active_start = match d.wrap {
        LogWrap::None => sup_len + stale_len,
        LogWrap::InsideEntry(i) => {
            let i = i.min(last);
            // An entry of a single sector cannot be cut; the wrap then falls
            // just before it.
            let before: u64 = lens[..i].iter().sum();
            let cut = (lens[i] / LOG_SECTOR / 2).max(1) * LOG_SECTOR;
            log_len - before - if lens[i] >= 2 * LOG_SECTOR { cut } else { 0 }
        }
        LogWrap::BeforeEntry(i) => {
            let i = i.clamp(1, last.max(1)).min(last);
            log_len - lens[..i].iter().sum::<u64>()
        }
    } % log_len;
    let ring = Ring {
        log_offset: layout.log_offset,
        log_len,
    };

    let mut pos = active_start;
    layout.log_entry_offsets.clear();
    for (i, grp) in groups.iter().enumerate() {
        let e = build_entry(&common, seq0 + i as u64, active_start as u32, grp);
        layout.log_entry_offsets.push(layout.log_offset + pos);
        layout.log_entry_descriptors.push(grp.len());
        ring.put(img, pos, &e);
        pos = (pos + e.len() as u64) % log_len;
    }
    let head_seq = seq0 + groups.len() as u64 - 1;
    if let Some(t) = &torn {
        let mut e = build_entry(&common, head_seq + 1, active_start as u32, t);
        // Tear the data sector: its SequenceLow no longer matches (and the
        // entry checksum, computed before the tear, fails too).
        let ds = e.len() - LOG_SECTOR as usize;
        e[ds + 4092] ^= 0xFF;
        ring.put(img, pos, &e);
        pos = (pos + e.len() as u64) % log_len;
    }
    // Superseded and stale entries go into the free part of the ring: after
    // the torn entry when wrapping, before the active sequence otherwise.
    let mut free = if d.wrap == LogWrap::None { 0 } else { pos };
    let sup_start = free;
    for (i, s) in superseded.iter().enumerate() {
        let e = build_entry(&common, seq0 - 0x80 + i as u64, sup_start as u32, s);
        ring.put(img, free, &e);
        free += e.len() as u64;
    }
    if let Some(s) = &stale {
        let old = EntryCommon {
            log_guid: old_log_guid,
            ..common
        };
        let e = build_entry(&old, head_seq + 0x1000, free as u32, s);
        ring.put(img, free, &e);
    }

    for (k, page) in plan.stale {
        img.set_page(k, page);
    }
    Ok(file_len)
}

#[derive(Default)]
struct LogPlan {
    descs: Vec<Desc>,
    /// Page index -> what stays in place (None = zero).
    stale: Vec<(u64, Option<Box<[u8]>>)>,
    logged: BTreeSet<u64>,
}

impl LogPlan {
    /// Logs the page at `off` with its final content and leaves `stale` in
    /// place. No-op for a page already logged or entirely zero.
    fn data_page(&mut self, img: &Image, off: u64, stale: Option<Vec<u8>>) -> bool {
        let k = off / LOG_SECTOR;
        if self.logged.contains(&k) {
            return false;
        }
        let Some(page) = img.pages.get(&k) else {
            return false;
        };
        self.descs.push(Desc::Data {
            file_offset: off,
            page: page.to_vec(),
        });
        self.stale.push((k, stale.map(Vec::into_boxed_slice)));
        self.logged.insert(k);
        true
    }

    /// Logs a run of final-zero pages as one zero descriptor, with junk in
    /// place so that skipping the descriptor is visible.
    fn zero_run(&mut self, off: u64, len: u64) {
        self.descs.push(Desc::Zero { file_offset: off, len });
        for k in off / LOG_SECTOR..(off + len) / LOG_SECTOR {
            let at = k * LOG_SECTOR;
            let page = junk(b"ZEROED-BY-LOG", at, LOG_SECTOR as usize);
            self.stale.push((k, Some(page.into_boxed_slice())));
            self.logged.insert(k);
        }
    }

    /// A structure that exists only in the log: its non-zero pages become data
    /// descriptors (zero in place), its zero pages optionally one zero
    /// descriptor per run.
    fn structure(&mut self, img: &Image, off: u64, len: u64, zeros: bool, stale: Option<&[u8]>) {
        let mut run: Option<(u64, u64)> = None;
        for k in off / LOG_SECTOR..(off + len) / LOG_SECTOR {
            let at = k * LOG_SECTOR;
            if img.pages.contains_key(&k) {
                if let Some((o, l)) = run.take() {
                    self.zero_run(o, l);
                }
                self.data_page(img, at, stale.map(<[u8]>::to_vec));
            } else if zeros && !self.logged.contains(&k) {
                run = match run {
                    Some((o, l)) => Some((o, l + LOG_SECTOR)),
                    None => Some((at, LOG_SECTOR)),
                };
            }
        }
        if let Some((o, l)) = run {
            self.zero_run(o, l);
        }
    }

    /// Payload pages whose newest data is only in the log (old data in place),
    /// spread evenly over the non-zero pages of allocated blocks, plus one zero
    /// page of a fully present block that only a zero descriptor clears.
    fn payload(&mut self, img: &Image, spec: &VhdxSpec, layout: &Layout, d: &DirtyLog) {
        let mut nonzero = Vec::new();
        let mut zero_candidate = None;
        for (&b, &off) in &layout.block_offsets {
            let first = off / LOG_SECTOR;
            let end = (off + spec.geometry.block_len(b)) / LOG_SECTOR;
            nonzero.extend(img.pages.range(first..end).map(|(&k, _)| k));
            if zero_candidate.is_none() && matches!(spec.blocks[&b], BlockState::FullyPresent(_)) {
                zero_candidate = (first..end).find(|k| !img.pages.contains_key(k));
            }
        }
        let want = d.payload_pages_in_log.min(nonzero.len());
        for i in 0..want {
            let k = nonzero[i * nonzero.len() / want];
            let at = k * LOG_SECTOR;
            self.data_page(img, at, Some(junk(b"OLD-PAYLOAD", at, LOG_SECTOR as usize)));
        }
        if d.zero_descriptors {
            if let Some(k) = zero_candidate {
                self.zero_run(k * LOG_SECTOR, LOG_SECTOR);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct EntryCommon {
    log_guid: Uuid,
    flushed_file_offset: u64,
    last_file_offset: u64,
}

fn descriptor_sectors(n: usize) -> u64 {
    // 126 descriptors fit after the 64-byte header, 128 in each later sector.
    (n as u64 + 2).div_ceil(128)
}

fn entry_len(descs: &[Desc]) -> u64 {
    let data = descs.iter().filter(|d| matches!(d, Desc::Data { .. })).count() as u64;
    (descriptor_sectors(descs.len()) + data) * LOG_SECTOR
}

/// One log entry (2.3.1): header + descriptors, then data sectors; the CRC
/// covers the whole entry with Checksum = 0.
fn build_entry(c: &EntryCommon, seq: u64, tail: u32, descs: &[Desc]) -> Vec<u8> {
    let len = entry_len(descs) as usize;
    let mut e = vec![0u8; len];
    e[0..4].copy_from_slice(b"loge");
    e[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    e[12..16].copy_from_slice(&tail.to_le_bytes());
    e[16..24].copy_from_slice(&seq.to_le_bytes());
    e[24..28].copy_from_slice(&(descs.len() as u32).to_le_bytes());
    e[32..48].copy_from_slice(&c.log_guid.to_bytes_le());
    e[48..56].copy_from_slice(&c.flushed_file_offset.to_le_bytes());
    e[56..64].copy_from_slice(&c.last_file_offset.to_le_bytes());
    let mut data_at = (descriptor_sectors(descs.len()) * LOG_SECTOR) as usize;
    for (i, d) in descs.iter().enumerate() {
        // Descriptors are contiguous across descriptor sectors: the header
        // takes exactly the first two 32-byte slots of sector 0.
        let o = 64 + 32 * i;
        match d {
            Desc::Zero { file_offset, len } => {
                e[o..o + 4].copy_from_slice(b"zero");
                e[o + 8..o + 16].copy_from_slice(&len.to_le_bytes());
                e[o + 16..o + 24].copy_from_slice(&file_offset.to_le_bytes());
                e[o + 24..o + 32].copy_from_slice(&seq.to_le_bytes());
            }
            Desc::Data { file_offset, page } => {
                e[o..o + 4].copy_from_slice(b"desc");
                e[o + 4..o + 8].copy_from_slice(&page[4092..4096]);
                e[o + 8..o + 16].copy_from_slice(&page[0..8]);
                e[o + 16..o + 24].copy_from_slice(&file_offset.to_le_bytes());
                e[o + 24..o + 32].copy_from_slice(&seq.to_le_bytes());
                let s = &mut e[data_at..data_at + LOG_SECTOR as usize];
                s[0..4].copy_from_slice(b"data");
                s[4..8].copy_from_slice(&((seq >> 32) as u32).to_le_bytes());
                s[8..4092].copy_from_slice(&page[8..4092]);
                s[4092..4096].copy_from_slice(&(seq as u32).to_le_bytes());
                data_at += LOG_SECTOR as usize;
            }
        }
    }
    let crc = crc32c::crc32c(&e);
    e[4..8].copy_from_slice(&crc.to_le_bytes());
    e
}

/// The circular log: sector i of an entry starting at `pos` lives at
/// (pos + i * 4 KiB) mod length.
struct Ring {
    log_offset: u64,
    log_len: u64,
}

impl Ring {
    fn put(&self, img: &mut Image, pos: u64, entry: &[u8]) {
        for (i, s) in entry.chunks(LOG_SECTOR as usize).enumerate() {
            let at = (pos + i as u64 * LOG_SECTOR) % self.log_len;
            img.put(self.log_offset + at, s);
        }
    }
}

// ---------------------------------------------------------------------------
// Sparse file image
// ---------------------------------------------------------------------------

/// The file being built, as non-zero 4 KiB pages, so multi-GiB files cost only
/// their data in memory and on disk.
#[derive(Default)]
struct Image {
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Image {
    fn put(&mut self, offset: u64, bytes: &[u8]) {
        let ps = LOG_SECTOR as usize;
        let mut pos = 0;
        while pos < bytes.len() {
            let abs = offset + pos as u64;
            let k = abs / LOG_SECTOR;
            let at = (abs % LOG_SECTOR) as usize;
            let n = (ps - at).min(bytes.len() - pos);
            let src = &bytes[pos..pos + n];
            let zero = src.iter().all(|&b| b == 0);
            match self.pages.get_mut(&k) {
                Some(p) => {
                    p[at..at + n].copy_from_slice(src);
                    if zero && p.iter().all(|&b| b == 0) {
                        self.pages.remove(&k);
                    }
                }
                None if zero => {}
                None => {
                    let mut p = vec![0u8; ps].into_boxed_slice();
                    p[at..at + n].copy_from_slice(src);
                    self.pages.insert(k, p);
                }
            }
            pos += n;
        }
    }

    fn set_page(&mut self, k: u64, page: Option<Box<[u8]>>) {
        match page {
            Some(p) if p.iter().any(|&b| b != 0) => {
                self.pages.insert(k, p);
            }
            _ => {
                self.pages.remove(&k);
            }
        }
    }

    /// Writes runs of consecutive pages with one write each and seeks over
    /// the holes; pages at or beyond `len` are dropped (a truncated file).
    fn write_file(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut f = File::create(path)?;
        f.set_len(len)?;
        let end = len / LOG_SECTOR;
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        let mut next = u64::MAX;
        for (&k, p) in self.pages.range(..end) {
            if k != next && !run.is_empty() {
                f.seek(SeekFrom::Start(run_start * LOG_SECTOR))?;
                f.write_all(&run)?;
                run.clear();
            }
            if run.is_empty() {
                run_start = k;
            }
            run.extend_from_slice(p);
            next = k + 1;
            if run.len() >= 16 * MIB as usize {
                f.seek(SeekFrom::Start(run_start * LOG_SECTOR))?;
                f.write_all(&run)?;
                run.clear();
                next = u64::MAX;
            }
        }
        if !run.is_empty() {
            f.seek(SeekFrom::Start(run_start * LOG_SECTOR))?;
            f.write_all(&run)?;
        }
        f.sync_all()
    }
}

/// A version-4 GUID without the `uuid` crate's `v4` feature (which the crate
/// does not enable): std's per-process random hash keys are the entropy.
pub fn random_uuid() -> Uuid {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(now);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

// ---------------------------------------------------------------------------
// Expected content
// ---------------------------------------------------------------------------

/// The raw disk seen through a file whose parent chain reads as `parent`,
/// following the project's semantics: NOT_PRESENT = parent (zeros without
/// one); UNDEFINED/ZERO/UNMAPPED (3 and 5) = zeros in every disk type;
/// PARTIALLY_PRESENT = per sector bitmap.
pub fn expected_model(parent: Option<&Model>, spec: &VhdxSpec) -> Model {
    let g = &spec.geometry;
    let mut m = match (parent, &spec.parent) {
        (Some(p), Some(_)) => {
            assert_eq!(p.size(), g.virtual_size, "parent and child sizes differ");
            p.clone()
        }
        _ => Model::new(g.virtual_size, g.logical_sector_size),
    };
    let ss = g.logical_sector_size as u64;
    for (&b, st) in &spec.blocks {
        let start = b * g.block_size as u64;
        let len = g.block_len(b);
        match st {
            BlockState::NotPresent => {}
            BlockState::FullyPresent(d) if d.is_empty() => m.zero(start, len),
            BlockState::FullyPresent(d) => m.write(start, &d[..len as usize]),
            BlockState::PartiallyPresent { data, present } => {
                for s in 0..len / ss {
                    if present[s as usize] {
                        let o = (s * ss) as usize;
                        m.write(start + s * ss, &data[o..o + ss as usize]);
                    }
                }
            }
            _ => m.zero(start, len),
        }
    }
    m
}

// ---------------------------------------------------------------------------
// Checkpoint chains
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(pub usize);

enum Op {
    Write(u64, Vec<u8>),
    Zero(u64),
    Unmap(u64, bool),
    Undefine(u64),
}

/// Guest-level edits of one layer, turned into block states when the layer is
/// written.
pub struct LayerEdits {
    geometry: Geometry,
    full_blocks: bool,
    ops: Vec<Op>,
}

impl LayerEdits {
    /// Sector aligned. In a differencing layer, partially covered blocks
    /// become PARTIALLY_PRESENT unless `full_blocks(true)`.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let ss = self.geometry.logical_sector_size as u64;
        assert!(
            offset % ss == 0 && bytes.len() as u64 % ss == 0,
            "unaligned write {offset:#x}+{:#x}",
            bytes.len()
        );
        assert!(offset + bytes.len() as u64 <= self.geometry.virtual_size);
        self.ops.push(Op::Write(offset, bytes.to_vec()));
    }

    /// Copy-up: touched blocks become FULLY_PRESENT with the parent's data
    /// filled in (applies to the whole layer).
    pub fn full_blocks(&mut self, yes: bool) {
        self.full_blocks = yes;
    }

    /// PAYLOAD_BLOCK_ZERO.
    pub fn zero_block(&mut self, block: u64) {
        self.ops.push(Op::Zero(block));
    }

    pub fn unmap_block(&mut self, block: u64, legacy_value_5: bool) {
        self.ops.push(Op::Unmap(block, legacy_value_5));
    }

    pub fn undefine_block(&mut self, block: u64) {
        self.ops.push(Op::Undefine(block));
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
}

struct Layer {
    file_name: String,
    path: PathBuf,
    parent: Option<usize>,
    spec: VhdxSpec,
    layout: Layout,
    model: Model,
}

/// Builds a checkpoint tree by describing each state's guest writes relative
/// to its parent state. Every file is written as soon as it is added.
pub struct ChainBuilder {
    dir: PathBuf,
    virtual_size: u64,
    logical_sector_size: u32,
    all_sector_bitmaps: bool,
    layers: Vec<Layer>,
}

impl ChainBuilder {
    pub fn new(dir: &Path, virtual_size: u64, logical_sector_size: u32) -> Self {
        ChainBuilder {
            dir: dir.to_path_buf(),
            virtual_size,
            logical_sector_size,
            all_sector_bitmaps: false,
            layers: Vec::new(),
        }
    }

    /// Sets `VhdxSpec::sector_bitmaps_for_all_chunks` for the differencing
    /// layers added from now on.
    pub fn sector_bitmaps_for_all_chunks(&mut self, yes: bool) {
        self.all_sector_bitmaps = yes;
    }

    /// Base disk; `fixed` makes every block FULLY_PRESENT with
    /// LeaveBlocksAllocated.
    pub fn base(
        &mut self,
        file_name: &str,
        block_size: u32,
        fixed: bool,
        edit: impl FnOnce(&mut LayerEdits),
    ) -> LayerId {
        self.add(None, file_name, block_size, fixed, edit, |_| {})
    }

    pub fn child(
        &mut self,
        parent: LayerId,
        file_name: &str,
        block_size: u32,
        edit: impl FnOnce(&mut LayerEdits),
    ) -> LayerId {
        self.add(Some(parent), file_name, block_size, false, edit, |_| {})
    }

    /// Like `child`, but lets the caller change the VhdxSpec before writing
    /// (dirty log, locator variants, ...). The expected model is computed from
    /// the spec after the tweak, so changing `blocks` there is fine too.
    pub fn child_with(
        &mut self,
        parent: LayerId,
        file_name: &str,
        block_size: u32,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut VhdxSpec),
    ) -> LayerId {
        self.add(Some(parent), file_name, block_size, false, edit, tweak)
    }

    /// Like `base`, with a tweak (e.g. a dirty log on a dynamic disk).
    pub fn base_with(
        &mut self,
        file_name: &str,
        block_size: u32,
        fixed: bool,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut VhdxSpec),
    ) -> LayerId {
        self.add(None, file_name, block_size, fixed, edit, tweak)
    }

    pub fn path(&self, id: &LayerId) -> PathBuf {
        self.layers[id.0].path.clone()
    }

    /// The raw disk as seen through that file and its ancestors.
    pub fn expected(&self, id: &LayerId) -> &Model {
        &self.layers[id.0].model
    }

    pub fn spec(&self, id: &LayerId) -> &VhdxSpec {
        &self.layers[id.0].spec
    }

    pub fn layout(&self, id: &LayerId) -> &Layout {
        &self.layers[id.0].layout
    }

    pub fn file_name(&self, id: &LayerId) -> &str {
        &self.layers[id.0].file_name
    }

    pub fn parent(&self, id: &LayerId) -> Option<LayerId> {
        self.layers[id.0].parent.map(LayerId)
    }

    /// Every layer added so far, in creation order.
    pub fn layers(&self) -> Vec<LayerId> {
        (0..self.layers.len()).map(LayerId).collect()
    }

    /// The file and its ancestors, newest first.
    pub fn chain(&self, id: &LayerId) -> Vec<LayerId> {
        let mut v = vec![*id];
        while let Some(p) = self.parent(v.last().unwrap()) {
            v.push(p);
        }
        v
    }

    fn add(
        &mut self,
        parent: Option<LayerId>,
        file_name: &str,
        block_size: u32,
        fixed: bool,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut VhdxSpec),
    ) -> LayerId {
        let geometry = Geometry::new(self.virtual_size, block_size, self.logical_sector_size);
        let mut edits = LayerEdits {
            geometry,
            full_blocks: false,
            ops: Vec::new(),
        };
        edit(&mut edits);

        let parent_layer = parent.map(|p| &self.layers[p.0]);
        let blocks = resolve_edits(&edits, parent_layer.map(|l| &l.model), fixed);
        let mut spec = VhdxSpec::new(geometry);
        spec.blocks = blocks;
        spec.leave_blocks_allocated = fixed;
        // Alternate the current header slot along the chain so that neither
        // "always the first" nor "always the second" passes.
        spec.current_header = (self.layers.len() + 1) % 2;
        spec.sector_bitmaps_for_all_chunks = self.all_sector_bitmaps;
        if let Some(pl) = parent_layer {
            spec.parent = Some(ParentLink::hyperv(pl.spec.data_write_guid, &pl.file_name));
        }
        tweak(&mut spec);

        let path = self.dir.join(file_name);
        let layout = write_vhdx(&path, &spec).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let model = expected_model(parent_layer.map(|l| &l.model), &spec);
        self.layers.push(Layer {
            file_name: file_name.to_string(),
            path,
            parent: parent.map(|p| p.0),
            spec,
            layout,
            model,
        });
        LayerId(self.layers.len() - 1)
    }
}

/// Per-block working state while applying a layer's edits.
enum Work {
    Data { data: Vec<u8>, present: Vec<bool> },
    Special(BlockState),
}

/// Turns guest edits into block states. Differencing layers (with a parent)
/// start every touched block as "nothing present" (or, with full_blocks, as a
/// copy of the parent's data); base layers start blocks as zeros. A write into
/// a ZERO/UNMAPPED/UNDEFINED block makes it fully present with zeros around the
/// write, since those blocks no longer read from the parent.
fn resolve_edits(edits: &LayerEdits, parent: Option<&Model>, fixed: bool) -> BTreeMap<u64, BlockState> {
    let g = &edits.geometry;
    let bs = g.block_size as u64;
    let ss = g.logical_sector_size as u64;
    let fresh = |b: u64| -> Work {
        let len = g.block_len(b);
        let sectors = (len / ss) as usize;
        match parent {
            Some(p) if edits.full_blocks => Work::Data {
                data: p.read(b * bs, len as usize),
                present: vec![true; sectors],
            },
            Some(_) => Work::Data {
                data: vec![0; len as usize],
                present: vec![false; sectors],
            },
            None => Work::Data {
                data: vec![0; len as usize],
                present: vec![true; sectors],
            },
        }
    };
    let mut work: BTreeMap<u64, Work> = BTreeMap::new();
    for op in &edits.ops {
        match op {
            Op::Write(off, bytes) => {
                let end = off + bytes.len() as u64;
                let mut pos = *off;
                while pos < end {
                    let b = pos / bs;
                    let bstart = b * bs;
                    let n = (bstart + g.block_len(b)).min(end) - pos;
                    let w = work.entry(b).or_insert_with(|| fresh(b));
                    if let Work::Special(_) = w {
                        let len = g.block_len(b);
                        *w = Work::Data {
                            data: vec![0; len as usize],
                            present: vec![true; (len / ss) as usize],
                        };
                    }
                    let Work::Data { data, present } = w else {
                        unreachable!()
                    };
                    let rel = (pos - bstart) as usize;
                    let src = (pos - off) as usize;
                    data[rel..rel + n as usize].copy_from_slice(&bytes[src..src + n as usize]);
                    for s in rel as u64 / ss..(rel as u64 + n) / ss {
                        present[s as usize] = true;
                    }
                    pos += n;
                }
            }
            Op::Zero(b) => {
                work.insert(*b, Work::Special(BlockState::Zero));
            }
            Op::Unmap(b, legacy) => {
                let st = if *legacy {
                    BlockState::UnmappedLegacy
                } else {
                    BlockState::Unmapped
                };
                work.insert(*b, Work::Special(st));
            }
            Op::Undefine(b) => {
                work.insert(*b, Work::Special(BlockState::Undefined));
            }
        }
    }
    let mut blocks = BTreeMap::new();
    if fixed {
        for b in 0..g.data_blocks() {
            blocks.insert(b, BlockState::FullyPresent(Vec::new()));
        }
    }
    for (b, w) in work {
        let st = match w {
            Work::Special(s) => s,
            Work::Data { data, present } if present.iter().all(|&p| p) => BlockState::FullyPresent(data),
            Work::Data { data, present } => BlockState::PartiallyPresent { data, present },
        };
        blocks.insert(b, st);
    }
    blocks
}
