//! An index of entities by the next time something happens to them without
//! new events, so a tick costs the number of entities due.

use std::collections::{BTreeSet, HashMap};

use sessionfold_schemas::Millis;

/// Entities ordered by deadline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadlines {
    by_time: BTreeSet<(Millis, String)>,
    of: HashMap<String, Millis>,
}

impl Deadlines {
    /// Sets (or, with `None`, clears) an entity's deadline.
    pub(crate) fn set(&mut self, id: &str, deadline: Option<Millis>) {
        if self.of.get(id).copied() == deadline {
            return;
        }
        if let Some(old) = self.of.remove(id) {
            self.by_time.remove(&(old, id.to_owned()));
        }
        if let Some(t) = deadline {
            self.by_time.insert((t, id.to_owned()));
            self.of.insert(id.to_owned(), t);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Removes and returns an entity whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<String> {
        if self.next()? > now {
            return None;
        }
        let (_, id) = self.by_time.pop_first()?;
        self.of.remove(&id);
        Some(id)
    }
}
