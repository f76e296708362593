//! The fuzz targets' checks, without nightly: every target's check function (shared
//! with `fuzz/fuzz_targets/` through `fuzz/checks/`) runs over the committed seeds in
//! `fuzz/seeds/<target>/` and over deterministic pseudo-random mutations of them.
//! A failure prints the target, the seed, the mutation and the input in hex, ready to
//! be saved as a file and replayed with `cargo fuzz run <target> <file>`.

#[allow(dead_code)]
#[path = "../fuzz/checks/mod.rs"]
mod checks;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutations per seed, by target (the file-writing target is the slow one).
fn mutations(target: &str) -> usize {
    match target {
        "vhdx_file" => 40,
        "vhd_file" => 150,
        // Write an image file (and a descriptor) per input.
        "vmdk_sparse" | "vmdk_esx" => 150,
        // Writes up to seven image files per input.
        "chain_discovery" => 25,
        "layered_read" => 80,
        "gpt" => 100,
        "log_replay" => 200,
        _ => 400,
    }
}

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

fn committed_seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(seed_dir(target))
        .unwrap_or_else(|e| panic!("{}: {e}", seed_dir(target).display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

/// xorshift64*: the same mutations on every run and every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x1000,
    0xFFFF,
    1 << 20,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1 << 40,
    u64::MAX,
];

/// One to four libFuzzer-style edits of `seed`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(10) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = INTERESTING[rng.below(5)] as u8,
            2 if !b.is_empty() => b[at] = b[at].wrapping_add(rng.below(9) as u8).wrapping_sub(4),
            3 => {
                let width = [2, 4, 8][rng.below(3)];
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                for (i, x) in v[..width].iter().enumerate() {
                    if let Some(y) = b.get_mut(at + i) {
                        *y = *x;
                    }
                }
            }
            4 => b.insert(at.min(b.len()), rng.next() as u8),
            5 if !b.is_empty() => {
                let n = 1 + rng.below(8.min(b.len() - at));
                b.drain(at..at + n);
            }
            6 if !b.is_empty() => {
                let n = 1 + rng.below(16.min(b.len() - at));
                let chunk = b[at..at + n].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, chunk);
            }
            7 => b.truncate(at),
            8 if !other.is_empty() => {
                let from = rng.below(other.len());
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            _ => {
                if let Some(y) = b.get_mut(at) {
                    *y = rng.next() as u8;
                }
            }
        }
    }
    b
}

fn run_one(target: &str, what: &str, check: fn(&[u8]), data: &[u8]) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| check(data))) {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "fuzz check {target} failed on {what}; input ({} bytes):\n{hex}",
            data.len()
        );
        resume_unwind(p);
    }
}

fn run_target(target: &str) {
    let check = checks::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, f)| *f)
        .unwrap();
    let seeds = committed_seeds(target);
    for (name, data) in &seeds {
        run_one(target, &format!("seed {name}"), check, data);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    for (i, (name, data)) in seeds.iter().enumerate() {
        let other = &seeds[(i + 1) % seeds.len()].1;
        for m in 0..mutations(target) {
            let input = mutate(&mut rng, data, other);
            run_one(target, &format!("mutation {m} of seed {name}"), check, &input);
        }
    }
    print_stats(target);
}

fn print_stats(target: &str) {
    if std::env::var_os("CKPTFS_FUZZ_STATS").is_some() {
        let stats = checks::stats().lock().unwrap();
        for (what, n) in stats.iter() {
            eprintln!("{target}: {what}: {n}");
        }
    }
}

#[test]
fn header() {
    run_target("header");
}

#[test]
fn region_table() {
    run_target("region_table");
}

#[test]
fn metadata() {
    run_target("metadata");
}

#[test]
fn parent_locator() {
    run_target("parent_locator");
}

#[test]
fn bat() {
    run_target("bat");
}

#[test]
fn sector_bitmap() {
    run_target("sector_bitmap");
}

#[test]
fn log_replay() {
    run_target("log_replay");
}

#[test]
fn layered_read() {
    run_target("layered_read");
}

