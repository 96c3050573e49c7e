//! Presence: activity events folded into per-user state, with windowed expiry.

use crate::deadlines::DeadlineHeap;
use crate::keyed::{Keyed, KeyedTable};

use sessionfold_schemas::{
    ActivityBody, ActivityEvent, EndReason, EndedReason, Millis, SessionState, UserPresence,
};

use crate::dedup::{Memory, admit, check_key, event_hash, forget_before, remember};
use crate::refresh::{Held, Refreshes, Verdict};
use crate::{Applied, Position, Rejected};

/// The rules of presence, all durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceConfig {
    /// A session without activity for this long is no longer active.
    pub idle_timeout: Millis,
    /// A session is forgotten this long after its last activity.
    pub retention: Millis,
    /// Event ids are remembered for this long (in event time) behind a user's
    /// latest activity; older events are refused as late.
    pub dedup_window: Millis,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            idle_timeout: 5 * 60_000,
            retention: 24 * 3_600_000,
            dedup_window: 10 * 60_000,
        }
    }
}

/// Whether a session is active at `now`, and why it ended if it did: the
/// one rule for the fold, the views and replay. Active means started, not
/// ended, and seen within `idle_timeout`; a started session that is neither
/// ended nor active has expired.
pub fn session_status(
    s: &SessionState,
    idle_timeout: Millis,
    now: Millis,
) -> (bool, Option<EndedReason>) {
    let started = s.started_at.is_some();
    let ended = s.ended_at.is_some();
    let active = started && !ended && s.last_activity + idle_timeout > now;
    let reason = if ended {
        s.ended_reason
    } else if started && !active {
        Some(EndedReason::Expired)
    } else {
        None
    };
    (active, reason)
}

/// Recomputes `active` and the expiry reason of one session at `now`;
/// returns whether either changed.
pub fn refresh_session(s: &mut SessionState, cfg: &PresenceConfig, now: Millis) -> bool {
    let (active, reason) = session_status(s, cfg.idle_timeout, now);
    let changed = s.active != active || s.ended_reason != reason;
    s.active = active;
    s.ended_reason = reason;
    changed
}

fn latest_activity(u: &UserPresence) -> Option<Millis> {
    u.sessions.iter().map(|s| s.last_activity).max()
}

/// The oldest and the newest last activity of the user's active sessions.
fn active_span(u: &UserPresence) -> (Millis, Millis) {
    u.sessions
        .iter()
        .filter(|s| s.active)
        .fold((Millis::MAX, Millis::MIN), |(lo, hi), s| {
            (lo.min(s.last_activity), hi.max(s.last_activity))
        })
}

/// The next time anything about this user changes without new events.
fn deadline(u: &UserPresence, cfg: &PresenceConfig) -> Option<Millis> {
    u.sessions
        .iter()
        .map(|s| {
            if s.active {
                s.last_activity + cfg.idle_timeout
            } else {
                s.last_activity + cfg.retention
            }
        })
        .min()
}

fn set_page(s: &mut SessionState, page: Option<&str>, at: Millis) {
    if let Some(p) = page
        && at >= s.page_at
    {
        copy_text(&mut s.current_page, Some(p));
        s.page_at = at;
    }
}

/// Most events repeat the text already held (the page, the browser): no
/// new allocation then.
fn copy_text(held: &mut Option<Box<str>>, new: Option<&str>) {
    if held.as_deref() != new {
        *held = new.map(Into::into);
    }
}

fn session_mut<'a>(u: &'a mut UserPresence, id: &str, at: Millis) -> &'a mut SessionState {
    let i = match u.sessions.binary_search_by(|s| (*s.session_id).cmp(id)) {
        Ok(i) => i,
        Err(i) => {
            // One slot at a time: most users have one or two sessions, and
            // Vec's first growth to four slots of this large struct would
            // be most of a user's memory.
            u.sessions.reserve_exact(1);
            u.sessions.insert(
                i,
                SessionState {
                    session_id: id.into(),
                    page_at: Millis::MIN,
                    last_activity: at,
                    ..SessionState::default()
                },
            );
            i
        }
    };
    &mut u.sessions[i]
}

