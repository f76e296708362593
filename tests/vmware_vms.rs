//! Whole VMware VMs: `ckptfs list/ls/cat/mount VM` where VM is a `.vmx`, its `.vmsd`
//! or its folder. Each snapshot shows under the name the admin gave (with its time, so
//! `ls` sorts by it), the running state as `current`, one directory per disk; each
//! disk of each snapshot is the state of the file the `.vmsd` says was frozen.
//!
//! The configurations come from tests/support/vmware_config.rs. The disks are, first,
//! the demo VHDX chain in images/ (the VM layer does not care which format a disk file
//! has), then VMDK delta chains that qemu-img writes, whose every state is compared
//! with the raw disk it was made from.

mod support;
mod util;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::vmware_config::{create_time_halves, DiskEntry, Snapshot, VmConfig};
use util::{assert_same_bytes, ckptfs, have_tool};

const BASE: &str = "Win11.vhdx";
const MIDDLE: &str = "Win11_8DF296B1-483C-4639-9461-9AE1D1BF6749.avhdx";
const NEWEST: &str = "Win11_F070DA7E-04A5-4E6A-BB51-CEDCDF74C8E0.avhdx";

/// 2026-11-20T10:15:03Z and 2026-11-21T09:00:12Z (`date -u -d ... +%s`).
const T1: i64 = 1_795_169_703;
const T2: i64 = 1_795_251_612;
const NAME1: &str = "2026-11-20_101503 Fresh install";
const NAME2: &str = "2026-11-21_090012 Before upgrade";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn can_run() -> bool {
    if have_tool("tar") {
        return true;
    }
    util::skip("needs tar");
    false
}

/// The demo chain (base ← middle ← newest) in a temporary directory.
fn demo_chain() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/demo.tar.gz");
    util::run("tar", &["-xzf", s(&tarball), "-C", s(dir.path())]);
    dir
}

/// The VM every test starts from: two snapshots and the running state on one disk,
/// a CD-ROM that is not a disk.
fn demo_vm() -> VmConfig {
    let mut vm = VmConfig::new("Win11 lab");
    vm.running = vec![DiskEntry::new("scsi0:0", NEWEST)];
    vm.cdrom = Some(("sata0:1".into(), r"C:\iso\Win11_23H2.iso".into()));
    vm.snapshots = vec![
        Snapshot {
            slot: 0,
            uid: 1,
            parent: None,
            name: "Fresh install".into(),
            description: None,
            created_unix: Some(T1),
            disks: vec![DiskEntry::new("scsi0:0", BASE)],
        },
        Snapshot {
            slot: 1,
            uid: 2,
            parent: Some(1),
            name: "Before upgrade".into(),
            description: Some("KB5031455 \"pending\"\nsecond line".into()),
            created_unix: Some(T2),
            disks: vec![DiskEntry::new("scsi0:0", MIDDLE)],
        },
    ];
    vm.current = Some(2);
    vm
}

fn list_json(target: &[&str]) -> Value {
    let mut args = vec!["list", "--json"];
    args.extend(target);
    serde_json::from_slice(&ckptfs(&args).ok().stdout).unwrap()
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

/// The disk tree's own checkpoint name for `file` (`list --json` of the disk file).
fn disk_mode_name(disk_file: &Path, file: &Path) -> String {
    let listed = list_json(&[s(disk_file)]);
    let want = canonical(file);
    listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == want.as_str())
        .unwrap_or_else(|| panic!("{want} not in {listed}"))["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn snapshots_show_under_their_names_with_the_disk_each_froze() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    demo_vm().write(dir.path(), "Win11");
    let v = list_json(&[s(&dir.path().join("Win11.vmx"))]);
    assert_eq!(v["vm"]["name"], "Win11 lab");
    assert_eq!(v["vm"]["hypervisor"], "vmware");
    assert_eq!(v["vm"]["config"], canonical(&dir.path().join("Win11.vmx")).as_str());
    let cps = v["checkpoints"].as_array().unwrap();
    let names: Vec<&str> = cps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, [NAME1, NAME2, "current"]);
    let titles: Vec<&str> = cps.iter().map(|c| c["title"].as_str().unwrap()).collect();
    assert_eq!(titles[..2], ["Fresh install", "Before upgrade"]);
    assert_eq!(cps[0]["created"], "2026-11-20T10:15:03Z");
    assert_eq!(cps[1]["created"], "2026-11-21T09:00:12Z");
    assert_eq!(cps[1]["description"], "KB5031455 \"pending\"\nsecond line");
    assert_eq!(cps[0]["parent"], Value::Null);
    assert_eq!(cps[1]["parent"], NAME1);
    assert_eq!(cps[2]["parent"], NAME2, "the running state builds on snapshot.current");
    let current: Vec<bool> = cps.iter().map(|c| c["current"].as_bool().unwrap()).collect();
    assert_eq!(current, [false, false, true]);
    for (c, file) in cps.iter().zip([BASE, MIDDLE, NEWEST]) {
        let disks = c["disks"].as_array().unwrap();
        assert_eq!(disks.len(), 1, "the CD-ROM is not a disk: {c}");
        assert_eq!(disks[0]["dir"], "Win11");
        assert_eq!(disks[0]["location"], "scsi0:0");
        assert_eq!(disks[0]["file"], canonical(&dir.path().join(file)).as_str());
        assert_eq!(disks[0]["snapshot"], Value::Null);
        let vols: Vec<&str> = disks[0]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["dir"].as_str().unwrap())
            .collect();
        assert_eq!(vols, ["p1_SYSTEM", "p3_Windows"]);
    }
    // The .vmsd and the folder open the same VM.
    for other in [dir.path().join("Win11.vmsd"), dir.path().to_path_buf()] {
        assert_eq!(list_json(&[s(&other)]), v, "{}", other.display());
    }
}

