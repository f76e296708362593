//! VMDK files made by real products (../shared/samples/vmdk; provenance in its
//! README): a streamOptimized export with header version 3, Workstation descriptors
//! (windows-1252, and a twoGbMaxExtentSparse one of 16 extents) whose extents are
//! supplied here, and an ESXi SESparse extent. Skips with a message when ../shared is
//! absent.

mod util;

use std::path::{Path, PathBuf};

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use ckptfs::io::ReadAt;
use util::{ckptfs, gunzip_sample, have_tool, run, samples_dir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sample(name: &str) -> Option<PathBuf> {
    Some(samples_dir()?.join("vmdk").join(name))
}

fn info(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&ckptfs(["info", "--json", s(path)]).ok().stdout).unwrap()
}

#[test]
fn stream_optimized_version_3() {
    let Some(gz) = sample("iotest-version3.vmdk.gz") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = gunzip_sample(&gz, dir.path());
    let i = info(&p);
    assert_eq!(i["create_type"], "streamOptimized");
    assert_eq!(i["cid"], "a454774a");
    assert_eq!(i["virtual_size"], 16u64 << 30);
    let h = &i["extents"][0]["header"];
    assert_eq!(
        (h["version"].as_u64(), h["compressed"].as_bool(), h["markers"].as_bool()),
        (Some(3), Some(true), Some(true))
    );
    assert_ne!(h["offset"], 0, "the grain directory comes from the footer");
    let tree = CheckpointTree::discover(&p, &DiscoverOptions::default()).unwrap();
    let disk = tree.disk(0);
    // For i in 0..99, the 512 bytes at i×655360 + i×512 are byte 0x30 + i mod 10.
    for i in 0..100u64 {
        let at = i * 655_360 + i * 512;
        let mut b = [0u8; 1024];
        disk.read_at(at, &mut b).unwrap();
        assert!(
            b[..512].iter().all(|&x| x == 0x30 + (i % 10) as u8),
            "sector at {at:#x}"
        );
    }
    let mut tail = vec![1u8; 1 << 20];
    disk.read_at((16 << 30) - (1 << 20), &mut tail).unwrap();
    assert!(tail.iter().all(|&x| x == 0));
}

#[test]
fn workstation_descriptor_in_windows_1252() {
    let Some(desc) = sample("workstation-descriptor.vmdk") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Windows 7.vmdk");
    std::fs::copy(&desc, &p).unwrap();
    // Its extent is not included: the error names it.
    let out = ckptfs(["info", s(&p)]).failed();
    assert!(
        out.stderr.contains("extent file \"test1.vmdk\" is missing"),
        "{}",
        out.stderr
    );
    if !have_tool("qemu-img") {
        return;
    }
    // A sparse extent of the size its line gives (a qemu monolithicSparse file, whose
    // own embedded descriptor is not followed as an extent).
    let ext = dir.path().join("test1.vmdk");
    run("qemu-img", &["create", "-q", "-f", "vmdk", s(&ext), "8G"]);
    run("qemu-io", &["-f", "vmdk", "-c", "write -P 0x7e 1G 4k", s(&ext)]);
    let i = info(&p);
    assert_eq!(
        (i["cid"].as_str(), i["parent_cid"].as_str()),
        (Some("fffffffe"), Some("ffffffff"))
    );
    assert_eq!(i["encoding"], "windows-1252");
    assert_eq!(i["ddb"]["ddb.adapterType"], "ide");
    assert_eq!(i["ddb"]["ddb.geometry.cylinders"], "16383");
    assert_eq!(i["extents"][0]["access"], "RW");
    assert_eq!(i["virtual_size"], 8u64 << 30);
    let tree = CheckpointTree::discover(&p, &DiscoverOptions::default()).unwrap();
    assert_eq!(tree.checkpoints.len(), 1, "the extent is not a member of its own");
    let mut b = [0u8; 4096];
    tree.disk(0).read_at(1 << 30, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x7e));
}

