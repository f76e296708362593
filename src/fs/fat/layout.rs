//! The volume's layout (boot sector) and its allocation table, read by this module
//! rather than through `fatfs`, for two reasons:
//! - `fatfs` does its layout arithmetic in `u32` and follows cluster numbers as it finds
//!   them: a crafted boot sector or a link to cluster 1 overflows (a panic in debug
//!   builds, a read of the wrong place otherwise), and a chain that loops makes it read
//!   a directory forever. Every boot sector and chain is checked here first, so `fatfs`
//!   only ever sees a layout whose arithmetic fits and chains that end.
//! - `fatfs` hides cluster numbers and entry positions, which the reader needs for
//!   node ids, directory sizes and link counts.

use std::sync::{Arc, Mutex};

use crate::bytes::{le_u16, le_u32};
use crate::cache::Cache;
use crate::fs::Volume;

/// Directories are at most 65536 entries of 32 bytes (the FAT specification's limit,
/// which Windows and Linux keep): a longer chain is damaged or loops.
pub(super) const MAX_DIR_BYTES: u64 = 65536 * 32;

/// The FAT is read in blocks of this size, a bounded number of them cached.
const FAT_BLOCK: u64 = 64 * 1024;
const CACHED_FAT_BLOCKS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

impl FatKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            FatKind::Fat12 => "fat12",
            FatKind::Fat16 => "fat16",
            FatKind::Fat32 => "fat32",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RootDir {
    /// FAT12/16: a fixed region before the data area.
    Region { offset: u64, len: u64 },
    /// FAT32: a cluster chain like any directory.
    Chain(u32),
}

/// What the boot sector says, checked.
#[derive(Debug, Clone)]
pub(super) struct Geometry {
    pub kind: FatKind,
    pub cluster_size: u32,
    /// Byte offset and length of the FAT that `fatfs` reads (the first one, or the
    /// active one when FAT32 mirroring is off).
    pub fat_offset: u64,
    pub fat_len: u64,
    pub root: RootDir,
    pub data_offset: u64,
    /// Number of data clusters: valid cluster numbers are `2..clusters + 2`.
    pub clusters: u32,
    /// Bytes the layout covers (total sectors × sector size).
    pub volume_len: u64,
    /// The label in the boot sector's extended BPB, if it has one.
    pub bpb_label: Option<[u8; 11]>,
    /// Where the FAT32 FSInfo sector is, if it is in the reserved area.
    pub fs_info: Option<u64>,
}

