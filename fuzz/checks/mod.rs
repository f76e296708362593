//! The check functions behind every fuzz target, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` (which build this as the `ckptfs_fuzz_checks` library) and by
//! `tests/fuzz_corpus.rs` (which includes it with `#[path]`), so that ordinary CI runs
//! the same assertions over the committed seeds without nightly.
//!
//! Every check decodes its input with [`Input`], which never fails (missing bytes read
//! as zero), builds a structure, calls the crate, and compares the outcome with a small
//! reference written here from MS-VHDX: `Ok` with exactly the expected fields, or an
//! error of exactly the expected kind. A check panics (with a message) on any
//! disagreement; the crate panicking is of course a failure too.
// `%` rather than `is_multiple_of`: the main crate's MSRV (1.85) predates it.
#![allow(clippy::manual_is_multiple_of, clippy::needless_range_loop)]

pub mod bat;
pub mod chain_discovery;
pub mod gpt;
pub mod header;
pub mod layered;
pub mod log;
pub mod mbr;
pub mod metadata;
pub mod parent_locator;
pub mod partition;
pub mod partition_seeds;
pub mod partition_table;
pub mod region;
pub mod sector_bitmap;
pub mod seeds;
pub mod vhd_dynamic_header;
pub mod vhd_file;
pub mod vhd_footer;
pub mod vhd_parent_locator;
pub mod vhd_seeds;
pub mod vhdx_file;
pub mod vmdk_descriptor;
pub mod vmdk_esx;
pub mod vmdk_sparse;
pub mod vmware_config;

use ckptfs::format::vhdx::VhdxError;

pub const MIB: u64 = 1 << 20;

/// Every target: its name (the fuzz target's and the seed directory's) and its check.
/// A check: panics on any disagreement with the reference.
pub type Check = fn(&[u8]);

pub const TARGETS: &[(&str, Check)] = &[
    ("header", header::check),
    ("region_table", region::check),
    ("metadata", metadata::check),
    ("parent_locator", parent_locator::check),
    ("bat", bat::check),
    ("sector_bitmap", sector_bitmap::check),
    ("log_replay", log::check),
    ("layered_read", layered::check),
    ("vhdx_file", vhdx_file::check),
    ("mbr", mbr::check),
    ("gpt", gpt::check),
    ("partition_table", partition_table::check),
    ("vhd_footer", vhd_footer::check),
    ("vhd_dynamic_header", vhd_dynamic_header::check),
    ("vhd_parent_locator", vhd_parent_locator::check),
    ("vhd_file", vhd_file::check),
    ("chain_discovery", chain_discovery::check),
    ("vmware_config", vmware_config::check),
    ("vmdk_descriptor", vmdk_descriptor::check),
    ("vmdk_sparse", vmdk_sparse::check),
    ("vmdk_esx", vmdk_esx::check),
];

/// A cursor over the fuzz input that never runs dry: past the end every read is zero,
/// so that every byte string decodes to some structure.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }

    /// `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    /// Up to `n` bytes: fewer if the input ends first.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// The error classes a check compares; messages are free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotVhdx,
    Corrupt,
    Truncated,
    Unsupported,
    Io,
}

pub fn kind(e: &VhdxError) -> Kind {
    match e {
        VhdxError::NotVhdx { .. } => Kind::NotVhdx,
        VhdxError::Corrupt { .. } => Kind::Corrupt,
        VhdxError::Truncated { .. } => Kind::Truncated,
        VhdxError::Unsupported(_) => Kind::Unsupported,
        VhdxError::Io { .. } => Kind::Io,
    }
}

/// The outcome class of a crate call, for comparison with a reference.
pub fn outcome<T>(r: &Result<T, VhdxError>) -> Result<(), Kind> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(kind(e)),
    }
}

pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A GUID from its 16 on-disk bytes (Microsoft's mixed-endian layout), decoded by hand
/// rather than with the `uuid` helper the crate uses.
pub fn guid_at(b: &[u8], at: usize) -> uuid::Uuid {
    let g = &b[at..at + 16];
    let mut be = [0u8; 16];
    be[..4].copy_from_slice(&[g[3], g[2], g[1], g[0]]);
    be[4..6].copy_from_slice(&[g[5], g[4]]);
    be[6..8].copy_from_slice(&[g[7], g[6]]);
    be[8..].copy_from_slice(&g[8..]);
    uuid::Uuid::from_bytes(be)
}

/// The 16 on-disk bytes of a GUID.
pub fn guid_bytes(g: &uuid::Uuid) -> [u8; 16] {
    let be = g.as_bytes();
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&[be[3], be[2], be[1], be[0]]);
    b[4..6].copy_from_slice(&[be[5], be[4]]);
    b[6..8].copy_from_slice(&[be[7], be[6]]);
    b[8..].copy_from_slice(&be[8..]);
    b
}

