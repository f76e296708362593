//! A thread-safe LRU bounded both by entry count and by an estimate of bytes held, so a
//! few huge directories or run maps cannot grow memory without bound.

use std::sync::Mutex;

use lru::LruCache;

pub(super) struct Cache<V> {
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    lru: LruCache<u64, (V, usize)>,
    weight: usize,
    max_len: usize,
    max_weight: usize,
}

impl<V: Clone> Cache<V> {
    pub fn new(max_len: usize, max_weight: usize) -> Self {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                weight: 0,
                max_len,
                max_weight,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // A panic elsewhere cannot leave the LRU half-updated in a way that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: u64) -> Option<V> {
        self.lock().lru.get(&key).map(|(v, _)| v.clone())
    }

    /// Keep `value`, which holds about `weight` bytes; something larger than the whole
    /// budget is not kept at all.
    pub fn put(&self, key: u64, value: V, weight: usize) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_weight() {
        let c = Cache::new(3, 100);
        c.put(1, "a", 10);
        c.put(2, "b", 10);
        c.put(3, "c", 10);
        assert_eq!(c.get(1), Some("a")); // 1 is now the most recent
        c.put(4, "d", 10);
        assert_eq!(c.get(2), None, "the least recently used goes first");
        c.put(5, "e", 85);
        assert_eq!(c.get(5), Some("e"));
        assert_eq!(c.lock().weight, 95);
        c.put(6, "f", 101);
        assert_eq!(c.get(6), None, "larger than the whole budget: not kept");
        c.put(5, "E", 5);
        assert_eq!(c.lock().weight, 15, "4 (10) and the new 5 (5)");
    }
}
