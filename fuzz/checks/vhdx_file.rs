//! Real VHDX/AVHDX files, written to a temporary directory from the input, opened with
//! `VhdxFile::open` and read through `Layer::map`, `block_counts` and a `LayeredDisk`.
//!
//! Input: a top-level flags byte (bit 0: damage random bytes of the structures, which
//! turns the exact model off and leaves "never panic, never short-read"), the logical
//! sector size, the cache budget, then 1 to 3 layers, newest first. Each layer has
//! flags (leave blocks allocated, a parent for the base, a BAT region too short, damaged
//! header and region table copies, a truncated data area), block size, virtual size and
//! BAT operations: a payload entry of any state and file offset (a new block, 0, past the
//! end, an earlier block, any), a raw entry, a sector bitmap entry, or a partially
//! present block with its sector bitmap.
//!
//! Exact outcomes: `open` fails exactly when both header copies, both region table
//! copies are damaged or the BAT region is too short, and otherwise reports the metadata
//! written. Against a per-sector model of MS-VHDX 2.5 (payload states, sector bitmaps
//! read from the file, blocks at offset 0, past the end of the file, partially present
//! without a parent or without a present bitmap are damage): `map` covers exactly the
//! range asked with the model's sources or fails exactly when a sector of the range is
//! damaged; `block_counts` counts exactly the entries written; a `LayeredDisk` read
//! returns exactly the bytes of the owning files, `OutOfRange` past the end, or a typed
//! error exactly when a unit it resolves holds damage.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ckptfs::chain::layered_disk::UNIT;
use ckptfs::chain::LayeredDisk;
use ckptfs::format::vhdx::{region as r, DiskKind, LogState, PayloadState, VhdxError, VhdxFile};
use ckptfs::format::{Layer, Run, Source};
use ckptfs::io::ReadAt;
use ckptfs::Error;
use uuid::Uuid;

use super::metadata::{region as metadata_region, standard_items};
use super::{fix_crc, guid_bytes, pattern, put16, put64, utf16, Input, MIB};

/// Known deviation, reported to the lead: the reader checks "inside the header section"
/// on the start of each range it maps instead of on the block, so a payload block whose
/// FileOffsetMB is 0 fails only for its first MiB, and the rest of a block larger than
/// 1 MiB reads the file's own region tables, metadata and BAT as guest data. While this
/// is `true` the model follows the reader; set it to `false` once the reader refuses
/// such a block whole.
pub const BLOCK_AT_ZERO_CHECKED_PER_RANGE: bool = false;

const METADATA_AT: u64 = MIB;
const BAT_AT: u64 = 2 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Parent,
    Zero,
    Data(u64),
}

/// One file to write, and what the model needs to know of it.
struct Spec {
    path: PathBuf,
    lss: u64,
    block_size: u64,
    virtual_size: u64,
    has_parent: bool,
    leave_allocated: bool,
    ratio: u64,
    payload_blocks: u64,
    entries: u64,
    bat: BTreeMap<u64, u64>,
    writes: Vec<(u64, Vec<u8>)>,
    file_len: u64,
    bat_short: bool,
    header_bad: [bool; 2],
    header_seq: [u64; 2],
    region_bad: [bool; 2],
    /// Blocks given a file offset so far (for reuse).
    allocated: Vec<u64>,
    cursor: u64,
    /// Bytes of the file, for the model (kept sparse: only what was written).
    file: Option<File>,
}

