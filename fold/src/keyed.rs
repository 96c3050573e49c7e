//! A hash table of boxed values found by an id each value holds, so that a
//! million users' ids are stored once, not once in the value and again as
//! the table's key.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use sessionfold_schemas::UserPresence;

/// A value that names itself.
pub trait Keyed {
    /// The id the value is found by; it must not change while the value is held.
    fn key(&self) -> &str;
}

impl Keyed for UserPresence {
    fn key(&self) -> &str {
        &self.user_id
    }
}

/// Boxed values by their own id. A slot is one pointer: a table's capacity
/// is a power of two, up to half of it empty, so inline slots of a key and
/// a value cost more than the values themselves.
#[derive(Clone)]
pub struct KeyedTable<T> {
    table: HashTable<Box<T>>,
    // foldhash: its per-table random seed keeps crafted ids from piling
    // into one bucket, at a fraction of SipHash's cost.
    hasher: foldhash::fast::RandomState,
}

impl<T> Default for KeyedTable<T> {
    fn default() -> Self {
        KeyedTable {
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for KeyedTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.table.iter()).finish()
    }
}

impl<T: Keyed> KeyedTable<T> {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The table's hash of `id`: an 8-byte stand-in for the id in an index
    /// beside the table (seeded per table, so only this table resolves it).
    pub fn hash_of(&self, id: &str) -> u64 {
        self.hash(id)
    }

    /// Every value whose id has the hash `hash` (one, but for a collision).
    pub fn with_hash(&self, hash: u64) -> impl Iterator<Item = &T> {
        self.table
            .iter_hash(hash)
            .filter(move |v| self.hash(v.key()) == hash)
            .map(|b| &**b)
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The value named `id`.
    pub fn get(&self, id: &str) -> Option<&T> {
        self.table
            .find(self.hash(id), |v| v.key() == id)
            .map(|b| &**b)
    }

    /// The value named `id`, to change anything but its id.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let hash = self.hash(id);
        self.table
            .find_mut(hash, |v| v.key() == id)
            .map(|b| &mut **b)
    }

    /// Holds `value`, replacing and returning the one of the same id.
    pub fn insert(&mut self, value: Box<T>) -> Option<Box<T>> {
        let hash = self.hash(value.key());
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |v| v.key() == value.key(),
            |v| hasher.hash_one(v.key()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Some(std::mem::replace(o.get_mut(), value))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(value);
                None
            }
        }
    }

    /// The value named `id`, made by `make` (which must give it that id) when absent.
    pub fn get_or_insert_with(&mut self, id: &str, make: impl FnOnce() -> Box<T>) -> &mut T {
        let hash = self.hash(id);
        let hasher = &self.hasher;
        let held = self
            .table
            .entry(hash, |v| v.key() == id, |v| hasher.hash_one(v.key()))
            .or_insert_with(make)
            .into_mut();
        debug_assert_eq!(held.key(), id);
        held
    }

    /// Removes and returns the value named `id`.
    pub fn remove(&mut self, id: &str) -> Option<Box<T>> {
        let hash = self.hash(id);
        self.table
            .find_entry(hash, |v| v.key() == id)
            .ok()
            .map(|o| o.remove().0)
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.table.iter().map(|b| &**b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, offset: i64) -> Box<UserPresence> {
        Box::new(UserPresence {
            user_id: id.into(),
            source_offset: offset,
            ..UserPresence::default()
        })
    }

    #[test]
    fn values_are_found_replaced_and_removed_by_their_own_id() {
        let mut t = KeyedTable::default();
        assert!(t.insert(user("a", 1)).is_none());
        assert!(t.insert(user("b", 2)).is_none());
        let old = t.insert(user("a", 3)).map(|u| u.source_offset);
        assert_eq!(old, Some(1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("a").map(|u| u.source_offset), Some(3));
        if let Some(b) = t.get_mut("b") {
            b.source_offset = 7;
        }
        assert_eq!(t.get("b").map(|u| u.source_offset), Some(7));
        assert_eq!(t.remove("a").map(|u| u.source_offset), Some(3));
        assert!(t.get("a").is_none());
        assert!(t.remove("a").is_none());
        let mut ids: Vec<&str> = t.values().map(|u| &*u.user_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["b"]);
    }

    #[test]
    fn many_values_survive_growth() {
        let mut t = KeyedTable::default();
        for i in 0..10_000 {
            t.insert(user(&format!("u{i}"), i));
        }
        assert_eq!(t.len(), 10_000);
        assert!((0..10_000).all(|i| t.get(&format!("u{i}")).map(|u| u.source_offset) == Some(i)));
    }
}
