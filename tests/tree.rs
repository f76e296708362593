//! Finding the whole checkpoint tree from any one of its files, naming its states, and
//! the errors for broken chains.

mod support;
mod util;

use std::fs::{File, FileTimes};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use support::vhdx_writer::{braced, write_vhdx, ChainBuilder, Geometry, LayerId, ParentLink, VhdxSpec};
use util::{ckptfs, pseudo_random};

const MIB: u64 = 1 << 20;

fn touch(path: &Path, secs: u64) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_times(FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap();
}

fn names_by_file(tree: &CheckpointTree) -> Vec<(String, String, Option<String>)> {
    tree.checkpoints
        .iter()
        .map(|c| {
            (
                c.path.file_name().unwrap().to_string_lossy().into_owned(),
                c.name.clone(),
                c.parent.map(|p| tree.checkpoints[p].name.clone()),
            )
        })
        .collect()
}

/// base ← a ← b (applied back to a, then worked on:) a ← c ← d. Two leaves.
fn branched(dir: &Path) -> (ChainBuilder, Vec<LayerId>) {
    let mut c = ChainBuilder::new(dir, 8 * MIB, 512);
    let base = c.base("vm.vhdx", 1 << 20, false, |e| {
        e.write(0, &pseudo_random(1, MIB as usize))
    });
    let a = c.child(base, "vm_A.avhdx", 1 << 20, |e| e.write(0, &pseudo_random(2, 4096)));
    let b = c.child(a, "vm_B.avhdx", 1 << 20, |e| e.write(4096, &pseudo_random(3, 4096)));
    let cc = c.child(a, "vm_C.avhdx", 1 << 20, |e| e.write(8192, &pseudo_random(4, 4096)));
    let d = c.child(cc, "vm_D.avhdx", 1 << 20, |e| e.write(MIB, &pseudo_random(5, 4096)));
    // Frozen at 10:00, 11:00, 12:00 (b abandoned at 12:00), c at 13:00; d is current.
    for (id, t) in [(base, 36_000), (a, 39_600), (b, 43_200), (cc, 46_800), (d, 50_400)] {
        touch(&c.path(&id), 1_700_000_000 + t);
    }
    (c, vec![base, a, b, cc, d])
}

#[test]
fn the_same_tree_is_found_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let (c, ids) = branched(dir.path());
    let expected = [
        ("vm.vhdx", "01_2023-11-15_081320", None),
        ("vm_A.avhdx", "02_2023-11-15_091320", Some("01_2023-11-15_081320")),
        ("vm_B.avhdx", "03_2023-11-15_101320", Some("02_2023-11-15_091320")),
        ("vm_C.avhdx", "03_2023-11-15_111320", Some("02_2023-11-15_091320")),
        ("vm_D.avhdx", "04_current", Some("03_2023-11-15_111320")),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(f, n, p)| (f.to_string(), n.to_string(), p.map(String::from)))
        .collect();
    for id in &ids {
        let tree = CheckpointTree::discover(&c.path(id), &DiscoverOptions::default()).unwrap();
        assert_eq!(names_by_file(&tree), expected, "from {}", c.file_name(id));
        let current: Vec<_> = tree
            .checkpoints
            .iter()
            .filter(|c| c.current)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(current, ["04_current"]);
    }
    // Names do not change from one run to the next.
    let again = CheckpointTree::discover(&c.path(&ids[2]), &DiscoverOptions::default()).unwrap();
    assert_eq!(names_by_file(&again), expected);
}

#[test]
fn list_json_has_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (c, ids) = branched(dir.path());
    let out = ckptfs(["list", "--json", c.path(&ids[0]).to_str().unwrap()]).ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cps = v["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 5);
    for cp in cps {
        for key in ["name", "file", "snapshot", "parent", "created", "volumes"] {
            assert!(cp.get(key).is_some(), "{key} missing in {cp}");
        }
        assert!(Path::new(cp["file"].as_str().unwrap()).is_absolute());
    }
    assert_eq!(cps[0]["parent"], serde_json::Value::Null);
    // A VHDX file holds one state: no snapshot inside it.
    assert!(cps.iter().all(|cp| cp["snapshot"].is_null()));
    assert_eq!(cps[0]["created"], "2023-11-15T08:13:20Z");
    assert_eq!(cps[4]["parent"], "03_2023-11-15_111320");
}

