//! Writes the writer's fixture chains and their expected raw disks.
//!
//! `cargo run --release --example make_fixtures -- OUTDIR`
//!
//! For every checkpoint state it writes `STEM.expected.raw` (sparse) and lists
//! everything in `OUTDIR/manifest.json`, which `scripts/crosscheck_writer.py`
//! feeds to independent readers. The manifest also tells which reader can be
//! expected to handle a state, the features each state exercises, and the
//! ranges where the project's semantics (UNDEFINED/ZERO/UNMAPPED read as zeros)
//! may legitimately differ from a reader that goes to the parent instead.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::model::Model;
use support::vhdx_writer::{
    braced, expected_model, random_uuid, BlockState, ChainBuilder, DirtyLog, LayerId, LogSpec, LogWrap, VhdxSpec, GIB,
    MIB,
};

fn main() {
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        eprintln!("usage: make_fixtures OUTDIR");
        std::process::exit(2);
    });
    std::fs::create_dir_all(&out).expect("create OUTDIR");

    let fixtures = vec![
        chain512(&out),
        chain4k(&out),
        big512(&out),
        fixed512(&out),
        states512(&out),
        dirty_dynamic512(&out),
        dirty_dynamic512_tail(&out),
        dirty_dynamic4k_many(&out),
        dirty_minimal(&out),
        dirty_differencing(&out),
    ];

    let manifest = json!({ "version": 1, "fixtures": fixtures });
    let text = serde_json::to_string_pretty(&manifest).unwrap();
    std::fs::write(out.join("manifest.json"), text + "\n").expect("write manifest");
    println!("wrote {} fixtures to {}", fixtures.len(), out.display());
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------
//
// Virtual sizes keep bit 9 (512-byte disks) / bit 12 (4 KiB disks) clear
// except in `states512`: 7-Zip rejects such sizes (its alignment check tests
// that one bit instead of the low bits), and we want 7-Zip on most states.

/// Dynamic base + 3 differencing layers (+ a sibling branch), 512-byte
/// sectors, block sizes 2 MiB / 256 MiB / 1 MiB / 32 MiB, every block state,
/// and a virtual size that is not a block multiple (short last blocks).
fn chain512(out: &Path) -> Value {
    let size = 600 * MIB + 1024;
    let mut b = ChainBuilder::new(out, size, 512);
    b.sector_bitmaps_for_all_chunks(true);
    let base = b.base("chain512-base.vhdx", (2 * MIB) as u32, false, |e| {
        e.write(0, &pattern("base", 0, 64 * 1024));
        e.write(3 * MIB + 512, &pattern("base", 3 * MIB + 512, 8 * 512));
        e.write(300 * MIB, &pattern("base", 300 * MIB, MIB as usize));
        for mib in [20, 22, 24, 26] {
            e.write(mib * MIB, &pattern("base", mib * MIB, 4096));
        }
        // Special states in a base disk read as zeros.
        e.zero_block(10);
        e.unmap_block(11, false);
        e.undefine_block(13);
        // The short last block (600 MiB .. size).
        e.write(size - 1024, &pattern("base", size - 1024, 1024));
    });
    let c1 = b.child(base, "chain512-c1.avhdx", (256 * MIB) as u32, |e| {
        // Partially present 256 MiB blocks: a few sectors over base data.
        e.write(512, &pattern("c1", 512, 3 * 512));
        e.write(3 * MIB, &pattern("c1", 3 * MIB, 4096));
        e.write(255 * MIB + 512 * 9, &pattern("c1", 255 * MIB + 512 * 9, 512));
        // Hides the base's data at 300 MiB.
        e.zero_block(1);
        // Short last block, partially present.
        e.write(size - 512, &pattern("c1", size - 512, 512));
        e.write(520 * MIB, &pattern("c1", 520 * MIB, 4096));
    });
    let c2 = b.child(c1, "chain512-c2.avhdx", MIB as u32, |e| {
        e.write(0, &pattern("c2", 0, MIB as usize)); // fully present
        e.write(3 * MIB + 4096, &pattern("c2", 3 * MIB + 4096, 1024)); // partial
                                                                       // Over base data: these read as zeros, not as the parent's data.
        e.unmap_block(20, false);
        e.undefine_block(24);
        e.zero_block(26);
        e.write(599 * MIB + 512, &pattern("c2", 599 * MIB + 512, 512));
    });
    let _c3 = b.child(c2, "chain512-c3.avhdx", (32 * MIB) as u32, |e| {
        // Copy-up: the touched 32 MiB blocks become fully present, parent
        // data included.
        e.full_blocks(true);
        e.write(3 * MIB + 1024, &pattern("c3", 3 * MIB + 1024, 512));
        e.write(590 * MIB, &pattern("c3", 590 * MIB, 512)); // short last block
        e.zero_block(9);
    });
    // A sibling of c2: a checkpoint tree, not just a chain. The legacy
    // UNMAPPED value 5 lives in leaves only, because two readers cannot
    // read it at all.
    let _c2b = b.child(c1, "chain512-c2b.avhdx", (4 * MIB) as u32, |e| {
        e.write(2 * MIB, &pattern("c2b", 2 * MIB, 3 * 512));
        e.unmap_block(5, true); // 20..24 MiB: base data
        e.undefine_block(75); // 300 MiB: ZERO in c1 already, still zeros
    });
    fixture(
        &b,
        "chain512",
        "dynamic base + 3-layer differencing chain and a sibling branch, 512-byte sectors, mixed block sizes, all block states",
    )
}

