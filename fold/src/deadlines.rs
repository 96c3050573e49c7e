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

/// Entries by deadline; each entity's current deadline is held by the caller.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeadlineHeap {
    heap: BinaryHeap<Reverse<(Millis, String)>>,
}

impl DeadlineHeap {
    /// Notes that an entity's deadline moved from `old` to `new`.
    pub(crate) fn moved(&mut self, id: &str, old: Option<Millis>, new: Option<Millis>) {
        if let Some(t) = new
            && old.is_none_or(|o| t < o)
        {
            self.heap.push(Reverse((t, id.to_owned())));
        }
    }

    /// The earliest deadline (possibly earlier than any current one: a
    /// caller waking then finds nothing due, and the stale entry is gone).
    pub(crate) fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns an entity whose current deadline (as `current`
    /// tells) is at or before `now`. The caller then clears that deadline.
    pub(crate) fn pop_due(
        &mut self,
        now: Millis,
        mut current: impl FnMut(&str) -> Option<Millis>,
    ) -> Option<String> {
        while self.next()? <= now {
            let Reverse((t, id)) = self.heap.pop()?;
            match current(&id) {
                Some(cur) if cur == t => return Some(id),
                // Moved later since: due again at its current deadline.
                Some(cur) if cur > t => self.heap.push(Reverse((cur, id))),
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
    heap: DeadlineHeap,
    of: HashMap<String, Millis>,
}

impl Deadlines {
    /// Sets (or, with `None`, clears) an entity's deadline.
    pub(crate) fn set(&mut self, id: &str, deadline: Option<Millis>) {
        let old = self.of.get(id).copied();
        self.heap.moved(id, old, deadline);
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
