//! Checkpoint directory names, derived from the files until VM configuration files are
//! read. See README "Checkpoint names".
//!
//! `<depth>_<time>`: depth 1 is the base disk, its child 2, and so on, zero-padded so
//! that `ls` sorts by depth; time is the file's modification time in UTC
//! (`YYYY-MM-DD_HHMMSS`), which for a frozen state is the moment the next checkpoint
//! was taken and the state stopped changing. The newest leaf, the state a running VM
//! writes to, is `<depth>_current`. Where two states would share a name (siblings with
//! the same time, files copied without their times) the file's stem is appended, then a
//! counter. Names depend only on the tree and the files' times, so they are the same
//! from one run to the next while the files are unchanged.

use std::collections::HashSet;
use std::time::SystemTime;

/// What a name is made from.
#[derive(Debug, Clone)]
pub struct NameInput {
    /// 1 for the base disk.
    pub depth: usize,
    pub modified: SystemTime,
    pub current: bool,
    /// The file name without its extension.
    pub stem: String,
}

pub fn assign_names(inputs: &[NameInput]) -> Vec<String> {
    let max_depth = inputs.iter().map(|i| i.depth).max().unwrap_or(1);
    let width = max_depth.to_string().len().max(2);
    let base: Vec<String> = inputs
        .iter()
        .map(|i| {
            let when = if i.current {
                "current".to_string()
            } else {
                utc_stamp(i.modified)
            };
            format!("{:0width$}_{when}", i.depth)
        })
        .collect();

    let mut names = Vec::with_capacity(inputs.len());
    let mut used = HashSet::new();
    for (i, name) in base.iter().enumerate() {
        let clash = base.iter().filter(|b| *b == name).count() > 1;
        let mut candidate = if clash {
            format!("{name}_{}", safe_component(&inputs[i].stem))
        } else {
            name.clone()
        };
        let mut n = 2;
        let plain = candidate.clone();
        while !used.insert(candidate.clone()) {
            candidate = format!("{plain}_{n}");
            n += 1;
        }
        names.push(candidate);
    }
    names
}

/// `YYYY-MM-DD_HHMMSS` in UTC.
pub fn utc_stamp(t: SystemTime) -> String {
    // RFC 3339 "2026-11-20T10:15:03Z" → "2026-11-20_101503".
    let s = humantime::format_rfc3339_seconds(t).to_string();
    let (date, time) = s.split_once('T').unwrap_or((&s, ""));
    format!("{date}_{}", time.trim_end_matches('Z').replace(':', ""))
}

/// A string made safe as one path component: no `/`, no NUL or control characters,
/// never empty, `.` or `..`.
pub fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.trim() {
        "" | "." | ".." => "_".to_string(),
        t => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn input(depth: usize, secs: u64, current: bool, stem: &str) -> NameInput {
        NameInput {
            depth,
            modified: at(secs),
            current,
            stem: stem.into(),
        }
    }

    #[test]
    fn names_tell_depth_time_and_current() {
        let names = assign_names(&[
            input(1, 1_700_000_000, false, "vm"),
            input(2, 1_700_003_600, false, "vm_A"),
            input(3, 1_700_007_200, true, "vm_B"),
        ]);
        assert_eq!(names, ["01_2023-11-14_221320", "02_2023-11-14_231320", "03_current"]);
    }

    #[test]
    fn clashes_get_the_file_stem_then_a_counter() {
        let names = assign_names(&[
            input(1, 100, false, "vm"),
            input(2, 200, false, "vm_A"),
            input(2, 200, false, "vm_B"),
            input(2, 200, false, "vm_B"),
        ]);
        assert_eq!(names[1], "02_1970-01-01_000320_vm_A");
        assert_eq!(names[2], "02_1970-01-01_000320_vm_B");
        assert_eq!(names[3], "02_1970-01-01_000320_vm_B_2");
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn depth_is_padded_to_sort_in_ls() {
        let inputs: Vec<NameInput> = (1..=120).map(|d| input(d, d as u64, d == 120, "f")).collect();
        let names = assign_names(&inputs);
        assert!(names[0].starts_with("001_") && names[119] == "120_current");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
    }

    #[test]
    fn stems_are_made_safe() {
        assert_eq!(safe_component("a/b\\c\u{1}"), "a_b_c_");
        assert_eq!(safe_component(".."), "_");
        assert_eq!(safe_component(""), "_");
    }
}
