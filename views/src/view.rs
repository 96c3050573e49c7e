//! The presence view: changelog records in, query answers out. No I/O here.

use std::cmp::Reverse;
use std::ops::Bound;

use crate::counts::ActivityCounts;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sessionfold_fold::{KeyedTable, session_status};
use sessionfold_schemas::{EndedReason, Millis, SessionState, UserPresence};

pub use sessionfold_schemas::rfc3339;

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SessionJson {
    /// Session id.
    pub session_id: String,
    /// Device type.
    pub device_type: Option<String>,
    /// Browser.
    pub browser: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Client address.
    pub ip_address: Option<String>,
    /// Current page.
    pub current_page: Option<String>,
    /// When it started.
    pub started_at: Option<String>,
    /// Latest activity; an active session's may be up to the processor's
    /// activity resolution (60 s by default) behind.
    pub last_activity: String,
    /// Active now.
    pub active: bool,
    /// logout, closed, expired, or null while active.
    pub ended_reason: Option<&'static str>,
    /// page_viewed events applied.
    pub page_views: i64,
    /// heartbeat events applied (for an active session, as of its
    /// `last_activity`).
    pub heartbeats: i64,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserJson {
    /// User id.
    pub user_id: String,
    /// E-mail.
    pub email: Option<String>,
    /// Display name.
    pub full_name: Option<String>,
    /// Membership tier.
    pub membership: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Has an active session now.
    pub online: bool,
    /// Latest activity over all sessions.
    pub last_seen: String,
    /// Sessions, most recent activity first.
    pub sessions: Vec<SessionJson>,
}

/// One page of `GET /v1/presence/active`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ActivePage {
    /// The time the answer was computed for.
    pub as_of: String,
    /// The window, in seconds.
    pub window_seconds: i64,
    /// Users active in the window, over all pages.
    pub total: usize,
    /// This page.
    pub users: Vec<UserJson>,
    /// Cursor of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `GET /v1/presence/summary`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Summary {
    /// The time the answer was computed for.
    pub as_of: String,
    /// The window, in seconds.
    pub window_seconds: i64,
    /// Users active in the window.
    pub users: usize,
    /// Sessions active in the window.
    pub sessions: usize,
    /// Active sessions by device type.
    pub by_device: BTreeMap<String, usize>,
    /// Active sessions by browser.
    pub by_browser: BTreeMap<String, usize>,
}

fn last_seen(u: &UserPresence) -> Millis {
    u.sessions
        .iter()
        .map(|s| s.last_activity)
        .max()
        .unwrap_or(Millis::MIN)
}

/// The time a session counts as seen at: its last activity, and for an
/// active session `slack` later, since the processor may hold back a
/// refresh of an active session's last activity for that long. An online
/// user so never drops out of a window it is in; a user who just left may
/// stay in a short window up to `slack` longer.
pub(crate) fn seen_by(s: &SessionState, slack: Millis) -> Millis {
    if s.active {
        s.last_activity.saturating_add(slack)
    } else {
        s.last_activity
    }
}

/// When a user counts as seen, for the recency order of the active list.
fn recency(u: &UserPresence, slack: Millis) -> Millis {
    u.sessions
        .iter()
        .map(|s| seen_by(s, slack))
        .max()
        .unwrap_or(Millis::MIN)
}

/// True when a session counts as active for a window ending at `now`:
/// started, not ended, and seen inside the window.
fn in_window(s: &SessionState, now: Millis, window: Millis, slack: Millis) -> bool {
    s.started_at.is_some() && s.ended_at.is_none() && seen_by(s, slack) > now - window
}

/// The folded presence of every user, as read from the changelog.
#[derive(Debug, Default)]
pub struct PresenceView {
    idle_timeout: Millis,
    /// How far behind an active session's published last activity may be.
    resolution: Millis,
    users: KeyedTable<UserPresence>,
    // Boxed ids: 8 bytes less than a `String` in every entry.
    by_recency: BTreeSet<(Reverse<Millis>, Box<str>)>,
    counts: ActivityCounts,
    rooms: crate::rooms::Rooms,
    room_changes: Vec<crate::rooms::RoomChange>,
}