#[test]
fn each_snapshot_reads_the_state_of_the_file_it_froze() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    demo_vm().write(dir.path(), "Win11");
    let vmx = dir.path().join("Win11.vmx");
    let newest = dir.path().join(NEWEST);
    for (name, file) in [(NAME1, BASE), (NAME2, MIDDLE), ("current", NEWEST)] {
        let own = disk_mode_name(&newest, &dir.path().join(file));
        let vm_disk = ckptfs(["cat", s(&vmx), &format!("{name}/Win11/disk.img")]).ok().stdout;
        let tree_disk = ckptfs(["cat", s(&newest), &format!("{own}/disk.img")]).ok().stdout;
        assert_same_bytes(&vm_disk, &tree_disk, name);
        let vm_ls = ckptfs(["ls", "-R", "-l", s(&vmx), &format!("{name}/Win11/p3_Windows")]).ok();
        let tree_ls = ckptfs(["ls", "-R", "-l", s(&newest), &format!("{own}/p3_Windows")]).ok();
        assert_eq!(
            vm_ls.stdout_str().replace(&format!("{name}/Win11/"), ""),
            tree_ls.stdout_str().replace(&format!("{own}/"), ""),
            "{name}"
        );
    }
    // Top levels: checkpoints, then disks.
    let top = ckptfs(["ls", s(&vmx)]).ok().stdout_str();
    assert_eq!(top.lines().collect::<Vec<_>>(), [NAME1, NAME2, "current"]);
    let disks = ckptfs(["ls", s(&vmx), NAME1]).ok().stdout_str();
    assert_eq!(disks.lines().collect::<Vec<_>>(), ["Win11"]);
}

#[test]
fn a_disk_whose_file_is_missing_or_foreign_fails_alone() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    // A file of another VM: the no-table image's base.
    let other = tempfile::tempdir().unwrap();
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/no-table.tar.gz");
    util::run("tar", &["-xzf", s(&tarball), "-C", s(other.path())]);
    let foreign = other.path().join("no-table.vhdx");
    assert!(foreign.is_file());

    let mut vm = demo_vm();
    vm.snapshots[0].disks = vec![DiskEntry::new("scsi0:0", "Win11-gone.vmdk")];
    vm.snapshots[1].disks = vec![DiskEntry::new("scsi0:0", s(&foreign))];
    vm.write(dir.path(), "Win11");
    let vmx = dir.path().join("Win11.vmx");
    let before = hashes(&[dir.path(), other.path()]);

    let v = list_json(&[s(&vmx)]);
    let cps = v["checkpoints"].as_array().unwrap();
    let missing = cps[0]["disks"][0]["error"].as_str().unwrap();
    assert!(
        missing.contains("Win11-gone.vmdk") && missing.contains("does not exist"),
        "{missing}"
    );
    let foreign_err = cps[1]["disks"][0]["error"].as_str().unwrap();
    assert!(
        foreign_err.contains("not in the chain of disk scsi0:0") && foreign_err.contains("no-table.vhdx"),
        "{foreign_err}"
    );
    assert!(cps[2]["disks"][0].get("error").is_none(), "{}", cps[2]);

    // Reading the broken disks fails in one line; the running state reads.
    for name in [NAME1, NAME2] {
        let out = ckptfs(["ls", s(&vmx), &format!("{name}/Win11")]).failed();
        assert!(out.stderr.lines().count() == 1, "{}", out.stderr);
    }
    ckptfs(["ls", s(&vmx), "current/Win11/p3_Windows"]).ok();
    assert_eq!(hashes(&[dir.path(), other.path()]), before, "nothing is written");
}

