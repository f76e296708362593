//! Writes VMDK fixture chains and trees made by the test-only VMDK writer, and their
//! expected raw disks, for the VMDK part of `scripts/crosscheck_writer.py`.
//!
//! `cargo run --release --example make_vmdk_fixtures -- OUTDIR`
//!
//! Each fixture goes into a directory of its own under OUTDIR (VMware names files per
//! VM folder: `vm.vmdk`, `vm-000001.vmdk`, ...). For each state it writes
//! `STEM.expected.raw` (sparse) beside the disks and, where an SESparse "unmapped" grain
//! is in the chain, `STEM.alt-unmapped.raw` (the state if unmapped grains fell through
//! to the parent). `OUTDIR/manifest.json` describes every state: its directory, disk
//! file, chain (newest first), every file of it, the createTypes and extent kinds in
//! the chain, and facts the script decides reader expectations from (hint kinds,
//! encodings, zero/unmapped grains, damage, flat offsets, ZERO extents).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::vmdk_writer::*;

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            eprintln!("usage: make_vmdk_fixtures OUTDIR");
            std::process::exit(2);
        });
    std::fs::create_dir_all(&out).expect("create OUTDIR");
    type Maker = fn(&Path) -> (ChainBuilder, &'static str);
    let makers: Vec<(&str, Maker)> = vec![
        ("sparse-chain", sparse_chain),
        ("split-sparse", split_sparse),
        ("flat", flat),
        ("flat-split", flat_split),
        ("stream", stream),
        ("esxi-cowd", esxi_cowd),
        ("esxi-sesparse", esxi_sesparse),
        ("tree", tree),
        ("hints", hints),
        ("multi-extent", multi_extent),
        ("damaged-gd", damaged_gd),
        ("win1252", win1252),
        ("sesparse-journal", sesparse_journal),
        ("deep", deep),
        ("odd-sizes", odd_sizes),
        ("odd-extents", odd_extents),
    ];
    let mut fixtures = Vec::new();
    for (name, make) in makers {
        let dir = out.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (c, description) = make(&dir);
        fixtures.push(fixture(&c, name, description));
    }
    let manifest = json!({ "version": 1, "format": "vmdk", "fixtures": fixtures });
    let text = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(out.join("manifest.json"), text + "\n").expect("write manifest");
    println!("wrote {} VMDK fixtures to {}", fixtures.len(), out.display());
}

const SIZE: u64 = 24 * MIB;

fn spread(e: &mut LayerEdits, salt: u64) {
    let sectors = e.virtual_size() / SECTOR;
    e.write_sectors(salt % 64, 3);
    e.write_sectors(127 + salt, 2);
    e.write_sectors(4096 + salt * 17, 200);
    e.write_sectors(sectors / 2 + salt, 1);
    e.write_sectors(sectors - 1 - salt, 1);
}

fn opts(version: u32, grain: u64, zero: bool, all_gts: bool) -> SparseOpts {
    SparseOpts {
        version,
        grain_sectors: grain,
        zero_grain_flag: zero,
        all_gts,
        ..SparseOpts::default()
    }
}

fn sparse_chain(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 20000));
    let s1 = c.child(
        b,
        "vm-000001.vmdk",
        Variant::MonolithicSparse(opts(1, 128, true, true)),
        |e| {
            spread(e, 1);
            e.zero(1024, 256);
        },
    );
    c.child(
        s1,
        "vm-000002.vmdk",
        Variant::MonolithicSparse(opts(3, 16, false, false)),
        |e| spread(e, 2),
    );
    (
        c,
        "monolithicSparse: base, child with zero grains (v1, 64 KiB grains), child v3 with 8 KiB grains and only used GTs",
    )
}

fn split_sparse(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let v = Variant::TwoGbMaxExtentSparse {
        opts: SparseOpts::default(),
        extent_sectors: 16384,
    };
    let b = c.base("vm.vmdk", v.clone(), |e| e.write_sectors(0, SIZE / SECTOR));
    c.child(b, "vm-000001.vmdk", v, |e| {
        spread(e, 3);
        e.write_sectors(16383, 2); // across the extent boundary
    });
    (
        c,
        "twoGbMaxExtentSparse (8 MiB extents): base and child, a write across extents",
    )
}

