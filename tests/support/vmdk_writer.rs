//! Test-only writer of VMware VMDK disks: descriptors and every extent kind ckptfs
//! reads, written from VMware's "Virtual Disk Format 5.0" (descriptor, hosted sparse
//! `KDMV` extents, streamOptimized, flat extents) and, for the ESXi-only kinds the spec
//! leaves out, from the field layouts the independent readers agree on (`COWD`
//! vmfsSparse: 4096-entry grain tables of 32-bit sector numbers; SESparse: constant and
//! volatile headers, 64-bit grain table entries with a type nibble and a swizzled grain
//! index) and a real ESXi SESparse file (`../shared/samples/vmdk/sesparse.vmdk.gz`) for
//! the region layout. It shares no code with `src/`: this is what the reader is checked
//! against. `scripts/crosscheck_writer.py --format vmdk` (fixtures from
//! `examples/make_vmdk_fixtures.rs`) checks the output against qemu-img, libvmdk and
//! dissect.hypervisor.
//!
//! A disk (one snapshot's file) is a [`DiskSpec`]: a descriptor and extents. A
//! [`ChainBuilder`] turns per-layer guest writes into such disks, VMware-named
//! (`vm.vmdk`, `vm-000001.vmdk`, ... with `-s001`, `-f001`, `-flat`, `-delta`,
//! `-sesparse` extent files), and keeps the expected raw disk of every state
//! ([`Model`]: each state is itself over its ancestors).
//!
//! Semantics written here (and so expected of readers):
//! - a VMDK grain is copied up whole: a child's allocated grain holds the parent's bytes
//!   where the guest did not write, so a state is "own grains, else the parent's";
//! - a zeroed-grain GTE (hosted sparse with the zero-grain flag, value 1), an SESparse
//!   "zero" entry and an SESparse "unmapped" entry read as zeros; an SESparse
//!   "unallocated" entry and a 0 GTE fall through to the parent (zeros in a base).
//!   [`ChainBuilder::alt_unmapped_transparent`] is the state if "unmapped" fell through
//!   instead (what dissect.hypervisor does), for the cross-check to name the difference.
//!
//! File layouts: grains are stored out of guest order (even grain numbers first, then
//! odd), so a reader that assumes file order = guest order fails; SESparse grain
//! indexes are spread so that both halves of the swizzled index are non-zero.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::model::Model;

pub const SECTOR: u64 = 512;
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
/// "No parent" in `parentCID`.
pub const NO_PARENT_CID: u32 = 0xffff_ffff;
/// `gdOffset` of a streamOptimized header: the grain directory is found via the footer.
pub const GD_AT_END: u64 = u64::MAX;

/// Hosted sparse header flags (spec 5.0, "Header and Footer").
pub mod flag {
    pub const VALID_NEWLINE_TEST: u32 = 1 << 0;
    pub const REDUNDANT_GRAIN_TABLE: u32 = 1 << 1;
    pub const ZERO_GRAIN_GTE: u32 = 1 << 2;
    pub const COMPRESSED_GRAINS: u32 = 1 << 16;
    pub const MARKERS: u32 = 1 << 17;
}

/// Byte offsets of hosted sparse (`KDMV`) header fields, for tests that patch them.
pub mod kdmv {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const FLAGS: usize = 8;
    pub const CAPACITY: usize = 12;
    pub const GRAIN_SIZE: usize = 20;
    pub const DESCRIPTOR_OFFSET: usize = 28;
    pub const DESCRIPTOR_SIZE: usize = 36;
    pub const NUM_GTES_PER_GT: usize = 44;
    pub const RGD_OFFSET: usize = 48;
    pub const GD_OFFSET: usize = 56;
    pub const OVERHEAD: usize = 64;
    pub const UNCLEAN_SHUTDOWN: usize = 72;
    pub const NEWLINE_CHARS: usize = 73;
    pub const COMPRESS_ALGORITHM: usize = 77;
}

/// Byte offsets of `COWD` header fields (all 32-bit little-endian).
pub mod cowd {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const FLAGS: usize = 8;
    pub const CAPACITY: usize = 12;
    pub const GRAIN_SIZE: usize = 16;
    pub const GD_OFFSET: usize = 20;
    pub const GD_ENTRIES: usize = 24;
    pub const NEXT_FREE_SECTOR: usize = 28;
    pub const HEADER_LEN: usize = 2048;
    pub const GTES_PER_GT: u64 = 4096;
}

/// SESparse constant header: index of each 64-bit field.
pub mod ses {
    pub const CONST_MAGIC: u64 = 0x0000_0000_cafe_babe;
    pub const VOLATILE_MAGIC: u64 = 0x0000_0000_cafe_cafe;
    pub const JOURNAL_MAGIC: u64 = 0x0000_0000_deaf_c0de;
    pub const VERSION: u64 = 0x0000_0002_0000_0001;
    pub const GRAIN_SECTORS: u64 = 8;
    pub const GT_SECTORS: u64 = 64;
    pub const GTES_PER_GT: u64 = 4096;
    /// Field indexes (×8 = byte offset) in the constant header.
    pub const F_CAPACITY: usize = 2;
    pub const F_VOLATILE_OFFSET: usize = 10;
    pub const F_JOURNAL_HEADER_OFFSET: usize = 12;
    pub const F_GD_OFFSET: usize = 16;
    pub const F_GD_SIZE: usize = 17;
    pub const F_GT_OFFSET: usize = 18;
    pub const F_GRAINS_OFFSET: usize = 24;
    /// GD entry: allocated grain table (low 32 bits: its index in the table region).
    pub const GD_ALLOCATED: u64 = 0x1000_0000_0000_0000;
    pub const GTE_UNALLOCATED: u64 = 0;
    pub const GTE_UNMAPPED: u64 = 0x1000_0000_0000_0000;
    pub const GTE_ZERO: u64 = 0x2000_0000_0000_0000;
    pub const GTE_ALLOCATED: u64 = 0x3000_0000_0000_0000;
}

/// The 64-bit SESparse GT entry of an allocated grain with grain index `index`: type
/// nibble 3, then the low 12 bits of the index in bits 48..60 and the rest in 0..48.
pub fn ses_allocated_gte(index: u64) -> u64 {
    assert!(index < 1 << 60);
    ses::GTE_ALLOCATED | ((index & 0xfff) << 48) | (index >> 12)
}

/// Inverse of [`ses_allocated_gte`] (for self-checks).
pub fn ses_grain_index(gte: u64) -> u64 {
    ((gte & 0x0fff_0000_0000_0000) >> 48) | ((gte & 0x0000_ffff_ffff_ffff) << 12)
}

pub fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

// ---------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------

/// An extent line's access word; the variant names follow the words (`NOACCESS`).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Rw,
    RdOnly,
    NoAccess,
}

impl Access {
    pub fn word(self) -> &'static str {
        match self {
            Access::Rw => "RW",
            Access::RdOnly => "RDONLY",
            Access::NoAccess => "NOACCESS",
        }
    }
}

/// How the primary grain directory of a hosted sparse extent is damaged (the redundant
/// one stays right, so a reader that falls back to it reads the disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GdDamage {
    /// Every primary GD entry points far past the end of the file.
    PastEof,
}

/// Options of a hosted sparse (`KDMV`) extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseOpts {
    /// Header version: 1 (Workstation), 2, or 3 (ESXi's CBT-aware hosted sparse).
    pub version: u32,
    /// Grain size in sectors (a power of two >= 8; VMware's default 128 = 64 KiB).
    pub grain_sectors: u64,
    /// Write a redundant grain directory with its own grain tables (flag bit 1).
    pub redundant_gd: bool,
    /// Set the zeroed-grain GTE flag (bit 2); needed for [`LayerEdits::zero`].
    pub zero_grain_flag: bool,
    /// Allocate every grain table (VMware's way) or only those with an entry (GD entry
    /// 0 for the others).
    pub all_gts: bool,
    pub damage_primary_gd: Option<GdDamage>,
}

