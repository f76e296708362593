//! A bounded LRU cache shared between threads: the one shape every cache here has.
//!
//! Bounded by entry count, and optionally also by an estimate of the bytes the values
//! hold ([`Cache::weighted`]), so that a few huge values (listings of directories with
//! a million entries) cannot grow memory without bound.

use std::hash::Hash;
use std::sync::Mutex;

use lru::LruCache;

pub struct Cache<K: Hash + Eq, V: Clone> {
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K: Hash + Eq, V> {
    lru: LruCache<K, (V, usize)>,
    weight: usize,
    max_len: usize,
    max_weight: usize,
}

impl<K: Hash + Eq, V: Clone> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        write!(f, "Cache({}/{}, {} bytes)", c.lru.len(), c.max_len, c.weight)
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// A cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self::weighted(capacity, usize::MAX)
    }

    /// A cache of at most `capacity` entries holding at most about `max_weight` bytes
    /// (as [`Cache::put_weighed`] is told).
    pub fn weighted(capacity: usize, max_weight: usize) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                weight: 0,
                max_len: capacity.max(1),
                max_weight,
            }),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().lru.get(key).map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        self.put_weighed(key, value, 0);
    }

    /// Keep `value`, which holds about `weight` bytes; something larger than the whole
    /// budget is not kept at all.
    pub fn put_weighed(&self, key: K, value: V, weight: usize) {
        let mut c = self.lock();
        if weight > c.max_weight {
            return;
        }
        if let Some((_, old)) = c.lru.put(key, (value, weight)) {
            c.weight -= old;
        }
        c.weight += weight;
        while c.weight > c.max_weight || c.lru.len() > c.max_len {
            match c.lru.pop_lru() {
                Some((_, (_, w))) => c.weight -= w,
                None => break,
            }
        }
    }

    /// The cached value, or `make()`'s, which is then cached. Two threads missing at
    /// once may both make it; the values are equal, so either is kept.
    pub fn get_or_try_insert<E>(&self, key: K, make: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let v = make()?;
        self.put(key, v.clone());
        Ok(v)
    }

    // A panic while the lock was held cannot leave the cache inconsistent (each call is
    // one LRU operation), so a poisoned lock is taken over rather than propagated.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recent_entries() {
        let c = Cache::new(2);
        c.put(1, "a");
        c.put(2, "b");
        assert_eq!(c.get(&1), Some("a"));
        c.put(3, "c"); // evicts 2, the least recently used
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some("a"));
        let made: Result<_, ()> = c.get_or_try_insert(4, || Ok("d"));
        assert_eq!(made, Ok("d"));
        assert_eq!(c.get(&4), Some("d"));
        assert_eq!(c.get_or_try_insert(5, || Err("no")), Err("no"));
        assert_eq!(c.get(&5), None);
    }

    #[test]
    fn bounded_by_count_and_weight() {
        let c = Cache::weighted(3, 100);
        c.put_weighed(1, "a", 10);
        c.put_weighed(2, "b", 10);
        c.put_weighed(3, "c", 10);
        assert_eq!(c.get(&1), Some("a"));
        c.put_weighed(4, "d", 10);
        assert_eq!(c.get(&2), None, "the least recently used goes first");
        c.put_weighed(5, "e", 85);
        assert_eq!(c.get(&5), Some("e"));
        assert_eq!(c.lock().weight, 95);
        c.put_weighed(6, "f", 101);
        assert_eq!(c.get(&6), None, "larger than the whole budget: not kept");
        c.put_weighed(5, "E", 5);
        assert_eq!(c.lock().weight, 15, "4 (10) and the new 5 (5)");
    }
}