/// 4096-byte logical sectors; block sizes 32 MiB / 1 MiB / 128 MiB / 8 MiB;
/// a parent locator with every optional key.
fn chain4k(out: &Path) -> Value {
    let size = 300 * MIB + 2 * 4096;
    let mut b = ChainBuilder::new(out, size, 4096);
    b.sector_bitmaps_for_all_chunks(true);
    let base = b.base("chain4k-base.vhdx", (32 * MIB) as u32, false, |e| {
        e.write(0, &pattern("base4k", 0, 2 * MIB as usize));
        e.write(100 * MIB, &pattern("base4k", 100 * MIB, 16 * 4096));
        e.write(size - 4096, &pattern("base4k", size - 4096, 4096));
        for mib in [33, 40, 42, 44, 46, 50] {
            e.write(mib * MIB, &pattern("base4k", mib * MIB, 4096));
        }
        e.zero_block(5);
    });
    // c1 and c2 hold no UNDEFINED/ZERO/UNMAPPED blocks, so every reader must
    // match them exactly; c3 (a leaf) has them all.
    let c1 = b.child(base, "chain4k-c1.avhdx", MIB as u32, |e| {
        e.write(4096 * 3, &pattern("c1-4k", 4096 * 3, 2 * 4096));
        e.write(100 * MIB + 4096, &pattern("c1-4k", 100 * MIB + 4096, 4096));
        e.write(10 * MIB, &pattern("c1-4k", 10 * MIB, MIB as usize));
        e.write(41 * MIB, &pattern("c1-4k", 41 * MIB, 4096));
    });
    let c2 = b.child_with(
        c1,
        "chain4k-c2.avhdx",
        (128 * MIB) as u32,
        |e| {
            e.write(64 * 4096, &pattern("c2-4k", 64 * 4096, 4096));
            e.write(200 * MIB, &pattern("c2-4k", 200 * MIB, 4096));
            e.write(size - 8192, &pattern("c2-4k", size - 8192, 4096));
        },
        |s| {
            // Every optional locator key: a reader must ignore the ones it
            // does not use and still match parent_linkage.
            let p = s.parent.as_mut().unwrap();
            p.linkage2 = Some(braced(random_uuid()));
            p.volume_path = Some("\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\VMs\\chain4k-c1.avhdx".into());
            p.extra.push(("custom_key".into(), "custom value".into()));
        },
    );
    let _c3 = b.child(c2, "chain4k-c3.avhdx", (8 * MIB) as u32, |e| {
        e.full_blocks(true);
        e.write(100 * MIB + 8192, &pattern("c3-4k", 100 * MIB + 8192, 4096));
        e.unmap_block(1, false); // 8..16 MiB: c1's block at 10 MiB
        e.undefine_block(4); // 32..40 MiB: base data at 33 MiB
        e.unmap_block(5, true); // 40..48 MiB: base and c1 data
        e.zero_block(6); // 48..56 MiB: base data at 50 MiB
    });
    fixture(
        &b,
        "chain4k",
        "dynamic base + 3-layer differencing chain, 4096-byte sectors, mixed block sizes, all locator keys",
    )
}

