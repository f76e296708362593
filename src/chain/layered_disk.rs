//! A checkpoint state's whole virtual disk: its own layer over all its ancestors.
//!
//! Reads must not slow down as the chain grows. Who owns each byte is resolved in bulk:
//! the first read of a 1 MiB unit resolves the whole aligned window of
//! [`WINDOW_UNITS`] units around it in one pass, asking each layer once for everything
//! still unowned in the window, newest first, so the layers are asked once per window
//! rather than once per unit, and a sequential reader finds the units ahead of it
//! already resolved. The answer for each unit, a short list of runs, is kept in a
//! bounded LRU cache; every later read of the unit costs one cache lookup, at any depth.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::format::{Layer, Run, Source};
use crate::io::{check_range, Piece, ReadAt};
use crate::Result;

/// The caching unit.
pub const UNIT: u64 = 1 << 20;
/// Units resolved together on a miss: 16 MiB, which costs each layer one `map` call
/// (a few table lookups) and stays well under a millisecond at depth 50.
pub const WINDOW_UNITS: u64 = 16;
/// Default bound on cached runs, all units together (about 24 bytes each).
pub const DEFAULT_CACHED_RUNS: usize = 1 << 18;

/// Who owns a run of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Zero,
    /// `layers[layer]` holds the bytes at `file_offset`.
    Layer {
        layer: u16,
        file_offset: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OwnedRun {
    /// Offset of the run inside its unit.
    start: u32,
    len: u32,
    owner: Owner,
}

/// Resolved units, bounded by their total number of runs (a unit of a partially
/// present block can have hundreds).
struct UnitCache {
    units: LruCache<u64, Arc<[OwnedRun]>>,
    runs: usize,
    max_runs: usize,
}

impl UnitCache {
    fn get(&mut self, unit: u64) -> Option<Arc<[OwnedRun]>> {
        self.units.get(&unit).cloned()
    }

    fn put(&mut self, unit: u64, runs: Arc<[OwnedRun]>) {
        self.runs += runs.len();
        if let Some(old) = self.units.put(unit, runs) {
            self.runs -= old.len();
        }
        while self.runs > self.max_runs && self.units.len() > 1 {
            match self.units.pop_lru() {
                Some((_, old)) => self.runs -= old.len(),
                None => break,
            }
        }
    }
}

/// The virtual disk of one checkpoint state.
pub struct LayeredDisk {
    /// Newest first: `layers[0]` is the state's own file, the last is the base.
    layers: Vec<Arc<dyn Layer>>,
    size: u64,
    cache: Mutex<UnitCache>,
}

impl std::fmt::Debug for LayeredDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredDisk")
            .field("top", &self.layers.first().map(|l| l.path().to_path_buf()))
            .field("depth", &self.layers.len())
            .field("size", &self.size)
            .finish()
    }
}