fn flat(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::MonolithicFlat { offset: 7 }, |e| {
        e.write_sectors(0, 30000)
    });
    c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| spread(e, 4));
    (c, "monolithicFlat with a 7-sector offset, sparse child")
}

fn flat_split(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::TwoGbMaxExtentFlat { extent_sectors: 20000 }, |e| {
        e.write_sectors(0, SIZE / SECTOR)
    });
    c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| spread(e, 5));
    (c, "twoGbMaxExtentFlat (uneven extents), sparse child")
}

fn stream(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::StreamOptimized { grain_sectors: 128 }, |e| {
        e.write_sectors(0, 3000);
        spread(e, 6);
    });
    c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| spread(e, 7));
    (
        c,
        "streamOptimized base (deflate grains, GD in the footer), sparse child",
    )
}

fn esxi_cowd(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, SIZE / SECTOR));
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::vmfs_sparse(),
        Hint::VmfsVolumes,
        |e| spread(e, 8),
        |_| {},
    );
    c.child_with(
        s1,
        "vm-000002.vmdk",
        Variant::VmfsSparse { grain_sectors: 16 },
        Hint::Relative,
        |e| spread(e, 9),
        |_| {},
    );
    (
        c,
        "ESXi vmfs base, vmfsSparse (COWD) children with 1- and 16-sector grains, /vmfs/volumes hint",
    )
}

fn esxi_sesparse(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, SIZE / SECTOR));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::se_sparse(), |e| {
        spread(e, 10);
        e.zero(800, 16);
    });
    c.child(s1, "vm-000002.vmdk", Variant::se_sparse(), |e| {
        spread(e, 11);
        e.unmap(8192, 64);
        e.zero(9000, 8);
    });
    (
        c,
        "ESXi vmfs base, SESparse children with zero and unmapped grains over data",
    )
}

fn tree(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10000));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| spread(e, 12));
    c.child(s1, "vm-000002.vmdk", Variant::sparse(), |e| spread(e, 13));
    let s3 = c.child(b, "vm-000003.vmdk", Variant::sparse(), |e| spread(e, 14));
    let split = Variant::TwoGbMaxExtentSparse {
        opts: SparseOpts::default(),
        extent_sectors: 16384,
    };
    c.child_with(
        s3,
        "vm-000004.vmdk",
        split,
        Hint::Relative,
        |e| spread(e, 15),
        |s| s.descriptor.crlf = true,
    );
    (
        c,
        "a tree: base with two branches of two deltas each; one a split sparse delta with a CR LF descriptor",
    )
}

fn hints(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10000));
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::sparse(),
        Hint::WindowsAbsolute,
        |e| spread(e, 16),
        |_| {},
    );
    c.child_with(
        s1,
        "vm-000002.vmdk",
        Variant::sparse(),
        Hint::VmfsVolumes,
        |e| spread(e, 17),
        |_| {},
    );
    (
        c,
        "parentFileNameHint as an absolute Windows path and as a /vmfs/volumes path",
    )
}

fn multi_extent(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let q = SIZE / SECTOR / 4;
    let extents = vec![
        ExtentSpec {
            access: Access::Rw,
            sectors: q,
            kind: ExtentKind::Flat { offset: 3 },
            file: Some("vm-pt1.vmdk".into()),
        },
        ExtentSpec {
            access: Access::Rw,
            sectors: q,
            kind: ExtentKind::Zero,
            file: None,
        },
        ExtentSpec {
            access: Access::Rw,
            sectors: 2 * q,
            kind: ExtentKind::Flat { offset: 0 },
            file: Some("vm-pt2.vmdk".into()),
        },
    ];
    let b = c.base(
        "vm.vmdk",
        Variant::Custom {
            create_type: "monolithicFlat".into(),
            extents,
        },
        |e| {
            e.write_sectors(0, q);
            e.write_sectors(2 * q, 2 * q);
        },
    );
    c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| {
        spread(e, 18);
        e.write_sectors(q + 5, 3); // into the ZERO extent's range
    });
    (
        c,
        "three extents (FLAT with offset, ZERO, FLAT) under one descriptor, sparse child",
    )
}