/// More than 8 GiB with 512-byte sectors: three 4 GiB chunks, so three sector-bitmap
/// entries interleaved in the BAT and partially present blocks in the 2nd and
/// 3rd chunk, including a write that straddles a chunk boundary.
fn big512(out: &Path) -> Value {
    let size = 9 * GIB + MIB + 1024;
    let chunk = 4 * GIB;
    let mut b = ChainBuilder::new(out, size, 512);
    b.sector_bitmaps_for_all_chunks(true);
    let base = b.base("big512-base.vhdx", (256 * MIB) as u32, false, |e| {
        e.write(0, &pattern("big", 0, 4096));
        e.write(chunk - 4096, &pattern("big", chunk - 4096, 8192)); // crosses 4 GiB
        e.write(2 * chunk + MIB, &pattern("big", 2 * chunk + MIB, 64 * 1024));
        e.write(size - 1024, &pattern("big", size - 1024, 1024));
    });
    let c1 = b.child(base, "big512-c1.avhdx", MIB as u32, |e| {
        // Both sides of the chunk 0/1 boundary.
        e.write(chunk - 1024, &pattern("big-c1", chunk - 1024, 2048));
        let at = chunk + 5 * MIB + 512;
        e.write(at, &pattern("big-c1", at, 3 * 512));
        let at = 2 * chunk + MIB + 512;
        e.write(at, &pattern("big-c1", at, 512));
        let at = 2 * chunk + 700 * MIB;
        e.write(at, &pattern("big-c1", at, 4096));
        e.write(size - 512, &pattern("big-c1", size - 512, 512));
    });
    let _c2 = b.child(c1, "big512-c2.avhdx", (4 * MIB) as u32, |e| {
        e.write(chunk + 5 * MIB, &pattern("big-c2", chunk + 5 * MIB, 512));
        let at = 2 * chunk + 2 * MIB;
        e.write(at, &pattern("big-c2", at, 1536));
        e.undefine_block((2 * chunk + 700 * MIB) / (4 * MIB));
        e.write(size - 3 * 512, &pattern("big-c2", size - 3 * 512, 512));
    });
    fixture(
        &b,
        "big512",
        "9 GiB sparse chain spanning three sector-bitmap chunks, partial blocks in chunks 1 and 2",
    )
}

/// Fixed base (every block FULLY_PRESENT, LeaveBlocksAllocated) with a short
/// last block, plus a differencing child.
fn fixed512(out: &Path) -> Value {
    let size = 48 * MIB + 1024;
    let mut b = ChainBuilder::new(out, size, 512);
    let base = b.base("fixed512-base.vhdx", (8 * MIB) as u32, true, |e| {
        e.write(MIB, &pattern("fixed", MIB, 8192));
        e.write(17 * MIB, &pattern("fixed", 17 * MIB, 512));
        e.write(size - 512, &pattern("fixed", size - 512, 512));
    });
    let _c = b.child(base, "fixed512-c1.avhdx", MIB as u32, |e| {
        e.write(MIB + 512, &pattern("fixed-c1", MIB + 512, 512));
        e.write(size - 512, &pattern("fixed-c1", size - 512, 512));
        e.unmap_block(17, false);
    });
    fixture(
        &b,
        "fixed512",
        "fixed base with a short last block + differencing child",
    )
}

/// A lone dynamic disk with every payload state, including the legacy
/// UNMAPPED value 5, and a size with an odd number of sectors.
fn states512(out: &Path) -> Value {
    let size = 64 * MIB + 512;
    let mut b = ChainBuilder::new(out, size, 512);
    b.base("states512.vhdx", MIB as u32, false, |e| {
        e.write(0, &pattern("states", 0, 8192));
        e.zero_block(1);
        e.unmap_block(2, false);
        e.unmap_block(3, true);
        e.undefine_block(4);
        e.write(5 * MIB, &pattern("states", 5 * MIB, 512));
        e.write(size - 512, &pattern("states", size - 512, 512));
    });
    fixture(
        &b,
        "states512",
        "dynamic disk with every payload block state and an odd sector count",
    )
}

/// Dynamic disk with every log trap on: BAT, metadata, region tables and
/// some payload exist only in the log; interleaved zero descriptors; the
/// active sequence wraps inside its head entry; a superseded sequence, a stale
/// LogGuid entry and a torn entry must be ignored; the file is truncated.
fn dirty_dynamic512(out: &Path) -> Value {
    dirty_dynamic(
        out,
        "dirty512",
        LogWrap::InsideEntry(usize::MAX),
        "dynamic disk whose newest BAT/metadata/region tables/data exist only in the log (wrap inside the head entry)",
    )
}

/// Like `dirty512` with the default wrap: the end of the log falls inside the
/// second of three entries, so the third lies wholly after the wrap. Only a
/// reader that checks the head's Tail picks the whole sequence.
fn dirty_dynamic512_tail(out: &Path) -> Value {
    dirty_dynamic(
        out,
        "dirty512-tail",
        DirtyLog::default().wrap,
        "like dirty512, but an entry lies wholly after the wrap (Tail must be honoured)",
    )
}