impl Default for SparseOpts {
    fn default() -> Self {
        SparseOpts {
            version: 1,
            grain_sectors: 128,
            redundant_gd: true,
            zero_grain_flag: false,
            all_gts: true,
            damage_primary_gd: None,
        }
    }
}

/// What an extent is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentKind {
    /// `FLAT` (offset in sectors into the file; the bytes before it are junk 0xEE).
    Flat {
        offset: u64,
    },
    /// ESXi `VMFS`: a flat file without offset.
    Vmfs,
    Zero,
    /// `SPARSE`, hosted sparse `KDMV`.
    Sparse(SparseOpts),
    /// `SPARSE` in a streamOptimized file: deflate grains, markers, GD in the footer.
    Stream {
        grain_sectors: u64,
    },
    /// `VMFSSPARSE`, ESXi `COWD`.
    Cowd {
        grain_sectors: u32,
    },
    /// `SESPARSE`. `journal_needs_replay` sets the volatile header's replay flag.
    SeSparse {
        journal_needs_replay: bool,
    },
}

impl ExtentKind {
    pub fn type_word(&self) -> &'static str {
        match self {
            ExtentKind::Flat { .. } => "FLAT",
            ExtentKind::Vmfs => "VMFS",
            ExtentKind::Zero => "ZERO",
            ExtentKind::Sparse(_) | ExtentKind::Stream { .. } => "SPARSE",
            ExtentKind::Cowd { .. } => "VMFSSPARSE",
            ExtentKind::SeSparse { .. } => "SESPARSE",
        }
    }

    /// Grain size in sectors (None for flat and zero extents).
    pub fn grain_sectors(&self) -> Option<u64> {
        match self {
            ExtentKind::Sparse(o) => Some(o.grain_sectors),
            ExtentKind::Stream { grain_sectors } => Some(*grain_sectors),
            ExtentKind::Cowd { grain_sectors } => Some(*grain_sectors as u64),
            ExtentKind::SeSparse { .. } => Some(ses::GRAIN_SECTORS),
            _ => None,
        }
    }

    pub fn is_sparse(&self) -> bool {
        self.grain_sectors().is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentSpec {
    pub access: Access,
    pub sectors: u64,
    pub kind: ExtentKind,
    /// File name as the descriptor names it (relative to the descriptor's directory);
    /// None for ZERO.
    pub file: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
}

/// The descriptor's content. Extent lines come from the disk's extents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub cid: u32,
    pub parent_cid: u32,
    pub create_type: String,
    pub parent_hint: Option<String>,
    pub encoding: Encoding,
    /// `ddb.*` keys in order (without the `ddb.` prefix).
    pub ddb: Vec<(String, String)>,
    /// Written verbatim after the header lines (tests of odd descriptors).
    pub extra_lines: Vec<String>,
    /// CR LF line ends, as a descriptor edited on Windows has.
    pub crlf: bool,
}

/// Where the descriptor goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorPlace {
    /// A text file of its own (the disk's file).
    File,
    /// Embedded in the first extent, which is the disk's file (monolithicSparse,
    /// streamOptimized).
    Embedded,
}

/// One disk file of a snapshot: descriptor plus extents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub descriptor: Descriptor,
    pub place: DescriptorPlace,
    pub extents: Vec<ExtentSpec>,
}

impl DiskSpec {
    pub fn capacity_sectors(&self) -> u64 {
        self.extents.iter().map(|e| e.sectors).sum()
    }
}

/// The createTypes the builder makes, with their VMware file naming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variant {
    /// One `KDMV` file with the descriptor embedded.
    MonolithicSparse(SparseOpts),
    /// Descriptor + `-s001.vmdk`... sparse extents of `extent_sectors` each (VMware: 2 GiB
    /// minus 64 KiB; any grain multiple here).
    TwoGbMaxExtentSparse { opts: SparseOpts, extent_sectors: u64 },
    /// Descriptor + `-flat.vmdk` (`offset` sectors of junk before the data).
    MonolithicFlat { offset: u64 },
    /// Descriptor + `-f001.vmdk`...
    TwoGbMaxExtentFlat { extent_sectors: u64 },
    /// One compressed file with embedded descriptor and the GD in the footer.
    StreamOptimized { grain_sectors: u64 },
    /// ESXi: descriptor + `-flat.vmdk` as a `VMFS` extent.
    Vmfs,
    /// ESXi: descriptor + `-delta.vmdk` (`COWD`).
    VmfsSparse { grain_sectors: u32 },
    /// ESXi: descriptor + `-sesparse.vmdk`.
    SeSparse { journal_needs_replay: bool },
    /// A descriptor file with these extents (file names given), createType given.
    Custom {
        create_type: String,
        extents: Vec<ExtentSpec>,
    },
}

impl Variant {
    pub fn sparse() -> Variant {
        Variant::MonolithicSparse(SparseOpts::default())
    }

    pub fn vmfs_sparse() -> Variant {
        Variant::VmfsSparse { grain_sectors: 1 }
    }

    pub fn se_sparse() -> Variant {
        Variant::SeSparse {
            journal_needs_replay: false,
        }
    }

    pub fn create_type(&self) -> String {
        match self {
            Variant::MonolithicSparse(_) => "monolithicSparse".into(),
            Variant::TwoGbMaxExtentSparse { .. } => "twoGbMaxExtentSparse".into(),
            Variant::MonolithicFlat { .. } => "monolithicFlat".into(),
            Variant::TwoGbMaxExtentFlat { .. } => "twoGbMaxExtentFlat".into(),
            Variant::StreamOptimized { .. } => "streamOptimized".into(),
            Variant::Vmfs => "vmfs".into(),
            Variant::VmfsSparse { .. } => "vmfsSparse".into(),
            Variant::SeSparse { .. } => "seSparse".into(),
            Variant::Custom { create_type, .. } => create_type.clone(),
        }
    }

    /// Whether a state of this variant can sit over a parent.
    pub fn can_be_child(&self) -> bool {
        match self {
            Variant::MonolithicSparse(_)
            | Variant::TwoGbMaxExtentSparse { .. }
            | Variant::VmfsSparse { .. }
            | Variant::SeSparse { .. } => true,
            Variant::Custom { extents, .. } => extents.iter().all(|e| e.kind.is_sparse()),
            _ => false,
        }
    }

