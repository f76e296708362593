//! The test-only VMDK writer (tests/support/vmdk_writer.rs) checked without ckptfs:
//! headers against fields computed by hand from the spec, and every variant qemu reads
//! (`qemu-img convert`/`info`) against the writer's model. qemu reads monolithicSparse,
//! twoGbMaxExtent*, monolithicFlat, vmfs, streamOptimized, vmfsSparse (COWD) and, read
//! only, seSparse (grain size 8, 4096-entry tables, no journal to replay); it reads the
//! primary grain directory only, treats SESparse "unmapped" as zeros (as ckptfs) and
//! follows `parentFileNameHint` relative to the child, checking parentCID against the
//! parent's CID. The remaining readers (libvmdk, dissect) are run by
//! `scripts/crosscheck_writer.py --format vmdk`.

mod support;
mod util;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use support::model::Model;
use support::vmdk_writer::*;

fn qemu_raw(path: &Path) -> Result<Vec<u8>, String> {
    let out = path.with_extension("qemu.raw");
    let r = Command::new("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(path)
        .arg(&out)
        .output()
        .unwrap();
    if !r.status.success() {
        return Err(String::from_utf8_lossy(&r.stderr).into_owned());
    }
    let b = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    Ok(b)
}

fn qemu_info(path: &Path) -> serde_json::Value {
    let r = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "vmdk"])
        .arg(path)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice(&r.stdout).unwrap()
}

fn assert_qemu_reads(c: &ChainBuilder, id: &LayerId) {
    let got = qemu_raw(&c.path(id)).unwrap_or_else(|e| panic!("{}: {e}", c.file_name(id)));
    let m = c.expected(id);
    util::assert_same_bytes(&got, &m.read(0, m.size() as usize), c.file_name(id));
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// 8 MiB, grain 128, redundant GD, embedded descriptor: every header field and where
/// the tables are, computed by hand.
#[test]
fn monolithic_sparse_header_fields_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 8 * MIB);
    let base = c.base("vm.vmdk", Variant::sparse(), |e| {
        e.write_sectors(0, 1);
        e.write_sectors(300, 1);
    });
    let b = std::fs::read(c.path(&base)).unwrap();
    assert_eq!(&b[0..4], b"KDMV");
    assert_eq!(u32_at(&b, kdmv::VERSION), 1);
    assert_eq!(u32_at(&b, kdmv::FLAGS), 3, "newline test + redundant GD");
    assert_eq!(u64_at(&b, kdmv::CAPACITY), 16384);
    assert_eq!(u64_at(&b, kdmv::GRAIN_SIZE), 128);
    assert_eq!(u64_at(&b, kdmv::DESCRIPTOR_OFFSET), 1);
    assert_eq!(u64_at(&b, kdmv::DESCRIPTOR_SIZE), 20);
    assert_eq!(u32_at(&b, kdmv::NUM_GTES_PER_GT), 512);
    // 128 grains = 1 GT of 4 sectors, GD of 1 sector: RGD 21, its GT 22..26, GD 26, GT 27.
    assert_eq!(u64_at(&b, kdmv::RGD_OFFSET), 21);
    assert_eq!(u64_at(&b, kdmv::GD_OFFSET), 26);
    assert_eq!(u64_at(&b, kdmv::OVERHEAD), 128, "31 sectors rounded up to a grain");
    assert_eq!(&b[73..77], b"\n \r\n");
    assert_eq!(u32_at(&b, 26 * 512), 27);
    assert_eq!(u32_at(&b, 21 * 512), 22);
    // Grain 0 (even) is stored first at the overhead, grain 2 (sector 300) next.
    assert_eq!(u32_at(&b, 27 * 512), 128);
    assert_eq!(u32_at(&b, 27 * 512 + 2 * 4), 256);
    assert_eq!(u32_at(&b, 22 * 512 + 2 * 4), 256);
    assert_eq!(b.len(), 384 * 512);
    let desc = String::from_utf8_lossy(&b[512..512 * 21]);
    assert!(desc.starts_with("# Disk DescriptorFile\n"), "{desc}");
    assert!(desc.contains("\nparentCID=ffffffff\n") && desc.contains("createType=\"monolithicSparse\""));
    assert!(desc.contains("\nRW 16384 SPARSE \"vm.vmdk\"\n"), "{desc}");
}