fn dirty_dynamic(out: &Path, name: &str, wrap: LogWrap, description: &str) -> Value {
    let size = 64 * MIB;
    let mut b = ChainBuilder::new(out, size, 512);
    b.base_with(
        &format!("{name}.vhdx"),
        MIB as u32,
        false,
        |e| {
            e.write(0, &pattern(name, 0, 16 * 1024));
            e.write(5 * MIB, &pattern(name, 5 * MIB, MIB as usize));
            e.write(40 * MIB + 512, &pattern(name, 40 * MIB + 512, 512));
            e.write(size - 4096, &pattern(name, size - 4096, 4096));
            e.zero_block(7);
            e.unmap_block(8, false);
        },
        |s| {
            s.log = LogSpec::Dirty(DirtyLog {
                wrap,
                ..DirtyLog::default()
            })
        },
    );
    fixture(&b, name, description)
}

/// 4096-byte sectors; entries carry > 126 descriptors (several descriptor
/// sectors). No wrap, zero descriptors last, no truncation and no torn entry,
/// so that FATtools' simpler replayer (the only one that handles entries this
/// large) can confirm it.
fn dirty_dynamic4k_many(out: &Path) -> Value {
    let size = 96 * MIB;
    let mut b = ChainBuilder::new(out, size, 4096);
    b.base_with(
        "dirty4k-many.vhdx",
        (2 * MIB) as u32,
        false,
        |e| {
            for i in 0..40u64 {
                let off = i * 2 * MIB + (i % 7) * 4096 * 3;
                e.write(off, &pattern("many", off, 16 * 4096));
            }
        },
        |s| {
            s.log = LogSpec::Dirty(DirtyLog {
                payload_pages_in_log: 300,
                entries: 2,
                wrap: LogWrap::None,
                interleave_zero_descriptors: false,
                truncate_file: false,
                torn_entry_after_head: false,
                ..DirtyLog::default()
            })
        },
    );
    fixture(
        &b,
        "dirty4k-many",
        "dirty log with entries of more than 126 descriptors, 4096-byte sectors",
    )
}

/// The simplest dirty log (one entry, only the BAT) at a non-default log
/// offset, so metadata and BAT sit in front of the log.
fn dirty_minimal(out: &Path) -> Value {
    let size = 32 * MIB;
    let mut b = ChainBuilder::new(out, size, 512);
    b.base_with(
        "dirty-min.vhdx",
        MIB as u32,
        false,
        |e| {
            e.write(MIB, &pattern("min", MIB, 4096));
            e.write(30 * MIB, &pattern("min", 30 * MIB, 512));
        },
        |s| {
            s.log = LogSpec::Dirty(DirtyLog {
                log_offset: Some(4 * MIB),
                ..DirtyLog::minimal()
            })
        },
    );
    fixture(
        &b,
        "dirty-min",
        "single-entry dirty log carrying only the BAT, log after metadata/BAT",
    )
}

/// Differencing child with a dirty log: its BAT, metadata and sector bitmaps
/// exist only in the log.
fn dirty_differencing(out: &Path) -> Value {
    let size = 80 * MIB + 1024;
    let mut b = ChainBuilder::new(out, size, 512);
    let base = b.base("dirtydiff-base.vhdx", (4 * MIB) as u32, false, |e| {
        e.write(0, &pattern("ddbase", 0, 8 * MIB as usize));
        e.write(60 * MIB, &pattern("ddbase", 60 * MIB, 4096));
        e.write(size - 512, &pattern("ddbase", size - 512, 512));
    });
    b.child_with(
        base,
        "dirtydiff-c1.avhdx",
        MIB as u32,
        |e| {
            e.write(512, &pattern("ddc1", 512, 512));
            e.write(3 * MIB + 4096, &pattern("ddc1", 3 * MIB + 4096, 3 * 512));
            e.write(20 * MIB, &pattern("ddc1", 20 * MIB, MIB as usize));
            e.write(size - 1024, &pattern("ddc1", size - 1024, 512));
            e.zero_block(60);
        },
        |s| {
            s.log = LogSpec::Dirty(DirtyLog {
                wrap: LogWrap::InsideEntry(usize::MAX),
                ..DirtyLog::default()
            })
        },
    );
    fixture(
        &b,
        "dirtydiff",
        "differencing disk whose BAT, metadata and sector bitmaps exist only in the log",
    )
}

// ---------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------