#[test]
fn two_gb_max_extent_sparse_descriptor_of_16_extents() {
    let Some(desc) = sample("twoGbMaxExtentSparse-descriptor.vmdk") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("disk.vmdk");
    std::fs::copy(&desc, &p).unwrap();
    let out = ckptfs(["list", s(&p)]).failed();
    assert!(
        out.stderr.contains("descriptor line 9") && out.stderr.contains("\"disk-s001.vmdk\" is missing"),
        "{}",
        out.stderr
    );
    if !have_tool("qemu-img") {
        return;
    }
    // Extents of the sizes the lines give, data in the 2nd and the 16th.
    for n in 1..=16 {
        let sectors: u64 = if n == 16 { 983_040 } else { 8_323_072 };
        let e = dir.path().join(format!("disk-s{n:03}.vmdk"));
        run(
            "qemu-img",
            &["create", "-q", "-f", "vmdk", s(&e), &format!("{}", sectors * 512)],
        );
    }
    run(
        "qemu-io",
        &[
            "-f",
            "vmdk",
            "-c",
            "write -P 0x12 4096 8k",
            s(&dir.path().join("disk-s002.vmdk")),
        ],
    );
    run(
        "qemu-io",
        &[
            "-f",
            "vmdk",
            "-c",
            "write -P 0x16 503312384 4k",
            s(&dir.path().join("disk-s016.vmdk")),
        ],
    );
    let i = info(&p);
    assert_eq!(i["extents"].as_array().unwrap().len(), 16);
    let size = (15 * 8_323_072u64 + 983_040) * 512;
    assert_eq!(i["virtual_size"], size);
    let tree = CheckpointTree::discover(&p, &DiscoverOptions::default()).unwrap();
    assert_eq!(tree.checkpoints.len(), 1);
    let disk = tree.disk(0);
    let mut b = vec![0u8; 16384];
    disk.read_at(8_323_072 * 512, &mut b).unwrap();
    assert!(
        b[..4096].iter().all(|&x| x == 0)
            && b[4096..12288].iter().all(|&x| x == 0x12)
            && b[12288..].iter().all(|&x| x == 0)
    );
    let mut b = vec![0u8; 4096];
    disk.read_at(size - 4096, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x16));
}

/// The ESXi SESparse extent, behind a descriptor written here (ESXi's own descriptor is
/// not among the samples): the first 16 MiB read as `a`, the rest as zeros; with the
/// volatile header's replay flag set, a one-line refusal.
#[test]
fn esxi_sesparse_extent() {
    let Some(gz) = sample("sesparse.vmdk.gz") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ext = gunzip_sample(&gz, dir.path());
    let alone = ckptfs(["info", s(&ext)]).failed();
    assert!(
        alone.stderr.contains("SESparse extent without a descriptor"),
        "{}",
        alone.stderr
    );
    let desc = dir.path().join("disk.vmdk");
    std::fs::write(
        &desc,
        "# Disk DescriptorFile\nversion=1\nCID=5a5a5a5a\nparentCID=ffffffff\ncreateType=\"seSparse\"\n\nRW 1048576 SESPARSE \"sesparse.vmdk\"\n",
    )
    .unwrap();
    let i = info(&desc);
    assert_eq!(i["virtual_size"], 512u64 << 20);
    assert_eq!(i["extents"][0]["allocated_grains"], 4096);
    assert_eq!(i["extents"][0]["esx"]["replay_journal"], 0);
    let disk = ckptfs(["cat", s(&desc), "01_current/disk.img"]).ok().stdout;
    assert_eq!(disk.len(), 512 << 20);
    assert!(disk[..16 << 20].iter().all(|&b| b == b'a'));
    assert!(disk[16 << 20..].iter().all(|&b| b == 0));
    // As a delta over a flat base: past the first 16 MiB, the base's bytes show.
    let base_flat = dir.path().join("base-flat.vmdk");
    let f = std::fs::File::create(&base_flat).unwrap();
    f.set_len(512 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x42; 4096], (16 << 20) - 2048).unwrap();
    drop(f);
    std::fs::write(
        dir.path().join("base.vmdk"),
        "# Disk DescriptorFile\nversion=1\nCID=0000b45e\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\nRW 1048576 VMFS \"base-flat.vmdk\"\n",
    )
    .unwrap();
    std::fs::write(
        &desc,
        "# Disk DescriptorFile\nversion=1\nCID=5a5a5a5a\nparentCID=0000b45e\nparentFileNameHint=\"/vmfs/volumes/ds1/vm/base.vmdk\"\ncreateType=\"seSparse\"\n\nRW 1048576 SESPARSE \"sesparse.vmdk\"\n",
    )
    .unwrap();
    let disk = ckptfs(["cat", s(&desc), "02_current/disk.img"]).ok().stdout;
    assert!(disk[..16 << 20].iter().all(|&b| b == b'a'), "the delta's grains win");
    assert!(
        disk[16 << 20..(16 << 20) + 2048].iter().all(|&b| b == 0x42),
        "the base shows through"
    );
    assert!(disk[(16 << 20) + 2048..].iter().all(|&b| b == 0));
    // The replay flag (volatile header at sector 1, u64 at +24).
    let mut b = std::fs::read(&ext).unwrap();
    b[512 + 24] = 1;
    std::fs::write(&ext, &b).unwrap();
    let out = ckptfs(["cat", s(&desc), "01_current/disk.img"]).failed();
    assert!(
        out.stderr.lines().count() == 1 && out.stderr.contains("sesparse.vmdk") && out.stderr.contains("needs replay"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&ext).unwrap(), b, "nothing written");
}
