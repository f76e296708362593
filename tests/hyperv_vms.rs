//! Whole Hyper-V VMs: `ckptfs list/ls/cat VM` where VM is a configuration file (a
//! 2012 R2 `.xml`, or the same rewritten as `.vmcx` containers), a checkpoint's
//! configuration, or the VM's folder as Hyper-V lays it out (`Virtual Machines/`,
//! `Snapshots/`, `Virtual Hard Disks/`). Checkpoints show under the names the admin
//! gave, with parents derived from the disk trees; each disk of each checkpoint is the
//! state of the file its configuration names.
//!
//! The configurations come from tests/support/hyperv_config.rs, the disks from the
//! VHDX writer (tests/support/vhdx_writer.rs), whose expected raw disk per file the
//! bytes are compared with. The real 2012 R2 files in ../shared/samples are read too.

mod support;
mod util;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::hyperv_config::{base64, Drive, HvConfig};
use support::model::Model;
use support::vhdx_writer::{ChainBuilder, LayerId};
use util::{assert_same_bytes, ckptfs};

const VM_ID: &str = "6F1C2E9A-3B4D-4E5F-8A9B-0C1D2E3F4A5B";
const HOST_DIR: &str = r"C:\ClusterStorage\Volume1\Web\Virtual Hard Disks";
/// 2026-11-20T10:15:03Z.
const T0: i64 = 1_795_169_703;
const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn list_json(args: &[&str]) -> Value {
    let mut all = vec!["list", "--json"];
    all.extend(args);
    serde_json::from_slice(&ckptfs(&all).ok().stdout).unwrap()
}

/// One disk's files: base, two children of the base (a branch), a grandchild the VM
/// runs on, and the expected raw disk of each.
struct DiskFiles {
    names: [String; 4],
    expected: [Model; 4],
}

/// Write a disk tree `stem.vhdx` ← `stem_A.avhdx`, `stem.vhdx` ← `stem_B.avhdx` ←
/// `stem_C.avhdx` into `dir`, each layer writing its own pattern somewhere.
fn disk_tree(dir: &Path, stem: &str, seed: u8) -> DiskFiles {
    let mut chain = ChainBuilder::new(dir, 8 * MIB, 512);
    let fill = |byte: u8, len: usize| vec![byte; len];
    let base = chain.base(&format!("{stem}.vhdx"), MIB as u32, false, |e| {
        e.write(0, &fill(seed, 3 * MIB as usize));
    });
    let a = chain.child(
        base,
        &format!("{stem}_1A2B3C4D-0000-4000-8000-00000000000A.avhdx"),
        MIB as u32,
        |e| {
            e.write(MIB, &fill(seed + 1, 4096));
        },
    );
    let b = chain.child(
        base,
        &format!("{stem}_1A2B3C4D-0000-4000-8000-00000000000B.avhdx"),
        MIB as u32,
        |e| {
            e.write(2 * MIB + 512, &fill(seed + 2, 70_144));
        },
    );
    let c = chain.child(
        b,
        &format!("{stem}_1A2B3C4D-0000-4000-8000-00000000000C.avhdx"),
        MIB as u32,
        |e| {
            e.write(5 * MIB, &fill(seed + 3, 512));
            e.write(0, &fill(seed + 4, 1024));
        },
    );
    let ids: [LayerId; 4] = [base, a, b, c];
    DiskFiles {
        names: ids.map(|id| chain.file_name(&id).to_string()),
        expected: ids.map(|id| chain.expected(&id).clone()),
    }
}

fn host_path(name: &str) -> String {
    format!(r"{HOST_DIR}\{name}")
}

