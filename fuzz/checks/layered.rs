//! `LayeredDisk::read_at` over in-memory layers described by the input.
//!
//! Input: sector size, cache budget, 1 to 5 layers (newest first), each a size and a
//! list of segments (length, source: parent, zero or data at a file offset, and whether
//! `map` splits the segment into one run per sector), optionally a range where `map`
//! fails and a range of file offsets where `read_data` fails; then reads.
//!
//! Exact outcomes, against a byte-by-byte model (each sector from the newest layer that
//! does not defer to its parent; zeros past a layer's end and below the base):
//! a read past the end is `OutOfRange` with its numbers; an in-range read is `Ok` with
//! exactly the model's bytes (never short, never stale after cache evictions), except
//! that it is the injected error exactly when a 1 MiB unit it touches needs a failing
//! `map` or a byte it returns comes from a failing `read_data`. The fake layers assert
//! the `Layer` contract on every call they get (aligned, inside the layer).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ckptfs::chain::layered_disk::UNIT;
use ckptfs::chain::LayeredDisk;
use ckptfs::format::{Layer, Run, Source};
use ckptfs::io::ReadAt;
use ckptfs::{Error, Result};

use super::{pattern, Input, MIB};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Parent,
    Zero,
    Data(u64),
}

#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    len: u64,
    src: Src,
    split: bool,
}

#[derive(Debug)]
struct FakeLayer {
    index: usize,
    path: PathBuf,
    size: u64,
    lss: u64,
    segments: Vec<Segment>,
    map_fault: Option<(u64, u64)>,
    read_fault: Option<(u64, u64)>,
}

fn overlaps(a: u64, n: u64, f: Option<(u64, u64)>) -> bool {
    f.is_some_and(|(s, e)| a < e && s < a + n)
}

impl FakeLayer {
    /// The source of the byte at `pos` (`pos < size`).
    fn source(&self, pos: u64) -> Src {
        let i = self.segments.partition_point(|s| s.start + s.len <= pos);
        let s = &self.segments[i];
        match s.src {
            Src::Data(f) => Src::Data(f + (pos - s.start)),
            other => other,
        }
    }

    /// The layer's file: a 64 KiB table repeated with a period of 65521 (prime, so no
    /// alignment maps two nearby offsets alike), varied by repetition and layer.
    fn content(&self, file_offset: u64) -> u8 {
        static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let t = TABLE.get_or_init(|| (0..65521).map(|i| pattern(7, i)).collect());
        t[(file_offset % 65521) as usize] ^ (file_offset / 65521) as u8 ^ (self.index as u8) << 5
    }
}

impl Layer for FakeLayer {
    fn path(&self) -> &Path {
        &self.path
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn logical_sector_size(&self) -> u32 {
        self.lss as u32
    }
    fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
        assert!(
            offset % self.lss == 0 && len % self.lss == 0 && len > 0,
            "map({offset:#x}, {len:#x}) of layer {}: not whole sectors",
            self.index
        );
        assert!(
            offset + len <= self.size,
            "map({offset:#x}, {len:#x}) past the end of layer {} ({:#x})",
            self.index,
            self.size
        );
        if overlaps(offset, len, self.map_fault) {
            return Err(injected("map"));
        }
        let end = offset + len;
        let first = self.segments.partition_point(|s| s.start + s.len <= offset);
        for s in &self.segments[first..] {
            if s.start >= end {
                break;
            }
            let a = s.start.max(offset);
            let b = (s.start + s.len).min(end);
            let source = |at: u64| match s.src {
                Src::Parent => Source::Parent,
                Src::Zero => Source::Zero,
                Src::Data(f) => Source::Data {
                    file_offset: f + (at - s.start),
                },
            };
            if s.split {
                for at in (a..b).step_by(self.lss as usize) {
                    out.push(Run {
                        len: self.lss,
                        source: source(at),
                    });
                }
            } else {
                out.push(Run {
                    len: b - a,
                    source: source(a),
                });
            }
        }
        Ok(())
    }
    fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()> {
        assert!(!buf.is_empty(), "read_data of nothing");
        if overlaps(file_offset, buf.len() as u64, self.read_fault) {
            return Err(injected("read_data"));
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.content(file_offset + i as u64);
        }
        Ok(())
    }
}

fn injected(what: &str) -> Error {
    Error::Io {
        path: PathBuf::from("fake"),
        what: format!("injected {what} fault"),
        source: std::io::Error::other("injected"),
    }
}

fn layer(inp: &mut Input, index: usize, lss: u64) -> FakeLayer {
    let max_sectors = 5 * MIB / lss;
    let size = u64::from(inp.u16()) % (max_sectors + 1) * lss;
    let mut segments = Vec::new();
    let mut pos = 0;
    while pos < size {
        let a = inp.u8();
        let units = if a & 0x80 != 0 { 64 } else { 1 };
        let len = (u64::from(a & 0x7F) + 1) * units * lss;
        let len = if inp.is_empty() {
            size - pos
        } else {
            len.min(size - pos)
        };
        let kind = inp.u8();
        let src = match kind % 4 {
            0 | 1 => Src::Parent,
            2 => Src::Zero,
            _ => Src::Data(u64::from(inp.u16()) * lss),
        };
        segments.push(Segment {
            start: pos,
            len,
            src,
            split: kind & 4 != 0,
        });
        pos += len;
    }
    let fault = |inp: &mut Input, on: bool, unit: u64| {
        on.then(|| {
            let s = u64::from(inp.u16()) * unit;
            (s, s + (u64::from(inp.u8()) + 1) * unit)
        })
    };
    let f = inp.u8();
    let map_fault = fault(inp, f & 1 != 0, lss);
    let read_fault = fault(inp, f & 2 != 0, lss);
    FakeLayer {
        index,
        path: PathBuf::from(format!("layer{index}")),
        size,
        lss,
        segments,
        map_fault,
        read_fault,
    }
}