impl Spec {
    fn new(inp: &mut Input, index: usize, lss: u64, base: bool, dir: &Path) -> Spec {
        let flags = inp.u8();
        let block_size = MIB << (inp.u8() % 9);
        let max_blocks = 1u64 << (inp.u8() % 17);
        let virtual_size = lss * (1 + inp.u64() % (block_size * max_blocks / lss));
        let has_parent = !base || flags & 0x80 != 0;
        let ratio = (1u64 << 23) * lss / block_size;
        let payload_blocks = virtual_size.div_ceil(block_size);
        let bitmap_blocks = payload_blocks.div_ceil(ratio);
        let entries = if has_parent {
            bitmap_blocks * (ratio + 1)
        } else {
            payload_blocks + (payload_blocks - 1) / ratio
        };
        let bat_len = (entries * 8).next_multiple_of(MIB);
        let mut s = Spec {
            path: dir.join(format!("layer{index}.avhdx")),
            lss,
            block_size,
            virtual_size,
            has_parent,
            leave_allocated: flags & 1 != 0,
            ratio,
            payload_blocks,
            entries,
            bat: BTreeMap::new(),
            writes: Vec::new(),
            file_len: 0,
            bat_short: flags & 2 != 0,
            header_bad: [flags & 4 != 0, flags & 8 != 0],
            header_seq: [u64::from(inp.u8() % 4), u64::from(inp.u8() % 4)],
            region_bad: [flags & 0x10 != 0, flags & 0x20 != 0],
            allocated: Vec::new(),
            cursor: BAT_AT + bat_len,
            file: None,
        };
        let ops = inp.u8() % 16;
        for _ in 0..ops {
            if inp.is_empty() {
                break;
            }
            s.op(inp);
        }
        s.file_len = s.cursor;
        if flags & 0x40 != 0 {
            let data_at = BAT_AT + bat_len;
            s.file_len = data_at + inp.u64() % (s.cursor - data_at + 1);
        }
        s
    }

    fn payload_index(&self, block: u64) -> u64 {
        block + block / self.ratio
    }

    fn bitmap_index(&self, chunk: u64) -> u64 {
        chunk * (self.ratio + 1) + self.ratio
    }

    /// A new block of `len` bytes at the end of the file, with recognisable bytes at its
    /// ends and around each MiB of its first 4 MiB.
    fn alloc(&mut self, len: u64, seed: u64) -> u64 {
        let at = self.cursor;
        self.cursor += len;
        self.allocated.push(at);
        let mut put = |off: u64, n: u64| {
            let bytes: Vec<u8> = (off..off + n).map(|x| pattern(seed, x)).collect();
            self.writes.push((off, bytes));
        };
        put(at, 8192.min(len));
        put(at + len - 8192, 8192);
        for m in 1..4u64.min(len / MIB) {
            put(at + m * MIB - 4096, 8192);
        }
        at
    }

    fn offset(&mut self, inp: &mut Input, len: u64, seed: u64) -> u64 {
        match inp.u8() % 6 {
            0 | 1 => self.alloc(len, seed),
            2 => 0,
            3 => self.cursor + MIB * u64::from(inp.u8() % 4),
            4 if !self.allocated.is_empty() => {
                let i = usize::from(inp.u8()) % self.allocated.len();
                self.allocated[i]
            }
            _ => u64::from(inp.u32()) * MIB,
        }
    }

    fn op(&mut self, inp: &mut Input) {
        let kind = inp.u8();
        let seed = (u64::from(kind) << 8) | (self.cursor / MIB);
        match kind % 5 {
            0 | 1 => {
                let block = u64::from(inp.u32()) % self.payload_blocks;
                let state = u64::from(inp.u8() & 7);
                let off = if state >= 6 {
                    self.offset(inp, self.block_size, seed)
                } else {
                    u64::from(inp.u8() & 3) * MIB
                };
                self.bat
                    .insert(self.payload_index(block), off | state | u64::from(kind & 0x80) << 8);
            }
            2 => {
                let index = inp.u64() % self.entries;
                self.bat.insert(index, inp.u64());
            }
            3 => {
                let chunk = u64::from(inp.u32()) % self.payload_blocks.div_ceil(self.ratio);
                let state = if inp.bool() { 6 } else { u64::from(inp.u8() & 7) };
                let off = self.offset(inp, MIB, seed);
                let index = self.bitmap_index(chunk);
                // Without a parent the table may end before a chunk's bitmap entry.
                if index < self.entries {
                    self.bat.insert(index, off | state);
                }
            }
            _ => self.partial(inp, seed),
        }
        super::trace(|| format!("op {kind}: bat {:x?}", self.bat));
    }

