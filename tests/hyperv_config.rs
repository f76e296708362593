//! Hyper-V configuration containers (`.vmcx`, `.VMRS`): the real samples in
//! ../shared/samples/hyperv-config/ parse with the names, ids and disk paths their
//! README and dissect.hypervisor give (never our own output); the whole key tree
//! equals dissect.hypervisor's where python3 has it; the test-only writer
//! (tests/support/vmcx_writer.rs) writes what both our reader and dissect read back,
//! and rewrites every real sample's tree; `ckptfs info` shows the facts, and bad
//! files give one-line errors naming the file.

mod support;
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use ckptfs::vm::hyperv::storage::{self, Key, KeyValue};
use ckptfs::vm::hyperv::{self, machine};
use serde_json::Value;
use support::vmcx_writer::{self as writer, fix_crc, item, node, text, Item, Options};
use util::{ckptfs, have_tool, samples_dir};

const GEN1: &str = "EC04F346-DB96-4700-AF5B-77B3C56C38BD.vmcx";
const GEN2: &str = "993F7B33-6057-4D1E-A1FE-A1A1D77BE974.vmcx";

fn hyperv_samples() -> Option<PathBuf> {
    samples_dir().map(|d| d.join("hyperv-config"))
}

fn parse_file(p: &Path) -> storage::Storage {
    storage::parse(&std::fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Expected per VM sample: file, name, id, generation, disks (location, path), from the
/// samples README and dissect.hypervisor's dump (`properties/subtype` 0 and 1 for the
/// VMs the README calls Generation 1 and 2).
/// (file, name, id, generation, disks as (location, path)).
type VmSample = (
    &'static str,
    &'static str,
    &'static str,
    u8,
    &'static [(&'static str, &'static str)],
);

const VMS: &[VmSample] = &[
    (
        GEN1,
        "Default Generation 1",
        "EC04F346-DB96-4700-AF5B-77B3C56C38BD",
        1,
        &[("ide0:0", r"C:\Disks\Default Generation 1.vhdx")],
    ),
    (
        GEN2,
        "Default Generation 2",
        "993F7B33-6057-4D1E-A1FE-A1A1D77BE974",
        2,
        &[("scsi0:0", r"C:\Disks\Default Generation 2.vhdx")],
    ),
    (
        "test.vmcx",
        "Other Location",
        "282874FC-59D6-4F30-BC04-5FDD909C82E0",
        1,
        &[(
            "ide0:0",
            r"C:\Users\Public\Documents\Hyper-V\Virtual Hard Disks\Other Location.vhdx",
        )],
    ),
];

#[test]
fn real_vm_configurations() {
    let Some(dir) = hyperv_samples() else { return };
    for (file, name, id, generation, disks) in VMS {
        let s = parse_file(&dir.join(file));
        assert!(s.warnings.is_empty(), "{file}: {:?}", s.warnings);
        assert_eq!(s.replayed, 0);
        let vm = machine::read(&s.tree).expect(file);
        assert_eq!(vm.name.as_deref(), Some(*name), "{file}");
        assert_eq!(vm.global_id.as_deref(), Some(*id), "{file}");
        assert_eq!(vm.logical_id.as_deref(), Some(*id), "{file}");
        assert_eq!(vm.generation, Some(*generation), "{file}");
        assert_eq!(vm.version, Some(2304), "{file}: properties/version (9.0)");
        let got: Vec<(&str, &str)> = vm
            .drives
            .iter()
            .filter(|d| d.is_disk())
            .map(|d| (d.location.as_str(), d.pathname.as_str()))
            .collect();
        assert_eq!(got, *disks, "{file}");
        assert!(vm.created.is_some());
    }
    // Generation 1: the other IDE drives are an ISO drive and empty ones, and a floppy.
    let s = parse_file(&dir.join(GEN1));
    let mut kinds: Vec<(String, String)> = machine::read(&s.tree)
        .unwrap()
        .drives
        .into_iter()
        .map(|d| (d.location, d.kind))
        .collect();
    kinds.sort();
    let want = [
        ("floppy0:0", "VFD"),
        ("ide0:0", "VHD"),
        ("ide0:1", "NONE"),
        ("ide1:0", "ISO"),
        ("ide1:1", "NONE"),
    ];
    assert_eq!(kinds, want.map(|(a, b)| (a.to_string(), b.to_string())));
    // Creation times (FILETIMEs as dissect decodes them): 2023-02-17 17:03:06.232 UTC
    // and 17:03:30.381 UTC.
    let secs = |f: &str| {
        machine::read(&parse_file(&dir.join(f)).tree)
            .unwrap()
            .created
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(secs(GEN1), 1_676_653_386_232);
    assert_eq!(secs(GEN2), 1_676_653_410_381);
}

#[test]
fn real_host_list_and_runtime_state() {
    let Some(dir) = hyperv_samples() else { return };
    let s = parse_file(&dir.join("data.vmcx"));
    let vms = hyperv::host_vms(&s.tree).unwrap();
    assert_eq!(vms.len(), 4);
    assert_eq!(
        vms[1],
        (
            "993F7B33-6057-4D1E-A1FE-A1A1D77BE974".to_string(),
            r"C:\Hyper-V\EasyToFind\Virtual Machines\993F7B33-6057-4D1E-A1FE-A1A1D77BE974.vmcx".to_string()
        )
    );
    assert!(machine::read(&s.tree).is_err(), "no configuration key");
    let s = parse_file(&dir.join("test.VMRS"));
    assert_eq!(
        s.tree.get("configuration/properties/version").unwrap().value,
        KeyValue::Int(2304)
    );
    assert_eq!(machine::read(&s.tree).unwrap().name, None);
    // Siblings of one name are kept (dissect keeps one of each name): the runtime
    // state lists 3 `devicetype` and 10 `metric` keys (counted in its key entries by a
    // throwaway script, not with this reader).
    assert_eq!(s.tree.all("configuration/global_settings/metrics/devicetype").len(), 3);
    assert_eq!(
        s.tree
            .all("configuration/global_settings/metrics/*/deviceinstance/metric")
            .len(),
        10
    );
}

/// dissect.hypervisor's `as_dict()` of each file, bytes as `{"bytes": hex}`; `None` if
/// python3 or dissect is missing.
fn dissect(files: &[PathBuf]) -> Option<Value> {
    const SCRIPT: &str = r#"
import json, sys
from dissect.hypervisor.descriptor.hyperv import HyperVFile
def conv(v):
    if isinstance(v, dict):
        return {k: conv(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(v).hex()}
    return v
print(json.dumps({p: conv(HyperVFile(open(p, "rb")).as_dict()) for p in sys.argv[1:]}))
"#;
    if !have_tool("python3") {
        return None;
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(files)
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            assert!(
                std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_none(),
                "dissect.hypervisor is required (CKPTFS_REQUIRE_TOOLS is set) but not installed"
            );
            util::skip("dissect.hypervisor is not installed");
            return None;
        }
        panic!("dissect failed: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Our keys against dissect's dict. dissect keeps one key of a name per node (the
/// last in file order), so that one must equal one of ours of that name.
fn same_as_dissect(ours: &[Key], theirs: &Value, path: &str) -> Result<(), String> {
    let map = theirs.as_object().ok_or(format!("{path}: dissect has no node"))?;
    for k in ours {
        if !map.contains_key(&k.name) {
            return Err(format!("{path}/{}: not in dissect's tree", k.name));
        }
    }
    for (name, v) in map {
        let candidates: Vec<&Key> = ours.iter().filter(|k| &k.name == name).collect();
        let mut errors = Vec::new();
        let ok = candidates
            .iter()
            .any(|k| match same_key(k, v, &format!("{path}/{name}")) {
                Ok(()) => true,
                Err(e) => {
                    errors.push(e);
                    false
                }
            });
        if !ok {
            return Err(format!("{path}/{name}: {}", errors.join("; ")));
        }
    }
    Ok(())
}

fn same_key(k: &Key, v: &Value, path: &str) -> Result<(), String> {
    let same = match &k.value {
        KeyValue::Node => return same_as_dissect(&k.children, v, path),
        KeyValue::Int(x) => v.as_i64() == Some(*x),
        KeyValue::UInt(x) => v.as_u64() == Some(*x),
        KeyValue::Double(x) => v.as_f64() == Some(*x),
        KeyValue::String(x) => v.as_str() == Some(x),
        KeyValue::Bytes(x) => {
            v["bytes"].as_str() == Some(k.value.to_string().as_str()) || (x.is_empty() && v["bytes"] == "")
        }
        KeyValue::Bool(x) => v.as_bool() == Some(*x),
    };
    if same {
        Ok(())
    } else {
        Err(format!("ours {:?}, dissect {v}", k.value))
    }
}

fn count_keys(keys: &[Key]) -> usize {
    keys.iter().map(|k| 1 + count_keys(&k.children)).sum()
}

#[test]
fn real_trees_equal_dissects() {
    let Some(dir) = hyperv_samples() else { return };
    let files: Vec<PathBuf> = [GEN1, GEN2, "test.vmcx", "data.vmcx", "test.VMRS"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let Some(theirs) = dissect(&files) else { return };
    for f in &files {
        let s = parse_file(f);
        same_as_dissect(&s.tree.children, &theirs[f.to_str().unwrap()], "")
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(count_keys(&s.tree.children) > 30);
    }
}

/// Writer items from a parsed tree (to rewrite a real file's tree).
fn items(keys: &[Key]) -> Vec<Item> {
    keys.iter()
        .map(|k| Item {
            name: k.name.clone(),
            flags: k.flags & !storage::FLAG_FILE_OBJECT,
            value: match &k.value {
                KeyValue::Node => writer::Value::Node(items(&k.children)),
                KeyValue::Int(v) => writer::Value::Int(*v),
                KeyValue::UInt(v) => writer::Value::UInt(*v),
                KeyValue::Double(v) => writer::Value::Double(*v),
                KeyValue::String(v) => writer::Value::Str(v.clone()),
                KeyValue::Bytes(v) => writer::Value::Bytes(v.clone()),
                KeyValue::Bool(v) => writer::Value::Bool(*v),
            },
        })
        .collect()
}

#[test]
fn writer_rewrites_every_real_tree_in_the_real_layout() {
    let Some(dir) = hyperv_samples() else { return };
    for f in [GEN1, GEN2, "test.vmcx", "data.vmcx", "test.VMRS"] {
        let real = std::fs::read(dir.join(f)).unwrap();
        let s = storage::parse(&real).unwrap();
        let w = writer::write(&items(&s.tree.children), &Options::default());
        let again = storage::parse(&w.bytes).unwrap_or_else(|e| panic!("{f} rewritten: {e}"));
        assert_eq!(again.tree, s.tree, "{f}");
        // The same fixed fields as the real file: signature, version, alignment and
        // header size in both headers; the object table's signature and entry count.
        for h in [0usize, 0x1000] {
            assert_eq!(w.bytes[h..h + 4], real[h..h + 4], "{f}: signature");
            assert_eq!(w.bytes[h + 10..h + 26], real[h + 10..h + 26], "{f}: version, alignment");
            assert_eq!(w.bytes[h + 42..h + 46], real[h + 42..h + 46], "{f}: header size");
        }
        assert_eq!(w.bytes[0x2000..0x2008], real[0x2000..0x2008], "{f}: object table");
        // An unused object entry is the same 18 bytes (its CRC included).
        assert_eq!(
            w.bytes[0x2008 + 18 * 200..][..18],
            real[0x2008 + 18 * 200..][..18],
            "{f}"
        );
        // The same replay-log header as a clean real file.
        let lo = |b: &[u8]| u64::from_le_bytes(b[26..34].try_into().unwrap()) as usize;
        assert_eq!(
            w.bytes[lo(&w.bytes)..][..34],
            real[lo(&real)..][..34],
            "{f}: log header"
        );
    }
}

/// Trees with what the real files do not show: big values in file objects, several
/// tables, padding, an older table of each index, flags, every type.
fn writer_cases() -> Vec<(&'static str, Vec<Item>, Options)> {
    let vm = writer::vm_config(
        "Two disks",
        "11111111-2222-3333-4444-555555555555",
        2,
        &[
            (0, 0, "VHD", r"C:\VMs\a.vhdx"),
            (0, 1, "VHD", r"D:\b.avhdx"),
            (0, 2, "ISO", ""),
        ],
    );
    let mut all_types = vec![node(
        "root",
        vec![
            item("i", writer::Value::Int(-5)),
            item("u", writer::Value::UInt(1 << 63)),
            item("d", writer::Value::Double(0.25)),
            item("b", writer::Value::Bool(true)),
            item("bytes", writer::Value::Bytes(vec![0, 1, 0xfe])),
            text("big", &"é".repeat(1500)),
            item("bigbytes", writer::Value::Bytes(vec![9; 4000])),
            node("empty", vec![]),
        ],
    )];
    all_types[0].flags = 0x02;
    vec![
        ("vm", vm.clone(), Options::default()),
        (
            "vm_small_tables",
            vm,
            Options {
                table_size: 0x180,
                pad: 7,
                stale_tables: true,
                sequences: [4, 5],
                ..Options::default()
            },
        ),
        ("all_types", all_types, Options::default()),
    ]
}

fn expected(items: &[Item]) -> Vec<(String, String)> {
    fn walk(items: &[Item], path: &str, out: &mut Vec<(String, String)>) {
        for i in items {
            let p = format!("{path}/{}", i.name);
            match &i.value {
                writer::Value::Node(c) => walk(c, &p, out),
                v => out.push((p, format!("{v:?}"))),
            }
        }
    }
    let mut out = Vec::new();
    walk(items, "", &mut out);
    out
}

#[test]
fn writer_output_reads_back_in_our_reader_and_in_dissect() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, tree, opts) in writer_cases() {
        let w = writer::write(&tree, &opts);
        let s = storage::parse(&w.bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(expected(&items(&s.tree.children)), expected(&tree), "{name}");
        let p = tmp.path().join(format!("{name}.vmcx"));
        std::fs::write(&p, &w.bytes).unwrap();
        files.push((p, tree));
    }
    let paths: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
    let Some(theirs) = dissect(&paths) else { return };
    for (p, tree) in &files {
        let ours = storage::parse(&std::fs::read(p).unwrap()).unwrap();
        same_as_dissect(&ours.tree.children, &theirs[p.to_str().unwrap()], "")
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            count_keys(&ours.tree.children),
            expected(tree).len() + count_nodes(tree)
        );
    }
}

fn count_nodes(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| match &i.value {
            writer::Value::Node(c) => 1 + count_nodes(c),
            _ => 0,
        })
        .sum()
}

#[test]
fn info_on_real_files() {
    let Some(dir) = hyperv_samples() else { return };
    let out = ckptfs(["info".as_ref(), dir.join(GEN1).as_os_str()]).ok().stdout_str();
    for want in [
        "Default Generation 1",
        "EC04F346-DB96-4700-AF5B-77B3C56C38BD",
        "generation   1",
        "version      9.0",
        r"ide0:0    VHD   C:\Disks\Default Generation 1.vhdx",
        "created      2023-02-17T17:03:06Z",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let j: Value = serde_json::from_slice(
        &ckptfs(["info".as_ref(), "--json".as_ref(), dir.join(GEN2).as_os_str()])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(j["format"], "hyperv-config");
    assert_eq!(j["vm"]["name"], "Default Generation 2");
    assert_eq!(j["vm"]["generation"], 2);
    assert_eq!(j["vm"]["drives"][0]["pathname"], r"C:\Disks\Default Generation 2.vhdx");
    assert_eq!(j["vm"]["drives"][0]["disk"], true);
    let keys = ckptfs(["info".as_ref(), "--keys".as_ref(), dir.join(GEN2).as_os_str()])
        .ok()
        .stdout_str();
    assert!(keys.contains("\n  properties\n"), "{keys}");
    assert!(keys.contains("    name = \"Default Generation 2\"  (string)\n"));
    let j: Value = serde_json::from_slice(
        &ckptfs([
            "info".as_ref(),
            "--keys".as_ref(),
            "--json".as_ref(),
            dir.join("data.vmcx").as_os_str(),
        ])
        .ok()
        .stdout,
    )
    .unwrap();
    assert_eq!(j["keys"][0]["name"], "Configurations");
    // The 2012 R2 XML of the same VM (the samples README): the same facts.
    let xml = ckptfs([
        "info".as_ref(),
        dir.join("B90AC31B-C6F8-479F-9B91-07B894A6A3F6.xml").as_os_str(),
    ])
    .ok()
    .stdout_str();
    assert!(xml.contains("Hyper-V configuration (2012 R2 XML)"), "{xml}");
    assert!(xml.contains("name         Default Generation 1"), "{xml}");
    assert!(
        xml.contains(r"ide0:0    VHD   C:\Disks\Default Generation 1.vhdx"),
        "{xml}"
    );
    let host = ckptfs(["info".as_ref(), dir.join("data.vmcx").as_os_str()])
        .ok()
        .stdout_str();
    assert!(host.contains("the host's list of VMs (4)"), "{host}");
    assert!(host.contains(r"C:\VM\Other Generation 2\Virtual Machines\4C57771A-3230-4B92-B029-D63F96518E70.vmcx"));
}

/// `ckptfs info` on bytes written to a file: its stderr (after checking the failure
/// is one clean line naming the file).
fn info_fails(bytes: &[u8], what: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.vmcx");
    std::fs::write(&p, bytes).unwrap();
    let out = ckptfs(["info".as_ref(), p.as_os_str()]).failed();
    let line = out.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{what}: {line}");
    assert!(
        line.starts_with(&format!("ckptfs: {}: ", p.display())),
        "{what}: {line}"
    );
    assert!(line.contains(what), "{what} not in {line}");
    line.to_string()
}

#[test]
fn bad_files_give_one_line_errors() {
    let tree = writer::vm_config(
        "Bad",
        "11111111-2222-3333-4444-555555555555",
        1,
        &[(0, 0, "VHD", r"C:\a.vhdx")],
    );
    let w = writer::write(&tree, &Options::default());
    // Truncated.
    info_fails(&w.bytes[..0x2100], "run past the end of the file");
    // Both headers damaged.
    let mut b = w.bytes.clone();
    b[30] ^= 1;
    b[0x1000 + 30] ^= 1;
    info_fails(&b, "no valid header: header at 0x0: checksum");
    // An object-table entry's CRC.
    let mut b = w.bytes.clone();
    b[0x2008 + 3] ^= 1;
    info_fails(&b, "object table entry 0 at 0x2008: checksum");
    // A key whose size runs past its table.
    let mut b = w.bytes.clone();
    let at = w.key_offset("configuration/properties") as usize;
    b[at + 2..at + 6].copy_from_slice(&0x2000u32.to_le_bytes());
    fix_crc(&mut b, at, 21 + "properties\0".len() + 12, 12);
    info_fails(&b, "runs past its key table");
    // A loop: `configuration` hangs below `properties`.
    let mut b = w.bytes.clone();
    let at = w.key_offset("configuration") as usize;
    let props = (w.key_offset("configuration/properties") - w.tables[0]) as u32;
    b[at + 6..at + 8].copy_from_slice(&1u16.to_le_bytes());
    b[at + 8..at + 12].copy_from_slice(&props.to_le_bytes());
    fix_crc(&mut b, at, 21 + "configuration\0".len() + 12, 12);
    info_fails(&b, "its parents form a loop");
    // A parent pointer to nothing.
    let mut b = w.bytes.clone();
    let at = w.key_offset("configuration/properties") as usize;
    b[at + 8..at + 12].copy_from_slice(&3u32.to_le_bytes());
    fix_crc(&mut b, at, 21 + "properties\0".len() + 12, 12);
    info_fails(&b, "is no key entry");
    // A damaged key alone: a warning, the rest shows.
    let mut b = w.bytes.clone();
    let at = w.key_offset("configuration/settings") as usize;
    b[at + 16] ^= 1;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("one_bad_key.vmcx");
    std::fs::write(&p, &b).unwrap();
    let out = ckptfs(["info".as_ref(), p.as_os_str()]).ok();
    let text = out.stdout_str();
    assert!(text.contains("name         Bad"), "{text}");
    assert!(text.contains("logical id   -"), "{text}");
    assert!(text.contains("warning: key \"settings\""), "{text}");
    assert!(out.stderr.contains("key \"settings\""), "{}", out.stderr);
    // A dirty log is replayed: the same facts, and it says so.
    let dirty = writer::write(
        &tree,
        &Options {
            dirty: true,
            ..Options::default()
        },
    );
    std::fs::write(&p, &dirty.bytes).unwrap();
    let text = ckptfs(["info".as_ref(), p.as_os_str()]).ok().stdout_str();
    assert!(
        text.contains("not closed cleanly: 1 entries replayed in memory"),
        "{text}"
    );
    assert!(text.contains(r"ide0:0    VHD   C:\a.vhdx"), "{text}");
}
