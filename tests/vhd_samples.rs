//! Legacy VHD files made by real products (../shared/samples/vhd): the size rule on
//! two 127 GiB disks, byte-identity with `qemu-img convert -f vpc -O raw`, and a
//! differencing child built here over a Windows-made parent, read through the chain.
//! Skips with a message when ../shared is absent.

mod util;

use std::path::{Path, PathBuf};

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use ckptfs::io::ReadAt;
use util::{assert_same_bytes, ckptfs, gunzip_sample, have_tool, samples_dir};

fn sample(name: &str, dir: &Path) -> Option<PathBuf> {
    let samples = samples_dir()?;
    Some(gunzip_sample(&samples.join("vhd").join(name), dir))
}

fn info(path: &Path) -> serde_json::Value {
    let out = ckptfs(["info", "--json", path.to_str().unwrap()]).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn virtual_pc_disk_is_sized_by_its_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = sample("virtualpc-dynamic.vhd.gz", dir.path()) else {
        return;
    };
    let f = ckptfs::format::open(&p).unwrap();
    assert_eq!(f.format(), "vhd");
    assert_eq!(f.layer(0).virtual_size(), 0x1f_bfe0_4000);
    let i = info(&p);
    assert_eq!(i["size_rule"], "geometry");
    assert_eq!(i["current_size"], 0x1f_c000_0000u64);
    assert_eq!(i["creator_app"], "vpc ");
}

#[test]
fn hyperv_disk_is_sized_by_its_current_size() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = sample("hyperv2012r2-dynamic.vhd.gz", dir.path()) else {
        return;
    };
    let f = ckptfs::format::open(&p).unwrap();
    assert_eq!(f.layer(0).virtual_size(), 0x1f_c000_0000);
    let i = info(&p);
    assert_eq!(i["size_rule"], "current_size");
    assert_eq!(i["geometry"]["size"], 0x1f_bfe0_4000u64);
    assert_eq!(i["dynamic"]["allocated_blocks"], 0);
}

/// `cat` of the only state against qemu-img's conversion; returns the disk.
fn same_as_qemu(name: &str, dir: &Path) -> Option<Vec<u8>> {
    let p = sample(name, dir)?;
    let out = ckptfs(["cat", p.to_str().unwrap(), "01_current/disk.img"]).ok();
    if have_tool("qemu-img") {
        let raw = dir.join("qemu.raw");
        util::run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "vpc",
                "-O",
                "raw",
                p.to_str().unwrap(),
                raw.to_str().unwrap(),
            ],
        );
        assert_same_bytes(&out.stdout, &std::fs::read(raw).unwrap(), name);
    }
    Some(out.stdout)
}

/// What the samples README says is in both Windows-made disks: MBR, NTFS at LBA 128.
fn assert_windows_layout(disk: &[u8], what: &str) {
    assert_eq!(disk.len(), 10 << 20, "{what}: virtual size");
    assert_eq!(&disk[510..512], &[0x55, 0xAA], "{what}: MBR signature");
    assert_eq!(u32::from_le_bytes(disk[0x1C6..0x1CA].try_into().unwrap()), 128);
    assert_eq!(&disk[128 * 512 + 3..128 * 512 + 11], b"NTFS    ", "{what}");
}

#[test]
fn windows_fixed_vhd_reads_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(disk) = same_as_qemu("fixed.vhd.gz", dir.path()) {
        assert_windows_layout(&disk, "fixed.vhd");
    }
}

#[test]
fn windows_dynamic_vhd_reads_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(disk) = same_as_qemu("dynamic.vhd.gz", dir.path()) {
        assert_windows_layout(&disk, "dynamic.vhd");
    }
}

#[test]
fn disk2vhd_zero_filled_vhd_reads_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(disk) = same_as_qemu("d2v-zerofilled.vhd.gz", dir.path()) {
        assert_eq!(disk.len(), 263_454_720);
    }
}

fn checksum(b: &[u8], at: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(at..at + 4).contains(i))
        .fold(0u32, |s, (_, &x)| s.wrapping_add(u32::from(x)));
    !sum
}

