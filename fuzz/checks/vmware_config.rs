//! VMware `.vmsd`/`.vmx` parsing: `Dictionary::parse`, `vmsd::parse`, `vmx::parse`.
//!
//! Input: a mode byte. Bit 7: the rest is a configuration file as-is; the outcome must
//! be `Ok` or a typed error, and an `Ok` snapshot list must be a tree (unique uids,
//! known parents and current, no loop). Otherwise a `.vmsd` is built from the input:
//! up to 8 snapshots in shuffled slots, each with a uid (from a small range, so repeats
//! happen), a parent (none, a uid, or a uid no snapshot has), a name with characters
//! that need `|XX` escapes, a creation time, disks; a `snapshot.current`; then spoiled
//! as the mode says (bit 0: one line loses its closing quote).
//!
//! Exact outcomes, against a reference written here: a line without its closing quote
//! `Syntax`; else a repeated uid, a parent or current uid no snapshot has, or a loop
//! through parents `Tree`; else `Ok` with every snapshot's uid, parent, name (escapes
//! decoded), time and disks as built, in slot order.

use std::time::{Duration, UNIX_EPOCH};

use ckptfs::vm::vmware::dictionary::Dictionary;
use ckptfs::vm::vmware::{vmsd, vmx};
use ckptfs::vm::ConfigError;

use super::Input;

struct Built {
    slot: u32,
    uid: u32,
    parent: Option<u32>,
    name: String,
    micros: i64,
    disks: Vec<(String, String)>,
}

const NAME_CHARS: [&str; 8] = ["a", " ", "\"", "|", "\n", "é", "#", "="];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    if mode & 0x80 != 0 {
        check_raw(inp.rest());
        return;
    }
    let count = usize::from(inp.u8() % 9);
    let mut snaps: Vec<Built> = Vec::new();
    for i in 0..count {
        let uid = 1 + u32::from(inp.u8() % 12);
        let p = inp.u8();
        let parent = match p % 4 {
            0 => None,
            3 => Some(100 + u32::from(p >> 2)),
            _ => Some(1 + u32::from((p >> 2) % 12)),
        };
        let name: String = (0..inp.u8() % 6)
            .map(|_| NAME_CHARS[usize::from(inp.u8() % 8)])
            .collect();
        let micros = i64::from(inp.u32()) * 1_000_000 + i64::from(inp.u16());
        let disks = (0..inp.u8() % 3)
            .map(|m| (format!("scsi0:{m}"), format!("d{i}-{m}.vmdk")))
            .collect();
        snaps.push(Built {
            slot: (i as u32) * 3 + u32::from(inp.u8() % 3),
            uid,
            parent,
            name,
            micros,
            disks,
        });
    }
    let current = match inp.u8() % 3 {
        0 => None,
        1 => snaps.last().map(|s| s.uid),
        _ => Some(50),
    };
    let mut lines = vec![
        ".encoding = \"UTF-8\"".to_string(),
        "snapshot.lastUID = \"12\"".to_string(),
    ];
    if let Some(c) = current {
        lines.push(format!("snapshot.current = \"{c}\""));
    }
    let escape = |v: &str| v.replace('|', "|7C").replace('"', "|22").replace('\n', "|0A");
    // Written in reverse slot order: the reader orders by slot, not by line.
    for s in snaps.iter().rev() {
        let p = format!("snapshot{}", s.slot);
        lines.push(format!("{p}.uid = \"{}\"", s.uid));
        if let Some(parent) = s.parent {
            lines.push(format!("{p}.parent = \"{parent}\""));
        }
        lines.push(format!("{p}.displayName = \"{}\"", escape(&s.name)));
        lines.push(format!("{p}.createTimeHigh = \"{}\"", (s.micros >> 32) as i32));
        lines.push(format!("{p}.createTimeLow = \"{}\"", s.micros as u32 as i32));
        for (m, (node, file)) in s.disks.iter().enumerate() {
            lines.push(format!("{p}.disk{m}.fileName = \"{file}\""));
            lines.push(format!("{p}.disk{m}.node = \"{node}\""));
        }
    }
    let spoil = mode & 1 != 0 && lines.len() > 2;
    if spoil {
        let at = 2 + usize::from(inp.u8()) % (lines.len() - 2);
        let l = lines[at].strip_suffix('"').unwrap_or(&lines[at]).to_string();
        lines[at] = l;
    }
    let text = lines.join("\n") + "\n";
    let got = Dictionary::parse(text.as_bytes()).and_then(|d| vmsd::parse(&d));
    snaps.sort_by_key(|s| s.slot);

    if spoil {
        assert!(
            matches!(got, Err(ConfigError::Syntax { .. })),
            "unterminated line: {got:?}"
        );
        return;
    }
    let uids: Vec<u32> = snaps.iter().map(|s| s.uid).collect();
    let find = |uid: u32| uids.iter().position(|&u| u == uid);
    let repeated = (0..uids.len()).any(|i| uids[..i].contains(&uids[i]));
    let unknown = snaps.iter().any(|s| s.parent.is_some_and(|p| find(p).is_none()))
        || current.is_some_and(|c| find(c).is_none() && !snaps.is_empty());
    let looped = (0..snaps.len()).any(|i| {
        let mut at = i;
        for _ in 0..=snaps.len() {
            match snaps[at].parent.and_then(find) {
                Some(p) if p == i => return true,
                Some(p) => at = p,
                None => return false,
            }
        }
        false
    });
    if repeated || unknown || looped {
        assert!(
            matches!(got, Err(ConfigError::Tree(_))),
            "repeated {repeated} unknown {unknown} loop {looped}: {got:?}"
        );
        return;
    }
    let v = got.unwrap_or_else(|e| panic!("a valid list is refused: {e}\n{text}"));
    assert_eq!(v.current, current.map(|c| c.to_string()));
    assert_eq!(v.snapshots.len(), snaps.len());
    for (g, s) in v.snapshots.iter().zip(&snaps) {
        assert_eq!(g.slot, s.slot);
        assert_eq!(g.uid, s.uid.to_string());
        assert_eq!(g.parent, s.parent.map(|p| p.to_string()));
        assert_eq!(g.display_name.as_deref(), Some(s.name.as_str()), "{text}");
        let t = u64::try_from(s.micros)
            .ok()
            .map(|m| UNIX_EPOCH + Duration::from_micros(m));
        assert_eq!(g.created, t);
        let disks: Vec<(String, String)> = g
            .disks
            .iter()
            .map(|d| (d.node.to_string(), d.file_name.clone()))
            .collect();
        assert_eq!(disks, s.disks);
    }
}

