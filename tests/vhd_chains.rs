//! VHD checkpoint chains made by the test-only VHD writer (tests/support/vhd_writer.rs,
//! cross-checked against 7-Zip, qemu-img, libvhdi and dissect by
//! scripts/crosscheck_writer.py), read through the ckptfs binary: every state's
//! `cat <checkpoint>/disk.img` equals the writer's model; parents are found from each
//! kind of hint; damaged files and wrong chains are one-line errors; nothing is
//! written to the files.
//!
//! Every run of the binary has a time limit, so a reader that loops (a cyclic chain)
//! fails the test instead of hanging it.

mod support;
mod util;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::vhd_writer::{
    bitmap_patterns, corrupt, write_cycle, ChainBuilder, DiskType, LayerId, Locator, Locators, VhdSpec, MIB, SECTOR,
};
use util::{assert_same_bytes, Output};
use uuid::Uuid;

const TIME_LIMIT: Duration = Duration::from_secs(120);

/// Runs the binary like `util::ckptfs`, but kills it and panics after `TIME_LIMIT`.
fn ckptfs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ckptfs"))
        .args(&args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ckptfs");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        out.read_to_end(&mut b).map(|_| b).unwrap_or_default()
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s).unwrap_or_default()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > TIME_LIMIT {
            child.kill().ok();
            child.wait().ok();
            panic!("ckptfs {args:?} still running after {TIME_LIMIT:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `list --json` of `image`: (file, name, parent name) per checkpoint.
fn list(image: &Path) -> Vec<(PathBuf, String, Option<String>)> {
    let out = ckptfs(["list", "--json", s(image)]).ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                PathBuf::from(c["file"].as_str().unwrap()),
                c["name"].as_str().unwrap().to_string(),
                c["parent"].as_str().map(String::from),
            )
        })
        .collect()
}

/// Every layer of `c` is a checkpoint of the tree listed from `image`, with the right
/// parent, and `cat <name>/disk.img` gives the layer's model byte for byte.
fn assert_every_state(c: &ChainBuilder, image: &Path) {
    let listed = list(image);
    assert_eq!(listed.len(), c.layers().len(), "every file is found: {listed:?}");
    let name_of = |id: &LayerId| -> String {
        let file = std::fs::canonicalize(c.path(id)).unwrap();
        listed
            .iter()
            .find(|(f, _, _)| *f == file)
            .unwrap_or_else(|| panic!("{} not listed: {listed:?}", file.display()))
            .1
            .clone()
    };
    for id in c.layers() {
        let name = name_of(&id);
        let entry = listed.iter().find(|(_, n, _)| *n == name).unwrap();
        assert_eq!(entry.2, c.parent(&id).map(|p| name_of(&p)), "{name}: parent");
        let out = ckptfs(["cat", s(image), &format!("{name}/disk.img")]).ok();
        let model = c.expected(&id);
        assert_same_bytes(
            &out.stdout,
            &model.read(0, model.size() as usize),
            &format!("{} ({name})", c.file_name(&id)),
        );
    }
}

/// Dynamic base over the whole disk, a child with every bitmap pattern (one per
/// block), a grandchild with the patterns shifted by one block (so they sit over the
/// child's partial blocks too) and a sibling branch with copy-up blocks.
fn pattern_tree(dir: &Path, block_size: u32) -> (ChainBuilder, LayerId) {
    let pats = bitmap_patterns(block_size as u64 / SECTOR);
    let size = (8 * MIB).max((2 * pats.len() as u64 + 3) * block_size as u64);
    let mut c = ChainBuilder::new(dir, size);
    let base = c.base("vm.vhd", DiskType::Dynamic, block_size, |e| {
        e.write_sectors(0, size / SECTOR - 8);
    });
    let a = c.child(base, "vm_A.vhd", block_size, |e| {
        for (i, (_, runs)) in pats.iter().enumerate() {
            e.write_runs(i as u64, runs);
        }
    });
    c.child(a, "vm_B.vhd", block_size, |e| {
        for (i, (_, runs)) in pats.iter().enumerate() {
            e.write_runs(i as u64 + 1, runs);
            e.write_runs(pats.len() as u64 + 1 + i as u64, runs);
        }
    });
    c.child(a, "vm_C.vhd", block_size, |e| {
        e.full_blocks(true);
        e.write_sectors(3, 1);
        e.write_sectors(size / SECTOR - 1, 1);
    });
    (c, base)
}

