//! A directory's entries by name, for lookups: built once from the listing, then each
//! lookup costs one hash and, nearly always, one name comparison, whatever the size of
//! the directory (a FUSE `lookup` per file of a 100,000-entry directory must not list
//! it each time).
//!
//! Names match as the filesystem's own lookups do: byte for byte (ext4), or without
//! regard to letter case (NTFS, FAT: see [`name_key`]). The listing already leaves out
//! what is not looked up by name (DOS 8.3 aliases, NTFS metadata files), so exactly the
//! listed names are found. Where two listed names have the same key (NTFS's POSIX
//! namespace allows `a` and `A` side by side), the later in the listing is found, as
//! the map this replaces did.
//!
//! Layout: an open-addressing table of `(hash tag, entry index + 1)` pairs (0 marks a
//! free slot), at most half full, so 16 bytes an entry on top of the listing itself.

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::fs::DirEntry;

pub(super) struct NameIndex {
    entries: Arc<[DirEntry]>,
    fold: bool,
    slots: Box<[(u32, u32)]>,
}

/// The lookup key of a name: its bytes, or for a case-insensitive filesystem its upper
/// case (Unicode simple case mapping, an approximation of NTFS's upcase table that
/// agrees with it on every letter Windows users type).
pub(super) fn name_key(name: &OsStr, fold: bool) -> Vec<u8> {
    if fold {
        name.to_string_lossy().to_uppercase().into_bytes()
    } else {
        name.as_encoded_bytes().to_vec()
    }
}

impl NameIndex {
    /// The index of `entries`; `fold` for a case-insensitive filesystem. `hasher` is the
    /// tree's own (randomly keyed, so that names chosen by whoever wrote the image cannot
    /// all collide).
    pub fn build(entries: Arc<[DirEntry]>, fold: bool, hasher: &RandomState) -> NameIndex {
        // Past u32 indexes (never in practice: that listing alone would take 160 GiB)
        // lookups scan the listing.
        if entries.len() >= u32::MAX as usize / 2 {
            return NameIndex {
                entries,
                fold,
                slots: Box::new([]),
            };
        }
        let cap = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![(0u32, 0u32); cap].into_boxed_slice();
        let mask = cap - 1;
        for (i, e) in entries.iter().enumerate() {
            let key = name_key(&e.name, fold);
            let h = hasher.hash_one(&key[..]);
            let tag = (h >> 32) as u32;
            let mut pos = h as usize & mask;
            loop {
                let (t, idx) = slots[pos];
                if idx == 0 {
                    slots[pos] = (tag, i as u32 + 1);
                    break;
                }
                // The same key again: the later entry is the one found.
                if t == tag && name_key(&entries[idx as usize - 1].name, fold) == key {
                    slots[pos].1 = i as u32 + 1;
                    break;
                }
                pos = (pos + 1) & mask;
            }
        }
        NameIndex { entries, fold, slots }
    }

    /// The entry named `name`, if the directory has one.
    pub fn get(&self, name: &OsStr, hasher: &RandomState) -> Option<&DirEntry> {
        let key = name_key(name, self.fold);
        if self.slots.is_empty() {
            return self.entries.iter().rev().find(|e| name_key(&e.name, self.fold) == key);
        }
        let h = hasher.hash_one(&key[..]);
        let tag = (h >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut pos = h as usize & mask;
        loop {
            let (t, idx) = self.slots[pos];
            if idx == 0 {
                return None;
            }
            let e = &self.entries[idx as usize - 1];
            // Without folding, the key is the name itself: compare in place.
            if t == tag
                && (if self.fold {
                    name_key(&e.name, true) == key
                } else {
                    e.name == name
                })
            {
                return Some(e);
            }
            pos = (pos + 1) & mask;
        }
    }

    /// About how many bytes the index and the listing it holds take.
    pub fn weight(&self) -> usize {
        self.slots.len() * 8 + self.entries.iter().map(|e| 48 + e.name.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FileKind;

    fn listing(names: &[&str]) -> Arc<[DirEntry]> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| DirEntry {
                name: (*n).into(),
                node: 100 + i as u64,
                kind: FileKind::File,
            })
            .collect()
    }

    fn node(ix: &NameIndex, name: &str, h: &RandomState) -> Option<u64> {
        ix.get(OsStr::new(name), h).map(|e| e.node)
    }

    #[test]
    fn bytes_match_exactly() {
        let h = RandomState::new();
        let ix = NameIndex::build(listing(&["a", "A", "café", "b.txt"]), false, &h);
        assert_eq!(node(&ix, "a", &h), Some(100));
        assert_eq!(node(&ix, "A", &h), Some(101));
        assert_eq!(node(&ix, "café", &h), Some(102));
        assert_eq!(node(&ix, "CAFÉ", &h), None);
        assert_eq!(node(&ix, "B.TXT", &h), None);
        assert_eq!(node(&ix, "missing", &h), None);
        assert_eq!(node(&ix, "", &h), None);
    }

    #[test]
    fn folded_names_match_any_case_and_the_later_duplicate_wins() {
        let h = RandomState::new();
        let ix = NameIndex::build(listing(&["Readme.TXT", "café", "x", "X"]), true, &h);
        assert_eq!(node(&ix, "README.txt", &h), Some(100));
        assert_eq!(node(&ix, "readme.txt", &h), Some(100));
        assert_eq!(node(&ix, "CAFÉ", &h), Some(101));
        assert_eq!(
            node(&ix, "x", &h),
            Some(103),
            "as the HashMap it replaces: the last one"
        );
        assert_eq!(node(&ix, "X", &h), Some(103));
        assert_eq!(node(&ix, "readme", &h), None);
    }

    #[test]
    fn every_name_of_a_large_directory_is_found_in_constant_probes() {
        let h = RandomState::new();
        let names: Vec<String> = (1..=100_000).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let ix = NameIndex::build(listing(&refs), false, &h);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(node(&ix, n, &h), Some(100 + i as u64));
        }
        assert_eq!(node(&ix, "0", &h), None);
        assert_eq!(node(&ix, "100001", &h), None);
        // At most half full, so that probe runs stay short.
        assert!(ix.slots.len() >= 200_000);
        // The longest run of occupied slots (what a miss may walk) stays small.
        let mut longest = 0;
        let mut run = 0;
        for s in ix.slots.iter() {
            run = if s.1 == 0 { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        assert!(longest < 100, "a probe run of {longest} slots");
    }

    #[test]
    fn an_empty_directory_finds_nothing() {
        let h = RandomState::new();
        let ix = NameIndex::build(listing(&[]), true, &h);
        assert_eq!(node(&ix, "a", &h), None);
    }
}