/// Any bytes: typed outcomes only, and an accepted list is a tree.
fn check_raw(bytes: &[u8]) {
    let Ok(d) = Dictionary::parse(bytes) else { return };
    let _ = vmx::is_vmx(&d);
    let disks = vmx::parse(&d).disks;
    assert!(
        disks.windows(2).all(|w| w[0].node < w[1].node),
        "disks sorted, nodes unique"
    );
    if let Ok(v) = vmsd::parse(&d) {
        let find = |uid: &str| v.snapshots.iter().position(|s| s.uid == uid);
        for (i, s) in v.snapshots.iter().enumerate() {
            assert_eq!(find(&s.uid), Some(i), "uids unique");
            let mut at = i;
            for _ in 0..=v.snapshots.len() {
                match v.snapshots[at].parent.as_deref() {
                    Some(p) => at = find(p).expect("parents are known uids"),
                    None => break,
                }
                assert_ne!(at, i, "no loop");
            }
        }
    }
}

/// Seeds: built lists (a chain, a branch, a loop, an unknown parent, a broken line) and
/// a configuration as Workstation writes it.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // Per snapshot: uid, parent selector, name length + chars, time u32 + u16, disks, slot.
    let snap = |uid: u8, parent: u8, disks: u8| -> Vec<u8> {
        let mut b = vec![uid, parent, 3, 0, 2, 5];
        b.extend_from_slice(&1_795_169_703u32.to_le_bytes());
        b.extend_from_slice(&[0x20, 0x01, disks, 1]);
        b
    };
    let list = |mode: u8, snaps: &[Vec<u8>], current: u8| -> Vec<u8> {
        let mut b = vec![mode, snaps.len() as u8];
        for s in snaps {
            b.extend_from_slice(s);
        }
        b.push(current);
        b.push(7);
        b
    };
    // Parent selector: 0 none; 1 or 2 with bits 2.. the uid - 1; 3 a uid no one has.
    let parent_uid = |uid: u8| 1 + ((uid - 1) << 2);
    vec![
        (
            "vmware_config",
            "chain_of_three",
            list(
                0,
                &[snap(0, 0, 1), snap(1, parent_uid(1), 2), snap(2, parent_uid(2), 1)],
                1,
            ),
        ),
        (
            "vmware_config",
            "branch",
            list(
                0,
                &[snap(0, 0, 1), snap(1, parent_uid(1), 1), snap(2, parent_uid(1), 1)],
                1,
            ),
        ),
        (
            "vmware_config",
            "loop",
            list(0, &[snap(0, parent_uid(2), 1), snap(1, parent_uid(1), 1)], 0),
        ),
        ("vmware_config", "unknown_parent", list(0, &[snap(0, 3, 1)], 0)),
        (
            "vmware_config",
            "broken_line",
            list(1, &[snap(0, 0, 1), snap(1, parent_uid(1), 1)], 1),
        ),
        (
            "vmware_config",
            "workstation_text",
            [&[0x80u8][..], WORKSTATION.as_bytes()].concat(),
        ),
    ]
}

const WORKSTATION: &str = r#".encoding = "windows-1252"
snapshot.lastUID = "3"
snapshot.current = "3"
snapshot0.uid = "1"
snapshot0.filename = "Win10-Snapshot1.vmsn"
snapshot0.displayName = "Clean"
snapshot0.description = "before |22updates|22"
snapshot0.createTimeHigh = "417971"
snapshot0.createTimeLow = "-1372856832"
snapshot0.numDisks = "1"
snapshot0.disk0.fileName = "Win10.vmdk"
snapshot0.disk0.node = "nvme0:0"
snapshot0.type = "1"
snapshot1.uid = "3"
snapshot1.parent = "1"
snapshot1.displayName = "Office"
snapshot1.numDisks = "1"
snapshot1.disk0.fileName = "Win10-000001.vmdk"
snapshot1.disk0.node = "nvme0:0"
snapshot.numSnapshots = "2"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "x.vmdk"
config.version = "8"
"#;