fn apply_body(u: &mut UserPresence, e: &ActivityEvent) {
    let at = e.occurred_at;
    if let ActivityBody::SessionStarted(st) = &e.body
        && (u.email.is_none() || at >= u.profile_at)
    {
        copy_text(&mut u.email, Some(&st.email));
        copy_text(&mut u.full_name, st.full_name.as_deref());
        copy_text(&mut u.membership, st.membership.as_deref());
        u.roles.clone_from(&st.roles);
        u.profile_at = at;
    }
    let s = session_mut(u, &e.session_id, at);
    s.last_activity = s.last_activity.max(at);
    match &e.body {
        ActivityBody::SessionStarted(st) => {
            if s.started_at.is_none_or(|t| at <= t) {
                s.started_at = Some(at);
                copy_text(&mut s.device_type, st.device_type.as_deref());
                copy_text(&mut s.browser, st.browser.as_deref());
                copy_text(&mut s.os, st.os.as_deref());
                copy_text(&mut s.ip_address, st.ip_address.as_deref());
                copy_text(&mut s.user_agent, st.user_agent.as_deref());
            }
            set_page(s, st.page.as_deref(), at);
        }
        ActivityBody::Heartbeat { page, .. } => {
            s.heartbeats += 1;
            set_page(s, page.as_deref(), at);
        }
        ActivityBody::PageViewed { page, .. } => {
            s.page_views += 1;
            set_page(s, Some(page), at);
        }
        ActivityBody::SessionEnded { reason } => {
            if s.ended_at.is_none_or(|t| at < t) {
                s.ended_at = Some(at);
                s.ended_reason = Some(match reason {
                    EndReason::Logout => EndedReason::Logout,
                    EndReason::Closed => EndedReason::Closed,
                });
            }
        }
    }
}

/// A user's state with what the table keeps beside it, so that folding an
/// event costs one lookup of the user.
#[derive(Debug, Clone)]
struct Slot {
    state: UserPresence,
    /// The deadline the heap was last told about.
    deadline: Option<Millis>,
    /// Changed since the last [`PresenceTable::take_dirty`] (and listed).
    dirty: bool,
    /// A refresh held back, not yet published.
    held: Option<Held>,
}

impl Keyed for Slot {
    fn key(&self) -> &str {
        &self.state.user_id
    }
}

/// The presence state of one input partition, with its deadline index.
#[derive(Debug, Clone, Default)]
pub struct PresenceTable {
    cfg: PresenceConfig,
    users: KeyedTable<Slot>,
    /// Users by deadline, each named by its hash in `users` (8 bytes
    /// instead of a copy of the id).
    deadlines: DeadlineHeap<u64>,
    /// Ids changed since the last take, in no order, possibly repeated (a
    /// user deleted and seen again); sorted and deduplicated when taken.
    dirty: Vec<String>,
    sessions: usize,
    refreshes: Refreshes,
}

impl PresenceTable {
    /// An empty table with these rules.
    pub fn new(cfg: PresenceConfig) -> PresenceTable {
        PresenceTable {
            cfg,
            ..PresenceTable::default()
        }
    }

    /// The same table, holding back a change that only refreshes an active
    /// session's last activity for up to `resolution` (zero: never).
    pub fn coalescing(mut self, resolution: Millis) -> PresenceTable {
        self.refreshes.resolution = resolution.max(0);
        self
    }

    /// The rules in force.
    pub fn config(&self) -> &PresenceConfig {
        &self.cfg
    }

    /// Number of users tracked.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no user is tracked.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of sessions tracked.
    pub fn session_count(&self) -> usize {
        self.sessions
    }

    /// A user's state.
    pub fn get(&self, user_id: &str) -> Option<&UserPresence> {
        self.users.get(user_id).map(|s| &s.state)
    }