    /// A partially present block, its chunk's sector bitmap (made present if it is not),
    /// and the bits for the block's sectors.
    fn partial(&mut self, inp: &mut Input, seed: u64) {
        let block = u64::from(inp.u32()) % self.payload_blocks;
        let style = inp.u8();
        let data = self.alloc(self.block_size, seed);
        self.bat.insert(self.payload_index(block), data | 7);
        let bi = self.bitmap_index(block / self.ratio);
        if bi >= self.entries {
            return;
        }
        let sb = match self.bat.get(&bi) {
            Some(&e) if e & 7 == 6 && self.allocated.contains(&((e >> 20) << 20)) => (e >> 20) << 20,
            _ => {
                let sb = self.alloc(MIB, 0);
                // A bitmap block starts all absent: drop the pattern alloc wrote.
                self.writes.retain(|(o, _)| *o < sb || *o >= sb + MIB);
                self.writes.push((sb, vec![0u8; MIB as usize]));
                self.bat.insert(bi, sb | 6);
                sb
            }
        };
        let spb = self.block_size / self.lss;
        let first = (block % self.ratio) * spb;
        let bytes = (spb / 8).min(1 << 16) as usize;
        let bits: Vec<u8> = (0..bytes)
            .map(|i| match style % 4 {
                0 => 0xFF,
                1 => (i / (usize::from(style >> 2) + 1) % 2 * 0xFF) as u8,
                2 => pattern(u64::from(style), i as u64),
                _ => inp.u8(),
            })
            .collect();
        self.writes.push((sb + first / 8, bits));
    }

    fn write(&self, linkage: Uuid, own: Uuid) -> std::io::Result<()> {
        let f = File::create(&self.path)?;
        f.set_len(self.file_len)?;
        let put = |at: u64, b: &[u8]| -> std::io::Result<()> {
            if at >= self.file_len {
                return Ok(());
            }
            let n = (self.file_len - at).min(b.len() as u64) as usize;
            f.write_all_at(&b[..n], at)
        };
        // File type identifier.
        let mut ident = b"vhdxfile".to_vec();
        ident.extend_from_slice(&utf16("ckptfs fuzz"));
        put(0, &ident)?;
        for (i, at) in [64 * 1024u64, 128 * 1024].into_iter().enumerate() {
            let mut h = vec![0u8; 4096];
            h[..4].copy_from_slice(b"head");
            put64(&mut h, 8, self.header_seq[i]);
            h[16..32].copy_from_slice(&guid_bytes(&Uuid::from_u128(0xF11E)));
            h[32..48].copy_from_slice(&guid_bytes(&own));
            put16(&mut h, 66, 1);
            fix_crc(&mut h, 4);
            if self.header_bad[i] {
                h[100] ^= 1;
            }
            put(at, &h)?;
        }
        let bat_len = (self.entries * 8).next_multiple_of(MIB) - if self.bat_short { MIB } else { 0 };
        for (i, at) in r::REGION_TABLE_OFFSETS.into_iter().enumerate() {
            let mut t = super::region::table(&[
                (r::BAT_REGION, BAT_AT, bat_len as u32, 1),
                (r::METADATA_REGION, METADATA_AT, MIB as u32, 1),
            ]);
            if self.region_bad[i] {
                t[40] ^= 1;
            }
            put(at, &t)?;
        }
        let flags = u32::from(self.leave_allocated) | u32::from(self.has_parent) << 1;
        let mut items = standard_items(self.block_size as u32, flags, self.virtual_size, self.lss as u32, 4096);
        if self.has_parent {
            items.pop();
            items.push((
                ckptfs::format::vhdx::metadata::PARENT_LOCATOR,
                4,
                super::metadata::locator(&linkage),
            ));
        }
        put(METADATA_AT, &metadata_region(&items))?;
        for (&i, &e) in &self.bat {
            put(BAT_AT + i * 8, &e.to_le_bytes())?;
        }
        for (at, b) in &self.writes {
            put(*at, b)?;
        }
        Ok(())
    }

    fn expect_open(&self) -> bool {
        let both = |b: [bool; 2]| b[0] && b[1];
        !both(self.header_bad) && !both(self.region_bad) && !self.bat_short
    }

    fn entry(&self, index: u64) -> u64 {
        self.bat.get(&index).copied().unwrap_or(0)
    }

    fn file_byte(&self, at: u64) -> u8 {
        let mut b = [0u8; 1];
        if at < self.file_len {
            self.file.as_ref().unwrap().read_exact_at(&mut b, at).unwrap();
        }
        b[0]
    }