    /// Descriptor place and extents for a disk file named `file_name` of `sectors`.
    pub fn layout(&self, file_name: &str, sectors: u64) -> (DescriptorPlace, Vec<ExtentSpec>) {
        let stem = file_name.strip_suffix(".vmdk").unwrap_or(file_name);
        let one = |kind: ExtentKind, file: String| ExtentSpec {
            access: Access::Rw,
            sectors,
            kind,
            file: Some(file),
        };
        let split = |each: u64, kind: ExtentKind, letter: char| -> Vec<ExtentSpec> {
            assert!(each > 0);
            let n = sectors.div_ceil(each);
            (0..n)
                .map(|i| ExtentSpec {
                    access: Access::Rw,
                    sectors: each.min(sectors - i * each),
                    kind: kind.clone(),
                    file: Some(format!("{stem}-{letter}{:03}.vmdk", i + 1)),
                })
                .collect()
        };
        match self {
            Variant::MonolithicSparse(o) => (
                DescriptorPlace::Embedded,
                vec![one(ExtentKind::Sparse(*o), file_name.into())],
            ),
            Variant::TwoGbMaxExtentSparse { opts, extent_sectors } => (
                DescriptorPlace::File,
                split(*extent_sectors, ExtentKind::Sparse(*opts), 's'),
            ),
            Variant::MonolithicFlat { offset } => (
                DescriptorPlace::File,
                vec![one(ExtentKind::Flat { offset: *offset }, format!("{stem}-flat.vmdk"))],
            ),
            Variant::TwoGbMaxExtentFlat { extent_sectors } => (
                DescriptorPlace::File,
                split(*extent_sectors, ExtentKind::Flat { offset: 0 }, 'f'),
            ),
            Variant::StreamOptimized { grain_sectors } => (
                DescriptorPlace::Embedded,
                vec![one(
                    ExtentKind::Stream {
                        grain_sectors: *grain_sectors,
                    },
                    file_name.into(),
                )],
            ),
            Variant::Vmfs => (
                DescriptorPlace::File,
                vec![one(ExtentKind::Vmfs, format!("{stem}-flat.vmdk"))],
            ),
            Variant::VmfsSparse { grain_sectors } => (
                DescriptorPlace::File,
                vec![one(
                    ExtentKind::Cowd {
                        grain_sectors: *grain_sectors,
                    },
                    format!("{stem}-delta.vmdk"),
                )],
            ),
            Variant::SeSparse { journal_needs_replay } => (
                DescriptorPlace::File,
                vec![one(
                    ExtentKind::SeSparse {
                        journal_needs_replay: *journal_needs_replay,
                    },
                    format!("{stem}-sesparse.vmdk"),
                )],
            ),
            Variant::Custom { extents, .. } => {
                assert_eq!(
                    extents.iter().map(|e| e.sectors).sum::<u64>(),
                    sectors,
                    "custom extents must cover the disk"
                );
                (DescriptorPlace::File, extents.clone())
            }
        }
    }
}

/// How a child names its parent in `parentFileNameHint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// The parent's file name (Workstation).
    Relative,
    /// `C:\VMs\<vm>\<parent>` (a Windows host; only the file name helps here).
    WindowsAbsolute,
    /// `/vmfs/volumes/<datastore uuid>/<vm>/<parent>` (ESXi).
    VmfsVolumes,
    /// This text as is.
    Text(String),
}