struct Model {
    layers: Vec<Arc<FakeLayer>>,
    size: u64,
}

impl Model {
    /// Which layer owns `pos`, and where: `None` for zeros.
    fn owner(&self, pos: u64) -> Option<(usize, u64)> {
        for (i, l) in self.layers.iter().enumerate() {
            if pos >= l.size {
                return None;
            }
            match l.source(pos) {
                Src::Parent => continue,
                Src::Zero => return None,
                Src::Data(f) => return Some((i, f)),
            }
        }
        None
    }

    /// Does resolving `unit` call a failing `map`? Some byte of the unit has to be asked
    /// of a layer whose failing range holds it.
    fn unit_fails(&self, unit: u64) -> bool {
        let lss = self.layers[0].lss;
        let start = unit * UNIT;
        let end = (start + UNIT).min(self.size);
        (start..end).step_by(lss as usize).any(|pos| {
            for l in &self.layers {
                if pos >= l.size {
                    return false;
                }
                if overlaps(pos, 1, l.map_fault) {
                    return true;
                }
                if l.source(pos) != Src::Parent {
                    return false;
                }
            }
            false
        })
    }

    /// The expected outcome of reading `len` bytes at `offset` (inside the disk).
    fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        if len == 0 {
            return Some(Vec::new());
        }
        let end = offset + len as u64;
        if (offset / UNIT..=(end - 1) / UNIT).any(|u| self.unit_fails(u)) {
            return None;
        }
        let lss = self.layers[0].lss;
        let mut out = Vec::with_capacity(len);
        let mut pos = offset;
        while pos < end {
            // Sources change only at sector boundaries.
            let n = ((pos / lss + 1) * lss).min(end) - pos;
            match self.owner(pos) {
                None => out.resize(out.len() + n as usize, 0),
                Some((i, f)) => {
                    let l = &self.layers[i];
                    if overlaps(f, n, l.read_fault) {
                        return None;
                    }
                    out.extend((f..f + n).map(|x| l.content(x)));
                }
            }
            pos += n;
        }
        Some(out)
    }
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let lss: u64 = if inp.bool() { 4096 } else { 512 };
    let budget = 1 + usize::from(inp.u8());
    let depth = 1 + usize::from(inp.u8() % 5);
    let layers: Vec<Arc<FakeLayer>> = (0..depth).map(|i| Arc::new(layer(&mut inp, i, lss))).collect();
    let size = layers[0].size;
    let disk = LayeredDisk::new(layers.iter().map(|l| l.clone() as Arc<dyn Layer>).collect(), budget);
    assert_eq!(disk.size(), size);
    assert_eq!(disk.depth(), depth);
    assert_eq!(u64::from(disk.logical_sector_size()), lss);
    let model = Model { layers, size };

    let mut reads = 0;
    while reads < 24 {
        reads += 1;
        let sel = inp.u8();
        // Mostly short reads (a unit boundary is easy to cross from an offset near it);
        // rarely up to 2.5 MiB, across three units.
        let len = match sel % 4 {
            0 => usize::from(inp.u8()),
            1 => usize::from(inp.u16()),
            2 if sel & 0x80 != 0 => (usize::from(inp.u8() % 40) + 1) << 16,
            2 => (usize::from(inp.u8() % 32) + 1) * 4096,
            _ => usize::from(inp.u16()) * 2,
        };
        let offset = match sel >> 2 & 3 {
            0 => u64::from(inp.u32()) % (size + 1),
            1 => {
                let near = u64::from(inp.u8() % 6) * UNIT;
                near.saturating_add_signed(i64::from(inp.u16() as i16)) % (size + 1)
            }
            2 => size.saturating_sub(u64::from(inp.u16())),
            _ => inp.u64(),
        };
        let mut buf = vec![0xA5u8; len];
        let got = disk.read_at(offset, &mut buf);
        let inside = offset.checked_add(len as u64).is_some_and(|e| e <= size);
        super::note(&format!(
            "depth {depth}: {}",
            match (inside, got.is_ok()) {
                (false, _) => "out of range",
                (true, true) => "ok",
                (true, false) => "injected failure",
            }
        ));
        if !inside {
            match got {
                Err(Error::OutOfRange {
                    offset: o,
                    len: n,
                    size: s,
                }) => assert_eq!((o, n, s), (offset, len as u64, size)),
                other => panic!("read of {len} at {offset:#x} past {size:#x}: {other:?}"),
            }
            continue;
        }
        match (got, model.read(offset, len)) {
            (Ok(()), Some(want)) => {
                if buf != want {
                    let i = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                    panic!(
                        "read of {len} at {offset:#x}: byte {:#x} is {:#04x}, expected {:#04x} (owner {:?})",
                        offset + i as u64,
                        buf[i],
                        want[i],
                        model.owner(offset + i as u64)
                    );
                }
            }
            (Err(Error::Io { what, .. }), None) => assert!(what.starts_with("injected"), "{what}"),
            (got, want) => panic!(
                "read of {len} at {offset:#x}: got {got:?}, the model says {}",
                if want.is_some() { "data" } else { "an injected failure" }
            ),
        }
        if inp.is_empty() {
            break;
        }
    }
}
