//! Counts of active users and sessions kept up to date as the changelog is
//! applied, so the summary and the active list's total cost the length of
//! the window, not the number of users held.
//!
//! Every user with a session that has started and not ended contributes, at
//! that session's last activity, one session (with its device and browser);
//! and at the latest such activity, one user. "Active within a window ending
//! at now" is "contributed after now − window", so a query sums the
//! contributions after a time. They are kept at three resolutions (minute,
//! second, millisecond): a query adds whole minutes, then the seconds of the
//! boundary minute, then the milliseconds of the boundary second, and stays
//! exact to the millisecond.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use sessionfold_schemas::{Millis, UserPresence};

/// Users, sessions and per-label session counts at one time slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Agg {
    users: i64,
    sessions: i64,
    /// (label id, sessions); few entries, so a vector beats a map.
    labels: Vec<(u32, i64)>,
}

impl Agg {
    fn is_empty(&self) -> bool {
        self.users == 0 && self.sessions == 0 && self.labels.is_empty()
    }

    fn bump_label(&mut self, label: u32, by: i64) {
        match self.labels.iter_mut().find(|(l, _)| *l == label) {
            Some(entry) => entry.1 += by,
            None => self.labels.push((label, by)),
        }
        self.labels.retain(|(_, n)| *n != 0);
    }

    fn add(&mut self, other: &Agg) {
        self.users += other.users;
        self.sessions += other.sessions;
        for (label, n) in &other.labels {
            self.bump_label(*label, *n);
        }
    }
}

/// The counts of everything active after some time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Users with an active session.
    pub users: usize,
    /// Active sessions.
    pub sessions: usize,
    /// Active sessions by device type.
    pub by_device: BTreeMap<String, usize>,
    /// Active sessions by browser.
    pub by_browser: BTreeMap<String, usize>,
}

const MINUTE: Millis = 60_000;
const SECOND: Millis = 1_000;
const UNKNOWN: &str = "unknown";

/// Incremental activity counts; see the module note.
#[derive(Debug, Default)]
pub struct ActivityCounts {
    /// Label texts; even ids are devices, odd ids browsers.
    names: Vec<String>,
    ids: HashMap<(bool, String), u32>,
    minute: BTreeMap<Millis, Agg>,
    second: BTreeMap<Millis, Agg>,
    milli: BTreeMap<Millis, Agg>,
}