#[test]
fn every_bitmap_pattern_in_every_state_with_4k_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (c, base) = pattern_tree(dir.path(), 4096);
    assert_every_state(&c, &c.path(&base));
}

#[test]
fn every_bitmap_pattern_in_every_state_with_512k_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (c, base) = pattern_tree(dir.path(), 512 << 10);
    assert_every_state(&c, &c.path(&base));
}

#[test]
fn every_bitmap_pattern_in_every_state_with_2m_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (c, base) = pattern_tree(dir.path(), 2 << 20);
    assert_every_state(&c, &c.path(&base));
}

#[test]
fn every_bitmap_pattern_in_every_state_with_4m_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (c, base) = pattern_tree(dir.path(), 4 << 20);
    assert_every_state(&c, &c.path(&base));
}

/// A fixed base whose size is not a block multiple, differencing children with a
/// partial short last block; listed from the leaf.
#[test]
fn fixed_base_with_children_and_a_short_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let size = 12 * MIB + 3 * SECTOR;
    let mut c = ChainBuilder::new(dir.path(), size);
    let base = c.base("fixed.vhd", DiskType::Fixed, 2 << 20, |e| {
        e.write_sectors(0, 4096);
        e.write_sectors(size / SECTOR - 3, 3);
    });
    let a = c.child(base, "fixed_A.vhd", 2 << 20, |e| {
        e.write_sectors(10, 5);
        e.write_sectors(size / SECTOR - 2, 1);
    });
    let b = c.child(a, "fixed_B.vhd", 512 << 10, |e| e.write_sectors(size / SECTOR - 1, 1));
    assert_every_state(&c, &c.path(&b));
}

/// Block sizes differ from layer to layer: 4 MiB, 512 KiB, 8 KiB, 2 MiB.
#[test]
fn mixed_block_sizes_along_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let size = 16 * MIB;
    let mut c = ChainBuilder::new(dir.path(), size);
    let base = c.base("mix.vhd", DiskType::Dynamic, 4 << 20, |e| {
        e.write_sectors(0, size / SECTOR)
    });
    let a = c.child(base, "mix_A.vhd", 512 << 10, |e| {
        e.write_sectors(1023, 3);
        e.write_sectors(9000, 17);
    });
    let b = c.child(a, "mix_B.vhd", 8192, |e| {
        e.write_sectors(1024, 1);
        e.write_sectors(9010, 30);
    });
    let _c = c.child(b, "mix_C.vhd", 2 << 20, |e| e.write_sectors(8191, 2));
    assert_every_state(&c, &c.path(&base));
}

/// 50 files: every state is its own disk.
#[test]
fn a_chain_of_depth_50() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4 * MIB;
    let mut c = ChainBuilder::new(dir.path(), size);
    let mut last = c.base("d00.vhd", DiskType::Dynamic, 512 << 10, |e| e.write_sectors(0, 2048));
    for i in 1..50u64 {
        last = c.child(last, &format!("d{i:02}.vhd"), 512 << 10, |e| {
            e.write_sectors(i * 61 % 8000, 1 + i % 9);
            e.write_sectors(i, 1);
        });
    }
    assert_eq!(c.chain(&last).len(), 50);
    assert_every_state(&c, &c.path(&last));
}

