//! A Hyper-V configuration as a tree of named, typed keys: what both containers hold
//! (the `.vmcx` "HyperVStorage" file and the 2012 R2 `.xml`), so that reading the VM
//! out of it ([`super::machine`]) does not care which one it came from.
//!
//! Sibling keys may share a name; lookups take the first, [`Key::children_named`] and
//! [`Key::all`] all. Names match without regard to ASCII case, as Hyper-V's own lookups
//! do.

use std::fmt;

/// A key's value. Inner nodes have [`KeyValue::Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    Node,
    Int(i64),
    UInt(u64),
    Double(f64),
    String(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

impl KeyValue {
    /// The type's name as `info --keys` shows it.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyValue::Node => "node",
            KeyValue::Int(_) => "int",
            KeyValue::UInt(_) => "uint",
            KeyValue::Double(_) => "double",
            KeyValue::String(_) => "string",
            KeyValue::Bytes(_) => "bytes",
            KeyValue::Bool(_) => "bool",
        }
    }
}

/// One line: numbers in decimal, text quoted with escapes, bytes in hex.
impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Node => Ok(()),
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::UInt(v) => write!(f, "{v}"),
            KeyValue::Double(v) => write!(f, "{v}"),
            KeyValue::String(s) => write!(f, "{s:?}"),
            KeyValue::Bytes(b) => {
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            KeyValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub value: KeyValue,
    /// A `.vmcx` entry's flag byte ([`super::storage::FLAG_FILE_OBJECT`]; 0x02 is seen on
    /// some `.VMRS` strings, meaning unknown); 0 for XML.
    pub flags: u8,
    /// In the order the file stores them.
    pub children: Vec<Key>,
}

impl Key {
    pub fn node(name: &str, children: Vec<Key>) -> Key {
        Key {
            name: name.into(),
            value: KeyValue::Node,
            flags: 0,
            children,
        }
    }

    pub fn leaf(name: &str, value: KeyValue) -> Key {
        Key {
            name: name.into(),
            value,
            flags: 0,
            children: Vec::new(),
        }
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Key> {
        self.children.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Every child called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Key> + 'a {
        self.children.iter().filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    /// The key at a `/`-separated path below this one.
    pub fn get(&self, path: &str) -> Option<&Key> {
        path.split('/')
            .filter(|p| !p.is_empty())
            .try_fold(self, |key, part| key.child(part))
    }

    /// Every key at `path` below this one, in tree order; a `*` segment matches any
    /// one name (`configuration/manifest/*`).
    pub fn all(&self, path: &str) -> Vec<&Key> {
        let mut level: Vec<&Key> = vec![self];
        for part in path.split('/').filter(|p| !p.is_empty()) {
            level = level
                .into_iter()
                .flat_map(|k| k.children.iter())
                .filter(|c| part == "*" || c.name.eq_ignore_ascii_case(part))
                .collect();
        }
        level
    }

    /// Every key below this one, depth first, with its depth (0 for a child).
    pub fn walk(&self) -> Vec<(usize, &Key)> {
        let mut out = Vec::new();
        let mut stack: Vec<(usize, &Key)> = self.children.iter().rev().map(|k| (0, k)).collect();
        while let Some((d, k)) = stack.pop() {
            out.push((d, k));
            stack.extend(k.children.iter().rev().map(|c| (d + 1, c)));
        }
        out
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            KeyValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An Int or UInt that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            KeyValue::Int(v) => Some(v),
            KeyValue::UInt(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            KeyValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            KeyValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string at `path`.
    pub fn string(&self, path: &str) -> Option<&str> {
        self.get(path)?.as_str()
    }

    /// The integer at `path` (signed or unsigned in the file).
    pub fn integer(&self, path: &str) -> Option<i128> {
        match self.get(path)?.value {
            KeyValue::Int(v) => Some(v.into()),
            KeyValue::UInt(v) => Some(v.into()),
            _ => None,
        }
    }

    pub fn bytes(&self, path: &str) -> Option<&[u8]> {
        self.get(path)?.as_bytes()
    }

    /// Every key below this one as indented `name = value` lines, like `reg query /s`.
    pub fn dump(&self, out: &mut String) {
        fn walk(key: &Key, depth: usize, out: &mut String) {
            out.push_str(&"  ".repeat(depth));
            out.push_str(&key.name);
            if key.value != KeyValue::Node {
                out.push_str(" = ");
                out.push_str(&key.value.to_string());
            }
            out.push('\n');
            for c in &key.children {
                walk(c, depth + 1, out);
            }
        }
        for c in &self.children {
            walk(c, 0, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_keys_without_regard_to_case_and_keep_repeated_names() {
        let root = Key::node(
            "",
            vec![Key::node(
                "configuration",
                vec![
                    Key::node("properties", vec![Key::leaf("name", KeyValue::String("vm".into()))]),
                    Key::leaf("item", KeyValue::Int(-1)),
                    Key::leaf("item", KeyValue::UInt(2)),
                ],
            )],
        );
        assert_eq!(root.string("configuration/Properties/NAME"), Some("vm"));
        assert_eq!(root.integer("configuration/item"), Some(-1));
        let items: Vec<_> = root
            .get("configuration")
            .unwrap()
            .children_named("item")
            .map(|k| k.value.clone())
            .collect();
        assert_eq!(items, [KeyValue::Int(-1), KeyValue::UInt(2)]);
        assert_eq!(root.string("configuration/item"), None, "not a string");
        assert!(root.get("configuration/nothing/here").is_none());
        let mut text = String::new();
        root.dump(&mut text);
        assert_eq!(
            text,
            "configuration\n  properties\n    name = \"vm\"\n  item = -1\n  item = 2\n"
        );
    }
}
