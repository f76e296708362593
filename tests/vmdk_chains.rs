//! VMDK snapshot chains and trees made by the test-only VMDK writer
//! (tests/support/vmdk_writer.rs, cross-checked against qemu-img, libvmdk and
//! dissect.hypervisor by `scripts/crosscheck_writer.py --format vmdk`), read through
//! the ckptfs binary: every state's `cat <checkpoint>/disk.img` equals the writer's
//! model for every variant; names, parents and depths are right; a CID mismatch is
//! refused naming both files and CIDs (and read with `--ignore-parent-mismatch`); a
//! missing extent, a journal that needs replay are one-line errors; a damaged primary
//! grain directory is passed over for the redundant one; guest files read back through
//! COWD and SESparse deltas; nothing is written to the files.
//!
//! Every run of the binary has a time limit, so a reader that loops fails the test
//! instead of hanging it.

mod support;
mod util;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::vmdk_writer::*;
use util::{assert_same_bytes, Output};

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

struct Listed {
    file: PathBuf,
    name: String,
    parent: Option<String>,
    depth: u64,
    json: serde_json::Value,
}

fn list_with(image: &Path, extra: &[&str]) -> Vec<Listed> {
    let mut args = vec!["list", "--json"];
    args.extend(extra);
    args.push(s(image));
    let out = ckptfs(&args).ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Listed {
            file: PathBuf::from(c["file"].as_str().unwrap()),
            name: c["name"].as_str().unwrap().to_string(),
            parent: c["parent"].as_str().map(String::from),
            depth: c["depth"].as_u64().unwrap_or(0),
            json: c.clone(),
        })
        .collect()
}

/// Every layer of `c` is a checkpoint of the tree listed from `image`, with the right
/// parent and depth, and `cat <name>/disk.img` gives the layer's model byte for byte.
fn assert_every_state_with(c: &ChainBuilder, image: &Path, extra: &[&str]) {
    let listed = list_with(image, extra);
    assert_eq!(
        listed.len(),
        c.layers().len(),
        "every disk is found: {:?}",
        names(&listed)
    );
    let entry_of = |id: &LayerId| -> &Listed {
        let file = std::fs::canonicalize(c.path(id)).unwrap();
        listed
            .iter()
            .find(|l| l.file == file)
            .unwrap_or_else(|| panic!("{} not listed: {:?}", file.display(), names(&listed)))
    };
    for id in c.layers() {
        let e = entry_of(&id);
        assert_eq!(
            e.parent,
            c.parent(&id).map(|p| entry_of(&p).name.clone()),
            "{}: parent",
            e.name
        );
        assert_eq!(e.depth, c.chain(&id).len() as u64, "{}: depth", e.name);
        let width = if listed.iter().any(|l| l.depth > 99) { 3 } else { 2 };
        assert!(
            e.name.starts_with(&format!("{:0width$}_", e.depth)),
            "{}: named by its depth",
            e.name
        );
        let mut args = vec!["cat"];
        args.extend(extra);
        let path = format!("{}/disk.img", e.name);
        args.extend([s(image), &path]);
        let out = ckptfs(&args).ok();
        let model = c.expected(&id);
        assert_same_bytes(
            &out.stdout,
            &model.read(0, model.size() as usize),
            &format!("{} ({})", c.file_name(&id), e.name),
        );
    }
}

fn assert_every_state(c: &ChainBuilder, image: &Path) {
    assert_every_state_with(c, image, &[])
}

fn names(l: &[Listed]) -> Vec<(String, String)> {
    l.iter()
        .map(|x| (x.name.clone(), x.file.display().to_string()))
        .collect()
}

/// Writes spread over the disk: start, a grain boundary, the middle, the end.
fn spread(e: &mut LayerEdits, salt: u64) {
    let sectors = e.virtual_size() / SECTOR;
    e.write_sectors(salt % 64, 3);
    e.write_sectors(127 + salt, 2);
    e.write_sectors(4096 + salt * 17, 200);
    e.write_sectors(sectors / 2 + salt, 1);
    e.write_sectors(sectors - 1 - salt, 1);
}

fn sparse(version: u32, grain: u64, zero: bool, all_gts: bool) -> Variant {
    Variant::MonolithicSparse(SparseOpts {
        version,
        grain_sectors: grain,
        zero_grain_flag: zero,
        all_gts,
        ..SparseOpts::default()
    })
}

const SIZE: u64 = 12 * MIB;

/// Each base variant alone, then under a sparse child (and the child's own child),
/// listed from the leaf and from the base.
fn variant_chain(base_variant: Variant, child_variant: Variant) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", base_variant, |e| {
        e.write_sectors(0, 9000);
        spread(e, 1);
    });
    assert_every_state(&c, &c.path(&b));
    let s1 = c.child(b, "vm-000001.vmdk", child_variant.clone(), |e| spread(e, 2));
    let s2 = c.child(s1, "vm-000002.vmdk", child_variant, |e| {
        spread(e, 3);
        e.write_sectors(5, 1);
    });
    assert_every_state(&c, &c.path(&s2));
    assert_every_state(&c, &c.path(&b));
}

#[test]
fn monolithic_sparse_v1() {
    variant_chain(Variant::sparse(), Variant::sparse());
}

#[test]
fn monolithic_sparse_v2_8k_grains_only_used_grain_tables() {
    variant_chain(sparse(2, 16, false, false), sparse(2, 16, false, false));
}

#[test]
fn monolithic_sparse_v3_4k_grains_without_redundant_gd() {
    let v = Variant::MonolithicSparse(SparseOpts {
        version: 3,
        grain_sectors: 8,
        redundant_gd: false,
        ..SparseOpts::default()
    });
    variant_chain(v.clone(), v);
}

#[test]
fn two_gb_max_extent_sparse() {
    let v = Variant::TwoGbMaxExtentSparse {
        opts: SparseOpts::default(),
        extent_sectors: 8192,
    };
    variant_chain(v.clone(), v);
}

#[test]
fn monolithic_flat_with_an_offset() {
    variant_chain(Variant::MonolithicFlat { offset: 7 }, Variant::sparse());
}

#[test]
fn two_gb_max_extent_flat() {
    variant_chain(Variant::TwoGbMaxExtentFlat { extent_sectors: 10000 }, Variant::sparse());
}

#[test]
fn stream_optimized_under_sparse_deltas() {
    variant_chain(Variant::StreamOptimized { grain_sectors: 128 }, Variant::sparse());
}

#[test]
fn vmfs_under_cowd_deltas() {
    variant_chain(Variant::Vmfs, Variant::vmfs_sparse());
}

