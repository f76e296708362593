//! Test-only writer of legacy VHD files (fixed, dynamic, differencing), written from
//! the Microsoft "Virtual Hard Disk Image Format Specification" (v1.0) alone, with
//! what Windows/Hyper-V write where the spec is silent or Windows differs from it.
//!
//! Like `vhdx_writer`, it shares no code with `src/`: a spec (`VhdSpec`) becomes a
//! file, a `ChainBuilder` turns per-layer guest writes into differencing files and
//! keeps the expected raw disk of every state (`super::model::Model`: each state is
//! itself over its ancestors). `corrupt` damages chosen fields afterwards, fixing the
//! checksum where the damage is meant to be something else.
//!
//! `scripts/crosscheck_writer.py` (VHD part, fixtures from
//! `examples/make_vhd_fixtures.rs`) checks the output against 7-Zip, qemu-img,
//! libvhdi and dissect.hypervisor.
//!
//! Layout of a dynamic/differencing file as written here: footer copy at 0, dynamic
//! header at 512, BAT at 1536 (padded to a sector), parent locator data (each entry's
//! space rounded up to a sector), then the blocks (sector bitmap padded to a sector,
//! then the data), then the footer. Blocks are not stored in BAT order: even blocks
//! first, then odd ones, so a reader that assumes file order = block order fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use uuid::Uuid;

use super::model::Model;

pub const SECTOR: u64 = 512;
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
/// The default block size of Virtual PC and Hyper-V.
pub const DEFAULT_BLOCK_SIZE: u32 = 2 * MIB as u32;
pub const FOOTER_LEN: u64 = 512;
pub const DYN_HEADER_LEN: u64 = 1024;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;
pub const UNUSED_BAT_ENTRY: u32 = 0xFFFF_FFFF;

/// Offsets of the fields tests patch (footer and dynamic header).
pub mod field {
    pub const FOOTER_DATA_OFFSET: usize = 16;
    pub const FOOTER_TIME_STAMP: usize = 24;
    pub const FOOTER_CURRENT_SIZE: usize = 48;
    pub const FOOTER_DISK_TYPE: usize = 60;
    pub const FOOTER_CHECKSUM: usize = 64;
    pub const FOOTER_UNIQUE_ID: usize = 68;
    pub const DYN_BAT_OFFSET: usize = 16;
    pub const DYN_MAX_TABLE_ENTRIES: usize = 28;
    pub const DYN_BLOCK_SIZE: usize = 32;
    pub const DYN_CHECKSUM: usize = 36;
    pub const DYN_PARENT_UNIQUE_ID: usize = 40;
    pub const DYN_PARENT_TIME_STAMP: usize = 56;
    pub const DYN_PARENT_NAME: usize = 64;
    pub const DYN_LOCATORS: usize = 576;
    pub const LOCATOR_LEN: usize = 24;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

impl DiskType {
    pub fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }
}

/// One parent locator entry: platform code and the path it stores (UTF-16LE for the
/// W2ru/W2ku codes Windows writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub code: [u8; 4],
    pub path: String,
}

impl Locator {
    pub fn relative(path: &str) -> Locator {
        Locator {
            code: *b"W2ru",
            path: path.to_string(),
        }
    }

    pub fn absolute(path: &str) -> Locator {
        Locator {
            code: *b"W2ku",
            path: path.to_string(),
        }
    }

    pub fn data(&self) -> Vec<u8> {
        self.path.encode_utf16().flat_map(|c| c.to_le_bytes()).collect()
    }
}

/// Which locators a child gets (the unicode parent name is always written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locators {
    /// W2ku then W2ru, as Hyper-V writes them.
    Both,
    RelativeOnly,
    /// Only an absolute Windows path (`C:\VMs\<parent name>`): a reader on this
    /// machine can only use its file name, beside the child.
    AbsoluteOnly,
    /// No locator entry at all: the unicode parent name is the only hint.
    None,
}

impl Locators {
    pub fn build(self, parent_file_name: &str) -> Vec<Locator> {
        let rel = Locator::relative(&format!(".\\{parent_file_name}"));
        let abs = Locator::absolute(&format!("C:\\VMs\\{parent_file_name}"));
        match self {
            Locators::Both => vec![abs, rel],
            Locators::RelativeOnly => vec![rel],
            Locators::AbsoluteOnly => vec![abs],
            Locators::None => vec![],
        }
    }
}

