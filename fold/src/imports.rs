//! Import ownership: import events folded into per-import state, with the
//! lifecycle enforced. A refused event leaves the state as it was.

use std::collections::{BTreeSet, HashMap};

use crate::deadlines::Deadlines;

use sessionfold_schemas::{ImportBody, ImportEvent, ImportState, ImportStatus, Millis};

use crate::dedup::{Memory, admit, check_key, event_hash, forget_before, remember};
use crate::erasure::{Erasures, Outcome, import_outcome};
use crate::{Applied, Position, Rejected};

/// The rules of import ownership, durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportConfig {
    /// A finished import (completed, abandoned, deleted) is forgotten this
    /// long after its last event.
    pub retention: Millis,
    /// Event ids are remembered this long behind an import's latest event.
    pub dedup_window: Millis,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            retention: 24 * 3_600_000,
            dedup_window: 10 * 60_000,
        }
    }
}

/// Who vouched for an import event's actor. The ingest names it in a record
/// header once it has checked the caller's token; a record without one
/// speaks only for the actor it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authority {
    /// Only the actor named in the event: it must own the import.
    #[default]
    Actor,
    /// An admin, an `IMPORT_ADMIN` or a service: may act on any import.
    Elevated,
}

impl Authority {
    /// The authority a record's actor-role header value grants.
    pub fn from_role(role: Option<&str>) -> Authority {
        match role {
            Some("admin" | "import_admin" | "service") => Authority::Elevated,
            _ => Authority::Actor,
        }
    }
}

/// Refuses an event on an existing import from an actor who may not act on it.
/// An event with no actor is a service acting on its own.
fn check_actor(old: &ImportState, e: &ImportEvent, authority: Authority) -> Result<(), Rejected> {
    let Some(actor) = e.actor_id.as_deref() else {
        return Ok(());
    };
    if authority == Authority::Elevated {
        return Ok(());
    }
    let refuse = |reason: String| {
        Err(Rejected::NotOwner {
            import_id: e.import_id.clone(),
            reason,
        })
    };
    if matches!(e.body, ImportBody::Transferred { .. }) {
        return refuse(format!(
            "{actor} may not transfer it: only an admin, IMPORT_ADMIN or a service may"
        ));
    }
    match old.owner_id.as_deref() {
        Some(owner) if owner == actor => Ok(()),
        Some(_) => refuse(format!("{} by {actor}, who does not own it", e.body.kind())),
        None => refuse(format!(
            "{} by {actor} on an import with no owner: only an admin, IMPORT_ADMIN or a service may",
            e.body.kind()
        )),
    }
}

fn lifecycle(import_id: &str, reason: impl Into<String>) -> Rejected {
    Rejected::Lifecycle {
        import_id: import_id.to_owned(),
        reason: reason.into(),
    }
}

/// Checks an event against the current state and applies it; the state is
/// only touched when the event is accepted.
fn transition(
    state: Option<&ImportState>,
    e: &ImportEvent,
    pos: Position,
    authority: Authority,
) -> Result<ImportState, Rejected> {
    let id = &e.import_id;
    let at = e.occurred_at;
    let Some(old) = state else {
        return match &e.body {
            ImportBody::Started {
                owner_id,
                json_hash,
                file_name,
                questions_total,
            } => Ok(ImportState {
                import_id: id.clone(),
                owner_id: owner_id.clone(),
                previous_owner_id: None,
                status: ImportStatus::InProgress,
                json_hash: json_hash.clone(),
                file_name: file_name.clone(),
                step: None,
                progress: 0,
                questions_imported: 0,
                questions_total: *questions_total,
                started_at: at,
                last_accessed_at: at,
                finished_at: None,
                abandon_reason: None,
                recent_events: Vec::new(),
                source_partition: pos.partition,
                source_offset: pos.offset,
            }),
            other => Err(lifecycle(
                id,
                format!("{} for an unknown import", other.kind()),
            )),
        };
    };
    if !matches!(e.body, ImportBody::Started { .. }) {
        check_actor(old, e, authority)?;
    }
    if old.status == ImportStatus::Deleted {
        return Err(lifecycle(
            id,
            format!("{} after import_deleted", e.body.kind()),
        ));
    }
    let mut s = old.clone();
    s.last_accessed_at = s.last_accessed_at.max(at);
    let in_progress = s.status == ImportStatus::InProgress;
    match &e.body {
        ImportBody::Started { .. } => {
            return Err(lifecycle(id, "import_started for an import that exists"));
        }
        ImportBody::Progressed {
            step,
            progress,
            questions_imported,
            questions_total,
        } => {
            if !in_progress {
                return Err(lifecycle(
                    id,
                    format!("import_progressed on an import that is {}", s.status),
                ));
            }
            s.step = Some(step.clone());
            s.progress = *progress;
            s.questions_imported = *questions_imported;
            s.questions_total = *questions_total;
        }
        ImportBody::Accessed => {}
        ImportBody::Completed | ImportBody::Abandoned { .. } => {
            if !in_progress {
                return Err(lifecycle(
                    id,
                    format!("{} on an import that is {}", e.body.kind(), s.status),
                ));
            }
            s.finished_at = Some(at);
            if let ImportBody::Abandoned { reason } = &e.body {
                s.status = ImportStatus::Abandoned;
                s.abandon_reason = Some(reason.clone());
            } else {
                s.status = ImportStatus::Completed;
                s.progress = 100;
            }
        }
        ImportBody::Transferred { new_owner_id } => {
            if s.owner_id.as_deref() == Some(new_owner_id.as_str()) {
                return Err(lifecycle(id, "import_transferred to the current owner"));
            }
            s.previous_owner_id = s.owner_id.take();
            s.owner_id = Some(new_owner_id.clone());
        }
        ImportBody::Deleted => {
            s.status = ImportStatus::Deleted;
            s.finished_at.get_or_insert(at);
        }
    }
    s.source_partition = pos.partition;
    s.source_offset = pos.offset;
    Ok(s)
}