#[test]
fn siblings_frozen_in_the_same_second_get_their_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB, 512);
    let base = c.base("vm.vhdx", 1 << 20, false, |_| {});
    let x = c.child(base, "vm_X.avhdx", 1 << 20, |_| {});
    let y = c.child(base, "vm_Y.avhdx", 1 << 20, |_| {});
    let _x2 = c.child(x, "vm_X2.avhdx", 1 << 20, |_| {});
    let y2 = c.child(y, "vm_Y2.avhdx", 1 << 20, |_| {});
    for id in c.layers() {
        touch(&c.path(&id), 1_000_000_000);
    }
    touch(&c.path(&y2), 1_000_000_001);
    let tree = CheckpointTree::discover(&c.path(&base), &DiscoverOptions::default()).unwrap();
    let names: Vec<&str> = tree.checkpoints.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"02_2001-09-09_014640_vm_X"), "{names:?}");
    assert!(names.contains(&"02_2001-09-09_014640_vm_Y"), "{names:?}");
    assert!(names.contains(&"03_2001-09-09_014640"), "{names:?}");
    assert!(names.contains(&"03_current"), "{names:?}");
}

#[test]
fn a_parent_elsewhere_is_found_with_search_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (c, ids) = branched(dir.path());
    let moved = tempfile::tempdir().unwrap();
    let base = c.path(&ids[0]);
    std::fs::rename(&base, moved.path().join("vm.vhdx")).unwrap();
    let leaf = c.path(&ids[4]);
    let out = ckptfs(["list", leaf.to_str().unwrap()]).failed();
    assert!(
        out.stderr.contains(r".\vm.vhdx") && out.stderr.contains("--search-dir"),
        "{}",
        out.stderr
    );
    let found = CheckpointTree::discover(
        &leaf,
        &DiscoverOptions {
            search_dirs: vec![moved.path().to_path_buf()],
            ..DiscoverOptions::default()
        },
    )
    .unwrap();
    assert_eq!(found.checkpoints.len(), 5);
}

/// Locators as other tools write them: only an absolute Windows path, upper-case
/// braces, a second linkage, a different letter case in the file name.
#[test]
fn locator_variants_find_their_parent() {
    type Tweak = fn(&mut ParentLink, &str);
    let variants: [(&str, Tweak); 4] = [
        ("only an absolute path", |l, _| {
            l.relative_path = None;
            l.absolute_win32_path = Some(r"\\?\D:\Hyper-V\Virtual Hard Disks\base.vhdx".into());
        }),
        ("volume path, relative path in other case", |l, _| {
            l.relative_path = Some(r".\BASE.VHDX".into());
            l.volume_path = Some(r"\\?\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\x\base.vhdx".into());
        }),
        ("upper-case linkage", |l, _| l.linkage = l.linkage.to_uppercase()),
        ("parent_linkage2", |l, real| {
            l.linkage2 = Some(real.to_string());
            l.linkage = "{00000000-1111-2222-3333-444444444444}".into();
        }),
    ];
    for (what, tweak) in variants {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ChainBuilder::new(dir.path(), 4 * MIB, 512);
        let base = c.base("base.vhdx", 1 << 20, false, |e| e.write(0, &[7u8; 512]));
        let real = braced(c.spec(&base).data_write_guid);
        let child = c.child_with(
            base,
            "child.avhdx",
            1 << 20,
            |_| {},
            |spec| tweak(spec.parent.as_mut().unwrap(), &real),
        );
        let tree = CheckpointTree::discover(&c.path(&child), &DiscoverOptions::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(tree.checkpoints.len(), 2, "{what}");
    }
}

#[test]
fn a_linkage_mismatch_names_both_files_and_guids() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), 4 * MIB, 512);
    let base = c.base("base.vhdx", 1 << 20, false, |_| {});
    let wrong = "{12345678-aaaa-bbbb-cccc-123456789abc}";
    let child = c.child_with(
        base,
        "child.avhdx",
        1 << 20,
        |_| {},
        |spec| spec.parent.as_mut().unwrap().linkage = wrong.into(),
    );
    let actual = braced(c.spec(&base).data_write_guid);
    let out = ckptfs(["list", c.path(&child).to_str().unwrap()]).failed();
    for needle in ["child.avhdx", "base.vhdx", wrong, actual.as_str()] {
        assert!(out.stderr.contains(needle), "missing {needle}: {}", out.stderr);
    }
}