/// What a differencing file records about its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentLink {
    /// Must equal the parent footer's unique id.
    pub unique_id: Uuid,
    /// The parent file's modification time, seconds since the VHD epoch.
    pub time_stamp: u32,
    /// Parent unicode name (stored UTF-16 big-endian, at most 255 code units).
    pub unicode_name: String,
    pub locators: Vec<Locator>,
}

impl ParentLink {
    pub fn windows(unique_id: Uuid, time_stamp: u32, parent_file_name: &str, locators: Locators) -> ParentLink {
        ParentLink {
            unique_id,
            time_stamp,
            unicode_name: parent_file_name.to_string(),
            locators: locators.build(parent_file_name),
        }
    }
}

/// Contents of one block. `data` is the block's bytes (the last block of a disk whose
/// size is not a block multiple is shorter), `present` has one flag per 512-byte
/// sector: set = the sector's bit is set in the sector bitmap and its data is this
/// file's; clear = the bit is clear (differencing: the parent's bytes; dynamic: zeros,
/// and the data written there is zeros too, so readers that ignore the bitmap of
/// dynamic disks read the same). Fixed disks ignore `present`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub data: Vec<u8>,
    pub present: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct VhdSpec {
    pub disk_type: DiskType,
    /// Current size (= original size), a multiple of 512.
    pub virtual_size: u64,
    /// Dynamic/differencing only. Must be a power of two >= 4096 for `write_vhd`
    /// (other values are made with `corrupt::block_size`).
    pub block_size: u32,
    pub unique_id: Uuid,
    /// Footer time stamp, seconds since the VHD epoch.
    pub time_stamp: u32,
    pub creator_app: [u8; 4],
    pub saved_state: bool,
    pub parent: Option<ParentLink>,
    /// Block index -> contents; blocks not listed are unallocated (BAT 0xFFFFFFFF) or,
    /// in a fixed disk, zeros.
    pub blocks: BTreeMap<u64, Block>,
    /// Windows and Hyper-V write a locator's "platform data space" in bytes (a sector
    /// multiple); the spec says sectors. False (default) = bytes, as Windows.
    pub locator_space_in_sectors: bool,
    /// Where blocks go in the file: false (default) = even block indexes first, then
    /// odd; true = BAT order.
    pub blocks_in_bat_order: bool,
}

impl VhdSpec {
    pub fn new(disk_type: DiskType, virtual_size: u64, block_size: u32) -> VhdSpec {
        VhdSpec {
            disk_type,
            virtual_size,
            block_size,
            unique_id: random_uuid(),
            time_stamp: 750_000_000,
            creator_app: *b"win ",
            saved_state: false,
            parent: None,
            blocks: BTreeMap::new(),
            locator_space_in_sectors: false,
            blocks_in_bat_order: false,
        }
    }

    pub fn sectors_per_block(&self) -> u64 {
        self.block_size as u64 / SECTOR
    }

    /// Bytes of sector bitmap in front of each block's data: one bit per sector,
    /// padded to a sector.
    pub fn bitmap_len(&self) -> u64 {
        self.sectors_per_block().div_ceil(8).div_ceil(SECTOR) * SECTOR
    }

    /// Max table entries = ceil(size / block size).
    pub fn bat_entries(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size as u64)
    }

    pub fn block_len(&self, block: u64) -> u64 {
        let start = block * self.block_size as u64;
        (self.virtual_size - start).min(self.block_size as u64)
    }
}

/// Where `write_vhd` put things.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub file_len: u64,
    pub footer_offset: u64,
    /// Dynamic header (dynamic/differencing only).
    pub dyn_header_offset: Option<u64>,
    pub bat_offset: u64,
    pub bat_entries: u64,
    /// (offset, space in bytes, length in bytes) of each locator's data, in entry order.
    pub locator_data: Vec<(u64, u64, u64)>,
    /// Block index -> file offset of its sector bitmap.
    pub block_offsets: BTreeMap<u64, u64>,
    pub bitmap_len: u64,
}

pub fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

// ---------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------

/// One's complement of the byte sum, the checksum of footer and dynamic header.
pub fn checksum(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(0u32, |s, &b| s.wrapping_add(b as u32))
}

/// Sets the checksum at `at` over `bytes` (the field counts as zero).
pub fn seal(bytes: &mut [u8], at: usize) {
    bytes[at..at + 4].fill(0);
    let c = checksum(bytes);
    bytes[at..at + 4].copy_from_slice(&c.to_be_bytes());
}

