//! `ckptfs list IMAGE`: the checkpoint tree and each checkpoint's volumes (for a VM,
//! each checkpoint's disks and their volumes). `--json` prints the forms fixed in
//! DESIGN.md, which other tools rely on.

use serde::Serialize;

use super::{human_bytes, ImageArgs};
use crate::vfs::{Source, Vfs};
use crate::vm::Vm;
use crate::volume::{Content, VolumeEntry};
use crate::Result;

#[derive(Serialize)]
struct Listing {
    checkpoints: Vec<CheckpointJson>,
}

#[derive(Serialize)]
struct CheckpointJson {
    name: String,
    file: String,
    /// The state inside `file` (a qcow2 internal snapshot's id); null for formats that
    /// hold one state per file.
    snapshot: Option<String>,
    parent: Option<String>,
    /// The file's modification time, RFC 3339 UTC.
    created: String,
    /// The state a running VM writes to (the newest leaf).
    current: bool,
    depth: usize,
    /// Volumes shown as directories.
    volumes: Vec<VolumeJson>,
    /// Partitions not shown, with what they are.
    hidden_partitions: Vec<HiddenJson>,
    /// Why the volumes could not be found, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct VolumeJson {
    dir: String,
    partition: Option<u32>,
    filesystem: String,
    label: Option<String>,
    size: u64,
    /// Set when the filesystem failed to open: its directory shows this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct HiddenJson {
    partition: Option<u32>,
    #[serde(rename = "type")]
    table_type: Option<String>,
    size: u64,
    reason: String,
}

pub fn run(image: &ImageArgs, json: bool) -> Result<()> {
    let vfs = image.open_vfs()?;
    if let Source::Vm(vm) = vfs.source() {
        let listing = vm_listing(&vfs, vm);
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&listing).expect("listing serializes")
            );
        } else {
            print_vm(&listing);
        }
        return Ok(());
    }
    let listing = listing(&vfs);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listing).expect("listing serializes")
        );
    } else {
        print_tree(&listing);
    }
    Ok(())
}

fn listing(vfs: &Vfs) -> Listing {
    let Source::Disk(tree) = vfs.source() else {
        unreachable!("VMs are listed by vm_listing")
    };
    let checkpoints = tree
        .checkpoints
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let (mut volumes, mut hidden, mut error) = (Vec::new(), Vec::new(), None);
            match vfs.volumes(ci) {
                Ok(v) => v.entries.iter().for_each(|e| describe(e, &mut volumes, &mut hidden)),
                Err(e) => error = Some(e.to_string()),
            }
            CheckpointJson {
                name: c.name.clone(),
                file: c.path.display().to_string(),
                snapshot: c.snapshot.clone(),
                parent: c.parent.map(|p| tree.checkpoints[p].name.clone()),
                created: humantime::format_rfc3339_seconds(c.modified).to_string(),
                current: c.current,
                depth: c.depth,
                volumes,
                hidden_partitions: hidden,
                error,
            }
        })
        .collect();
    Listing { checkpoints }
}

fn describe(e: &VolumeEntry, volumes: &mut Vec<VolumeJson>, hidden: &mut Vec<HiddenJson>) {
    match &e.content {
        Content::Filesystem { dir, fs } => volumes.push(VolumeJson {
            dir: dir.clone(),
            partition: e.partition,
            filesystem: fs.type_name().to_string(),
            label: fs.label(),
            size: e.size,
            error: None,
        }),
        Content::Broken { dir, fs_type, error } => volumes.push(VolumeJson {
            dir: dir.clone(),
            partition: e.partition,
            filesystem: fs_type.to_string(),
            label: None,
            size: e.size,
            error: Some(error.clone()),
        }),
        Content::Hidden { what } => hidden.push(HiddenJson {
            partition: e.partition,
            table_type: e.table_type.clone(),
            size: e.size,
            reason: what.clone(),
        }),
    }
}

/// Each checkpoint indented under its parent, its volumes under it.
fn print_tree(listing: &Listing) {
    for c in &listing.checkpoints {
        let indent = "  ".repeat(c.depth - 1);
        let mark = if c.current { "  (current)" } else { "" };
        println!("{indent}{}  {}{mark}", c.name, c.file);
        for v in &c.volumes {
            let label = v.label.as_deref().map(|l| format!("  \"{l}\"")).unwrap_or_default();
            let problem = v.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default();
            println!(
                "{indent}    {:<24} {:<6} {}{label}{problem}",
                v.dir,
                v.filesystem,
                human_bytes(v.size)
            );
        }
        for h in &c.hidden_partitions {
            let p = h.partition.map(|n| format!("p{n}")).unwrap_or_else(|| "disk".into());
            let what = match h.table_type.as_deref() {
                Some(t) if h.reason.starts_with(t) => h.reason.clone(),
                Some(t) if t.starts_with(&h.reason) => t.to_string(),
                Some(t) => format!("{t}: {}", h.reason),
                None => h.reason.clone(),
            };
            println!("{indent}    {p:<24} not shown: {what}");
        }
        if let Some(e) = &c.error {
            println!("{indent}    error: {e}");
        }
    }
}

