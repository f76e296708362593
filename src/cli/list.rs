//! `ckptfs list IMAGE`: the checkpoint tree. `--json` prints the form fixed in
//! DESIGN.md, which other tools rely on.

use serde::Serialize;

use super::ImageArgs;
use crate::chain::CheckpointTree;
use crate::Result;

#[derive(Serialize)]
struct Listing {
    checkpoints: Vec<CheckpointJson>,
}

#[derive(Serialize)]
struct CheckpointJson {
    name: String,
    file: String,
    parent: Option<String>,
    /// The file's modification time, RFC 3339 UTC.
    created: String,
    /// The state a running VM writes to (the newest leaf).
    current: bool,
    depth: usize,
    volumes: Vec<VolumeJson>,
}

#[derive(Serialize)]
struct VolumeJson {
    dir: String,
    partition: Option<u32>,
    filesystem: String,
    label: Option<String>,
    size: u64,
}

pub fn run(image: &ImageArgs, json: bool) -> Result<()> {
    let tree = image.open_tree()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listing(&tree)).expect("listing serializes")
        );
    } else {
        print_tree(&tree);
    }
    Ok(())
}

fn listing(tree: &CheckpointTree) -> Listing {
    Listing {
        checkpoints: tree
            .checkpoints
            .iter()
            .map(|c| CheckpointJson {
                name: c.name.clone(),
                file: c.path.display().to_string(),
                parent: c.parent.map(|p| tree.checkpoints[p].name.clone()),
                created: humantime::format_rfc3339_seconds(c.modified).to_string(),
                current: c.current,
                depth: c.depth,
                volumes: Vec::new(),
            })
            .collect(),
    }
}

/// One line per checkpoint, indented under its parent.
fn print_tree(tree: &CheckpointTree) {
    let width = tree
        .checkpoints
        .iter()
        .map(|c| c.name.len() + 2 * (c.depth - 1))
        .max()
        .unwrap_or(0);
    for c in &tree.checkpoints {
        let label = format!("{}{}", "  ".repeat(c.depth - 1), c.name);
        let mark = if c.current { "  (current)" } else { "" };
        println!("{label:<width$}  {}{mark}", c.path.display());
    }
}