impl LayeredDisk {
    /// `layers` newest first; must not be empty. The disk has the newest layer's size.
    pub fn new(layers: Vec<Arc<dyn Layer>>, max_cached_runs: usize) -> Self {
        assert!(!layers.is_empty(), "a disk has at least one layer");
        assert!(
            layers.len() <= usize::from(u16::MAX),
            "chain depth is capped far below this"
        );
        let size = layers[0].virtual_size();
        let max_runs = max_cached_runs.max(1);
        LayeredDisk {
            layers,
            size,
            cache: Mutex::new(UnitCache {
                units: LruCache::new(NonZeroUsize::new(max_runs).unwrap()),
                runs: 0,
                max_runs,
            }),
        }
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    pub fn logical_sector_size(&self) -> u32 {
        self.layers[0].logical_sector_size()
    }

    fn unit(&self, unit: u64) -> Result<Arc<[OwnedRun]>> {
        let hit = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(unit);
        if let Some(runs) = hit {
            // Halfway through a window, get the next one resolved and its data on its
            // way from disk, so that a sequential reader never waits for either.
            if unit % WINDOW_UNITS == WINDOW_UNITS / 2 {
                let next = unit - unit % WINDOW_UNITS + WINDOW_UNITS;
                let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(next).is_some();
                if !cached && next * UNIT < self.size {
                    // A failure here is met again, and reported, by the read that needs it.
                    let _ = self.resolve_window(next);
                }
            }
            return Ok(runs);
        }
        self.resolve_window(unit)
    }

    /// Resolve the window around `unit`, cache its units, ask the layers to start
    /// reading its data (cold images are then read ahead of the reader, in large
    /// pieces, from every layer at once), and return `unit`'s runs. Two threads missing
    /// in one window at once both resolve it, with equal answers, which costs less than
    /// making one wait. Where the window meets damage the unit alone is resolved, so
    /// that a damaged structure fails only the reads that need it.
    fn resolve_window(&self, unit: u64) -> Result<Arc<[OwnedRun]>> {
        let units = match self.units_in(unit, WINDOW_UNITS) {
            Ok(units) => units,
            Err(_) => self.units_in(unit, 1)?,
        };
        // One hint per stretch of a file, however the units cut it.
        let mut stretch: Option<(u16, u64, u64)> = None;
        for r in units.iter().flat_map(|(_, runs)| runs.iter()) {
            let Owner::Layer { layer, file_offset } = r.owner else {
                continue;
            };
            match &mut stretch {
                Some((l, start, n)) if *l == layer && *start + *n == file_offset => *n += u64::from(r.len),
                _ => {
                    if let Some((l, start, n)) = stretch.replace((layer, file_offset, u64::from(r.len))) {
                        self.layers[usize::from(l)].prefetch(start, n);
                    }
                }
            }
        }
        if let Some((l, start, n)) = stretch {
            self.layers[usize::from(l)].prefetch(start, n);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut wanted = None;
        for (u, runs) in units {
            if u == unit {
                wanted = Some(runs.clone());
            }
            cache.put(u, runs);
        }
        Ok(wanted.expect("the window holds the unit asked for"))
    }

    /// The runs of every unit in the aligned window of `window` units around `unit`.
    fn units_in(&self, unit: u64, window: u64) -> Result<Vec<(u64, Arc<[OwnedRun]>)>> {
        let first = unit - unit % window;
        let start = first * UNIT;
        let end = (first + window).saturating_mul(UNIT).min(self.size);
        let owned = self.resolve(start, end - start)?;
        // Split at unit boundaries, merging neighbours that continue each other, so that
        // a unit owned by one layer is one run.
        let mut out: Vec<(u64, Vec<OwnedRun>)> = Vec::new();
        for (mut at, mut n, mut owner) in owned {
            while n > 0 {
                let u = at / UNIT;
                let in_unit = at % UNIT;
                let take = n.min(UNIT - in_unit);
                if out.last().is_none_or(|(last, _)| *last != u) {
                    out.push((u, Vec::new()));
                }
                let runs = &mut out.last_mut().expect("pushed above").1;
                push_merged(runs, in_unit as u32, take as u32, owner);
                at += take;
                n -= take;
                if let Owner::Layer { file_offset, .. } = &mut owner {
                    *file_offset += take;
                }
            }
        }
        Ok(out.into_iter().map(|(u, runs)| (u, runs.into())).collect())
    }

    /// Ask the layers, newest first, who owns each byte of `start..start + len`. Each
    /// layer is asked once, for the span from the first to the last byte still unowned
    /// (its tables are read in one sequential pass), and its answer is applied to the
    /// unowned ranges only. Runs come back in order.
    fn resolve(&self, start: u64, len: u64) -> Result<Vec<(u64, u64, Owner)>> {
        let mut owned: Vec<(u64, u64, Owner)> = Vec::new();
        let mut pending: Vec<(u64, u64)> = vec![(start, len)];
        let mut runs: Vec<Run> = Vec::new();
        for (index, layer) in self.layers.iter().enumerate() {
            let (Some(&(span_start, _)), Some(&(last_at, last_n))) = (pending.first(), pending.last()) else {
                break;
            };
            // A parent smaller than its child reads as zeros past its end.
            let layer_end = layer.virtual_size();
            let span_end = (last_at + last_n).min(layer_end.max(span_start));
            runs.clear();
            if span_end > span_start {
                layer.map(span_start, span_end - span_start, &mut runs)?;
            }
            let mut next: Vec<(u64, u64)> = Vec::new();
            let mut run_iter = runs.iter();
            // The current run of the layer's answer: [run_at, run_at + run.len).
            let mut run_at = span_start;
            let mut run = run_iter.next();
            for (at, n) in pending.drain(..) {
                let mut pos = at;
                let end = at + n;
                while pos < end {
                    if pos >= layer_end {
                        owned.push((pos, end - pos, Owner::Zero));
                        break;
                    }
                    // Skip the layer's runs that end before `pos`.
                    while let Some(r) = run {
                        if run_at + r.len > pos {
                            break;
                        }
                        run_at += r.len;
                        run = run_iter.next();
                    }
                    let Some(r) = run else {
                        debug_assert!(false, "a layer's runs cover the span asked");
                        return Err(crate::Error::OutOfRange {
                            offset: pos,
                            len: end - pos,
                            size: layer_end,
                        });
                    };
                    let take = (run_at + r.len).min(end).min(layer_end) - pos;
                    match r.source {
                        Source::Data { file_offset } => owned.push((
                            pos,
                            take,
                            Owner::Layer {
                                layer: index as u16,
                                file_offset: file_offset + (pos - run_at),
                            },
                        )),
                        Source::Zero => owned.push((pos, take, Owner::Zero)),
                        // Ask the parent once for neighbouring ranges.
                        Source::Parent => match next.last_mut() {
                            Some((a, m)) if *a + *m == pos => *m += take,
                            _ => next.push((pos, take)),
                        },
                    }
                    pos += take;
                }
            }
            pending = next;
        }
        // Nothing below the base: zeros.
        owned.extend(pending.into_iter().map(|(at, n)| (at, n, Owner::Zero)));
        owned.sort_unstable_by_key(|r| r.0);
        Ok(owned)
    }
}

/// Append a run to a unit's list, extending the last one where it continues it.
fn push_merged(runs: &mut Vec<OwnedRun>, start: u32, len: u32, owner: Owner) {
    if let Some(last) = runs.last_mut() {
        let contiguous = match (last.owner, owner) {
            (Owner::Zero, Owner::Zero) => true,
            (
                Owner::Layer {
                    layer: a,
                    file_offset: fa,
                },
                Owner::Layer {
                    layer: b,
                    file_offset: fb,
                },
            ) => a == b && fa + u64::from(last.len) == fb,
            _ => false,
        };
        if contiguous && last.start + last.len == start {
            last.len += len;
            return;
        }
    }
    runs.push(OwnedRun { start, len, owner });
}

impl LayeredDisk {
    /// Walk `offset..offset + len` (inside the disk) as spans of one owner, in order:
    /// `f(span length, None)` for zeros, `f(span length, Some((layer, file offset)))` for
    /// data a layer holds. Stops with `false` as soon as `f` does.
    fn spans(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(u64, Option<(usize, u64)>) -> Result<bool>,
    ) -> Result<bool> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let runs = self.unit(pos / UNIT)?;
            let in_unit = pos % UNIT;
            // First run that ends after `in_unit`.
            let first = runs.partition_point(|r| u64::from(r.start) + u64::from(r.len) <= in_unit);
            for r in &runs[first..] {
                if pos == end {
                    break;
                }
                let skip = pos % UNIT - u64::from(r.start);
                let n = (u64::from(r.len) - skip).min(end - pos);
                let source = match r.owner {
                    Owner::Zero => None,
                    Owner::Layer { layer, file_offset } => Some((usize::from(layer), file_offset + skip)),
                };
                if !f(n, source)? {
                    return Ok(false);
                }
                pos += n;
            }
        }
        Ok(true)
    }
}