#[derive(Serialize)]
struct VmListing {
    vm: VmJson,
    checkpoints: Vec<VmCheckpointJson>,
}

#[derive(Serialize)]
struct VmJson {
    name: String,
    config: String,
    hypervisor: &'static str,
}

#[derive(Serialize)]
struct VmCheckpointJson {
    /// Directory name under the mount.
    name: String,
    /// The name as the hypervisor shows it.
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// From the configuration, RFC 3339 UTC; null where it records none (the running
    /// state).
    created: Option<String>,
    parent: Option<String>,
    /// The running state.
    current: bool,
    #[serde(skip)]
    depth: usize,
    disks: Vec<VmDiskJson>,
}

#[derive(Serialize)]
struct VmDiskJson {
    dir: String,
    /// The controller location, as the configuration gives it (`scsi0:0`).
    location: String,
    /// The file holding this disk's state at this checkpoint.
    file: String,
    snapshot: Option<String>,
    volumes: Vec<VolumeJson>,
    hidden_partitions: Vec<HiddenJson>,
    /// Why this disk cannot be read at this checkpoint, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn vm_listing(vfs: &Vfs, vm: &Vm) -> VmListing {
    let layout = vfs.layout();
    let checkpoints = vm
        .checkpoints
        .iter()
        .zip(&layout.checkpoints)
        .map(|(c, dir)| VmCheckpointJson {
            name: c.name.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            created: c.created.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            parent: c.parent.map(|p| vm.checkpoints[p].name.clone()),
            current: c.current,
            depth: c.depth,
            disks: c
                .disks
                .iter()
                .zip(&dir.slots)
                .map(|(d, &slot)| {
                    let (mut volumes, mut hidden, mut error) = (Vec::new(), Vec::new(), None);
                    match &layout.slots[slot].state {
                        Ok(si) => match vfs.volumes(*si) {
                            Ok(v) => v.entries.iter().for_each(|e| describe(e, &mut volumes, &mut hidden)),
                            Err(e) => error = Some(e.to_string()),
                        },
                        Err(why) => error = Some(why.clone()),
                    }
                    let file = match d.state {
                        Ok((t, ci)) => vm.trees[t].checkpoints[ci].path.display().to_string(),
                        Err(_) => std::path::absolute(&d.file)
                            .unwrap_or_else(|_| d.file.clone())
                            .display()
                            .to_string(),
                    };
                    VmDiskJson {
                        dir: d.dir.clone(),
                        location: d.location.clone(),
                        file,
                        snapshot: d.snapshot.clone(),
                        volumes,
                        hidden_partitions: hidden,
                        error,
                    }
                })
                .collect(),
        })
        .collect();
    VmListing {
        vm: VmJson {
            name: vm.name.clone(),
            config: vm.config.display().to_string(),
            hypervisor: vm.hypervisor,
        },
        checkpoints,
    }
}

/// The VM, then each checkpoint indented under its parent with its title and time,
/// each disk under it, and the disk's volumes under that.
fn print_vm(listing: &VmListing) {
    println!("{} ({}, {})", listing.vm.name, listing.vm.hypervisor, listing.vm.config);
    for c in &listing.checkpoints {
        let indent = "  ".repeat(c.depth);
        let mark = if c.current { "  (running state)" } else { "" };
        println!("{indent}{}{mark}", c.name);
        if let Some(d) = &c.description {
            println!("{indent}  \"{}\"", d.replace('\n', " / "));
        }
        for d in &c.disks {
            println!("{indent}  {}  {}  {}", d.dir, d.location, d.file);
            for v in &d.volumes {
                let label = v.label.as_deref().map(|l| format!("  \"{l}\"")).unwrap_or_default();
                let problem = v.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default();
                println!(
                    "{indent}      {:<24} {:<6} {}{label}{problem}",
                    v.dir,
                    v.filesystem,
                    human_bytes(v.size)
                );
            }
            if let Some(e) = &d.error {
                println!("{indent}      error: {e}");
            }
        }
    }
}
