//! Coalesced "last active" refreshes.
//!
//! Most heartbeats change nothing a reader sees but a session's last
//! activity and its heartbeat count. Publishing each of them costs a store
//! write and a changelog record per heartbeat; holding them back costs
//! freshness of "last active" only. A refresh is held for at most the
//! resolution, both in event time (the held state is never more than the
//! resolution ahead of the published one) and in processing time (a held
//! refresh is published once it has waited that long). Everything else a
//! heartbeat can change (a page, a session going active) is published at
//! once.
//!
//! Held refreshes are in memory only, so the input position a restart
//! resumes from must not pass the first of them: [`Refreshes::held_from`]
//! says where that is, and re-reading from there is harmless because the
//! states carry the input position they reflect.

use std::collections::VecDeque;

use sessionfold_schemas::{ActivityBody, ActivityEvent, Millis, SessionState, UserPresence};

/// A user's refresh held back since input offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Offset of the first event whose effect is not published.
    pub offset: i64,
    /// The oldest last activity of an active session the published state
    /// shows: no active session's is held further than the resolution past it.
    pub published: Millis,
}

/// The queue of held refreshes of one partition, in input order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refreshes {
    /// Zero publishes every change at once.
    pub resolution: Millis,
    /// (offset held from, time due, user hash); entries whose user was
    /// published or dropped since go stale and are skipped.
    queue: VecDeque<(i64, Millis, u64)>,
}

/// What to do with a user after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Publish the state with the next commit.
    Publish,
    /// Hold the refresh back, starting now.
    Hold(Held),
    /// Already held; keep holding.
    Keep,
}

impl Refreshes {
    /// Decides about a user that is not already listed as changed, after
    /// an event that was `quiet` (a refresh only). `floor_before` is the
    /// oldest last activity of the user's active sessions before the
    /// event, `latest` the newest after it.
    pub fn verdict(
        &self,
        quiet: bool,
        held: Option<Held>,
        offset: i64,
        floor_before: Millis,
        latest: Millis,
    ) -> Verdict {
        if !quiet || self.resolution <= 0 {
            return Verdict::Publish;
        }
        let published = held.map_or(floor_before, |h| h.published);
        if latest.saturating_sub(published) > self.resolution {
            return Verdict::Publish;
        }
        match held {
            None => Verdict::Hold(Held { offset, published }),
            Some(_) => Verdict::Keep,
        }
    }

    /// Queues a refresh held from `offset` at `now` for the user hashed `hash`.
    pub fn push(&mut self, offset: i64, now: Millis, hash: u64) {
        self.queue
            .push_back((offset, now.saturating_add(self.resolution), hash));
    }

    /// Takes the entries due at `now`, oldest first.
    pub fn take_due(&mut self, now: Millis) -> Vec<(i64, u64)> {
        let mut due = Vec::new();
        while let Some(&(offset, at, hash)) = self.queue.front() {
            if at > now {
                break;
            }
            self.queue.pop_front();
            due.push((offset, hash));
        }
        due
    }

    /// Takes every entry.
    pub fn take_all(&mut self) -> Vec<(i64, u64)> {
        self.queue.drain(..).map(|(o, _, h)| (o, h)).collect()
    }

    /// The offset of the oldest entry `live` says still holds, dropping
    /// the stale ones in front of it.
    pub fn held_from(&mut self, live: impl Fn(i64, u64) -> bool) -> Option<i64> {
        while let Some(&(offset, _, hash)) = self.queue.front() {
            if live(offset, hash) {
                return Some(offset);
            }
            self.queue.pop_front();
        }
        None
    }

    /// When the oldest entry falls due.
    pub fn next_due(&self) -> Option<Millis> {
        self.queue.front().map(|&(_, at, _)| at)
    }

    /// Number of entries, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

/// True when applying `e` to `u` can only refresh an active session: a
/// heartbeat on a known, active, unended session that names no other page.
/// (The caller also checks that no session's activity flips.)
pub(crate) fn quiet(u: &UserPresence, e: &ActivityEvent) -> bool {
    let ActivityBody::Heartbeat { page, .. } = &e.body else {
        return false;
    };
    let Ok(i) = u
        .sessions
        .binary_search_by(|s| (*s.session_id).cmp(e.session_id.as_str()))
    else {
        return false;
    };
    let s: &SessionState = &u.sessions[i];
    let new_page = page
        .as_deref()
        .is_some_and(|p| e.occurred_at >= s.page_at && s.current_page.as_deref() != Some(p));
    s.active && s.ended_at.is_none() && s.started_at.is_some() && !new_page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(resolution: Millis) -> Refreshes {
        Refreshes {
            resolution,
            ..Refreshes::default()
        }
    }

    #[test]
    fn a_change_that_is_not_quiet_or_a_zero_resolution_publishes_at_once() {
        assert_eq!(
            with(60_000).verdict(false, None, 5, 0, 10),
            Verdict::Publish
        );
        assert_eq!(with(0).verdict(true, None, 5, 0, 10), Verdict::Publish);
    }

    #[test]
    fn a_quiet_refresh_is_held_until_it_runs_past_the_resolution() {
        let r = with(60_000);
        let held = Held {
            offset: 5,
            published: 1_000,
        };
        assert_eq!(r.verdict(true, None, 5, 1_000, 31_000), Verdict::Hold(held));
        assert_eq!(r.verdict(true, None, 5, 1_000, 61_001), Verdict::Publish);
        assert_eq!(
            r.verdict(true, Some(held), 6, 31_000, 61_000),
            Verdict::Keep
        );
        assert_eq!(
            r.verdict(true, Some(held), 7, 61_000, 61_001),
            Verdict::Publish
        );
    }

    #[test]
    fn entries_fall_due_in_order_and_stale_ones_do_not_hold() {
        let mut r = with(100);
        r.push(3, 0, 30);
        r.push(4, 50, 40);
        r.push(9, 60, 90);
        assert_eq!(r.next_due(), Some(100));
        assert_eq!(r.take_due(149), vec![(3, 30)]);
        assert_eq!(r.held_from(|_, hash| hash != 40), Some(9));
        assert_eq!(r.len(), 1);
        assert_eq!(r.take_all(), vec![(9, 90)]);
        assert_eq!(r.held_from(|_, _| true), None);
    }
}