impl Geometry {
    /// Check the boot sector (at least 512 bytes) the way `fatfs` does, with arithmetic
    /// that cannot overflow, plus what the Linux kernel refuses and `fatfs` lets through
    /// (a FAT too small for the clusters, an active FAT that does not exist).
    pub(super) fn parse(b: &[u8]) -> Result<Geometry, String> {
        if b.len() < 512 {
            return Err("the volume is smaller than a boot sector".into());
        }
        if &b[3..11] == b"EXFAT   " {
            return Err("this is exFAT, not FAT12/16/32 (not supported)".into());
        }
        if b[510..512] != [0x55, 0xAA] {
            return Err("no boot sector signature (0x55 0xAA at offset 510)".into());
        }
        let sector = u64::from(le_u16(b, 0x0B));
        let per_cluster = u64::from(b[0x0D]);
        let reserved = u64::from(le_u16(b, 0x0E));
        let fats = u64::from(b[0x10]);
        let root_entries = u64::from(le_u16(b, 0x11));
        let total16 = u64::from(le_u16(b, 0x13));
        let fat_sectors16 = u64::from(le_u16(b, 0x16));
        let total32 = u64::from(le_u32(b, 0x20));
        let is_fat32 = fat_sectors16 == 0;

        if !sector.is_power_of_two() || !(512..=4096).contains(&sector) {
            return Err(format!(
                "bytes per sector is {sector}: not a power of two from 512 to 4096"
            ));
        }
        if !per_cluster.is_power_of_two() || per_cluster > 128 {
            return Err(format!(
                "sectors per cluster is {per_cluster}: not a power of two up to 128"
            ));
        }
        if reserved == 0 {
            return Err("no reserved sectors: the boot sector itself is one".into());
        }
        if fats == 0 {
            return Err("the number of FATs is 0".into());
        }
        if is_fat32 && root_entries != 0 {
            return Err(format!("{root_entries} root entries on a FAT32 volume (must be 0)"));
        }
        if !is_fat32 && root_entries == 0 {
            return Err("no root directory entries on a FAT12/16 volume".into());
        }
        if is_fat32 && total16 != 0 {
            return Err("16-bit total sector count set on a FAT32 volume (must be 0)".into());
        }
        if (total16 == 0) == (total32 == 0) {
            return Err("exactly one of the 16- and 32-bit total sector counts must be set".into());
        }
        let (fat_sectors, version, root_cluster, fs_info, backup, ext_flags) = if is_fat32 {
            (
                u64::from(le_u32(b, 0x24)),
                le_u16(b, 0x2A),
                le_u32(b, 0x2C),
                u64::from(le_u16(b, 0x30)),
                u64::from(le_u16(b, 0x32)),
                le_u16(b, 0x28),
            )
        } else {
            (fat_sectors16, 0, 0, 0, 0, 0)
        };
        if fat_sectors == 0 {
            return Err("sectors per FAT is 0".into());
        }
        if version != 0 {
            return Err(format!(
                "FAT32 version {}.{} (only 0.0 exists)",
                version >> 8,
                version & 0xFF
            ));
        }
        let total = total16.max(total32);
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let first_data = reserved + fats * fat_sectors + root_sectors;
        // fatfs computes this in u32.
        if first_data > u64::from(u32::MAX) {
            return Err("the FATs and root directory span more than 2^32 sectors".into());
        }
        if total <= first_data {
            return Err(format!(
                "{total} sectors in all, but the data area starts at sector {first_data}"
            ));
        }
        if is_fat32 && backup >= reserved {
            return Err(format!(
                "backup boot sector {backup} outside the {reserved} reserved sectors"
            ));
        }
        if is_fat32 && fs_info >= reserved {
            return Err(format!(
                "FSInfo sector {fs_info} outside the {reserved} reserved sectors"
            ));
        }
        let clusters = (total - first_data) / per_cluster;
        // The type follows from the cluster count alone (Microsoft's rule, which fatfs
        // and Linux apply); FAT32 is also marked by a 0 in the 16-bit FAT size.
        let kind = if clusters < 4085 {
            FatKind::Fat12
        } else if clusters < 65525 {
            FatKind::Fat16
        } else {
            FatKind::Fat32
        };
        if is_fat32 != (kind == FatKind::Fat32) {
            return Err(format!(
                "{clusters} clusters make this {}, but the boot sector is laid out for {}",
                kind.name(),
                if is_fat32 { "fat32" } else { "fat12/16" }
            ));
        }
        // Cluster numbers from 0x0FFFFFF7 up are markers (bad, end of chain).
        if clusters + 2 > 0x0FFF_FFF7 {
            return Err(format!("{clusters} clusters: more than FAT32 can number"));
        }
        let bits = match kind {
            FatKind::Fat12 => 12,
            FatKind::Fat16 => 16,
            FatKind::Fat32 => 32,
        };
        let fat_bits = fat_sectors * sector * 8;
        // fatfs computes the FAT's bit count in u32.
        if fat_bits > u64::from(u32::MAX) {
            return Err(format!(
                "a FAT of {fat_sectors} sectors is larger than this reader supports (512 MiB)"
            ));
        }
        if fat_bits / bits < clusters + 2 {
            return Err(format!(
                "a FAT of {fat_sectors} sectors holds {} entries, but the volume has {clusters} clusters",
                (fat_bits / bits).saturating_sub(2)
            ));
        }
        // FAT32 may switch mirroring off and name one active FAT (bits 0-3 of the flags).
        let active = if is_fat32 && ext_flags & 0x80 != 0 {
            u64::from(ext_flags & 0x0F)
        } else {
            0
        };
        if active >= fats {
            return Err(format!("the active FAT is number {active}, but there are {fats}"));
        }
        let root = if is_fat32 {
            if !(2..clusters + 2).contains(&u64::from(root_cluster)) {
                return Err(format!(
                    "the root directory starts at cluster {root_cluster}, which does not exist"
                ));
            }
            RootDir::Chain(root_cluster)
        } else {
            RootDir::Region {
                offset: (reserved + fats * fat_sectors) * sector,
                len: root_entries * 32,
            }
        };
        let ext_sig_at = if is_fat32 { 0x42 } else { 0x26 };
        let label_at = if is_fat32 { 0x47 } else { 0x2B };
        let bpb_label = (b[ext_sig_at] == 0x29).then(|| b[label_at..label_at + 11].try_into().unwrap());
        Ok(Geometry {
            kind,
            cluster_size: (per_cluster * sector) as u32,
            fat_offset: (reserved + active * fat_sectors) * sector,
            fat_len: fat_sectors * sector,
            root,
            data_offset: first_data * sector,
            clusters: clusters as u32,
            volume_len: total * sector,
            bpb_label,
            fs_info: (is_fat32 && fs_info != 0).then_some(fs_info * sector),
        })
    }