/// Two differencing files that name each other as parent.
#[test]
fn a_cycle_of_parents_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new(4 * MIB, 1 << 20, 512);
    let mut a = VhdxSpec::new(g);
    let mut b = VhdxSpec::new(g);
    a.parent = Some(ParentLink::hyperv(b.data_write_guid, "b.avhdx"));
    b.parent = Some(ParentLink::hyperv(a.data_write_guid, "a.avhdx"));
    write_vhdx(&dir.path().join("a.avhdx"), &a).unwrap();
    write_vhdx(&dir.path().join("b.avhdx"), &b).unwrap();
    let out = ckptfs(["list", dir.path().join("a.avhdx").to_str().unwrap()]).failed();
    assert!(out.stderr.contains("loops back"), "{}", out.stderr);
}

/// A chain deeper than 256 files is refused; 256 is read.
#[test]
fn chain_depth_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), MIB, 512);
    let mut last = c.base("d000.vhdx", 1 << 20, false, |_| {});
    for i in 1..256 {
        last = c.child(last, &format!("d{i:03}.avhdx"), 1 << 20, |_| {});
    }
    let tree = CheckpointTree::discover(&c.path(&last), &DiscoverOptions::default()).unwrap();
    assert_eq!(tree.checkpoints.len(), 256);
    assert!(tree.checkpoints[255].name.starts_with("256_"));
    let deeper = c.child(last, "d256.avhdx", 1 << 20, |_| {});
    let out = ckptfs(["list", c.path(&deeper).to_str().unwrap()]).failed();
    assert!(out.stderr.contains("deeper than 256"), "{}", out.stderr);
}

/// Unrelated disks in the same directory are not taken for children.
#[test]
fn unrelated_disks_beside_the_tree_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (c, ids) = branched(dir.path());
    let mut other = ChainBuilder::new(dir.path(), 4 * MIB, 512);
    let ob = other.base("other.vhdx", 1 << 20, false, |_| {});
    other.child(ob, "other_1.avhdx", 1 << 20, |_| {});
    std::fs::write(dir.path().join("junk.avhdx"), b"not a disk").unwrap();
    let tree = CheckpointTree::discover(&c.path(&ids[1]), &DiscoverOptions::default()).unwrap();
    assert_eq!(tree.checkpoints.len(), 5);
}

/// Files are recognised by content: children renamed without a disk extension are
/// still found, and files that are no disk image are skipped quietly.
#[test]
fn children_are_found_by_content_not_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let (c, ids) = branched(dir.path());
    let renamed = [("vm_B.avhdx", "state-b.bin"), ("vm_D.avhdx", "state-d")];
    for (from, to) in renamed {
        std::fs::rename(dir.path().join(from), dir.path().join(to)).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), b"conectix? no: just text").unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    let tree = CheckpointTree::discover(&c.path(&ids[0]), &DiscoverOptions::default()).unwrap();
    let mut files: Vec<String> = names_by_file(&tree).into_iter().map(|(f, _, _)| f).collect();
    files.sort();
    assert_eq!(files, ["state-b.bin", "state-d", "vm.vhdx", "vm_A.avhdx", "vm_C.avhdx"]);
    // And the renamed leaf is still the current state, read through its parents.
    let d = tree.checkpoints.iter().find(|c| c.current).unwrap();
    assert!(d.path.ends_with("state-d"), "{}", d.path.display());
    assert_eq!(d.depth, 4);
}

/// A file no format recognises: one line that names it and what each format looked for.
#[test]
fn a_file_of_no_known_format_says_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, pseudo_random(7, 1 << 20)).unwrap();
    let out = ckptfs(["list", path.to_str().unwrap()]).failed();
    let err = &out.stderr;
    assert_eq!(err.lines().count(), 1, "{err}");
    for part in [
        "disk.img",
        "not a disk image ckptfs reads",
        "not a VHDX file",
        "not a VHD file",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }
}