/// A VM folder: two disks (IDE system disk, SCSI data disk), three checkpoints — "Before
/// upgrade" freezing the bases, "Patched" the A files, then (after applying "Before
/// upgrade") one under Hyper-V's default name freezing the B files — and the VM
/// running on the C files. Returns the folder and each disk's files.
fn hyperv_vm(root: &Path) -> (PathBuf, [DiskFiles; 2]) {
    let home = root.join("Web");
    let vhds = home.join("Virtual Hard Disks");
    std::fs::create_dir_all(&vhds).unwrap();
    std::fs::create_dir_all(home.join("Virtual Machines")).unwrap();
    std::fs::create_dir_all(home.join("Snapshots")).unwrap();
    let disks = [disk_tree(&vhds, "Web", 0x10), disk_tree(&vhds, "data", 0x60)];
    let config = |name: &str, id: &str, created: Option<i64>, file: usize| HvConfig {
        name: name.into(),
        global_id: id.into(),
        logical_id: VM_ID.into(),
        created_unix: created,
        generation: 1,
        drives: vec![
            Drive::vhd("ide", 0, 0, &host_path(&disks[0].names[file])),
            Drive {
                bus: "ide",
                controller: 1,
                drive: 0,
                kind: "ISO",
                pathname: r"C:\iso\en-us_windows_server_2022.iso".into(),
            },
            Drive::vhd("scsi", 0, 1, &host_path(&disks[1].names[file])),
        ],
    };
    let write = |path: PathBuf, c: HvConfig| std::fs::write(path, c.xml_bytes()).unwrap();
    write(
        home.join(format!("Virtual Machines/{VM_ID}.xml")),
        config("Web & DB", VM_ID, Some(T0 - 86_400), 3),
    );
    let snapshots = [
        ("Before upgrade", "11111111-0000-4000-8000-000000000001", T0, 0),
        ("Patched", "11111111-0000-4000-8000-000000000002", T0 + 3_600, 1),
        (
            "Web - (22/11/2026 - 09:00:00)",
            "11111111-0000-4000-8000-000000000003",
            T0 + 7_200,
            2,
        ),
    ];
    for (name, id, t, file) in snapshots {
        write(
            home.join(format!("Snapshots/{id}.xml")),
            config(name, id, Some(t), file),
        );
    }
    // A .vmrs beside them holds runtime state, not a configuration.
    std::fs::write(
        home.join("Snapshots/11111111-0000-4000-8000-000000000001.vmrs"),
        [0u8; 4096],
    )
    .unwrap();
    (home, disks)
}

const NAMES: [&str; 4] = [
    "2026-11-20_101503 Before upgrade",
    "2026-11-20_111503 Patched",
    "2026-11-20_121503 Web - (22_11_2026 - 09:00:00)",
    "current",
];

#[test]
fn checkpoints_show_under_their_names_with_parents_from_the_disks() {
    let root = tempfile::tempdir().unwrap();
    let (home, disks) = hyperv_vm(root.path());
    let vm_config = home.join(format!("Virtual Machines/{VM_ID}.xml"));
    let v = list_json(&[s(&vm_config)]);
    assert_eq!(v["vm"]["name"], "Web & DB");
    assert_eq!(v["vm"]["hypervisor"], "hyper-v");
    let cps = v["checkpoints"].as_array().unwrap();
    let names: Vec<&str> = cps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES, "a tree in creation order, the running state last");
    let parents: Vec<&Value> = cps.iter().map(|c| &c["parent"]).collect();
    assert_eq!(
        parents,
        [
            &Value::Null,
            &Value::from(NAMES[0]),
            &Value::from(NAMES[0]),
            &Value::from(NAMES[2])
        ],
        "Patched and the default-named checkpoint both build on Before upgrade; the VM runs on the latter"
    );
    assert_eq!(cps[0]["created"], "2026-11-20T10:15:03Z");
    assert_eq!(cps[2]["title"], "Web - (22/11/2026 - 09:00:00)");
    for (i, c) in cps.iter().enumerate() {
        let got: Vec<(&str, &str, String)> = c["disks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert!(d.get("error").is_none(), "{d}");
                let file = Path::new(d["file"].as_str().unwrap()).file_name().unwrap();
                (
                    d["dir"].as_str().unwrap(),
                    d["location"].as_str().unwrap(),
                    file.to_string_lossy().into_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Web", "ide0:0", disks[0].names[i].clone()),
                ("data", "scsi0:1", disks[1].names[i].clone())
            ],
            "{}: the ISO is not a disk",
            NAMES[i]
        );
    }
    // The VM folder and a checkpoint's configuration open the same VM.
    let snapshot = home.join("Snapshots/11111111-0000-4000-8000-000000000002.xml");
    for other in [home.clone(), snapshot] {
        assert_eq!(list_json(&[s(&other)]), v, "{}", other.display());
    }
}

