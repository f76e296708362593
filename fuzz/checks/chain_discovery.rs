//! `CheckpointTree::discover` over a directory of mixed-format files: VHDX and VHD
//! trees written by the test-only writers (`tests/support/`), files no format reads,
//! names with and without (and with misleading) disk extensions, files deleted after
//! their children were written; discovery starts from any one of them.
//!
//! Input: a file count (1 to 7), then per file one byte: bits 0-1 what it is (0 junk,
//! 1 a base, 2-3 a child of an earlier disk file, chosen by the next input byte, in
//! that file's format; a child of junk becomes a base), bit 2 the base's format (VHDX
//! or VHD), bits 3-5 the name's extension (none, .vhdx, .avhdx, .vhd, .avhd, .bin,
//! .img, .txt), bit 6 delete the file once everything is written; then a sector to
//! change in that state, and its fill byte; finally the file to start from.
//!
//! Exact outcomes, from a reference written here: starting from a deleted file is an
//! I/O error, from junk an unknown-format error, from a file with a deleted ancestor a
//! missing-parent error; otherwise the tree holds exactly the start's ancestors and,
//! transitively, every remaining file whose parent is in the tree (never a file of
//! the other format, never junk, whatever the names say), each with its own parent,
//! its depth, one current state; and every state's disk reads exactly the bytes the
//! writer's model gives.

#[allow(dead_code, clippy::all)]
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use ckptfs::chain::{CheckpointTree, DiscoverOptions};
use ckptfs::io::ReadAt;
use ckptfs::Error;

use super::{pattern, Input, MIB};
use support::model::Model;
use support::{vhd_writer as vhd, vhdx_writer as vhdx};

const DISK: u64 = 2 * MIB;
const EXTENSIONS: [&str; 8] = ["", ".vhdx", ".avhdx", ".vhd", ".avhd", ".bin", ".img", ".txt"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Junk,
    Vhdx,
    Vhd,
}

#[derive(Debug)]
struct File {
    name: String,
    kind: Kind,
    parent: Option<usize>,
    deleted: bool,
    /// The writer's id, in the builder of the file's format.
    id: Option<usize>,
}

