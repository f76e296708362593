//! VMDK files written by qemu-img and qemu-io, writers nobody on this team wrote: every
//! subformat qemu writes (monolithicSparse, monolithicFlat, twoGbMaxExtentSparse,
//! twoGbMaxExtentFlat, streamOptimized), delta chains over each, a guest ext4 read
//! through each, and a disk split over several 2 GiB extents. Every state's bytes
//! equal `qemu-img convert -O raw` of the same file.

mod util;

use std::path::{Path, PathBuf};

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use ckptfs::io::ReadAt;
use util::{assert_same_bytes, ckptfs, have_tool, pseudo_random, run};

const SUBFORMATS: [&str; 5] = [
    "monolithicSparse",
    "monolithicFlat",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
    "streamOptimized",
];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn can_run() -> bool {
    have_tool("qemu-img") && have_tool("qemu-io")
}

/// An 8 MiB raw disk: random stripes with holes, and data in the last sectors.
fn raw_disk(dir: &Path, seed: u64) -> (PathBuf, Vec<u8>) {
    let mut data = vec![0u8; 8 << 20];
    let random = pseudo_random(seed, data.len());
    for (i, chunk) in data.chunks_mut(768 << 10).enumerate() {
        if i % 3 != 1 {
            let start = i * (768 << 10);
            chunk.copy_from_slice(&random[start..start + chunk.len()]);
        }
    }
    let n = data.len();
    data[n - 1536..].copy_from_slice(&random[..1536]);
    let path = dir.join(format!("raw{seed}.img"));
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn to_vmdk(raw: &Path, out: &Path, subformat: &str) {
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={subformat}"),
            s(raw),
            s(out),
        ],
    );
}

/// What qemu-img reads from `vmdk` (its whole chain).
fn qemu_raw(vmdk: &Path) -> Vec<u8> {
    let out = vmdk.with_extension("qemu.raw");
    run("qemu-img", &["convert", "-O", "raw", s(vmdk), s(&out)]);
    let b = std::fs::read(&out).unwrap();
    std::fs::remove_file(out).unwrap();
    b
}

fn list_json(image: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["list", "--json"];
    args.extend_from_slice(extra);
    args.push(s(image));
    serde_json::from_slice(&ckptfs(args).ok().stdout).unwrap()
}