#[test]
fn vmfs_under_cowd_deltas_with_16_sector_grains() {
    variant_chain(Variant::Vmfs, Variant::VmfsSparse { grain_sectors: 16 });
}

#[test]
fn vmfs_under_sesparse_deltas() {
    variant_chain(Variant::Vmfs, Variant::se_sparse());
}

/// Zeroed-grain GTEs over the parent's data read as zeros; a later write into a
/// zeroed grain reads back.
#[test]
fn zero_grains_hide_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, SIZE / SECTOR));
    let z = sparse(1, 128, true, true);
    let s1 = c.child(b, "vm-000001.vmdk", z.clone(), |e| {
        e.zero(128, 512);
        e.zero(SIZE / SECTOR - 128, 128);
    });
    c.child(s1, "vm-000002.vmdk", z, |e| e.write_sectors(200, 1));
    assert!(c.expected(&s1).read(128 * 512, 512).iter().all(|&x| x == 0));
    assert_every_state(&c, &c.path(&b));
}

/// SESparse zero and unmapped grains read as zeros (not the parent's data),
/// unallocated ones as the parent; an ESXi chain COWD → SESparse → SESparse.
#[test]
fn sesparse_grain_types_over_a_cowd_parent() {
    let dir = tempfile::tempdir().unwrap();
    let size = 40 * MIB; // three SESparse grain tables (16 MiB each)
    let mut c = ChainBuilder::new(dir.path(), size);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, size / SECTOR));
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::vmfs_sparse(),
        Hint::VmfsVolumes,
        |e| spread(e, 4),
        |_| {},
    );
    let s2 = c.child(s1, "vm-000002.vmdk", Variant::se_sparse(), |e| {
        spread(e, 5);
        e.zero(64, 64);
        e.unmap(4096, 64);
        e.unmap(33000 * 2, 8);
    });
    c.child(s2, "vm-000003.vmdk", Variant::se_sparse(), |e| {
        e.write_sectors(4100, 1); // inside an unmapped grain of the parent
        e.zero(32768 * 2, 8);
    });
    assert_ne!(c.alt_unmapped_transparent(&s2), Some(c.expected(&s2)));
    assert_every_state(&c, &c.path(&b));
}

/// A tree in one folder, VMware-named: two branches off the base, one off a delta.
#[test]
fn a_snapshot_tree_with_branches() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10000));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| spread(e, 6));
    c.child(s1, "vm-000002.vmdk", Variant::sparse(), |e| spread(e, 7));
    let s3 = c.child(b, "vm-000003.vmdk", Variant::sparse(), |e| spread(e, 8));
    c.child(s3, "vm-000004.vmdk", Variant::sparse(), |e| spread(e, 9));
    c.child(s1, "vm-000005.vmdk", Variant::sparse(), |e| spread(e, 10));
    for id in c.layers() {
        assert_every_state(&c, &c.path(&id));
    }
}

/// An ESXi tree: vmfs base, COWD and SESparse branches behind descriptors.
#[test]
fn an_esxi_tree_of_cowd_and_sesparse_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 20000));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| spread(e, 11));
    c.child(s1, "vm-000002.vmdk", Variant::se_sparse(), |e| spread(e, 12));
    c.child(b, "vm-000003.vmdk", Variant::se_sparse(), |e| spread(e, 13));
    assert_every_state(&c, &c.path(&s1));
}

/// 30 deltas: every state is its own disk.
#[test]
fn a_chain_of_depth_30() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB);
    let mut last = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 8192));
    for i in 1..30u64 {
        last = c.child(last, &format!("vm-{i:06}.vmdk"), Variant::sparse(), |e| {
            e.write_sectors(i * 61 % 8000, 1 + i % 9);
            e.write_sectors(i, 1);
        });
    }
    assert_eq!(c.chain(&last).len(), 30);
    assert_every_state(&c, &c.path(&last));
    let listed = list_with(&c.path(&last), &[]);
    let leaf = listed.iter().find(|l| l.depth == 30).unwrap();
    assert_eq!(leaf.name, "30_current", "the newest leaf is the current state");
}

/// parentFileNameHint as an absolute Windows path and as an ESXi datastore path: the
/// parent is found beside the child by the hint's file name.
#[test]
fn parent_hints_windows_absolute_and_vmfs_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10000));
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::sparse(),
        Hint::WindowsAbsolute,
        |e| spread(e, 14),
        |_| {},
    );
    let s2 = c.child_with(
        s1,
        "vm-000002.vmdk",
        Variant::vmfs_sparse(),
        Hint::VmfsVolumes,
        |e| spread(e, 15),
        |_| {},
    );
    assert!(c
        .spec(&s1)
        .descriptor
        .parent_hint
        .as_deref()
        .unwrap()
        .starts_with("C:\\"));
    assert_every_state(&c, &c.path(&s2));
}

/// A relative hint into another directory.
#[test]
fn parent_hint_into_a_sibling_directory() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    std::fs::create_dir(&base_dir).unwrap();
    let mut c = ChainBuilder::new(&base_dir, SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10000));
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::sparse(),
        Hint::Text("../base/vm.vmdk".into()),
        |e| spread(e, 16),
        |_| {},
    );
    let snaps = dir.path().join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    let moved = snaps.join("vm-000001.vmdk");
    std::fs::rename(c.path(&s1), &moved).unwrap();
    let listed = list_with(&moved, &[]);
    assert_eq!(listed.len(), 2, "{:?}", names(&listed));
    let leaf = listed.iter().find(|l| l.parent.is_some()).unwrap();
    let out = ckptfs(["cat", s(&moved), &format!("{}/disk.img", leaf.name)]).ok();
    assert_same_bytes(&out.stdout, &c.expected(&s1).read(0, SIZE as usize), "moved leaf");
}

/// Several extents under one descriptor: FLAT with an offset, ZERO, FLAT; a child.
#[test]
fn flat_zero_flat_extents_under_one_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let q = SIZE / SECTOR / 4;
    let ext = |sectors, kind, file: Option<&str>| ExtentSpec {
        access: Access::Rw,
        sectors,
        kind,
        file: file.map(String::from),
    };
    let b = c.base(
        "vm.vmdk",
        Variant::Custom {
            create_type: "monolithicFlat".into(),
            extents: vec![
                ext(q, ExtentKind::Flat { offset: 3 }, Some("vm-pt1.vmdk")),
                ext(q, ExtentKind::Zero, None),
                ext(2 * q, ExtentKind::Flat { offset: 0 }, Some("vm-pt2.vmdk")),
            ],
        },
        |e| {
            e.write_sectors(0, q);
            e.write_sectors(2 * q, 2 * q);
        },
    );
    let s1 = c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| {
        spread(e, 17);
        e.write_sectors(q + 5, 3);
    });
    assert_every_state(&c, &c.path(&s1));
}