fn damaged_gd(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let o = SparseOpts {
        damage_primary_gd: Some(GdDamage::PastEof),
        ..SparseOpts::default()
    };
    let b = c.base("vm.vmdk", Variant::MonolithicSparse(o), |e| {
        e.write_sectors(0, 5000);
        spread(e, 19);
    });
    c.child(b, "vm-000001.vmdk", Variant::MonolithicSparse(o), |e| spread(e, 20));
    (
        c,
        "primary grain directories point past the end of the file; the redundant ones are right",
    )
}

fn win1252(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let v = Variant::TwoGbMaxExtentSparse {
        opts: SparseOpts::default(),
        extent_sectors: 32768,
    };
    let b = c.base_with(
        "Café.vmdk",
        v.clone(),
        |e| e.write_sectors(0, 10000),
        |s| s.descriptor.encoding = Encoding::Windows1252,
    );
    c.child_with(
        b,
        "Café-000001.vmdk",
        v,
        Hint::Relative,
        |e| spread(e, 21),
        |s| s.descriptor.encoding = Encoding::Windows1252,
    );
    (c, "windows-1252 descriptors whose extent and parent names have an é")
}

fn sesparse_journal(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 4000));
    c.child(
        b,
        "vm-000001.vmdk",
        Variant::SeSparse {
            journal_needs_replay: true,
        },
        |e| spread(e, 22),
    );
    (
        c,
        "SESparse whose volatile header asks for a journal replay (must be refused)",
    )
}

fn deep(d: &Path) -> (ChainBuilder, &'static str) {
    let mut c = ChainBuilder::new(d, 8 * MIB);
    let mut last = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 16384));
    for i in 1..12u64 {
        last = c.child(last, &format!("vm-{i:06}.vmdk"), Variant::sparse(), |e| {
            e.write_sectors(i * 37, i);
            e.write_sectors(i * 1000, 1);
        });
    }
    (c, "monolithicSparse base + 11 deltas")
}

/// 24 MiB + 5 sectors with split extents of `extent_sectors`, a COWD (16-sector
/// grains) and an SESparse delta; the last sectors and an extent boundary written.
fn odd(d: &Path, extent_sectors: u64) -> ChainBuilder {
    let size = SIZE + 5 * SECTOR;
    let last = size / SECTOR - 1;
    let mut c = ChainBuilder::new(d, size);
    let b = c.base(
        "vm.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors,
        },
        |e| {
            e.write_sectors(0, 100);
            e.write_sectors(extent_sectors - 10, 20);
            e.write_sectors(last - 2, 3);
        },
    );
    let s1 = c.child(b, "vm-000001.vmdk", Variant::VmfsSparse { grain_sectors: 16 }, |e| {
        e.write_sectors(last - 1, 1);
        spread(e, 23);
    });
    c.child(s1, "vm-000002.vmdk", Variant::se_sparse(), |e| {
        e.write_sectors(last, 1);
        e.write_sectors(extent_sectors - 1, 2);
    });
    c
}

fn odd_sizes(d: &Path) -> (ChainBuilder, &'static str) {
    (
        odd(d, 10112),
        "24 MiB + 5 sectors: split extents of 79 grains and a short last one, COWD and SESparse deltas with a short last grain",
    )
}

fn odd_extents(d: &Path) -> (ChainBuilder, &'static str) {
    (
        odd(d, 10000),
        "split extents of 10000 sectors: each extent ends inside a grain (78 grains + 16 sectors)",
    )
}