#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Io,
    Unknown,
    MissingParent,
    /// File index → parent file index, for every member.
    Tree(BTreeMap<usize, Option<usize>>),
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let dir = tempfile::tempdir().unwrap();
    let mut vx = vhdx::ChainBuilder::new(dir.path(), DISK, 512);
    let mut vd = vhd::ChainBuilder::new(dir.path(), DISK);
    let n = inp.below(7) as usize + 1;
    let mut files: Vec<File> = Vec::new();
    for i in 0..n {
        let b = inp.u8();
        let name = format!("f{i}{}", EXTENSIONS[usize::from(b >> 3) & 7]);
        let sector = inp.below(DISK / 512);
        let fill = inp.u8() | 1;
        let bytes = vec![fill; 512];
        let mut kind = match b & 3 {
            0 => Kind::Junk,
            1 if b & 4 == 0 => Kind::Vhdx,
            1 => Kind::Vhd,
            _ => Kind::Junk, // decided below
        };
        let mut parent = None;
        if b & 3 >= 2 {
            let j = if i == 0 { 0 } else { inp.below(i as u64) as usize };
            match files.get(j).map(|f| f.kind) {
                Some(k @ (Kind::Vhdx | Kind::Vhd)) => {
                    kind = k;
                    parent = Some(j);
                }
                _ => kind = if b & 4 == 0 { Kind::Vhdx } else { Kind::Vhd },
            }
        }
        let id = match (kind, parent) {
            (Kind::Junk, _) => {
                let len = 1 + inp.below(3000) as usize;
                let junk: Vec<u8> = (0..len as u64).map(|p| pattern(i as u64 + 77, p)).collect();
                std::fs::write(dir.path().join(&name), junk).unwrap();
                None
            }
            (Kind::Vhdx, None) => Some(vx.base(&name, MIB as u32, false, |e| e.write(sector * 512, &bytes)).0),
            (Kind::Vhdx, Some(j)) => {
                let p = vhdx::LayerId(files[j].id.unwrap());
                Some(vx.child(p, &name, MIB as u32, |e| e.write(sector * 512, &bytes)).0)
            }
            (Kind::Vhd, None) => Some(
                vd.base(&name, vhd::DiskType::Dynamic, 64 * 1024, |e| {
                    e.write(sector * 512, &bytes)
                })
                .0,
            ),
            (Kind::Vhd, Some(j)) => {
                let p = vhd::LayerId(files[j].id.unwrap());
                Some(vd.child(p, &name, 64 * 1024, |e| e.write(sector * 512, &bytes)).0)
            }
        };
        files.push(File {
            name,
            kind,
            parent,
            deleted: b & 0x40 != 0,
            id,
        });
    }
    for f in files.iter().filter(|f| f.deleted) {
        std::fs::remove_file(dir.path().join(&f.name)).unwrap();
    }
    let start = inp.below(n as u64) as usize;
    let expected = reference(&files, start);
    super::trace(|| format!("files {files:?}, start {start}, expected {expected:?}"));

    let got = CheckpointTree::discover(&dir.path().join(&files[start].name), &DiscoverOptions::default());
    let tree = match (&expected, got) {
        (Expected::Io, Err(Error::Io { .. }))
        | (Expected::Unknown, Err(Error::UnknownFormat { .. }))
        | (Expected::MissingParent, Err(Error::MissingParent { .. })) => return,
        (Expected::Tree(_), Ok(tree)) => tree,
        (e, got) => panic!("expected {e:?}, got {got:?}"),
    };
    let Expected::Tree(members) = expected else {
        unreachable!()
    };
    let index_of = |path: &Path| -> usize {
        let name = path.file_name().unwrap().to_string_lossy();
        files
            .iter()
            .position(|f| f.name == name)
            .expect("a file of the directory")
    };
    let got: BTreeMap<usize, Option<usize>> = tree
        .checkpoints
        .iter()
        .map(|c| (index_of(&c.path), c.parent.map(|p| index_of(&tree.checkpoints[p].path))))
        .collect();
    assert_eq!(got, members, "members and their parents");
    assert_eq!(
        tree.checkpoints.iter().filter(|c| c.current).count(),
        1,
        "one current state"
    );
    for (ci, c) in tree.checkpoints.iter().enumerate() {
        let i = index_of(&c.path);
        let mut depth = 1;
        let mut at = i;
        while let Some(p) = files[at].parent {
            depth += 1;
            at = p;
        }
        assert_eq!(c.depth, depth, "{}: depth", files[i].name);
        assert_eq!(c.snapshot, None);
        let model: &Model = match files[i].kind {
            Kind::Vhdx => vx.expected(&vhdx::LayerId(files[i].id.unwrap())),
            Kind::Vhd => vd.expected(&vhd::LayerId(files[i].id.unwrap())),
            Kind::Junk => unreachable!("junk is never a member"),
        };
        let disk = tree.disk(ci);
        assert_eq!(disk.size(), DISK);
        let mut b = vec![0u8; DISK as usize];
        disk.read_at(0, &mut b).unwrap();
        assert!(
            b == model.read(0, DISK as usize),
            "{}: the state's bytes",
            files[i].name
        );
    }
}

/// What discovery must find, from the rules in `src/chain/`.
fn reference(files: &[File], start: usize) -> Expected {
    if files[start].deleted {
        return Expected::Io;
    }
    if files[start].kind == Kind::Junk {
        return Expected::Unknown;
    }
    let mut members: BTreeMap<usize, Option<usize>> = BTreeMap::new();
    let mut at = start;
    loop {
        members.insert(at, files[at].parent);
        match files[at].parent {
            None => break,
            Some(p) if files[p].deleted => return Expected::MissingParent,
            Some(p) => at = p,
        }
    }
    loop {
        let added: Vec<usize> = (0..files.len())
            .filter(|i| !members.contains_key(i) && !files[*i].deleted)
            .filter(|i| files[*i].parent.is_some_and(|p| members.contains_key(&p)))
            .collect();
        if added.is_empty() {
            break;
        }
        for i in added {
            members.insert(i, files[i].parent);
        }
    }
    Expected::Tree(members)
}