/// Descriptors with CR LF line ends (text file and embedded) read as with LF.
#[test]
fn crlf_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base_with(
        "vm.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 8192,
        },
        |e| e.write_sectors(0, 10000),
        |s| s.descriptor.crlf = true,
    );
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::sparse(),
        Hint::Relative,
        |e| spread(e, 29),
        |s| s.descriptor.crlf = true,
    );
    assert!(std::fs::read(c.path(&b)).unwrap().windows(2).any(|w| w == b"\r\n"));
    assert_every_state(&c, &c.path(&s1));
}

/// RDONLY extents (as in an OVF export's descriptor) read like RW ones.
#[test]
fn rdonly_extents_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base_with(
        "vm.vmdk",
        Variant::TwoGbMaxExtentFlat { extent_sectors: 8192 },
        |e| e.write_sectors(0, SIZE / SECTOR),
        |s| s.extents.iter_mut().for_each(|e| e.access = Access::RdOnly),
    );
    assert_every_state(&c, &c.path(&b));
}

/// windows-1252 descriptors whose extent names and parent hint hold an é.
#[test]
fn windows_1252_descriptors_with_accented_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let v = Variant::TwoGbMaxExtentSparse {
        opts: SparseOpts::default(),
        extent_sectors: 16384,
    };
    let b = c.base_with(
        "Café.vmdk",
        v.clone(),
        |e| e.write_sectors(0, 10000),
        |s| s.descriptor.encoding = Encoding::Windows1252,
    );
    let s1 = c.child_with(
        b,
        "Café-000001.vmdk",
        v,
        Hint::Relative,
        |e| spread(e, 18),
        |s| s.descriptor.encoding = Encoding::Windows1252,
    );
    assert_every_state(&c, &c.path(&s1));
}

/// The primary grain directory of base and child points past the end of the file;
/// the redundant one is right and is used.
#[test]
fn a_damaged_primary_grain_directory_falls_back_to_the_redundant_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let o = SparseOpts {
        damage_primary_gd: Some(GdDamage::PastEof),
        ..SparseOpts::default()
    };
    let b = c.base("vm.vmdk", Variant::MonolithicSparse(o), |e| {
        e.write_sectors(0, 5000);
        spread(e, 19);
    });
    c.child(b, "vm-000001.vmdk", Variant::MonolithicSparse(o), |e| spread(e, 20));
    assert_every_state(&c, &c.path(&b));
}

fn one_error_line(out: &Output) -> String {
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("ckptfs: ")).collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{}",
        out.stderr
    );
    errors[0].to_string()
}

/// The child's parentCID is not the parent's CID: refused, naming both files and both
/// CIDs; `--ignore-parent-mismatch` reads it anyway (with a warning).
#[test]
fn a_cid_mismatch_is_refused_and_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10000));
    let wrong = 0x0bad_c1d0u32;
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::sparse(),
        Hint::Relative,
        |e| spread(e, 21),
        |s| s.descriptor.parent_cid = wrong,
    );
    let actual = c.spec(&b).descriptor.cid;
    for args in [vec!["list"], vec!["cat"]] {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(s(&c.path(&s1)).to_string());
        if args[0] == "cat" {
            args.push("02_current/disk.img".into());
        }
        let out = ckptfs(&args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        let line = one_error_line(&out).to_lowercase();
        assert!(line.contains("vm-000001.vmdk"), "{line}");
        assert!(line.contains("vm.vmdk"), "{line}");
        assert!(line.contains(&format!("{wrong:08x}")), "expected CID missing: {line}");
        assert!(line.contains(&format!("{actual:08x}")), "actual CID missing: {line}");
    }
    let out = ckptfs([
        "cat",
        "--ignore-parent-mismatch",
        s(&c.path(&s1)),
        "02_current/disk.img",
    ])
    .ok();
    assert_same_bytes(&out.stdout, &c.expected(&s1).read(0, SIZE as usize), "read anyway");
    assert!(!out.stderr.is_empty(), "a warning is expected when reading anyway");
    assert_every_state_with(&c, &c.path(&s1), &["--ignore-parent-mismatch"]);
}

/// A missing extent file (a twoGbMaxExtentSparse piece, a COWD delta, a flat file) is
/// an error naming it.
#[test]
fn a_missing_extent_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base(
        "vm.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 8192,
        },
        |e| e.write_sectors(0, 100),
    );
    let s1 = c.child(b, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| spread(e, 22));
    let cases = [
        (dir.path().join("vm-s002.vmdk"), c.path(&b)),
        (dir.path().join("vm-000001-delta.vmdk"), c.path(&s1)),
    ];
    for (victim, image) in cases {
        let keep = victim.with_extension("keep");
        std::fs::rename(&victim, &keep).unwrap();
        let out = ckptfs(["cat", s(&image), "01_current/disk.img"]);
        let out2 = ckptfs(["list", s(&image)]);
        std::fs::rename(&keep, &victim).unwrap();
        let name = victim.file_name().unwrap().to_str().unwrap();
        for o in [&out, &out2] {
            assert_eq!(o.code, Some(1), "{name}: {}", o.stderr);
            let line = one_error_line(o);
            assert!(line.contains(name), "{name} not named: {line}");
        }
    }
    let dir2 = tempfile::tempdir().unwrap();
    let mut c2 = ChainBuilder::new(dir2.path(), SIZE);
    let f = c2.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 10));
    std::fs::remove_file(dir2.path().join("vm-flat.vmdk")).unwrap();
    let out = ckptfs(["cat", s(&c2.path(&f)), "01_current/disk.img"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(one_error_line(&out).contains("vm-flat.vmdk"), "{}", out.stderr);
}

/// An SESparse extent whose volatile header asks for a journal replay: refused with an
/// error that says so, rather than stale data.
#[test]
fn an_sesparse_journal_needing_replay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 4000));
    let s1 = c.child(
        b,
        "vm-000001.vmdk",
        Variant::SeSparse {
            journal_needs_replay: true,
        },
        |e| spread(e, 23),
    );
    let out = ckptfs(["cat", s(&c.path(&s1)), "02_current/disk.img"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let line = one_error_line(&out);
    assert!(line.contains("vm-000001-sesparse.vmdk"), "{line}");
    assert!(line.to_lowercase().contains("journal"), "{line}");
}

/// A compressed grain that does not inflate is an error naming the file, not a panic
/// or wrong data.
#[test]
fn a_bad_compressed_grain_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::StreamOptimized { grain_sectors: 128 }, |e| {
        e.write_sectors(0, 1000)
    });
    let l = &c.layouts(&b)[0];
    let (_, &at) = l.grain_offsets.iter().next().unwrap();
    corrupt::write_at(&l.path, at + 12, &[0xff; 16]);
    let out = ckptfs(["cat", s(&c.path(&b)), "01_current/disk.img"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(one_error_line(&out).contains("vm.vmdk"), "{}", out.stderr);
}

/// Reading (list, cat of every state, info) leaves every byte and mtime alone.
#[test]
fn files_are_unchanged_after_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 20000));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| spread(e, 24));
    let s2 = c.child(s1, "vm-000002.vmdk", Variant::se_sparse(), |e| spread(e, 25));
    c.child(s2, "vm-000003.vmdk", Variant::sparse(), |e| spread(e, 26));
    let mut all: Vec<PathBuf> = c.layers().iter().flat_map(|id| c.files(id)).collect();
    all.sort();
    let snapshot = || -> Vec<(Vec<u8>, std::time::SystemTime)> {
        all.iter()
            .map(|p| {
                (
                    std::fs::read(p).unwrap(),
                    std::fs::metadata(p).unwrap().modified().unwrap(),
                )
            })
            .collect()
    };
    let before = snapshot();
    assert_every_state(&c, &c.path(&b));
    for id in c.layers() {
        ckptfs(["info", s(&c.path(&id))]);
    }
    let after = snapshot();
    for (p, (b, a)) in all.iter().zip(before.iter().zip(&after)) {
        assert!(b.0 == a.0, "{} modified", p.display());
        assert_eq!(b.1, a.1, "{} mtime changed", p.display());
    }
}