impl ActivityCounts {
    fn label(&mut self, browser: bool, name: Option<&str>) -> u32 {
        let name = name.unwrap_or(UNKNOWN);
        if let Some(id) = self.ids.get(&(browser, name.to_owned())) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.to_owned());
        self.ids.insert((browser, name.to_owned()), id);
        id
    }

    fn bump(&mut self, at: Millis, f: impl Fn(&mut Agg)) {
        for (map, unit) in [
            (&mut self.minute, MINUTE),
            (&mut self.second, SECOND),
            (&mut self.milli, 1),
        ] {
            let key = at.div_euclid(unit);
            let agg = map.entry(key).or_default();
            f(agg);
            if agg.is_empty() {
                map.remove(&key);
            }
        }
    }

    /// Adds (`by` = 1) or takes back (`by` = −1) what a user contributes;
    /// an active session contributes `slack` after its last activity (how
    /// far behind the published one may be).
    pub fn apply(&mut self, u: &UserPresence, by: i64, slack: Millis) {
        let mut latest = None::<Millis>;
        for s in &u.sessions {
            if s.started_at.is_none() || s.ended_at.is_some() {
                continue;
            }
            let at = crate::view::seen_by(s, slack);
            latest = latest.max(Some(at));
            let device = self.label(false, s.device_type.as_deref());
            let browser = self.label(true, s.browser.as_deref());
            self.bump(at, |a| {
                a.sessions += by;
                a.bump_label(device, by);
                a.bump_label(browser, by);
            });
        }
        if let Some(t) = latest {
            self.bump(t, |a| a.users += by);
        }
    }

    /// Everything contributed strictly after `horizon`.
    pub fn after(&self, horizon: Millis) -> Totals {
        let mut sum = Agg::default();
        let minute = horizon.div_euclid(MINUTE);
        let second = horizon.div_euclid(SECOND);
        let ranges = [
            (&self.minute, minute + 1, Millis::MAX),
            (&self.second, second + 1, (minute + 1) * (MINUTE / SECOND)),
            (&self.milli, horizon + 1, (second + 1) * SECOND),
        ];
        for (map, from, to) in ranges {
            if from >= to {
                continue;
            }
            for agg in map
                .range((Bound::Included(from), Bound::Excluded(to)))
                .map(|(_, a)| a)
            {
                sum.add(agg);
            }
        }
        let mut totals = Totals {
            users: usize::try_from(sum.users).unwrap_or(0),
            sessions: usize::try_from(sum.sessions).unwrap_or(0),
            ..Totals::default()
        };
        let by_browser: HashMap<u32, bool> = self
            .ids
            .iter()
            .map(|((browser, _), id)| (*id, *browser))
            .collect();
        for (label, n) in sum.labels {
            let (Some(name), Ok(n)) = (self.names.get(label as usize), usize::try_from(n)) else {
                continue;
            };
            if n == 0 {
                continue;
            }
            let target = if by_browser.get(&label).copied().unwrap_or(false) {
                &mut totals.by_browser
            } else {
                &mut totals.by_device
            };
            target.insert(name.clone(), n);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sessionfold_schemas::SessionState;

    /// The counts by brute force, as the summary computed them before.
    fn recount(users: &[UserPresence], horizon: Millis) -> Totals {
        let mut t = Totals::default();
        for u in users {
            let mut any = false;
            for s in &u.sessions {
                if s.started_at.is_none() || s.ended_at.is_some() || s.last_activity <= horizon {
                    continue;
                }
                any = true;
                t.sessions += 1;
                *t.by_device
                    .entry(s.device_type.as_deref().unwrap_or(UNKNOWN).to_owned())
                    .or_default() += 1;
                *t.by_browser
                    .entry(s.browser.as_deref().unwrap_or(UNKNOWN).to_owned())
                    .or_default() += 1;
            }
            t.users += usize::from(any);
        }
        t
    }

    const BOUNDARIES: [Millis; 9] = [
        0, 999, 1_000, 1_001, 59_999, 60_000, 60_001, 119_000, 125_500,
    ];

    fn session() -> impl Strategy<Value = SessionState> {
        (
            // Times on and around the second and minute boundaries.
            prop::sample::select(BOUNDARIES.to_vec()),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["desktop", "mobile"])),
            prop::option::of(prop::sample::select(vec!["Firefox", "desktop"])),
        )
            .prop_map(|(last, started, ended, device, browser)| SessionState {
                session_id: format!("s{last}").into(),
                started_at: started.then_some(0),
                ended_at: ended.then_some(last),
                last_activity: last,
                device_type: device.map(Into::into),
                browser: browser.map(Into::into),
                ..SessionState::default()
            })
    }

    proptest! {
        /// Users replaced and deleted in any order leave the counts equal
        /// to a recount, at any horizon (to the millisecond).
        #[test]
        fn counts_equal_a_recount(
            versions in prop::collection::vec((0usize..8, prop::collection::vec(session(), 0..3)), 1..40),
            horizons in prop::collection::vec((prop::sample::select(BOUNDARIES.to_vec()), -1i64..=1), 1..8),
        ) {
            let mut counts = ActivityCounts::default();
            let mut users: BTreeMap<usize, UserPresence> = BTreeMap::new();
            for (id, sessions) in versions {
                if let Some(old) = users.remove(&id) {
                    counts.apply(&old, -1, 0);
                }
                if !sessions.is_empty() {
                    let u = UserPresence { user_id: format!("u{id}").into(), sessions, ..UserPresence::default() };
                    counts.apply(&u, 1, 0);
                    users.insert(id, u);
                }
            }
            let all: Vec<UserPresence> = users.into_values().collect();
            for (t, shift) in horizons {
                prop_assert_eq!(counts.after(t + shift), recount(&all, t + shift));
            }
        }
    }
}