impl ReadAt for LayeredDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn pieces<'a>(&'a self, offset: u64, len: u64, out: &mut Vec<Piece<'a>>) -> Result<bool> {
        check_range(offset, len as usize, self.size)?;
        self.spans(offset, len, |n, source| match source {
            None => {
                match out.last_mut() {
                    Some(Piece::Zero { len }) => *len += n,
                    _ => out.push(Piece::Zero { len: n }),
                }
                Ok(true)
            }
            Some((layer, file_offset)) => Ok(self.layers[layer].data_pieces(file_offset, n, out)),
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        self.spans(offset, buf.len() as u64, |n, source| {
            let dst = &mut buf[done..done + n as usize];
            match source {
                None => dst.fill(0),
                Some((layer, file_offset)) => self.layers[layer].read_data(file_offset, dst)?,
            }
            done += n as usize;
            Ok(true)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// A layer described by a byte map: `b'P'` parent, `b'0'` zero, other = data whose
    /// bytes equal that letter. One letter per 512-byte sector.
    #[derive(Debug)]
    struct FakeLayer {
        sectors: Vec<u8>,
        path: PathBuf,
        maps: AtomicUsize,
    }

    impl FakeLayer {
        fn layer(pattern: &str) -> Arc<dyn Layer> {
            Arc::new(FakeLayer {
                sectors: pattern.bytes().collect(),
                path: PathBuf::from(pattern),
                maps: AtomicUsize::new(0),
            })
        }
    }

    impl Layer for FakeLayer {
        fn path(&self) -> &Path {
            &self.path
        }
        fn virtual_size(&self) -> u64 {
            self.sectors.len() as u64 * 512
        }
        fn logical_sector_size(&self) -> u32 {
            512
        }
        fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
            self.maps.fetch_add(1, Ordering::Relaxed);
            for s in offset / 512..(offset + len) / 512 {
                let source = match self.sectors[s as usize] {
                    b'P' => Source::Parent,
                    b'0' => Source::Zero,
                    _ => Source::Data { file_offset: s * 512 },
                };
                out.push(Run { len: 512, source });
            }
            Ok(())
        }
        fn read_data(&self, file_offset: u64, buf: &mut [u8]) -> Result<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.sectors[((file_offset + i as u64) / 512) as usize];
            }
            Ok(())
        }
    }

    fn read_all(d: &LayeredDisk) -> Vec<u8> {
        let mut b = vec![0xEE; d.size() as usize];
        d.read_at(0, &mut b).unwrap();
        b
    }

    /// The disk as one letter per sector ('0' for zeros), `?` for a mixed sector.
    fn letters(d: &LayeredDisk) -> String {
        read_all(d)
            .chunks(512)
            .map(|s| match s[0] {
                x if s.iter().any(|&y| y != x) => '?',
                0 => '0',
                x => x as char,
            })
            .collect()
    }

    #[test]
    fn each_sector_comes_from_the_newest_layer_that_has_it() {
        let d = LayeredDisk::new(
            vec![
                FakeLayer::layer("PaPP0P"),
                FakeLayer::layer("bPPcPP"),
                FakeLayer::layer("ddPdde"),
            ],
            1000,
        );
        assert_eq!(letters(&d), "ba0c0e");
    }

    #[test]
    fn sectors_no_layer_has_read_as_zero_and_a_smaller_parent_ends_in_zeros() {
        let d = LayeredDisk::new(vec![FakeLayer::layer("PPxPPP"), FakeLayer::layer("PP")], 1000);
        assert_eq!(letters(&d), "00x000");
    }

    #[test]
    fn unaligned_reads_match_the_whole_disk() {
        let d = LayeredDisk::new(vec![FakeLayer::layer("PaPb0P"), FakeLayer::layer("cdefgh")], 1000);
        let whole = read_all(&d);
        for (off, len) in [(0usize, 1usize), (511, 2), (700, 1500), (1024, 2048), (3071, 1)] {
            let mut b = vec![0xEE; len];
            d.read_at(off as u64, &mut b).unwrap();
            assert_eq!(b, whole[off..off + len], "{off}+{len}");
        }
    }

    #[test]
    fn reads_past_the_end_are_errors_not_panics() {
        let d = LayeredDisk::new(vec![FakeLayer::layer("ab")], 1000);
        let mut b = [0u8; 2];
        assert!(d.read_at(1023, &mut b).is_err());
        assert!(d.read_at(u64::MAX, &mut b).is_err());
        assert!(d.read_at(1024, &mut []).is_ok());
    }

    #[test]
    fn a_unit_is_resolved_once_then_served_from_the_cache() {
        let top = Arc::new(FakeLayer {
            sectors: vec![b'P'; 4096],
            path: "top".into(),
            maps: AtomicUsize::new(0),
        });
        let base = Arc::new(FakeLayer {
            sectors: vec![b'z'; 4096],
            path: "base".into(),
            maps: AtomicUsize::new(0),
        });
        let d = LayeredDisk::new(vec![top.clone() as Arc<dyn Layer>, base.clone()], 1000);
        let mut b = vec![0u8; 4096];
        for i in 0..64 {
            d.read_at(i * 4096 % (2 << 20), &mut b).unwrap();
        }
        // 64 reads within the first 256 KiB: one unit, resolved once.
        assert_eq!(top.maps.load(Ordering::Relaxed), 1);
        assert_eq!(base.maps.load(Ordering::Relaxed), 1);
        assert!(b.iter().all(|&x| x == b'z'));
    }

    #[test]
    fn the_cache_stays_within_its_run_budget() {
        // Alternating sectors: 2048 runs per unit; a budget of 3000 runs holds one unit.
        let pattern: String = (0..8192).map(|i| if i % 2 == 0 { 'a' } else { 'P' }).collect();
        let d = LayeredDisk::new(
            vec![FakeLayer::layer(&pattern), FakeLayer::layer(&"b".repeat(8192))],
            3000,
        );
        let mut b = vec![0u8; 512];
        for unit in 0..4 {
            d.read_at(unit * UNIT, &mut b).unwrap();
        }
        let cache = d.cache.lock().unwrap();
        assert!(cache.runs <= 3000, "{}", cache.runs);
        assert_eq!(cache.units.len(), 1);
    }

    /// A layer that owns sectors by a rule and counts its `map` calls; `fail_at` makes
    /// `map` fail for any range that covers that byte.
    #[derive(Debug)]
    struct CountingLayer {
        size: u64,
        /// Owns the 512-byte sector at `s` when `owns(s)`.
        owns: fn(u64, usize) -> bool,
        index: usize,
        maps: AtomicUsize,
        fail_at: Option<u64>,
        path: PathBuf,
        /// Bytes the disk asked to prefetch.
        prefetched: AtomicU64,
    }

    impl Layer for CountingLayer {
        fn prefetch(&self, _file_offset: u64, len: u64) {
            self.prefetched.fetch_add(len, Ordering::Relaxed);
        }
        fn path(&self) -> &Path {
            &self.path
        }
        fn virtual_size(&self) -> u64 {
            self.size
        }
        fn logical_sector_size(&self) -> u32 {
            512
        }
        fn map(&self, offset: u64, len: u64, out: &mut Vec<Run>) -> Result<()> {
            self.maps.fetch_add(1, Ordering::Relaxed);
            if self.fail_at.is_some_and(|f| offset <= f && f < offset + len) {
                return Err(crate::Error::Usage("damaged".into()));
            }
            for s in offset / 512..(offset + len) / 512 {
                let source = if (self.owns)(s, self.index) {
                    Source::Data { file_offset: s * 512 }
                } else {
                    Source::Parent
                };
                out.push(Run { len: 512, source });
            }
            Ok(())
        }
        fn read_data(&self, _file_offset: u64, buf: &mut [u8]) -> Result<()> {
            buf.fill(self.index as u8 + 1);
            Ok(())
        }
    }

    fn counting_chain(depth: usize, size: u64, fail: Option<(usize, u64)>) -> Vec<Arc<CountingLayer>> {
        // Layer i (0 = newest) owns every sector s with s % depth == i: each read
        // touches every layer.
        (0..depth)
            .map(|index| {
                Arc::new(CountingLayer {
                    size,
                    owns: |s, i| s % 64 == i as u64 % 64,
                    index,
                    maps: AtomicUsize::new(0),
                    fail_at: fail.filter(|f| f.0 == index).map(|f| f.1),
                    path: format!("layer{index}").into(),
                    prefetched: AtomicU64::new(0),
                })
            })
            .collect()
    }

    #[test]
    fn the_first_read_asks_each_layer_once_per_window_at_any_depth() {
        let size = 4 * WINDOW_UNITS * UNIT;
        for depth in [1usize, 50] {
            let layers = counting_chain(depth, size, None);
            let d = LayeredDisk::new(layers.iter().map(|l| l.clone() as Arc<dyn Layer>).collect(), 1 << 20);
            let mut b = vec![0u8; UNIT as usize];
            for unit in 0..size / UNIT {
                d.read_at(unit * UNIT, &mut b).unwrap();
                // Sector s comes from layer s % 64 where it exists, else from no layer.
                for (i, sector) in b.chunks(512).enumerate() {
                    let owner = (unit * UNIT / 512 + i as u64) % 64;
                    let want = if (owner as usize) < depth { owner as u8 + 1 } else { 0 };
                    assert!(
                        sector.iter().all(|&x| x == want),
                        "depth {depth} unit {unit} sector {i}"
                    );
                }
            }
            for l in &layers {
                // Four windows: four calls each, however deep the chain.
                assert_eq!(l.maps.load(Ordering::Relaxed), 4, "depth {depth}, layer {}", l.index);
            }
        }
    }

    #[test]
    fn damage_in_a_window_fails_only_the_reads_that_need_it() {
        let size = WINDOW_UNITS * UNIT;
        // The base's mapping fails in unit 5 only.
        let layers = counting_chain(3, size, Some((2, 5 * UNIT + 4096)));
        let d = LayeredDisk::new(layers.iter().map(|l| l.clone() as Arc<dyn Layer>).collect(), 1 << 20);
        let mut b = vec![0u8; 4096];
        for unit in 0..WINDOW_UNITS {
            let r = d.read_at(unit * UNIT, &mut b);
            assert_eq!(r.is_err(), unit == 5, "unit {unit}: {r:?}");
        }
    }

    #[test]
    fn a_sequential_reader_has_the_next_window_prefetched_halfway_through_this_one() {
        let size = 3 * WINDOW_UNITS * UNIT;
        let layers = counting_chain(2, size, None);
        let d = LayeredDisk::new(layers.iter().map(|l| l.clone() as Arc<dyn Layer>).collect(), 1 << 20);
        let prefetched = || -> u64 { layers.iter().map(|l| l.prefetched.load(Ordering::Relaxed)).sum() };
        let mut b = vec![0u8; 4096];
        // Two layers own one sector in 64 each: 2/64 of a window's bytes are theirs.
        let per_window = WINDOW_UNITS * UNIT / 32;
        d.read_at(0, &mut b).unwrap();
        assert_eq!(prefetched(), per_window, "the first window's data");
        d.read_at((WINDOW_UNITS / 2 - 1) * UNIT, &mut b).unwrap();
        assert_eq!(prefetched(), per_window, "nothing more before halfway");
        d.read_at(WINDOW_UNITS / 2 * UNIT, &mut b).unwrap();
        assert_eq!(prefetched(), 2 * per_window, "halfway: the next window's data");
        // The next window is resolved already: reaching it asks no layer again.
        let maps: usize = layers.iter().map(|l| l.maps.load(Ordering::Relaxed)).sum();
        d.read_at(WINDOW_UNITS * UNIT, &mut b).unwrap();
        assert_eq!(
            layers.iter().map(|l| l.maps.load(Ordering::Relaxed)).sum::<usize>(),
            maps
        );
    }
}
