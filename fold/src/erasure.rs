//! Forgetting users: the rule every fold applies once a user has asked to
//! be forgotten. Their activity is left out; the imports they own go to the
//! user the erasure names, or are deleted; an import that names them as its
//! previous owner no longer does. Applying the rule twice changes nothing,
//! so the processor applies it when it learns of an erasure, to every
//! partition it owns, and again to every import an event touches later.

use std::collections::HashMap;

use sessionfold_schemas::{ImportState, OwnedImports, UserErased};

/// The users forgotten so far, in the order they became known.
#[derive(Debug, Clone, Default)]
pub struct Erasures {
    users: HashMap<String, UserErased>,
    order: Vec<String>,
}

impl Erasures {
    /// No one forgotten.
    pub fn new() -> Erasures {
        Erasures::default()
    }

    /// Adds an erasure; returns false when the user was already forgotten
    /// (the first record's import rule stands: what it did cannot be undone).
    pub fn insert(&mut self, e: UserErased) -> bool {
        if self.users.contains_key(&e.user_id) {
            return false;
        }
        self.order.push(e.user_id.clone());
        self.users.insert(e.user_id.clone(), e);
        true
    }

    /// Whether this user was forgotten.
    pub fn forgets(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// The erasure of a user.
    pub fn get(&self, user_id: &str) -> Option<&UserErased> {
        self.users.get(user_id)
    }

    /// How many users are forgotten.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no one is forgotten.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The erasures from the `from`-th known onwards, in the order they
    /// became known: what a table that applied the first `from` still lacks.
    pub fn since(&self, from: usize) -> impl Iterator<Item = &UserErased> {
        self.order
            .iter()
            .skip(from)
            .filter_map(|id| self.users.get(id))
    }
}

/// What the rule does to one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing of a forgotten user in it.
    Untouched,
    /// Its references to forgotten users were rewritten.
    Rewritten(Box<ImportState>),
    /// It belonged to a forgotten user whose imports are deleted.
    Deleted,
}

/// Applies the erasures to one import's state.
pub(crate) fn import_outcome(s: &ImportState, erasures: &Erasures) -> Outcome {
    let owner = s.owner_id.as_deref().and_then(|o| erasures.get(o));
    let previous = s
        .previous_owner_id
        .as_deref()
        .is_some_and(|p| erasures.forgets(p));
    if owner.is_none() && !previous {
        return Outcome::Untouched;
    }
    let mut new = s.clone();
    if previous {
        new.previous_owner_id = None;
    }
    if let Some(e) = owner {
        // A chain of erasures (ann's imports to bob, bob's to carol) ends
        // at the first user not forgotten; a cycle or a dead end deletes.
        let mut to = &e.imports;
        let mut hops = 0;
        loop {
            match to {
                OwnedImports::Delete => return Outcome::Deleted,
                OwnedImports::TransferTo(next) => match erasures.get(next) {
                    Some(further) if hops < erasures.len() => {
                        to = &further.imports;
                        hops += 1;
                    }
                    Some(_) => return Outcome::Deleted,
                    None => {
                        new.owner_id = Some(next.clone());
                        break;
                    }
                },
            }
        }
    }
    Outcome::Rewritten(Box::new(new))
}