/// What applying a changelog record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// The user's state was replaced.
    Upserted,
    /// The user was deleted.
    Deleted,
    /// The record was older than the state held, so it was dropped.
    Stale,
}

impl PresenceView {
    /// An empty view; `idle_timeout` decides who is online now.
    pub fn new(idle_timeout: Millis) -> PresenceView {
        PresenceView {
            idle_timeout,
            ..PresenceView::default()
        }
    }

    /// How long an idle session stays online.
    pub fn idle_timeout(&self) -> Millis {
        self.idle_timeout
    }

    /// Takes another idle timeout (the processor's, as its changelog says).
    pub fn set_idle_timeout(&mut self, idle_timeout: Millis) {
        self.idle_timeout = idle_timeout;
    }

    /// How far behind an active session's last activity may be.
    pub fn activity_resolution(&self) -> Millis {
        self.resolution
    }

    /// Takes the processor's activity resolution, as its changelog says;
    /// the recency order and the counts are rebuilt when it changes.
    pub fn set_activity_resolution(&mut self, resolution: Millis) {
        if resolution == self.resolution {
            return;
        }
        for u in self.users.values() {
            self.by_recency
                .remove(&(Reverse(recency(u, self.resolution)), u.user_id.clone()));
            self.counts.apply(u, -1, self.resolution);
        }
        self.resolution = resolution;
        for u in self.users.values() {
            self.by_recency
                .insert((Reverse(recency(u, resolution)), u.user_id.clone()));
            self.counts.apply(u, 1, resolution);
        }
    }

    /// Users held.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Drops every state, keeping the settings.
    pub fn clear(&mut self) {
        *self = PresenceView {
            idle_timeout: self.idle_timeout,
            resolution: self.resolution,
            ..PresenceView::default()
        };
    }

    /// Every state held, most recent first: the order of the view's own
    /// index, so that loading a snapshot written in it inserts in order
    /// (a random order took twice as long at a million users).
    pub fn states(&self) -> impl Iterator<Item = &UserPresence> {
        self.by_recency
            .iter()
            .filter_map(|(_, id)| self.users.get(id))
    }

    /// True when no user is held.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Applies a changelog record: a state, or a tombstone (`None`) for `user_id`.
    /// A state from an input position older than the one held is a replay and is dropped.
    pub fn apply(&mut self, user_id: &str, state: Option<UserPresence>) -> Update {
        let Some(mut new) = state else {
            let old = self.users.remove(user_id);
            let moved = self.rooms.apply(user_id, old.as_deref(), None);
            self.room_changes.extend(moved);
            if let Some(old) = old {
                self.by_recency
                    .remove(&(Reverse(recency(&old, self.resolution)), Box::from(user_id)));
                self.counts.apply(&old, -1, self.resolution);
            }
            return Update::Deleted;
        };
        if let Some(old) = self.users.get(user_id) {
            if old.source_partition == new.source_partition && new.source_offset < old.source_offset
            {
                return Update::Stale;
            }
            self.by_recency
                .remove(&(Reverse(recency(old, self.resolution)), Box::from(user_id)));
            self.counts.apply(old, -1, self.resolution);
        }
        // The deduplication memory is the processor's business; no view
        // reads it, and it is the largest part of a busy user's state.
        new.recent_events = Vec::new();
        // The table finds a state by the id inside it; the record's key
        // is what compaction goes by, so the key wins.
        if *new.user_id != *user_id {
            new.user_id = user_id.into();
        }
        let moved = self
            .rooms
            .apply(user_id, self.users.get(user_id), Some(&new));
        self.room_changes.extend(moved);
        self.by_recency
            .insert((Reverse(recency(&new, self.resolution)), Box::from(user_id)));
        self.counts.apply(&new, 1, self.resolution);
        self.users.insert(Box::new(new));
        Update::Upserted
    }