/// The import state of one input partition, with its purge deadlines.
#[derive(Debug, Clone, Default)]
pub struct ImportTable {
    cfg: ImportConfig,
    imports: HashMap<String, ImportState>,
    deadlines: Deadlines,
    dirty: BTreeSet<String>,
}

impl ImportTable {
    /// An empty table with these rules.
    pub fn new(cfg: ImportConfig) -> ImportTable {
        ImportTable {
            cfg,
            ..ImportTable::default()
        }
    }

    /// An import's state.
    pub fn get(&self, import_id: &str) -> Option<&ImportState> {
        self.imports.get(import_id)
    }

    /// Number of imports held.
    pub fn len(&self) -> usize {
        self.imports.len()
    }

    /// True when no import is held.
    pub fn is_empty(&self) -> bool {
        self.imports.is_empty()
    }

    /// Every import, in no particular order.
    pub fn imports(&self) -> impl Iterator<Item = &ImportState> {
        self.imports.values()
    }

    /// Puts back a state read from the store or the changelog; not marked changed.
    pub fn restore(&mut self, state: ImportState) {
        let id = state.import_id.clone();
        self.imports.insert(id.clone(), state);
        self.reindex(&id);
    }

    fn reindex(&mut self, id: &str) {
        let deadline = self
            .imports
            .get(id)
            .filter(|s| s.status != ImportStatus::InProgress)
            .map(|s| s.last_accessed_at + self.cfg.retention);
        self.deadlines.set(id, deadline);
    }

    /// Applies one event read at `pos`, whose actor `authority` vouches for.
    /// `key` is the record key, which must be the import id when present. A
    /// refused event changes nothing.
    pub fn apply(
        &mut self,
        key: Option<&str>,
        e: &ImportEvent,
        pos: Position,
        authority: Authority,
    ) -> Result<Applied, Rejected> {
        check_key(key, "import_id", &e.import_id)?;
        let hash = event_hash(&e.event_id);
        let old = self.imports.get(&e.import_id);
        let memory = old.map(|s| Memory {
            position: Position {
                partition: s.source_partition,
                offset: s.source_offset,
            },
            recent: &s.recent_events,
            latest: s.last_accessed_at,
        });
        if let Some(done) = admit(
            memory,
            &e.import_id,
            hash,
            e.occurred_at,
            pos,
            self.cfg.dedup_window,
        )? {
            return Ok(done);
        }
        let mut new = transition(old, e, pos, authority)?;
        remember(&mut new.recent_events, hash, e.occurred_at);
        forget_before(
            &mut new.recent_events,
            new.last_accessed_at - self.cfg.dedup_window,
        );
        self.imports.insert(e.import_id.clone(), new);
        self.dirty.insert(e.import_id.clone());
        self.reindex(&e.import_id);
        Ok(Applied::Changed)
    }

    /// Forgets finished imports whose retention has passed; returns how many.
    pub fn tick(&mut self, now: Millis) -> usize {
        let mut purged = 0;
        while let Some(id) = self.deadlines.pop_due(now) {
            if self.imports.remove(&id).is_some() {
                purged += 1;
                self.dirty.insert(id);
            }
        }
        purged
    }

    /// The ids of imports changed since the last call, sorted; an id no longer
    /// in the table was purged.
    pub fn take_dirty(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Applies the erasures to every import held (after an erasure becomes
    /// known, or a partition is loaded); returns the ids deleted, sorted.
    pub fn forget_users(&mut self, erasures: &Erasures) -> Vec<String> {
        if erasures.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = self.imports.keys().cloned().collect();
        self.forget_users_in(ids, erasures)
    }

    /// Applies the erasures to the imports changed since the last
    /// [`ImportTable::take_dirty`]: an event folded after an erasure cannot
    /// give a forgotten user an import back. Returns the ids deleted.
    pub fn forget_users_in_changed(&mut self, erasures: &Erasures) -> Vec<String> {
        if erasures.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = self.dirty.iter().cloned().collect();
        self.forget_users_in(ids, erasures)
    }

    /// Applies the erasures to the imports named; returns the ids deleted.
    pub fn forget_users_in(&mut self, mut ids: Vec<String>, erasures: &Erasures) -> Vec<String> {
        if erasures.is_empty() {
            return Vec::new();
        }
        ids.sort();
        let mut deleted = Vec::new();
        for id in ids {
            let Some(s) = self.imports.get(&id) else {
                continue;
            };
            match import_outcome(s, erasures) {
                Outcome::Untouched => continue,
                Outcome::Rewritten(new) => {
                    self.imports.insert(id.clone(), *new);
                    self.reindex(&id);
                }
                Outcome::Deleted => {
                    self.imports.remove(&id);
                    self.deadlines.set(&id, None);
                    deleted.push(id.clone());
                }
            }
            self.dirty.insert(id);
        }
        deleted
    }

    /// Imports of one owner (legacy imports have none), sorted by id.
    pub fn owned_by(&self, owner_id: &str) -> Vec<&ImportState> {
        let mut v: Vec<&ImportState> = self
            .imports
            .values()
            .filter(|s| s.owner_id.as_deref() == Some(owner_id))
            .collect();
        v.sort_by(|a, b| a.import_id.cmp(&b.import_id));
        v
    }
}
