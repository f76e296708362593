//! VHDX files written by qemu-img, a writer nobody on this team wrote: every byte that
//! `ckptfs cat` returns must equal the raw disk qemu-img was given.

mod util;

use std::path::Path;

use util::{assert_same_bytes, ckptfs, have_tool, pseudo_random, run};

/// A 64 MiB raw disk: random data with holes, so dynamic files leave blocks unallocated.
fn raw_disk(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let mut data = vec![0u8; 64 << 20];
    let random = pseudo_random(42, data.len());
    for (i, chunk) in data.chunks_mut(3 << 20).enumerate() {
        // Two thirds of the 3 MiB stripes hold data, one is zero.
        if i % 3 != 1 {
            let start = i * (3 << 20);
            chunk.copy_from_slice(&random[start..start + chunk.len()]);
        }
    }
    // A last few sectors of data right at the end of the disk.
    let n = data.len();
    data[n - 1536..].copy_from_slice(&random[..1536]);
    let path = dir.join("disk.raw");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn check(options: &str) {
    if !have_tool("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (raw, data) = raw_disk(dir.path());
    let vhdx = dir.path().join("disk.vhdx");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vhdx",
            "-o",
            options,
            raw.to_str().unwrap(),
            vhdx.to_str().unwrap(),
        ],
    );
    let out = ckptfs(["cat", vhdx.to_str().unwrap(), "01_current/disk.img"]).ok();
    assert_same_bytes(&out.stdout, &data, options);
}

#[test]
fn dynamic_1mib_blocks() {
    check("subformat=dynamic,block_size=1M");
}

#[test]
fn dynamic_32mib_blocks() {
    check("subformat=dynamic,block_size=32M");
}

#[test]
fn dynamic_256mib_blocks_larger_than_the_disk() {
    check("subformat=dynamic,block_size=256M");
}

#[test]
fn dynamic_with_zero_block_state_and_a_larger_log() {
    check("subformat=dynamic,block_size=2M,block_state_zero=on,log_size=4M");
}

#[test]
fn fixed() {
    check("subformat=fixed,block_size=8M");
}

/// A 64 TiB dynamic disk with a few written blocks opens at once and reads right at
/// both ends, through the library API (a full `cat` would be 64 TiB).
#[test]
fn sparse_64_tib_disk_reads_at_its_far_end() {
    use ckptfs::chain::{CheckpointTree, DiscoverOptions};
    use ckptfs::io::ReadAt;

    if !have_tool("qemu-img") || !have_tool("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vhdx = dir.path().join("huge.vhdx");
    let v = vhdx.to_str().unwrap();
    run(
        "qemu-img",
        &["create", "-q", "-f", "vhdx", "-o", "block_size=32M", v, "64T"],
    );
    let last = (64u64 << 40) - 4096;
    run(
        "qemu-io",
        &[
            "-f",
            "vhdx",
            "-c",
            &format!("write -q -P 0xab {last} 4096"),
            "-c",
            "write -q -P 0xcd 0 512",
            v,
        ],
    );
    let tree = CheckpointTree::discover(&vhdx, &DiscoverOptions::default()).unwrap();
    let disk = tree.disk(0);
    assert_eq!(disk.size(), 64u64 << 40);
    let mut b = vec![0u8; 8192];
    disk.read_at(last - 4096, &mut b).unwrap();
    assert!(b[..4096].iter().all(|&x| x == 0) && b[4096..].iter().all(|&x| x == 0xab));
    disk.read_at(0, &mut b[..1024]).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0xcd) && b[512..1024].iter().all(|&x| x == 0));
    assert!(disk.read_at(last, &mut b).is_err(), "a read past the end is an error");
}