/// Writes the expected raw disks of every state and describes them.
fn fixture(b: &ChainBuilder, name: &str, description: &str) -> Value {
    let ids = b.layers();
    let mut files = Vec::new();
    let mut states = Vec::new();
    // The disks under the alternative semantics some readers use: UNDEFINED,
    // ZERO and UNMAPPED blocks of differencing files fall through to the
    // parent like NOT_PRESENT. Lets the cross-check tell such a reader's
    // output from a writer bug, byte for byte.
    let mut alt: Vec<Model> = Vec::new();
    for id in &ids {
        let mut spec = b.spec(id).clone();
        if spec.parent.is_some() {
            spec.blocks.retain(|_, st| !st.reads_as_zero());
        }
        let parent = b.parent(id).map(|p| &alt[p.0]);
        alt.push(expected_model(parent, &spec));
    }
    for id in &ids {
        let file = b.file_name(id).to_string();
        let stem = file.rsplit_once('.').map_or(file.as_str(), |(s, _)| s);
        let raw = format!("{stem}.expected.raw");
        let model = b.expected(id);
        model
            .save_raw(&b.path(id).with_file_name(&raw))
            .expect("write expected raw");
        let alt_raw = (alt[id.0] != *model).then(|| {
            let name = format!("{stem}.alt-transparent.raw");
            alt[id.0]
                .save_raw(&b.path(id).with_file_name(&name))
                .expect("write alternative raw");
            name
        });
        let chain: Vec<String> = b.chain(id).iter().map(|c| b.file_name(c).to_string()).collect();
        let dirty: Vec<&String> = b
            .chain(id)
            .iter()
            .zip(&chain)
            .filter(|(c, _)| matches!(b.spec(c).log, LogSpec::Dirty(_)))
            .map(|(_, f)| f)
            .collect();
        let spec = b.spec(id);
        files.push(file.clone());
        states.push(json!({
            "name": format!("{name}/{stem}"),
            "file": file,
            "parent_file": b.parent(id).map(|p| b.file_name(&p).to_string()),
            "chain": chain,
            "dirty_files": dirty,
            "expected_raw": raw,
            "alt_transparent_raw": alt_raw,
            "virtual_size": spec.geometry.virtual_size,
            "logical_sector_size": spec.geometry.logical_sector_size,
            "block_size": spec.geometry.block_size,
            "disk_type": disk_type(spec),
            "features": features(b, id),
            "chain_features": chain_features(b, id),
            "independent_readers": reader_modes(b, id),
            "data_ranges": model.data_ranges(),
            "semantic_ranges": semantic_ranges(b, id)
                .into_iter()
                .map(|s| json!({
                    "offset": s.offset,
                    "length": s.length,
                    "file": b.file_name(&s.layer),
                    "state": s.state,
                }))
                .collect::<Vec<_>>(),
        }));
    }
    json!({
        "name": name,
        "description": description,
        "files": files,
        "states": states,
    })
}

