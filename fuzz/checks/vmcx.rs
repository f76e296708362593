//! Hyper-V configuration containers: `vm::hyperv::storage::parse`.
//!
//! Input: a mode byte. Bit 7: the rest is a container as-is; the outcome must be `Ok`
//! or a typed error, the same on a second parse, and an `Ok` tree no deeper than
//! `MAX_DEPTH`. Otherwise a tree is built from the input (up to 40 keys over a few
//! names, so siblings share names; every value type; big strings and byte arrays that
//! go to file objects), written by `tests/support/vmcx_writer.rs` with options from
//! the input (table size 4096, 512 or 256 bytes, entry padding, older tables of each
//! index, header sequences, a dirty replay log), then damaged as `mode % 8` says:
//!
//! | mode | damage | outcome |
//! |---|---|---|
//! | 0 | none | `Ok`, exactly the tree built; one warning iff the log was dirty |
//! | 1 | a byte of the header the writer made current | `Ok`, the tree, the other header |
//! | 2 | a byte of both headers | `Headers` |
//! | 3 | a key's insertion sequence (its checksum then fails) | `Ok` without that key and its subtree, one warning |
//! | 4 | a byte of an object-table entry | `Checksum` |
//! | 5 | cut between 46 bytes and the end of the key tables | `Truncated` |
//! | 6 | a root's parent set to one of its descendants (checksum fixed) | `Loop` (or `Ok` if it has none) |
//! | 7 | a key's parent set to an offset where no entry starts (checksum fixed) | `Parent` (or `Ok` if no key has a parent) |

#[allow(dead_code)]
#[path = "../../tests/support/vmcx_writer.rs"]
mod vmcx_writer;

use ckptfs::vm::hyperv::storage::{parse, Key, KeyValue, VmcxError, MAX_DEPTH};
use vmcx_writer::{fix_crc, write, Item, Options, Value};

use super::{note, trace, Input};

const NAMES: [&str; 5] = ["a", "b", "list", "x y", "é"];

struct Budget {
    keys: usize,
    big: usize,
}

fn gen(inp: &mut Input, depth: usize, budget: &mut Budget) -> Vec<Item> {
    let mut out = Vec::new();
    let count = if depth < 5 { inp.u8() % 5 } else { 0 };
    for _ in 0..count {
        if budget.keys == 0 {
            break;
        }
        budget.keys -= 1;
        let name = NAMES[usize::from(inp.u8() % 5)].to_string();
        let k = inp.u8();
        let value = match k % 8 {
            0 | 1 => Value::Node(gen(inp, depth + 1, budget)),
            2 => Value::Int(inp.u64() as i64),
            3 => Value::UInt(inp.u64()),
            4 => {
                let d = f64::from_bits(inp.u64());
                Value::Double(if d.is_nan() { 0.5 } else { d })
            }
            5 => Value::Bool(inp.bool()),
            6 | 7 => {
                let mut len = usize::from(inp.u8() % 40);
                if k & 0x80 != 0 && budget.big > 0 {
                    budget.big -= 1;
                    len = 1000 + usize::from(inp.u16() % 2000);
                }
                if k % 8 == 6 {
                    let c = ['a', 'é', '€', '😀'][usize::from(inp.u8() % 4)];
                    Value::Str(std::iter::repeat_n(c, len).collect())
                } else {
                    Value::Bytes((0..len).map(|i| i as u8).collect())
                }
            }
            _ => unreachable!(),
        };
        out.push(Item {
            name,
            value,
            flags: inp.u8() & 0x02,
        });
    }
    out
}

