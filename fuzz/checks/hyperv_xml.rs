//! Hyper-V 2012 R2 XML configurations: `vm::hyperv::xml::parse`.
//!
//! Input: a mode byte. Bit 7: the rest is a file as-is; the outcome must be `Ok` with
//! one `configuration` key under the root, or a typed error. Otherwise a key tree is
//! built from the input (up to three levels, up to four children a node, names from a
//! small set so that siblings repeat, leaves of every type: strings with characters
//! XML escapes, integers at both ends of i64 and above it, bools, bytes), written by
//! the reference writer here in UTF-16LE with a byte order mark (mode bit 0 clear) or
//! UTF-8, then spoiled as mode bits 1–2 say: 1, an integer gets a stray letter; 2, the
//! text is cut in half; 3, both.
//!
//! Exact outcomes: cut text `Syntax`; else a spoiled integer `Value` naming its key;
//! else `Ok` with exactly the tree built, in order.

use ckptfs::vm::hyperv::keys::{Key, KeyValue};
use ckptfs::vm::hyperv::xml;
use ckptfs::vm::ConfigError;

use super::Input;

const NAMES: [&str; 6] = ["name", "Name", "drive0", "_83f8638b-8dca_", "x", "pathname"];
const TEXT: [&str; 8] = ["a", " ", "&", "<", ">", "\"", "é", "C:\\"];

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    if mode & 0x80 != 0 {
        match xml::parse(inp.rest()) {
            Ok(root) => {
                assert_eq!(root.children.len(), 1);
                assert_eq!(root.children[0].name, "configuration");
            }
            Err(ConfigError::Syntax { .. } | ConfigError::Value { .. } | ConfigError::NotAConfig(_)) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
        }
        return;
    }
    let mut spoil_integer = mode & 2 != 0;
    let mut spoiled_key: Option<String> = None;
    let config = Key::node("configuration", children(&mut inp, 0));
    let mut text = String::from("<?xml version=\"1.0\" encoding=\"UTF-16\" standalone=\"yes\"?>\n");
    write(&config, &mut text, "", &mut spoil_integer, &mut spoiled_key);
    if mode & 4 != 0 {
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let bytes = if mode & 1 == 0 {
        let mut b = vec![0xff, 0xfe];
        b.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        b
    } else {
        text.into_bytes()
    };
    let got = xml::parse(&bytes);
    if mode & 4 != 0 {
        assert!(matches!(got, Err(ConfigError::Syntax { .. })), "cut text: {got:?}");
    } else if let Some(key) = spoiled_key {
        match got {
            Err(ConfigError::Value { key: k, what }) => {
                assert!(k.starts_with(&format!("{key} (line ")), "{k} vs {key}");
                assert!(what.contains("is not an integer"), "{what}");
            }
            other => panic!("spoiled integer {key}: {other:?}"),
        }
    } else {
        let root = got.unwrap_or_else(|e| panic!("clean tree refused: {e}"));
        assert_eq!(root, Key::node("", vec![config]));
    }
}

fn children(inp: &mut Input, depth: usize) -> Vec<Key> {
    let n = if depth >= 3 { 0 } else { inp.u8() % 5 };
    (0..n)
        .map(|_| {
            let name = NAMES[usize::from(inp.u8() % 6)];
            let kind = inp.u8() % 8;
            let value = match kind {
                0 | 1 => return Key::node(name, children(inp, depth + 1)),
                2 => KeyValue::String((0..inp.u8() % 5).map(|_| TEXT[usize::from(inp.u8() % 8)]).collect()),
                3 => KeyValue::Int(match inp.u8() % 4 {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    _ => inp.u32() as i32 as i64,
                }),
                4 => KeyValue::UInt(u64::MAX - u64::from(inp.u16())),
                5 => KeyValue::Bool(inp.bool()),
                _ => {
                    let len = usize::from(inp.u8() % 9);
                    KeyValue::Bytes(inp.bytes(len).to_vec())
                }
            };
            Key::leaf(name, value)
        })
        .collect()
}

/// The reference writer: one element per key, `type` on values.
fn write(key: &Key, out: &mut String, parent: &str, spoil: &mut bool, spoiled: &mut Option<String>) {
    let path = if parent.is_empty() {
        key.name.clone()
    } else {
        format!("{parent}/{}", key.name)
    };
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let (kind, text) = match &key.value {
        KeyValue::Node => {
            out.push_str(&format!("<{}>\n", key.name));
            for c in &key.children {
                write(c, out, &path, spoil, spoiled);
            }
            out.push_str(&format!("</{}>\n", key.name));
            return;
        }
        KeyValue::String(s) => ("string", esc(s)),
        KeyValue::Int(v) => ("integer", v.to_string()),
        KeyValue::UInt(v) => ("integer", v.to_string()),
        KeyValue::Bool(b) => ("bool", if *b { "True".into() } else { "False".into() }),
        KeyValue::Bytes(b) => ("bytes", base64(b)),
        KeyValue::Double(_) => unreachable!("not built"),
    };
    let text = if kind == "integer" && std::mem::take(spoil) {
        *spoiled = Some(path);
        format!("{text}z")
    } else {
        text
    };
    out.push_str(&format!("<{} type=\"{kind}\">{text}</{}>\n", key.name, key.name));
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ABC[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // mode, then per node: child count; per child: name, kind, value bytes.
    let tree = |mode: u8| -> Vec<u8> {
        vec![
            mode, 4, // configuration: four children
            0, 0, 2, // "name": a node with two children
            5, 2, 3, 2, 3, 4, //   "pathname" = "&<>" ... (string of 3)
            1, 3, 2, 0, 0, 0, 0, //   "Name" = integer
            2, 4, 0, 0, // "drive0" = UInt
            3, 5, 1, // "_83f8…_" = true
            4, 6, 4, 1, 2, 3, 4, // "x" = 4 bytes
        ]
    };
    vec![
        ("hyperv_xml", "utf16_tree", tree(0)),
        ("hyperv_xml", "utf8_tree", tree(1)),
        ("hyperv_xml", "spoiled_integer", tree(2)),
        ("hyperv_xml", "cut_text", tree(4)),
        (
            "hyperv_xml",
            "raw_doctype",
            [&[0x80u8][..], b"<?xml version=\"1.0\"?><!DOCTYPE c [<!ENTITY a \"aaaa\">]><configuration><n type=\"string\">&a;&a;</n></configuration>"].concat(),
        ),
    ]
}