/// Which independent reader can be expected to read a state, and how. A mode
/// is "direct", "convert", "replay-then-convert", "replay-then-read",
/// "after-qemu-replay", "skip: why" (the reader lacks a feature this state
/// needs) or "known-limitation: why" (run it, but a mismatch is the reader's
/// documented bug, not a failure). The reasons were established by running
/// the readers and reading their sources; the cross-check script reports an
/// unexpected pass of a known limitation.
fn reader_modes(b: &ChainBuilder, id: &LayerId) -> Value {
    let chain = b.chain(id);
    let spec = b.spec(id);
    let g = &spec.geometry;
    let dirty: Vec<&DirtyLog> = chain
        .iter()
        .filter_map(|c| match &b.spec(c).log {
            LogSpec::Dirty(d) => Some(d),
            LogSpec::Clean => None,
        })
        .collect();
    let legacy5 = chain
        .iter()
        .any(|c| b.spec(c).blocks.values().any(|s| *s == BlockState::UnmappedLegacy));

    // qemu-img: the only replayer that follows the spec's scan closely
    // enough for wrapped logs, but it never looks at an entry's Tail.
    let many_descriptors = chain
        .iter()
        .any(|c| b.layout(c).log_entry_descriptors.iter().any(|&n| n > 126));
    let qemu_problem = if dirty.iter().any(|d| entries_after_wrap(d)) {
        Some(
            "qemu ignores the entry Tail: it replays the run of entries after the wrap point, \
             which it meets first, and drops the entries before it",
        )
    } else if many_descriptors {
        Some(
            "qemu reads every descriptor sector of an entry into the same buffer, so entries \
             with more than 126 descriptors fail",
        )
    } else {
        None
    };
    let qemu = if chain.len() > 1 {
        "skip: qemu-img does not open differencing VHDX (HasParent)".to_string()
    } else if g.logical_sector_size != 512 {
        "skip: qemu-img opens only 512-byte logical sectors".to_string()
    } else if let Some(why) = qemu_problem {
        format!("known-limitation: {why}")
    } else if dirty.is_empty() {
        "convert".to_string()
    } else {
        "replay-then-convert".to_string()
    };

    // libvhdi, dissect and 7-Zip do not replay logs. qemu-img replays a log
    // while opening, before it rejects HasParent or 4 KiB sectors, so they
    // can read a copy that qemu has replayed.
    let no_replay = match qemu_problem {
        Some(why) if !dirty.is_empty() => Some(format!(
            "skip: does not replay logs, and qemu-img cannot replay this one ({why})"
        )),
        _ => None,
    };
    let replayed = if dirty.is_empty() {
        "direct"
    } else {
        "after-qemu-replay"
    };
    // libvhdi consults the sector bitmap for every block of a differencing
    // file that is not FULLY_PRESENT, and when the chunk has no bitmap block
    // (SB_BLOCK_NOT_PRESENT, offset 0) it takes bytes at file offset 0 as the
    // bitmap: the "vhdxfile" signature then marks random sectors as present.
    let sparse_bitmaps = chain.iter().any(|c| {
        let s = b.spec(c);
        s.is_differencing() && (b.layout(c).sector_bitmap_offsets.len() as u64) < s.geometry.bitmap_blocks()
    });
    let libvhdi = match (&no_replay, sparse_bitmaps) {
        (Some(skip), _) => skip.clone(),
        (None, true) => "known-limitation: libvhdi reads the sector bitmap of NOT_PRESENT \
                          blocks too, from file offset 0 when the chunk has no bitmap block"
            .to_string(),
        (None, false) => replayed.to_string(),
    };
    let dissect = if legacy5 {
        "skip: dissect.hypervisor has no case for BAT state 5 and silently drops the block \
         (the stream gets shorter)"
            .to_string()
    } else if let Some(skip) = &no_replay {
        skip.clone()
    } else if unaligned_parent_reads(b, &chain) {
        "known-limitation: when a child's PARTIALLY_PRESENT block sends a run to the parent that \
         starts off an 8-sector boundary or mid parent block, dissect reads too few bitmap bytes \
         and may read past the parent block's end"
            .to_string()
    } else {
        replayed.to_string()
    };
    let sevenzip = if legacy5 {
        "skip: 7-Zip rejects a BAT with state 5".to_string()
    } else if no_replay.is_none() && dirty.iter().any(|d| d.truncate_file) {
        // qemu's replay grows the file only as far as the descriptors write,
        // not to LastFileOffset; 7-Zip then fails reading the last block.
        "skip: qemu-img's replay does not extend the file to LastFileOffset, and 7-Zip will \
         not read a bitmap or payload block past the end of the replayed copy"
            .to_string()
    } else if g.virtual_size & g.logical_sector_size as u64 != 0 {
        "skip: 7-Zip rejects a VirtualDiskSize with the bit of value LogicalSectorSize set \
         (its alignment check tests that single bit)"
            .to_string()
    } else {
        no_replay.unwrap_or_else(|| replayed.to_string())
    };

    // FATtools has its own, simpler replayer: no wrap, data sector n taken
    // as descriptor n's, file grown only to FlushedFileOffset. Its reader
    // drops NOT_PRESENT blocks of dynamic disks (returns no bytes for them),
    // so only its replay is used for those, and libvhdi reads the result.
    let fattools = if chain.len() > 1 {
        "skip: FATtools looks parents up only by paths that exist as written (Windows paths here)".to_string()
    } else if legacy5 {
        "skip: FATtools rejects BAT state 5".to_string()
    } else if let Some(d) = dirty.first() {
        let mut why = Vec::new();
        if d.wrap != LogWrap::None {
            why.push("its replayer does not wrap around the end of the log");
        }
        if d.zero_descriptors && d.interleave_zero_descriptors {
            why.push("it takes data sector n for descriptor n, counting zero descriptors");
        }
        if d.truncate_file {
            why.push("it grows the file only to FlushedFileOffset");
        }
        if d.torn_entry_after_head {
            why.push("it loops forever on an entry whose checksum fails (the torn entry)");
        }
        if why.is_empty() {
            "replay-then-libvhdi".to_string()
        } else {
            format!("skip: {}", why.join("; "))
        }
    } else if spec.leave_blocks_allocated {
        "direct".to_string()
    } else {
        "skip: FATtools' reader returns no bytes for NOT_PRESENT blocks of a dynamic disk \
         (used here for fixed disks and for log replay)"
            .to_string()
    };
    json!({
        "qemu-img": qemu,
        "libvhdi": libvhdi,
        "dissect": dissect,
        "7zip": sevenzip,
        "fattools": fattools,
    })
}