    /// The highest valid cluster number.
    pub(super) fn last_cluster(&self) -> u32 {
        self.clusters + 1
    }

    pub(super) fn is_cluster(&self, c: u32) -> bool {
        (2..=self.last_cluster()).contains(&c)
    }

    /// Volume offset of valid cluster `c`.
    pub(super) fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c - 2) * u64::from(self.cluster_size)
    }
}

/// What a FAT entry says comes after a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Next(u32),
    End,
    Free,
    Bad,
    /// A number that is no cluster of this volume (0 and 1 are reserved; others lie
    /// past the last cluster, or are FAT32's reserved values).
    Invalid(u32),
}

/// The allocation table, read through a bounded cache of blocks.
pub(super) struct FatTable {
    volume: Volume,
    geo: Geometry,
    blocks: Cache<u64, Arc<[u8]>>,
    free: Mutex<Option<u64>>,
}

impl FatTable {
    pub(super) fn new(volume: Volume, geo: Geometry) -> Self {
        FatTable {
            volume,
            geo,
            blocks: Cache::new(CACHED_FAT_BLOCKS),
            free: Mutex::new(None),
        }
    }

    fn block(&self, index: u64) -> Result<Arc<[u8]>, String> {
        self.blocks.get_or_try_insert(index, || {
            let start = index * FAT_BLOCK;
            let len = FAT_BLOCK.min(self.geo.fat_len - start) as usize;
            let mut buf = vec![0u8; len];
            self.volume
                .read_at(self.geo.fat_offset + start, &mut buf)
                .map_err(|e| {
                    format!(
                        "reading the FAT at volume offset {:#x}: {e}",
                        self.geo.fat_offset + start
                    )
                })?;
            Ok(buf.into())
        })
    }

    fn byte(&self, at: u64) -> Result<u8, String> {
        if at >= self.geo.fat_len {
            return Err(format!("FAT offset {at:#x} is past the FAT's end"));
        }
        Ok(self.block(at / FAT_BLOCK)?[(at % FAT_BLOCK) as usize])
    }

