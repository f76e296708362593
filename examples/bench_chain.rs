//! Build the benchmark's checkpoint chain (scripts/bench.sh): on top of a base VHDX,
//! `LAYERS` differencing disks, layer i rewriting the i-th slice of one file with new
//! bytes, so that reading the file at the newest state touches every layer. The flat
//! raw image is updated alongside and ends as the newest state's exact bytes, for the
//! kernel baseline. Dev tool, not part of ckptfs.
//!
//! ```text
//! bench_chain BASE.vhdx FLAT.raw EXTENTS LAYERS
//! ```
//! EXTENTS lists the file's physical extents in file order, one `disk_offset length`
//! (bytes) per line.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs::{File, FileTimes};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use ckptfs::format::vhdx::VhdxFile;
use support::vhdx_writer::{write_vhdx, BlockState, Geometry, ParentLink, VhdxSpec};

const BLOCK: u64 = 2 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: bench_chain BASE.vhdx FLAT.raw EXTENTS LAYERS");
        std::process::exit(2);
    }
    let base = PathBuf::from(&args[0]);
    let flat = File::options()
        .read(true)
        .write(true)
        .open(&args[1])
        .expect("open flat image");
    let extents: Vec<(u64, u64)> = std::fs::read_to_string(&args[2])
        .expect("read extents")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<u64>().expect("number"));
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    let layers: u64 = args[3].parse().expect("LAYERS");

    let parent = VhdxFile::open(&base).expect("open base");
    let size = parent.metadata.virtual_size;
    let mut parent_guid = parent.header.data_write_guid;
    let mut parent_name = base.file_name().unwrap().to_string_lossy().into_owned();
    let dir = base.parent().unwrap().to_path_buf();
    let stem = base.file_stem().unwrap().to_string_lossy().into_owned();
    let file_len: u64 = extents.iter().map(|e| e.1).sum();
    let slice = file_len.div_ceil(layers);
    let mut seed = 0x5EED_u64;
    let t0 = 1_767_225_600u64; // 2026-01-01: one state a minute from here

    for layer in 0..layers {
        // The disk ranges holding file bytes [layer * slice, (layer + 1) * slice).
        let (from, to) = (layer * slice, ((layer + 1) * slice).min(file_len));
        let mut touched = std::collections::BTreeSet::new();
        let mut file_pos = 0u64;
        for &(disk, len) in &extents {
            let (a, b) = (from.max(file_pos), to.min(file_pos + len));
            if a < b {
                let at = disk + (a - file_pos);
                let mut bytes = vec![0u8; (b - a) as usize];
                for c in bytes.chunks_mut(8) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let n = c.len();
                    c.copy_from_slice(&seed.to_le_bytes()[..n]);
                }
                flat.write_all_at(&bytes, at).expect("write flat image");
                for block in at / BLOCK..(at + bytes.len() as u64).div_ceil(BLOCK) {
                    touched.insert(block);
                }
            }
            file_pos += len;
        }
        let mut spec = VhdxSpec::new(Geometry::new(size, BLOCK as u32, 512));
        spec.parent = Some(ParentLink::hyperv(parent_guid, &parent_name));
        // As Hyper-V does, and as libvhdi (vhdimount, a peer in the benchmark) needs.
        spec.sector_bitmaps_for_all_chunks = true;
        for block in touched {
            let len = BLOCK.min(size - block * BLOCK);
            let mut data = vec![0u8; len as usize];
            flat.read_exact_at(&mut data, block * BLOCK).expect("read flat image");
            spec.blocks.insert(block, BlockState::FullyPresent(data));
        }
        let name = format!("{stem}_{:02}.avhdx", layer + 1);
        let path = dir.join(&name);
        write_vhdx(&path, &spec).expect("write layer");
        let t = UNIX_EPOCH + Duration::from_secs(t0 + 60 * (layer + 1));
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(t))
            .unwrap();
        parent_guid = spec.data_write_guid;
        parent_name = name;
        println!("{}", path.display());
    }
    File::options()
        .write(true)
        .open(&base)
        .unwrap()
        .set_times(FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(t0)))
        .unwrap();
}
