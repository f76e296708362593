//! An ESXi-style VMware VM whose disks are chains the test-only VMDK writer makes
//! (vmfs + COWD deltas on one disk, monolithicSparse + SESparse deltas on the other),
//! with a `.vmx`/`.vmsd` (tests/support/vmware_config.rs) describing a snapshot tree
//! with a branch (a revert to the first snapshot, then work on): every snapshot and
//! the running state list the files the `.vmsd`/`.vmx` name, and every disk of every
//! checkpoint reads as the writer's model of that file's state.

mod support;
mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::vmdk_writer::*;
use support::vmware_config::{DiskEntry, Snapshot, VmConfig};
use util::{assert_same_bytes, ckptfs};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SIZE: u64 = 8 * MIB;

/// One disk's tree as VMware leaves it: the base (frozen by snapshot 1), -000001
/// (frozen by snapshot 2), and -000003 over the base (running since the revert to
/// snapshot 1, which discarded -000002, the delta that ran after snapshot 2).
fn disk(c: &mut ChainBuilder, stem: &str, base: Variant, delta: Variant, salt: u64) -> [LayerId; 3] {
    let b = c.base(&format!("{stem}.vmdk"), base, |e| e.write_sectors(0, 4000 + salt));
    let s1 = c.child(b, &format!("{stem}-000001.vmdk"), delta.clone(), |e| {
        e.write_sectors(10 + salt, 5);
        e.write_sectors(9000, 3);
    });
    let s3 = c.child(b, &format!("{stem}-000003.vmdk"), delta, |e| {
        e.write_sectors(12 + salt, 2);
        e.write_sectors(8000, 16);
    });
    [b, s1, s3]
}

#[test]
fn an_esxi_vm_with_cowd_and_sesparse_disks_and_a_branch() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ChainBuilder::new(dir.path(), SIZE);
    let [a0, a1, a3] = disk(&mut c, "esx01", Variant::Vmfs, Variant::vmfs_sparse(), 0);
    let [d0, d1, d3] = disk(&mut c, "esx01_1", Variant::sparse(), Variant::se_sparse(), 7);
    // The snapshot tree: 1 ← 2, and the running state over 1.
    let mut vm = VmConfig::new("esx01");
    let name = |id: &LayerId| c.file_name(id).to_string();
    vm.running = vec![
        DiskEntry::new("scsi0:0", &name(&a3)),
        DiskEntry::new("scsi0:1", &name(&d3)),
    ];
    vm.snapshots = vec![
        Snapshot {
            slot: 0,
            uid: 1,
            parent: None,
            name: "Before patch".into(),
            description: None,
            created_unix: Some(1_790_000_100),
            disks: vec![
                DiskEntry::new("scsi0:0", &name(&a0)),
                DiskEntry::new("scsi0:1", &name(&d0)),
            ],
        },
        Snapshot {
            slot: 1,
            uid: 2,
            parent: Some(1),
            name: "Patched".into(),
            description: Some("applied, then reverted".into()),
            created_unix: Some(1_790_003_700),
            disks: vec![
                DiskEntry::new("scsi0:0", &name(&a1)),
                DiskEntry::new("scsi0:1", &name(&d1)),
            ],
        },
    ];
    vm.current = Some(1);
    vm.write(dir.path(), "esx01");

    // What each checkpoint must hold: by title (None = the running state), the files.
    let mut want: BTreeMap<Option<String>, Vec<LayerId>> = BTreeMap::new();
    want.insert(Some("Before patch".into()), vec![a0, d0]);
    want.insert(Some("Patched".into()), vec![a1, d1]);
    want.insert(None, vec![a3, d3]);
    let by_file: BTreeMap<PathBuf, LayerId> = c
        .layers()
        .into_iter()
        .map(|id| (std::fs::canonicalize(c.path(&id)).unwrap(), id))
        .collect();

    let vmx = dir.path().join("esx01.vmx");
    for target in [vmx.clone(), dir.path().join("esx01.vmsd"), dir.path().to_path_buf()] {
        let out = ckptfs(["list", "--json", s(&target)]).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["vm"]["name"], "esx01", "{v}");
        let cps = v["checkpoints"].as_array().unwrap();
        assert_eq!(cps.len(), 3, "{v}");
        let titled = cps
            .iter()
            .filter(|cp| want.contains_key(&cp["title"].as_str().map(String::from)))
            .count();
        assert_eq!(titled, 2, "both snapshots under their titles: {v}");
        for cp in cps {
            let title = cp["title"]
                .as_str()
                .filter(|_| !cp["title"].is_null())
                .map(String::from);
            let key = if want.contains_key(&title) { title } else { None };
            let files = &want[&key];
            let disks = cp["disks"].as_array().unwrap();
            assert_eq!(disks.len(), 2, "{cp}");
            for (d, id) in disks.iter().zip(files) {
                assert!(d.get("error").is_none_or(|e| e.is_null()), "{cp}");
                let file = PathBuf::from(d["file"].as_str().unwrap());
                assert_eq!(by_file.get(&file), Some(id), "{}: {cp}", c.file_name(id));
            }
        }
        if target != vmx {
            continue;
        }
        for cp in cps {
            for d in cp["disks"].as_array().unwrap() {
                let id = by_file[&PathBuf::from(d["file"].as_str().unwrap())];
                let path = format!(
                    "{}/{}/disk.img",
                    cp["name"].as_str().unwrap(),
                    d["dir"].as_str().unwrap()
                );
                let got = ckptfs(["cat", s(&vmx), &path]).ok().stdout;
                let m = c.expected(&id);
                assert_same_bytes(&got, &m.read(0, m.size() as usize), &path);
            }
        }
    }
}
