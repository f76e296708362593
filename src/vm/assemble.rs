//! From a [`Config`] to a [`Vm`]: each disk file the configuration names is found in a
//! checkpoint tree (discovered once per disk through [`crate::chain`], whatever the
//! format), checked against the disk's chain, and every checkpoint and disk named.
//!
//! A disk that cannot be read at one checkpoint (its file is missing, or is not part of
//! that disk's chain) is an error for that disk of that checkpoint only: the others
//! stay readable.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::naming::{checkpoint_names, disk_names};
use super::{Config, ConfigCheckpoint, ConfigDisk, StateRef, Vm, VmCheckpoint, VmDisk};
use crate::chain::parent::canonical;
use crate::chain::{CheckpointTree, DiscoverOptions};

/// Find every disk of every checkpoint of `config`.
pub fn assemble(mut config: Config, opts: &DiscoverOptions) -> Vm {
    let mut trees = Trees::new(opts);
    if config.parents_from_disks {
        derive_parents(&mut config, &mut trees);
    }

    // Display order: the configuration's checkpoints as a tree (each after its parent,
    // siblings oldest first), then the running state.
    let order = display_order(&config);
    let running = config.checkpoints.len();
    let mut entries: Vec<Entry> = order
        .iter()
        .map(|&i| {
            let c = &config.checkpoints[i];
            Entry {
                title: c.title.clone(),
                description: c.description.clone(),
                created: c.created,
                parent: c.parent,
                disks: &c.disks,
                source: i,
            }
        })
        .collect();
    entries.push(Entry {
        title: "running state".into(),
        description: None,
        created: None,
        parent: config.current,
        disks: &config.running,
        source: running,
    });

    // Trees from the running disks first: a running disk's chain holds the files of
    // the snapshots taken of it, so one discovery per disk usually finds them all.
    let mut order_of_locations: Vec<String> = Vec::new();
    for disk in config.running.iter().chain(entries.iter().flat_map(|e| e.disks.iter())) {
        if !order_of_locations.contains(&disk.location) {
            order_of_locations.push(disk.location.clone());
        }
    }
    let mut home: HashMap<String, usize> = HashMap::new();
    for disk in config.running.iter().chain(entries.iter().flat_map(|e| e.disks.iter())) {
        if home.contains_key(&disk.location) {
            continue;
        }
        if let Ok((tree, _)) = trees.state_of(disk) {
            home.insert(disk.location.clone(), tree);
        }
    }

    // Each disk's directory: its base file's stem (the root of its home tree).
    let stems: Vec<String> = order_of_locations
        .iter()
        .map(|loc| match home.get(loc) {
            Some(&t) => stem(&trees.list[t].checkpoints[0].path),
            None => config
                .running
                .iter()
                .chain(entries.iter().flat_map(|e| e.disks.iter()))
                .find(|d| &d.location == loc)
                .map(|d| stem(&d.file))
                .unwrap_or_default(),
        })
        .collect();
    let pairs: Vec<(&str, &str)> = stems
        .iter()
        .zip(&order_of_locations)
        .map(|(s, l)| (s.as_str(), l.as_str()))
        .collect();
    let dir_of: HashMap<&String, String> = order_of_locations.iter().zip(disk_names(&pairs)).collect();

    let names = checkpoint_names(
        &entries
            .iter()
            .map(|e| (e.created, e.title.as_str(), e.source == running))
            .collect::<Vec<_>>(),
    );
    let position: HashMap<usize, usize> = entries.iter().enumerate().map(|(pos, e)| (e.source, pos)).collect();
    let mut checkpoints: Vec<VmCheckpoint> = Vec::with_capacity(entries.len());
    for (pos, (e, name)) in entries.iter().zip(names).enumerate() {
        let parent = e.parent.and_then(|p| position.get(&p).copied()).filter(|&p| p != pos);
        let depth = parent.map_or(1, |p: usize| checkpoints.get(p).map_or(1, |c| c.depth + 1));
        let mut disks: Vec<VmDisk> = e
            .disks
            .iter()
            .map(|d| {
                let state = trees.state_of(d).and_then(|(tree, ci)| match home.get(&d.location) {
                    Some(&h) if h != tree => Err(format!(
                        "{} is not in the chain of disk {} (whose base is {}): the configuration and the disks disagree",
                        d.file.display(),
                        d.location,
                        trees.list[h].checkpoints[0].path.display()
                    )),
                    _ => Ok((tree, ci)),
                });
                if let Err(why) = &state {
                    log::info!("{name}: disk {}: {why}", d.location);
                }
                VmDisk {
                    dir: dir_of[&d.location].clone(),
                    location: d.location.clone(),
                    file: d.file.clone(),
                    snapshot: d.snapshot.clone(),
                    state,
                }
            })
            .collect();
        disks.sort_by_key(|d| order_of_locations.iter().position(|l| *l == d.location));
        checkpoints.push(VmCheckpoint {
            name,
            title: e.title.clone(),
            description: e.description.clone(),
            created: e.created,
            parent,
            depth,
            current: e.source == running,
            disks,
        });
    }
    Vm {
        name: config.name.clone(),
        config: config.path.clone(),
        hypervisor: config.hypervisor,
        checkpoints,
        trees: trees.list,
    }
}