#[test]
fn sesparse_index_swizzle_by_hand() {
    assert_eq!(ses_allocated_gte(0x123_4567), 0x3567_0000_0000_1234);
    assert_eq!(ses_allocated_gte(1), 0x3001_0000_0000_0000, "as in ESXi's own file");
    assert_eq!(ses_allocated_gte(4096), 0x3000_0000_0000_0001);
    for i in [0u64, 1, 4095, 4096, 4097, 12289, 0x0fff_ffff_ffff_ffff] {
        assert_eq!(ses_grain_index(ses_allocated_gte(i)), i);
    }
}

/// SESparse headers: the constant header as qemu checks it, volatile header, the GD
/// entry pointing at grain table slot 0 and a GTE with a swizzled index.
#[test]
fn sesparse_header_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 64 * MIB);
    let base = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 8));
    let s = c.child(base, "vm-000001.vmdk", Variant::se_sparse(), |e| {
        e.write_sectors(8, 8); // grain 1: the first grain stored (odd list after even)
        e.write_sectors(16, 1); // grain 2
    });
    let l = &c.layouts(&s)[0];
    let b = std::fs::read(&l.path).unwrap();
    let f = |i: usize| u64_at(&b, i * 8);
    assert_eq!(
        (f(0), f(1), f(2), f(3), f(4), f(5)),
        (ses::CONST_MAGIC, ses::VERSION, 131072, 8, 64, 0)
    );
    assert_eq!((f(10), f(11)), (1, 1));
    assert!(b[26 * 8..512].iter().all(|&x| x == 0), "padding zero");
    assert_eq!(u64_at(&b, 512), ses::VOLATILE_MAGIC);
    assert_eq!(u64_at(&b, 512 + 24), 0, "no replay");
    let gd = f(ses::F_GD_OFFSET) as usize * 512;
    assert_eq!(u64_at(&b, gd), ses::GD_ALLOCATED);
    let gt = f(ses::F_GT_OFFSET) as usize * 512;
    // Storage order: grain 2 (even) gets index 0, grain 1 index 1 + 3*4096.
    assert_eq!(u64_at(&b, gt + 2 * 8), ses_allocated_gte(0));
    assert_eq!(u64_at(&b, gt + 8), ses_allocated_gte(1 + 3 * 4096));
    assert_eq!(u64_at(&b, gt), 0, "grain 0 unallocated");
    let grains = f(ses::F_GRAINS_OFFSET) as usize * 512;
    assert_eq!(
        &b[grains + (1 + 3 * 4096) * 4096..][..16],
        &fill("vm-000001.vmdk", 8 * 512, 512)[..16]
    );
}

/// COWD header fields and the 4096-entry tables.
#[test]
fn cowd_header_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 64 * MIB);
    let base = c.base("vm.vmdk", Variant::Vmfs, |_| {});
    let d = c.child(base, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| {
        e.write_sectors(5000, 1);
    });
    let b = std::fs::read(&c.layouts(&d)[0].path).unwrap();
    assert_eq!(&b[0..4], b"COWD");
    assert_eq!(u32_at(&b, cowd::VERSION), 1);
    assert_eq!(u32_at(&b, cowd::CAPACITY), 131072);
    assert_eq!(u32_at(&b, cowd::GRAIN_SIZE), 1);
    assert_eq!(u32_at(&b, cowd::GD_OFFSET), 4);
    assert_eq!(u32_at(&b, cowd::GD_ENTRIES), 32, "131072 sectors / 4096 per table");
    // Only GT 1 (sectors 4096..8192) exists, right after the one-sector GD.
    assert_eq!(u32_at(&b, 4 * 512), 0);
    assert_eq!(u32_at(&b, 4 * 512 + 4), 5);
    assert_eq!(u32_at(&b, 5 * 512 + (5000 - 4096) * 4), 5 + 32);
    assert_eq!(u32_at(&b, cowd::NEXT_FREE_SECTOR), 38);
    assert_eq!(b.len(), 38 * 512);
}

