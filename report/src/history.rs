//! The history a replay accumulates: every event the fold accepted, kept in
//! the compact form the figures need, keyed so that arrival order does not
//! matter.

use std::collections::{BTreeMap, BTreeSet};

use sessionfold_schemas::{ActivityBody, ActivityEvent, ImportBody, ImportEvent, Millis};

/// What is known of one client session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionLog {
    /// Earliest `session_started`; a session without one was never active.
    pub started_at: Option<Millis>,
    /// Earliest `session_ended`.
    pub ended_at: Option<Millis>,
    /// Device type of the earliest start, as the fold keeps it.
    pub device_type: Option<String>,
    /// Browser of the earliest start.
    pub browser: Option<String>,
    /// Time of every accepted event of the session (unsorted).
    pub times: Vec<Millis>,
}

/// What is known of one import job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImportLog {
    pub started_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub abandoned_at: Option<Millis>,
    pub abandon_reason: Option<String>,
    pub deleted_at: Option<Millis>,
    /// The owner as of the end: the latest start or transfer by event
    /// time, unless the fold's state named one (see [`History::set_owner`]).
    pub owner_id: Option<String>,
    /// When `owner_id` was last set by an event.
    owner_at: Option<Millis>,
}

/// Page views of one page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageLog {
    pub views: u64,
    pub users: BTreeSet<String>,
}

/// Accepted events, accumulated for the reports.
///
/// Feed it only what the fold applied (not duplicates, not refusals), so the
/// figures count each event once, exactly as the state does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub(crate) sessions: BTreeMap<(String, String), SessionLog>,
    pub(crate) pages: BTreeMap<String, PageLog>,
    /// Accepted activity events by [weekday from Monday][hour], UTC.
    pub(crate) events_by_hour: [[u64; 24]; 7],
    pub(crate) imports: BTreeMap<String, ImportLog>,
}

fn earliest(slot: &mut Option<Millis>, at: Millis) -> bool {
    if slot.is_none_or(|t| at < t) {
        *slot = Some(at);
        true
    } else {
        false
    }
}

/// Monday-based weekday and hour of day (UTC) of a time.
pub(crate) fn weekday_hour(t: Millis) -> (usize, usize) {
    let days = t.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday: index 3 from Monday.
    let weekday = (days + 3).rem_euclid(7) as usize;
    let hour = (t.rem_euclid(86_400_000) / 3_600_000) as usize;
    (weekday, hour)
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Adds an activity event the fold accepted.
    pub fn activity(&mut self, e: &ActivityEvent) {
        let at = e.occurred_at;
        let s = self
            .sessions
            .entry((e.user_id.clone(), e.session_id.clone()))
            .or_default();
        s.times.push(at);
        match &e.body {
            ActivityBody::SessionStarted(st) => {
                if earliest(&mut s.started_at, at) {
                    s.device_type.clone_from(&st.device_type);
                    s.browser.clone_from(&st.browser);
                }
            }
            ActivityBody::SessionEnded { .. } => {
                earliest(&mut s.ended_at, at);
            }
            ActivityBody::PageViewed { page, .. } => {
                let p = self.pages.entry(page.clone()).or_default();
                p.views += 1;
                p.users.insert(e.user_id.clone());
            }
            ActivityBody::Heartbeat { .. } => {}
        }
        let (d, h) = weekday_hour(at);
        self.events_by_hour[d][h] += 1;
    }

    /// Adds an import event the fold accepted.
    pub fn import(&mut self, e: &ImportEvent) {
        let at = e.occurred_at;
        let i = self.imports.entry(e.import_id.clone()).or_default();
        let mut owner = |who: Option<&String>| {
            if i.owner_at.is_none_or(|t| at >= t) {
                i.owner_at = Some(at);
                i.owner_id = who.cloned();
            }
        };
        match &e.body {
            ImportBody::Started { owner_id, .. } => {
                owner(owner_id.as_ref());
                earliest(&mut i.started_at, at);
            }
            ImportBody::Transferred { new_owner_id } => owner(Some(new_owner_id)),
            ImportBody::Completed => {
                earliest(&mut i.completed_at, at);
            }
            ImportBody::Abandoned { reason } => {
                if earliest(&mut i.abandoned_at, at) {
                    i.abandon_reason = Some(reason.clone());
                }
            }
            ImportBody::Deleted => {
                earliest(&mut i.deleted_at, at);
            }
            ImportBody::Progressed { .. } | ImportBody::Accessed => {}
        }
    }

    /// Names an import's owner as the fold's state has it at the end (after
    /// transfers and erasures), for the tables by owner.
    pub fn set_owner(&mut self, import_id: &str, owner: Option<&str>) {
        if let Some(i) = self.imports.get_mut(import_id) {
            i.owner_id = owner.map(str::to_owned);
        }
    }

    /// Takes out the owners `forgotten` names: a report never names a user
    /// who asked to be forgotten.
    pub fn forget_owners(&mut self, forgotten: impl Fn(&str) -> bool) {
        for i in self.imports.values_mut() {
            if i.owner_id.as_deref().is_some_and(&forgotten) {
                i.owner_id = None;
            }
        }
    }

    /// Leaves an import out: it was deleted because its owner was forgotten.
    pub fn forget_import(&mut self, import_id: &str) {
        self.imports.remove(import_id);
    }

    /// Number of client sessions seen.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_and_hour_are_utc_and_monday_based() {
        // 2026-11-23 is a Monday.
        // 2026-11-23T09:30:00Z, a Monday.
        assert_eq!(weekday_hour(1_795_426_200_000), (0, 9));
        assert_eq!(weekday_hour(0), (3, 0));
        assert_eq!(weekday_hour(-1), (2, 23));
    }
}