/// The tree the reader should give for `items`, with the file-object flag where the
/// writer sets it.
fn expected(items: &[Item], file_object_min: usize) -> Vec<Key> {
    items
        .iter()
        .map(|i| {
            let (value, big) = match &i.value {
                Value::Node(_) => (KeyValue::Node, false),
                Value::Int(v) => (KeyValue::Int(*v), false),
                Value::UInt(v) => (KeyValue::UInt(*v), false),
                Value::Double(v) => (KeyValue::Double(*v), false),
                Value::Bool(v) => (KeyValue::Bool(*v), false),
                Value::Str(s) => (
                    KeyValue::String(s.clone()),
                    s.encode_utf16().count() * 2 >= file_object_min,
                ),
                Value::Bytes(b) => (KeyValue::Bytes(b.clone()), b.len() >= file_object_min),
            };
            Key {
                name: i.name.clone(),
                value,
                flags: i.flags | u8::from(big),
                children: match &i.value {
                    Value::Node(c) => expected(c, file_object_min),
                    _ => Vec::new(),
                },
            }
        })
        .collect()
}

/// Paths (`0/2/1`, child positions) of every key, depth first, with its item.
fn paths<'a>(items: &'a [Item], prefix: &str, out: &mut Vec<(String, String, &'a Item)>) {
    for (n, i) in items.iter().enumerate() {
        let pos = format!("{prefix}/{n}");
        let name_path = out
            .iter()
            .find(|(p, _, _)| *p == prefix)
            .map(|(_, np, _)| format!("{np}/{}", i.name))
            .unwrap_or_else(|| i.name.clone());
        out.push((pos.clone(), name_path, i));
        if let Value::Node(c) = &i.value {
            paths(c, &pos, out);
        }
    }
}

/// `items` without the key at position path `pos`.
fn without(items: &[Item], pos: &[usize]) -> Vec<Item> {
    let mut out = Vec::new();
    for (n, i) in items.iter().enumerate() {
        if pos.len() == 1 && pos[0] == n {
            continue;
        }
        let mut i = i.clone();
        if pos.len() > 1 && pos[0] == n {
            if let Value::Node(c) = &i.value {
                i.value = Value::Node(without(c, &pos[1..]));
            }
        }
        out.push(i);
    }
    out
}

fn kind(e: &VmcxError) -> &'static str {
    match e {
        VmcxError::TooLarge { .. } => "too_large",
        VmcxError::NotStorage => "not_storage",
        VmcxError::Headers { .. } => "headers",
        VmcxError::Version { .. } => "version",
        VmcxError::Truncated { .. } => "truncated",
        VmcxError::Signature { .. } => "signature",
        VmcxError::Checksum { .. } => "checksum",
        VmcxError::UnknownType { .. } => "unknown_type",
        VmcxError::Parent { .. } => "parent",
        VmcxError::Loop { .. } => "loop",
        VmcxError::Corrupt { .. } => "corrupt",
    }
}

fn depth(keys: &[Key]) -> usize {
    let mut max = 0;
    let mut stack: Vec<(usize, &Key)> = keys.iter().map(|k| (1, k)).collect();
    while let Some((d, k)) = stack.pop() {
        max = max.max(d);
        stack.extend(k.children.iter().map(|c| (d + 1, c)));
    }
    max
}