/// A windows-1252 descriptor stores é as one byte; ddb keys and CIDs as given.
#[test]
fn windows_1252_descriptor_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base_with(
        "Café.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 4096,
        },
        |e| e.write_sectors(0, 8000),
        |s| s.descriptor.encoding = Encoding::Windows1252,
    );
    let b = std::fs::read(c.path(&base)).unwrap();
    assert!(b.windows(5).any(|w| w == b"Caf\xe9-"), "é as 0xE9");
    assert!(String::from_utf8_lossy(&b).contains("encoding=\"windows-1252\""));
    assert!(dir.path().join("Café-s002.vmdk").exists());
    assert_eq!(c.files(&base).len(), 3);
}

fn have_qemu() -> bool {
    util::have_tool("qemu-img")
}

fn opts(version: u32, grain: u64, rgd: bool, zero: bool, all_gts: bool) -> SparseOpts {
    SparseOpts {
        version,
        grain_sectors: grain,
        redundant_gd: rgd,
        zero_grain_flag: zero,
        all_gts,
        damage_primary_gd: None,
    }
}

/// Every base variant qemu reads, read by qemu as the model says.
#[test]
fn qemu_reads_every_base_variant() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 12 * MIB + 64 * KIB;
    let sectors = size / SECTOR;
    let write = |e: &mut LayerEdits| {
        e.write_sectors(0, 3);
        e.write_sectors(127, 2);
        e.write_sectors(4096, 300);
        e.write_sectors(sectors - 1, 1);
    };
    let variants = vec![
        ("sparse-v1.vmdk", Variant::sparse()),
        (
            "sparse-v3-g8.vmdk",
            Variant::MonolithicSparse(opts(3, 8, false, false, true)),
        ),
        (
            "sparse-v2-g16-few-gts.vmdk",
            Variant::MonolithicSparse(opts(2, 16, true, true, false)),
        ),
        (
            "split.vmdk",
            Variant::TwoGbMaxExtentSparse {
                opts: SparseOpts::default(),
                extent_sectors: 8192,
            },
        ),
        ("flat.vmdk", Variant::MonolithicFlat { offset: 0 }),
        ("flat-off.vmdk", Variant::MonolithicFlat { offset: 7 }),
        ("flat-split.vmdk", Variant::TwoGbMaxExtentFlat { extent_sectors: 6000 }),
        ("stream.vmdk", Variant::StreamOptimized { grain_sectors: 128 }),
        ("esx.vmdk", Variant::Vmfs),
    ];
    for (name, v) in variants {
        let mut c = ChainBuilder::new(dir.path(), size);
        let id = c.base(name, v.clone(), write);
        assert_qemu_reads(&c, &id);
        let info = qemu_info(&c.path(&id));
        assert_eq!(info["virtual-size"], size, "{name}");
        let fs = &info["format-specific"]["data"];
        assert_eq!(fs["create-type"], v.create_type(), "{name}");
        assert_eq!(fs["cid"].as_u64(), Some(c.spec(&id).descriptor.cid as u64), "{name}");
        assert_eq!(
            fs["extents"].as_array().map(|a| a.len()),
            Some(c.spec(&id).extents.len()),
            "{name}"
        );
    }
}

