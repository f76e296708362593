//! `ckptfs info FILE`: one file's own facts, as its format knows them. Needs no parent,
//! so it works on a checkpoint whose parent is missing. A Hyper-V configuration file
//! (the `.vmcx` container, recognised by its header signature, or a 2012 R2 `.xml`)
//! shows the VM's facts, or with `--keys` every key and value.

use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::chain::parent::canonical;
use crate::vm::hyperv::keys::{Key, KeyValue};
use crate::vm::hyperv::{self, machine, storage, xml};
use crate::{Error, Result};

pub fn run(file: &Path, json: bool, keys: bool) -> Result<()> {
    let path = canonical(file)?;
    let head = head(&path)?;
    if storage::looks_like_storage(&head) || xml::looks_like(&head) {
        let config = read_config(&path)?;
        let out = match (keys, json) {
            (false, false) => facts_text(&path, &config)?,
            (false, true) => pretty(&facts_json(&path, &config)?),
            (true, false) => keys_text(&config),
            (true, true) => pretty(&keys_json(&config)),
        };
        print!("{out}");
        return Ok(());
    }
    if keys {
        return Err(Error::Usage(format!(
            "{}: --keys is for Hyper-V configuration files (.vmcx, .VMRS, 2012 R2 .xml); this is none",
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
    let io = |source| Error::input(path, source);
    let mut b = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(0x1000 + 8)
        .read_to_end(&mut b)
        .map_err(io)?;
    Ok(b)
}

/// A configuration file read: its keys under a nameless root, and for a container
/// the header used and the replay-log state.
struct ConfigFile {
    root: Key,
    container: Option<(storage::Header, usize)>,
    warnings: Vec<String>,
}

fn read_config(path: &Path) -> Result<ConfigFile> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len > storage::MAX_FILE_BYTES {
        return Err(Error::VmConfig {
            path: path.to_path_buf(),
            source: storage::VmcxError::TooLarge {
                size: len,
                limit: storage::MAX_FILE_BYTES,
            }
            .into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| Error::input(path, source))?;
    let bad = |source: crate::vm::ConfigError| Error::VmConfig {
        path: path.to_path_buf(),
        source,
    };
    if storage::looks_like_storage(&bytes) {
        let s = storage::parse(&bytes).map_err(|e| bad(e.into()))?;
        for w in &s.warnings {
            log::warn!("{}: {w}", path.display());
        }
        return Ok(ConfigFile {
            root: s.tree,
            container: Some((s.header, s.replayed)),
            warnings: s.warnings,
        });
    }
    Ok(ConfigFile {
        root: xml::parse(&bytes).map_err(bad)?,
        container: None,
        warnings: Vec::new(),
    })
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).expect("info serializes"))
}

fn time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn count_keys(k: &Key) -> usize {
    k.children.iter().map(|c| 1 + count_keys(c)).sum()
}

/// The VM's facts, if the file is a VM's (or checkpoint's) configuration: a `.VMRS`
/// runtime state and the host's list have no `properties/name` or `global_id`.
fn vm_of(path: &Path, c: &ConfigFile) -> Result<Option<machine::Machine>> {
    if c.root.get("configuration/properties").is_none() {
        return Ok(None);
    }
    let m = machine::read(&c.root).map_err(|source| Error::VmConfig {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((m.name.is_some() || m.global_id.is_some()).then_some(m))
}

fn version(v: i128) -> String {
    format!("{}.{}", v >> 8, v & 0xff)
}

/// `configuration/global_settings/snapshots/list`: its `size` and its other keys as
/// they are (no sample has a checkpoint, so their meaning is not assumed).
fn snapshot_list(root: &Key) -> Option<(i128, Vec<String>)> {
    let list = root.get("configuration/global_settings/snapshots/list")?;
    let size = list.integer("size").unwrap_or(0);
    let items = list
        .children
        .iter()
        .filter(|k| !k.name.eq_ignore_ascii_case("size"))
        .map(|k| format!("{} = {}", k.name, k.value))
        .collect();
    Some((size, items))
}

fn format_name(c: &ConfigFile) -> String {
    match &c.container {
        Some((h, _)) => format!("Hyper-V configuration (HyperVStorage, version {:#x})", h.version),
        None => "Hyper-V configuration (2012 R2 XML)".into(),
    }
}

fn facts_text(path: &Path, c: &ConfigFile) -> Result<String> {
    let mut o = String::new();
    let mut line = |k: &str, v: &str| o.push_str(&format!("{k:<12} {v}\n"));
    line("format", &format_name(c));
    if let Some((h, replayed)) = &c.container {
        line("header", &format!("at {:#x}, sequence {}", h.offset, h.sequence));
        line(
            "log",
            &match replayed {
                0 => "clean".to_string(),
                n => format!("not closed cleanly: {n} entries replayed in memory"),
            },
        );
    }
    if let Some(vm) = vm_of(path, c)? {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        line("name", &opt(&vm.name));
        line("global id", &opt(&vm.global_id));
        line("logical id", &opt(&vm.logical_id));
        line("created", &vm.created.map(time).unwrap_or_else(|| "-".into()));
        line(
            "generation",
            &vm.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
        );
        line("version", &vm.version.map(version).unwrap_or_else(|| "-".into()));
        line("type", &opt(&vm.type_id));
        if let Some((size, items)) = snapshot_list(&c.root) {
            let mut v = format!("{size} (global_settings/snapshots/list)");
            for i in items {
                v.push_str(&format!("\n  {i}"));
            }
            line("checkpoints", &v);
        }
        line("disks", &vm.drives.iter().filter(|d| d.is_disk()).count().to_string());
        if !vm.drives.is_empty() {
            o.push_str("drives:\n");
        }
        for d in &vm.drives {
            let path = if d.pathname.is_empty() { "(empty)" } else { &d.pathname };
            o.push_str(&format!("  {:<9} {:<5} {path}\n", d.location, d.kind));
        }
    } else if let Some(vms) = hyperv::host_vms(&c.root) {
        line("holds", &format!("the host's list of VMs ({})", vms.len()));
        for (id, p) in vms {
            o.push_str(&format!("  {id}  {p}\n"));
        }
    } else {
        line("holds", "no VM configuration (a runtime state file?)");
    }
    o.push_str(&format!("{:<12} {} (--keys lists them)\n", "keys", count_keys(&c.root)));
    for w in &c.warnings {
        o.push_str(&format!("warning: {w}\n"));
    }
    Ok(o)
}

fn facts_json(path: &Path, c: &ConfigFile) -> Result<Value> {
    let vm = vm_of(path, c)?.map(|vm| {
        json!({
            "name": vm.name,
            "global_id": vm.global_id,
            "logical_id": vm.logical_id,
            "created": vm.created.map(time),
            "generation": vm.generation,
            "version": vm.version.map(version),
            "type_id": vm.type_id,
            "snapshot_list": snapshot_list(&c.root).map(|(size, items)| json!({"size": size as i64, "keys": items})),
            "drives": vm.drives.iter().map(|d| json!({
                "location": d.location,
                "type": d.kind,
                "pathname": d.pathname,
                "disk": d.is_disk(),
            })).collect::<Vec<_>>(),
        })
    });
    let host = hyperv::host_vms(&c.root).map(|v| {
        v.into_iter()
            .map(|(id, path)| json!({"id": id, "path": path}))
            .collect::<Vec<_>>()
    });
    Ok(json!({
        "format": if c.container.is_some() { "hyperv-config" } else { "hyperv-xml" },
        "header": c.container.as_ref().map(|(h, _)| json!({"offset": h.offset, "sequence": h.sequence, "version": h.version})),
        "replayed": c.container.as_ref().map(|(_, n)| n),
        "warnings": c.warnings,
        "vm": vm,
        "host_vms": host,
        "keys": count_keys(&c.root),
    }))
}

fn type_name(v: &KeyValue) -> &'static str {
    match v {
        KeyValue::Node => "node",
        KeyValue::Int(_) => "int",
        KeyValue::UInt(_) => "uint",
        KeyValue::Double(_) => "double",
        KeyValue::String(_) => "string",
        KeyValue::Bytes(_) => "bytes",
        KeyValue::Bool(_) => "bool",
    }
}

/// Every key, one a line, indented two spaces a level: `name = value  (type)`.
fn keys_text(c: &ConfigFile) -> String {
    let mut o = String::new();
    let mut stack: Vec<(usize, &Key)> = c.root.children.iter().rev().map(|k| (0, k)).collect();
    while let Some((depth, k)) = stack.pop() {
        let indent = "  ".repeat(depth);
        match &k.value {
            KeyValue::Node => o.push_str(&format!("{indent}{}\n", k.name)),
            v => o.push_str(&format!("{indent}{} = {v}  ({})\n", k.name, type_name(v))),
        }
        stack.extend(k.children.iter().rev().map(|ch| (depth + 1, ch)));
    }
    for w in &c.warnings {
        o.push_str(&format!("warning: {w}\n"));
    }
    o
}

fn key_json(k: &Key) -> Value {
    let mut o = json!({"name": k.name, "type": type_name(&k.value)});
    match &k.value {
        KeyValue::Node => o["children"] = Value::Array(k.children.iter().map(key_json).collect()),
        KeyValue::Int(v) => o["value"] = json!(v),
        KeyValue::UInt(v) => o["value"] = json!(v),
        KeyValue::Double(v) => o["value"] = json!(v),
        KeyValue::String(v) => o["value"] = json!(v),
        KeyValue::Bytes(_) => o["value"] = json!(k.value.to_string()),
        KeyValue::Bool(v) => o["value"] = json!(v),
    }
    o
}

fn keys_json(c: &ConfigFile) -> Value {
    json!({
        "format": if c.container.is_some() { "hyperv-config" } else { "hyperv-xml" },
        "warnings": c.warnings,
        "keys": c.root.children.iter().map(key_json).collect::<Vec<_>>(),
    })
}