fn check_raw(b: &[u8]) {
    let first = parse(b);
    let second = parse(b);
    match (&first, &second) {
        (Ok(s), Ok(t)) => {
            note("raw ok");
            assert!(depth(&s.tree.children) <= MAX_DEPTH);
            // Debug text, not `==`: a Double may be NaN.
            assert_eq!(format!("{s:?}"), format!("{t:?}"), "two parses differ");
        }
        (Err(e), Err(f)) => {
            note(&format!("raw {}", kind(e)));
            assert_eq!(e, f, "two parses differ");
        }
        _ => panic!("two parses differ: {first:?} / {second:?}"),
    }
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    if mode & 0x80 != 0 {
        check_raw(inp.rest());
        return;
    }
    let damage = mode % 8;
    let o = inp.u8();
    let table_size = [0x1000, 0x200, 0x100][usize::from(o % 3)];
    let opts = Options {
        table_size,
        sequences: [inp.u16(), inp.u16()],
        file_object_min: if table_size == 0x1000 { 2048 } else { 64 },
        dirty: damage == 0 && o & 0x08 != 0,
        pad: usize::from(o >> 4 & 7),
        stale_tables: o & 0x80 != 0,
    };
    let mut budget = Budget { keys: 40, big: 4 };
    let items = gen(&mut inp, 0, &mut budget);
    let pick = inp.u16();
    let w = write(&items, &opts);
    let mut b = w.bytes.clone();
    let current = if opts.sequences[1] > opts.sequences[0] {
        0x1000
    } else {
        0
    };
    let want = expected(&items, opts.file_object_min);
    trace(|| format!("damage {damage}, {opts:?}, {} keys", w.keys.len()));

    let outcome = |b: &[u8]| parse(b).map_err(|e| (kind(&e), e.to_string()));
    match damage {
        0 | 1 => {
            if damage == 1 {
                b[current + 8 + usize::from(pick % 38)] ^= 0x40;
            }
            let s = outcome(&b).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(s.tree.children, want);
            let other = if damage == 1 { 0x1000 - current } else { current };
            assert_eq!(s.header.offset as usize, other);
            assert_eq!(s.warnings.len(), usize::from(opts.dirty && !items.is_empty()));
            assert_eq!(s.replayed, if opts.dirty { w.tables.len() } else { 0 });
            note(if opts.dirty { "ok dirty" } else { "ok" });
        }
        2 => {
            b[8 + usize::from(pick % 38)] ^= 0x40;
            b[0x1000 + 8 + usize::from(pick / 38 % 38)] ^= 0x40;
            assert_eq!(outcome(&b).map(|_| ()).unwrap_err().0, "headers");
            note("headers");
        }
        3 => {
            if w.keys.is_empty() {
                return;
            }
            let n = usize::from(pick) % w.keys.len();
            let mut all = Vec::new();
            paths(&items, "", &mut all);
            b[w.keys[n].1 as usize + 16] ^= 0x01;
            let s = outcome(&b).unwrap_or_else(|e| panic!("{e:?}"));
            let pos: Vec<usize> = all[n].0.split('/').skip(1).map(|p| p.parse().unwrap()).collect();
            assert_eq!(all[n].1, w.keys[n].0, "the writer's key order is depth-first");
            assert_eq!(s.tree.children, expected(&without(&items, &pos), opts.file_object_min));
            assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
            note("key skipped");
        }
        4 => {
            let e = 0x2008 + 18 * usize::from(pick % 227);
            b[e + usize::from(pick / 227 % 18)] ^= 0x10;
            assert_eq!(outcome(&b).map(|_| ()).unwrap_err().0, "checksum");
            note("object checksum");
        }
        5 => {
            let end = w.tables.iter().max().map_or(0x3000, |t| *t as usize + table_size);
            let cut = 46 + usize::from(pick) * 7 % (end - 46);
            assert_eq!(
                outcome(&b[..cut]).map(|_| ()).unwrap_err().0,
                "truncated",
                "cut at {cut:#x}"
            );
            note("truncated");
        }
        6 | 7 => {
            let mut all = Vec::new();
            paths(&items, "", &mut all);
            // A root with a node among its children (6: a parent must be a node, else
            // that is found first) or any non-root key (7).
            let first_node_child = |i: usize| match &all[i].2.value {
                Value::Node(c) => c.iter().position(|k| matches!(k.value, Value::Node(_))),
                _ => None,
            };
            let candidates: Vec<usize> = (0..all.len())
                .filter(|&i| {
                    let root = !all[i].0[1..].contains('/');
                    if damage == 6 {
                        root && first_node_child(i).is_some()
                    } else {
                        !root
                    }
                })
                .collect();
            if candidates.is_empty() {
                assert!(outcome(&b).is_ok());
                note("ok (nothing to damage)");
                return;
            }
            let n = candidates[usize::from(pick) % candidates.len()];
            let at = w.keys[n].1 as usize;
            let table_of = |abs: u64| {
                w.tables
                    .iter()
                    .position(|&t| t <= abs && abs < t + table_size as u64)
                    .unwrap()
            };
            let (pt, po) = if damage == 6 {
                // Its first child that is a node.
                let c = first_node_child(n).unwrap();
                let child = all
                    .iter()
                    .position(|(p, _, _)| *p == format!("{}/{c}", all[n].0))
                    .unwrap();
                let abs = w.keys[child].1;
                let t = table_of(abs);
                (t as u16 + 1, (abs - w.tables[t]) as u32)
            } else {
                (1, 3)
            };
            b[at + 6..at + 8].copy_from_slice(&pt.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&po.to_le_bytes());
            let name_len = usize::from(b[at + 20]);
            let value_len = match b[at] {
                3..=5 => 8,
                8 => 4,
                9 => 12,
                _ if b[at + 1] & 1 != 0 => 12,
                _ => 4 + u32::from_le_bytes(b[at + 21 + name_len..][..4].try_into().unwrap()) as usize,
            };
            fix_crc(&mut b, at, 21 + name_len + value_len, 12);
            let want = if damage == 6 { "loop" } else { "parent" };
            assert_eq!(outcome(&b).map(|_| ()).unwrap_err().0, want);
            note(want);
        }
        _ => unreachable!(),
    }
}

