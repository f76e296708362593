//! Turn a series of raw disk images (the states of one VM disk over time) into a
//! Hyper-V style checkpoint chain: `NAME.vhdx` holding the first state and one
//! `NAME_<GUID>.avhdx` per later state, holding the sectors that changed. Dev tool for
//! the demo image, test fixtures and the benchmark; not part of ckptfs.
//!
//! ```text
//! cargo run --release --example chain_from_raws -- [--block-size MIB] [--sector 512|4096]
//!     [--times T0,T1,...] OUTDIR NAME STATE0.raw [STATE1.raw ...]
//! ```
//!
//! `--times` sets each file's modification time (seconds since the epoch), which is
//! what ckptfs names states by; the default spaces them an hour apart ending now.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs::{File, FileTimes};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::vhdx_writer::{random_uuid, ChainBuilder, LayerEdits};

const CHUNK: usize = 4 << 20;

fn usage() -> ! {
    eprintln!("usage: chain_from_raws [--block-size MIB] [--sector 512|4096] [--times T0,T1,...] OUTDIR NAME STATE0.raw [STATE1.raw ...]");
    std::process::exit(2);
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut block_mib = 2u32;
    let mut sector = 512u32;
    let mut times: Option<Vec<u64>> = None;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = if args.is_empty() { usage() } else { args.remove(0) };
        match flag.as_str() {
            "--block-size" => block_mib = value.parse().unwrap_or_else(|_| usage()),
            "--sector" => sector = value.parse().unwrap_or_else(|_| usage()),
            "--times" => {
                times = Some(
                    value
                        .split(',')
                        .map(|t| t.parse().unwrap_or_else(|_| usage()))
                        .collect(),
                )
            }
            _ => usage(),
        }
    }
    if args.len() < 3 {
        usage();
    }
    let out = PathBuf::from(&args[0]);
    let name = &args[1];
    let states: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
    std::fs::create_dir_all(&out).expect("create OUTDIR");

    let size = std::fs::metadata(&states[0]).expect("first state").len();
    let mut chain = ChainBuilder::new(&out, size, sector);
    let block = block_mib << 20;
    let mut layer = chain.base(&format!("{name}.vhdx"), block, false, |e| {
        copy_changes(e, None, &states[0], sector)
    });
    let mut files = vec![chain.path(&layer)];
    for pair in states.windows(2) {
        let file = format!("{name}_{}.avhdx", random_uuid().hyphenated().to_string().to_uppercase());
        layer = chain.child(layer, &file, block, |e| {
            copy_changes(e, Some(&pair[0]), &pair[1], sector)
        });
        files.push(chain.path(&layer));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let times = times.unwrap_or_else(|| {
        (0..files.len() as u64)
            .map(|i| now - 3600 * (files.len() as u64 - 1 - i))
            .collect()
    });
    for (f, t) in files.iter().zip(times) {
        let file = File::options().write(true).open(f).expect("open for times");
        file.set_times(FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(t)))
            .expect("set time");
        println!("{}", f.display());
    }
}

/// Record as writes every sector of `new` that differs from `old` (all non-zero
/// sectors when there is no `old`).
fn copy_changes(e: &mut LayerEdits, old: Option<&Path>, new: &Path, sector: u32) {
    let mut new_f = File::open(new).expect("open state");
    let mut old_f = old.map(|p| File::open(p).expect("open previous state"));
    let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut new_f, &mut b);
        if n == 0 {
            break;
        }
        match &mut old_f {
            Some(f) => {
                let m = read_full(f, &mut a[..n]);
                a[m..n].fill(0);
            }
            None => a[..n].fill(0),
        }
        let ss = sector as usize;
        let mut i = 0;
        while i < n {
            if a[i..i + ss] == b[i..i + ss] {
                i += ss;
                continue;
            }
            let start = i;
            while i < n && a[i..i + ss] != b[i..i + ss] {
                i += ss;
            }
            e.write(offset + start as u64, &b[start..i]);
        }
        offset += n as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match f.read(&mut buf[done..]).expect("read state") {
            0 => break,
            n => done += n,
        }
    }
    done
}