/// Parents for a configuration that records none (Hyper-V): a checkpoint's parent is
/// the checkpoint whose state of the same disk is the nearest ancestor of its own, and
/// the running state builds on the one nearest to the running files. One disk decides
/// for each checkpoint: the first, in the running state's order, that resolves, so the
/// result is a tree even where the disks disagree.
///
/// States of a disk's tree that no checkpoint names (a merge left over, a checkpoint
/// deleted while the VM ran, a file the configuration lost) are added as checkpoints
/// of that disk alone, titled with their file's name and dated by the file, so that no
/// state on disk is hidden.
fn derive_parents(config: &mut Config, trees: &mut Trees) {
    // The running disks first: their trees hold the checkpoints' files.
    let running: HashMap<String, StateRef> = resolve(&config.running, trees);
    let mut states: Vec<HashMap<String, StateRef>> =
        config.checkpoints.iter().map(|c| resolve(&c.disks, trees)).collect();
    let mut locations: Vec<String> = Vec::new();
    for d in config
        .running
        .iter()
        .chain(config.checkpoints.iter().flat_map(|c| &c.disks))
    {
        if !locations.contains(&d.location) {
            locations.push(d.location.clone());
        }
    }
    for (location, unnamed) in unnamed_states(&locations, &running, &states, trees) {
        let c = &trees.list[unnamed.0].checkpoints[unnamed.1];
        let file_name = c
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        log::info!(
            "{}: in the tree of disk {location} but named by no checkpoint",
            c.path.display()
        );
        config.checkpoints.push(ConfigCheckpoint {
            id: c.path.display().to_string(),
            title: file_name,
            description: Some(format!(
                "{} is in the tree of disk {location} but no checkpoint of the configuration names it",
                c.path.display()
            )),
            created: Some(c.modified),
            parent: None,
            disks: vec![ConfigDisk {
                location: location.clone(),
                file: c.path.clone(),
                snapshot: c.snapshot.clone(),
            }],
        });
        states.push(HashMap::from([(location, unnamed)]));
    }
    let mut owner: HashMap<StateRef, usize> = HashMap::new();
    for (i, s) in states.iter().enumerate() {
        for &state in s.values() {
            owner.entry(state).or_insert(i);
        }
    }
    let nearest = |own: &HashMap<String, StateRef>| -> Option<usize> {
        let &(t, ci) = locations.iter().find_map(|l| own.get(l))?;
        let tree = &trees.list[t];
        let mut up = tree.checkpoints[ci].parent;
        while let Some(p) = up {
            if let Some(&c) = owner.get(&(t, p)) {
                return Some(c);
            }
            up = tree.checkpoints[p].parent;
        }
        None
    };
    let parents: Vec<Option<usize>> = states.iter().map(&nearest).collect();
    config.current = nearest(&running);
    for (c, p) in config.checkpoints.iter_mut().zip(parents) {
        c.parent = p;
    }
}

/// The states of each disk's tree (the tree its running file is in, else the first
/// found) that neither a checkpoint nor the running state names, with their disk's
/// location, in tree order.
fn unnamed_states(
    locations: &[String],
    running: &HashMap<String, StateRef>,
    checkpoints: &[HashMap<String, StateRef>],
    trees: &Trees,
) -> Vec<(String, StateRef)> {
    let named: HashSet<StateRef> = running
        .values()
        .chain(checkpoints.iter().flat_map(|c| c.values()))
        .copied()
        .collect();
    let mut seen_trees: HashSet<usize> = HashSet::new();
    let mut out = Vec::new();
    for location in locations {
        let home = running
            .get(location)
            .or_else(|| checkpoints.iter().find_map(|c| c.get(location)))
            .map(|&(t, _)| t);
        let Some(t) = home.filter(|t| seen_trees.insert(*t)) else {
            continue;
        };
        for ci in 0..trees.list[t].checkpoints.len() {
            if !named.contains(&(t, ci)) {
                out.push((location.clone(), (t, ci)));
            }
        }
    }
    out
}