/// True when a differencing file of the chain sends a run of absent sectors
/// of a PARTIALLY_PRESENT block to its parent starting at a sector that is
/// not a multiple of 8, or starting inside an ancestor block and running past
/// that block's end: the two cases dissect.hypervisor gets wrong.
fn unaligned_parent_reads(b: &ChainBuilder, chain: &[LayerId]) -> bool {
    for (i, c) in chain.iter().enumerate().take(chain.len().saturating_sub(1)) {
        let spec = b.spec(c);
        let g = &spec.geometry;
        let ss = g.logical_sector_size as u64;
        let min_bs = chain[i + 1..]
            .iter()
            .map(|a| b.spec(a).geometry.block_size as u64)
            .min()
            .unwrap();
        for (&blk, st) in &spec.blocks {
            let BlockState::PartiallyPresent { present, .. } = st else {
                continue;
            };
            let mut s = 0;
            while s < present.len() {
                if present[s] {
                    s += 1;
                    continue;
                }
                let run = present[s..].iter().take_while(|&&p| !p).count();
                let first = blk * g.sectors_per_block() + s as u64;
                let (start, end) = (first * ss, (first + run as u64) * ss);
                if first % 8 != 0 || (start % min_bs != 0 && start / min_bs != (end - 1) / min_bs) {
                    return true;
                }
                s += run;
            }
        }
    }
    false
}

/// True when some entry of the active sequence lies wholly after the point
/// where the sequence wraps around the end of the log.
fn entries_after_wrap(d: &DirtyLog) -> bool {
    let last = d.entries.max(1) - 1;
    match d.wrap {
        LogWrap::None => false,
        LogWrap::InsideEntry(i) => i.min(last) < last,
        LogWrap::BeforeEntry(i) => i.clamp(1, last.max(1)).min(last) >= 1,
    }
}

/// Features of every file the state is read through.
fn chain_features(b: &ChainBuilder, id: &LayerId) -> Vec<String> {
    let mut all: BTreeSet<String> = BTreeSet::new();
    for c in b.chain(id) {
        all.extend(features(b, &c));
    }
    all.into_iter().collect()
}

fn disk_type(spec: &VhdxSpec) -> &'static str {
    if spec.parent.is_some() {
        "differencing"
    } else if spec.leave_blocks_allocated {
        "fixed"
    } else {
        "dynamic"
    }
}

/// What reading this state exercises in its own file (ancestors are covered
/// by their own states).
fn features(b: &ChainBuilder, id: &LayerId) -> Vec<String> {
    let spec = b.spec(id);
    let layout = b.layout(id);
    let g = &spec.geometry;
    let mut f: BTreeSet<String> = BTreeSet::new();
    f.insert(disk_type(spec).into());
    f.insert(format!("logical_sector_{}", g.logical_sector_size));
    f.insert(format!("block_size_{}MiB", g.block_size as u64 / MIB));
    f.insert(format!("current_header_slot_{}", spec.current_header));
    let states: BTreeSet<&str> = spec.blocks.values().map(BlockState::name).collect();
    for s in &states {
        f.insert(format!("block_{s}"));
    }
    if (spec.blocks.len() as u64) < g.data_blocks() {
        f.insert("block_NOT_PRESENT".into());
    }
    if g.virtual_size % g.block_size as u64 != 0 {
        f.insert("short_last_block".into());
    }
    if g.bitmap_blocks() > 1 {
        f.insert("multiple_chunks".into());
    }
    for c in layout.sector_bitmap_offsets.keys() {
        f.insert(format!("sector_bitmap_chunk_{c}"));
    }
    if let Some(p) = &spec.parent {
        f.insert("parent_locator".into());
        if p.linkage2.is_some() || p.volume_path.is_some() || !p.extra.is_empty() {
            f.insert("parent_locator_all_keys".into());
        }
        let parent = b.parent(id).unwrap();
        if b.spec(&parent).geometry.block_size != g.block_size {
            f.insert("block_size_differs_from_parent".into());
        }
        if b.chain(id).len() >= 4 {
            f.insert("chain_depth_4".into());
        }
        let siblings = b
            .layers()
            .into_iter()
            .filter(|x| x != id && b.parent(x) == Some(parent))
            .count();
        if siblings > 0 {
            f.insert("checkpoint_tree_branch".into());
        }
    }
    if let LogSpec::Dirty(d) = &spec.log {
        f.insert("log_replay".into());
        let flags = [
            ("log_bat_only_in_log", d.bat_in_log),
            ("log_metadata_only_in_log", d.metadata_in_log),
            ("log_region_table_only_in_log", d.region_table_in_log),
            (
                "log_sector_bitmap_only_in_log",
                d.sector_bitmaps_in_log && !layout.sector_bitmap_offsets.is_empty(),
            ),
            ("log_payload_only_in_log", d.payload_pages_in_log > 0),
            ("log_zero_descriptors", d.zero_descriptors),
            ("log_wrap", d.wrap != LogWrap::None),
            ("log_entry_straddles_end", matches!(d.wrap, LogWrap::InsideEntry(_))),
            ("log_entries_after_wrap_tail_check", entries_after_wrap(d)),
            (
                "log_zero_descriptors_interleaved",
                d.zero_descriptors && d.interleave_zero_descriptors,
            ),
            ("log_multiple_entries", d.entries > 1),
            ("log_replay_order", d.overwritten_in_sequence),
            ("log_stale_logguid_entry_ignored", d.stale_log_guid_entry),
            ("log_superseded_sequence_ignored", d.superseded_sequence),
            ("log_torn_entry_ignored", d.torn_entry_after_head),
            ("log_truncated_file_extended", layout.file_len < layout.last_file_offset),
            ("log_nondefault_offset", layout.log_offset != MIB),
            (
                "log_multiple_descriptor_sectors",
                layout.log_entry_descriptors.iter().any(|&n| n > 126),
            ),
        ];
        for (name, on) in flags {
            if on {
                f.insert(name.into());
            }
        }
    }
    f.into_iter().collect()
}