/// The parent is only reachable through the W2ru locator: it lives in a
/// subdirectory, and the unicode name (a file name) and W2ku point beside the child.
#[test]
fn parent_found_only_by_w2ru() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("base.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 4096));
    let child = c.child_with(
        base,
        "child.vhd",
        1 << 20,
        |e| e.write_sectors(7, 2),
        |s| {
            let p = s.parent.as_mut().unwrap();
            p.unicode_name = "not-here.vhd".into();
            p.locators = vec![Locator::relative(r".\parents\base.vhd")];
        },
    );
    std::fs::create_dir(dir.path().join("parents")).unwrap();
    std::fs::rename(c.path(&base), dir.path().join("parents/base.vhd")).unwrap();
    let tree = list(&c.path(&child));
    assert_eq!(tree.len(), 2, "{tree:?}");
    let moved = std::fs::canonicalize(dir.path().join("parents/base.vhd")).unwrap();
    for (file, name, _) in &tree {
        let id = if *file == moved { base } else { child };
        let out = ckptfs(["cat", s(&c.path(&child)), &format!("{name}/disk.img")]).ok();
        assert_same_bytes(&out.stdout, &c.expected(&id).read(0, 4 << 20), c.file_name(&id));
    }
}

/// Only a W2ku locator (`C:\VMs\base.vhd`); the unicode name names a file that does
/// not exist: the parent is found by the absolute path's file name, beside the child.
#[test]
fn parent_found_only_by_w2ku_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("base.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 4096));
    c.child_with(
        base,
        "child.vhd",
        1 << 20,
        |e| e.write_sectors(2047, 2),
        |s| {
            let p = s.parent.as_mut().unwrap();
            p.unicode_name = "not-here.vhd".into();
            p.locators = Locators::AbsoluteOnly.build("base.vhd");
        },
    );
    assert_every_state(&c, &c.path(&LayerId(1)));
}

/// No locator at all: the unicode parent name is the only hint.
#[test]
fn parent_found_only_by_unicode_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("base.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 4096));
    let child = c.child_locators(base, "child.vhd", 1 << 20, Locators::None, |e| e.write_sectors(100, 3));
    let leaf = c.child_locators(child, "leaf.vhd", 1 << 20, Locators::None, |e| e.write_sectors(101, 1));
    assert!(c.spec(&leaf).parent.as_ref().unwrap().locators.is_empty());
    assert_every_state(&c, &c.path(&leaf));
}

/// Hints that lead nowhere: a one-line error naming the child and what it looked for.
#[test]
fn a_missing_parent_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("base.vhd", DiskType::Dynamic, 1 << 20, |_| {});
    let child = c.child(base, "child.vhd", 1 << 20, |e| e.write_sectors(0, 1));
    std::fs::remove_file(c.path(&base)).unwrap();
    let out = ckptfs(["list", s(&c.path(&child))]).failed();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("child.vhd") && out.stderr.contains("base.vhd"),
        "{}",
        out.stderr
    );
}

fn mentions_uuid(text: &str, id: Uuid) -> bool {
    let t = text.to_lowercase();
    t.contains(&id.hyphenated().to_string()) || t.contains(&id.simple().to_string())
}

/// The file at the hinted path has another unique id than the child records.
#[test]
fn a_parent_uuid_mismatch_names_both_files_and_both_uuids() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let base = c.base("base.vhd", DiskType::Dynamic, 1 << 20, |e| e.write_sectors(0, 8));
    let wrong = Uuid::from_u128(0x12345678_aaaa_4bbb_8ccc_123456789abc);
    let child = c.child_with(
        base,
        "child.vhd",
        1 << 20,
        |e| e.write_sectors(1, 1),
        |s| s.parent.as_mut().unwrap().unique_id = wrong,
    );
    let actual = c.spec(&base).unique_id;
    for args in [vec!["list"], vec!["cat"]] {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(s(&c.path(&child)).to_string());
        if args[0] == "cat" {
            args.push("02_current/disk.img".into());
        }
        let out = ckptfs(&args).failed();
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("child.vhd"), "{}", out.stderr);
        assert!(out.stderr.contains("base.vhd"), "{}", out.stderr);
        assert!(
            mentions_uuid(&out.stderr, wrong),
            "expected uuid missing: {}",
            out.stderr
        );
        assert!(
            mentions_uuid(&out.stderr, actual),
            "actual uuid missing: {}",
            out.stderr
        );
    }
}