/// Whether the checksum at `at` is right.
pub fn checksum_ok(bytes: &[u8], at: usize) -> bool {
    let mut b = bytes.to_vec();
    let stored = u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    b[at..at + 4].fill(0);
    checksum(&b) == stored
}

/// CHS geometry from the spec's algorithm (appendix "CHS calculation").
pub fn chs(virtual_size: u64) -> (u16, u8, u8) {
    let mut total = (virtual_size / SECTOR).min(65535 * 16 * 255);
    let (mut spt, mut heads, mut cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        spt = 17;
        cth = total / spt;
        heads = cth.div_ceil(1024);
        if heads < 4 {
            heads = 4;
        }
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
    }
    total = cth / heads;
    (total as u16, heads as u8, spt as u8)
}

pub fn footer_bytes(spec: &VhdSpec) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    let data_offset = match spec.disk_type {
        DiskType::Fixed => u64::MAX,
        _ => FOOTER_LEN,
    };
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    f[24..28].copy_from_slice(&spec.time_stamp.to_be_bytes());
    f[28..32].copy_from_slice(&spec.creator_app);
    f[32..36].copy_from_slice(&0x000A_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&spec.virtual_size.to_be_bytes());
    f[48..56].copy_from_slice(&spec.virtual_size.to_be_bytes());
    let (c, h, s) = chs(spec.virtual_size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&spec.disk_type.code().to_be_bytes());
    f[68..84].copy_from_slice(spec.unique_id.as_bytes());
    f[84] = spec.saved_state as u8;
    seal(&mut f, field::FOOTER_CHECKSUM);
    f
}

fn dyn_header_bytes(spec: &VhdSpec, layout: &Layout) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(b"cxsparse");
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&layout.bat_offset.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    h[28..32].copy_from_slice(&(layout.bat_entries as u32).to_be_bytes());
    h[32..36].copy_from_slice(&spec.block_size.to_be_bytes());
    if let Some(p) = &spec.parent {
        h[40..56].copy_from_slice(p.unique_id.as_bytes());
        h[56..60].copy_from_slice(&p.time_stamp.to_be_bytes());
        let name: Vec<u8> = p.unicode_name.encode_utf16().flat_map(|c| c.to_be_bytes()).collect();
        h[64..64 + name.len()].copy_from_slice(&name);
        for (i, (loc, &(off, space, len))) in p.locators.iter().zip(&layout.locator_data).enumerate() {
            let e = &mut h[field::DYN_LOCATORS + i * field::LOCATOR_LEN..][..field::LOCATOR_LEN];
            e[0..4].copy_from_slice(&loc.code);
            let space = if spec.locator_space_in_sectors {
                space / SECTOR
            } else {
                space
            };
            e[4..8].copy_from_slice(&(space as u32).to_be_bytes());
            e[8..12].copy_from_slice(&(len as u32).to_be_bytes());
            e[16..24].copy_from_slice(&off.to_be_bytes());
        }
    }
    seal(&mut h, field::DYN_CHECKSUM);
    h
}

/// MSB first: bit 7 of byte 0 is the block's first sector.
pub fn bitmap_bytes(present: &[bool], len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    for (s, _) in present.iter().enumerate().filter(|(_, &p)| p) {
        b[s / 8] |= 0x80 >> (s % 8);
    }
    b
}

