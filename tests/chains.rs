//! Checkpoint chains built by the test-only writer (tests/support, checked against
//! independent readers by scripts/crosscheck_writer.py): every state's disk, read
//! through ckptfs, must equal the expected raw disk.

mod support;
mod util;

use std::path::{Path, PathBuf};

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use ckptfs::io::ReadAt;
use support::model::Model;
use support::vhdx_writer::{ChainBuilder, DirtyLog, LayerId, LogSpec};
use util::{assert_same_bytes, ckptfs, pseudo_random};

const MIB: u64 = 1 << 20;

fn discover(path: &Path) -> CheckpointTree {
    CheckpointTree::discover(path, &DiscoverOptions::default()).unwrap()
}

/// The checkpoint of `tree` held in `file`.
fn checkpoint_of(tree: &CheckpointTree, file: &Path) -> usize {
    let file = std::fs::canonicalize(file).unwrap();
    tree.checkpoints
        .iter()
        .position(|c| c.path == file)
        .expect("file is in the tree")
}

/// Compare a state's disk with its model: everything for small disks; for large ones
/// every range that may hold data, both ends of every gap, and pseudo-random probes.
fn assert_disk_equals(tree: &CheckpointTree, file: &Path, expected: &Model) {
    let disk = tree.disk(checkpoint_of(tree, file));
    let what = file.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(disk.size(), expected.size(), "{what}: size");
    let compare = |offset: u64, len: u64| {
        let mut got = vec![0u8; len as usize];
        disk.read_at(offset, &mut got)
            .unwrap_or_else(|e| panic!("{what}: read at {offset:#x}: {e}"));
        assert_same_bytes(
            &got,
            &expected.read(offset, len as usize),
            &format!("{what} at {offset:#x}"),
        );
    };
    if expected.size() <= 256 * MIB {
        for at in (0..expected.size()).step_by(4 * MIB as usize) {
            compare(at, (4 * MIB).min(expected.size() - at));
        }
        return;
    }
    let mut end_of_last = 0;
    for (offset, len) in expected.data_ranges() {
        for at in (offset..offset + len).step_by(4 * MIB as usize) {
            compare(at, (4 * MIB).min(offset + len - at));
        }
        if offset > end_of_last {
            compare(end_of_last, 4096.min(offset - end_of_last));
            compare(offset - 4096.min(offset - end_of_last), 4096.min(offset - end_of_last));
        }
        end_of_last = offset + len;
    }
    let probes = pseudo_random(9, 64 * 8);
    for p in probes.chunks(8) {
        let at = u64::from_le_bytes(p.try_into().unwrap()) % (expected.size() / 4096) * 4096;
        compare(at, 4096);
    }
}

fn assert_all_states(chain: &ChainBuilder, start: &LayerId) {
    let tree = discover(&chain.path(start));
    assert_eq!(
        tree.checkpoints.len(),
        chain.layers().len(),
        "every file of the tree is found"
    );
    for id in chain.layers() {
        assert_disk_equals(&tree, &chain.path(&id), chain.expected(&id));
    }
}

/// Writes at sector granularity that straddle block edges, so children get
/// partially present blocks.
fn scatter(e: &mut support::vhdx_writer::LayerEdits, seed: u64, size: u64, count: usize) {
    let ss = u64::from(e.geometry().logical_sector_size);
    let r = pseudo_random(seed, count * 16);
    for (i, c) in r.chunks(16).enumerate() {
        let at = u64::from_le_bytes(c[..8].try_into().unwrap()) % (size / ss - 64) * ss;
        let sectors = 1 + u64::from_le_bytes(c[8..].try_into().unwrap()) % 40;
        e.write(at, &pseudo_random(seed * 1000 + i as u64, (sectors * ss) as usize));
    }
}

fn mixed_chain(sector: u32) {
    let dir = tempfile::tempdir().unwrap();
    let size = 96 * MIB;
    let mut c = ChainBuilder::new(dir.path(), size, sector);
    let base = c.base("vm.vhdx", 32 << 20, false, |e| {
        e.write(0, &pseudo_random(1, (40 * MIB) as usize));
        e.write(70 * MIB, &pseudo_random(2, (3 * MIB) as usize));
    });
    let a = c.child(base, "vm_A.avhdx", 1 << 20, |e| {
        scatter(e, 3, size, 60);
        e.zero_block(5);
        e.unmap_block(6, false);
        e.unmap_block(7, true);
        e.undefine_block(8);
        e.write(20 * MIB, &pseudo_random(4, MIB as usize)); // a whole 1 MiB block
    });
    let b = c.child(a, "vm_B.avhdx", 8 << 20, |e| {
        e.full_blocks(true);
        e.write(33 * MIB, &pseudo_random(5, 4096));
        let ss = u64::from(e.geometry().logical_sector_size);
        e.write(71 * MIB + 3 * ss, &pseudo_random(6, 5 * ss as usize));
    });
    let _c = c.child(b, "vm_C.avhdx", 2 << 20, |e| scatter(e, 7, size, 30));
    assert_all_states(&c, &base);
}

#[test]
fn chain_with_every_block_state_and_mixed_block_sizes_512_byte_sectors() {
    mixed_chain(512);
}

#[test]
fn chain_with_every_block_state_and_mixed_block_sizes_4096_byte_sectors() {
    mixed_chain(4096);
}

