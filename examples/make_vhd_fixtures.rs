//! Writes VHD fixture chains made by the test-only VHD writer, and their expected raw
//! disks, for the VHD part of `scripts/crosscheck_writer.py`.
//!
//! `cargo run --release --example make_vhd_fixtures -- OUTDIR`
//!
//! Every file goes into OUTDIR itself (7-Zip opens a parent by the W2ru name or the
//! unicode parent name, relative to the child's directory). For each state it writes
//! `STEM.expected.raw` (sparse) and describes it in `OUTDIR/manifest.json`: the chain
//! (newest first), the disk types in it, whether every sector bitmap in the chain is
//! byte aligned (all 0x00/0xFF bytes), and the features it exercises. Which reader is
//! expected to be right on what is decided in the script, from these facts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::vhd_writer::{bitmap_patterns, byte_aligned_bitmap, ChainBuilder, DiskType, LayerId, Locators, MIB};

fn main() {
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        eprintln!("usage: make_vhd_fixtures OUTDIR");
        std::process::exit(2);
    });
    std::fs::create_dir_all(&out).expect("create OUTDIR");
    let mut fixtures = vec![fixed(&out), dynamic_alone(&out), aligned_chain(&out)];
    for bs in [4096u32, 512 << 10, 2 << 20, 4 << 20] {
        fixtures.push(patterns(&out, bs));
    }
    fixtures.push(locators(&out));
    fixtures.push(mixed_block_sizes(&out));
    fixtures.push(deep(&out));
    let manifest = json!({ "version": 1, "format": "vhd", "fixtures": fixtures });
    let text = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(out.join("manifest.json"), text + "\n").expect("write manifest");
    println!("wrote {} VHD fixtures to {}", fixtures.len(), out.display());
}

/// A fixed base (size not a multiple of the edit block) and two differencing children.
fn fixed(out: &Path) -> Value {
    let size = 40 * MIB + 3 * 512;
    let mut c = ChainBuilder::new(out, size);
    let base = c.base("fixed-base.vhd", DiskType::Fixed, 2 << 20, |e| {
        e.write_sectors(0, 2048);
        e.write_sectors(20 * 2048 + 5, 100);
        e.write_sectors(size / 512 - 1, 1);
    });
    let c1 = c.child(base, "fixed-c1.vhd", 2 << 20, |e| {
        e.write_sectors(8, 16);
        e.write_sectors(size / 512 - 1, 1); // short last block
    });
    c.child(c1, "fixed-c2.vhd", 2 << 20, |e| {
        e.full_blocks(true);
        e.write_sectors(4096 + 16, 8);
    });
    fixture(
        &c,
        "fixed",
        "fixed base (size 40 MiB + 3 sectors) + two differencing children",
    )
}

/// A dynamic disk alone, with blocks whose bitmaps have clear bits (zeros there).
fn dynamic_alone(out: &Path) -> Value {
    let size = 64 * MIB;
    let mut c = ChainBuilder::new(out, size);
    c.base("dynamic.vhd", DiskType::Dynamic, 2 << 20, |e| {
        e.write_sectors(0, 4096);
        e.write_sectors(3 * 4096 + 7, 3);
        e.write_sectors(31 * 4096 + 4095, 1);
    });
    fixture(&c, "dynamic", "dynamic disk alone, 2 MiB blocks, partially set bitmaps")
}

/// A chain whose bitmaps are all whole bytes: runs of 8 sectors at multiples of 8, and
/// copy-up blocks.
fn aligned_chain(out: &Path) -> Value {
    let size = 48 * MIB;
    let mut c = ChainBuilder::new(out, size);
    let base = c.base("aligned-base.vhd", DiskType::Dynamic, 2 << 20, |e| {
        e.write_sectors(0, 8 * 4096)
    });
    let c1 = c.child(base, "aligned-c1.vhd", 2 << 20, |e| {
        e.write_sectors(8, 8);
        e.write_sectors(4096 + 64, 128);
        e.write_sectors(20 * 4096, 8);
    });
    c.child(c1, "aligned-c2.vhd", 2 << 20, |e| {
        e.full_blocks(true);
        e.write_sectors(3, 1);
        e.write_sectors(10 * 4096 + 4095, 1);
    });
    fixture(
        &c,
        "aligned",
        "dynamic base + 2 children, every sector bitmap byte 0x00 or 0xFF",
    )
}

/// Every bitmap pattern in one child, shifted patterns in a grandchild.
fn patterns(out: &Path, bs: u32) -> Value {
    let spb = bs as u64 / 512;
    let pats = bitmap_patterns(spb);
    let size = (32 * MIB).max(2 * (pats.len() as u64 + 2) * bs as u64);
    let name = format!("patterns-{}k", bs / 1024);
    let mut c = ChainBuilder::new(out, size);
    let base = c.base(&format!("{name}-base.vhd"), DiskType::Dynamic, bs, |e| {
        e.write_sectors(0, size / 512 / 2);
    });
    let c1 = c.child(base, &format!("{name}-c1.vhd"), bs, |e| {
        for (i, (_, runs)) in pats.iter().enumerate() {
            e.write_runs(i as u64, runs);
        }
    });
    c.child(c1, &format!("{name}-c2.vhd"), bs, |e| {
        for (i, (_, runs)) in pats.iter().enumerate() {
            e.write_runs(i as u64 + 1, runs);
            e.write_runs(pats.len() as u64 + i as u64, runs);
        }
    });
    fixture(
        &c,
        &name,
        &format!(
            "dynamic base + 2 children with every bitmap pattern, {} KiB blocks",
            bs / 1024
        ),
    )
}

