//! Where a file's bytes are on the volume: its cluster chain, followed once (with every
//! check of [`FatTable::walk`]) and kept as runs of consecutive clusters, so that a
//! read at any offset finds its place with a binary search instead of re-following
//! the chain from the start, and reads each run with one volume read.
//!
//! A map's size grows with the file's fragmentation, not its length, and the reader
//! keeps many maps; a chain of more than `max_runs` runs (a file scattered cluster by
//! cluster, which only a crafted or badly fragmented volume has) is instead kept as a
//! sample of every `every`-th cluster: a read follows at most `every - 1` links from
//! the sample before its offset, then one per cluster it reads. Either way a map holds
//! at most `max_runs` entries.

use super::layout::{FatTable, Link};

/// Clusters `file_cluster..file_cluster + count` of a file lie at clusters
/// `cluster..cluster + count` of the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub file_cluster: u32,
    pub cluster: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClusterMap {
    /// In file order, without gaps, covering exactly the file's clusters.
    Runs(Box<[Run]>),
    /// `clusters[i]` is the volume cluster of the file's cluster `i * every`.
    Sampled { every: u32, clusters: Box<[u32]> },
}

impl ClusterMap {
    /// Map the clusters that hold the `size` bytes (> 0) of a file whose chain starts at
    /// `first`. The error says what is wrong with the chain, without naming the file.
    pub(super) fn build(
        fat: &FatTable,
        first: u32,
        size: u32,
        cluster_size: u32,
        max_runs: usize,
    ) -> Result<ClusterMap, String> {
        let need = u64::from(size).div_ceil(u64::from(cluster_size));
        // Known before the walk, so both shapes can be collected in the same one.
        let every = need.div_ceil(max_runs.max(1) as u64).max(1) as u32;
        let mut runs: Vec<Run> = Vec::new();
        let mut too_many = false;
        let mut samples = Vec::new();
        let mut got = 0u32;
        let ended = fat.walk(first, need, |c| {
            if got % every == 0 {
                samples.push(c);
            }
            if !too_many {
                let full = runs.len() == max_runs;
                match runs.last_mut() {
                    Some(r) if r.cluster.checked_add(r.count) == Some(c) => r.count += 1,
                    _ if full => too_many = true,
                    _ => runs.push(Run {
                        file_cluster: got,
                        cluster: c,
                        count: 1,
                    }),
                }
            }
            got += 1;
        })?;
        if ended && u64::from(got) < need {
            return Err(format!(
                "its cluster chain ends after {got} clusters, but its size ({size} bytes) needs {need}"
            ));
        }
        Ok(if too_many {
            ClusterMap::Sampled {
                every,
                clusters: samples.into(),
            }
        } else {
            ClusterMap::Runs(runs.into())
        })
    }

    /// The volume cluster of the file's cluster `at`, and how many of the file's
    /// clusters from there, at most `want` (> 0), follow it on the volume. `at` must be
    /// one of the mapped clusters.
    pub(super) fn locate(&self, fat: &FatTable, at: u64, want: u64) -> Result<(u32, u64), String> {
        match self {
            ClusterMap::Runs(runs) => {
                let i = runs.partition_point(|r| u64::from(r.file_cluster) + u64::from(r.count) <= at);
                let r = runs
                    .get(i)
                    .ok_or_else(|| format!("cluster {at} of the file is past its mapped clusters"))?;
                let into = at - u64::from(r.file_cluster);
                Ok((r.cluster + into as u32, (u64::from(r.count) - into).min(want)))
            }
            ClusterMap::Sampled { every, clusters } => {
                let every = u64::from(*every);
                let mut c = *clusters
                    .get((at / every) as usize)
                    .ok_or_else(|| format!("cluster {at} of the file is past its mapped clusters"))?;
                // The chain was checked when the map was made: each link below was
                // followed then, and the volume is read-only.
                let next = |c: u32| match fat.link(c)? {
                    Link::Next(n) => Ok(n),
                    other => Err(format!("cluster {c} no longer links onward ({other:?})")),
                };
                for _ in 0..at % every {
                    c = next(c)?;
                }
                // Only as far as the caller wants, which stays inside the mapped chain.
                let mut count = 1u64;
                while count < want && c.checked_add(count as u32) == Some(next(c + count as u32 - 1)?) {
                    count += 1;
                }
                Ok((c, count))
            }
        }
    }
}