#[test]
fn broken_snapshot_lists_are_refused_in_one_line_naming_the_file() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    let vmsd = dir.path().join("Win11.vmsd");
    type Damage = Box<dyn Fn(&mut VmConfig)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "unknown parent",
            Box::new(|vm| vm.snapshots[1].parent = Some(9)),
            "parent uid 9",
        ),
        (
            "loop",
            Box::new(|vm| vm.snapshots[0].parent = Some(2)),
            "lead back to itself",
        ),
        (
            "unknown current",
            Box::new(|vm| vm.current = Some(7)),
            "snapshot.current is uid 7",
        ),
        (
            "repeated uid",
            Box::new(|vm| vm.snapshots[1].uid = 1),
            "as an earlier snapshot",
        ),
    ];
    for (what, change, expect) in cases {
        let mut vm = demo_vm();
        change(&mut vm);
        vm.write(dir.path(), "Win11");
        let out = ckptfs(["list", s(&dir.path().join("Win11.vmx"))]).failed();
        assert!(out.stderr.contains(expect), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(s(&vmsd)), "{what}: names the file: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
    }
    // A line that is not `key = "value"`.
    demo_vm().write(dir.path(), "Win11");
    let mut text = std::fs::read_to_string(&vmsd).unwrap();
    text.push_str("snapshot1.displayName = \"unterminated\n");
    std::fs::write(&vmsd, text).unwrap();
    let out = ckptfs(["list", s(&dir.path().join("Win11.vmx"))]).failed();
    assert!(
        out.stderr.contains("closing quote") && out.stderr.contains("line "),
        "{}",
        out.stderr
    );
}

#[test]
fn a_folder_with_several_vms_needs_vm_to_pick_one() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    demo_vm().write(dir.path(), "Win11");
    let mut clone = demo_vm();
    clone.display_name = "Win11 clone".into();
    clone.snapshots.clear();
    clone.current = None;
    clone.write(dir.path(), "Win11-clone");

    let out = ckptfs(["list", s(dir.path())]).failed();
    assert!(
        out.stderr.contains("--vm") && out.stderr.contains("\"Win11 lab\"") && out.stderr.contains("\"Win11 clone\""),
        "{}",
        out.stderr
    );
    let v = list_json(&[s(dir.path()), "--vm", "Win11 clone"]);
    assert_eq!(v["vm"]["name"], "Win11 clone");
    let names: Vec<&str> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["current"], "a VM without snapshots shows its running state");
    // By file name too.
    let v = list_json(&[s(dir.path()), "--vm", "Win11.vmx"]);
    assert_eq!(v["vm"]["name"], "Win11 lab");
    let out = ckptfs(["list", s(dir.path()), "--vm", "nope"]).failed();
    assert!(out.stderr.contains("no VM named \"nope\""), "{}", out.stderr);
    // A folder without a VM.
    let empty = tempfile::tempdir().unwrap();
    let out = ckptfs(["list", s(empty.path())]).failed();
    assert!(out.stderr.contains("no VM configuration"), "{}", out.stderr);
}