/// A's parent is B and B's parent is A (by unique id, locators and name).
#[test]
fn a_cyclic_chain_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = write_cycle(dir.path(), "a.vhd", "b.vhd", 4 * MIB, 1 << 20);
    for p in [&a, &b] {
        let out = ckptfs(["list", s(p)]).failed();
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("loops back"), "{}", out.stderr);
        let out = ckptfs(["cat", s(p), "01_current/disk.img"]).failed();
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// A base + child, then `damage` on one of them; reading the child's state must fail
/// (exit 1, no panic) with one error line naming the damaged file and one of
/// `structure` (lower case), and leave both files as they were.
fn assert_bad_input(
    what: &str,
    damage_child: bool,
    damage: impl FnOnce(&Path, &support::vhd_writer::Layout),
    structure: &[&str],
) {
    assert_bad_input_with(what, damage_child, |_| {}, damage, structure)
}

/// `assert_bad_input`, with the child's spec changed before it is written (it starts
/// with one W2ru locator and the unicode name).
fn assert_bad_input_with(
    what: &str,
    damage_child: bool,
    child_tweak: impl FnOnce(&mut VhdSpec),
    damage: impl FnOnce(&Path, &support::vhd_writer::Layout),
    structure: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 8 * MIB);
    let base = c.base("base.vhd", DiskType::Dynamic, 2 << 20, |e| e.write_sectors(0, 8192));
    let child = c.child_with(
        base,
        "child.vhd",
        2 << 20,
        |e| {
            e.write_sectors(5, 3);
            e.write_sectors(4096 + 9, 1);
        },
        |s| {
            s.parent.as_mut().unwrap().locators = Locators::RelativeOnly.build("base.vhd");
            child_tweak(s);
        },
    );
    let victim = if damage_child { child } else { base };
    let path = c.path(&victim);
    damage(&path, c.layout(&victim));
    let before: Vec<Vec<u8>> = [base, child]
        .iter()
        .map(|id| std::fs::read(c.path(id)).unwrap())
        .collect();
    let leaf = c.path(&child);
    // The whole disk is read, so damage found only when a block is read counts too.
    let out = ckptfs(["cat", s(&leaf), "02_current/disk.img"]);
    let line = if damage_child {
        // The damaged file is the one opened: exactly one line.
        let out = out.failed();
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        out.stderr.trim_end().to_string()
    } else {
        // Reached as a parent: the chain may log a warning about the candidate it could
        // not open before the error; the error itself is still one `ckptfs:` line.
        assert_eq!(out.code, Some(1), "{what}: {}", out.stderr);
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
            "{what}: {}",
            out.stderr
        );
        let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("ckptfs: ")).collect();
        assert_eq!(errors.len(), 1, "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().last(), Some(errors[0]), "{what}: {}", out.stderr);
        errors[0].to_string()
    };
    let file = c.file_name(&victim);
    assert!(line.contains(file), "{what}: {file} not named: {line}");
    let lower = line.to_lowercase();
    assert!(
        structure.iter().any(|w| lower.contains(w)),
        "{what}: none of {structure:?} named: {line}"
    );
    for (id, b) in [base, child].iter().zip(&before) {
        assert!(
            std::fs::read(c.path(id)).unwrap() == *b,
            "{what}: {} modified",
            c.file_name(id)
        );
    }
}

#[test]
fn bad_footer_checksum() {
    assert_bad_input("footer checksum", true, corrupt::footer_checksum, &["footer"]);
    assert_bad_input(
        "footer checksum of the parent",
        false,
        corrupt::footer_checksum,
        &["footer"],
    );
}

#[test]
fn bad_dynamic_header_checksum() {
    assert_bad_input(
        "dynamic header checksum",
        true,
        corrupt::dyn_header_checksum,
        &["dynamic header", "header"],
    );
}