impl Hint {
    pub fn text(&self, parent_file_name: &str) -> String {
        match self {
            Hint::Relative => parent_file_name.to_string(),
            Hint::WindowsAbsolute => format!("C:\\VMs\\vm\\{parent_file_name}"),
            Hint::VmfsVolumes => {
                format!("/vmfs/volumes/5f1c0a3e-7d2b9c44-1a2b-0050569a0b1c/vm/{parent_file_name}")
            }
            Hint::Text(t) => t.clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// Grain contents
// ---------------------------------------------------------------------------

/// One grain of a sparse extent, as the file records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grain {
    /// Allocated: the whole grain's bytes (the extent's last grain may be shorter).
    Data(Vec<u8>),
    /// Zeroed-grain GTE / SESparse "zero".
    Zero,
    /// SESparse "unmapped".
    Unmapped,
}

/// An extent's contents: for sparse kinds, grain number (relative to the extent) ->
/// grain; for flat kinds, the extent's bytes are read from the model.
pub type Grains = BTreeMap<u64, Grain>;

// ---------------------------------------------------------------------------
// Descriptor text
// ---------------------------------------------------------------------------

fn quote_free(s: &str) -> &str {
    assert!(!s.contains('"') && !s.contains('\n'), "{s:?} cannot be quoted");
    s
}

/// The descriptor as text (before encoding).
pub fn descriptor_text(d: &Descriptor, extents: &[ExtentSpec]) -> String {
    let enc = match d.encoding {
        Encoding::Utf8 => "UTF-8",
        Encoding::Windows1252 => "windows-1252",
    };
    let mut t = String::from("# Disk DescriptorFile\nversion=1\n");
    t += &format!("encoding=\"{enc}\"\n");
    t += &format!("CID={:08x}\nparentCID={:08x}\n", d.cid, d.parent_cid);
    t += "isNativeSnapshot=\"no\"\n";
    t += &format!("createType=\"{}\"\n", quote_free(&d.create_type));
    if let Some(h) = &d.parent_hint {
        t += &format!("parentFileNameHint=\"{}\"\n", quote_free(h));
    }
    for l in &d.extra_lines {
        t += l;
        t += "\n";
    }
    t += "\n# Extent description\n";
    for e in extents {
        t += &format!("{} {} {}", e.access.word(), e.sectors, e.kind.type_word());
        if let Some(f) = &e.file {
            t += &format!(" \"{}\"", quote_free(f));
        }
        if let ExtentKind::Flat { offset } = e.kind {
            t += &format!(" {offset}");
        }
        t += "\n";
    }
    t += "\n# The Disk Data Base \n#DDB\n\n";
    for (k, v) in &d.ddb {
        t += &format!("ddb.{k} = \"{}\"\n", quote_free(v));
    }
    if d.crlf {
        t = t.replace('\n', "\r\n");
    }
    t
}

/// Encodes descriptor text in the descriptor's character set.
pub fn encode(text: &str, enc: Encoding) -> Vec<u8> {
    match enc {
        Encoding::Utf8 => text.as_bytes().to_vec(),
        Encoding::Windows1252 => {
            let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
            assert!(!unmappable, "{text:?} has characters windows-1252 lacks");
            bytes.into_owned()
        }
    }
}

/// The ddb keys VMware writes, with geometry from the size.
pub fn default_ddb(sectors: u64, cid: u32, adapter: &str) -> Vec<(String, String)> {
    let (c, h, s) = if adapter == "ide" {
        ((sectors / (16 * 63)).clamp(1, 16383), 16, 63)
    } else {
        ((sectors / (255 * 63)).max(1), 255, 63)
    };
    vec![
        ("adapterType".into(), adapter.into()),
        ("geometry.cylinders".into(), c.to_string()),
        ("geometry.heads".into(), h.to_string()),
        ("geometry.sectors".into(), s.to_string()),
        (
            "longContentID".into(),
            format!("{:016x}{:08x}{cid:08x}", mix(cid as u64), !cid),
        ),
        ("uuid".into(), uuid_text(mix(cid as u64 ^ 0x55))),
        ("virtualHWVersion".into(), "21".into()),
    ]
}

fn uuid_text(x: u64) -> String {
    let b = x.to_be_bytes();
    let c = mix(x).to_be_bytes();
    format!(
        "60 00 C2 {:02x} {:02x} {:02x} {:02x} {:02x}-{:02x} {:02x} {:02x} {:02x} {:02x} {:02x} {:02x} {:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], c[0], c[1], c[2], c[3], c[4]
    )
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A CID derived from a name (stable across runs; never ffffffff/fffffffe).
pub fn cid_for(name: &str) -> u32 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let c = mix(h) as u32;
    if c >= 0xffff_fffe {
        0x1234_5678
    } else {
        c
    }
}

// ---------------------------------------------------------------------------
// Extent writers
// ---------------------------------------------------------------------------

/// Where an extent writer put its structures (byte offsets), for tests that damage or
/// check them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtentLayout {
    pub path: PathBuf,
    pub file_len: u64,
    /// KDMV: descriptor; SESparse: volatile header.
    pub descriptor_offset: u64,
    pub gd_offset: u64,
    pub rgd_offset: Option<u64>,
    pub gd_entries: u64,
    /// Grain number -> byte offset of its data (or of its marker, streamOptimized).
    pub grain_offsets: BTreeMap<u64, u64>,
    /// streamOptimized: footer header offset.
    pub footer_offset: Option<u64>,
}

/// Order grains are stored in: even grain numbers, then odd.
fn storage_order<T>(grains: &BTreeMap<u64, T>, only: impl Fn(&T) -> bool) -> Vec<u64> {
    let mut v: Vec<u64> = grains.iter().filter(|(_, g)| only(g)).map(|(&k, _)| k).collect();
    v.sort_by_key(|g| (g % 2, *g));
    v
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn grain_bytes(g: &Grain, grain_len: usize) -> Vec<u8> {
    match g {
        Grain::Data(d) => {
            let mut v = d.clone();
            v.resize(grain_len, 0);
            v
        }
        _ => vec![0; grain_len],
    }
}

/// Writes the non-zero 4 KiB pieces of `data` at `at` (the rest stays a hole).
fn write_nonzero(f: &File, at: u64, data: &[u8]) -> io::Result<()> {
    for (i, piece) in data.chunks(4096).enumerate() {
        if piece.iter().any(|&b| b != 0) {
            f.write_all_at(piece, at + i as u64 * 4096)?;
        }
    }
    Ok(())
}

/// A `KDMV` header.
#[allow(clippy::too_many_arguments)]
pub fn kdmv_header(
    version: u32,
    flags: u32,
    capacity: u64,
    grain: u64,
    desc_offset: u64,
    desc_size: u64,
    rgd: u64,
    gd: u64,
    overhead: u64,
    compress: u16,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..4].copy_from_slice(b"KDMV");
    put_u32(&mut h, kdmv::VERSION, version);
    put_u32(&mut h, kdmv::FLAGS, flags);
    put_u64(&mut h, kdmv::CAPACITY, capacity);
    put_u64(&mut h, kdmv::GRAIN_SIZE, grain);
    put_u64(&mut h, kdmv::DESCRIPTOR_OFFSET, desc_offset);
    put_u64(&mut h, kdmv::DESCRIPTOR_SIZE, desc_size);
    put_u32(&mut h, kdmv::NUM_GTES_PER_GT, 512);
    put_u64(&mut h, kdmv::RGD_OFFSET, rgd);
    put_u64(&mut h, kdmv::GD_OFFSET, gd);
    put_u64(&mut h, kdmv::OVERHEAD, overhead);
    h[kdmv::UNCLEAN_SHUTDOWN] = 0;
    h[kdmv::NEWLINE_CHARS..kdmv::NEWLINE_CHARS + 4].copy_from_slice(b"\n \r\n");
    h[kdmv::COMPRESS_ALGORITHM..kdmv::COMPRESS_ALGORITHM + 2].copy_from_slice(&compress.to_le_bytes());
    h
}

/// Descriptor sectors reserved in a file: VMware reserves 20; more if the text needs.
fn descriptor_sectors(desc: Option<&[u8]>) -> u64 {
    desc.map_or(0, |d| (d.len() as u64 + 1).div_ceil(SECTOR).max(20))
}

/// A hosted sparse extent. `desc` is the embedded descriptor, if any.
pub fn write_kdmv(
    path: &Path,
    capacity: u64,
    o: &SparseOpts,
    grains: &Grains,
    desc: Option<&[u8]>,
) -> io::Result<ExtentLayout> {
    let g = o.grain_sectors;
    if !g.is_power_of_two() || g < 8 {
        return Err(invalid(format!("grain size {g} sectors is not a power of two >= 8")));
    }
    if !o.zero_grain_flag && grains.values().any(|x| *x == Grain::Zero) {
        return Err(invalid("zero grains need the zero-grain flag".into()));
    }
    if grains.values().any(|x| *x == Grain::Unmapped) {
        return Err(invalid("hosted sparse has no unmapped grains".into()));
    }
    let n_grains = capacity.div_ceil(g);
    let n_gts = n_grains.div_ceil(512);
    let gd_sectors = (n_gts * 4).div_ceil(SECTOR);
    let gts_needed: Vec<bool> = (0..n_gts)
        .map(|t| o.all_gts || grains.range(t * 512..(t + 1) * 512).next().is_some())
        .collect();
    let n_alloc_gts = gts_needed.iter().filter(|&&b| b).count() as u64;
    let desc_sectors = descriptor_sectors(desc);
    let mut at = 1 + desc_sectors;
    let desc_offset = if desc.is_some() { 1 } else { 0 };
    let rgd = if o.redundant_gd {
        let r = at;
        at += gd_sectors + n_alloc_gts * 4;
        Some(r)
    } else {
        None
    };
    let gd = at;
    at += gd_sectors + n_alloc_gts * 4;
    let overhead = at.div_ceil(g) * g;
    // Grain placement.
    let mut layout = ExtentLayout {
        path: path.to_path_buf(),
        descriptor_offset: desc_offset * SECTOR,
        gd_offset: gd * SECTOR,
        rgd_offset: rgd.map(|r| r * SECTOR),
        gd_entries: n_gts,
        ..Default::default()
    };
    let mut next = overhead;
    for k in storage_order(grains, |x| matches!(x, Grain::Data(_))) {
        layout.grain_offsets.insert(k, next * SECTOR);
        next += g;
    }
    layout.file_len = next * SECTOR;
    let f = File::create(path)?;
    f.set_len(layout.file_len)?;
    let mut flags = flag::VALID_NEWLINE_TEST;
    if o.redundant_gd {
        flags |= flag::REDUNDANT_GRAIN_TABLE;
    }
    if o.zero_grain_flag {
        flags |= flag::ZERO_GRAIN_GTE;
    }
    let h = kdmv_header(
        o.version,
        flags,
        capacity,
        g,
        desc_offset,
        desc_sectors,
        rgd.unwrap_or(0),
        gd,
        overhead,
        0,
    );
    f.write_all_at(&h, 0)?;
    if let Some(d) = desc {
        f.write_all_at(d, SECTOR)?;
    }
    // Grain tables.
    let gt_for = |t: u64| -> Vec<u8> {
        let mut gt = vec![0u8; 2048];
        for (&k, x) in grains.range(t * 512..(t + 1) * 512) {
            let v = match x {
                Grain::Data(_) => (layout.grain_offsets[&k] / SECTOR) as u32,
                Grain::Zero => 1,
                Grain::Unmapped => unreachable!(),
            };
            put_u32(&mut gt, ((k - t * 512) * 4) as usize, v);
        }
        gt
    };
    for (dir, damaged) in [(rgd, false), (Some(gd), o.damage_primary_gd.is_some())] {
        let Some(dir) = dir else { continue };
        let mut gdb = vec![0u8; (gd_sectors * SECTOR) as usize];
        let mut gt_at = dir + gd_sectors;
        for t in 0..n_gts {
            if !gts_needed[t as usize] {
                continue;
            }
            let entry = if damaged { 0x7fff_0000 + t as u32 } else { gt_at as u32 };
            put_u32(&mut gdb, (t * 4) as usize, entry);
            f.write_all_at(&gt_for(t), gt_at * SECTOR)?;
            gt_at += 4;
        }
        f.write_all_at(&gdb, dir * SECTOR)?;
    }
    let glen = (g * SECTOR) as usize;
    for (&k, &off) in &layout.grain_offsets {
        write_nonzero(&f, off, &grain_bytes(&grains[&k], glen))?;
    }
    f.sync_all()?;
    Ok(layout)
}

fn marker(val: u64, size: u32, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    put_u64(&mut m, 0, val);
    put_u32(&mut m, 8, size);
    put_u32(&mut m, 12, kind);
    m
}

/// zlib (RFC 1950) stream of `data`, as VMware and qemu write compressed grains.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A streamOptimized file: header (gdOffset = GD_AT_END), embedded descriptor, grains
/// in guest order each behind its LBA/size header, a GT marker and GT after each grain
/// table's grains, the GD marker and GD, the footer marker and footer, end-of-stream.
pub fn write_stream(path: &Path, capacity: u64, g: u64, grains: &Grains, desc: &[u8]) -> io::Result<ExtentLayout> {
    if grains.values().any(|x| !matches!(x, Grain::Data(_))) {
        return Err(invalid("streamOptimized has only allocated grains".into()));
    }
    let n_grains = capacity.div_ceil(g);
    let n_gts = n_grains.div_ceil(512);
    let gd_sectors = (n_gts * 4).div_ceil(SECTOR);
    let desc_sectors = (desc.len() as u64 + 1).div_ceil(SECTOR);
    let overhead = (1 + desc_sectors).div_ceil(g) * g;
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let flags = flag::VALID_NEWLINE_TEST | flag::COMPRESSED_GRAINS | flag::MARKERS;
    let mut layout = ExtentLayout {
        path: path.to_path_buf(),
        descriptor_offset: SECTOR,
        gd_offset: 0,
        gd_entries: n_gts,
        ..Default::default()
    };
    let mut at = overhead;
    let mut gd = vec![0u8; (gd_sectors * SECTOR) as usize];
    let glen = (g * SECTOR) as usize;
    for t in 0..n_gts {
        let mut gt = vec![0u8; 2048];
        let mut any = false;
        for (&k, x) in grains.range(t * 512..(t + 1) * 512) {
            let z = deflate(&grain_bytes(x, glen));
            let mut rec = Vec::with_capacity(12 + z.len());
            rec.extend_from_slice(&(k * g).to_le_bytes());
            rec.extend_from_slice(&(z.len() as u32).to_le_bytes());
            rec.extend_from_slice(&z);
            rec.resize((rec.len() as u64).div_ceil(SECTOR) as usize * SECTOR as usize, 0);
            layout.grain_offsets.insert(k, at * SECTOR);
            put_u32(&mut gt, ((k - t * 512) * 4) as usize, at as u32);
            let n = rec.len() as u64 / SECTOR;
            out.push((at, rec));
            at += n;
            any = true;
        }
        if any {
            out.push((at, marker(4, 0, 1).to_vec()));
            at += 1;
            put_u32(&mut gd, (t * 4) as usize, at as u32);
            out.push((at, gt));
            at += 4;
        }
    }
    out.push((at, marker(gd_sectors, 0, 2).to_vec()));
    at += 1;
    layout.gd_offset = at * SECTOR;
    out.push((at, gd));
    at += gd_sectors;
    out.push((at, marker(1, 0, 3).to_vec()));
    at += 1;
    let footer = kdmv_header(
        3,
        flags,
        capacity,
        g,
        1,
        desc_sectors,
        0,
        layout.gd_offset / SECTOR,
        overhead,
        1,
    );
    layout.footer_offset = Some(at * SECTOR);
    out.push((at, footer.to_vec()));
    at += 1;
    out.push((at, marker(0, 0, 0).to_vec()));
    at += 1;
    layout.file_len = at * SECTOR;
    let f = File::create(path)?;
    f.set_len(layout.file_len)?;
    f.write_all_at(
        &kdmv_header(3, flags, capacity, g, 1, desc_sectors, 0, GD_AT_END, overhead, 1),
        0,
    )?;
    f.write_all_at(desc, SECTOR)?;
    for (s, b) in out {
        f.write_all_at(&b, s * SECTOR)?;
    }
    f.sync_all()?;
    Ok(layout)
}

/// An ESXi `COWD` (vmfsSparse) extent: 2048-byte header, GD at sector 4 (32-bit GT
/// sector numbers, 0 = no GT), 4096-entry grain tables of 32-bit grain sector numbers,
/// then the grains.
pub fn write_cowd(path: &Path, capacity: u64, g: u32, grains: &Grains) -> io::Result<ExtentLayout> {
    let g = g as u64;
    if g == 0 || capacity > u32::MAX as u64 {
        return Err(invalid(format!("COWD grain {g} / capacity {capacity}")));
    }
    if grains.values().any(|x| !matches!(x, Grain::Data(_))) {
        return Err(invalid("COWD has only allocated grains".into()));
    }
    let per_gt = cowd::GTES_PER_GT;
    let n_gts = capacity.div_ceil(g).div_ceil(per_gt);
    let gd_sectors = (n_gts * 4).div_ceil(SECTOR);
    let gd = 4u64;
    let mut at = gd + gd_sectors;
    let mut gd_bytes = vec![0u8; (gd_sectors * SECTOR) as usize];
    let mut gt_offsets = BTreeMap::new();
    // Grain tables in reverse GD order, so GT position != GD index.
    for t in (0..n_gts).rev() {
        if grains.range(t * per_gt..(t + 1) * per_gt).next().is_some() {
            gt_offsets.insert(t, at);
            put_u32(&mut gd_bytes, (t * 4) as usize, at as u32);
            at += per_gt * 4 / SECTOR;
        }
    }
    let mut layout = ExtentLayout {
        path: path.to_path_buf(),
        gd_offset: gd * SECTOR,
        gd_entries: n_gts,
        ..Default::default()
    };
    for k in storage_order(grains, |_| true) {
        layout.grain_offsets.insert(k, at * SECTOR);
        at += g;
    }
    if at > u32::MAX as u64 {
        return Err(invalid("COWD file beyond 32-bit sectors".into()));
    }
    layout.file_len = at * SECTOR;
    let f = File::create(path)?;
    f.set_len(layout.file_len)?;
    let mut h = vec![0u8; cowd::HEADER_LEN];
    h[0..4].copy_from_slice(b"COWD");
    put_u32(&mut h, cowd::VERSION, 1);
    put_u32(&mut h, cowd::FLAGS, 3);
    put_u32(&mut h, cowd::CAPACITY, capacity as u32);
    put_u32(&mut h, cowd::GRAIN_SIZE, g as u32);
    put_u32(&mut h, cowd::GD_OFFSET, gd as u32);
    put_u32(&mut h, cowd::GD_ENTRIES, n_gts as u32);
    put_u32(&mut h, cowd::NEXT_FREE_SECTOR, at as u32);
    f.write_all_at(&h, 0)?;
    f.write_all_at(&gd_bytes, gd * SECTOR)?;
    for (&t, &gt_at) in &gt_offsets {
        let mut gt = vec![0u8; (per_gt * 4) as usize];
        for (&k, _) in grains.range(t * per_gt..(t + 1) * per_gt) {
            put_u32(
                &mut gt,
                ((k - t * per_gt) * 4) as usize,
                (layout.grain_offsets[&k] / SECTOR) as u32,
            );
        }
        f.write_all_at(&gt, gt_at * SECTOR)?;
    }
    let glen = (g * SECTOR) as usize;
    for (&k, &off) in &layout.grain_offsets {
        write_nonzero(&f, off, &grain_bytes(&grains[&k], glen))?;
    }
    f.sync_all()?;
    Ok(layout)
}

/// An SESparse extent, with ESXi's region layout (as in a real ESXi file): constant
/// header at sector 0, volatile header at 1, journal header at 2, journal, grain
/// directory, grain tables, free bitmap, backmap, grains. Region sizes are 2048 sectors
/// or what the disk needs. Grain tables are placed in reverse GD order; grain indexes
/// are spread (odd grains at index + 3×4096) so both parts of the swizzled index are
/// used. The free bitmap and backmap are left zero (no reader uses them).
pub fn write_sesparse(path: &Path, capacity: u64, grains: &Grains, replay: bool) -> io::Result<ExtentLayout> {
    let gs = ses::GRAIN_SECTORS;
    let per_gt = ses::GTES_PER_GT;
    let n_gts = capacity.div_ceil(gs).div_ceil(per_gt);
    let region = |need: u64| need.max(0x800).div_ceil(0x800) * 0x800;
    let journal_header = 2u64;
    let journal = 0x800u64;
    let journal_size = 0x800u64;
    let gd = journal + journal_size;
    let gd_size = region((n_gts * 8).div_ceil(SECTOR));
    let gt_region = gd + gd_size;
    let gt_size = region(n_gts * ses::GT_SECTORS);
    let free_bitmap = gt_region + gt_size;
    let bitmap_size = 0x800u64;
    let backmap = free_bitmap + bitmap_size;
    let backmap_size = 0x800u64;
    let grains_at = backmap + backmap_size;
    let mut layout = ExtentLayout {
        path: path.to_path_buf(),
        descriptor_offset: SECTOR,
        gd_offset: gd * SECTOR,
        gd_entries: n_gts,
        ..Default::default()
    };
    let mut index_of = BTreeMap::new();
    let mut max_index = 0;
    for (i, k) in storage_order(grains, |x| matches!(x, Grain::Data(_)))
        .into_iter()
        .enumerate()
    {
        let i = i as u64;
        let idx = if i % 2 == 1 { i + 3 * 4096 } else { i };
        index_of.insert(k, idx);
        layout.grain_offsets.insert(k, (grains_at + idx * gs) * SECTOR);
        max_index = max_index.max(idx + 1);
    }
    let grains_size = (max_index * gs).max(capacity.min(0x10_0000));
    layout.file_len = (grains_at + max_index * gs) * SECTOR;
    let f = File::create(path)?;
    f.set_len(layout.file_len.max((grains_at + 1) * SECTOR))?;
    let mut c = [0u8; 512];
    let fields: [(usize, u64); 21] = [
        (0, ses::CONST_MAGIC),
        (1, ses::VERSION),
        (2, capacity),
        (3, gs),
        (4, ses::GT_SECTORS),
        (10, 1),
        (11, 1),
        (12, journal_header),
        (13, 2),
        (14, journal),
        (15, journal_size),
        (16, gd),
        (17, gd_size),
        (18, gt_region),
        (19, gt_size),
        (20, free_bitmap),
        (21, bitmap_size),
        (22, backmap),
        (23, backmap_size),
        (24, grains_at),
        (25, grains_size),
    ];
    for (i, v) in fields {
        put_u64(&mut c, i * 8, v);
    }
    f.write_all_at(&c, 0)?;
    let mut v = [0u8; 512];
    put_u64(&mut v, 0, ses::VOLATILE_MAGIC);
    let used_gts = (0..n_gts)
        .filter(|t| grains.range(t * per_gt..(t + 1) * per_gt).next().is_some())
        .count() as u64;
    put_u64(&mut v, 8, used_gts); // free GT number: the next GT slot
    put_u64(&mut v, 16, 1 + grains.len() as u64); // next transaction sequence number
    put_u64(&mut v, 24, replay as u64);
    f.write_all_at(&v, SECTOR)?;
    let mut jh = [0u8; 1024];
    put_u64(&mut jh, 0, ses::JOURNAL_MAGIC);
    put_u64(&mut jh, 8, 1 + grains.len() as u64);
    put_u64(&mut jh, 16, 1);
    f.write_all_at(&jh, journal_header * SECTOR)?;
    if replay {
        // A journal transaction that is not applied: a reader must replay or refuse.
        let mut j = [0u8; 512];
        put_u64(&mut j, 0, ses::JOURNAL_MAGIC);
        put_u64(&mut j, 8, grains.len() as u64);
        put_u64(&mut j, 16, 1);
        j[24..32].fill(0xA5);
        f.write_all_at(&j, journal * SECTOR)?;
    }
    let mut gd_bytes = vec![0u8; (n_gts * 8) as usize];
    let mut slot = 0u64;
    for t in (0..n_gts).rev() {
        let mut gt = vec![0u8; (per_gt * 8) as usize];
        let mut any = false;
        for (&k, x) in grains.range(t * per_gt..(t + 1) * per_gt) {
            let e = match x {
                Grain::Data(_) => ses_allocated_gte(index_of[&k]),
                Grain::Zero => ses::GTE_ZERO,
                Grain::Unmapped => ses::GTE_UNMAPPED,
            };
            put_u64(&mut gt, ((k - t * per_gt) * 8) as usize, e);
            any = true;
        }
        if any {
            put_u64(&mut gd_bytes, (t * 8) as usize, ses::GD_ALLOCATED | slot);
            f.write_all_at(&gt, (gt_region + slot * ses::GT_SECTORS) * SECTOR)?;
            slot += 1;
        }
    }
    f.write_all_at(&gd_bytes, gd * SECTOR)?;
    let glen = (gs * SECTOR) as usize;
    for (&k, &off) in &layout.grain_offsets {
        write_nonzero(&f, off, &grain_bytes(&grains[&k], glen))?;
    }
    f.sync_all()?;
    Ok(layout)
}

/// A flat extent: `offset` sectors of 0xEE, then the data (holes where zero).
pub fn write_flat(
    path: &Path,
    offset: u64,
    data_of: &dyn Fn(u64, usize) -> Vec<u8>,
    sectors: u64,
) -> io::Result<ExtentLayout> {
    let f = File::create(path)?;
    let len = (offset + sectors) * SECTOR;
    f.set_len(len)?;
    if offset > 0 {
        f.write_all_at(&vec![0xEE; (offset * SECTOR) as usize], 0)?;
    }
    let step = 4 * MIB;
    let mut at = 0;
    while at < sectors * SECTOR {
        let n = step.min(sectors * SECTOR - at);
        write_nonzero(&f, offset * SECTOR + at, &data_of(at, n as usize))?;
        at += n;
    }
    f.sync_all()?;
    Ok(ExtentLayout {
        path: path.to_path_buf(),
        file_len: len,
        ..Default::default()
    })
}

/// Writes a disk: each extent from `grains[i]` (sparse kinds) or `flat(extent start
/// byte, len)` (flat kinds), and the descriptor (a file of its own or embedded).
pub fn write_disk(
    dir: &Path,
    file_name: &str,
    spec: &DiskSpec,
    grains: &[Grains],
    flat: &dyn Fn(u64, usize) -> Vec<u8>,
) -> io::Result<Vec<ExtentLayout>> {
    assert_eq!(grains.len(), spec.extents.len());
    let text = descriptor_text(&spec.descriptor, &spec.extents);
    let desc = encode(&text, spec.descriptor.encoding);
    let mut layouts = Vec::new();
    let mut start = 0u64;
    if spec.place == DescriptorPlace::File {
        std::fs::write(dir.join(file_name), &desc)?;
    }
    for (i, e) in spec.extents.iter().enumerate() {
        let embedded = spec.place == DescriptorPlace::Embedded && i == 0;
        let path = e.file.as_ref().map(|f| dir.join(f));
        if embedded {
            assert_eq!(
                e.file.as_deref(),
                Some(file_name),
                "embedded descriptor lives in the disk file"
            );
        }
        let base = start * SECTOR;
        let l = match &e.kind {
            ExtentKind::Zero => ExtentLayout::default(),
            ExtentKind::Flat { offset } => {
                write_flat(path.as_ref().unwrap(), *offset, &|o, n| flat(base + o, n), e.sectors)?
            }
            ExtentKind::Vmfs => write_flat(path.as_ref().unwrap(), 0, &|o, n| flat(base + o, n), e.sectors)?,
            ExtentKind::Sparse(o) => write_kdmv(
                path.as_ref().unwrap(),
                e.sectors,
                o,
                &grains[i],
                embedded.then_some(&desc[..]),
            )?,
            ExtentKind::Stream { grain_sectors } => {
                assert!(embedded, "streamOptimized needs its descriptor embedded");
                write_stream(path.as_ref().unwrap(), e.sectors, *grain_sectors, &grains[i], &desc)?
            }
            ExtentKind::Cowd { grain_sectors } => {
                write_cowd(path.as_ref().unwrap(), e.sectors, *grain_sectors, &grains[i])?
            }
            ExtentKind::SeSparse { journal_needs_replay } => {
                write_sesparse(path.as_ref().unwrap(), e.sectors, &grains[i], *journal_needs_replay)?
            }
        };
        layouts.push(l);
        start += e.sectors;
    }
    Ok(layouts)
}

// ---------------------------------------------------------------------------
// Chains
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(pub usize);

#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    Zero(u64, u64),
    Unmap(u64, u64),
}