/// A guest path and its expected content (None: absent).
type Expected = (&'static str, Option<Vec<u8>>);

/// A guest filesystem's states: the raw image after each step, and per state the
/// files expected.
struct GuestStates {
    fs: &'static str,
    states: Vec<Vec<u8>>,
    files: Vec<Vec<Expected>>,
}

const GUEST_SIZE: u64 = 32 * MIB;

fn guest_file(tmp: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = tmp.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// ext4 made by mkfs.ext4 -d, changed by debugfs (write, rm) twice.
fn ext4_states(tmp: &Path) -> Option<GuestStates> {
    if !util::have_tool("mkfs.ext4") || !util::have_tool("debugfs") {
        return None;
    }
    let content = tmp.join("content");
    std::fs::create_dir_all(content.join("docs")).unwrap();
    let v1 = util::pseudo_random(1, 300_000);
    std::fs::write(content.join("docs/report.bin"), &v1).unwrap();
    std::fs::write(content.join("hello.txt"), b"state one\n").unwrap();
    let img = tmp.join("ext4.img");
    std::fs::File::create(&img).unwrap().set_len(GUEST_SIZE).unwrap();
    util::run(
        "mkfs.ext4",
        &["-q", "-F", "-b", "4096", "-L", "guest", "-d", s(&content), s(&img)],
    );
    let state1 = std::fs::read(&img).unwrap();
    let debugfs = |cmds: &str| {
        let script = tmp.join("cmds");
        std::fs::write(&script, cmds).unwrap();
        util::run("debugfs", &["-w", "-f", s(&script), s(&img)]);
    };
    let v2 = util::pseudo_random(2, 123_457);
    let hello2 = b"state two, longer than before\n".to_vec();
    debugfs(&format!(
        "write {} new.bin\nrm hello.txt\nwrite {} hello.txt\n",
        s(&guest_file(tmp, "new.bin", &v2)),
        s(&guest_file(tmp, "hello2.txt", &hello2))
    ));
    let state2 = std::fs::read(&img).unwrap();
    let v3 = util::pseudo_random(3, 70_000);
    debugfs(&format!(
        "rm docs/report.bin\nwrite {} docs/third.bin\n",
        s(&guest_file(tmp, "third.bin", &v3))
    ));
    let state3 = std::fs::read(&img).unwrap();
    Some(GuestStates {
        fs: "ext4",
        states: vec![state1, state2, state3],
        files: vec![
            vec![
                ("hello.txt", Some(b"state one\n".to_vec())),
                ("docs/report.bin", Some(v1.clone())),
                ("new.bin", None),
            ],
            vec![
                ("hello.txt", Some(hello2.clone())),
                ("new.bin", Some(v2.clone())),
                ("docs/report.bin", Some(v1)),
            ],
            vec![
                ("hello.txt", Some(hello2)),
                ("docs/third.bin", Some(v3)),
                ("new.bin", Some(v2)),
                ("docs/report.bin", None),
            ],
        ],
    })
}

/// FAT16 made by mkfs.fat, files copied in and deleted with mtools.
fn fat_states(tmp: &Path) -> Option<GuestStates> {
    if !util::have_tool("mkfs.fat") || !util::have_tool("mcopy") || !util::have_tool("mdel") {
        return None;
    }
    let img = tmp.join("fat.img");
    std::fs::File::create(&img).unwrap().set_len(GUEST_SIZE).unwrap();
    util::run("mkfs.fat", &["-F", "16", "-n", "GUEST", s(&img)]);
    let i = s(&img).to_string();
    let mcopy = |src: &Path, dst: &str| util::run("mcopy", &["-o", "-i", &i, s(src), dst]);
    util::run("mmd", &["-i", &i, "::/docs"]);
    let v1 = util::pseudo_random(11, 200_000);
    mcopy(&guest_file(tmp, "report.bin", &v1), "::/docs/report.bin");
    mcopy(&guest_file(tmp, "hello.txt", b"fat one\r\n"), "::/hello.txt");
    let state1 = std::fs::read(&img).unwrap();
    let v2 = util::pseudo_random(12, 99_999);
    mcopy(&guest_file(tmp, "new.bin", &v2), "::/new.bin");
    mcopy(&guest_file(tmp, "hello2.txt", b"fat two, longer\r\n"), "::/hello.txt");
    let state2 = std::fs::read(&img).unwrap();
    util::run("mdel", &["-i", &i, "::/docs/report.bin"]);
    let v3 = util::pseudo_random(13, 50_000);
    mcopy(&guest_file(tmp, "third.bin", &v3), "::/docs/third.bin");
    let state3 = std::fs::read(&img).unwrap();
    Some(GuestStates {
        fs: "fat16",
        states: vec![state1, state2, state3],
        files: vec![
            vec![
                ("hello.txt", Some(b"fat one\r\n".to_vec())),
                ("docs/report.bin", Some(v1.clone())),
                ("new.bin", None),
            ],
            vec![
                ("hello.txt", Some(b"fat two, longer\r\n".to_vec())),
                ("new.bin", Some(v2.clone())),
                ("docs/report.bin", Some(v1)),
            ],
            vec![
                ("docs/third.bin", Some(v3)),
                ("new.bin", Some(v2)),
                ("docs/report.bin", None),
            ],
        ],
    })
}

/// NTFS made by mkntfs, files written with ntfscp (no deletion tool: files are added
/// and overwritten).
fn ntfs_states(tmp: &Path) -> Option<GuestStates> {
    if !util::have_tool("mkntfs") || !util::have_tool("ntfscp") {
        return None;
    }
    let img = tmp.join("ntfs.img");
    std::fs::File::create(&img).unwrap().set_len(GUEST_SIZE).unwrap();
    util::run("mkntfs", &["-q", "-F", "-f", "-L", "guest", s(&img)]);
    let i = s(&img).to_string();
    let ntfscp = |src: &Path, dst: &str| util::run("ntfscp", &["-f", &i, s(src), dst]);
    let v1 = util::pseudo_random(21, 200_000);
    ntfscp(&guest_file(tmp, "report.bin", &v1), "report.bin");
    ntfscp(&guest_file(tmp, "hello.txt", b"ntfs one\r\n"), "hello.txt");
    let state1 = std::fs::read(&img).unwrap();
    let v2 = util::pseudo_random(22, 99_999);
    ntfscp(&guest_file(tmp, "new.bin", &v2), "new.bin");
    let state2 = std::fs::read(&img).unwrap();
    let v3 = util::pseudo_random(23, 200_000);
    ntfscp(&guest_file(tmp, "report3.bin", &v3), "report.bin");
    let state3 = std::fs::read(&img).unwrap();
    Some(GuestStates {
        fs: "ntfs",
        states: vec![state1, state2, state3],
        files: vec![
            vec![
                ("hello.txt", Some(b"ntfs one\r\n".to_vec())),
                ("report.bin", Some(v1.clone())),
                ("new.bin", None),
            ],
            vec![("new.bin", Some(v2.clone())), ("report.bin", Some(v1))],
            vec![("new.bin", Some(v2)), ("report.bin", Some(v3))],
        ],
    })
}

/// The guest's three states as a base of `base` and two deltas of the given kinds;
/// every state's files read back through `ckptfs cat`.
fn assert_guest_through(g: &GuestStates, base: Variant, deltas: [Variant; 2]) {
    let tmp = tempfile::tempdir().unwrap();
    let what = format!(
        "{} over {} / {:?} / {:?}",
        g.fs,
        base.create_type(),
        deltas[0],
        deltas[1]
    );
    let mut c = ChainBuilder::new(tmp.path(), GUEST_SIZE);
    let zeros = vec![0u8; GUEST_SIZE as usize];
    let mut ids = vec![c.base("vm.vmdk", base, |e| {
        for (off, piece) in diff_pieces(&zeros, &g.states[0]) {
            e.write(off, &piece);
        }
    })];
    for (i, v) in deltas.into_iter().enumerate() {
        let id = c.child(ids[i], &format!("vm-{:06}.vmdk", i + 1), v, |e| {
            for (off, piece) in diff_pieces(&g.states[i], &g.states[i + 1]) {
                e.write(off, &piece);
            }
        });
        ids.push(id);
    }
    let image = c.path(&ids[2]);
    let listed = list_with(&image, &[]);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            c.expected(id).read(0, GUEST_SIZE as usize),
            g.states[i],
            "{what}: model"
        );
        let f = std::fs::canonicalize(c.path(id)).unwrap();
        let l = listed.iter().find(|l| l.file == f).unwrap();
        let vols = l.json["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1, "{what}: {}", l.json);
        assert_eq!(vols[0]["filesystem"], g.fs, "{what}: {}", l.json);
        let vol = format!("{}/{}", l.name, vols[0]["dir"].as_str().unwrap());
        let ls = ckptfs(["ls", s(&image), &vol]).ok().stdout_str();
        for (path, want) in &g.files[i] {
            if !path.contains('/') {
                assert_eq!(ls.lines().any(|n| n == *path), want.is_some(), "{what}: ls {vol}: {ls}");
            }
            let out = ckptfs(["cat", s(&image), &format!("{vol}/{path}")]);
            match want {
                Some(bytes) => assert_same_bytes(&out.ok().stdout, bytes, &format!("{what}: {vol}/{path}")),
                None => assert_eq!(out.code, Some(1), "{what}: {vol}/{path} should be absent"),
            }
        }
    }
}

/// Base and delta combinations guest filesystems are read through: every base
/// variant, every delta kind.
fn guest_combinations() -> Vec<(Variant, [Variant; 2])> {
    vec![
        (Variant::Vmfs, [Variant::vmfs_sparse(), Variant::se_sparse()]),
        (Variant::sparse(), [Variant::sparse(), sparse(3, 8, false, false)]),
        (
            Variant::StreamOptimized { grain_sectors: 128 },
            [
                Variant::TwoGbMaxExtentSparse {
                    opts: SparseOpts::default(),
                    extent_sectors: 16384,
                },
                Variant::VmfsSparse { grain_sectors: 16 },
            ],
        ),
        (
            Variant::MonolithicFlat { offset: 5 },
            [Variant::se_sparse(), Variant::sparse()],
        ),
        (
            Variant::TwoGbMaxExtentFlat { extent_sectors: 20000 },
            [Variant::vmfs_sparse(), Variant::sparse()],
        ),
    ]
}

/// ext4 (mkfs.ext4 -d, then debugfs) through every base variant and delta kind,
/// COWD and SESparse included.
#[test]
fn ext4_guest_files_through_every_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(g) = ext4_states(tmp.path()) else { return };
    for (base, deltas) in guest_combinations() {
        assert_guest_through(&g, base, deltas);
    }
}