#[test]
fn bat_entry_past_the_end_of_the_file() {
    // Block 0 is allocated in both files; point it far past the end.
    assert_bad_input(
        "BAT entry past EOF (child)",
        true,
        |p, l| corrupt::bat_entry(p, l, 0, 0x00FF_FF00),
        &["bat", "block allocation table", "block 0"],
    );
    assert_bad_input(
        "BAT entry past EOF (parent)",
        false,
        |p, l| corrupt::bat_entry(p, l, 3, 0x7FFF_FFF0),
        &["bat", "block allocation table", "block 3"],
    );
}

#[test]
fn block_size_not_a_power_of_two() {
    for bs in [3 << 20, 1000, 0] {
        assert_bad_input(
            &format!("block size {bs}"),
            true,
            |p, l| corrupt::block_size(p, l, bs),
            &["block size"],
        );
    }
}

/// The only way to the parent is a W2ru locator whose data length runs past its data
/// space however the space is read: the field says 1 (written in sectors, as the spec
/// says), which is 1 byte or 512 bytes, and the length is 1024 (inside the file and
/// far below any path-length limit). The unicode name is empty. A reader may skip a
/// damaged locator while other hints are left (the parent is checked by unique id);
/// here none is left, so it must be an error naming the locator.
#[test]
fn locator_length_past_its_space() {
    assert_bad_input_with(
        "locator length",
        true,
        |s| {
            s.locator_space_in_sectors = true;
            s.parent.as_mut().unwrap().unicode_name = String::new();
        },
        |p, l| corrupt::locator_length(p, l, 0, 1024),
        &["locator", "w2ru"],
    );
}

/// Reading (list, cat of every state, info) leaves every byte and the mtimes alone.
#[test]
fn files_are_unchanged_after_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (c, base) = pattern_tree(dir.path(), 512 << 10);
    let snapshot = || -> Vec<(Vec<u8>, std::time::SystemTime)> {
        c.layers()
            .iter()
            .map(|id| {
                let p = c.path(id);
                (
                    std::fs::read(&p).unwrap(),
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                )
            })
            .collect()
    };
    let before = snapshot();
    assert_every_state(&c, &c.path(&base));
    for id in c.layers() {
        ckptfs(["info", s(&c.path(&id))]).ok();
    }
    let after = snapshot();
    for (id, (b, a)) in c.layers().iter().zip(before.iter().zip(&after)) {
        assert!(b.0 == a.0, "{} modified", c.file_name(id));
        assert_eq!(b.1, a.1, "{} mtime changed", c.file_name(id));
    }
}

/// Through the mount too: every state's `disk.img` (read by the spliced reply path,
/// and by the copy path with `-o nosplice`) equals the writer's model.
#[test]
fn every_state_reads_the_same_through_the_mount() {
    let why = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("mounting needs root here")
    } else {
        None
    };
    if let Some(why) = why {
        assert!(std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_none(), "{why}");
        util::skip(why);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, base) = pattern_tree(dir.path(), 512 * 1024);
    let image = c.path(&base);
    let listed = list(&image);
    for opts in [&[][..], &["-o", "nosplice"]] {
        let mnt = tempfile::tempdir().unwrap();
        let mut args: Vec<&str> = vec!["mount"];
        args.extend(opts);
        args.extend([s(&image), s(mnt.path())]);
        ckptfs(&args).ok();
        let result = std::panic::catch_unwind(|| {
            for id in c.layers() {
                let file = std::fs::canonicalize(c.path(&id)).unwrap();
                let name = &listed.iter().find(|(f, _, _)| *f == file).unwrap().1;
                let got = std::fs::read(mnt.path().join(name).join("disk.img")).unwrap();
                let model = c.expected(&id);
                assert_same_bytes(&got, &model.read(0, model.size() as usize), &format!("{opts:?} {name}"));
            }
        });
        ckptfs(["umount", s(mnt.path())]).ok();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