/// Guest writes of one layer (sector aligned).
pub struct LayerEdits {
    virtual_size: u64,
    ops: Vec<Op>,
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
        self.ops.push(Op::Write(offset, bytes.to_vec()));
    }

    /// Writes `fill(<file name>, ...)` data over `count` sectors from `sector`.
    pub fn write_sectors(&mut self, sector: u64, count: u64) {
        let data = fill(&self.tag, sector * SECTOR, (count * SECTOR) as usize);
        self.write(sector * SECTOR, &data);
    }

    /// Whole grains recorded as zeroed (zero-grain GTE / SESparse zero): read as zeros.
    pub fn zero(&mut self, sector: u64, count: u64) {
        self.ops.push(Op::Zero(sector * SECTOR, count * SECTOR));
    }

    /// Whole SESparse grains recorded as unmapped: read as zeros.
    pub fn unmap(&mut self, sector: u64, count: u64) {
        self.ops.push(Op::Unmap(sector * SECTOR, count * SECTOR));
    }

    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }
}

pub struct Layer {
    pub file_name: String,
    pub parent: Option<usize>,
    pub variant: Variant,
    pub spec: DiskSpec,
    pub grains: Vec<Grains>,
    pub layouts: Vec<ExtentLayout>,
    pub model: Model,
    /// The state if SESparse "unmapped" fell through to the parent (None: no unmapped
    /// grain in this layer's chain).
    pub alt_model: Option<Model>,
    pub mtime: u64,
}