    fn session_json(&self, s: &SessionState, now: Millis) -> SessionJson {
        let (active, ended_reason) = self.status(s, now);
        let ended_reason = ended_reason.map(EndedReason::as_str);
        SessionJson {
            session_id: s.session_id.to_string(),
            device_type: s.device_type.as_deref().map(str::to_owned),
            browser: s.browser.as_deref().map(str::to_owned),
            os: s.os.as_deref().map(str::to_owned),
            ip_address: s.ip_address.as_deref().map(str::to_owned),
            current_page: s.current_page.as_deref().map(str::to_owned),
            started_at: s.started_at.map(rfc3339),
            last_activity: rfc3339(s.last_activity),
            active,
            ended_reason,
            page_views: s.page_views,
            heartbeats: s.heartbeats,
        }
    }

    /// Whether a session is active at `now`, and why it ended if it did.
    /// The processor says when a session expires (its expiry is on time
    /// while it runs); the clock says so too, late by the resolution, so
    /// that a processor away leaves no session online for good.
    fn status(&self, s: &SessionState, now: Millis) -> (bool, Option<EndedReason>) {
        match session_status(s, self.idle_timeout + self.resolution, now) {
            (true, _) if !s.active => (false, Some(EndedReason::Expired)),
            status => status,
        }
    }

    /// A user as the API shows it at `now`.
    pub fn user_json(&self, u: &UserPresence, now: Millis) -> UserJson {
        let mut sessions: Vec<SessionJson> = u
            .sessions
            .iter()
            .map(|s| self.session_json(s, now))
            .collect();
        sessions.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then(a.session_id.cmp(&b.session_id))
        });
        UserJson {
            user_id: u.user_id.to_string(),
            email: u.email.as_deref().map(str::to_owned),
            full_name: u.full_name.as_deref().map(str::to_owned),
            membership: u.membership.as_deref().map(str::to_owned),
            roles: u.roles.clone(),
            online: sessions.iter().any(|s| s.active),
            last_seen: rfc3339(last_seen(u)),
            sessions,
        }
    }

    /// The rooms: who is in which page or named room now.
    pub fn rooms(&self) -> &crate::rooms::Rooms {
        &self.rooms
    }

    /// Whether `user_id` has an active session in `room`.
    pub fn in_room(&self, room: &str, user_id: &str) -> bool {
        crate::rooms::seats(self.users.get(user_id)).contains_key(room)
    }

    /// The rooms `user_id` is in.
    pub fn rooms_of(&self, user_id: &str) -> Vec<String> {
        crate::rooms::seats(self.users.get(user_id))
            .into_keys()
            .map(str::to_owned)
            .collect()
    }

    /// The room changes of the states applied since the last call.
    pub fn take_room_changes(&mut self) -> Vec<crate::rooms::RoomChange> {
        std::mem::take(&mut self.room_changes)
    }

    /// A user's e-mail from their presence profile.
    pub fn email(&self, user_id: &str) -> Option<String> {
        self.users
            .get(user_id)
            .and_then(|u| u.email.as_deref().map(str::to_owned))
    }

    /// One user, if known.
    pub fn user(&self, user_id: &str, now: Millis) -> Option<UserJson> {
        self.users.get(user_id).map(|u| self.user_json(u, now))
    }

    /// Users with a session active within `window` of `now`, most recent first,
    /// `limit` per page, starting after `cursor`.
    pub fn active(
        &self,
        now: Millis,
        window: Millis,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> ActivePage {
        let horizon = now - window;
        let slack = self.resolution;
        let qualifies =
            |u: &UserPresence| u.sessions.iter().any(|s| in_window(s, now, window, slack));
        // The total comes from the incremental counts; the page walks the
        // recency index from the cursor, so a page costs its own length.
        let total = self.counts.after(horizon).users;
        let start = match cursor {
            Some(c) => Bound::Excluded((Reverse(c.last_seen), Box::from(c.user_id.as_str()))),
            None => Bound::Unbounded,
        };
        let mut recent = self
            .by_recency
            .range((start, Bound::Unbounded))
            .take_while(|(Reverse(t), _)| *t > horizon)
            .filter_map(|(_, id)| self.users.get(id))
            .filter(|u| qualifies(u));
        let page: Vec<&UserPresence> = recent.by_ref().take(limit).collect();
        let more = recent.next().is_some();
        let next_cursor = match (more, page.last()) {
            (true, Some(u)) => Some(
                Cursor {
                    last_seen: recency(u, slack),
                    user_id: u.user_id.to_string(),
                }
                .encode(),
            ),
            _ => None,
        };
        ActivePage {
            as_of: rfc3339(now),
            window_seconds: window / 1000,
            total,
            users: page.into_iter().map(|u| self.user_json(u, now)).collect(),
            next_cursor,
        }
    }

    /// Counts of sessions active within `window`, by device type and browser.
    pub fn summary(&self, now: Millis, window: Millis) -> Summary {
        let t = self.counts.after(now - window);
        Summary {
            as_of: rfc3339(now),
            window_seconds: window / 1000,
            users: t.users,
            sessions: t.sessions,
            by_device: t.by_device,
            by_browser: t.by_browser,
        }
    }
}