/// FAT16 (mkfs.fat, mtools) through every base variant and delta kind.
#[test]
fn fat_guest_files_through_every_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(g) = fat_states(tmp.path()) else { return };
    for (base, deltas) in guest_combinations() {
        assert_guest_through(&g, base, deltas);
    }
}

/// NTFS (mkntfs, ntfscp) through every base variant and delta kind.
#[test]
fn ntfs_guest_files_through_every_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(g) = ntfs_states(tmp.path()) else { return };
    for (base, deltas) in guest_combinations() {
        assert_guest_through(&g, base, deltas);
    }
}

/// Through the mount too: every state's `disk.img` of a chain through hosted variants
/// and of an ESXi chain (vmfs, COWD, SESparse) equals the model (spliced and copied
/// replies).
#[test]
fn every_state_reads_the_same_through_the_mount() {
    if !util::can_fuse_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::StreamOptimized { grain_sectors: 128 }, |e| {
        e.write_sectors(0, 9000)
    });
    let s1 = c.child(
        b,
        "vm-000001.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 8192,
        },
        |e| spread(e, 27),
    );
    c.child(s1, "vm-000002.vmdk", sparse(1, 16, true, true), |e| {
        spread(e, 28);
        e.zero(64, 16);
    });
    let image = c.path(&b);
    assert_every_state_through_the_mount(&c, &image);

    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, SIZE / SECTOR));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| spread(e, 46));
    c.child(s1, "vm-000002.vmdk", Variant::se_sparse(), |e| {
        spread(e, 47);
        e.zero(64, 16);
        e.unmap(4096, 64);
    });
    assert_every_state_through_the_mount(&c, &c.path(&b));

    // Flat extents are spliced from their files: split ones (odd sizes), one with an
    // offset, a ZERO extent between them, a sparse child over it all.
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let q = SIZE / SECTOR / 4;
    let ext = |sectors, kind, file: Option<&str>| ExtentSpec {
        access: Access::Rw,
        sectors,
        kind,
        file: file.map(String::from),
    };
    let b = c.base(
        "vm.vmdk",
        Variant::Custom {
            create_type: "monolithicFlat".into(),
            extents: vec![
                ext(q - 3, ExtentKind::Flat { offset: 5 }, Some("vm-pt1.vmdk")),
                ext(q + 3, ExtentKind::Zero, None),
                ext(1001, ExtentKind::Flat { offset: 0 }, Some("vm-pt2.vmdk")),
                ext(2 * q - 1001, ExtentKind::Flat { offset: 1 }, Some("vm-pt3.vmdk")),
            ],
        },
        |e| {
            e.write_sectors(0, q - 3);
            e.write_sectors(2 * q, 2 * q);
        },
    );
    c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| spread(e, 50));
    assert_every_state_through_the_mount(&c, &c.path(&b));

    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::TwoGbMaxExtentFlat { extent_sectors: 5000 }, |e| {
        e.write_sectors(0, SIZE / SECTOR)
    });
    c.child(b, "vm-000001.vmdk", Variant::vmfs_sparse(), |e| spread(e, 51));
    assert_every_state_through_the_mount(&c, &c.path(&b));
}

