//! A bounded LRU cache shared between threads: the one shape every cache here has.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

pub struct Cache<K: Hash + Eq, V: Clone> {
    inner: Mutex<LruCache<K, V>>,
}

impl<K: Hash + Eq, V: Clone> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        write!(f, "Cache({}/{})", c.len(), c.cap())
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// A cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Cache {
            inner: Mutex::new(LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap())),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    pub fn put(&self, key: K, value: V) {
        self.lock().put(key, value);
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
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<K, V>> {
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
}