struct SemanticRange {
    offset: u64,
    length: u64,
    /// The file whose block state decides these bytes.
    layer: LayerId,
    state: &'static str,
}

/// Ranges of this state that read as zeros only because of the project's
/// decision that UNDEFINED/ZERO/UNMAPPED never fall through to the parent.
/// Only states with a parent matter (in a base disk every choice is zeros).
fn semantic_ranges(b: &ChainBuilder, id: &LayerId) -> Vec<SemanticRange> {
    let Some(parent) = b.parent(id) else {
        return Vec::new();
    };
    let spec = b.spec(id);
    let g = &spec.geometry;
    let bs = g.block_size as u64;
    let ss = g.logical_sector_size as u64;
    let mut own = Vec::new();
    // Bytes where this file defers to its parent.
    let mut transparent: Vec<(u64, u64)> = Vec::new();
    let push = |v: &mut Vec<(u64, u64)>, o: u64, l: u64| match v.last_mut() {
        Some((po, pl)) if *po + *pl == o => *pl += l,
        _ => v.push((o, l)),
    };
    for blk in 0..g.data_blocks() {
        let start = blk * bs;
        let len = g.block_len(blk);
        match spec.blocks.get(&blk) {
            None | Some(BlockState::NotPresent) => push(&mut transparent, start, len),
            Some(st) if st.reads_as_zero() => own.push(SemanticRange {
                offset: start,
                length: len,
                layer: *id,
                state: st.name(),
            }),
            Some(BlockState::PartiallyPresent { present, .. }) => {
                for (s, &p) in present.iter().enumerate() {
                    if !p {
                        push(&mut transparent, start + s as u64 * ss, ss);
                    }
                }
            }
            Some(_) => {}
        }
    }
    for r in semantic_ranges(b, &parent) {
        for &(o, l) in &transparent {
            let a = r.offset.max(o);
            let e = (r.offset + r.length).min(o + l);
            if a < e {
                own.push(SemanticRange {
                    offset: a,
                    length: e - a,
                    ..r
                });
            }
        }
    }
    own.sort_by_key(|r| r.offset);
    own
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// Guest data that names its writer and disk offset in every 512 bytes (easy
/// to recognise in a hex dump of a wrong read), filled up with xorshift noise
/// so no two sectors are alike.
fn pattern(tag: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = offset ^ 0x9E37_79B9_7F4A_7C15 ^ tag.bytes().fold(0u64, |h, c| h.rotate_left(5) ^ c as u64);
    while out.len() < len {
        let at = offset + out.len() as u64;
        let mut sector = format!("[{tag} @{at:#x}]").into_bytes();
        while sector.len() < 512 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sector.extend_from_slice(&x.to_le_bytes());
        }
        sector.truncate(512);
        out.extend_from_slice(&sector);
    }
    out.truncate(len);
    out
}
