//! `ckptfs info FILE`: one file's own facts, as its format knows them. Needs no parent,
//! so it works on a checkpoint whose parent is missing. A Hyper-V configuration file
//! (recognised by its header signature, not its extension) shows the VM's facts, or
//! with `--keys` every key and value.

use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::chain::parent::canonical;
use crate::vm::hyperv::{self, Key, KeyValue, Storage};
use crate::{Error, Result};

pub fn run(file: &Path, json: bool, keys: bool) -> Result<()> {
    let path = canonical(file)?;
    if hyperv::looks_like_storage(&head(&path)?) {
        let storage = hyperv::read(&path)?;
        for w in &storage.warnings {
            log::warn!("{}: {w}", path.display());
        }
        let out = match (keys, json) {
            (false, false) => facts_text(&storage),
            (false, true) => pretty(&facts_json(&storage)),
            (true, false) => keys_text(&storage),
            (true, true) => pretty(&keys_json(&storage)),
        };
        print!("{out}");
        return Ok(());
    }
    if keys {
        return Err(Error::Usage(format!(
            "{}: --keys is for Hyper-V configuration files (.vmcx, .VMRS); this is none",
            path.display()
        )));
    }
    let f = crate::format::open(&path)?;
    let info = f.info()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info.json).expect("info serializes"));
    } else {
        print!("{}", info.text);
    }
    Ok(())
}

/// Enough of the file to see a container's second header.
fn head(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        what: "cannot read it".into(),
        source,
    };
    let mut b = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(0x1000 + 8)
        .read_to_end(&mut b)
        .map_err(io)?;
    Ok(b)
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).expect("info serializes"))
}

fn time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn facts_text(s: &Storage) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: &str| o.push_str(&format!("{k:<12} {v}\n"));
    line(
        "format",
        &format!("Hyper-V configuration (HyperVStorage, version {:#x})", s.header.version),
    );
    line(
        "header",
        &format!("at {:#x}, sequence {}", s.header.offset, s.header.sequence),
    );
    line(
        "log",
        &match s.replayed {
            0 => "clean".to_string(),
            n => format!("not closed cleanly: {n} entries replayed in memory"),
        },
    );
    let keys = s.tree.walk().len();
    if let Some(vm) = hyperv::vm_facts(&s.tree) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        line("name", &opt(&vm.name));
        line("global id", &opt(&vm.global_id));
        line("logical id", &opt(&vm.logical_id));
        line("created", &vm.created.map(time).unwrap_or_else(|| "-".into()));
        line(
            "generation",
            &vm.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
        );
        line("version", &opt(&vm.version));
        line("type", &opt(&vm.type_id));
        if let Some((size, items)) = &vm.snapshot_list {
            let mut v = format!("{size} (global_settings/snapshots/list)");
            for i in items {
                v.push_str(&format!("\n  {i}"));
            }
            line("checkpoints", &v);
        }
        let disks = vm.drives.iter().filter(|d| d.is_disk()).count();
        line("disks", &disks.to_string());
        if !vm.drives.is_empty() {
            o.push_str("drives:\n");
        }
        for d in &vm.drives {
            let path = if d.pathname.is_empty() { "(empty)" } else { &d.pathname };
            o.push_str(&format!("  {:<9} {:<5} {path}\n", d.location, d.kind));
        }
    } else if let Some(vms) = hyperv::host_vms(&s.tree) {
        line("holds", &format!("the host's list of VMs ({})", vms.len()));
        for (id, p) in vms {
            o.push_str(&format!("  {id}  {p}\n"));
        }
    } else {
        line("holds", "no VM configuration (a runtime state file?)");
    }
    o.push_str(&format!("{:<12} {keys} (--keys lists them)\n", "keys"));
    for w in &s.warnings {
        o.push_str(&format!("warning: {w}\n"));
    }
    o
}

fn facts_json(s: &Storage) -> Value {
    let vm = hyperv::vm_facts(&s.tree).map(|vm| {
        json!({
            "name": vm.name,
            "global_id": vm.global_id,
            "logical_id": vm.logical_id,
            "created": vm.created.map(time),
            "generation": vm.generation,
            "version": vm.version,
            "type_id": vm.type_id,
            "snapshot_list": vm.snapshot_list.map(|(size, items)| json!({"size": size, "keys": items})),
            "drives": vm.drives.iter().map(|d| json!({
                "location": d.location,
                "controller": d.controller,
                "instance": d.instance,
                "type": d.kind,
                "pathname": d.pathname,
                "disk": d.is_disk(),
            })).collect::<Vec<_>>(),
        })
    });
    let host = hyperv::host_vms(&s.tree).map(|v| {
        v.into_iter()
            .map(|(id, path)| json!({"id": id, "path": path}))
            .collect::<Vec<_>>()
    });
    json!({
        "format": "hyperv-config",
        "header": {"offset": s.header.offset, "sequence": s.header.sequence, "version": s.header.version},
        "replayed": s.replayed,
        "warnings": s.warnings,
        "vm": vm,
        "host_vms": host,
        "keys": s.tree.walk().len(),
    })
}

/// Every key, one a line, indented two spaces a level: `name = value  (type)`.
fn keys_text(s: &Storage) -> String {
    let mut o = String::new();
    for (depth, k) in s.tree.walk() {
        let indent = "  ".repeat(depth);
        match k.value {
            KeyValue::Node => o.push_str(&format!("{indent}{}\n", k.name)),
            ref v => o.push_str(&format!("{indent}{} = {v}  ({})\n", k.name, v.type_name())),
        }
    }
    for w in &s.warnings {
        o.push_str(&format!("warning: {w}\n"));
    }
    o
}

fn key_json(k: &Key) -> Value {
    let value = match &k.value {
        KeyValue::Node => Value::Null,
        KeyValue::Int(v) => json!(v),
        KeyValue::UInt(v) => json!(v),
        KeyValue::Double(v) => json!(v),
        KeyValue::String(v) => json!(v),
        KeyValue::Array(_) => json!(k.value.to_string()),
        KeyValue::Bool(v) => json!(v),
    };
    let mut o = json!({"name": k.name, "type": k.value.type_name()});
    if k.value == KeyValue::Node {
        o["children"] = Value::Array(k.children.iter().map(key_json).collect());
    } else {
        o["value"] = value;
    }
    o
}

fn keys_json(s: &Storage) -> Value {
    json!({
        "format": "hyperv-config",
        "warnings": s.warnings,
        "keys": s.tree.roots.iter().map(key_json).collect::<Vec<_>>(),
    })
}
