//! Checks of the test-only VHD writer itself (tests/support/vhd_writer.rs), without
//! ckptfs's reader: checksums, layout fields, locators, bitmaps, and the expected
//! model, the latter against a minimal reader written here from the spec.

mod support;

use std::path::Path;

use support::model::Model;
use support::vhd_writer::{
    bitmap_bytes, bitmap_patterns, byte_aligned_bitmap, checksum_ok, chs, corrupt, field, fill, mtime_vhd, write_cycle,
    write_vhd, ChainBuilder, DiskType, LayerId, Locators, VhdSpec, FOOTER_LEN, MIB, SECTOR, UNUSED_BAT_ENTRY,
};

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn utf16le(b: &[u8]) -> String {
    String::from_utf16(
        &b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// A minimal VHD reader written from the spec for this check only: the whole disk of
/// `files[0]` over `files[1..]` (each file's parent is the next one).
fn read_chain(files: &[&Path]) -> Vec<u8> {
    let b = std::fs::read(files[0]).unwrap();
    let footer = &b[b.len() - 512..];
    assert_eq!(&footer[..8], b"conectix");
    let size = be64(footer, field::FOOTER_CURRENT_SIZE) as usize;
    let disk_type = be32(footer, field::FOOTER_DISK_TYPE);
    if disk_type == 2 {
        return b[..size].to_vec();
    }
    let h = &b[be64(footer, field::FOOTER_DATA_OFFSET) as usize..][..1024];
    let bat = be64(h, field::DYN_BAT_OFFSET) as usize;
    let entries = be32(h, field::DYN_MAX_TABLE_ENTRIES) as usize;
    let bs = be32(h, field::DYN_BLOCK_SIZE) as usize;
    let bitmap_len = (bs / 512).div_ceil(8).div_ceil(512) * 512;
    let mut out = if disk_type == 4 {
        read_chain(&files[1..])
    } else {
        vec![0u8; size]
    };
    assert_eq!(out.len(), size);
    for blk in 0..entries {
        let e = be32(&b, bat + blk * 4);
        if e == UNUSED_BAT_ENTRY {
            if disk_type == 3 {
                let end = ((blk + 1) * bs).min(size);
                out[blk * bs..end].fill(0);
            }
            continue;
        }
        let at = e as usize * 512;
        for s in 0..bs / 512 {
            let v = blk * bs + s * 512;
            if v >= size {
                break;
            }
            let set = b[at + s / 8] & (0x80 >> (s % 8)) != 0;
            if set {
                out[v..v + 512].copy_from_slice(&b[at + bitmap_len + s * 512..][..512]);
            } else if disk_type == 3 {
                out[v..v + 512].fill(0);
            }
        }
    }
    out
}

fn check_every_state(c: &ChainBuilder) {
    for id in c.layers() {
        let paths: Vec<_> = c.chain(&id).iter().map(|l| c.path(l)).collect();
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let got = read_chain(&refs);
        let exp = c.expected(&id).read(0, c.expected(&id).size() as usize);
        assert!(got == exp, "{}: mini reader disagrees with the model", c.file_name(&id));
    }
}

fn check_structures(c: &ChainBuilder, id: &LayerId) {
    let path = c.path(id);
    let spec = c.spec(id);
    let layout = c.layout(id);
    let b = std::fs::read(&path).unwrap();
    let what = c.file_name(id);
    assert_eq!(b.len() as u64, layout.file_len, "{what}: length");
    let footer = &b[b.len() - 512..];
    assert!(checksum_ok(footer, field::FOOTER_CHECKSUM), "{what}: footer checksum");
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(be32(footer, 8), 2, "features");
    assert_eq!(be32(footer, 12), 0x0001_0000, "version");
    assert_eq!(&footer[28..32], b"win ");
    assert_eq!(&footer[36..40], b"Wi2k");
    assert_eq!(be64(footer, 40), spec.virtual_size, "original size");
    assert_eq!(be64(footer, 48), spec.virtual_size, "current size");
    assert_eq!(be32(footer, field::FOOTER_DISK_TYPE), spec.disk_type.code());
    assert_eq!(&footer[68..84], spec.unique_id.as_bytes(), "RFC 4122 byte order");
    assert_eq!(be32(footer, field::FOOTER_TIME_STAMP), spec.time_stamp);
    assert_eq!(mtime_vhd(&path).unwrap(), spec.time_stamp, "{what}: mtime = time stamp");
    assert!(
        footer[85..].iter().all(|&x| x == 0),
        "reserved bytes are zero (7-Zip checks)"
    );
    if spec.disk_type == DiskType::Fixed {
        assert_eq!(be64(footer, 16), u64::MAX);
        assert_eq!(b.len() as u64, spec.virtual_size + 512);
        return;
    }
    assert_eq!(&b[..512], footer, "{what}: footer copy at 0");
    assert_eq!(be64(footer, 16), 512, "data offset");
    let h = &b[512..1536];
    assert!(checksum_ok(h, field::DYN_CHECKSUM), "{what}: dynamic header checksum");
    assert_eq!(&h[..8], b"cxsparse");
    assert_eq!(be64(h, 8), u64::MAX);
    assert_eq!(be32(h, 24), 0x0001_0000);
    assert_eq!(be64(h, field::DYN_BAT_OFFSET), layout.bat_offset);
    assert_eq!(
        be32(h, field::DYN_MAX_TABLE_ENTRIES) as u64,
        spec.virtual_size.div_ceil(spec.block_size as u64)
    );
    assert_eq!(be32(h, field::DYN_BLOCK_SIZE), spec.block_size);
    assert!(
        h[0x300..].iter().all(|&x| x == 0),
        "reserved tail is zero (7-Zip checks)"
    );
    let bat_end = layout.bat_offset + (layout.bat_entries * 4).div_ceil(512) * 512;
    let mut used: Vec<(u64, u64)> = vec![(0, bat_end)];
    // BAT: allocated blocks point at sector-aligned bitmaps after the metadata.
    for blk in 0..layout.bat_entries {
        let e = be32(&b, (layout.bat_offset + blk * 4) as usize);
        match layout.block_offsets.get(&blk) {
            Some(&off) => {
                assert_eq!(e as u64 * 512, off);
                used.push((off, off + layout.bitmap_len + spec.block_size as u64));
                let present = &spec.blocks[&blk].present;
                assert_eq!(
                    &b[off as usize..(off + layout.bitmap_len) as usize],
                    &bitmap_bytes(present, layout.bitmap_len)[..]
                );
            }
            None => assert_eq!(e, UNUSED_BAT_ENTRY),
        }
    }
    assert!(
        b[(layout.bat_offset + layout.bat_entries * 4) as usize..bat_end as usize]
            .iter()
            .all(|&x| x == 0xFF)
    );
    match (&spec.parent, spec.disk_type) {
        (None, DiskType::Dynamic) => {
            assert!(h[40..].iter().all(|&x| x == 0), "{what}: no parent fields");
        }
        (Some(p), DiskType::Differencing) => {
            let parent = c.parent(id).unwrap();
            assert_eq!(&h[40..56], c.spec(&parent).unique_id.as_bytes(), "parent unique id");
            assert_eq!(be32(h, 56), mtime_vhd(&c.path(&parent)).unwrap(), "parent time stamp");
            let name: Vec<u16> = h[64..576]
                .chunks(2)
                .map(|x| u16::from_be_bytes([x[0], x[1]]))
                .take_while(|&u| u != 0)
                .collect();
            assert_eq!(
                String::from_utf16(&name).unwrap(),
                c.file_name(&parent),
                "UTF-16BE name"
            );
            for i in 0..8 {
                let e = &h[576 + i * 24..][..24];
                if i >= p.locators.len() {
                    assert!(e.iter().all(|&x| x == 0));
                    continue;
                }
                let (off, space, len) = (be64(e, 16), be32(e, 4) as u64, be32(e, 8) as u64);
                assert_eq!(&e[..4], &p.locators[i].code);
                assert_eq!(be32(e, 12), 0, "reserved");
                assert_eq!(off % 512, 0);
                assert!(off >= bat_end);
                assert_eq!(space % 512, 0, "Windows writes bytes, a sector multiple");
                assert!(len <= space);
                used.push((off, off + space));
                let text = utf16le(&b[off as usize..(off + len) as usize]);
                assert_eq!(text, p.locators[i].path);
                let pname = c.file_name(&parent);
                match &e[..4] {
                    b"W2ru" => assert_eq!(text, format!(".\\{pname}")),
                    b"W2ku" => assert_eq!(text, format!("C:\\VMs\\{pname}")),
                    other => panic!("code {other:?}"),
                }
            }
        }
        _ => panic!("{what}: parent link and disk type disagree"),
    }
    used.push((layout.footer_offset, layout.footer_offset + FOOTER_LEN));
    used.sort();
    for w in used.windows(2) {
        assert!(w[0].1 <= w[1].0, "{what}: structures overlap: {used:?}");
    }
    assert_eq!(used.last().unwrap().1, b.len() as u64, "footer is last");
}

fn pattern_chain(dir: &Path, block_size: u32) -> ChainBuilder {
    let size = (16 * MIB).max(30 * block_size as u64);
    let mut c = ChainBuilder::new(dir, size);
    let spb = block_size as u64 / SECTOR;
    let patterns = bitmap_patterns(spb);
    let base = c.base("base.vhd", DiskType::Dynamic, block_size, |e| {
        e.write(0, &fill("base", 0, (size / 2) as usize));
        e.write_runs(size / block_size as u64 - 1, &[(3, 2)]);
    });
    let mid = c.child(base, "mid.vhd", block_size, |e| {
        for (i, (_, runs)) in patterns.iter().enumerate() {
            e.write_runs(i as u64, runs);
        }
    });
    let _leaf = c.child_locators(mid, "leaf.vhd", block_size, Locators::None, |e| {
        for (i, (_, runs)) in patterns.iter().enumerate() {
            e.write_runs(i as u64 * 2, runs);
        }
    });
    c
}

#[test]
fn every_bitmap_pattern_chain_matches_the_spec_reader_and_layout() {
    for bs in [4096u32, 512 << 10, 2 << 20, 4 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let c = pattern_chain(dir.path(), bs);
        for id in c.layers() {
            check_structures(&c, &id);
        }
        check_every_state(&c);
    }
}

#[test]
fn bitmaps_are_msb_first() {
    let mut p = vec![false; 4096];
    p[0] = true;
    assert_eq!(bitmap_bytes(&p, 512)[0], 0x80);
    p[0] = false;
    p[15] = true;
    assert_eq!(&bitmap_bytes(&p, 512)[..2], &[0, 0x01]);
    p[8] = true;
    assert_eq!(&bitmap_bytes(&p, 512)[..2], &[0, 0x81]);
    assert!(!byte_aligned_bitmap(&p));
    assert!(byte_aligned_bitmap(&[true; 16]));
}

#[test]
fn fixed_disks_and_locator_variants_have_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8 * MIB + 3 * 512; // not a block multiple: short last block
    let mut c = ChainBuilder::new(dir.path(), size);
    let base = c.base("fixed.vhd", DiskType::Fixed, 1 << 20, |e| {
        e.write(MIB, &fill("fixed", MIB, (2 * MIB) as usize));
        e.write(size - 512, &fill("fixed", size - 512, 512));
    });
    let mut last = base;
    for (i, l) in [
        Locators::Both,
        Locators::RelativeOnly,
        Locators::AbsoluteOnly,
        Locators::None,
    ]
    .into_iter()
    .enumerate()
    {
        last = c.child_locators(last, &format!("c{i}.vhd"), 1 << 20, l, |e| {
            e.write_sectors(i as u64 * 7, 3);
            e.write_sectors(size / 512 - 1, 1);
        });
        let codes: Vec<[u8; 4]> = c
            .spec(&last)
            .parent
            .as_ref()
            .unwrap()
            .locators
            .iter()
            .map(|l| l.code)
            .collect();
        let expected: Vec<[u8; 4]> = match l {
            Locators::Both => vec![*b"W2ku", *b"W2ru"],
            Locators::RelativeOnly => vec![*b"W2ru"],
            Locators::AbsoluteOnly => vec![*b"W2ku"],
            Locators::None => vec![],
        };
        assert_eq!(codes, expected);
    }
    for id in c.layers() {
        check_structures(&c, &id);
    }
    check_every_state(&c);
}

#[test]
fn model_semantics_differencing_dynamic_copy_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("b.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 4096));
    let child = c.child(base, "c.vhd", 1 << 20, |e| e.write_sectors(10, 1));
    let copy = c.child(child, "d.vhd", 1 << 20, |e| {
        e.full_blocks(true);
        e.write_sectors(2048 + 1, 1);
    });
    let (bm, cm, dm) = (c.expected(&base), c.expected(&child), c.expected(&copy));
    // Unallocated space of a dynamic disk is zeros.
    assert!(bm.read(3 * MIB, MIB as usize).iter().all(|&x| x == 0));
    // A child shows its sector over the parent's, the parent elsewhere.
    assert_eq!(cm.read(10 * 512, 512), fill("c.vhd", 10 * 512, 512));
    assert_eq!(cm.read(9 * 512, 512), bm.read(9 * 512, 512));
    assert_eq!(cm.read(11 * 512, 512), bm.read(11 * 512, 512));
    // Copy-up: every bit set, the parent's data in the rest of the block.
    let blk = &c.spec(&copy).blocks[&1];
    assert!(blk.present.iter().all(|&p| p));
    assert_eq!(dm.read(MIB, 512), cm.read(MIB, 512));
    assert_eq!(dm.read(MIB + 512, 512), fill("d.vhd", MIB + 512, 512));
    let untouched = Model::new(4 * MIB, 512);
    assert_ne!(bm, &untouched);
    check_every_state(&c);
}

#[test]
fn chs_follows_the_spec_algorithm() {
    assert_eq!(chs(16 * MIB), (481, 4, 17));
    // The largest geometry caps at 65535 x 16 x 255.
    assert_eq!(chs(3 << 40), (65535, 16, 255));
    for size in [MIB, 127 * MIB, 1 << 30, 40 << 30, 127 << 30] {
        let (c, h, s) = chs(size);
        let sectors = c as u64 * h as u64 * s as u64;
        assert!(sectors <= size / 512 && sectors > 0, "{size}: {c}/{h}/{s}");
        assert!(h <= 16);
    }
}

#[test]
fn corruption_helpers_damage_only_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("b.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 8));
    let child = c.child(base, "c.vhd", 1 << 20, |e| e.write_sectors(3, 1));
    let (p, l) = (c.path(&child), c.layout(&child).clone());
    let hdr = |p: &Path| std::fs::read(p).unwrap()[512..1536].to_vec();

    corrupt::block_size(&p, &l, 3 << 20);
    assert!(checksum_ok(&hdr(&p), field::DYN_CHECKSUM));
    assert_eq!(be32(&hdr(&p), field::DYN_BLOCK_SIZE), 3 << 20);

    corrupt::locator_length(&p, &l, 1, 4096);
    assert!(checksum_ok(&hdr(&p), field::DYN_CHECKSUM));
    assert_eq!(be32(&hdr(&p), 576 + 24 + 8), 4096);
    assert!(be32(&hdr(&p), 576 + 24 + 4) < 4096, "length now exceeds the space");

    corrupt::dyn_header_checksum(&p, &l);
    assert!(!checksum_ok(&hdr(&p), field::DYN_CHECKSUM));

    let b = c.path(&base);
    let lb = c.layout(&base).clone();
    corrupt::footer_checksum(&b, &lb);
    let bytes = std::fs::read(&b).unwrap();
    assert!(!checksum_ok(&bytes[..512], field::FOOTER_CHECKSUM));
    assert!(!checksum_ok(&bytes[bytes.len() - 512..], field::FOOTER_CHECKSUM));

    corrupt::bat_entry(&b, &lb, 0, 0x00FF_FFFF);
    let bytes = std::fs::read(&b).unwrap();
    assert_eq!(be32(&bytes, lb.bat_offset as usize), 0x00FF_FFFF);
    assert!(0x00FF_FFFFu64 * 512 > bytes.len() as u64);
}

#[test]
fn a_cycle_names_each_other_by_unique_id() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = write_cycle(dir.path(), "a.vhd", "b.vhd", 4 * MIB, 1 << 20);
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(&a[512 + 40..512 + 56], &b[68..84]);
    assert_eq!(&b[512 + 40..512 + 56], &a[68..84]);
}

#[test]
fn invalid_specs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.vhd");
    for bs in [3000u32, 2048, 3 << 20] {
        let s = VhdSpec::new(DiskType::Dynamic, 4 * MIB, bs);
        assert!(write_vhd(&p, &s).is_err(), "block size {bs}");
    }
    let s = VhdSpec::new(DiskType::Differencing, 4 * MIB, 1 << 20);
    assert!(write_vhd(&p, &s).is_err(), "differencing without parent");
}

#[test]
fn locator_space_can_be_written_in_sectors_as_the_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("b.vhd", DiskType::Dynamic, 1 << 20, |_| {});
    let child = c.child_with(base, "c.vhd", 1 << 20, |_| {}, |s| s.locator_space_in_sectors = true);
    let b = std::fs::read(c.path(&child)).unwrap();
    assert_eq!(be32(&b, 512 + 576 + 4), 1, "one sector");
    assert!(checksum_ok(&b[512..1536], field::DYN_CHECKSUM));
}