#[test]
fn vhdx_file() {
    run_target("vhdx_file");
}

#[test]
fn mbr() {
    run_target("mbr");
}

#[test]
fn gpt() {
    run_target("gpt");
}

#[test]
fn partition_table() {
    run_target("partition_table");
}

#[test]
fn vmware_config() {
    run_target("vmware_config");
}

#[test]
fn vhd_footer() {
    run_target("vhd_footer");
}

#[test]
fn vhd_dynamic_header() {
    run_target("vhd_dynamic_header");
}

#[test]
fn vhd_parent_locator() {
    run_target("vhd_parent_locator");
}

#[test]
fn vhd_file() {
    run_target("vhd_file");
}

#[test]
fn vmdk_descriptor() {
    run_target("vmdk_descriptor");
}

#[test]
fn vmdk_sparse() {
    run_target("vmdk_sparse");
}

#[test]
fn vmdk_esx() {
    run_target("vmdk_esx");
}

#[test]
fn chain_discovery() {
    run_target("chain_discovery");
}

/// The checks' own CRC-32C (their reference for every checksum) against the standard
/// check value and the `crc32c` crate, at every length and alignment up to 64 bytes.
#[test]
fn reference_crc32c_is_right() {
    assert_eq!(checks::crc32c(b"123456789"), 0xE306_9283);
    let data: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
    for start in 0..8 {
        for len in 0..64 {
            let b = &data[start..start + len];
            assert_eq!(checks::crc32c(b), crc32c::crc32c(b), "{start}+{len}");
        }
    }
    let mut b = data.clone();
    b[4..8].copy_from_slice(&[1, 2, 3, 4]);
    let mut z = b.clone();
    z[4..8].fill(0);
    assert_eq!(checks::crc_with_zeroed(&b, 4), crc32c::crc32c(&z));
}

/// Every check has a test above, a fuzz target and seeds, and the committed seeds are
/// the ones `seeds::all` generates.
#[test]
fn targets_seeds_and_fuzz_targets_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let expected = checks::seeds::all();
    for (target, _) in checks::TARGETS {
        assert!(
            root.join("fuzz_targets").join(format!("{target}.rs")).is_file(),
            "no fuzz target for {target}"
        );
        let committed = committed_seeds(target);
        let generated: Vec<(String, Vec<u8>)> = {
            let mut v: Vec<(String, Vec<u8>)> = expected
                .iter()
                .filter(|(t, _, _)| t == target)
                .map(|(_, n, b)| (n.to_string(), b.clone()))
                .collect();
            v.sort();
            v
        };
        assert!(
            committed == generated,
            "fuzz/seeds/{target} differs from checks::seeds::all(); run \
             `cargo test --test fuzz_corpus -- --ignored write_seeds`"
        );
    }
    let mut fuzz_targets: Vec<String> = std::fs::read_dir(root.join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    fuzz_targets.sort();
    let mut names: Vec<String> = checks::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(fuzz_targets, names);
}

/// Run one input file: `CKPTFS_FUZZ_REPLAY=<target>:<file> cargo test --test fuzz_corpus
/// replay -- --nocapture` (with `CKPTFS_FUZZ_TRACE=1` to see what the check decoded).
/// Does nothing when the variable is not set.
#[test]
fn replay() {
    let Some(spec) = std::env::var_os("CKPTFS_FUZZ_REPLAY") else {
        return;
    };
    let spec = spec.to_string_lossy().into_owned();
    let (target, file) = spec.split_once(':').expect("CKPTFS_FUZZ_REPLAY=<target>:<file>");
    let check = checks::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1;
    let data = std::fs::read(file).unwrap();
    run_one(target, file, check, &data);
    print_stats(target);
}

/// Rewrite `fuzz/seeds/` from `checks::seeds::all()`.
#[test]
#[ignore]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, _) in checks::TARGETS {
        let dir = root.join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (target, name, bytes) in checks::seeds::all() {
        std::fs::write(root.join(target).join(name), bytes).unwrap();
    }
}