/// Builds VMware snapshot trees: per layer, the guest writes relative to the parent
/// state. Every disk is written when added; its files' modification time is
/// `base_time + n` hours (n = layer number).
pub struct ChainBuilder {
    dir: PathBuf,
    virtual_size: u64,
    /// Unix seconds of the base's modification time.
    pub base_time: u64,
    layers: Vec<Layer>,
}

impl ChainBuilder {
    pub fn new(dir: &Path, virtual_size: u64) -> Self {
        assert_eq!(virtual_size % SECTOR, 0);
        ChainBuilder {
            dir: dir.to_path_buf(),
            virtual_size,
            base_time: 1_790_000_000,
            layers: Vec::new(),
        }
    }

    pub fn base(&mut self, file_name: &str, variant: Variant, edit: impl FnOnce(&mut LayerEdits)) -> LayerId {
        self.add(None, file_name, variant, Hint::Relative, edit, |_| {})
    }

    pub fn child(
        &mut self,
        parent: LayerId,
        file_name: &str,
        variant: Variant,
        edit: impl FnOnce(&mut LayerEdits),
    ) -> LayerId {
        self.add(Some(parent), file_name, variant, Hint::Relative, edit, |_| {})
    }

    /// A child with a choice of hint, and the spec changed before writing (descriptor
    /// keys, CIDs, extents' access...). The model does not depend on the tweak.
    pub fn child_with(
        &mut self,
        parent: LayerId,
        file_name: &str,
        variant: Variant,
        hint: Hint,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut DiskSpec),
    ) -> LayerId {
        self.add(Some(parent), file_name, variant, hint, edit, tweak)
    }

    /// A base whose spec is changed before writing.
    pub fn base_with(
        &mut self,
        file_name: &str,
        variant: Variant,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut DiskSpec),
    ) -> LayerId {
        self.add(None, file_name, variant, Hint::Relative, edit, tweak)
    }

    pub fn layer(&self, id: &LayerId) -> &Layer {
        &self.layers[id.0]
    }

    pub fn path(&self, id: &LayerId) -> PathBuf {
        self.dir.join(&self.layers[id.0].file_name)
    }

    /// The disk file and every extent file of the layer.
    pub fn files(&self, id: &LayerId) -> Vec<PathBuf> {
        let l = &self.layers[id.0];
        let mut v = vec![self.path(id)];
        for e in &l.spec.extents {
            if let Some(f) = &e.file {
                let p = self.dir.join(f);
                if !v.contains(&p) {
                    v.push(p);
                }
            }
        }
        v
    }

    pub fn expected(&self, id: &LayerId) -> &Model {
        &self.layers[id.0].model
    }

    pub fn alt_unmapped_transparent(&self, id: &LayerId) -> Option<&Model> {
        self.layers[id.0].alt_model.as_ref()
    }

    pub fn spec(&self, id: &LayerId) -> &DiskSpec {
        &self.layers[id.0].spec
    }

    pub fn layouts(&self, id: &LayerId) -> &[ExtentLayout] {
        &self.layers[id.0].layouts
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

    /// The layer and its ancestors, newest first.
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

    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn add(
        &mut self,
        parent: Option<LayerId>,
        file_name: &str,
        variant: Variant,
        hint: Hint,
        edit: impl FnOnce(&mut LayerEdits),
        tweak: impl FnOnce(&mut DiskSpec),
    ) -> LayerId {
        if parent.is_some() {
            assert!(variant.can_be_child(), "{variant:?} cannot be a delta disk");
        }
        let mut edits = LayerEdits {
            virtual_size: self.virtual_size,
            ops: Vec::new(),
            tag: file_name.to_string(),
        };
        edit(&mut edits);
        let sectors = self.virtual_size / SECTOR;
        let (place, extents) = variant.layout(file_name, sectors);
        let parent_layer = parent.map(|p| &self.layers[p.0]);
        let cid = cid_for(&format!("{}/{file_name}/{}", self.layers.len(), self.virtual_size));
        let descriptor = Descriptor {
            cid,
            parent_cid: parent_layer.map_or(NO_PARENT_CID, |p| p.spec.descriptor.cid),
            create_type: variant.create_type(),
            parent_hint: parent_layer.map(|p| hint.text(&p.file_name)),
            encoding: Encoding::Utf8,
            ddb: default_ddb(sectors, cid, "lsilogic"),
            extra_lines: Vec::new(),
            crlf: false,
        };
        let mut spec = DiskSpec {
            descriptor,
            place,
            extents,
        };
        // Guest view: the parent's, then the ops in order.
        let empty = Model::new(self.virtual_size, SECTOR as u32);
        let pmodel = parent_layer.map_or(&empty, |p| &p.model);
        let mut model = pmodel.clone();
        let mut alt = parent_layer
            .and_then(|p| p.alt_model.clone())
            .unwrap_or_else(|| model.clone());
        let any_unmap = edits.ops.iter().any(|o| matches!(o, Op::Unmap(..)));
        let palt = parent_layer
            .and_then(|p| p.alt_model.clone())
            .unwrap_or_else(|| pmodel.clone());
        for op in &edits.ops {
            match op {
                Op::Write(o, b) => {
                    model.write(*o, b);
                    alt.write(*o, b);
                }
                Op::Zero(o, n) => {
                    model.zero(*o, *n);
                    alt.zero(*o, *n);
                }
                Op::Unmap(o, n) => {
                    model.zero(*o, *n);
                    alt.write(*o, &palt.read(*o, *n as usize));
                }
            }
        }
        // Grains of each sparse extent.
        let mut grains = Vec::new();
        let mut start = 0u64;
        for e in &spec.extents {
            let mut gm = Grains::new();
            let ext_start = start * SECTOR;
            let ext_end = (start + e.sectors) * SECTOR;
            if let Some(gs) = e.kind.grain_sectors() {
                let glen = gs * SECTOR;
                for op in &edits.ops {
                    let (o, n) = match op {
                        Op::Write(o, b) => (*o, b.len() as u64),
                        Op::Zero(o, n) | Op::Unmap(o, n) => (*o, *n),
                    };
                    let (a, b) = (o.max(ext_start), (o + n).min(ext_end));
                    if a >= b {
                        continue;
                    }
                    let (first, last) = ((a - ext_start) / glen, (b - ext_start - 1) / glen);
                    for k in first..=last {
                        let g = match op {
                            Op::Write(..) => Grain::Data(Vec::new()),
                            Op::Zero(..) | Op::Unmap(..) => {
                                let gstart = ext_start + k * glen;
                                let gend = (gstart + glen).min(ext_end);
                                assert!(
                                    a <= gstart && b >= gend,
                                    "{file_name}: zero/unmap must cover whole grains of {glen} bytes"
                                );
                                if matches!(op, Op::Zero(..)) {
                                    Grain::Zero
                                } else {
                                    Grain::Unmapped
                                }
                            }
                        };
                        gm.insert(k, g);
                    }
                }
                for (k, g) in gm.iter_mut() {
                    if let Grain::Data(d) = g {
                        let gstart = ext_start + k * glen;
                        let n = glen.min(ext_end - gstart);
                        *d = model.read(gstart, n as usize);
                    }
                }
            } else {
                let touched = edits.ops.iter().any(|op| {
                    let (o, n) = match op {
                        Op::Write(o, b) => (*o, b.len() as u64),
                        Op::Zero(o, n) | Op::Unmap(o, n) => (*o, *n),
                    };
                    o < ext_end && o + n > ext_start
                });
                if e.kind == ExtentKind::Zero && touched {
                    panic!("{file_name}: writes into a ZERO extent");
                }
                assert!(
                    edits.ops.iter().all(|op| matches!(op, Op::Write(..))) || !touched,
                    "{file_name}: zero/unmap in a flat extent"
                );
            }
            grains.push(gm);
            start += e.sectors;
        }
        tweak(&mut spec);
        let m = &model;
        let layouts = write_disk(&self.dir, file_name, &spec, &grains, &|o, n| m.read(o, n))
            .unwrap_or_else(|e| panic!("writing {file_name}: {e}"));
        let mtime = self.base_time + 3600 * self.layers.len() as u64;
        let mut all = vec![file_name.to_string()];
        all.extend(spec.extents.iter().filter_map(|e| e.file.clone()));
        for f in all {
            set_mtime(&self.dir.join(f), mtime).unwrap();
        }
        let has_alt = any_unmap || parent_layer.is_some_and(|p| p.alt_model.is_some());
        self.layers.push(Layer {
            file_name: file_name.to_string(),
            parent: parent.map(|p| p.0),
            variant,
            spec,
            grains,
            layouts,
            model,
            alt_model: has_alt.then_some(alt),
            mtime,
        });
        LayerId(self.layers.len() - 1)
    }
}