/// Zero grains in a sparse child hide the parent's data; qemu agrees.
#[test]
fn qemu_reads_zero_grains_over_a_parent() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 8192));
    let o = opts(1, 128, true, true, true);
    let s1 = c.child(base, "vm-000001.vmdk", Variant::MonolithicSparse(o), |e| {
        e.zero(128, 256);
        e.write_sectors(130, 1);
        e.write_sectors(1000, 5);
    });
    assert!(c.expected(&s1).read(256 * 512, 512).iter().all(|&b| b == 0));
    assert_qemu_reads(&c, &s1);
}

/// A chain through every delta kind: sparse base, sparse, COWD (grain 1 and 16),
/// SESparse with zero and unmapped grains; each state read by qemu.
#[test]
fn qemu_reads_a_chain_through_every_delta_kind() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 40 * MIB;
    let mut c = ChainBuilder::new(dir.path(), size);
    let base = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, size / SECTOR));
    let s1 = c.child(base, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| {
        e.write_sectors(3, 1);
        e.write_sectors(4095, 2);
        e.write_sectors(40000, 9);
    });
    let s2 = c.child(s1, "vm-000002.vmdk", Variant::VmfsSparse { grain_sectors: 16 }, |e| {
        e.write_sectors(9, 3);
        e.write_sectors(70000, 1);
    });
    let s3 = c.child(s2, "vm-000003.vmdk", Variant::se_sparse(), |e| {
        e.write_sectors(1, 1);
        e.zero(64, 16);
        e.unmap(4096, 64);
        e.write_sectors(36 * 2048, 100);
    });
    let s4 = c.child(s3, "vm-000004.vmdk", Variant::sparse(), |e| e.write_sectors(65, 1));
    assert!(c.alt_unmapped_transparent(&s3).is_some());
    for id in [base, s1, s2, s3, s4] {
        assert_qemu_reads(&c, &id);
    }
}

/// Parent hints qemu can follow (relative); a CID mismatch makes qemu refuse, which
/// shows the writer records the parent's CID where qemu looks.
#[test]
fn qemu_checks_the_parent_cid() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 100));
    let bad = c.child_with(
        base,
        "vm-000001.vmdk",
        Variant::sparse(),
        Hint::Relative,
        |e| e.write_sectors(200, 1),
        |s| s.descriptor.parent_cid ^= 1,
    );
    assert!(qemu_raw(&c.path(&bad)).is_err(), "qemu reads through a CID mismatch");
    let good = c.child(base, "vm-000002.vmdk", Variant::sparse(), |e| e.write_sectors(200, 1));
    assert_qemu_reads(&c, &good);
}

/// The model itself: a child's partial write keeps the parent's bytes in the grain.
#[test]
fn grains_are_copied_up_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), MIB);
    let base = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 256));
    let s1 = c.child(base, "vm-000001.vmdk", Variant::sparse(), |e| e.write_sectors(5, 1));
    let g = &c.layer(&s1).grains[0];
    assert_eq!(g.len(), 1);
    let Grain::Data(d) = &g[&0] else { panic!() };
    let mut want: Model = c.expected(&base).clone();
    want.write(5 * 512, &fill("vm-000001.vmdk", 5 * 512, 512));
    assert_eq!(d[..], want.read(0, 65536)[..]);
}