    /// The source of the sector at `pos` (`pos < virtual_size`), `Err` if the BAT is
    /// damaged there.
    fn source(&self, pos: u64) -> Result<Src, ()> {
        let block = pos / self.block_size;
        let in_block = pos % self.block_size;
        let e = self.entry(self.payload_index(block));
        let block_at = (e >> 20) << 20;
        // FileOffsetMB can be up to 2^44 - 1: a block that far is past any file's end.
        let Some(data_at) = block_at.checked_add(in_block) else {
            return if e & 7 == 6 || e & 7 == 7 {
                Err(())
            } else {
                self.plain(e)
            };
        };
        let header_ok = if BLOCK_AT_ZERO_CHECKED_PER_RANGE {
            data_at >= MIB
        } else {
            block_at != 0
        };
        let in_file = header_ok && data_at.checked_add(self.lss).is_some_and(|end| end <= self.file_len);
        match e & 7 {
            0 if self.has_parent => Ok(Src::Parent),
            0 | 1 | 2 | 3 | 5 => Ok(Src::Zero),
            4 => Err(()),
            6 if in_file => Ok(Src::Data(data_at)),
            7 if in_file && self.has_parent => {
                let sb = self.entry(self.bitmap_index(block / self.ratio));
                let sb_at = (sb >> 20) << 20;
                if sb & 7 != 6 || sb_at < MIB || sb_at.checked_add(MIB).is_none_or(|end| end > self.file_len) {
                    return Err(());
                }
                let bit = (block % self.ratio) * (self.block_size / self.lss) + in_block / self.lss;
                if self.file_byte(sb_at + bit / 8) >> (bit % 8) & 1 == 1 {
                    Ok(Src::Data(data_at))
                } else {
                    Ok(Src::Parent)
                }
            }
            _ => Err(()),
        }
    }

    /// The source for the states that do not point into the file.
    fn plain(&self, e: u64) -> Result<Src, ()> {
        match e & 7 {
            0 if self.has_parent => Ok(Src::Parent),
            0 | 1 | 2 | 3 | 5 => Ok(Src::Zero),
            _ => Err(()),
        }
    }

    fn read_file(&self, at: u64, buf: &mut [u8]) {
        buf.fill(0);
        let n = self.file_len.saturating_sub(at).min(buf.len() as u64) as usize;
        if n > 0 {
            self.file.as_ref().unwrap().read_exact_at(&mut buf[..n], at).unwrap();
        }
    }
}

struct Chain {
    specs: Vec<Spec>,
    size: u64,
}

impl Chain {
    /// Owner of the sector at `pos`: `Ok(None)` zeros, `Ok(Some((layer, offset)))`.
    fn owner(&self, pos: u64) -> Option<(usize, u64)> {
        for (i, s) in self.specs.iter().enumerate() {
            if pos >= s.virtual_size {
                return None;
            }
            match s.source(pos).expect("owner() of a damaged sector") {
                Src::Parent => continue,
                Src::Zero => return None,
                Src::Data(at) => return Some((i, at)),
            }
        }
        None
    }

    fn unit_fails(&self, unit: u64) -> bool {
        let lss = self.specs[0].lss;
        let start = unit * UNIT;
        let end = (start + UNIT).min(self.size);
        (start..end).step_by(lss as usize).any(|pos| {
            for s in &self.specs {
                if pos >= s.virtual_size {
                    return false;
                }
                match s.source(pos) {
                    Err(()) => return true,
                    Ok(Src::Parent) => continue,
                    Ok(_) => return false,
                }
            }
            false
        })
    }

    fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        if len == 0 {
            return Some(Vec::new());
        }
        let end = offset + len as u64;
        if (offset / UNIT..=(end - 1) / UNIT).any(|u| self.unit_fails(u)) {
            return None;
        }
        let lss = self.specs[0].lss;
        let mut out = vec![0u8; len];
        let mut pos = offset;
        while pos < end {
            let n = ((pos / lss + 1) * lss).min(end) - pos;
            let dst = &mut out[(pos - offset) as usize..][..n as usize];
            if let Some((i, at)) = self.owner(pos - pos % lss) {
                self.specs[i].read_file(at + pos % lss, dst);
            }
            pos += n;
        }
        Some(out)
    }
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let top = inp.u8();
    let lss: u64 = if inp.bool() { 4096 } else { 512 };
    let budget = 1 + usize::from(inp.u8()) * 16;
    let depth = 1 + usize::from(inp.u8() % 3);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut specs: Vec<Spec> = (0..depth)
        .map(|i| Spec::new(&mut inp, i, lss, i + 1 == depth, dir.path()))
        .collect();
    let guids: Vec<Uuid> = (0..=depth).map(|i| Uuid::from_u128(0xD00D_0000 + i as u128)).collect();
    for (i, s) in specs.iter().enumerate() {
        super::trace(|| {
            format!(
                "layer {i}: block {:#x}, size {:#x}, parent {}, entries {}, file {:#x}, open {}, bat {:x?}",
                s.block_size,
                s.virtual_size,
                s.has_parent,
                s.entries,
                s.file_len,
                s.expect_open(),
                s.bat
            )
        });
        s.write(guids[i + 1], guids[i]).expect("writing the test file");
    }
    if top & 1 != 0 {
        damaged(&mut inp, &specs, budget);
        return;
    }

    let mut layers: Vec<Arc<dyn Layer>> = Vec::new();
    for s in specs.iter_mut() {
        let got = VhdxFile::open(&s.path);
        super::note(&format!("open: {}", if got.is_ok() { "ok" } else { "error" }));
        match (&got, s.expect_open()) {
            (Ok(_), true) => {}
            (Err(Error::Vhdx { source, path }), false) => {
                assert_eq!(path, &s.path);
                assert!(matches!(source, VhdxError::Corrupt { .. }), "{source}");
                return;
            }
            (got, want) => panic!(
                "open: got {got:?}, expected it to {}",
                if want { "succeed" } else { "fail" }
            ),
        }
        let f = got.unwrap();
        check_file(&f, s);
        s.file = Some(File::open(&s.path).unwrap());
        check_map(&f, s, &mut inp);
        layers.push(Arc::new(f));
    }

    let size = specs[0].virtual_size;
    let disk = LayeredDisk::new(layers, budget);
    assert_eq!(disk.size(), size);
    let chain = Chain { specs, size };
    for _ in 0..12 {
        let sel = inp.u8();
        let s = &chain.specs[usize::from(sel >> 4) % depth];
        let offset = match sel % 4 {
            0 => inp.u64() % (size + 1),
            1 => (u64::from(inp.u32()) % (s.payload_blocks + 1) * s.block_size)
                .saturating_add_signed(i64::from(inp.u16() as i16)),
            2 => (u64::from(inp.u32()) % (size / UNIT + 1) * UNIT).saturating_add_signed(i64::from(inp.u16() as i16)),
            _ => size.saturating_sub(u64::from(inp.u16())),
        };
        let len = match sel >> 2 & 3 {
            0 => usize::from(inp.u8()),
            1 => usize::from(inp.u16()),
            2 => (usize::from(inp.u8() % 32) + 1) * lss as usize,
            _ => usize::from(inp.u16()) * 2,
        };
        let mut buf = vec![0xA5u8; len];
        let got = disk.read_at(offset, &mut buf);
        super::trace(|| {
            format!(
                "read {len:#x} at {offset:#x}: {:?}",
                got.as_ref().map_err(|e| e.to_string())
            )
        });
        super::note(&format!(
            "depth {depth} read: {}",
            match &got {
                Ok(()) => "ok",
                Err(Error::OutOfRange { .. }) => "out of range",
                Err(_) => "damage",
            }
        ));
        if offset.checked_add(len as u64).is_none_or(|e| e > size) {
            assert!(
                matches!(got, Err(Error::OutOfRange { offset: o, len: n, size: s }) if (o, n, s) == (offset, len as u64, size)),
                "{got:?}"
            );
        } else {
            match (got, chain.read(offset, len)) {
                (Ok(()), Some(want)) => {
                    if buf != want {
                        let i = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                        let at = offset + i as u64;
                        panic!(
                            "read of {len} at {offset:#x}: byte {at:#x} is {:#04x}, expected {:#04x} (owner {:?})",
                            buf[i],
                            want[i],
                            chain.owner(at - at % lss)
                        );
                    }
                }
                (
                    Err(Error::Vhdx {
                        source: VhdxError::Corrupt { .. },
                        ..
                    }),
                    None,
                ) => {}
                (got, want) => panic!(
                    "read of {len} at {offset:#x}: got {got:?}, the model expected {}",
                    if want.is_some() { "data" } else { "damage" }
                ),
            }
        }
        if inp.is_empty() {
            break;
        }
    }
}