/// Position in the active list: the last user of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// That user's last activity.
    pub last_seen: Millis,
    /// That user's id.
    pub user_id: String,
}

impl Cursor {
    /// The opaque text form handed to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.last_seen, self.user_id)
    }

    /// Reads a cursor from its text form.
    pub fn decode(s: &str) -> Option<Cursor> {
        let (t, id) = s.split_once('.')?;
        Some(Cursor {
            last_seen: t.parse().ok()?,
            user_id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_700_000_000_000;
    const MIN: Millis = 60_000;

    fn user(id: &str, last: Millis, ended: bool, device: &str, offset: i64) -> UserPresence {
        UserPresence {
            user_id: id.into(),
            email: Some(format!("{id}@x").into()),
            sessions: vec![SessionState {
                session_id: format!("{id}-s").into(),
                started_at: Some(last - MIN),
                device_type: Some(device.into()),
                browser: Some("Firefox".into()),
                last_activity: last,
                active: !ended,
                ended_at: ended.then_some(last),
                ended_reason: ended.then_some(EndedReason::Logout),
                ..SessionState::default()
            }],
            source_offset: offset,
            ..UserPresence::default()
        }
    }

    #[test]
    fn a_state_is_held_under_its_record_key() {
        let mut v = PresenceView::new(5 * MIN);
        v.apply(
            "a",
            Some(user("someone-else", T0 - MIN, false, "desktop", 1)),
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v.email("a").as_deref(), Some("someone-else@x"));
        assert_eq!(v.apply("a", None), Update::Deleted);
        assert!(v.is_empty());
        assert_eq!(v.email("a"), None);
    }

    #[test]
    fn active_window_pagination_and_summary() {
        let mut v = PresenceView::new(5 * MIN);
        v.apply("a", Some(user("a", T0 - MIN, false, "desktop", 1)));
        v.apply("b", Some(user("b", T0 - 2 * MIN, false, "mobile", 2)));
        v.apply("c", Some(user("c", T0 - 10 * MIN, false, "desktop", 3)));
        v.apply("d", Some(user("d", T0 - 30_000, true, "desktop", 4)));
        let page = v.active(T0, 5 * MIN, 1, None);
        assert_eq!(page.total, 2);
        assert_eq!(
            page.users
                .iter()
                .map(|u| u.user_id.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert!(page.users[0].online);
        let cursor = Cursor::decode(page.next_cursor.as_deref().expect("more")).expect("cursor");
        let page2 = v.active(T0, 5 * MIN, 1, Some(&cursor));
        assert_eq!(page2.users[0].user_id, "b");
        assert_eq!(page2.next_cursor, None);
        // A wider window takes in c, idle for 10 minutes: listed, but not online.
        let hour = v.active(T0, 60 * MIN, 10, None);
        assert_eq!(hour.total, 3);
        let c = &hour.users[2];
        assert_eq!((c.user_id.as_str(), c.online), ("c", false));
        assert_eq!(c.sessions[0].ended_reason, Some("expired"));
        let s = v.summary(T0, 60 * MIN);
        assert_eq!((s.users, s.sessions), (3, 3));
        assert_eq!(s.by_device.get("desktop"), Some(&2));
        assert_eq!(s.by_device.get("mobile"), Some(&1));
    }

    #[test]
    fn replays_are_dropped_and_tombstones_delete() {
        let mut v = PresenceView::new(5 * MIN);
        assert_eq!(
            v.apply("a", Some(user("a", T0, false, "d", 10))),
            Update::Upserted
        );
        assert_eq!(
            v.apply("a", Some(user("a", T0 - MIN, false, "d", 9))),
            Update::Stale
        );
        assert_eq!(v.user("a", T0).map(|u| u.last_seen), Some(rfc3339(T0)));
        assert_eq!(v.apply("a", None), Update::Deleted);
        assert!(v.is_empty());
        assert_eq!(v.active(T0, 5 * MIN, 10, None).total, 0);
    }

    #[test]
    fn a_held_back_refresh_keeps_an_online_user_online_and_in_the_window() {
        let mut v = PresenceView::new(5 * MIN);
        v.set_activity_resolution(MIN);
        // Published 5.5 minutes ago and still active: the processor holds
        // back up to a minute of refreshes, so the user is online.
        v.apply("a", Some(user("a", T0 - 5 * MIN - 30_000, false, "d", 1)));
        let a = v.user("a", T0).expect("held");
        assert!(a.online);
        assert_eq!(v.active(T0, 5 * MIN, 10, None).total, 1);
        assert_eq!(v.summary(T0, 5 * MIN).sessions, 1);
        // The processor's expiry is what takes the user offline.
        let mut expired = user("a", T0 - 5 * MIN - 30_000, false, "d", 2);
        expired.sessions[0].active = false;
        v.apply("a", Some(expired));
        let a = v.user("a", T0).expect("held");
        assert!(!a.online);
        assert_eq!(a.sessions[0].ended_reason, Some("expired"));
        assert_eq!(v.active(T0, 5 * MIN, 10, None).total, 0);
        // And a processor gone quiet cannot leave anyone online past the
        // idle timeout and the resolution.
        v.apply("b", Some(user("b", T0 - 6 * MIN - 1, false, "d", 3)));
        assert!(!v.user("b", T0).expect("held").online);
    }

    #[test]
    fn a_new_resolution_rebuilds_the_counts_it_changes() {
        let mut v = PresenceView::new(5 * MIN);
        v.apply("a", Some(user("a", T0 - 5 * MIN - 30_000, false, "d", 1)));
        assert_eq!(v.summary(T0, 5 * MIN).users, 0);
        v.set_activity_resolution(MIN);
        assert_eq!(v.summary(T0, 5 * MIN).users, 1);
        assert_eq!(v.active(T0, 5 * MIN, 10, None).users.len(), 1);
        // Taken back from where it was counted: nothing is left behind.
        assert_eq!(v.apply("a", None), Update::Deleted);
        let all = v.summary(T0, 60 * MIN);
        assert_eq!((all.users, all.sessions), (0, 0));
        assert!(all.by_device.is_empty() && all.by_browser.is_empty());
    }
}