fn checkpoint_files(image: &Path) -> Vec<(String, String)> {
    let v = list_json(image, &[]);
    v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["file"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cat_disk(image: &Path, checkpoint: &str) -> Vec<u8> {
    ckptfs(["cat", s(image), &format!("{checkpoint}/disk.img")]).ok().stdout
}

#[test]
fn every_subformat_reads_as_the_raw_disk() {
    if !can_run() {
        return;
    }
    for sub in SUBFORMATS {
        let dir = tempfile::tempdir().unwrap();
        let (raw, data) = raw_disk(dir.path(), 7);
        let vmdk = dir.path().join("d.vmdk");
        to_vmdk(&raw, &vmdk, sub);
        std::fs::remove_file(&raw).unwrap();
        let files = checkpoint_files(&vmdk);
        assert_eq!(files.len(), 1, "{sub}: only the descriptor is a disk: {files:?}");
        assert_same_bytes(&cat_disk(&vmdk, "01_current"), &data, sub);
        let info: serde_json::Value =
            serde_json::from_slice(&ckptfs(["info", "--json", s(&vmdk)]).ok().stdout).unwrap();
        assert_eq!(info["format"], "vmdk");
        assert_eq!(info["create_type"], sub);
        assert_eq!(info["virtual_size"], 8u64 << 20);
    }
}

/// base ← c1 ← c2 for each base subformat: qemu-io writes into each layer, and every
/// state reads as qemu-img reads that file's chain. The children are hosted sparse
/// (qemu writes deltas as monolithicSparse, or twoGbMaxExtentSparse when asked).
#[test]
fn delta_chains_over_every_subformat() {
    if !can_run() {
        return;
    }
    for (base_sub, child_sub) in [
        ("monolithicSparse", "monolithicSparse"),
        // Zeroed grains (grain table entry 1) must hide the parent's data.
        ("monolithicSparse", "monolithicSparse,zeroed_grain=on"),
        ("monolithicFlat", "twoGbMaxExtentSparse"),
        ("twoGbMaxExtentFlat", "monolithicSparse"),
        ("twoGbMaxExtentSparse", "twoGbMaxExtentSparse"),
        ("streamOptimized", "monolithicSparse"),
    ] {
        let what = format!("{base_sub} ← {child_sub}");
        let dir = tempfile::tempdir().unwrap();
        let (raw, _) = raw_disk(dir.path(), 11);
        let base = dir.path().join("base.vmdk");
        to_vmdk(&raw, &base, base_sub);
        std::fs::remove_file(&raw).unwrap();
        let mut chain = vec![base.clone()];
        for (i, writes) in [
            &["write -P 0x22 512k 1M", "write -z 0 128k"][..],
            &["write -P 0x33 1000k 8k", "write -P 0x44 8380416 8k"][..],
        ]
        .iter()
        .enumerate()
        {
            let child = dir.path().join(format!("c{}.vmdk", i + 1));
            let parent = chain.last().unwrap().clone();
            run(
                "qemu-img",
                &[
                    "create",
                    "-q",
                    "-f",
                    "vmdk",
                    "-o",
                    &format!("subformat={child_sub}"),
                    "-b",
                    parent.file_name().unwrap().to_str().unwrap(),
                    "-F",
                    "vmdk",
                    s(&child),
                ],
            );
            for w in *writes {
                run("qemu-io", &["-f", "vmdk", "-c", w, s(&child)]);
            }
            chain.push(child);
        }
        let leaf = chain.last().unwrap();
        let files = checkpoint_files(leaf);
        let expected: Vec<String> = chain
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap().display().to_string())
            .collect();
        assert_eq!(
            files.iter().map(|f| f.1.clone()).collect::<Vec<_>>(),
            expected,
            "{what}: exactly the descriptors are members, base first"
        );
        for (i, (name, _)) in files.iter().enumerate() {
            let want = qemu_raw(&chain[i]);
            assert_same_bytes(&cat_disk(leaf, name), &want, &format!("{what}: {name}"));
        }
        // Discovery from the base finds the same tree.
        assert_eq!(checkpoint_files(&base).len(), 3, "{what}");
    }
}

/// A parent written after its child was made has a new CID: refused by default with
/// both files and CIDs named, read with a warning under --ignore-parent-mismatch.
#[test]
fn a_changed_parent_is_refused_unless_told_otherwise() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vmdk");
    let child = dir.path().join("child.vmdk");
    run("qemu-img", &["create", "-q", "-f", "vmdk", s(&base), "4M"]);
    run(
        "qemu-img",
        &["create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", s(&child)],
    );
    run("qemu-io", &["-f", "vmdk", "-c", "write -P 0x5a 0 64k", s(&base)]);
    let before = std::fs::read(&child).unwrap();
    let out = ckptfs(["list", s(&child)]).failed();
    let cid = |p: &Path| {
        let v: serde_json::Value = serde_json::from_slice(&ckptfs(["info", "--json", s(p)]).ok().stdout).unwrap();
        (
            v["cid"].as_str().unwrap().to_string(),
            v["parent_cid"].as_str().unwrap().to_string(),
        )
    };
    let (base_cid, _) = cid(&base);
    let (_, expected) = cid(&child);
    assert_ne!(base_cid, expected);
    assert!(
        out.stderr.contains("child.vmdk")
            && out.stderr.contains("base.vmdk")
            && out.stderr.contains(&format!("CID {base_cid}"))
            && out.stderr.contains(&format!("CID {expected}"))
            && out.stderr.contains("--ignore-parent-mismatch")
            && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    let out = ckptfs(["cat", "--ignore-parent-mismatch", s(&child), "02_current/disk.img"]).ok();
    assert!(out.stderr.contains("does not match"), "a warning: {}", out.stderr);
    assert_eq!(
        &out.stdout[..65536],
        &[0x5a; 65536][..],
        "the parent's data shows through"
    );
    assert_eq!(std::fs::read(&child).unwrap(), before, "nothing written");
}

/// A directory holding chains with flat and sparse extent files: discovery opens every
/// file, skips the extents (not disks by themselves) and finds exactly the descriptors.
#[test]
fn extent_files_are_not_members() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = raw_disk(dir.path(), 3);
    let base = dir.path().join("vm.vmdk");
    to_vmdk(&raw, &base, "twoGbMaxExtentFlat");
    std::fs::remove_file(&raw).unwrap();
    let c1 = dir.path().join("vm-000001.vmdk");
    let c2 = dir.path().join("vm-000002.vmdk");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=twoGbMaxExtentSparse",
            "-b",
            "vm.vmdk",
            "-F",
            "vmdk",
            s(&c1),
        ],
    );
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-b",
            "vm-000001.vmdk",
            "-F",
            "vmdk",
            s(&c2),
        ],
    );
    // A second child of the base (a branch), and an unrelated flat disk beside them.
    let c3 = dir.path().join("vm-000003.vmdk");
    run(
        "qemu-img",
        &["create", "-q", "-f", "vmdk", "-b", "vm.vmdk", "-F", "vmdk", s(&c3)],
    );
    let other = dir.path().join("other.vmdk");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
            s(&other),
            "1M",
        ],
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.iter().any(|n| n.contains("-f001"))
            && names.iter().any(|n| n.contains("-s001"))
            && names.iter().any(|n| n.contains("-flat")),
        "{names:?}"
    );
    for start in [&base, &c1, &c2, &c3] {
        let mut files: Vec<String> = checkpoint_files(start).into_iter().map(|f| f.1).collect();
        files.sort();
        let mut want: Vec<String> = [&base, &c1, &c2, &c3]
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap().display().to_string())
            .collect();
        want.sort();
        assert_eq!(files, want, "from {}", start.display());
    }
    // An extent opened alone says what it is.
    let s001 = dir.path().join(names.iter().find(|n| n.contains("-s001")).unwrap());
    let out = ckptfs(["list", s(&s001)]).failed();
    assert!(out.stderr.contains("without a descriptor"), "{}", out.stderr);
}

