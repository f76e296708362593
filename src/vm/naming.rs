//! Directory names for a VM's checkpoints and disks (see README "Whole VMs").
//!
//! - A checkpoint is `<UTC creation time> <title>`, e.g. `2026-11-20_101503 Before
//!   upgrade`, so that `ls` sorts by creation time and the admin's name is kept; a
//!   checkpoint without a recorded time is its title alone. The running state is
//!   [`RUNNING_STATE`] (sorting after every time-stamped name).
//! - A disk is its base file's name without the extension (`Win11`, `data`), the name
//!   that tells a person which disk it is; where two disks would share it, each gets
//!   its controller location (`Win11 (scsi0-1)`).
//!
//! Clashes left over get ` (2)`, ` (3)`, ... in display order. Names depend only on the
//! configuration, so they are stable from one run to the next.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::chain::naming::{safe_component, utc_stamp};

/// The running state's directory.
pub const RUNNING_STATE: &str = "current";

/// One directory name per checkpoint (`None` time and `running` as described above).
pub fn checkpoint_names(inputs: &[(Option<SystemTime>, &str, bool)]) -> Vec<String> {
    let plain = inputs.iter().map(|(created, title, running)| {
        if *running {
            RUNNING_STATE.to_string()
        } else {
            match created {
                Some(t) => safe_component(&format!("{} {title}", utc_stamp(*t))),
                None => safe_component(title),
            }
        }
    });
    unique(plain.collect())
}

/// One directory name per disk, given each disk's base file stem and location.
pub fn disk_names(inputs: &[(&str, &str)]) -> Vec<String> {
    let mut stems: HashMap<String, usize> = HashMap::new();
    for (stem, _) in inputs {
        *stems.entry(safe_component(stem)).or_default() += 1;
    }
    let plain = inputs.iter().map(|(stem, location)| {
        let stem = safe_component(stem);
        if stems[&stem] > 1 {
            safe_component(&format!("{stem} ({})", location.replace(':', "-")))
        } else {
            stem
        }
    });
    unique(plain.collect())
}

/// Make names unique by appending ` (2)`, ` (3)`, ... to later repeats.
fn unique(names: Vec<String>) -> Vec<String> {
    let mut used = HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let mut candidate = name.clone();
            let mut n = 2;
            while !used.insert(candidate.clone()) {
                candidate = format!("{name} ({n})");
                n += 1;
            }
            candidate
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn checkpoints_are_time_then_title_and_the_running_state_sorts_last() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_687_703);
        let names = checkpoint_names(&[
            (Some(t), "Before upgrade", false),
            (Some(t + Duration::from_secs(60)), "a/b: c", false),
            (None, "no time", false),
            (None, "ignored", true),
        ]);
        assert_eq!(names[0], "2026-11-26_100823 Before upgrade");
        assert_eq!(names[1], "2026-11-26_100923 a_b: c");
        assert_eq!(names[2], "no time");
        assert_eq!(names[3], RUNNING_STATE);
        let mut sorted = names[..2].to_vec();
        sorted.push(names[3].clone());
        sorted.sort();
        assert_eq!(sorted.last().map(String::as_str), Some(RUNNING_STATE));
    }

    #[test]
    fn repeated_names_get_a_counter() {
        let t = UNIX_EPOCH;
        let names = checkpoint_names(&[(Some(t), "x", false), (Some(t), "x", false), (Some(t), "x", false)]);
        assert_eq!(
            names,
            [
                "1970-01-01_000000 x",
                "1970-01-01_000000 x (2)",
                "1970-01-01_000000 x (3)"
            ]
        );
    }

    #[test]
    fn disks_are_stems_with_the_location_where_they_clash() {
        let names = disk_names(&[("Win11", "scsi0:0"), ("data", "scsi0:1"), ("data", "sata0:0")]);
        assert_eq!(names, ["Win11", "data (scsi0-1)", "data (sata0-0)"]);
    }
}