#[test]
fn disks_are_named_by_their_base_file_and_independent_disks_only_show_where_listed() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    // A second disk: a copy of the demo base in a subfolder, so its stem clashes.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy(dir.path().join(BASE), dir.path().join("data").join(BASE)).unwrap();
    let mut vm = demo_vm();
    vm.running.push(DiskEntry::new("scsi0:1", "data/Win11.vhdx"));
    vm.independent.push("scsi0:1".into());
    vm.write(dir.path(), "Win11");
    let v = list_json(&[s(&dir.path().join("Win11.vmx"))]);
    let cps = v["checkpoints"].as_array().unwrap();
    let dirs = |c: &Value| -> Vec<String> {
        c["disks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dir"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(dirs(&cps[0]), ["Win11 (scsi0-0)"]);
    assert_eq!(dirs(&cps[2]), ["Win11 (scsi0-0)", "Win11 (scsi0-1)"]);
    assert_eq!(
        cps[2]["disks"][1]["file"],
        canonical(&dir.path().join("data").join(BASE)).as_str()
    );
    let top = ckptfs(["ls", s(&dir.path().join("Win11.vmx")), "current"])
        .ok()
        .stdout_str();
    assert_eq!(top.lines().collect::<Vec<_>>(), ["Win11 (scsi0-0)", "Win11 (scsi0-1)"]);
}

#[test]
fn windows_1252_configurations_keep_their_names() {
    if !can_run() {
        return;
    }
    let dir = demo_chain();
    let mut vm = demo_vm();
    vm.encoding = "windows-1252".into();
    vm.display_name = "Büro-PC €".into();
    vm.snapshots[0].name = "Vor dem Update (Größe)".into();
    vm.write(dir.path(), "Win11");
    assert!(std::str::from_utf8(&std::fs::read(dir.path().join("Win11.vmsd")).unwrap()).is_err());
    let v = list_json(&[s(&dir.path().join("Win11.vmx"))]);
    assert_eq!(v["vm"]["name"], "Büro-PC €");
    assert_eq!(v["checkpoints"][0]["title"], "Vor dem Update (Größe)");
    assert_eq!(v["checkpoints"][0]["name"], "2026-11-20_101503 Vor dem Update (Größe)");
}

#[test]
fn the_mount_shows_checkpoint_disk_volume() {
    if !can_run() || !util::can_fuse_mount() {
        return;
    }
    let dir = demo_chain();
    let mut vm = demo_vm();
    vm.snapshots[0].disks = vec![DiskEntry::new("scsi0:0", "Win11-gone.vmdk")];
    vm.write(dir.path(), "Win11");
    let vmx = dir.path().join("Win11.vmx");
    let mnt = tempfile::tempdir().unwrap();
    ckptfs(["mount", s(&vmx), s(mnt.path())]).ok();
    let result = std::panic::catch_unwind(|| {
        let mut top: Vec<String> = std::fs::read_dir(mnt.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, [NAME1, NAME2, "current"]);
        let disk = mnt.path().join(NAME2).join("Win11");
        let img = std::fs::read(disk.join("disk.img")).unwrap();
        let cli = ckptfs(["cat", s(&vmx), &format!("{NAME2}/Win11/disk.img")]).ok().stdout;
        assert_same_bytes(&img, &cli, "disk.img through the mount");
        assert!(disk.join("p3_Windows").join("Windows").is_dir());
        // The snapshot whose file is missing: its disk directory fails with EIO.
        let broken = std::fs::read_dir(mnt.path().join(NAME1).join("Win11"));
        assert_eq!(broken.err().and_then(|e| e.raw_os_error()), Some(libc::EIO));
    });
    ckptfs(["umount", s(mnt.path())]).ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Content hashes and modification times of every file under `dirs`.
fn hashes(dirs: &[&Path]) -> Vec<(PathBuf, String, std::time::SystemTime)> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    for d in dirs {
        let mut entries: Vec<PathBuf> = walk(d);
        entries.sort();
        for p in entries {
            let bytes = std::fs::read(&p).unwrap();
            let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
            out.push((p, format!("{:x}", Sha256::digest(&bytes)), mtime));
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// VMDK delta chains written by qemu, as VMware lays them out.
// ---------------------------------------------------------------------------------

/// Grain size of qemu's hosted sparse extents: deltas hold whole 64 KiB grains.
const GRAIN: usize = 64 << 10;

/// Run `cmd` in `dir`, failing the test with its stderr if it fails.
fn run_in(dir: &Path, cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write `raw` as a base VMDK `name` (qemu subformat `subformat`).
fn qemu_base(dir: &Path, name: &str, raw: &[u8], subformat: &str) {
    let raw_path = dir.join(format!("{name}.raw-input"));
    std::fs::write(&raw_path, raw).unwrap();
    let opt = format!("subformat={subformat}");
    run_in(
        dir,
        "qemu-img",
        &["convert", "-f", "raw", "-O", "vmdk", "-o", &opt, s(&raw_path), name],
    );
    std::fs::remove_file(raw_path).unwrap();
}

/// A delta `name` on `parent` holding exactly the grains where `raw` differs from
/// `parent_raw`, written through qemu as a running VM would write them.
fn qemu_delta(dir: &Path, name: &str, parent: &str, parent_raw: &[u8], raw: &[u8], subformat: &str) {
    let opt = format!("subformat={subformat}");
    run_in(
        dir,
        "qemu-img",
        &[
            "create", "-q", "-f", "vmdk", "-o", &opt, "-b", parent, "-F", "vmdk", name,
        ],
    );
    let mut commands: Vec<String> = Vec::new();
    let chunks = tempfile::tempdir().unwrap();
    for (i, (new, old)) in raw.chunks(GRAIN).zip(parent_raw.chunks(GRAIN)).enumerate() {
        if new != old {
            let chunk = chunks.path().join(format!("{i}"));
            std::fs::write(&chunk, new).unwrap();
            commands.push(format!("write -q -s {} {} {}", s(&chunk), i * GRAIN, new.len()));
        }
    }
    assert!(!commands.is_empty(), "{name}: a delta with no change tests nothing");
    let mut args = vec!["-f", "vmdk"];
    for c in &commands {
        args.extend(["-c", c.as_str()]);
    }
    args.push(name);
    run_in(dir, "qemu-io", &args);
}

/// Guest files of one state: path under the volume root → contents.
type Files = Vec<(&'static str, Vec<u8>)>;

/// An ext4 volume (no partition table) of `size` bytes holding `files`, made the way a
/// guest changes its disk: `base` files by mkfs, the rest written into a copy of the
/// parent's raw by debugfs, so that a state differs from its parent in a few blocks.
fn ext4_state(work: &Path, parent: Option<&[u8]>, files: &Files, size: usize) -> Vec<u8> {
    let img = work.join("state.ext4");
    let src = work.join("src");
    match parent {
        None => {
            let _ = std::fs::remove_dir_all(&src);
            for (path, data) in files {
                let p = src.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
            let _ = std::fs::remove_file(&img);
            let size_arg = format!("{}k", size / 1024);
            util::run(
                "mkfs.ext4",
                &[
                    "-q",
                    "-F",
                    "-L",
                    "Win11",
                    "-b",
                    "4096",
                    "-d",
                    s(&src),
                    s(&img),
                    &size_arg,
                ],
            );
        }
        Some(raw) => {
            std::fs::write(&img, raw).unwrap();
            let mut cmds = String::new();
            for (i, (path, data)) in files.iter().enumerate() {
                let host = work.join(format!("file{i}"));
                std::fs::write(&host, data).unwrap();
                // `rm` first: debugfs `write` does not replace an existing file.
                cmds.push_str(&format!("rm /{path}\nwrite {} /{path}\n", s(&host)));
            }
            let cmd_file = work.join("debugfs.cmds");
            std::fs::write(&cmd_file, cmds).unwrap();
            util::run("debugfs", &["-w", "-f", s(&cmd_file), s(&img)]);
        }
    }
    let out = std::fs::read(&img).unwrap();
    assert_eq!(out.len(), size);
    out
}

/// One state of a VMDK VM: its checkpoint directory, and per disk the raw bytes and
/// (for the system disk) the guest files it must show.
struct VmdkState {
    dir_name: String,
    system: Vec<u8>,
    files: Files,
    data: Vec<u8>,
}

/// 2026-11-20T10:15:03Z + n days.
fn day(n: i64) -> i64 {
    T1 + n * 86_400
}

/// A VMware VM on two VMDK disks as Workstation leaves it after this history:
///
/// 1. snapshot "Before upgrade" (uid 1) freezes `Win11.vmdk` and `data.vmdk`;
/// 2. snapshot uid 2 is taken, then deleted: its delta (`-000001`) was merged away;
/// 3. snapshot "Patched" (uid 3) freezes `Win11-000002.vmdk` / `data-000002.vmdk`;
/// 4. the admin reverts to "Before upgrade" and works on: new deltas `-000003`;
/// 5. snapshot "Branch test" (uid 4) freezes them; the VM runs on `-000004`.
///
/// So the tree branches at "Before upgrade", the `.vmsd` has a gap in its uids, and
/// both disks have the same shape in different qemu subformats.
fn vmdk_vm(dir: &Path) -> Vec<VmdkState> {
    let work = tempfile::tempdir().unwrap();
    let size = 24 << 20;
    let data_size = 6 << 20;
    let report = |v: &str| format!("Quarterly report, {v}\n").repeat(300).into_bytes();
    let base_files: Files = vec![
        ("Users/alice/report.txt", report("draft")),
        ("Users/alice/notes.txt", b"call Bob\n".to_vec()),
        ("Windows/System32/config.ini", b"[boot]\nversion=1\n".to_vec()),
    ];
    let a = ext4_state(work.path(), None, &base_files, size);
    let patched: Files = vec![
        ("Users/alice/report.txt", report("final")),
        ("Windows/System32/config.ini", b"[boot]\nversion=2\n".to_vec()),
    ];
    let b = ext4_state(work.path(), Some(&a), &patched, size);
    let branch: Files = vec![("Users/alice/notes.txt", b"call Bob\nbranch: try the beta\n".to_vec())];
    let d = ext4_state(work.path(), Some(&a), &branch, size);
    let running: Files = vec![("Users/alice/report.txt", report("rewritten on the branch"))];
    let e = ext4_state(work.path(), Some(&d), &running, size);

    // The data disk: pseudo-random bytes, changed in a few places per state.
    let data_a = util::pseudo_random(10, data_size);
    let change = |from: &[u8], seed: u64, at: &[usize]| {
        let mut out = from.to_vec();
        for &off in at {
            out[off..off + 5000].copy_from_slice(&util::pseudo_random(seed + off as u64, 5000));
        }
        out
    };
    let data_b = change(&data_a, 20, &[0, 3 << 20]);
    let data_d = change(&data_a, 30, &[70_000, data_size - 5000]);
    let data_e = change(&data_d, 40, &[1 << 20]);

    qemu_base(dir, "Win11.vmdk", &a, "monolithicSparse");
    qemu_delta(dir, "Win11-000002.vmdk", "Win11.vmdk", &a, &b, "monolithicSparse");
    qemu_delta(dir, "Win11-000003.vmdk", "Win11.vmdk", &a, &d, "monolithicSparse");
    qemu_delta(
        dir,
        "Win11-000004.vmdk",
        "Win11-000003.vmdk",
        &d,
        &e,
        "monolithicSparse",
    );
    qemu_base(dir, "data.vmdk", &data_a, "twoGbMaxExtentSparse");
    qemu_delta(
        dir,
        "data-000002.vmdk",
        "data.vmdk",
        &data_a,
        &data_b,
        "twoGbMaxExtentSparse",
    );
    qemu_delta(
        dir,
        "data-000003.vmdk",
        "data.vmdk",
        &data_a,
        &data_d,
        "twoGbMaxExtentSparse",
    );
    qemu_delta(
        dir,
        "data-000004.vmdk",
        "data-000003.vmdk",
        &data_d,
        &data_e,
        "twoGbMaxExtentSparse",
    );

    let disks = |n: &str| {
        let sys = if n.is_empty() {
            "Win11.vmdk".to_string()
        } else {
            format!("Win11-{n}.vmdk")
        };
        let data = if n.is_empty() {
            "data.vmdk".to_string()
        } else {
            format!("data-{n}.vmdk")
        };
        vec![DiskEntry::new("scsi0:0", &sys), DiskEntry::new("scsi0:1", &data)]
    };
    let snapshot = |slot, uid, parent, name: &str, t, n: &str| Snapshot {
        slot,
        uid,
        parent,
        name: name.into(),
        description: None,
        created_unix: Some(t),
        disks: disks(n),
    };
    let mut vm = VmConfig::new("Win11 on VMDK");
    vm.running = disks("000004");
    vm.snapshots = vec![
        snapshot(0, 1, None, "Before upgrade", day(0), ""),
        snapshot(1, 3, Some(1), "Patched", day(2), "000002"),
        snapshot(2, 4, Some(1), "Branch test", day(3), "000003"),
    ];
    vm.current = Some(4);
    vm.write(dir, "Win11");

    let merged = |base: &Files, over: &Files| -> Files {
        let mut out = base.clone();
        for (p, d) in over {
            out.retain(|(q, _)| q != p);
            out.push((*p, d.clone()));
        }
        out
    };
    let files_b = merged(&base_files, &patched);
    let files_d = merged(&base_files, &branch);
    let files_e = merged(&files_d, &running);
    vec![
        VmdkState {
            dir_name: "2026-11-20_101503 Before upgrade".into(),
            system: a,
            files: base_files,
            data: data_a,
        },
        VmdkState {
            dir_name: "2026-11-22_101503 Patched".into(),
            system: b,
            files: files_b,
            data: data_b,
        },
        VmdkState {
            dir_name: "2026-11-23_101503 Branch test".into(),
            system: d,
            files: files_d,
            data: data_d,
        },
        VmdkState {
            dir_name: "current".into(),
            system: e,
            files: files_e,
            data: data_e,
        },
    ]
}

fn can_make_vmdk() -> bool {
    for tool in ["qemu-img", "qemu-io", "mkfs.ext4", "debugfs"] {
        if !have_tool(tool) {
            util::skip(format!("needs {tool}"));
            return false;
        }
    }
    true
}

#[test]
fn a_vmdk_vm_shows_every_snapshot_of_every_disk_as_the_guest_wrote_it() {
    if !can_make_vmdk() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let states = vmdk_vm(dir.path());
    let vmx = dir.path().join("Win11.vmx");
    let before = hashes(&[dir.path()]);

    let v = list_json(&[s(&vmx)]);
    let cps = v["checkpoints"].as_array().unwrap();
    let names: Vec<&str> = cps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let want: Vec<&str> = states.iter().map(|st| st.dir_name.as_str()).collect();
    assert_eq!(names, want, "a tree in creation order, the running state last");
    let parents: Vec<&Value> = cps.iter().map(|c| &c["parent"]).collect();
    assert_eq!(
        parents,
        [
            &Value::Null,
            &Value::from(want[0]),
            &Value::from(want[0]),
            &Value::from(want[2])
        ],
        "Patched and Branch test both build on Before upgrade (uid 2 was deleted)"
    );
    let files: Vec<Vec<String>> = cps
        .iter()
        .map(|c| {
            c["disks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    assert!(d.get("error").is_none(), "{d}");
                    Path::new(d["file"].as_str().unwrap())
                        .file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        })
        .collect();
    assert_eq!(
        files,
        [
            ["Win11.vmdk", "data.vmdk"],
            ["Win11-000002.vmdk", "data-000002.vmdk"],
            ["Win11-000003.vmdk", "data-000003.vmdk"],
            ["Win11-000004.vmdk", "data-000004.vmdk"],
        ]
    );

    for st in &states {
        let name = &st.dir_name;
        let system = ckptfs(["cat", s(&vmx), &format!("{name}/Win11/disk.img")]).ok().stdout;
        assert_same_bytes(&system, &st.system, &format!("{name}/Win11/disk.img"));
        let data = ckptfs(["cat", s(&vmx), &format!("{name}/data/disk.img")]).ok().stdout;
        assert_same_bytes(&data, &st.data, &format!("{name}/data/disk.img"));
        // Every guest file, as the guest wrote it, and no other.
        let listed = ckptfs(["ls", "-R", s(&vmx), &format!("{name}/Win11/volume_Win11")])
            .ok()
            .stdout_str();
        for (path, contents) in &st.files {
            let leaf = Path::new(path).file_name().unwrap().to_str().unwrap();
            assert!(
                listed.lines().any(|l| l.ends_with(leaf)),
                "{name}: {path} not in\n{listed}"
            );
            let got = ckptfs(["cat", s(&vmx), &format!("{name}/Win11/volume_Win11/{path}")])
                .ok()
                .stdout;
            assert_same_bytes(&got, contents, &format!("{name}/{path}"));
        }
    }
    assert_eq!(hashes(&[dir.path()]), before, "nothing is written");

    // The same through the mount, for one snapshot in the middle of the tree.
    if !util::can_fuse_mount() {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    ckptfs(["mount", s(&vmx), s(mnt.path())]).ok();
    let result = std::panic::catch_unwind(|| {
        let st = &states[1];
        let disk = mnt.path().join(&st.dir_name);
        let img = std::fs::read(disk.join("data").join("disk.img")).unwrap();
        assert_same_bytes(&img, &st.data, "data/disk.img through the mount");
        for (path, contents) in &st.files {
            let got = std::fs::read(disk.join("Win11").join("volume_Win11").join(path)).unwrap();
            assert_same_bytes(&got, contents, path);
        }
    });
    ckptfs(["umount", s(mnt.path())]).ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn the_writers_time_halves_rebuild_the_microseconds() {
    for secs in [0i64, 1_795_169_703, 4_102_444_800] {
        let (high, low) = create_time_halves(secs);
        assert_eq!((i64::from(high) << 32) | i64::from(low as u32), secs * 1_000_000);
    }
}