/// One child per locator choice, in a chain.
fn locators(out: &Path) -> Value {
    let size = 16 * MIB;
    let mut c = ChainBuilder::new(out, size);
    let mut last = c.base("loc-base.vhd", DiskType::Dynamic, 2 << 20, |e| e.write_sectors(0, 8192));
    for (i, (tag, l)) in [
        ("both", Locators::Both),
        ("w2ru", Locators::RelativeOnly),
        ("w2ku", Locators::AbsoluteOnly),
        ("name", Locators::None),
    ]
    .into_iter()
    .enumerate()
    {
        last = c.child_locators(last, &format!("loc-{tag}.vhd"), 2 << 20, l, |e| {
            e.write_sectors(i as u64 * 512, 64)
        });
    }
    fixture(
        &c,
        "locators",
        "chain whose children have both locators, only W2ru, only W2ku, none",
    )
}

/// Block sizes differ between the layers of one chain.
fn mixed_block_sizes(out: &Path) -> Value {
    let size = 24 * MIB;
    let mut c = ChainBuilder::new(out, size);
    let base = c.base("mixed-base.vhd", DiskType::Dynamic, 4 << 20, |e| {
        e.write_sectors(0, size / 512)
    });
    let c1 = c.child(base, "mixed-c1.vhd", 512 << 10, |e| {
        e.write_sectors(1023, 3);
        e.write_sectors(5000, 17);
    });
    c.child(c1, "mixed-c2.vhd", 8192, |e| {
        e.write_sectors(1024, 1);
        e.write_sectors(5010, 30);
    });
    fixture(&c, "mixed", "block sizes 4 MiB / 512 KiB / 8 KiB along one chain")
}

fn deep(out: &Path) -> Value {
    let size = 8 * MIB;
    let mut c = ChainBuilder::new(out, size);
    let mut last = c.base("deep-00.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 16384));
    for i in 1..12u64 {
        last = c.child(last, &format!("deep-{i:02}.vhd"), 1 << 20, |e| {
            e.write_sectors(i * 37, i);
            e.write_sectors(i * 1000, 1);
        });
    }
    fixture(&c, "deep", "dynamic base + 11 differencing layers")
}

fn fixture(c: &ChainBuilder, name: &str, description: &str) -> Value {
    let mut states = Vec::new();
    for id in c.layers() {
        let stem = c.file_name(&id).trim_end_matches(".vhd").to_string();
        let raw = format!("{stem}.expected.raw");
        c.expected(&id)
            .save_raw(&c.dir().join(&raw))
            .expect("write expected raw");
        let chain = c.chain(&id);
        let files: Vec<&str> = chain.iter().map(|l| c.file_name(l)).collect();
        let types: Vec<&str> = chain.iter().map(|l| c.spec(l).disk_type.name()).collect();
        states.push(json!({
            "name": stem,
            "file": c.file_name(&id),
            "chain": files,
            "disk_types": types,
            "virtual_size": c.expected(&id).size(),
            "expected_raw": raw,
            "byte_aligned_bitmaps": chain.iter().all(|l| aligned(c, l)),
            "features": features(c, &id),
        }));
    }
    json!({ "name": name, "description": description, "states": states })
}

fn aligned(c: &ChainBuilder, id: &LayerId) -> bool {
    let s = c.spec(id);
    s.disk_type == DiskType::Fixed || s.blocks.values().all(|b| byte_aligned_bitmap(&b.present))
}

fn features(c: &ChainBuilder, id: &LayerId) -> Vec<String> {
    let s = c.spec(id);
    let mut f = vec![format!("{} disk", s.disk_type.name())];
    if s.disk_type != DiskType::Fixed {
        f.push(format!("block size {} KiB", s.block_size / 1024));
        if s.disk_type == DiskType::Differencing && !aligned(c, id) {
            f.push("differencing bitmap runs inside bytes".into());
        }
    }
    if s.virtual_size % s.block_size as u64 != 0 {
        f.push("short last block".into());
    }
    if let Some(p) = &s.parent {
        let codes: Vec<String> = p
            .locators
            .iter()
            .map(|l| String::from_utf8_lossy(&l.code).into_owned())
            .collect();
        f.push(if codes.is_empty() {
            "parent by unicode name only".into()
        } else {
            format!("locators {}", codes.join("+"))
        });
        let parent = c.parent(id).unwrap();
        if c.spec(&parent).block_size != s.block_size {
            f.push("block size differs from the parent's".into());
        }
        if c.chain(id).len() > 5 {
            f.push("chain deeper than 5".into());
        }
    }
    f
}