fn validate(spec: &VhdSpec) -> io::Result<()> {
    if spec.virtual_size == 0 || spec.virtual_size % SECTOR != 0 {
        return Err(invalid(format!(
            "virtual size {} not a multiple of 512",
            spec.virtual_size
        )));
    }
    if spec.block_size == 0 || spec.block_size as u64 % SECTOR != 0 {
        return Err(invalid(format!(
            "block size {} is not a multiple of 512",
            spec.block_size
        )));
    }
    if spec.disk_type != DiskType::Fixed {
        let bs = spec.block_size as u64;
        if !bs.is_power_of_two() || bs < 4096 {
            return Err(invalid(format!("block size {bs} is not a power of two >= 4096")));
        }
        if spec.bat_entries() > u32::MAX as u64 {
            return Err(invalid("too many blocks".into()));
        }
    }
    if (spec.disk_type == DiskType::Differencing) != spec.parent.is_some() {
        return Err(invalid("a differencing disk needs a parent link, others none".into()));
    }
    if let Some(p) = &spec.parent {
        if p.unicode_name.encode_utf16().count() > 255 || p.locators.len() > 8 {
            return Err(invalid("parent name longer than 255 or more than 8 locators".into()));
        }
    }
    let bs = spec.block_size as u64;
    for (&b, blk) in &spec.blocks {
        if b * bs >= spec.virtual_size {
            return Err(invalid(format!("block {b} beyond the disk")));
        }
        let len = spec.block_len(b);
        if blk.data.len() as u64 != len || blk.present.len() as u64 != len / SECTOR {
            return Err(invalid(format!("block {b}: data/present lengths do not match {len}")));
        }
        if spec.disk_type == DiskType::Dynamic {
            for (s, &p) in blk.present.iter().enumerate() {
                let sector = &blk.data[s * SECTOR as usize..(s + 1) * SECTOR as usize];
                if !p && sector.iter().any(|&x| x != 0) {
                    return Err(invalid(format!(
                        "dynamic block {b}: data under a clear bit at sector {s}"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn plan(spec: &VhdSpec) -> Layout {
    let mut l = Layout {
        footer_offset: 0,
        ..Layout::default()
    };
    if spec.disk_type == DiskType::Fixed {
        l.footer_offset = spec.virtual_size;
        l.file_len = spec.virtual_size + FOOTER_LEN;
        return l;
    }
    l.dyn_header_offset = Some(FOOTER_LEN);
    l.bat_offset = FOOTER_LEN + DYN_HEADER_LEN;
    l.bat_entries = spec.bat_entries();
    l.bitmap_len = spec.bitmap_len();
    let mut at = l.bat_offset + (l.bat_entries * 4).div_ceil(SECTOR) * SECTOR;
    if let Some(p) = &spec.parent {
        for loc in &p.locators {
            let len = loc.data().len() as u64;
            let space = len.div_ceil(SECTOR).max(1) * SECTOR;
            l.locator_data.push((at, space, len));
            at += space;
        }
    }
    let mut order: Vec<u64> = spec.blocks.keys().copied().collect();
    if !spec.blocks_in_bat_order {
        order.sort_by_key(|b| (b % 2, *b));
    }
    for b in order {
        l.block_offsets.insert(b, at);
        at += l.bitmap_len + spec.block_size as u64;
    }
    l.footer_offset = at;
    l.file_len = at + FOOTER_LEN;
    l
}

/// Writes `spec` to `path` (sparse: zero runs are left as holes).
pub fn write_vhd(path: &Path, spec: &VhdSpec) -> io::Result<Layout> {
    validate(spec)?;
    let layout = plan(spec);
    let f = File::create(path)?;
    f.set_len(layout.file_len)?;
    let footer = footer_bytes(spec);
    f.write_all_at(&footer, layout.footer_offset)?;
    if spec.disk_type == DiskType::Fixed {
        let bs = spec.block_size as u64;
        for (&b, blk) in &spec.blocks {
            write_nonzero(&f, b * bs, &blk.data)?;
        }
    } else {
        f.write_all_at(&footer, 0)?;
        f.write_all_at(&dyn_header_bytes(spec, &layout), FOOTER_LEN)?;
        let mut bat = vec![0xFFu8; ((layout.bat_entries * 4).div_ceil(SECTOR) * SECTOR) as usize];
        for (&b, &off) in &layout.block_offsets {
            bat[b as usize * 4..][..4].copy_from_slice(&((off / SECTOR) as u32).to_be_bytes());
        }
        f.write_all_at(&bat, layout.bat_offset)?;
        if let Some(p) = &spec.parent {
            for (loc, &(off, _, _)) in p.locators.iter().zip(&layout.locator_data) {
                f.write_all_at(&loc.data(), off)?;
            }
        }
        for (b, &off) in &layout.block_offsets {
            let blk = &spec.blocks[b];
            f.write_all_at(&bitmap_bytes(&blk.present, layout.bitmap_len), off)?;
            write_nonzero(&f, off + layout.bitmap_len, &blk.data)?;
        }
    }
    f.sync_all()?;
    Ok(layout)
}

/// Writes the non-zero 4 KiB pieces of `data` at `at`.
fn write_nonzero(f: &File, at: u64, data: &[u8]) -> io::Result<()> {
    for (i, piece) in data.chunks(4096).enumerate() {
        if piece.iter().any(|&b| b != 0) {
            f.write_all_at(piece, at + i as u64 * 4096)?;
        }
    }
    Ok(())
}

/// Sets a file's modification time to a VHD time stamp (what a child records as its
/// parent's time stamp).
pub fn set_mtime(path: &Path, vhd_time: u32) -> io::Result<()> {
    let t = UNIX_EPOCH + Duration::from_secs(VHD_EPOCH_UNIX + vhd_time as u64);
    File::options().write(true).open(path)?.set_modified(t)
}

/// A file's modification time as a VHD time stamp.
pub fn mtime_vhd(path: &Path) -> io::Result<u32> {
    let m = std::fs::metadata(path)?.modified()?;
    let s = m.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Ok(s.saturating_sub(VHD_EPOCH_UNIX) as u32)
}

/// A version-4 UUID without the `uuid` crate's `v4` feature.
pub fn random_uuid() -> Uuid {
    super::vhdx_writer::random_uuid()
}

// ---------------------------------------------------------------------------
// Expected content
// ---------------------------------------------------------------------------

/// The raw disk seen through a file over `parent` (its parent's state): fixed = its
/// data; dynamic = allocated blocks' set sectors, zeros elsewhere; differencing = set
/// sectors of allocated blocks over the parent.
pub fn expected_model(parent: Option<&Model>, spec: &VhdSpec) -> Model {
    let mut m = match (spec.disk_type, parent) {
        (DiskType::Differencing, Some(p)) => {
            assert_eq!(p.size(), spec.virtual_size, "parent and child sizes differ");
            p.clone()
        }
        (DiskType::Differencing, None) => panic!("a differencing disk needs its parent's model"),
        _ => Model::new(spec.virtual_size, SECTOR as u32),
    };
    let bs = spec.block_size as u64;
    for (&b, blk) in &spec.blocks {
        let start = b * bs;
        if spec.disk_type == DiskType::Fixed {
            m.write(start, &blk.data);
            continue;
        }
        let mut s = 0usize;
        while s < blk.present.len() {
            if !blk.present[s] {
                s += 1;
                continue;
            }
            let e = s + blk.present[s..].iter().take_while(|&&p| p).count();
            m.write(
                start + s as u64 * SECTOR,
                &blk.data[s * SECTOR as usize..e * SECTOR as usize],
            );
            s = e;
        }
    }
    m
}

/// Recognisable sector contents: every sector starts with `tag@offset` and is filled
/// with bytes derived from both, so a mismatch report tells whose data a reader
/// returned.
pub fn fill(tag: &str, offset: u64, len: usize) -> Vec<u8> {
    assert_eq!(len as u64 % SECTOR, 0);
    let mut out = vec![0u8; len];
    let seed = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    for (i, sector) in out.chunks_mut(SECTOR as usize).enumerate() {
        let at = offset + i as u64 * SECTOR;
        let mut x = seed ^ at.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in sector.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let label = format!("{tag}@{at:#x};");
        let n = label.len().min(sector.len());
        sector[..n].copy_from_slice(&label.as_bytes()[..n]);
    }
    out
}

/// Named sets of sector runs (start, count) inside one block of `sectors` sectors (at
/// least 8), covering the bitmap patterns a reader can get wrong: single sectors,
/// alternating bits, a byte's most or least significant bit only, runs crossing byte
/// boundaries, a block's first and last sector. Runs are clipped to the block; a
/// pattern left empty (small blocks) is dropped.
pub fn bitmap_patterns(sectors: u64) -> Vec<(&'static str, Vec<(u64, u64)>)> {
    assert!(sectors >= 8);
    let alternating: Vec<(u64, u64)> = (0..sectors.min(64)).step_by(2).map(|s| (s, 1)).collect();
    let alternating_odd: Vec<(u64, u64)> = (1..sectors.min(64)).step_by(2).map(|s| (s, 1)).collect();
    let all: Vec<(&'static str, Vec<(u64, u64)>)> = vec![
        ("first sector only", vec![(0, 1)]),
        ("last sector only", vec![(sectors - 1, 1)]),
        ("first and last sector", vec![(0, 1), (sectors - 1, 1)]),
        ("single sector 5", vec![(5, 1)]),
        ("msb of byte 1 only", vec![(8, 1)]),
        ("lsb of byte 1 only", vec![(15, 1)]),
        ("alternating, even sectors", alternating),
        ("alternating, odd sectors", alternating_odd),
        ("run crossing a byte boundary 6..11", vec![(6, 5)]),
        ("run crossing several bytes 13..41", vec![(13, 28)]),
        ("whole bytes 8..16", vec![(8, 8)]),
        ("all but the first sector", vec![(1, sectors - 1)]),
        ("all but the last sector", vec![(0, sectors - 1)]),
        (
            "runs of 3 every 7",
            (0..sectors - 3).step_by(7).map(|s| (s, 3)).collect(),
        ),
    ];
    all.into_iter()
        .map(|(name, runs)| {
            let runs: Vec<(u64, u64)> = runs
                .into_iter()
                .filter(|&(s, _)| s < sectors)
                .map(|(s, n)| (s, n.min(sectors - s)))
                .collect();
            (name, runs)
        })
        .filter(|(_, runs)| !runs.is_empty())
        .collect()
}

/// True if every sector bitmap byte of the block is 0x00 or 0xFF (no run starts or
/// ends inside a byte): the layouts libvhdi reads right.
pub fn byte_aligned_bitmap(present: &[bool]) -> bool {
    present.chunks(8).all(|c| c.iter().all(|&p| p) || c.iter().all(|&p| !p))
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

/// Damage a written file at known places. Functions named `patch_*` keep checksums
/// right, so the damage is only what the test means.
pub mod corrupt {
    use super::*;

    fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        File::open(path).unwrap().read_exact_at(&mut b, at).unwrap();
        b
    }

    fn write_at(path: &Path, at: u64, bytes: &[u8]) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .write_all_at(bytes, at)
            .unwrap();
    }

    /// Both footer copies (end, and offset 0 for dynamic/differencing), checksum fixed.
    pub fn patch_footers(path: &Path, layout: &Layout, f: impl Fn(&mut [u8])) {
        let mut places = vec![layout.footer_offset];
        if layout.dyn_header_offset.is_some() {
            places.push(0);
        }
        for at in places {
            let mut b = read_at(path, at, FOOTER_LEN as usize);
            f(&mut b);
            seal(&mut b, field::FOOTER_CHECKSUM);
            write_at(path, at, &b);
        }
    }

    /// The dynamic header, checksum fixed.
    pub fn patch_dyn_header(path: &Path, layout: &Layout, f: impl FnOnce(&mut [u8])) {
        let at = layout.dyn_header_offset.expect("dynamic header");
        let mut b = read_at(path, at, DYN_HEADER_LEN as usize);
        f(&mut b);
        seal(&mut b, field::DYN_CHECKSUM);
        write_at(path, at, &b);
    }

    /// Wrong checksum in both footer copies.
    pub fn footer_checksum(path: &Path, layout: &Layout) {
        let mut places = vec![layout.footer_offset];
        if layout.dyn_header_offset.is_some() {
            places.push(0);
        }
        for at in places {
            let mut b = read_at(path, at, FOOTER_LEN as usize);
            b[field::FOOTER_CHECKSUM + 3] ^= 0x5A;
            write_at(path, at, &b);
        }
    }

    /// Wrong checksum in the dynamic header.
    pub fn dyn_header_checksum(path: &Path, layout: &Layout) {
        let at = layout.dyn_header_offset.expect("dynamic header");
        let mut b = read_at(path, at, DYN_HEADER_LEN as usize);
        b[field::DYN_CHECKSUM + 3] ^= 0x5A;
        write_at(path, at, &b);
    }

    /// BAT entry of `block` set to `sector` (e.g. past the end of the file).
    pub fn bat_entry(path: &Path, layout: &Layout, block: u64, sector: u32) {
        write_at(path, layout.bat_offset + block * 4, &sector.to_be_bytes());
    }

    /// Block size field (e.g. not a power of two), checksum fixed.
    pub fn block_size(path: &Path, layout: &Layout, value: u32) {
        patch_dyn_header(path, layout, |h| {
            h[field::DYN_BLOCK_SIZE..][..4].copy_from_slice(&value.to_be_bytes())
        });
    }

    /// Locator entry `index`'s data length (e.g. more than its data space), checksum
    /// fixed.
    pub fn locator_length(path: &Path, layout: &Layout, index: usize, len: u32) {
        patch_dyn_header(path, layout, |h| {
            h[field::DYN_LOCATORS + index * field::LOCATOR_LEN + 8..][..4].copy_from_slice(&len.to_be_bytes())
        });
    }

    /// The parent unique id a differencing file records, checksum fixed.
    pub fn parent_unique_id(path: &Path, layout: &Layout, id: Uuid) {
        patch_dyn_header(path, layout, |h| {
            h[field::DYN_PARENT_UNIQUE_ID..][..16].copy_from_slice(id.as_bytes())
        });
    }
}

/// Two differencing files that name each other as parent (by unique id, locators and
/// unicode name). Returns their paths; neither has any allocated block.
pub fn write_cycle(dir: &Path, a_name: &str, b_name: &str, virtual_size: u64, block_size: u32) -> (PathBuf, PathBuf) {
    let mut a = VhdSpec::new(DiskType::Differencing, virtual_size, block_size);
    let mut b = VhdSpec::new(DiskType::Differencing, virtual_size, block_size);
    a.parent = Some(ParentLink::windows(b.unique_id, b.time_stamp, b_name, Locators::Both));
    b.parent = Some(ParentLink::windows(a.unique_id, a.time_stamp, a_name, Locators::Both));
    let (pa, pb) = (dir.join(a_name), dir.join(b_name));
    write_vhd(&pa, &a).unwrap();
    write_vhd(&pb, &b).unwrap();
    set_mtime(&pa, a.time_stamp).unwrap();
    set_mtime(&pb, b.time_stamp).unwrap();
    (pa, pb)
}

// ---------------------------------------------------------------------------
// Checkpoint chains
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(pub usize);

/// Guest writes of one layer (sector aligned), turned into blocks when the layer is
/// written.
pub struct LayerEdits {
    virtual_size: u64,
    block_size: u32,
    full_blocks: bool,
    writes: Vec<(u64, Vec<u8>)>,
    tag: String,
}

impl LayerEdits {
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        assert!(
            offset % SECTOR == 0 && bytes.len() as u64 % SECTOR == 0,
            "unaligned write {offset:#x}+{:#x}",
            bytes.len()
        );
        assert!(
            offset + bytes.len() as u64 <= self.virtual_size,
            "write beyond the disk"
        );
        self.writes.push((offset, bytes.to_vec()));
    }

    /// Writes `fill(<file name>, ...)` data over `count` sectors from `sector`.
    pub fn write_sectors(&mut self, sector: u64, count: u64) {
        let data = fill(&self.tag, sector * SECTOR, (count * SECTOR) as usize);
        self.write(sector * SECTOR, &data);
    }

    /// Writes sector runs (start, count) relative to block `block`'s first sector.
    pub fn write_runs(&mut self, block: u64, runs: &[(u64, u64)]) {
        let first = block * self.block_size as u64 / SECTOR;
        for &(s, n) in runs {
            self.write_sectors(first + s, n);
        }
    }

    /// Copy-up: touched blocks get every bit set, the parent's data filled in (what
    /// Virtual PC does); default: only written sectors get their bit.
    pub fn full_blocks(&mut self, yes: bool) {
        self.full_blocks = yes;
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn sectors_per_block(&self) -> u64 {
        self.block_size as u64 / SECTOR
    }

    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
}

struct Layer {
    file_name: String,
    path: PathBuf,
    parent: Option<usize>,
    spec: VhdSpec,
    layout: Layout,
    model: Model,
}

/// Builds checkpoint trees of VHD files by describing each state's guest writes
/// relative to its parent state. Every file is written when it is added; its
/// modification time is set to its footer time stamp, which is what its children
/// record as parent time stamp. Layer n's time stamp is `base_time + n` hours.
pub struct ChainBuilder {
    dir: PathBuf,
    virtual_size: u64,
    pub base_time: u32,
    layers: Vec<Layer>,
}

impl ChainBuilder {
    pub fn new(dir: &Path, virtual_size: u64) -> Self {
        ChainBuilder {
            dir: dir.to_path_buf(),
            virtual_size,
            // 2023-10-08 in the VHD epoch.
            base_time: 750_000_000,
            layers: Vec::new(),
        }
    }

    /// A fixed or dynamic base. `block_size` is also the edit granularity of a fixed
    /// disk (any power of two there).
    pub fn base(
        &mut self,
        file_name: &str,
        disk_type: DiskType,
        block_size: u32,
        edit: impl FnOnce(&mut LayerEdits),
    ) -> LayerId {
        assert!(disk_type != DiskType::Differencing);
        self.add(None, file_name, disk_type, block_size, edit, |_| {})
    }

    /// A differencing child with both locators (W2ku, W2ru) and the unicode name.
    pub fn child(
        &mut self,
        parent: LayerId,
        file_name: &str,
        block_size: u32,
        edit: impl FnOnce(&mut LayerEdits),
    ) -> LayerId {
        self.add(
            Some(parent),
            file_name,
            DiskType::Differencing,
            block_size,
            edit,
            |_| {},
        )
    }

    /// A child with a choice of locators.
    pub fn child_locators(
        &mut self,
        parent: LayerId,
        file_name: &str,
        block_size: u32,
        locators: Locators,
        edit: impl FnOnce(&mut LayerEdits),
    ) -> LayerId {
        let pname = self.layers[parent.0].file_name.clone();
        self.child_with(parent, file_name, block_size, edit, |s| {
            s.parent.as_mut().unwrap().locators = locators.build(&pname)
        })
    }

    /// Like `child`, but the spec can be changed before writing (parent link, blocks,
    /// ...). The model is computed from the spec after the change.
    pub fn child_with(
        &mut self,
        parent: LayerId,
        file_name: &str,
        block_size: u32,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut VhdSpec),
    ) -> LayerId {
        self.add(Some(parent), file_name, DiskType::Differencing, block_size, edit, tweak)
    }

    pub fn path(&self, id: &LayerId) -> PathBuf {
        self.layers[id.0].path.clone()
    }

    /// The raw disk of that state (the file over its ancestors).
    pub fn expected(&self, id: &LayerId) -> &Model {
        &self.layers[id.0].model
    }

    pub fn spec(&self, id: &LayerId) -> &VhdSpec {
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn add(
        &mut self,
        parent: Option<LayerId>,
        file_name: &str,
        disk_type: DiskType,
        block_size: u32,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut VhdSpec),
    ) -> LayerId {
        let mut edits = LayerEdits {
            virtual_size: self.virtual_size,
            block_size,
            full_blocks: false,
            writes: Vec::new(),
            tag: file_name.to_string(),
        };
        edit(&mut edits);
        let parent_layer = parent.map(|p| &self.layers[p.0]);
        let mut spec = VhdSpec::new(disk_type, self.virtual_size, block_size);
        spec.time_stamp = self.base_time + 3600 * self.layers.len() as u32;
        spec.blocks = resolve_edits(&spec, &edits, parent_layer.map(|l| &l.model));
        if let Some(pl) = parent_layer {
            spec.parent = Some(ParentLink::windows(
                pl.spec.unique_id,
                pl.spec.time_stamp,
                &pl.file_name,
                Locators::Both,
            ));
        }
        tweak(&mut spec);
        let path = self.dir.join(file_name);
        let layout = write_vhd(&path, &spec).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        set_mtime(&path, spec.time_stamp).unwrap();
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

/// Turns guest writes into blocks: a touched block starts with no sector present
/// (zeros in its data), or with `full_blocks` as a copy of the parent's data with
/// every sector present; written sectors become present.
fn resolve_edits(spec: &VhdSpec, edits: &LayerEdits, parent: Option<&Model>) -> BTreeMap<u64, Block> {
    let bs = spec.block_size as u64;
    let mut blocks: BTreeMap<u64, Block> = BTreeMap::new();
    for (off, bytes) in &edits.writes {
        let end = off + bytes.len() as u64;
        let mut pos = *off;
        while pos < end {
            let b = pos / bs;
            let bstart = b * bs;
            let len = spec.block_len(b);
            let n = (bstart + len).min(end) - pos;
            let blk = blocks.entry(b).or_insert_with(|| match parent {
                Some(p) if edits.full_blocks => Block {
                    data: p.read(bstart, len as usize),
                    present: vec![true; (len / SECTOR) as usize],
                },
                _ => Block {
                    data: vec![0; len as usize],
                    present: vec![edits.full_blocks; (len / SECTOR) as usize],
                },
            });
            let rel = (pos - bstart) as usize;
            let src = (pos - off) as usize;
            blk.data[rel..rel + n as usize].copy_from_slice(&bytes[src..src + n as usize]);
            for s in rel as u64 / SECTOR..(rel as u64 + n) / SECTOR {
                blk.present[s as usize] = true;
            }
            pos += n;
        }
    }
    blocks
}