/// A 3 GiB disk: two extents of twoGbMaxExtent*, data across the 2 GiB boundary and at
/// the very end, read through the library at those places.
#[test]
fn several_2gib_extents() {
    if !can_run() {
        return;
    }
    let size: u64 = 3 << 30;
    let places: [(u64, usize); 4] = [
        (0, 65536),
        ((2 << 30) - 4096, 8192),
        ((2 << 30) + (1 << 20), 512),
        (size - 4096, 4096),
    ];
    for sub in [
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
        "monolithicSparse",
        "streamOptimized",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("big.raw");
        let f = std::fs::File::create(&raw).unwrap();
        f.set_len(size).unwrap();
        let mut want = Vec::new();
        for (i, (at, len)) in places.iter().enumerate() {
            let b = pseudo_random(100 + i as u64, *len);
            std::os::unix::fs::FileExt::write_all_at(&f, &b, *at).unwrap();
            want.push(b);
        }
        drop(f);
        let vmdk = dir.path().join("big.vmdk");
        to_vmdk(&raw, &vmdk, sub);
        std::fs::remove_file(&raw).unwrap();
        let tree = CheckpointTree::discover(&vmdk, &DiscoverOptions::default()).unwrap();
        let disk = tree.disk(0);
        assert_eq!(disk.size(), size, "{sub}");
        for ((at, len), b) in places.iter().zip(&want) {
            let mut got = vec![0u8; *len];
            disk.read_at(*at, &mut got).unwrap();
            assert_same_bytes(&got, b, &format!("{sub} at {at:#x}"));
        }
        let mut hole = vec![1u8; 4096];
        disk.read_at(1 << 30, &mut hole).unwrap();
        assert!(hole.iter().all(|&b| b == 0), "{sub}: a hole reads as zeros");
        // What the mount splices: pieces of the extent files (across the 2 GiB extent
        // boundary too), or, for compressed grains, nothing (read and copied instead).
        let (at, len) = places[1];
        let mut pieces = Vec::new();
        let plain = disk.pieces(at, len as u64, &mut pieces).unwrap();
        assert_eq!(plain, sub != "streamOptimized", "{sub}");
        if plain {
            let mut got = Vec::new();
            for p in &pieces {
                match p {
                    ckptfs::io::Piece::File { file, offset, len } => {
                        let mut b = vec![0u8; *len as usize];
                        file.read_exact_at(*offset, &mut b).unwrap();
                        got.extend(b);
                    }
                    ckptfs::io::Piece::Zero { len } => got.extend(vec![0u8; *len as usize]),
                }
            }
            assert_same_bytes(&got, &want[1], &format!("{sub}: spliced pieces"));
            if sub == "twoGbMaxExtentFlat" {
                assert!(pieces.len() >= 2, "two extent files: {pieces:?}");
            }
        }
    }
}

/// A guest ext4 (made by mkfs.ext4 -d from a directory) converted to every subformat:
/// `ls` and `cat` through ckptfs give back the files.
#[test]
fn guest_ext4_through_every_subformat() {
    if !can_run() || !have_tool("mkfs.ext4") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("docs/deep")).unwrap();
    let big = pseudo_random(9, 3 << 20);
    std::fs::write(tree.join("docs/big.bin"), &big).unwrap();
    std::fs::write(tree.join("docs/deep/note.txt"), b"hello from a vmdk\n").unwrap();
    let raw = dir.path().join("fs.raw");
    std::fs::File::create(&raw).unwrap().set_len(32 << 20).unwrap();
    run("mkfs.ext4", &["-q", "-F", "-L", "guest", "-d", s(&tree), s(&raw)]);
    for sub in SUBFORMATS {
        let d = dir.path().join(sub);
        std::fs::create_dir(&d).unwrap();
        let vmdk = d.join("g.vmdk");
        to_vmdk(&raw, &vmdk, sub);
        let ls = ckptfs(["ls", "-R", s(&vmdk), "01_current/volume_guest"])
            .ok()
            .stdout_str();
        assert!(ls.contains("note.txt") && ls.contains("big.bin"), "{sub}: {ls}");
        let got = ckptfs(["cat", s(&vmdk), "01_current/volume_guest/docs/big.bin"])
            .ok()
            .stdout;
        assert_same_bytes(&got, &big, sub);
        let note = ckptfs(["cat", s(&vmdk), "01_current/volume_guest/docs/deep/note.txt"])
            .ok()
            .stdout;
        assert_eq!(note, b"hello from a vmdk\n", "{sub}");
    }
}

