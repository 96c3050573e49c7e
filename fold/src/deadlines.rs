//! An index of entities by the next time something happens to them without
//! new events, so a tick costs the number of entities due.
//!
//! Almost every event moves its entity's deadline later (a heartbeat pushes
//! the idle deadline forward). Moving an entry of an ordered set costs a
//! removal, an insertion and an owned copy of the id each time; here a later
//! deadline only updates the entity's current deadline in place, and the
//! older, earlier entry in the heap is put back at the current deadline when
//! it comes due. An earlier deadline adds an entry; entries that no longer
//! match their entity's deadline are dropped when they come up.
//!
//! [`DeadlineHeap`] leaves the current deadline with the caller (the
//! presence table keeps it beside each user's state, so an event costs one
//! lookup); [`Deadlines`] keeps it in a map of its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use sessionfold_schemas::Millis;

/// Entries by deadline; each entity's current deadline is held by the
/// caller. An entry names its entity by `K`: the id itself, or (in the
/// presence table, where a million users make every byte count) a hash of it
/// that the caller resolves to the users it may stand for.
#[derive(Debug, Clone)]
pub(crate) struct DeadlineHeap<K: Ord> {
    heap: BinaryHeap<Reverse<(Millis, K)>>,
}

impl<K: Ord> Default for DeadlineHeap<K> {
    fn default() -> Self {
        DeadlineHeap {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord> DeadlineHeap<K> {
    /// Notes that an entity's deadline moved from `old` to `new`; `key` is
    /// only made when an entry is added.
    pub(crate) fn moved(
        &mut self,
        key: impl FnOnce() -> K,
        old: Option<Millis>,
        new: Option<Millis>,
    ) {
        if let Some(t) = new
            && old.is_none_or(|o| t < o)
        {
            self.heap.push(Reverse((t, key())));
        }
    }

    /// The earliest deadline (possibly earlier than any current one: a
    /// caller waking then finds nothing due, and the stale entry is gone).
    pub(crate) fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns an entity whose current deadline (as `current`
    /// tells; for a hash, the earliest of the entities it stands for) is at
    /// or before `now`. The caller then clears that deadline.
    pub(crate) fn pop_due(
        &mut self,
        now: Millis,
        mut current: impl FnMut(&K) -> Option<Millis>,
    ) -> Option<K> {
        while self.next()? <= now {
            let Reverse((t, key)) = self.heap.pop()?;
            match current(&key) {
                Some(cur) if cur == t => return Some(key),
                // Moved later since: due again at its current deadline.
                Some(cur) if cur > t => self.heap.push(Reverse((cur, key))),
                // Moved earlier (another entry holds it) or cleared.
                _ => {}
            }
        }
        None
    }
}

/// Entities ordered by deadline, with their current deadlines.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadlines {
    heap: DeadlineHeap<String>,
    of: HashMap<String, Millis>,
}

impl Deadlines {
    /// Sets (or, with `None`, clears) an entity's deadline.
    pub(crate) fn set(&mut self, id: &str, deadline: Option<Millis>) {
        let old = self.of.get(id).copied();
        self.heap.moved(|| id.to_owned(), old, deadline);
        match (self.of.get_mut(id), deadline) {
            (Some(cur), Some(t)) => *cur = t,
            (Some(_), None) => {
                self.of.remove(id);
            }
            (None, Some(t)) => {
                self.of.insert(id.to_owned(), t);
            }
            (None, None) => {}
        }
    }

    /// Removes and returns an entity whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<String> {
        let of = &self.of;
        let id = self.heap.pop_due(now, |id| of.get(id).copied())?;
        self.of.remove(&id);
        Some(id)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut Deadlines, now: Millis) -> Vec<String> {
        std::iter::from_fn(|| d.pop_due(now)).collect()
    }

    /// Entities named by a shared key (a hash that collides), with their
    /// current deadlines: what comes due at each `now`, the way the
    /// presence table's tick resolves a popped hash.
    fn due_under_shared_keys(
        heap: &mut DeadlineHeap<u64>,
        current: &mut std::collections::BTreeMap<&'static str, (u64, Option<Millis>)>,
        now: Millis,
    ) -> Vec<&'static str> {
        let mut out = Vec::new();
        loop {
            let cur = &*current;
            let Some(key) = heap.pop_due(now, |k| {
                cur.values()
                    .filter(|(kk, _)| kk == k)
                    .filter_map(|(_, d)| *d)
                    .min()
            }) else {
                break;
            };
            for (id, (k, d)) in current.iter_mut() {
                if *k == key && d.is_some_and(|t| t <= now) {
                    out.push(*id);
                    *d = None;
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn entities_sharing_a_key_each_come_due_at_their_own_time() {
        let mut heap = DeadlineHeap::default();
        let mut current = std::collections::BTreeMap::new();
        for (id, key, t) in [("a", 7, 10), ("b", 7, 20), ("c", 7, 20), ("d", 8, 15)] {
            current.insert(id, (key, Some(t)));
            heap.moved(|| key, None, Some(t));
        }
        // a moves later, past b and c.
        heap.moved(|| 7, Some(10), Some(30));
        current.insert("a", (7, Some(30)));
        assert_eq!(
            due_under_shared_keys(&mut heap, &mut current, 9),
            Vec::<&str>::new()
        );
        assert_eq!(
            due_under_shared_keys(&mut heap, &mut current, 15),
            vec!["d"]
        );
        assert_eq!(
            due_under_shared_keys(&mut heap, &mut current, 29),
            vec!["b", "c"]
        );
        assert_eq!(
            due_under_shared_keys(&mut heap, &mut current, 30),
            vec!["a"]
        );
        assert_eq!(
            due_under_shared_keys(&mut heap, &mut current, 1000),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn moved_deadlines_come_due_at_their_latest_time_once() {
        let mut d = Deadlines::default();
        d.set("a", Some(10));
        d.set("b", Some(20));
        d.set("a", Some(30)); // later: updated in place
        d.set("b", Some(5)); // earlier: a new entry
        d.set("c", Some(7));
        d.set("c", None); // cleared
        assert_eq!(drain(&mut d, 9), vec!["b"]);
        assert_eq!(drain(&mut d, 29), Vec::<String>::new());
        assert_eq!(drain(&mut d, 30), vec!["a"]);
        assert_eq!(drain(&mut d, 1000), Vec::<String>::new());
        // Set again after it came due: due again.
        d.set("a", Some(40));
        assert_eq!(drain(&mut d, 40), vec!["a"]);
    }
}
