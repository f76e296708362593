//! VMware's configuration "dictionary" files (`.vmx`, `.vmsd`, `.vmxf`): one
//! `key = "value"` per line, `#` comments, keys compared without regard to case (VMware
//! does so), values in double quotes with `|XX` (two hex digits) standing for a byte
//! that cannot appear plainly (`|22` a quote, `|0A` a newline, `|7C` the bar itself).
//! The text is UTF-8 unless `.encoding` names another character set (older files say
//! `windows-1252`); bytes that are not valid in the declared set are decoded as
//! windows-1252, as VMware's own readers do for files without the key.

use std::collections::HashMap;

use super::super::ConfigError;

/// Largest configuration file read: real ones are a few KiB, a `.vmsd` with hundreds of
/// snapshots some hundred KiB.
pub const MAX_DICTIONARY_BYTES: u64 = 16 << 20;

/// The entries of one dictionary file, in file order; lookups ignore case.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    entries: Vec<(String, String)>,
    /// Lower-case key → index of its last entry (a later line wins, as in VMware).
    index: HashMap<String, usize>,
}

impl Dictionary {
    /// Parse the bytes of a dictionary file. A line that is not `key = value` is an
    /// error naming its number: a file this reader misunderstands must not turn into a
    /// wrong snapshot tree.
    pub fn parse(bytes: &[u8]) -> Result<Dictionary, ConfigError> {
        let text = decode(bytes);
        let mut dict = Dictionary::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError::Syntax {
                    line: n + 1,
                    what: format!("{:?} is not `key = \"value\"`", clip(line)),
                });
            };
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(ConfigError::Syntax {
                    line: n + 1,
                    what: format!("{:?} is not a key", clip(key)),
                });
            }
            let value = unquote(value.trim()).ok_or_else(|| ConfigError::Syntax {
                line: n + 1,
                what: format!("the value of {key} has no closing quote"),
            })?;
            dict.index.insert(key.to_ascii_lowercase(), dict.entries.len());
            dict.entries.push((key.to_string(), unescape(&value)));
        }
        Ok(dict)
    }

    /// The value of `key` (any letter case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index
            .get(&key.to_ascii_lowercase())
            .map(|&i| self.entries[i].1.as_str())
    }

    /// Whether `key` is set to a true value (`TRUE`, `true`, `yes`, `1`).
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.get(key)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1"))
    }

    /// Every entry, in file order, as written.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether `bytes` look like the start of a dictionary file: text without NUL bytes
/// whose first meaningful line is `key = "value"` or a comment. Disk images never are.
pub fn looks_like_dictionary(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return false;
    }
    let text = decode(bytes);
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    first.split_once('=').is_some_and(|(k, v)| {
        let k = k.trim();
        !k.is_empty() && !k.contains(char::is_whitespace) && v.trim_start().starts_with('"')
    })
}

/// Decode as the `.encoding` key says, else UTF-8, falling back to windows-1252.
fn decode(bytes: &[u8]) -> String {
    let declared = declared_encoding(bytes).and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()));
    let encoding = declared.unwrap_or(encoding_rs::UTF_8);
    match encoding.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => text.into_owned(),
        None => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

/// The `.encoding` value, found on the ASCII bytes before decoding (the key and the
/// names of character sets are ASCII in every encoding VMware writes).
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    bytes.split(|&b| b == b'\n').find_map(|line| {
        let line = String::from_utf8_lossy(line);
        let (k, v) = line.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(".encoding")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The text between the quotes (`"a b"` → `a b`); an unquoted value is taken as it is,
/// up to a trailing comment. `None` when the closing quote is missing.
fn unquote(value: &str) -> Option<String> {
    match value.strip_prefix('"') {
        Some(rest) => rest.find('"').map(|end| rest[..end].to_string()),
        None => Some(value.split(" #").next().unwrap_or("").trim().to_string()),
    }
}

/// `|XX` → the byte 0xXX. Escaped bytes form UTF-8 sequences together (`|C3|A9` is
/// "é"), so the bytes are collected first and decoded once.
fn unescape(value: &str) -> String {
    if !value.contains('|') {
        return value.to_string();
    }
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'|' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| {
        encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(e.as_bytes())
            .0
            .into_owned()
    })
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_later_lines_win() {
        let d = Dictionary::parse(b".encoding = \"UTF-8\"\ndisplayName = \"a\"\n# c\n\nDISPLAYNAME = \"b\"\n").unwrap();
        assert_eq!(d.get("displayname"), Some("b"));
        assert_eq!(d.get(".Encoding"), Some("UTF-8"));
        assert_eq!(d.get("missing"), None);
    }

    #[test]
    fn bar_escapes_decode_to_bytes_and_utf8() {
        let d = Dictionary::parse(b"d = \"say |22hi|22|0Aline 2 |7C caf|C3|A9\"\n").unwrap();
        assert_eq!(d.get("d"), Some("say \"hi\"\nline 2 | café"));
        // A bar not followed by two hex digits stays.
        let d = Dictionary::parse(b"d = \"a|zz|\"\n").unwrap();
        assert_eq!(d.get("d"), Some("a|zz|"));
    }

    #[test]
    fn windows_1252_files_decode() {
        let d = Dictionary::parse(b".encoding = \"windows-1252\"\ndisplayName = \"Caf\xe9 \x80\"\n").unwrap();
        assert_eq!(d.get("displayName"), Some("Café €"));
        // Undeclared and not UTF-8: windows-1252.
        let d = Dictionary::parse(b"displayName = \"Caf\xe9\"\n").unwrap();
        assert_eq!(d.get("displayName"), Some("Café"));
    }

    #[test]
    fn broken_lines_are_errors_with_their_number() {
        let e = Dictionary::parse(b"a = \"1\"\nthis is not a pair\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Dictionary::parse(b"a = \"open\n").unwrap_err();
        assert!(e.to_string().contains("closing quote"), "{e}");
    }

    #[test]
    fn only_text_key_value_files_look_like_dictionaries() {
        assert!(looks_like_dictionary(b"# comment\n.encoding = \"UTF-8\"\n"));
        assert!(!looks_like_dictionary(b"vhdxfile\0\0"));
        assert!(!looks_like_dictionary(b"# Disk DescriptorFile\nversion=1\n"));
        assert!(!looks_like_dictionary(b"just text\n"));
    }
}