pub fn set_mtime(path: &Path, unix: u64) -> io::Result<()> {
    let t = UNIX_EPOCH + Duration::from_secs(unix);
    File::options().write(true).open(path)?.set_modified(t)
}

/// Recognisable sector contents: every sector starts with `tag@offset` and is filled
/// with bytes derived from both, so a mismatch report tells whose data a reader
/// returned.
pub fn fill(tag: &str, offset: u64, len: usize) -> Vec<u8> {
    super::vhd_writer::fill(tag, offset, len)
}

// ---------------------------------------------------------------------------
// Random trees
// ---------------------------------------------------------------------------

/// A random tree from `seed` (the same tree for the same seed): a random base variant,
/// 2–6 deltas of random kinds and options (hosted sparse grain sizes 4/8/64 KiB,
/// header versions 1–3, zero grains, sparse grain tables; split sparse; COWD grains of
/// 1/16/128 sectors; SESparse with zero and unmapped grains) over random parents, and
/// random writes. Returns the builder and the layers, base first.
pub fn random_tree(dir: &Path, seed: u64) -> (ChainBuilder, Vec<LayerId>) {
    let mut x: u64 = mix(seed ^ 0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let hosted = |version: u32, grain: u64, zero: bool, all_gts: bool| {
        Variant::MonolithicSparse(SparseOpts {
            version,
            grain_sectors: grain,
            zero_grain_flag: zero,
            all_gts,
            ..SparseOpts::default()
        })
    };
    let size = (4 + rnd(12)) * MIB + rnd(4) * 128 * SECTOR;
    let sectors = size / SECTOR;
    let bases = [
        Variant::sparse(),
        hosted(3, 8, false, false),
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 2048 * (1 + rnd(3)),
        },
        Variant::MonolithicFlat { offset: rnd(9) },
        Variant::TwoGbMaxExtentFlat {
            extent_sectors: 1000 + rnd(5000),
        },
        Variant::StreamOptimized { grain_sectors: 128 },
        Variant::Vmfs,
    ];
    let mut c = ChainBuilder::new(dir, size);
    let base = bases[rnd(bases.len() as u64) as usize].clone();
    let mut ids = vec![c.base("vm.vmdk", base, |e| {
        for _ in 0..1 + rnd(6) {
            let n = 1 + rnd(400);
            e.write_sectors(rnd(sectors - n), n);
        }
    })];
    for i in 1..=(2 + rnd(5)) {
        let parent = ids[rnd(ids.len() as u64) as usize];
        let (v, grain, zero, unmap) = match rnd(5) {
            0 => {
                let g = [8, 16, 128][rnd(3) as usize];
                let z = rnd(2) == 1;
                (hosted(1 + rnd(3) as u32, g, z, rnd(2) == 1), g, z, false)
            }
            1 => (
                Variant::TwoGbMaxExtentSparse {
                    opts: SparseOpts::default(),
                    extent_sectors: 128 * (16 + rnd(64)),
                },
                128,
                false,
                false,
            ),
            2 => {
                let g = [1, 16, 128][rnd(3) as usize] as u32;
                (Variant::VmfsSparse { grain_sectors: g }, g as u64, false, false)
            }
            _ => (Variant::se_sparse(), ses::GRAIN_SECTORS, true, true),
        };
        let id = c.child(parent, &format!("vm-{i:06}.vmdk"), v, |e| {
            for _ in 0..1 + rnd(8) {
                let n = 1 + rnd(300);
                e.write_sectors(rnd(sectors - n), n);
            }
            let grains = sectors / grain;
            if zero && grains > 4 {
                let n = 1 + rnd(3);
                e.zero(rnd(grains - n) * grain, n * grain);
            }
            if unmap && grains > 4 {
                let n = 1 + rnd(3);
                e.unmap(rnd(grains - n) * grain, n * grain);
            }
        });
        ids.push(id);
    }
    (c, ids)
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

/// Damage written files at known places.
pub mod corrupt {
    use super::*;

    pub fn write_at(path: &Path, at: u64, bytes: &[u8]) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .write_all_at(bytes, at)
            .unwrap();
    }

    pub fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        File::open(path).unwrap().read_exact_at(&mut b, at).unwrap();
        b
    }

    /// Sets the SESparse volatile header's replay-journal flag.
    pub fn sesparse_needs_replay(layout: &ExtentLayout) {
        write_at(&layout.path, SECTOR + 24, &1u64.to_le_bytes());
    }

    /// Points grain `grain`'s GTE of a hosted sparse extent (primary and redundant) at
    /// `sector`.
    pub fn kdmv_gte(layout: &ExtentLayout, grain: u64, sector: u32) {
        for gd in [Some(layout.gd_offset), layout.rgd_offset].into_iter().flatten() {
            let t = grain / 512;
            let gt = u32::from_le_bytes(read_at(&layout.path, gd + t * 4, 4).try_into().unwrap()) as u64;
            write_at(&layout.path, gt * SECTOR + (grain % 512) * 4, &sector.to_le_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// Guest filesystem images
// ---------------------------------------------------------------------------

/// The 4 KiB pieces where `b` differs from `a` (same length), as (offset, bytes).
pub fn diff_pieces(a: &[u8], b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    assert_eq!(a.len(), b.len());
    a.chunks(4096)
        .zip(b.chunks(4096))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (_, y))| (i as u64 * 4096, y.to_vec()))
        .collect()
}