fn assert_every_state_through_the_mount(c: &ChainBuilder, image: &Path) {
    let listed = list_with(image, &[]);
    for opts in [&[][..], &["-o", "nosplice"]] {
        let mnt = tempfile::tempdir().unwrap();
        let mut args: Vec<&str> = vec!["mount"];
        args.extend(opts);
        args.extend([s(image), s(mnt.path())]);
        ckptfs(&args).ok();
        let result = std::panic::catch_unwind(|| {
            for id in c.layers() {
                let file = std::fs::canonicalize(c.path(&id)).unwrap();
                let name = &listed.iter().find(|l| l.file == file).unwrap().name;
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

/// A 62 TB hosted sparse disk with a few grains (grain tables only where used) and a
/// delta: listed at once, and through the mount (where it can be made) the written
/// sectors near the start and the end read back.
#[test]
fn a_62_tb_sparse_disk_opens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let size = 62 * 1024 * GIB;
    let last = size / SECTOR - 1;
    let v = sparse(1, 128, false, false);
    let mut c = ChainBuilder::new(dir.path(), size);
    let b = c.base("big.vmdk", v.clone(), |e| {
        e.write_sectors(0, 8);
        e.write_sectors(last - 7, 8);
    });
    let s1 = c.child(b, "big-000001.vmdk", v, |e| e.write_sectors(last, 1));
    let t = Instant::now();
    let listed = list_with(&c.path(&s1), &[]);
    assert_eq!(listed.len(), 2);
    assert!(t.elapsed() < Duration::from_secs(10), "list took {:?}", t.elapsed());
    if !util::can_fuse_mount() {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    ckptfs(["mount", s(&c.path(&s1)), s(mnt.path())]).ok();
    let result = std::panic::catch_unwind(|| {
        use std::os::unix::fs::FileExt;
        for id in [b, s1] {
            let file = std::fs::canonicalize(c.path(&id)).unwrap();
            let name = &listed.iter().find(|l| l.file == file).unwrap().name;
            let f = std::fs::File::open(mnt.path().join(name).join("disk.img")).unwrap();
            assert_eq!(f.metadata().unwrap().len(), size);
            for at in [0, (last - 7) * SECTOR, size - 4096] {
                let mut buf = vec![0u8; 4096];
                f.read_exact_at(&mut buf, at).unwrap();
                assert_same_bytes(&buf, &c.expected(&id).read(at, 4096), &format!("{name} at {at:#x}"));
            }
        }
    });
    ckptfs(["umount", s(mnt.path())]).ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The ESXi way to a 62 TB snapshot: an SESparse delta (a 31 MB grain directory, one
/// grain table used) over a sparse base: listed at once; through the mount (where it
/// can be made) its first and last 4 KiB read back.
#[test]
fn a_62_tb_sesparse_delta_opens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let size = 62 * 1024 * GIB;
    let last = size / SECTOR - 1;
    let mut c = ChainBuilder::new(dir.path(), size);
    let b = c.base("big.vmdk", sparse(1, 128, false, false), |e| e.write_sectors(0, 8));
    let s1 = c.child(b, "big-000001.vmdk", Variant::se_sparse(), |e| {
        e.write_sectors(last - 7, 8);
        e.write_sectors(3, 1);
    });
    let t = Instant::now();
    let listed = list_with(&c.path(&s1), &[]);
    assert_eq!(listed.len(), 2);
    assert!(t.elapsed() < Duration::from_secs(10), "list took {:?}", t.elapsed());
    if !util::can_fuse_mount() {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    ckptfs(["mount", s(&c.path(&s1)), s(mnt.path())]).ok();
    let result = std::panic::catch_unwind(|| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::canonicalize(c.path(&s1)).unwrap();
        let name = &listed.iter().find(|l| l.file == file).unwrap().name;
        let f = std::fs::File::open(mnt.path().join(name).join("disk.img")).unwrap();
        for at in [0, size - 4096] {
            let mut buf = vec![0u8; 4096];
            f.read_exact_at(&mut buf, at).unwrap();
            assert_same_bytes(&buf, &c.expected(&s1).read(at, 4096), &format!("{name} at {at:#x}"));
        }
    });
    ckptfs(["umount", s(mnt.path())]).ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Damaged input is a one-line error naming the file, never a panic, and nothing is
/// written: a GTE past the end of the file, an unknown createType, a bad extent line,
/// a parent that is its own grandchild's child (cycle through hints).
#[test]
fn bad_input_is_a_one_line_error_naming_the_file() {
    let check = |what: &str, image: &Path, named: &str, words: &[&str]| {
        let files: Vec<PathBuf> = std::fs::read_dir(image.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let before: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let out = ckptfs(["cat", s(image), "01_current/disk.img"]);
        let out = if out.code == Some(0) {
            // The image itself opened: the damage is further down the chain.
            ckptfs(["cat", s(image), "02_current/disk.img"])
        } else {
            out
        };
        assert_eq!(out.code, Some(1), "{what}: {}", out.stderr);
        let line = one_error_line(&out);
        assert!(line.contains(named), "{what}: {named} not named: {line}");
        let lower = line.to_lowercase();
        assert!(
            words.iter().any(|w| lower.contains(w)),
            "{what}: none of {words:?}: {line}"
        );
        for (p, b) in files.iter().zip(&before) {
            assert!(std::fs::read(p).unwrap() == *b, "{what}: {} modified", p.display());
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::sparse(), |e| e.write_sectors(0, 1000));
    corrupt::kdmv_gte(&c.layouts(&b)[0], 2, 0x00ff_0000);
    check(
        "GTE past EOF",
        &c.path(&b),
        "vm.vmdk",
        &["grain", "past", "beyond", "outside"],
    );

    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base_with(
        "vm.vmdk",
        Variant::Vmfs,
        |e| e.write_sectors(0, 10),
        |s| s.descriptor.create_type = "holographicSparse".into(),
    );
    check(
        "unknown createType",
        &c.path(&b),
        "vm.vmdk",
        &["createtype", "holographicsparse"],
    );

    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base_with(
        "vm.vmdk",
        Variant::Vmfs,
        |e| e.write_sectors(0, 10),
        |s| {
            s.descriptor
                .extra_lines
                .push("RW twelve FLAT \"vm-flat.vmdk\" 0".into())
        },
    );
    check("bad extent line", &c.path(&b), "vm.vmdk", &["extent", "twelve"]);

    // vm-000001 -> vm-000002 -> vm-000001: both descriptors name the other, CIDs match.
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm-000002.vmdk", Variant::sparse(), |e| e.write_sectors(0, 10));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::sparse(), |e| e.write_sectors(20, 1));
    let cid1 = c.spec(&s1).descriptor.cid;
    // Rewrite the base as a child of vm-000001 (its descriptor is embedded: patch in place).
    let base = c.path(&b);
    let mut bytes = std::fs::read(&base).unwrap();
    let text = String::from_utf8_lossy(&bytes[512..512 * 21])
        .trim_end_matches('\0')
        .to_string();
    let patched = text
        .replacen("parentCID=ffffffff", &format!("parentCID={cid1:08x}"), 1)
        .replacen("isNativeSnapshot=\"no\"", "parentFileNameHint=\"vm-000001.vmdk\"", 1);
    assert!(patched.len() <= 20 * 512 && patched != text);
    bytes[512..512 + patched.len()].copy_from_slice(patched.as_bytes());
    std::fs::write(&base, bytes).unwrap();
    check("cycle", &c.path(&s1), "vm-00000", &["loop", "cycle"]);
}

/// Sizes that are not grain multiples: a disk of 12 MiB + 5 sectors, split extents of
/// 10000 sectors (not a multiple of the 128-sector grain), COWD with 16-sector grains,
/// SESparse and streamOptimized with a short last grain; the last sectors written in
/// every layer.
#[test]
fn sizes_that_are_not_grain_multiples() {
    let size = SIZE + 5 * SECTOR;
    let last = size / SECTOR - 1;
    let split = Variant::TwoGbMaxExtentSparse {
        opts: SparseOpts::default(),
        extent_sectors: 10000,
    };
    let chains: Vec<(Variant, Vec<Variant>)> = vec![
        (split.clone(), vec![split, Variant::sparse()]),
        (
            Variant::Vmfs,
            vec![Variant::VmfsSparse { grain_sectors: 16 }, Variant::se_sparse()],
        ),
        (Variant::StreamOptimized { grain_sectors: 128 }, vec![Variant::sparse()]),
    ];
    for (base, children) in chains {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ChainBuilder::new(dir.path(), size);
        let mut id = c.base("vm.vmdk", base, |e| {
            e.write_sectors(0, 100);
            e.write_sectors(9990, 20);
            e.write_sectors(last - 2, 3);
        });
        for (i, v) in children.into_iter().enumerate() {
            let i = i as u64 + 1;
            id = c.child(id, &format!("vm-{i:06}.vmdk"), v, |e| {
                e.write_sectors(last - i, 1);
                e.write_sectors(9999, 2);
                spread(e, 30 + i);
            });
        }
        assert_every_state(&c, &c.path(&id));
    }
}

/// `info --json` of every disk file gives what the writer recorded: createType, CID,
/// parentCID, hint, size, ddb keys, and per extent its type, size, file, offset and
/// (sparse kinds) the number of allocated grains.
#[test]
fn info_reports_what_the_writer_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::MonolithicFlat { offset: 7 }, |e| {
        e.write_sectors(0, 100)
    });
    let s1 = c.child(b, "vm-000001.vmdk", sparse(3, 16, true, false), |e| {
        spread(e, 40);
        e.zero(2048, 64);
    });
    let s2 = c.child_with(
        s1,
        "vm-000002.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 8192,
        },
        Hint::WindowsAbsolute,
        |e| spread(e, 41),
        |_| {},
    );
    let s3 = c.child(s2, "vm-000003.vmdk", Variant::vmfs_sparse(), |e| spread(e, 42));
    let s4 = c.child(s3, "vm-000004.vmdk", Variant::se_sparse(), |e| {
        spread(e, 43);
        e.unmap(4096, 8);
    });
    let mut c2 = ChainBuilder::new(dir.path(), SIZE);
    let st = c2.base("export.vmdk", Variant::StreamOptimized { grain_sectors: 128 }, |e| {
        spread(e, 44)
    });
    let cases: Vec<(&ChainBuilder, LayerId)> = vec![(&c, b), (&c, s1), (&c, s2), (&c, s3), (&c, s4), (&c2, st)];
    for (c, id) in cases {
        let out = ckptfs(["info", "--json", s(&c.path(&id))]).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let spec = c.spec(&id);
        let d = &spec.descriptor;
        let what = c.file_name(&id);
        assert_eq!(v["format"], "vmdk", "{what}");
        assert_eq!(v["create_type"], d.create_type.as_str(), "{what}");
        assert_eq!(v["cid"], format!("{:08x}", d.cid), "{what}");
        assert_eq!(v["parent_cid"], format!("{:08x}", d.parent_cid), "{what}");
        assert_eq!(v["parent_file_name_hint"].as_str(), d.parent_hint.as_deref(), "{what}");
        assert_eq!(v["virtual_size"], SIZE, "{what}");
        for (k, val) in &d.ddb {
            assert_eq!(v["ddb"][format!("ddb.{k}")], val.as_str(), "{what}: ddb.{k}");
        }
        let extents = v["extents"].as_array().unwrap();
        assert_eq!(extents.len(), spec.extents.len(), "{what}");
        for ((e, got), grains) in spec.extents.iter().zip(extents).zip(&c.layer(&id).grains) {
            assert_eq!(got["type"], e.kind.type_word(), "{what}");
            assert_eq!(got["sectors"], e.sectors, "{what}");
            assert_eq!(got["file"].as_str(), e.file.as_deref(), "{what}");
            if let ExtentKind::Flat { offset } = e.kind {
                assert_eq!(got["offset"], offset, "{what}");
            }
            if e.kind.is_sparse() {
                let data = grains.values().filter(|g| matches!(g, Grain::Data(_))).count();
                assert_eq!(got["allocated_grains"], data, "{what}: allocated grains");
            }
        }
    }
}

/// An absolute hint to a parent in another directory is followed; a hint that leads
/// nowhere is one error line naming the child and the hint.
#[test]
fn absolute_hint_elsewhere_and_a_missing_parent() {
    let dir = tempfile::tempdir().unwrap();
    let parents = dir.path().join("parents");
    let vm = dir.path().join("vm");
    std::fs::create_dir(&parents).unwrap();
    std::fs::create_dir(&vm).unwrap();
    let mut c = ChainBuilder::new(&parents, SIZE);
    let b = c.base("base.vmdk", Variant::sparse(), |e| e.write_sectors(0, 5000));
    let abs = c.path(&b).to_str().unwrap().to_string();
    let s1 = c.child_with(
        b,
        "vm-000001.vmdk",
        Variant::vmfs_sparse(),
        Hint::Text(abs),
        |e| spread(e, 45),
        |_| {},
    );
    for f in c.files(&s1) {
        std::fs::rename(&f, vm.join(f.file_name().unwrap())).unwrap();
    }
    let leaf = vm.join("vm-000001.vmdk");
    let listed = list_with(&leaf, &[]);
    assert_eq!(listed.len(), 2, "{:?}", names(&listed));
    let out = ckptfs(["cat", s(&leaf), "02_current/disk.img"]).ok();
    assert_same_bytes(
        &out.stdout,
        &c.expected(&s1).read(0, SIZE as usize),
        "child over an absolute hint",
    );

    std::fs::remove_file(c.path(&b)).unwrap();
    let out = ckptfs(["list", s(&leaf)]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let line = one_error_line(&out);
    assert!(line.contains("vm-000001.vmdk") && line.contains("base.vmdk"), "{line}");
}

/// Random trees (fixed seeds, so failures reproduce; see `random_tree`): every state
/// of every tree read through `cat`.
#[test]
fn random_trees_of_every_variant() {
    for seed in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let (c, ids) = random_tree(dir.path(), seed);
        assert_every_state(&c, &c.path(&ids[0]));
    }
}

/// The hint names a file beside the child, but the parent lives elsewhere: not found
/// (an error naming the hint), then found with `--search-dir`, with its CID checked.
#[test]
fn a_parent_found_with_search_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let b = c.base("vm.vmdk", Variant::Vmfs, |e| e.write_sectors(0, 6000));
    let s1 = c.child(b, "vm-000001.vmdk", Variant::se_sparse(), |e| spread(e, 48));
    let elsewhere = tempfile::tempdir().unwrap();
    for f in c.files(&b) {
        std::fs::rename(&f, elsewhere.path().join(f.file_name().unwrap())).unwrap();
    }
    let leaf = c.path(&s1);
    let out = ckptfs(["list", s(&leaf)]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(one_error_line(&out).contains("vm.vmdk"), "{}", out.stderr);
    let listed = list_with(&leaf, &["--search-dir", s(elsewhere.path())]);
    assert_eq!(listed.len(), 2, "{:?}", names(&listed));
    let out = ckptfs([
        "cat",
        "--search-dir",
        s(elsewhere.path()),
        s(&leaf),
        "02_current/disk.img",
    ])
    .ok();
    assert_same_bytes(&out.stdout, &c.expected(&s1).read(0, SIZE as usize), "via --search-dir");
}

/// A Windows relative hint with backslashes into a sibling directory, and file names
/// with spaces (extents and hint).
#[test]
fn backslash_relative_hints_and_names_with_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("Base Disks");
    std::fs::create_dir(&base_dir).unwrap();
    let mut c = ChainBuilder::new(&base_dir, SIZE);
    let b = c.base(
        "My VM.vmdk",
        Variant::TwoGbMaxExtentSparse {
            opts: SparseOpts::default(),
            extent_sectors: 8192,
        },
        |e| e.write_sectors(0, 10000),
    );
    let s1 = c.child_with(
        b,
        "My VM-000001.vmdk",
        Variant::sparse(),
        Hint::Text("..\\Base Disks\\My VM.vmdk".into()),
        |e| spread(e, 49),
        |_| {},
    );
    let snaps = dir.path().join("Snapshots");
    std::fs::create_dir(&snaps).unwrap();
    let moved = snaps.join("My VM-000001.vmdk");
    std::fs::rename(c.path(&s1), &moved).unwrap();
    let listed = list_with(&moved, &[]);
    assert_eq!(listed.len(), 2, "{:?}", names(&listed));
    for (id, name) in [(b, "01_"), (s1, "02_")] {
        let l = listed.iter().find(|l| l.name.starts_with(name)).unwrap();
        let out = ckptfs(["cat", s(&moved), &format!("{}/disk.img", l.name)]).ok();
        assert_same_bytes(&out.stdout, &c.expected(&id).read(0, SIZE as usize), &l.name);
    }
}