/// What `open` reports, and the whole BAT through `block_counts` and `bat_entry`.
fn check_file(f: &VhdxFile, s: &Spec) {
    let m = &f.metadata;
    assert_eq!(
        (
            u64::from(m.block_size),
            u64::from(m.logical_sector_size),
            m.virtual_size
        ),
        (s.block_size, s.lss, s.virtual_size)
    );
    assert_eq!(
        (m.has_parent, m.leave_blocks_allocated),
        (s.has_parent, s.leave_allocated)
    );
    assert_eq!(m.parent_locator.is_some(), s.has_parent);
    let kind = if s.has_parent {
        DiskKind::Differencing
    } else if s.leave_allocated {
        DiskKind::Fixed
    } else {
        DiskKind::Dynamic
    };
    assert_eq!(f.kind(), kind);
    assert_eq!(f.creator, "ckptfs fuzz");
    assert_eq!(f.log_state, LogState::Clean);
    let copy = match s.header_bad {
        [false, false] if s.header_seq[1] > s.header_seq[0] => 2,
        [false, _] => 1,
        _ => 2,
    };
    assert_eq!(f.header_copy, copy);
    assert_eq!(f.regions.bat.file_offset, BAT_AT);
    assert_eq!(f.geometry.entries, s.entries);
    assert_eq!(f.geometry.chunk_ratio, s.ratio);
    assert_eq!(f.file_len(), s.file_len);

    let counts = f.block_counts().expect("block_counts of a file that opened");
    let mut payload: BTreeMap<PayloadState, u64> = BTreeMap::new();
    let (mut invalid, mut bitmaps) = (0, 0);
    let states = [
        Some(PayloadState::NotPresent),
        Some(PayloadState::Undefined),
        Some(PayloadState::Zero),
        Some(PayloadState::Unmapped),
        None,
        Some(PayloadState::Unmapped),
        Some(PayloadState::FullyPresent),
        Some(PayloadState::PartiallyPresent),
    ];
    // Untouched entries are zero (not present); count the written ones, then the rest.
    let mut untouched_payload = s.payload_blocks;
    for (&i, &e) in &s.bat {
        if i % (s.ratio + 1) == s.ratio {
            bitmaps += u64::from(e & 7 == 6);
        } else if i - i / (s.ratio + 1) < s.payload_blocks {
            untouched_payload -= 1;
            match states[(e & 7) as usize] {
                Some(st) => *payload.entry(st).or_default() += 1,
                None => invalid += 1,
            }
        }
    }
    if untouched_payload > 0 {
        *payload.entry(PayloadState::NotPresent).or_default() += untouched_payload;
    }
    assert_eq!(counts.payload, payload, "block_counts payload states");
    assert_eq!((counts.payload_invalid, counts.bitmap_present), (invalid, bitmaps));

    let mut probe: BTreeSet<u64> = s.bat.keys().copied().collect();
    probe.extend([0, s.entries - 1]);
    for i in probe {
        assert_eq!(f.bat_entry(i).unwrap().0, s.entry(i), "BAT entry {i}");
    }
    assert!(f.bat_entry(s.entries).is_err());
}