#[test]
fn every_disk_of_every_checkpoint_reads_as_its_file_holds_it() {
    let root = tempfile::tempdir().unwrap();
    let (home, disks) = hyperv_vm(root.path());
    for (i, name) in NAMES.iter().enumerate() {
        for (dir, disk) in [("Web", &disks[0]), ("data", &disks[1])] {
            let got = ckptfs(["cat", s(&home), &format!("{name}/{dir}/disk.img")]).ok().stdout;
            let want = disk.expected[i].read(0, disk.expected[i].size() as usize);
            assert_same_bytes(&got, &want, &format!("{name}/{dir}"));
        }
    }
}

#[test]
fn a_checkpoint_whose_disk_is_missing_shows_with_an_error_for_that_disk() {
    let root = tempfile::tempdir().unwrap();
    let (home, disks) = hyperv_vm(root.path());
    std::fs::remove_file(home.join("Virtual Hard Disks").join(&disks[1].names[1])).unwrap();
    let v = list_json(&[s(&home)]);
    let patched = &v["checkpoints"][1];
    assert_eq!(patched["name"], NAMES[1]);
    assert!(patched["disks"][0].get("error").is_none(), "{patched}");
    let err = patched["disks"][1]["error"].as_str().unwrap();
    assert!(
        err.contains(&disks[1].names[1]) && err.contains("does not exist"),
        "{err}"
    );
    // Its other disk and the other checkpoints still read.
    ckptfs(["cat", s(&home), &format!("{}/Web/disk.img", NAMES[1])]).ok();
    ckptfs(["cat", s(&home), &format!("{}/data/disk.img", NAMES[2])]).ok();
    let out = ckptfs(["cat", s(&home), &format!("{}/data/disk.img", NAMES[1])]).failed();
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn a_folder_with_several_vms_lists_them() {
    let root = tempfile::tempdir().unwrap();
    let (home, _) = hyperv_vm(root.path());
    let mut other = HvConfig {
        name: "Build agent".into(),
        global_id: "22222222-0000-4000-8000-000000000000".into(),
        logical_id: "22222222-0000-4000-8000-000000000000".into(),
        created_unix: None,
        generation: 2,
        drives: vec![Drive::vhd("scsi", 0, 0, r"C:\VMs\agent.vhdx")],
    };
    std::fs::write(
        home.join("Virtual Machines/22222222-0000-4000-8000-000000000000.xml"),
        other.xml_bytes(),
    )
    .unwrap();
    let out = ckptfs(["list", s(&home)]).failed();
    assert!(
        out.stderr.contains("--vm") && out.stderr.contains("\"Web & DB\"") && out.stderr.contains("\"Build agent\""),
        "{}",
        out.stderr
    );
    let v = list_json(&[s(&home), "--vm", "Build agent"]);
    assert_eq!(v["vm"]["name"], "Build agent");
    let disk = &v["checkpoints"][0]["disks"][0];
    assert_eq!(disk["location"], "scsi0:0");
    assert!(disk["error"].as_str().unwrap().contains("agent.vhdx"), "{disk}");
    // A damaged configuration: one line naming the file.
    other.name = "x".into();
    let mut bytes = other.xml_bytes();
    bytes.truncate(bytes.len() / 2);
    let broken = root.path().join("broken.xml");
    std::fs::write(&broken, bytes).unwrap();
    let out = ckptfs(["list", s(&broken)]).failed();
    assert!(
        out.stderr.contains(s(&broken)) && out.stderr.contains("XML"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn real_2012_r2_configurations_name_their_vm_and_disks() {
    let Some(samples) = util::samples_dir() else {
        return;
    };
    // Expected values from the samples' README and the files' own text.
    let cases = [
        (
            "B90AC31B-C6F8-479F-9B91-07B894A6A3F6.xml",
            "Default Generation 1",
            "ide0:0",
            "Default Generation 1.vhdx",
        ),
        (
            "D351C151-DAC7-4042-B434-B72D522C1E4A.xml",
            "Default Generation 2",
            "scsi0:0",
            "Default Generation 2.vhdx",
        ),
    ];
    for (file, name, location, disk) in cases {
        let path = samples.join("hyperv-config").join(file);
        let v = list_json(&[s(&path)]);
        assert_eq!(v["vm"]["name"], name);
        let cps = v["checkpoints"].as_array().unwrap();
        assert_eq!(cps.len(), 1, "no checkpoints: the running state only");
        let disks = cps[0]["disks"].as_array().unwrap();
        assert_eq!(disks.len(), 1, "{file}: the DVD drive is not a disk: {disks:?}");
        assert_eq!(disks[0]["location"], location);
        let err = disks[0]["error"].as_str().unwrap();
        assert!(err.contains(disk) && err.contains("does not exist"), "{err}");
    }
}

#[test]
fn the_writers_base64_is_the_real_files() {
    // From D351C151-….xml: <Data type="bytes">AAIAAGQAAAAAAAAAAQAAAAAAAAA=
    let bytes = [0u8, 2, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(base64(&bytes), "AAIAAGQAAAAAAAAAAQAAAAAAAAA=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
}

#[test]
fn disk_states_no_checkpoint_names_still_show_under_their_file_names() {
    let root = tempfile::tempdir().unwrap();
    let (home, disks) = hyperv_vm(root.path());
    // "Patched" was deleted while the VM ran: its configuration is gone, its files
    // wait for a merge.
    std::fs::remove_file(home.join("Snapshots/11111111-0000-4000-8000-000000000002.xml")).unwrap();
    let v = list_json(&[s(&home)]);
    let cps = v["checkpoints"].as_array().unwrap();
    let titles: Vec<&str> = cps.iter().map(|c| c["title"].as_str().unwrap()).collect();
    for (disk, dir) in disks.iter().zip(["Web", "data"]) {
        let file = &disk.names[1];
        let c = cps
            .iter()
            .find(|c| c["title"] == file.as_str())
            .unwrap_or_else(|| panic!("{file} not in {titles:?}"));
        assert_eq!(c["parent"], NAMES[0], "{file}: built on Before upgrade");
        let only: Vec<&str> = c["disks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dir"].as_str().unwrap())
            .collect();
        assert_eq!(only, [dir], "a state of one disk shows that disk alone");
        let name = c["name"].as_str().unwrap();
        assert!(name.ends_with(&format!(" {file}")), "{name}");
        let got = ckptfs(["cat", s(&home), &format!("{name}/{dir}/disk.img")]).ok().stdout;
        assert_same_bytes(&got, &disk.expected[1].read(0, disk.expected[1].size() as usize), name);
    }
    assert_eq!(cps.len(), 5, "{titles:?}");
    assert_eq!(cps.last().unwrap()["parent"], NAMES[2]);
}

/// Writer items for the `.vmcx` container from a key tree the XML reader gave.
fn vmcx_items(keys: &[ckptfs::vm::hyperv::keys::Key]) -> Vec<support::vmcx_writer::Item> {
    use ckptfs::vm::hyperv::keys::KeyValue as K;
    use support::vmcx_writer::{Item, Value as V};
    keys.iter()
        .map(|k| Item {
            name: k.name.clone(),
            flags: 0,
            value: match &k.value {
                K::Node => V::Node(vmcx_items(&k.children)),
                K::Int(v) => V::Int(*v),
                K::UInt(v) => V::UInt(*v),
                K::Double(v) => V::Double(*v),
                K::String(v) => V::Str(v.clone()),
                K::Bytes(v) => V::Bytes(v.clone()),
                K::Bool(v) => V::Bool(*v),
            },
        })
        .collect()
}

/// The same VM with `.vmcx` configurations (Hyper-V 2016 and later): each XML file
/// rewritten as the container by tests/support/vmcx_writer.rs (the VM's own with a
/// dirty replay log, as if the host stopped mid-write), the XML removed. `list --json`
/// shows the same VM, checkpoints, parents and disks from the folder, and the VM from
/// a checkpoint's configuration.
#[test]
fn vmcx_configurations_show_the_same_vm_as_xml() {
    use support::vmcx_writer::{write, Options};
    let root = tempfile::tempdir().unwrap();
    let (home, _) = hyperv_vm(root.path());
    let from_xml = list_json(&[s(&home)]);
    let mut converted = 0;
    for dir in ["Virtual Machines", "Snapshots"] {
        for e in std::fs::read_dir(home.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "xml") {
                continue;
            }
            let keys = ckptfs::vm::hyperv::xml::parse(&std::fs::read(&p).unwrap()).unwrap();
            let opts = Options {
                dirty: dir == "Virtual Machines",
                ..Options::default()
            };
            std::fs::write(
                p.with_extension("vmcx"),
                write(&vmcx_items(&keys.children), &opts).bytes,
            )
            .unwrap();
            std::fs::remove_file(&p).unwrap();
            converted += 1;
        }
    }
    assert_eq!(converted, 4);
    let from_vmcx = list_json(&[s(&home)]);
    let want = serde_json::to_string(&from_xml).unwrap().replace(".xml\"", ".vmcx\"");
    assert_eq!(serde_json::to_string(&from_vmcx).unwrap(), want);
    let snap = home.join("Snapshots/11111111-0000-4000-8000-000000000002.vmcx");
    assert_eq!(list_json(&[s(&snap)])["vm"]["name"], "Web & DB");
}

#[test]
fn the_mount_shows_each_checkpoint_with_its_disks_dated_by_the_checkpoint() {
    if !util::can_fuse_mount() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (home, disks) = hyperv_vm(root.path());
    let mnt = tempfile::tempdir().unwrap();
    ckptfs(["mount", s(&home), s(mnt.path())]).ok();
    let result = std::panic::catch_unwind(|| {
        let mut top: Vec<String> = std::fs::read_dir(mnt.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, NAMES);
        for (i, name) in NAMES.iter().enumerate() {
            let dir = mnt.path().join(name);
            let mut inside: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            inside.sort();
            assert_eq!(inside, ["Web", "data"], "{name}");
            for (disk, files) in [("Web", &disks[0]), ("data", &disks[1])] {
                let got = std::fs::read(dir.join(disk).join("disk.img")).unwrap();
                let want = files.expected[i].read(0, files.expected[i].size() as usize);
                assert_same_bytes(&got, &want, &format!("{name}/{disk} through the mount"));
            }
        }
        // A checkpoint's directory carries its creation time.
        let mtime = std::fs::metadata(mnt.path().join(NAMES[1]))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            mtime,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs((T0 + 3_600) as u64)
        );
    });
    ckptfs(["umount", s(mnt.path())]).ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn the_xml_writer_writes_what_the_real_files_hold() {
    let Some(samples) = util::samples_dir() else {
        return;
    };
    // The real Generation 2 VM, and the writer's rendering of the same facts.
    let real = samples.join("hyperv-config/D351C151-DAC7-4042-B434-B72D522C1E4A.xml");
    let written_dir = tempfile::tempdir().unwrap();
    let written = written_dir.path().join("D351C151-DAC7-4042-B434-B72D522C1E4A.xml");
    let config = HvConfig {
        name: "Default Generation 2".into(),
        global_id: "D351C151-DAC7-4042-B434-B72D522C1E4A".into(),
        logical_id: "D351C151-DAC7-4042-B434-B72D522C1E4A".into(),
        created_unix: None,
        generation: 2,
        drives: vec![Drive::vhd("scsi", 0, 0, r"C:\Disks\Default Generation 2.vhdx")],
    };
    let bytes = config.xml_bytes();
    assert_eq!(
        &bytes[..2],
        &std::fs::read(&real).unwrap()[..2],
        "UTF-16LE with a byte order mark"
    );
    std::fs::write(&written, bytes).unwrap();
    let facts = |p: &Path| -> Value {
        let v: Value = serde_json::from_slice(&ckptfs(["info", "--json", s(p)]).ok().stdout).unwrap();
        // Only what the writer models; the real file has more keys.
        let keep = ["name", "global_id", "logical_id", "generation", "type_id"];
        let obj = v["vm"].as_object().unwrap();
        let drives: Vec<Value> = obj["drives"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["type"] == "VHD")
            .cloned()
            .collect();
        let mut out: serde_json::Map<String, Value> = keep
            .iter()
            .filter_map(|k| Some((k.to_string(), obj.get(*k)?.clone())))
            .collect();
        out.insert("vhd_drives".into(), Value::from(drives));
        Value::from(out)
    };
    let (got, want) = (facts(&written), facts(&real));
    assert!(want["vhd_drives"].as_array().is_some_and(|d| !d.is_empty()), "{want}");
    assert_eq!(got, want);
}