/// Where each of `disks` is, by location, for those that resolve.
fn resolve(disks: &[ConfigDisk], trees: &mut Trees) -> HashMap<String, StateRef> {
    disks
        .iter()
        .filter_map(|d| Some((d.location.clone(), trees.state_of(d).ok()?)))
        .collect()
}

/// A checkpoint before naming: one of the configuration's, or the running state.
struct Entry<'a> {
    title: String,
    description: Option<String>,
    created: Option<std::time::SystemTime>,
    parent: Option<usize>,
    disks: &'a [ConfigDisk],
    /// Index into the configuration's checkpoints; their count for the running state.
    source: usize,
}

/// The configuration's checkpoints in pre-order, siblings oldest first. Parents are
/// checked to form a tree by each reader; a parent out of range counts as none.
fn display_order(config: &Config) -> Vec<usize> {
    let n = config.checkpoints.len();
    let parent = |i: usize| config.checkpoints[i].parent.filter(|&p| p < n && p != i);
    let key = |i: &usize| (config.checkpoints[*i].created, *i);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for i in 0..n {
        match parent(i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    roots.sort_by_key(key);
    children.iter_mut().for_each(|c| c.sort_by_key(key));
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    let mut seen = vec![false; n];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    // Checkpoints on a parent loop are not reached from a root: list them anyway.
    order.extend((0..n).filter(|&i| !seen[i]));
    order
}

/// The checkpoint trees found so far, and where each state is in them.
struct Trees<'o> {
    opts: &'o DiscoverOptions,
    list: Vec<CheckpointTree>,
    /// (canonical file, state id) → its place.
    index: HashMap<(PathBuf, Option<String>), StateRef>,
    /// Files whose discovery failed, with why.
    failed: HashMap<PathBuf, String>,
}

impl<'o> Trees<'o> {
    fn new(opts: &'o DiscoverOptions) -> Self {
        Trees {
            opts,
            list: Vec::new(),
            index: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Where `disk`'s state is: in a tree already found, else in the tree discovered
    /// from its file.
    fn state_of(&mut self, disk: &ConfigDisk) -> Result<StateRef, String> {
        let file = self.find(&disk.file)?;
        let path = canonical(&file).map_err(|e| e.to_string())?;
        let key = (path.clone(), disk.snapshot.clone());
        if let Some(&found) = self.index.get(&key) {
            return Ok(found);
        }
        if let Some(why) = self.failed.get(&path) {
            return Err(why.clone());
        }
        let tree = match CheckpointTree::discover(&path, self.opts) {
            Ok(t) => t,
            Err(e) => {
                self.failed.insert(path, e.to_string());
                return Err(e.to_string());
            }
        };
        let t = self.list.len();
        for (ci, c) in tree.checkpoints.iter().enumerate() {
            self.index
                .entry((c.path.clone(), c.snapshot.clone()))
                .or_insert((t, ci));
        }
        self.list.push(tree);
        self.index.get(&key).copied().ok_or_else(|| match &disk.snapshot {
            Some(id) => format!("{} holds no snapshot {id}", disk.file.display()),
            None => format!("{} is not in its own tree", disk.file.display()),
        })
    }
}

impl Trees<'_> {
    /// `file`, or where a file of its name is: a member of a tree found so far (a
    /// configuration written on another host names files where they were there), or
    /// in a `--search-dir`.
    fn find(&self, file: &Path) -> Result<PathBuf, String> {
        if file.is_file() {
            return Ok(file.to_path_buf());
        }
        let missing = || format!("{} does not exist", file.display());
        let name = file.file_name().ok_or_else(missing)?;
        let same_name = |p: &&PathBuf| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(&name.to_string_lossy()))
        };
        let mut members: Vec<&PathBuf> = self.index.keys().map(|(p, _)| p).filter(same_name).collect();
        members.sort();
        members.dedup();
        if let [only] = members[..] {
            return Ok(only.clone());
        }
        self.opts
            .search_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or_else(missing)
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
