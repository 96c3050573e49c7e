//! The import-ownership view: changelog records in, scoped answers out. No I/O here.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use sessionfold_schemas::{ImportState, ImportStatus, Millis};

use crate::view::{Update, rfc3339};

/// An import as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ImportJson {
    /// Import id.
    pub import_id: String,
    /// Owner; null for a legacy import.
    pub owner_id: Option<String>,
    /// in_progress, completed, abandoned or deleted.
    pub status: &'static str,
    /// In progress and not accessed within `stale_after`.
    pub stale: bool,
    /// Hash of the uploaded JSON.
    pub json_hash: String,
    /// Uploaded file name.
    pub file_name: String,
    /// Last step reported.
    pub step: Option<String>,
    /// 0 to 100.
    pub progress: i32,
    /// Questions imported so far.
    pub questions_imported: i32,
    /// Questions in the file.
    pub questions_total: i32,
    /// When it started.
    pub started_at: String,
    /// Latest event on it.
    pub last_accessed_at: String,
    /// When it completed, was abandoned or deleted.
    pub finished_at: Option<String>,
}

/// A row of the import monitor.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MonitorJson {
    /// The import.
    #[serde(flatten)]
    pub import: ImportJson,
    /// The owner's e-mail from the presence profile, when known.
    pub owner_email: Option<String>,
    /// Hours since the last access, to two decimals.
    pub hours_since_access: f64,
}

/// Every import read from the changelog, indexed by owner.
#[derive(Debug, Clone)]
pub struct ImportView {
    stale_after: Millis,
    imports: HashMap<String, ImportState>,
    by_owner: HashMap<Option<String>, BTreeSet<String>>,
}

impl ImportView {
    /// An empty view; in-progress imports idle longer than `stale_after` are stale.
    pub fn new(stale_after: Millis) -> ImportView {
        ImportView {
            stale_after,
            imports: HashMap::new(),
            by_owner: HashMap::new(),
        }
    }

    /// Imports held.
    pub fn len(&self) -> usize {
        self.imports.len()
    }

    /// Drops every state.
    pub fn clear(&mut self) {
        self.imports.clear();
        self.by_owner.clear();
    }

    /// Every state held, in no order (for a snapshot of the view).
    pub fn states(&self) -> impl Iterator<Item = &ImportState> {
        self.imports.values()
    }

    /// True when no import is held.
    pub fn is_empty(&self) -> bool {
        self.imports.is_empty()
    }

    fn unindex(&mut self, s: &ImportState) {
        if let Some(ids) = self.by_owner.get_mut(&s.owner_id) {
            ids.remove(&s.import_id);
            if ids.is_empty() {
                self.by_owner.remove(&s.owner_id);
            }
        }
    }

    /// Applies one changelog record (`None`: a tombstone). A record older than
    /// the one held (a replay after a processor restart) is ignored.
    pub fn apply(&mut self, import_id: &str, state: Option<ImportState>) -> Update {
        let Some(new) = state else {
            if let Some(old) = self.imports.remove(import_id) {
                self.unindex(&old);
            }
            return Update::Deleted;
        };
        if let Some(old) = self.imports.remove(import_id) {
            if old.source_partition == new.source_partition && new.source_offset < old.source_offset
            {
                self.imports.insert(import_id.to_owned(), old);
                return Update::Stale;
            }
            self.unindex(&old);
        }
        self.by_owner
            .entry(new.owner_id.clone())
            .or_default()
            .insert(import_id.to_owned());
        self.imports.insert(import_id.to_owned(), new);
        Update::Upserted
    }

    fn is_stale(&self, s: &ImportState, now: Millis) -> bool {
        s.status == ImportStatus::InProgress && now - s.last_accessed_at > self.stale_after
    }

    /// The JSON of one import at `now`.
    pub fn json(&self, s: &ImportState, now: Millis) -> ImportJson {
        ImportJson {
            import_id: s.import_id.clone(),
            owner_id: s.owner_id.clone(),
            status: s.status.as_str(),
            stale: self.is_stale(s, now),
            json_hash: s.json_hash.clone(),
            file_name: s.file_name.clone(),
            step: s.step.clone(),
            progress: s.progress,
            questions_imported: s.questions_imported,
            questions_total: s.questions_total,
            started_at: rfc3339(s.started_at),
            last_accessed_at: rfc3339(s.last_accessed_at),
            finished_at: s.finished_at.map(rfc3339),
        }
    }

    /// One import, deleted ones included.
    pub fn get(&self, import_id: &str) -> Option<&ImportState> {
        self.imports.get(import_id)
    }