#[test]
fn fixed_base_with_a_differencing_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 24 * MIB, 512);
    let base = c.base("fixed.vhdx", 4 << 20, true, |e| {
        e.write(MIB, &pseudo_random(11, (5 * MIB) as usize))
    });
    let child = c.child(base, "fixed_1.avhdx", 1 << 20, |e| scatter(e, 12, 24 * MIB, 20));
    assert_all_states(&c, &child);
}

/// 10 GiB with 512-byte sectors: three sector-bitmap chunks, partially present
/// blocks in the second and third.
#[test]
fn sparse_chain_spanning_several_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let size = 10 << 30;
    let mut c = ChainBuilder::new(dir.path(), size, 512);
    let base = c.base("big.vhdx", 64 << 20, false, |e| {
        e.write(0, &pseudo_random(21, MIB as usize));
        e.write((5 << 30) + 3 * MIB, &pseudo_random(22, (2 * MIB) as usize));
    });
    let child = c.child(base, "big_1.avhdx", 2 << 20, |e| {
        for (i, at) in [(4u64 << 30) + 512, (5 << 30) + 3 * MIB + 4096, (9 << 30) + 7 * 512]
            .iter()
            .enumerate()
        {
            e.write(*at, &pseudo_random(23 + i as u64, 512 * 9));
        }
        e.write((10 << 30) - 1024, &pseudo_random(29, 1024));
    });
    let _grandchild = c.child(child, "big_2.avhdx", 32 << 20, |e| {
        e.write((8 << 30) + 512, &pseudo_random(30, 512))
    });
    assert_all_states(&c, &base);
}

#[test]
fn dirty_logs_are_replayed_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let size = 48 * MIB;
    let mut c = ChainBuilder::new(dir.path(), size, 512);
    let base = c.base_with(
        "dirty.vhdx",
        2 << 20,
        false,
        |e| e.write(0, &pseudo_random(41, (20 * MIB) as usize)),
        |spec| spec.log = LogSpec::Dirty(DirtyLog::default()),
    );
    let child = c.child_with(
        base,
        "dirty_1.avhdx",
        1 << 20,
        |e| scatter(e, 42, size, 40),
        |spec| spec.log = LogSpec::Dirty(DirtyLog::default()),
    );
    let paths: Vec<PathBuf> = c.layers().iter().map(|id| c.path(id)).collect();
    let before: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_all_states(&c, &child);
    // The CLI says so, and nothing was written to either file.
    let info = ckptfs(["info", "--json", paths[1].to_str().unwrap()]).ok();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["log"]["state"], "replayed");
    assert!(info["log"]["entries_replayed"].as_u64().unwrap() >= 1);
    ckptfs(["list", paths[0].to_str().unwrap()]).ok();
    for (p, b) in paths.iter().zip(&before) {
        assert!(std::fs::read(p).unwrap() == *b, "{} was modified", p.display());
    }
}

/// `cat <checkpoint>/disk.img` through the binary equals the expected disk, for each
/// state of a chain, found from the leaf.
#[test]
fn cat_writes_every_state_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let size = 16 * MIB;
    let mut c = ChainBuilder::new(dir.path(), size, 512);
    let base = c.base("vm.vhdx", 1 << 20, false, |e| {
        e.write(0, &pseudo_random(51, (6 * MIB) as usize))
    });
    let a = c.child(base, "vm_A.avhdx", 1 << 20, |e| scatter(e, 52, size, 10));
    let b = c.child(a, "vm_B.avhdx", 1 << 20, |e| scatter(e, 53, size, 10));
    let leaf = c.path(&b);
    let list = ckptfs(["list", "--json", leaf.to_str().unwrap()]).ok();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    for id in c.layers() {
        let file = std::fs::canonicalize(c.path(&id)).unwrap();
        let entry = list["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == file.to_str().unwrap())
            .unwrap();
        let name = entry["name"].as_str().unwrap();
        let out = ckptfs(["cat", leaf.to_str().unwrap(), &format!("{name}/disk.img")]).ok();
        assert_same_bytes(&out.stdout, &c.expected(&id).read(0, size as usize), name);
    }
}

/// BAT entries a hostile file may hold: a block at offset 0 (the header section) is
/// refused whole, not only its first MiB; a FileOffsetMB near 2^44 is past the end,
/// not an offset that wraps around to the file's own metadata.
#[test]
fn hostile_block_offsets_are_errors_for_every_part_of_the_block() {
    use std::os::unix::fs::FileExt;
    for (what, entry) in [("offset 0", 6u64), ("offset near 2^64", 0xFFFF_FFFF_FFF0_0006)] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ChainBuilder::new(dir.path(), 8 * MIB, 512);
        let base = c.base("vm.vhdx", 4 << 20, false, |e| {
            e.write(0, &pseudo_random(61, (4 * MIB) as usize))
        });
        let path = c.path(&base);
        let bat = c.layout(&base).bat_offset;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&entry.to_le_bytes(), bat)
            .unwrap();
        let tree = discover(&path);
        let disk = tree.disk(0);
        for at in [0, MIB, 3 * MIB] {
            let mut b = vec![0u8; 512];
            let err = disk.read_at(at, &mut b).expect_err(what).to_string();
            assert!(err.contains("block 0 points at"), "{what} at {at:#x}: {err}");
        }
    }
}