/// A 62 TB monolithicSparse disk (VMFS's largest) opens at once: nothing is read in
/// proportion to its size, and its last sectors read back.
#[test]
fn a_62_tb_sparse_disk_opens_at_once() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.vmdk");
    let size: u64 = 62 << 40;
    run("qemu-img", &["create", "-q", "-f", "vmdk", s(&p), "62T"]);
    run(
        "qemu-io",
        &["-f", "vmdk", "-c", &format!("write -P 0x62 {} 4k", size - 4096), s(&p)],
    );
    let t = std::time::Instant::now();
    let tree = CheckpointTree::discover(&p, &DiscoverOptions::default()).unwrap();
    let disk = tree.disk(0);
    let mut b = vec![0u8; 8192];
    disk.read_at(size - 8192, &mut b).unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(disk.size(), size);
    assert!(b[..4096].iter().all(|&x| x == 0) && b[4096..].iter().all(|&x| x == 0x62));
}

/// parentFileNameHint as ESXi, Windows and a moved folder write it: each finds the
/// parent by its file name beside the child, or in --search-dir.
#[test]
fn parent_hints_of_every_form() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vmdk");
    let child = dir.path().join("child.vmdk");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
            s(&base),
            "2M",
        ],
    );
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=twoGbMaxExtentSparse",
            "-b",
            "base.vmdk",
            "-F",
            "vmdk",
            s(&child),
        ],
    );
    run("qemu-io", &["-f", "vmdk", "-c", "write -P 0x3c 4k 4k", s(&child)]);
    let text = std::fs::read_to_string(&child).unwrap();
    assert!(text.contains("parentFileNameHint=\"base.vmdk\""), "{text}");
    for hint in [
        "/vmfs/volumes/datastore1/vm/base.vmdk",
        r"C:\Users\me\Virtual Machines\vm\base.vmdk",
        r"..\other\BASE.vmdk",
    ] {
        std::fs::write(
            &child,
            text.replace(
                "parentFileNameHint=\"base.vmdk\"",
                &format!("parentFileNameHint=\"{hint}\""),
            ),
        )
        .unwrap();
        let files = checkpoint_files(&child);
        assert_eq!(files.len(), 2, "{hint}");
        let disk = cat_disk(&child, &files[1].0);
        assert!(disk[4096..8192].iter().all(|&b| b == 0x3c), "{hint}");
    }
    // The parent moved away: found with --search-dir.
    let elsewhere = tempfile::tempdir().unwrap();
    for f in ["base.vmdk", "base-flat.vmdk"] {
        std::fs::rename(dir.path().join(f), elsewhere.path().join(f)).unwrap();
    }
    let out = ckptfs(["list", s(&child)]).failed();
    assert!(
        out.stderr.contains("parent not found") && out.stderr.contains("--search-dir"),
        "{}",
        out.stderr
    );
    let v = list_json(&child, &["--search-dir", s(elsewhere.path())]);
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 2);
}

/// A disk of 300 extent files opens under a soft limit of 64 open files: ckptfs raises
/// its soft limit to the hard one (an extent file stays open while the disk is).
#[test]
fn many_extent_files_need_no_ulimit() {
    let hard = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    if hard != "unlimited" && hard.parse::<u64>().is_ok_and(|n| n < 512) {
        util::skip(format!("the hard open-file limit is {hard}"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut desc = String::from(
        "# Disk DescriptorFile\nversion=1\nCID=00000300\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\n",
    );
    for i in 0..300u32 {
        let name = format!("many-f{i:03}.vmdk");
        std::fs::write(dir.path().join(&name), [i as u8; 512]).unwrap();
        desc += &format!("RW 1 FLAT \"{name}\" 0\n");
    }
    let p = dir.path().join("many.vmdk");
    std::fs::write(&p, desc).unwrap();
    let script = format!(
        "ulimit -Sn 64 && '{}' cat '{}' 01_current/disk.img",
        env!("CARGO_BIN_EXE_ckptfs"),
        p.display()
    );
    let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<u8> = (0..300u32).flat_map(|i| [i as u8; 512]).collect();
    assert_same_bytes(&out.stdout, &want, "300 extents");
}