/// `Layer::map` on ranges from the input, against the per-sector model.
fn check_map(f: &VhdxFile, s: &Spec, inp: &mut Input) {
    for _ in 0..4 {
        let sel = inp.u8();
        let (offset, len) = match sel % 4 {
            0 => (inp.u64() % s.virtual_size / s.lss * s.lss, u64::from(inp.u8()) * s.lss),
            1 => {
                let b = u64::from(inp.u32()) % s.payload_blocks;
                let at = (b * s.block_size).saturating_sub(u64::from(inp.u8()) * s.lss);
                (at, (u64::from(inp.u16() % 4096) + 1) * s.lss)
            }
            2 => (u64::from(inp.u32()), u64::from(inp.u16())),
            _ => (
                s.virtual_size.saturating_sub(s.lss * u64::from(inp.u8() % 4)),
                u64::from(inp.u8() % 8) * s.lss,
            ),
        };
        let mut runs: Vec<Run> = Vec::new();
        let got = f.map(offset, len, &mut runs);
        super::note(&format!(
            "map: {}",
            match &got {
                Ok(()) if runs.iter().any(|r| matches!(r.source, Source::Data { .. })) => "ok with data",
                Ok(()) => "ok",
                Err(Error::OutOfRange { .. }) => "out of range",
                Err(_) => "damage",
            }
        ));
        let valid =
            offset % s.lss == 0 && len % s.lss == 0 && offset.checked_add(len).is_some_and(|e| e <= s.virtual_size);
        if !valid {
            assert!(
                matches!(got, Err(Error::OutOfRange { offset: o, len: n, .. }) if (o, n) == (offset, len)),
                "map({offset:#x}, {len:#x}): {got:?}"
            );
            continue;
        }
        let expected: Result<Vec<Src>, ()> = (offset..offset + len)
            .step_by(s.lss as usize)
            .map(|p| s.source(p))
            .collect();
        match (got, expected) {
            (Ok(()), Ok(want)) => {
                assert_eq!(
                    runs.iter().map(|r| r.len).sum::<u64>(),
                    len,
                    "runs do not cover the range"
                );
                let mut sectors = Vec::new();
                for r in &runs {
                    assert_eq!(r.len % s.lss, 0, "a run of part of a sector");
                    for k in 0..r.len / s.lss {
                        sectors.push(match r.source {
                            Source::Parent => Src::Parent,
                            Source::Zero => Src::Zero,
                            Source::Data { file_offset } => Src::Data(file_offset + k * s.lss),
                        });
                    }
                }
                if sectors != want {
                    let i = sectors.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                    panic!(
                        "map({offset:#x}, {len:#x}): sector at {:#x} is {:?}, expected {:?}",
                        offset + i as u64 * s.lss,
                        sectors[i],
                        want[i]
                    );
                }
            }
            (
                Err(Error::Vhdx {
                    source: VhdxError::Corrupt { .. },
                    ..
                }),
                Err(()),
            ) => {}
            (got, want) => panic!("map({offset:#x}, {len:#x}): got {got:?} (runs {runs:?}), expected {want:?}"),
        }
    }
}

/// Random damage to the written structures: no model, but opening and reading must
/// not panic, and reads must fill the buffer or fail.
fn damaged(inp: &mut Input, specs: &[Spec], budget: usize) {
    for s in specs {
        let f = std::fs::OpenOptions::new().write(true).open(&s.path).unwrap();
        for _ in 0..1 + inp.u8() % 16 {
            let at = match inp.u8() % 4 {
                0 => u64::from(inp.u32()) % (BAT_AT + MIB),
                1 => 64 * 1024 + u64::from(inp.u16()) % 8192,
                2 => METADATA_AT + u64::from(inp.u16()) % 1024,
                _ => BAT_AT + u64::from(inp.u16()) % 4096,
            };
            if at < s.file_len {
                f.write_all_at(&[inp.u8()], at).unwrap();
            }
        }
    }
    let mut layers: Vec<Arc<dyn Layer>> = Vec::new();
    for s in specs {
        let opened = VhdxFile::open(&s.path);
        super::note(&format!("damaged open: {}", opened.is_ok()));
        match opened {
            Ok(f) => {
                let _ = f.block_counts();
                // The checkpoint tree refuses a parent of another sector size before it
                // builds a disk; so does this check.
                if layers
                    .first()
                    .is_some_and(|l| l.logical_sector_size() != f.metadata.logical_sector_size)
                {
                    return;
                }
                layers.push(Arc::new(f));
            }
            Err(Error::Vhdx { .. }) => return,
            Err(e) => panic!("open of a damaged file: unexpected error {e:?}"),
        }
    }
    let disk = LayeredDisk::new(layers, budget);
    let size = disk.size();
    for _ in 0..8 {
        let offset = inp.u64() % (size + 1);
        let len = usize::from(inp.u16());
        let mut buf = vec![0u8; len];
        let inside = offset + len as u64 <= size;
        match disk.read_at(offset, &mut buf) {
            Ok(()) => assert!(inside, "a read past the end succeeded"),
            Err(Error::OutOfRange { .. }) => assert!(!inside),
            Err(Error::Vhdx { .. }) => assert!(inside),
            Err(e) => panic!("read of a damaged file: unexpected error {e:?}"),
        }
    }
}