    fn listed<'a>(
        &self,
        states: impl Iterator<Item = &'a ImportState>,
        now: Millis,
    ) -> Vec<ImportJson> {
        let mut v: Vec<&ImportState> = states
            .filter(|s| s.status != ImportStatus::Deleted)
            .collect();
        // Newest first; the id breaks ties so the order is stable.
        v.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| a.import_id.cmp(&b.import_id))
        });
        v.into_iter().map(|s| self.json(s, now)).collect()
    }

    fn owned_by<'a>(&'a self, owner: &str) -> impl Iterator<Item = &'a ImportState> + 'a {
        self.by_owner
            .get(&Some(owner.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.imports.get(id))
    }

    /// The imports of `owner`, newest first; deleted ones left out.
    pub fn own(&self, owner: &str, now: Millis) -> Vec<ImportJson> {
        self.listed(self.owned_by(owner), now)
    }

    /// Every import, legacy ones included, newest first; deleted ones left out.
    pub fn all(&self, now: Millis) -> Vec<ImportJson> {
        self.listed(self.imports.values(), now)
    }

    /// The imports of `owner` with this file hash: duplicates are per owner.
    pub fn duplicates(&self, owner: &str, json_hash: &str, now: Millis) -> Vec<ImportJson> {
        self.listed(
            self.owned_by(owner).filter(|s| s.json_hash == json_hash),
            now,
        )
    }

    /// Every in-progress import, least recently accessed first, with the
    /// owner's e-mail looked up by `email_of`.
    pub fn monitor(
        &self,
        now: Millis,
        email_of: impl Fn(&str) -> Option<String>,
    ) -> Vec<MonitorJson> {
        let mut v: Vec<&ImportState> = self
            .imports
            .values()
            .filter(|s| s.status == ImportStatus::InProgress)
            .collect();
        v.sort_by(|a, b| {
            a.last_accessed_at
                .cmp(&b.last_accessed_at)
                .then_with(|| a.import_id.cmp(&b.import_id))
        });
        v.into_iter()
            .map(|s| {
                let hours = (now - s.last_accessed_at).max(0) as f64 / 3_600_000.0;
                MonitorJson {
                    import: self.json(s, now),
                    owner_email: s.owner_id.as_deref().and_then(&email_of),
                    hours_since_access: (hours * 100.0).round() / 100.0,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;

    fn state(id: &str, owner: Option<&str>, hash: &str, at: Millis, offset: i64) -> ImportState {
        ImportState {
            import_id: id.into(),
            owner_id: owner.map(str::to_owned),
            previous_owner_id: None,
            status: ImportStatus::InProgress,
            json_hash: hash.into(),
            file_name: format!("{id}.json"),
            step: None,
            progress: 0,
            questions_imported: 0,
            questions_total: 10,
            started_at: at,
            last_accessed_at: at,
            finished_at: None,
            abandon_reason: None,
            recent_events: Vec::new(),
            source_partition: 0,
            source_offset: offset,
        }
    }

    fn ids(v: &[ImportJson]) -> Vec<&str> {
        v.iter().map(|i| i.import_id.as_str()).collect()
    }

    #[test]
    fn owners_see_their_own_and_duplicates_are_per_owner() {
        let mut v = ImportView::new(24 * H);
        v.apply("a1", Some(state("a1", Some("alice"), "h", 1_000, 1)));
        v.apply("a2", Some(state("a2", Some("alice"), "h", 2_000, 2)));
        v.apply("b1", Some(state("b1", Some("bob"), "h", 3_000, 3)));
        v.apply("l1", Some(state("l1", None, "h", 4_000, 4)));
        assert_eq!(ids(&v.own("alice", 5_000)), ["a2", "a1"]);
        assert_eq!(ids(&v.own("bob", 5_000)), ["b1"]);
        assert_eq!(ids(&v.all(5_000)), ["l1", "b1", "a2", "a1"]);
        assert_eq!(ids(&v.duplicates("alice", "h", 5_000)), ["a2", "a1"]);
        assert_eq!(ids(&v.duplicates("bob", "h", 5_000)), ["b1"]);
        assert!(v.duplicates("bob", "other", 5_000).is_empty());
    }

    #[test]
    fn a_transfer_moves_the_import_and_replays_are_ignored() {
        let mut v = ImportView::new(24 * H);
        v.apply("a1", Some(state("a1", Some("alice"), "h", 1_000, 5)));
        let mut moved = state("a1", Some("bob"), "h", 1_000, 7);
        moved.previous_owner_id = Some("alice".into());
        assert_eq!(v.apply("a1", Some(moved)), Update::Upserted);
        assert!(v.own("alice", 2_000).is_empty());
        assert_eq!(ids(&v.own("bob", 2_000)), ["a1"]);
        // The pre-transfer record again, as a restarted processor would send it.
        assert_eq!(
            v.apply("a1", Some(state("a1", Some("alice"), "h", 1_000, 5))),
            Update::Stale
        );
        assert_eq!(ids(&v.own("bob", 2_000)), ["a1"]);
        assert_eq!(v.apply("a1", None), Update::Deleted);
        assert!(v.own("bob", 2_000).is_empty() && v.is_empty());
    }

    #[test]
    fn stale_and_monitor() {
        let mut v = ImportView::new(2 * H);
        v.apply("a1", Some(state("a1", Some("alice"), "h", 0, 1)));
        v.apply("b1", Some(state("b1", Some("bob"), "h", 2 * H, 2)));
        let mut done = state("c1", Some("carol"), "h", 0, 3);
        done.status = ImportStatus::Completed;
        v.apply("c1", Some(done));
        let now = 3 * H + H / 2;
        let rows = v.monitor(now, |u| {
            (u == "alice").then(|| "alice@example.com".to_owned())
        });
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].import.import_id, "a1");
        assert!(rows[0].import.stale);
        assert_eq!(rows[0].hours_since_access, 3.5);
        assert_eq!(rows[0].owner_email.as_deref(), Some("alice@example.com"));
        assert_eq!(rows[1].import.import_id, "b1");
        assert!(!rows[1].import.stale);
        assert_eq!(rows[1].hours_since_access, 1.5);
        assert_eq!(rows[1].owner_email, None);
        // A finished import is never stale.
        assert!(!v.all(now).iter().any(|i| i.import_id == "c1" && i.stale));
    }
}