    /// Every user, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &UserPresence> {
        self.users.values().map(|s| &s.state)
    }

    /// The earliest time at which [`PresenceTable::tick`] has work.
    pub fn next_deadline(&self) -> Option<Millis> {
        match (self.deadlines.next(), self.refreshes.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Puts back a state read from the store or the changelog; not marked changed.
    pub fn restore(&mut self, state: UserPresence) {
        let id = state.user_id.clone();
        self.remove(&id);
        self.sessions += state.sessions.len();
        let deadline = deadline(&state, &self.cfg);
        let users = &self.users;
        self.deadlines.moved(|| users.hash_of(&id), None, deadline);
        self.users.insert(Box::new(Slot {
            state,
            deadline,
            dirty: false,
            held: None,
        }));
    }

    /// Drops a user's state; the heap's entries for it go stale. Returns
    /// whether the user was listed as changed.
    fn remove(&mut self, user_id: &str) -> Option<bool> {
        let old = self.users.remove(user_id)?;
        self.sessions -= old.state.sessions.len();
        Some(old.dirty)
    }

    /// Lists a deleted user as changed unless it already is.
    fn deleted(&mut self, user_id: &str, was_dirty: bool) {
        if !was_dirty {
            self.dirty.push(user_id.to_owned());
        }
    }

    /// Applies one event read at `pos`, with `now` as the current time.
    /// `key` is the record key, which must be the user id when present.
    pub fn apply(
        &mut self,
        key: Option<&str>,
        e: &ActivityEvent,
        pos: Position,
        now: Millis,
    ) -> Result<Applied, Rejected> {
        check_key(key, "user_id", &e.user_id)?;
        let cfg = self.cfg;
        let hash = event_hash(&e.event_id);
        // The id is copied only for a user seen for the first time.
        let slot = match self.users.get_mut(e.user_id.as_str()) {
            Some(slot) => {
                let u = &slot.state;
                let memory = Memory {
                    position: Position {
                        partition: u.source_partition,
                        offset: u.source_offset,
                    },
                    recent: &u.recent_events,
                    latest: latest_activity(u).unwrap_or(Millis::MIN),
                };
                if let Some(done) = admit(
                    Some(memory),
                    &e.user_id,
                    hash,
                    e.occurred_at,
                    pos,
                    cfg.dedup_window,
                )? {
                    return Ok(done);
                }
                slot
            }
            None => self.users.get_or_insert_with(&e.user_id, || {
                Box::new(Slot {
                    state: UserPresence {
                        user_id: e.user_id.as_str().into(),
                        profile_at: Millis::MIN,
                        ..UserPresence::default()
                    },
                    deadline: None,
                    dirty: false,
                    held: None,
                })
            }),
        };
        let user = &mut slot.state;
        let before = user.sessions.len();
        let quiet = crate::refresh::quiet(user, e);
        let floor_before = active_span(user).0;
        apply_body(user, e);
        let mut flipped = false;
        for s in &mut user.sessions {
            flipped |= refresh_session(s, &cfg, now);
        }
        remember(&mut user.recent_events, hash, e.occurred_at);
        if let Some(latest) = latest_activity(user) {
            forget_before(&mut user.recent_events, latest - cfg.dedup_window);
        }
        user.source_partition = pos.partition;
        user.source_offset = pos.offset;
        self.sessions += user.sessions.len() - before;
        let latest = active_span(user).1;
        let next = deadline(user, &cfg);
        let old = std::mem::replace(&mut slot.deadline, next);
        let mut held_now = false;
        if !slot.dirty {
            let verdict = self.refreshes.verdict(
                quiet && !flipped,
                slot.held,
                pos.offset,
                floor_before,
                latest,
            );
            match verdict {
                Verdict::Publish => {
                    slot.dirty = true;
                    self.dirty.push(e.user_id.clone());
                }
                Verdict::Hold(h) => {
                    slot.held = Some(h);
                    held_now = true;
                }
                Verdict::Keep => {}
            }
        }
        let users = &self.users;
        let hash = users.hash_of(&e.user_id);
        self.deadlines.moved(|| hash, old, next);
        if held_now {
            self.refreshes.push(pos.offset, now, hash);
        }
        Ok(Applied::Changed)
    }

    /// Drops everything held about a forgotten user; true when there was
    /// something (the caller then publishes its deletion).
    pub fn forget(&mut self, user_id: &str) -> bool {
        match self.remove(user_id) {
            Some(was_dirty) => {
                self.deleted(user_id, was_dirty);
                true
            }
            None => false,
        }
    }

    /// Expires and purges what is due at `now`; returns how many users changed.
    /// Costs the number of users with a deadline passed, not the number stored.
    pub fn tick(&mut self, now: Millis) -> usize {
        let mut changed = 0;
        loop {
            let users = &self.users;
            let Some(hash) = self.deadlines.pop_due(now, |h| {
                users.with_hash(*h).filter_map(|s| s.deadline).min()
            }) else {
                break;
            };
            let due: Vec<Box<str>> = self
                .users
                .with_hash(hash)
                .filter(|s| s.deadline.is_some_and(|d| d <= now))
                .map(|s| s.state.user_id.clone())
                .collect();
            for id in due {
                changed += self.expire(&id, hash, now);
            }
        }
        for (offset, hash) in self.refreshes.take_due(now) {
            changed += self.publish_held(offset, hash);
        }
        changed
    }

    /// Lists for publishing the user hashed `hash` whose refresh is held
    /// from `offset`, if it still is; returns 1 when it was.
    fn publish_held(&mut self, offset: i64, hash: u64) -> usize {
        let ids: Vec<Box<str>> = self
            .users
            .with_hash(hash)
            .filter(|s| !s.dirty && s.held.is_some_and(|h| h.offset == offset))
            .map(|s| s.state.user_id.clone())
            .collect();
        let mut n = 0;
        for id in ids {
            if let Some(slot) = self.users.get_mut(&id) {
                slot.dirty = true;
                self.dirty.push(id.into_string());
                n += 1;
            }
        }
        n
    }

    /// Lists every held refresh for publishing (before the partition is
    /// handed over or the process stops); returns how many there were.
    pub fn publish_all_held(&mut self) -> usize {
        let mut n = 0;
        for (offset, hash) in self.refreshes.take_all() {
            n += self.publish_held(offset, hash);
        }
        n
    }

    /// The input offset of the first event whose effect is held back and
    /// so neither stored nor published: a restart must read from there.
    /// Call after [`PresenceTable::take_dirty`].
    pub fn held_from(&mut self) -> Option<i64> {
        let users = &self.users;
        self.refreshes.held_from(|offset, hash| {
            users
                .with_hash(hash)
                .any(|s| s.held.is_some_and(|h| h.offset == offset))
        })
    }

    /// Expires and purges what is due at `now` for one user (whose hash in
    /// `users` is `hash`); returns 1 when the user changed.
    fn expire(&mut self, id: &str, hash: u64, now: Millis) -> usize {
        let cfg = self.cfg;
        let Some(slot) = self.users.get_mut(id) else {
            return 0;
        };
        let u = &mut slot.state;
        let before = u.sessions.len();
        let mut touched = false;
        for s in &mut u.sessions {
            touched |= refresh_session(s, &cfg, now);
        }
        u.sessions.retain(|s| s.last_activity + cfg.retention > now);
        touched |= u.sessions.len() != before;
        self.sessions -= before - u.sessions.len();
        if u.sessions.is_empty() {
            let was_dirty = self.remove(id).unwrap_or(false);
            self.deleted(id, was_dirty);
            return 1;
        }
        // The entry that came due is gone: index the new deadline afresh.
        let next = deadline(u, &cfg);
        slot.deadline = next;
        let mut changed = 0;
        if touched {
            changed = 1;
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(id.to_owned());
            }
        }
        self.deadlines.moved(|| hash, None, next);
        changed
    }

    /// The ids of users changed since the last call, sorted; a user no longer
    /// in the table was deleted.
    pub fn take_dirty(&mut self) -> Vec<String> {
        let mut ids = std::mem::take(&mut self.dirty);
        for id in &ids {
            if let Some(slot) = self.users.get_mut(id) {
                slot.dirty = false;
                slot.held = None;
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// True when changes are waiting to be taken.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}
