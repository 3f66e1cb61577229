//! Request ids and the wait registry: a proposal's result goes back to the handler that proposed it.
//!
//! Ids follow etcd's scheme: the low 16 bits of the member id in the top 16 bits, then a counter that
//! starts from the current time in milliseconds, so ids do not repeat across restarts of a member.
//! Invariant: a waiter is removed exactly once (triggered, or cancelled by its own timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Generates request ids unique to this member.
pub struct IdGen {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;

impl IdGen {
    pub fn new(member_id: u64) -> IdGen {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGen {
            prefix: (member_id & 0xFFFF) << SUFFIX_BITS,
            suffix: AtomicU64::new((ms << 8) & ((1 << SUFFIX_BITS) - 1)),
        }
    }

    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (s & ((1 << SUFFIX_BITS) - 1))
    }
}

/// Waiters keyed by request id.
pub struct Wait<T> {
    map: Mutex<HashMap<u64, oneshot::Sender<T>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Wait<T> {
    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(id, tx);
        rx
    }

    /// Delivers a result; false when nobody waits for `id` (another member's request, or timed out).
    pub fn trigger(&self, id: u64, value: T) -> bool {
        match self.map.lock().remove(&id) {
            Some(tx) => tx.send(value).is_ok(),
            None => false,
        }
    }

    /// Requests waiting for their result.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cancel(&self, id: u64) {
        self.map.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_member() {
        let g = IdGen::new(0x8e9e05c52164694d);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x694d);
    }

    #[tokio::test]
    async fn trigger_reaches_the_waiter_once() {
        let w: Wait<u32> = Wait::default();
        let rx = w.register(7);
        assert!(w.trigger(7, 42));
        assert!(!w.trigger(7, 43));
        assert_eq!(rx.await.unwrap(), 42);
    }
}