    /// The raw entry of valid cluster `c`.
    fn entry(&self, c: u32) -> Result<u32, String> {
        let c64 = u64::from(c);
        Ok(match self.geo.kind {
            FatKind::Fat12 => {
                let at = c64 + c64 / 2;
                let v = u32::from(self.byte(at)?) | u32::from(self.byte(at + 1)?) << 8;
                if c & 1 == 0 {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            FatKind::Fat16 => u32::from(self.byte(2 * c64)?) | u32::from(self.byte(2 * c64 + 1)?) << 8,
            FatKind::Fat32 => {
                let mut v = 0u32;
                for i in 0..4 {
                    v |= u32::from(self.byte(4 * c64 + i)?) << (8 * i);
                }
                v & 0x0FFF_FFFF
            }
        })
    }

    fn classify(&self, v: u32) -> Link {
        let (bad, end) = match self.geo.kind {
            FatKind::Fat12 => (0xFF7, 0xFF8),
            FatKind::Fat16 => (0xFFF7, 0xFFF8),
            FatKind::Fat32 => (0x0FFF_FFF7, 0x0FFF_FFF8),
        };
        match v {
            0 => Link::Free,
            v if v == bad => Link::Bad,
            v if v >= end => Link::End,
            v if self.geo.is_cluster(v) => Link::Next(v),
            v => Link::Invalid(v),
        }
    }

    /// What follows valid cluster `c`.
    pub(super) fn link(&self, c: u32) -> Result<Link, String> {
        Ok(self.classify(self.entry(c)?))
    }

    /// Follow the chain from `first` through at most `limit` clusters, calling `visit`
    /// on each. Ok(true) if the chain ended (end-of-chain mark) within `limit`, Ok(false)
    /// if it goes on. A chain that reaches a free, bad or invalid entry before the end,
    /// or comes back to a cluster it went through, is an error: the kernel refuses the
    /// first kind, and the second never ends.
    pub(super) fn walk(&self, first: u32, limit: u64, mut visit: impl FnMut(u32)) -> Result<bool, String> {
        if limit == 0 {
            return Ok(false);
        }
        if !self.geo.is_cluster(first) {
            return Err(format!(
                "it starts at cluster {first}, which {}",
                no_cluster(first, &self.geo)
            ));
        }
        let mut seen = Bitset::default();
        let mut c = first;
        let mut count = 0u64;
        loop {
            if !seen.insert(u64::from(c)) {
                return Err(format!(
                    "its cluster chain loops back to cluster {c} after {count} clusters"
                ));
            }
            visit(c);
            count += 1;
            if count == limit {
                return Ok(false);
            }
            match self.link(c)? {
                Link::Next(n) => c = n,
                Link::End => return Ok(true),
                Link::Free => {
                    return Err(format!(
                        "its cluster chain runs into free cluster {c} (after {count} clusters)"
                    ))
                }
                Link::Bad => return Err(format!("its cluster chain runs into cluster {c}, marked bad")),
                Link::Invalid(n) => {
                    return Err(format!(
                        "its cluster chain links cluster {c} to {n}, which {}",
                        no_cluster(n, &self.geo)
                    ))
                }
            }
        }
    }

    /// Free clusters, counted once (as the kernel does: the FSInfo hint may be stale).
    pub(super) fn free_clusters(&self) -> Result<u64, String> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = *free {
            return Ok(n);
        }
        let mut n = 0u64;
        for c in 2..=self.geo.last_cluster() {
            if self.entry(c)? == 0 {
                n += 1;
            }
        }
        *free = Some(n);
        Ok(n)
    }
}

fn no_cluster(n: u32, geo: &Geometry) -> String {
    if n < 2 {
        "is reserved (clusters start at 2)".to_string()
    } else {
        format!("is past the last cluster ({})", geo.last_cluster())
    }
}

/// Clusters a walk went through: one bit per cluster up to the highest seen, so at most
/// clusters / 8 bytes however long the file (a hash set would grow with the file).
#[derive(Default)]
struct Bitset(Vec<u64>);

impl Bitset {
    /// Whether `i` was newly inserted.
    fn insert(&mut self, i: u64) -> bool {
        let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let new = self.0[w] & bit == 0;
        self.0[w] |= bit;
        new
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A FAT16 boot sector: 512-byte sectors, 4 per cluster, 1 reserved, 2 FATs of 32
    /// sectors, 512 root entries, 40000 sectors.
    pub(in crate::fs::fat) fn fat16_boot() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = 0xEB;
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        b[0x0D] = 4;
        b[0x0E..0x10].copy_from_slice(&1u16.to_le_bytes());
        b[0x10] = 2;
        b[0x11..0x13].copy_from_slice(&512u16.to_le_bytes());
        b[0x13..0x15].copy_from_slice(&40000u16.to_le_bytes());
        b[0x16..0x18].copy_from_slice(&40u16.to_le_bytes());
        b[0x26] = 0x29;
        b[0x2B..0x36].copy_from_slice(b"LABEL      ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn parses_a_fat16_layout() {
        let g = Geometry::parse(&fat16_boot()).unwrap();
        assert_eq!(g.kind, FatKind::Fat16);
        assert_eq!(g.cluster_size, 2048);
        assert_eq!(g.fat_offset, 512);
        assert_eq!(
            g.root,
            RootDir::Region {
                offset: 512 * 81,
                len: 512 * 32
            }
        );
        assert_eq!(g.data_offset, 512 * (81 + 32));
        assert_eq!(g.clusters, (40000 - 113) / 4);
        assert_eq!(g.bpb_label.as_ref().map(|l| &l[..]), Some(&b"LABEL      "[..]));
    }

    #[test]
    fn refuses_bad_boot_sectors_with_a_reason() {
        type Patch = fn(&mut Vec<u8>);
        let cases: &[(&str, Patch)] = &[
            ("signature", |b| b[510] = 0),
            ("bytes per sector", |b| {
                b[0x0B..0x0D].copy_from_slice(&0u16.to_le_bytes())
            }),
            ("bytes per sector", |b| {
                b[0x0B..0x0D].copy_from_slice(&768u16.to_le_bytes())
            }),
            ("sectors per cluster", |b| b[0x0D] = 3),
            ("sectors per cluster", |b| b[0x0D] = 0),
            ("reserved", |b| b[0x0E] = 0),
            ("number of FATs", |b| b[0x10] = 0),
            ("root directory entries", |b| b[0x11..0x13].fill(0)),
            ("total sector", |b| b[0x20..0x24].copy_from_slice(&5u32.to_le_bytes())),
            ("data area starts", |b| {
                b[0x13..0x15].copy_from_slice(&100u16.to_le_bytes())
            }),
            ("holds", |b| b[0x16..0x18].copy_from_slice(&2u16.to_le_bytes())),
            ("exFAT", |b| b[3..11].copy_from_slice(b"EXFAT   ")),
            // 255 FATs of 65535 sectors: fatfs would overflow computing where data starts.
            ("data area starts", |b| {
                b[0x10] = 255;
                b[0x16..0x18].copy_from_slice(&0xFFFFu16.to_le_bytes());
            }),
        ];
        for (want, patch) in cases {
            let mut b = fat16_boot();
            patch(&mut b);
            let e = Geometry::parse(&b).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn fat32_checks() {
        let mut b = fat16_boot();
        b[0x24..0x5A].fill(0);
        // 16-bit FAT size 0 says FAT32, but 9971 clusters are FAT16's.
        b[0x16..0x18].fill(0);
        b[0x24..0x28].copy_from_slice(&40u32.to_le_bytes());
        b[0x11..0x13].fill(0);
        b[0x0E] = 32;
        b[0x30] = 1;
        b[0x32] = 6;
        b[0x2C..0x30].copy_from_slice(&2u32.to_le_bytes());
        b[0x13..0x15].fill(0);
        b[0x20..0x24].copy_from_slice(&40000u32.to_le_bytes());
        let e = Geometry::parse(&b).unwrap_err();
        assert!(e.contains("laid out for fat32"), "{e}");
        // 600000 sectors of one sector per cluster make it FAT32 (with a big enough FAT).
        b[0x0D] = 1;
        b[0x20..0x24].copy_from_slice(&600_000u32.to_le_bytes());
        b[0x24..0x28].copy_from_slice(&4700u32.to_le_bytes());
        let g = Geometry::parse(&b).unwrap();
        assert_eq!(g.kind, FatKind::Fat32);
        assert_eq!(g.root, RootDir::Chain(2));
        assert_eq!(g.fs_info, Some(512));
        let mut bad = b.clone();
        bad[0x2C..0x30].copy_from_slice(&1u32.to_le_bytes());
        assert!(Geometry::parse(&bad)
            .unwrap_err()
            .contains("root directory starts at cluster 1"));
        let mut bad = b.clone();
        bad[0x2C..0x30].copy_from_slice(&0x0FFF_FFF0u32.to_le_bytes());
        assert!(Geometry::parse(&bad).unwrap_err().contains("does not exist"));
        let mut bad = b.clone();
        bad[0x28] = 0x80 | 3;
        assert!(Geometry::parse(&bad).unwrap_err().contains("active FAT is number 3"));
        let mut bad = b;
        bad[0x2A] = 1;
        assert!(Geometry::parse(&bad).unwrap_err().contains("version"));
    }
}