/// streamOptimized by hand: header with GD_AT_END and compression, the first grain's
/// LBA/size header at the overhead and inflating to the grain, GT and GD markers, the
/// footer at end − 1024 with the real GD offset, end-of-stream last.
#[test]
fn stream_optimized_layout_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let b = c.base("vm.vmdk", Variant::StreamOptimized { grain_sectors: 128 }, |e| {
        e.write_sectors(128, 2); // grain 1 only
    });
    let bytes = std::fs::read(c.path(&b)).unwrap();
    let n = bytes.len();
    assert_eq!(n % 512, 0);
    assert_eq!(u32_at(&bytes, kdmv::VERSION), 3);
    assert_eq!(u32_at(&bytes, kdmv::FLAGS), 0x30001);
    assert_eq!(u64_at(&bytes, kdmv::GD_OFFSET), GD_AT_END);
    assert_eq!(u16::from_le_bytes([bytes[77], bytes[78]]), 1, "deflate");
    let overhead = u64_at(&bytes, kdmv::OVERHEAD) as usize;
    assert_eq!(overhead, 128);
    let g = overhead * 512;
    assert_eq!(u64_at(&bytes, g), 128, "the grain's LBA in sectors");
    let zlen = u32_at(&bytes, g + 8) as usize;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(&bytes[g + 12..g + 12 + zlen])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, c.expected(&b).read(65536, 65536));
    // After the grain: GT marker (val 4 sectors, type 1) and the GT.
    let gt_marker = (g + 12 + zlen).div_ceil(512) * 512;
    assert_eq!((u64_at(&bytes, gt_marker), u32_at(&bytes, gt_marker + 12)), (4, 1));
    assert_eq!(u32_at(&bytes, gt_marker + 512 + 4), (g / 512) as u32, "GTE of grain 1");
    let gd_marker = gt_marker + 512 + 2048;
    assert_eq!((u64_at(&bytes, gd_marker), u32_at(&bytes, gd_marker + 12)), (1, 2));
    assert_eq!(u32_at(&bytes, gd_marker + 512), (gt_marker / 512 + 1) as u32);
    let footer_marker = n - 1536;
    assert_eq!(
        (u64_at(&bytes, footer_marker), u32_at(&bytes, footer_marker + 12)),
        (1, 3)
    );
    let footer = &bytes[n - 1024..n - 512];
    assert_eq!(&footer[0..4], b"KDMV");
    assert_eq!(u64_at(footer, kdmv::GD_OFFSET), (gd_marker / 512 + 1) as u64);
    assert!(bytes[n - 512..].iter().all(|&b| b == 0), "end-of-stream marker");
}

/// The damaged primary GD is load-bearing (qemu, which reads only the primary, does
/// not read the disk)
/// and the redundant GD is right (a copy whose gdOffset points at it reads right).
#[test]
fn qemu_reads_the_redundant_gd_when_pointed_at_it() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let o = SparseOpts {
        damage_primary_gd: Some(GdDamage::PastEof),
        ..SparseOpts::default()
    };
    let b = c.base("vm.vmdk", Variant::MonolithicSparse(o), |e| e.write_sectors(0, 3000));
    let l = &c.layouts(&b)[0];
    // qemu reads past the end of the file as zeros, so the damage shows as lost data.
    let want = c.expected(&b).read(0, 4 << 20);
    assert!(
        qemu_raw(&l.path).map_or(true, |got| got != want),
        "the damage is not load-bearing"
    );
    let rgd = l.rgd_offset.unwrap() / SECTOR;
    corrupt::write_at(&l.path, kdmv::GD_OFFSET as u64, &rgd.to_le_bytes());
    assert_qemu_reads(&c, &b);
}

/// qemu refuses an SESparse extent whose volatile header asks for a journal replay.
#[test]
fn qemu_refuses_an_sesparse_journal_needing_replay() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 10));
    let s1 = c.child(
        b,
        "vm-000001.vmdk",
        Variant::SeSparse {
            journal_needs_replay: true,
        },
        |e| e.write_sectors(20, 1),
    );
    let err = qemu_raw(&c.path(&s1)).unwrap_err();
    assert!(err.contains("journal"), "{err}");
}

/// The random trees tests/vmdk_chains.rs reads through ckptfs, read by qemu (every
/// variant and option they use is one qemu reads: relative hints, grain-multiple split
/// extents, no ZERO extents).
#[test]
fn qemu_reads_random_trees() {
    if !have_qemu() {
        return;
    }
    for seed in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let (c, ids) = random_tree(dir.path(), seed);
        for id in &ids {
            assert_qemu_reads(&c, id);
        }
    }
}
