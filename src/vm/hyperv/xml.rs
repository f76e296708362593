//! Hyper-V 2012 R2 configuration files (`Virtual Machines/<GUID>.xml`): the same key
//! tree as a `.vmcx`, written as XML in UTF-16 with a `type` attribute on each value
//! (`string`, `integer`, `bool`, `bytes` in base64). Elements without `type` are nodes.

use base64::Engine;

use super::keys::{Key, KeyValue};
use crate::vm::ConfigError;

/// Whether `head` (a file's first bytes) looks like a Hyper-V XML configuration.
pub fn looks_like(head: &[u8]) -> bool {
    let text = decode_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    text.starts_with("<?xml") && text.contains("<configuration")
}

/// Parse a whole file into its key tree (a root node above `configuration`).
pub fn parse(bytes: &[u8]) -> Result<Key, ConfigError> {
    let text = decode(bytes)?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| ConfigError::Syntax {
        line: e.pos().row as usize,
        what: format!("not well-formed XML: {e}"),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "configuration" {
        return Err(ConfigError::NotAConfig(format!(
            "the root element is <{}>, not <configuration>",
            root.tag_name().name()
        )));
    }
    Ok(Key::node("", vec![element(root, &doc, "")?]))
}

fn element(node: roxmltree::Node, doc: &roxmltree::Document, parent_path: &str) -> Result<Key, ConfigError> {
    let name = node.tag_name().name();
    let path = format!("{parent_path}/{name}");
    let Some(kind) = node.attribute("type") else {
        let children = node
            .children()
            .filter(|c| c.is_element())
            .map(|c| element(c, doc, &path))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Key::node(name, children));
    };
    let text: String = node.children().filter_map(|c| c.text()).collect();
    let bad = |what: String| ConfigError::Value {
        key: format!("{} (line {})", &path[1..], doc.text_pos_at(node.range().start).row),
        what,
    };
    let value = match kind {
        "string" => KeyValue::String(text),
        "integer" => {
            let t = text.trim();
            match t.parse::<i64>() {
                Ok(v) => KeyValue::Int(v),
                Err(_) => KeyValue::UInt(t.parse::<u64>().map_err(|_| bad(format!("{t:?} is not an integer")))?),
            }
        }
        "bool" => match text.trim() {
            t if t.eq_ignore_ascii_case("true") => KeyValue::Bool(true),
            t if t.eq_ignore_ascii_case("false") => KeyValue::Bool(false),
            t => return Err(bad(format!("{t:?} is not True or False"))),
        },
        "bytes" => {
            let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            KeyValue::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .map_err(|e| bad(format!("not base64: {e}")))?,
            )
        }
        other => return Err(bad(format!("unknown value type {other:?}"))),
    };
    Ok(Key::leaf(name, value))
}

/// The text of the file: UTF-16 (as Hyper-V writes it) or UTF-8, by its byte order
/// mark or, without one, by the zero bytes of UTF-16 ASCII.
fn decode(bytes: &[u8]) -> Result<String, ConfigError> {
    let (text, _, had_errors) = encoding(bytes).decode(bytes);
    if had_errors {
        return Err(ConfigError::NotAConfig("the text is not valid UTF-16 or UTF-8".into()));
    }
    Ok(text.into_owned())
}

fn decode_lossy(bytes: &[u8]) -> String {
    encoding(bytes).decode(bytes).0.into_owned()
}

fn encoding(bytes: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((enc, _)) = encoding_rs::Encoding::for_bom(bytes) {
        return enc;
    }
    match bytes {
        [b'<', 0, ..] => encoding_rs::UTF_16LE,
        [0, b'<', ..] => encoding_rs::UTF_16BE,
        _ => encoding_rs::UTF_8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str) -> Vec<u8> {
        let mut out = vec![0xff, 0xfe];
        out.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        out
    }

    const SMALL: &str = r#"<?xml version="1.0" encoding="UTF-16" standalone="yes"?>
<configuration>
  <properties>
    <name type="string">Web &amp; DB</name>
    <subtype type="integer">1</subtype>
    <big type="integer">18446744073709551615</big>
    <highly_available type="bool">False</highly_available>
  </properties>
  <data type="bytes">AAEC
  /w==</data>
  <empty type="string"></empty>
</configuration>
"#;

    #[test]
    fn typed_elements_become_typed_keys() {
        for bytes in [utf16(SMALL), SMALL.as_bytes().to_vec()] {
            assert!(looks_like(&bytes));
            let root = parse(&bytes).unwrap();
            assert_eq!(root.string("configuration/properties/name"), Some("Web & DB"));
            assert_eq!(root.integer("configuration/properties/subtype"), Some(1));
            assert_eq!(root.integer("configuration/properties/big"), Some(u64::MAX.into()));
            assert_eq!(
                root.get("configuration/properties/highly_available").unwrap().value,
                KeyValue::Bool(false)
            );
            assert_eq!(root.bytes("configuration/data"), Some(&[0, 1, 2, 255][..]));
            assert_eq!(root.string("configuration/empty"), Some(""));
        }
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let cases = [
            (
                "<n type=\"integer\">x1</n>",
                "configuration/n (line 2): \"x1\" is not an integer",
            ),
            (
                "<n type=\"bool\">yes</n>",
                "configuration/n (line 2): \"yes\" is not True or False",
            ),
            (
                "<n type=\"float\">1</n>",
                "configuration/n (line 2): unknown value type \"float\"",
            ),
            ("<n type=\"bytes\">@@</n>", "configuration/n (line 2): not base64"),
        ];
        for (inner, want) in cases {
            let text = format!("<?xml version=\"1.0\"?>\n<configuration>{inner}</configuration>");
            let err = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
        let err = parse(b"<?xml version=\"1.0\"?>\n<configuration><a></b></configuration>").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
        let err = parse(b"<?xml version=\"1.0\"?><other/>").unwrap_err();
        assert!(err.to_string().contains("not <configuration>"), "{err}");
        assert!(!looks_like(b"config.version = \"8\""));
    }
}