/// Seeds: one per damage mode over a small VM-like tree, plus raw files.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // Per key: name, kind (node 0/1, int 2, uint 3, double 4, bool 5, string 6, bytes
    // 7; bit 7 big), the value, flags; a node's children before its flags.
    let tree: Vec<u8> = vec![
        3, // three roots
        0, 0, 4, // "a": a node with four children:
        1, 6, 5, 0, 0, //   "b": "aaaaa"
        2, 0x86, 0, 0xF4, 0x01, 2, 0, //   "list": 1500 '€' (3000 bytes: a file object)
        3, 1, 2, //   "x y": a node with two children:
        0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0, //     "a": an int
        0, 2, 8, 7, 6, 5, 4, 3, 2, 1, 0, //     "a": another (a list)
        0, //   ("x y" flags)
        4, 5, 1, 2, //   "é": true, flag 2
        0, // ("a" flags)
        1, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, // "b": u64::MAX
        2, 7, 20, 0, // "list": 20 bytes
    ];
    let seed = |mode: u8, opts: u8, pick: u16| -> Vec<u8> {
        // Options, header sequences 3 and 2, the tree, the damage's pick.
        let mut b = vec![mode, opts, 3, 0, 2, 0];
        b.extend_from_slice(&tree);
        b.extend_from_slice(&pick.to_le_bytes());
        b
    };
    let raw = |f: &[Item]| {
        let mut b = vec![0x80];
        b.extend_from_slice(&write(f, &Options::default()).bytes);
        b
    };
    vec![
        ("vmcx", "clean", seed(0, 0, 0)),
        ("vmcx", "dirty_small_tables", seed(0, 0x08 | 2, 0)),
        ("vmcx", "stale_padded_512", seed(0, 0x80 | 0x30 | 1, 0)),
        ("vmcx", "header_damaged", seed(1, 0, 5)),
        ("vmcx", "both_headers_damaged", seed(2, 0, 77)),
        ("vmcx", "key_checksum", seed(3, 1, 2)),
        ("vmcx", "object_entry_checksum", seed(4, 0, 300)),
        ("vmcx", "truncated", seed(5, 0, 1500)),
        ("vmcx", "loop", seed(6, 0, 0)),
        ("vmcx", "parent_to_nothing", seed(7, 2, 1)),
        (
            "vmcx",
            "raw_vm",
            raw(&vmcx_writer::vm_config(
                "VM",
                "11111111-2222-3333-4444-555555555555",
                2,
                &[(0, 0, "VHD", r"C:\a.vhdx")],
            )),
        ),
        ("vmcx", "raw_garbage", vec![0x80, 0x14, 0x20, 0x28, 0x01, 0, 0, 0, 0]),
    ]
}