/// A differencing child of a 10 MiB parent with unique id `parent`, 2 MiB blocks:
/// block 0 has sectors 0..4 and 130 (bitmap MSB first) filled with 0xEE; block 2 is
/// fully present with 0xDD; the rest is the parent's.
fn child_of(parent: uuid::Uuid) -> Vec<u8> {
    let bs = 2usize << 20;
    let mut footer = vec![0u8; 512];
    footer[..8].copy_from_slice(b"conectix");
    footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    footer[16..24].copy_from_slice(&512u64.to_be_bytes());
    footer[28..32].copy_from_slice(b"win ");
    footer[40..48].copy_from_slice(&(10u64 << 20).to_be_bytes());
    footer[48..56].copy_from_slice(&(10u64 << 20).to_be_bytes());
    footer[60..64].copy_from_slice(&4u32.to_be_bytes());
    footer[68..84].copy_from_slice(&[0x42; 16]);
    let c = checksum(&footer, 64);
    footer[64..68].copy_from_slice(&c.to_be_bytes());
    let mut h = vec![0u8; 1024];
    h[..8].copy_from_slice(b"cxsparse");
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&1536u64.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    h[28..32].copy_from_slice(&5u32.to_be_bytes());
    h[32..36].copy_from_slice(&(bs as u32).to_be_bytes());
    h[40..56].copy_from_slice(parent.as_bytes());
    let loc: Vec<u8> = r".\parent.vhd".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    h[576..580].copy_from_slice(b"W2ru");
    h[580..584].copy_from_slice(&1u32.to_be_bytes());
    h[584..588].copy_from_slice(&(loc.len() as u32).to_be_bytes());
    h[592..600].copy_from_slice(&2048u64.to_be_bytes());
    let c = checksum(&h, 36);
    h[36..40].copy_from_slice(&c.to_be_bytes());
    let mut f = footer.clone();
    f.extend(h);
    let mut bat = [0xFFu8; 20];
    bat[0..4].copy_from_slice(&5u32.to_be_bytes()); // block 0 at sector 5 (0xA00)
    bat[8..12].copy_from_slice(&(5u32 + 1 + (bs / 512) as u32).to_be_bytes());
    f.extend(bat);
    f.resize(2048, 0);
    f.extend(&loc);
    f.resize(0xA00, 0);
    let mut bitmap = vec![0u8; 512];
    bitmap[0] = 0xF0;
    bitmap[130 / 8] = 0x80 >> (130 % 8);
    f.extend(&bitmap);
    f.extend(std::iter::repeat_n(0xEE, bs));
    f.extend([0xFF; 512]);
    f.extend(std::iter::repeat_n(0xDD, bs));
    f.extend(footer);
    f
}

#[test]
fn differencing_child_over_a_windows_parent_reads_through_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let Some(p) = sample("dynamic.vhd.gz", dir.path()) else {
        return;
    };
    let parent_path = dir.path().join("parent.vhd");
    std::fs::rename(&p, &parent_path).unwrap();
    let parent = ckptfs::format::open(&parent_path).unwrap();
    let id = parent.identity().value;
    let uuid = uuid::Uuid::parse_str(id.trim_matches(['{', '}'])).unwrap();
    let child_path = dir.path().join("child.vhd");
    std::fs::write(&child_path, child_of(uuid)).unwrap();

    let tree = CheckpointTree::discover(&child_path, &DiscoverOptions::default()).unwrap();
    assert_eq!(tree.checkpoints.len(), 2);
    let current = tree.checkpoints.iter().position(|c| c.current).unwrap();
    let disk = tree.disk(current);
    let mut got = vec![0u8; 10 << 20];
    disk.read_at(0, &mut got).unwrap();
    let base = tree
        .checkpoints
        .iter()
        .position(|c| c.path == parent_path.canonicalize().unwrap())
        .unwrap();
    let mut want = vec![0u8; 10 << 20];
    tree.disk(base).read_at(0, &mut want).unwrap();
    assert_windows_layout(&want, "parent");
    want[..4 * 512].fill(0xEE);
    want[130 * 512..131 * 512].fill(0xEE);
    want[4 << 20..6 << 20].fill(0xDD);
    assert_same_bytes(&got, &want, "child over parent");

    // A parent with another unique id is refused.
    std::fs::write(&child_path, child_of(uuid::Uuid::nil())).unwrap();
    assert!(CheckpointTree::discover(&child_path, &DiscoverOptions::default()).is_err());
}