/// CRC-32C (Castagnoli, reflected), table driven, written here independently of the
/// `crc32c` crate the reader uses.
pub fn crc32c(b: &[u8]) -> u32 {
    !crc32c_update(!0, b)
}

/// Slicing-by-8 over the bitwise-derived table (the region table check hashes 64 KiB
/// several times per input).
fn crc32c_update(mut crc: u32, b: &[u8]) -> u32 {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for i in 0..256 {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            t[0][i] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            }
        }
        t
    });
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][(lo >> 8 & 0xFF) as usize]
            ^ t[5][(lo >> 16 & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][usize::from(c[4])]
            ^ t[2][usize::from(c[5])]
            ^ t[1][usize::from(c[6])]
            ^ t[0][usize::from(c[7])];
    }
    for &x in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(x)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32C of `b` with its checksum field at `at` taken as zero.
pub fn crc_with_zeroed(b: &[u8], at: usize) -> u32 {
    let crc = crc32c_update(!0, &b[..at]);
    let crc = crc32c_update(crc, &[0; 4]);
    !crc32c_update(crc, &b[at + 4..])
}

/// Store the CRC-32C of `b` in its checksum field at `at`.
pub fn fix_crc(b: &mut [u8], at: usize) {
    let crc = crc_with_zeroed(b, at);
    put32(b, at, crc);
}

/// A byte that depends on a seed and a position: the content of fake disks and files.
pub fn pattern(seed: u64, pos: u64) -> u8 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(pos / 8);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> ((pos % 8) * 8)) as u8 | 1
}

/// UTF-16LE bytes of `s`.
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// `{xxxxxxxx-...}` as Windows writes a GUID.
pub fn braced(g: &uuid::Uuid) -> String {
    format!("{{{}}}", g.hyphenated())
}

/// Outcome counters, kept only when `CKPTFS_FUZZ_STATS` is set (the corpus test then
/// prints them), to see which outcomes the seeds and mutations reach.
pub fn note(what: &str) {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("CKPTFS_FUZZ_STATS").is_some()) {
        return;
    }
    let mut m = stats().lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(what.to_string()).or_default() += 1;
}

pub fn stats() -> &'static std::sync::Mutex<std::collections::BTreeMap<String, u64>> {
    static STATS: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeMap<String, u64>>> =
        std::sync::OnceLock::new();
    STATS.get_or_init(Default::default)
}

/// Print when `CKPTFS_FUZZ_TRACE` is set: what a check decoded from its input.
pub fn trace(what: impl FnOnce() -> String) {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("CKPTFS_FUZZ_TRACE").is_some()) {
        eprintln!("{}", what());
    }
}

/// The error classes of the VHD reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhdKind {
    Cookie,
    Checksum,
    Corrupt,
    Truncated,
    Unsupported,
    Io,
}

pub fn vhd_kind(e: &ckptfs::format::vhd::VhdError) -> VhdKind {
    use ckptfs::format::vhd::VhdError as E;
    match e {
        E::Cookie { .. } => VhdKind::Cookie,
        E::Checksum { .. } => VhdKind::Checksum,
        E::Corrupt { .. } => VhdKind::Corrupt,
        E::Truncated { .. } => VhdKind::Truncated,
        E::Unsupported(_) => VhdKind::Unsupported,
        E::Io { .. } => VhdKind::Io,
    }
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// The VHD checksum, written here independently: the one's complement of the sum of
/// every byte but the four of the checksum field at `at`.
pub fn vhd_sum(b: &[u8], at: usize) -> u32 {
    let mut s: u32 = 0;
    for (i, &x) in b.iter().enumerate() {
        if i < at || i >= at + 4 {
            s = s.wrapping_add(u32::from(x));
        }
    }
    !s
}

/// Store the VHD checksum of `b` at `at`.
pub fn vhd_fix(b: &mut [u8], at: usize) {
    let s = vhd_sum(b, at);
    b[at..at + 4].copy_from_slice(&s.to_be_bytes());
}