fn fixture(c: &ChainBuilder, name: &str, description: &str) -> Value {
    let mut states = Vec::new();
    for id in c.layers() {
        let stem = c.file_name(&id).trim_end_matches(".vmdk").to_string();
        let raw = format!("{stem}.expected.raw");
        c.expected(&id).save_raw(&c.dir().join(&raw)).expect("write raw");
        let alt = c.alt_unmapped_transparent(&id).map(|m| {
            let alt = format!("{stem}.alt-unmapped.raw");
            m.save_raw(&c.dir().join(&alt)).expect("write alt raw");
            alt
        });
        let chain = c.chain(&id);
        let mut kinds: Vec<String> = Vec::new();
        let mut facts: Vec<String> = Vec::new();
        let mut files: Vec<String> = Vec::new();
        for l in &chain {
            let s = c.spec(l);
            let layer = c.layer(l);
            for f in c.files(l) {
                files.push(f.file_name().unwrap().to_string_lossy().into_owned());
            }
            let n_ext = s.extents.len();
            for (i, e) in s.extents.iter().enumerate() {
                if let Some(gs) = e.kind.grain_sectors() {
                    if i + 1 < n_ext && e.sectors % gs != 0 {
                        facts.push("extent ends inside a grain".into());
                    }
                }
            }
            for (e, g) in s.extents.iter().zip(&layer.grains) {
                let k = match &e.kind {
                    ExtentKind::Flat { offset } if *offset > 0 => {
                        facts.push("flat offset".into());
                        "FLAT".to_string()
                    }
                    ExtentKind::Sparse(o) => {
                        if o.damage_primary_gd.is_some() {
                            facts.push("damaged primary GD".into());
                        }
                        if o.version != 1 {
                            facts.push(format!("KDMV version {}", o.version));
                        }
                        "SPARSE".to_string()
                    }
                    ExtentKind::Stream { .. } => "STREAM".to_string(),
                    ExtentKind::SeSparse {
                        journal_needs_replay: true,
                    } => {
                        facts.push("journal needs replay".into());
                        "SESPARSE".to_string()
                    }
                    k => k.type_word().to_string(),
                };
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
                if g.values().any(|x| *x == Grain::Zero) {
                    facts.push("zero grains".into());
                }
                if g.values().any(|x| *x == Grain::Unmapped) {
                    facts.push("unmapped grains".into());
                }
            }
            if s.descriptor.encoding == Encoding::Windows1252 {
                facts.push("windows-1252".into());
            }
            if s.descriptor.crlf {
                facts.push("crlf descriptor".into());
            }
            if let Some(h) = &s.descriptor.parent_hint {
                if h.starts_with("/vmfs/volumes/") {
                    facts.push("hint /vmfs/volumes".into());
                } else if h.contains('\\') {
                    facts.push("hint windows absolute".into());
                }
            }
        }
        facts.sort();
        facts.dedup();
        let own = c.spec(&id);
        let mut features = vec![format!("createType {}", own.descriptor.create_type)];
        for e in &own.extents {
            let f = match &e.kind {
                ExtentKind::Sparse(o) => format!(
                    "KDMV v{} grain {} KiB{}{}",
                    o.version,
                    o.grain_sectors / 2,
                    if o.redundant_gd { " +RGD" } else { "" },
                    if o.all_gts { "" } else { " sparse GTs" }
                ),
                ExtentKind::Cowd { grain_sectors } => format!("COWD grain {grain_sectors} sectors"),
                k => format!("{} extent", k.type_word()),
            };
            if !features.contains(&f) {
                features.push(f);
            }
        }
        for (e, g) in own.extents.iter().zip(&c.layer(&id).grains) {
            let _ = e;
            if g.values().any(|x| *x == Grain::Zero) && !features.contains(&"zero grains".to_string()) {
                features.push("zero grains".into());
            }
            if g.values().any(|x| *x == Grain::Unmapped) && !features.contains(&"unmapped grains".to_string()) {
                features.push("unmapped grains".into());
            }
        }
        if let Some(h) = &own.descriptor.parent_hint {
            features.push(
                if h.starts_with("/vmfs/volumes/") {
                    "hint /vmfs/volumes"
                } else if h.contains('\\') {
                    "hint windows absolute"
                } else {
                    "hint relative"
                }
                .into(),
            );
        }
        if own.descriptor.encoding == Encoding::Windows1252 {
            features.push("windows-1252 descriptor".into());
        }
        if own.descriptor.crlf {
            features.push("CR LF descriptor".into());
        }
        if chain.len() > 5 {
            features.push("chain deeper than 5".into());
        }
        states.push(json!({
            "name": format!("{name}/{stem}"),
            "dir": name,
            "file": c.file_name(&id),
            "chain": chain.iter().map(|l| c.file_name(l)).collect::<Vec<_>>(),
            "files": files,
            "create_types": chain.iter().map(|l| c.spec(l).descriptor.create_type.clone()).collect::<Vec<_>>(),
            "extent_kinds": kinds,
            "facts": facts,
            "virtual_size": c.virtual_size(),
            "expected_raw": raw,
            "alt_unmapped_raw": alt,
            "features": features,
        }));
    }
    json!({ "name": name, "description": description, "states": states })
}
