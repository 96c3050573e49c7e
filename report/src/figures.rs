//! The figures of a replay, computed from a [`History`] under the presence
//! rules being tried.
//!
//! A *visit* is one stretch of time during which a session is active by the
//! fold's rule: it starts with `session_started` (or with the first event after
//! the session went idle) and ends at `session_ended`, or when the idle timeout
//! passes after its last event. A session that goes idle and comes back is two
//! visits, which is how a different idle timeout changes the figures.

use std::collections::BTreeMap;

use serde::Serialize;
use sessionfold_fold::session_status;
use sessionfold_schemas::{Millis, SessionState};

use crate::history::{History, weekday_hour};
use crate::rfc3339;

/// The rules the figures are computed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// A session with no event for this long is no longer active.
    pub idle_timeout: Millis,
    /// The as-of time: a visit still active then is open.
    pub until: Millis,
}

/// One visit of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Visit {
    /// The user.
    pub user_id: String,
    /// The client session.
    pub session_id: String,
    /// Device type of the session.
    pub device_type: Option<String>,
    /// Browser of the session.
    pub browser: Option<String>,
    /// When it became active (ms).
    pub start_ms: Millis,
    /// When it stopped being active, or `until` for an open visit (ms).
    pub end_ms: Millis,
    /// Still active at `until`.
    pub open: bool,
}

impl Visit {
    /// Its length in milliseconds.
    pub fn duration_ms(&self) -> Millis {
        self.end_ms - self.start_ms
    }
}

/// Order statistics of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// How many.
    pub count: usize,
    /// Shortest.
    pub min_ms: Option<Millis>,
    /// Median (nearest rank).
    pub p50_ms: Option<Millis>,
    /// 90th percentile (nearest rank).
    pub p90_ms: Option<Millis>,
    /// 95th percentile (nearest rank).
    pub p95_ms: Option<Millis>,
    /// 99th percentile (nearest rank).
    pub p99_ms: Option<Millis>,
    /// Longest.
    pub max_ms: Option<Millis>,
    /// Arithmetic mean, rounded down.
    pub mean_ms: Option<Millis>,
}

/// One histogram bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Human label, e.g. `5–15 min`.
    pub label: String,
    /// Lower bound, inclusive (ms).
    pub from_ms: Millis,
    /// Upper bound, exclusive (ms); none for the last bar.
    pub to_ms: Option<Millis>,
    /// How many values fall in it.
    pub count: usize,
}

/// Users and sessions active during one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// The minute's start, RFC 3339.
    pub minute: String,
    /// The minute's start (ms).
    pub minute_ms: Millis,
    /// Distinct users active at some moment of the minute.
    pub active_users: u64,
    /// Distinct sessions active at some moment of the minute.
    pub active_sessions: u64,
}

/// Counts under one name (a device type, a browser, a reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The name; `unknown` when the event did not say.
    pub name: String,
    /// Sessions (or imports) with it.
    pub sessions: u64,
    /// Distinct users with it.
    pub users: u64,
}

/// Abandoned imports with one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The reason given.
    pub reason: String,
    /// Imports abandoned with it.
    pub imports: u64,
}

/// One cell of the weekday × hour heat map (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourCell {
    /// `Mon` … `Sun`.
    pub weekday: &'static str,
    /// 0–23.
    pub hour: u8,
    /// Accepted activity events.
    pub events: u64,
    /// Sum over the cell's minutes of the users active in each.
    pub user_minutes: u64,
}

/// Views of one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageCount {
    /// The page.
    pub page: String,
    /// `page_viewed` events.
    pub views: u64,
    /// Distinct users who viewed it.
    pub users: u64,
}

/// What became of one import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    /// The import.
    pub import_id: String,
    /// Its owner as of `until`; none for a legacy import.
    pub owner_id: Option<String>,
    /// `completed`, `abandoned`, `deleted` (while in progress) or `in_progress`.
    pub outcome: &'static str,
    /// Start (ms).
    pub started_ms: Option<Millis>,
    /// Completion or abandonment (ms).
    pub finished_ms: Option<Millis>,
    /// From start to completion, for completed imports.
    pub time_to_complete_ms: Option<Millis>,
    /// Why it was abandoned.
    pub abandon_reason: Option<String>,
}

/// The concurrency series and its peak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Concurrency {
    /// Most users active in one minute.
    pub peak_users: u64,
    /// The first minute with that many, RFC 3339.
    pub peak_minute: Option<String>,
    /// Every minute from the first visit to the last (capped at `until`).
    pub minutes: Vec<Minute>,
}

/// Session figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sessions {
    /// Client sessions that started.
    pub sessions: usize,
    /// Distinct users with a started session.
    pub users: usize,
    /// Visits (see the module note); closed plus open.
    pub visits: usize,
    /// Visits still active at `until`, left out of the durations.
    pub open_visits: usize,
    /// Durations of the closed visits.
    pub duration: Stats,
    /// Their histogram.
    pub histogram: Vec<Bucket>,
}

/// Import figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imports {
    /// Imports started.
    pub started: usize,
    /// Completed.
    pub completed: usize,
    /// Abandoned.
    pub abandoned: usize,
    /// Deleted while in progress.
    pub deleted: usize,
    /// Still in progress at `until`.
    pub in_progress: usize,
    /// abandoned ÷ (completed + abandoned); none before any finished.
    pub abandonment_rate: Option<f64>,
    /// Start to completion.
    pub time_to_complete: Stats,
    /// Its histogram.
    pub histogram: Vec<Bucket>,
    /// Abandoned imports by reason, most frequent first.
    pub abandon_reasons: Vec<Reason>,
}

/// Everything a replay reports besides the as-of views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The as-of time, RFC 3339.
    pub as_of: String,
    /// The idle timeout the visits were cut with (ms).
    pub idle_timeout_ms: Millis,
    /// Concurrently active users per minute.
    pub concurrency: Concurrency,
    /// Session and visit figures.
    pub sessions: Sessions,
    /// Sessions by device type.
    pub devices: Vec<Count>,
    /// Sessions by browser.
    pub browsers: Vec<Count>,
    /// Activity by weekday and hour (UTC), Monday 00 first.
    pub peak_hours: Vec<HourCell>,
    /// Pages by views, most viewed first.
    pub pages: Vec<PageCount>,
    /// Import outcomes.
    pub imports: Imports,
    /// Distinct users with a visit starting on each day (UTC), in order.
    pub daily_users: Vec<DailyUsers>,
    /// Every visit, by user, session and start (for the CSV).
    #[serde(skip)]
    pub visits: Vec<Visit>,
    /// Every import's outcome, by id (for the CSV).
    #[serde(skip)]
    pub import_outcomes: Vec<ImportOutcome>,
}

/// The users active on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyUsers {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Distinct users with a visit that started that day.
    pub users: u64,
}

/// Distinct users per UTC day of their visits' starts.
fn daily_users(visits: &[Visit]) -> Vec<DailyUsers> {
    let mut days: BTreeMap<i64, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for v in visits {
        days.entry(v.start_ms.div_euclid(86_400_000))
            .or_default()
            .insert(&v.user_id);
    }
    days.into_iter()
        .map(|(day, users)| DailyUsers {
            day: crate::rfc3339(day * 86_400_000)[..10].to_owned(),
            users: users.len() as u64,
        })
        .collect()
}

/// Weekday names, Monday first.
pub const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const MINUTE: Millis = 60_000;

/// Bounds of the visit-duration histogram.
const VISIT_BUCKETS: &[(Millis, &str)] = &[
    (0, "< 1 min"),
    (MINUTE, "1–5 min"),
    (5 * MINUTE, "5–15 min"),
    (15 * MINUTE, "15–30 min"),
    (30 * MINUTE, "30–60 min"),
    (60 * MINUTE, "1–2 h"),
    (120 * MINUTE, "2–4 h"),
    (240 * MINUTE, "≥ 4 h"),
];

/// Bounds of the time-to-complete histogram.
const IMPORT_BUCKETS: &[(Millis, &str)] = &[
    (0, "< 10 s"),
    (10_000, "10–30 s"),
    (30_000, "30 s–1 min"),
    (MINUTE, "1–5 min"),
    (5 * MINUTE, "5–30 min"),
    (30 * MINUTE, "30 min–2 h"),
    (120 * MINUTE, "≥ 2 h"),
];

/// Cuts one session's events into visits by the fold's own rule
/// (`session_status`): a visit lasts from a start while the session stays
/// active, and an event after it went idle starts the next; none outlives
/// the session's end.
fn visits_of(
    times: &[Millis],
    started: Millis,
    ended: Option<Millis>,
    idle: Millis,
) -> Vec<(Millis, Millis)> {
    let mut sorted: Vec<Millis> = times.iter().copied().filter(|t| *t >= started).collect();
    sorted.sort_unstable();
    let mut session = SessionState {
        started_at: Some(started),
        last_activity: started,
        ..SessionState::default()
    };
    let mut out: Vec<(Millis, Millis)> = Vec::new();
    let mut visit_start = started;
    for t in sorted {
        let (active, _) = session_status(&session, idle, t);
        if !active {
            out.push((visit_start, session.last_activity + idle));
            visit_start = t;
        }
        session.last_activity = session.last_activity.max(t);
    }
    out.push((visit_start, session.last_activity + idle));
    let end = ended.unwrap_or(Millis::MAX);
    out.into_iter()
        .filter(|(s, _)| *s < end)
        .map(|(s, e)| (s, e.min(end)))
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Millis], p: u32) -> Option<Millis> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn stats(mut values: Vec<Millis>) -> Stats {
    values.sort_unstable();
    let n = values.len();
    let sum: i128 = values.iter().map(|v| i128::from(*v)).sum();
    Stats {
        count: n,
        min_ms: values.first().copied(),
        p50_ms: percentile(&values, 50),
        p90_ms: percentile(&values, 90),
        p95_ms: percentile(&values, 95),
        p99_ms: percentile(&values, 99),
        max_ms: values.last().copied(),
        mean_ms: (n > 0).then(|| Millis::try_from(sum / n as i128).unwrap_or(Millis::MAX)),
    }
}

fn histogram(values: &[Millis], bounds: &[(Millis, &str)]) -> Vec<Bucket> {
    bounds
        .iter()
        .enumerate()
        .map(|(i, (from, label))| {
            let to = bounds.get(i + 1).map(|(b, _)| *b);
            Bucket {
                label: (*label).to_owned(),
                from_ms: *from,
                to_ms: to,
                count: values
                    .iter()
                    .filter(|v| **v >= *from && to.is_none_or(|t| **v < t))
                    .count(),
            }
        })
        .collect()
}

/// Adds, per minute, one for each of `spans` (merged first, so a minute is
/// counted once however many spans touch it).
fn count_minutes(series: &mut BTreeMap<Millis, u64>, spans: &mut [(Millis, Millis)]) {
    spans.sort_unstable();
    let mut last_counted = Millis::MIN;
    for (s, e) in spans.iter() {
        if e <= s {
            continue;
        }
        let first = s.div_euclid(MINUTE).max(last_counted + 1);
        let last = (e - 1).div_euclid(MINUTE);
        for m in first..=last {
            *series.entry(m).or_default() += 1;
        }
        last_counted = last_counted.max(last);
    }
}

fn counts(by_name: BTreeMap<String, (u64, std::collections::BTreeSet<&str>)>) -> Vec<Count> {
    let mut out: Vec<Count> = by_name
        .into_iter()
        .map(|(name, (sessions, users))| Count {
            name,
            sessions,
            users: users.len() as u64,
        })
        .collect();
    out.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

impl History {
    /// Computes every figure at `rules.until` with `rules.idle_timeout`.
    pub fn report(&self, rules: Rules) -> Report {
        let mut visits = Vec::new();
        let mut users_series: BTreeMap<Millis, u64> = BTreeMap::new();
        let mut sessions_series: BTreeMap<Millis, u64> = BTreeMap::new();
        let mut user_spans: BTreeMap<&str, Vec<(Millis, Millis)>> = BTreeMap::new();
        let mut devices: BTreeMap<String, (u64, std::collections::BTreeSet<&str>)> =
            BTreeMap::new();
        let mut browsers = devices.clone();
        let mut started_users = std::collections::BTreeSet::new();
        let mut started_sessions = 0;
        for ((user, session), log) in &self.sessions {
            let Some(started) = log.started_at else {
                continue;
            };
            started_sessions += 1;
            started_users.insert(user.as_str());
            let unknown = || "unknown".to_owned();
            let d = devices
                .entry(log.device_type.clone().unwrap_or_else(unknown))
                .or_default();
            d.0 += 1;
            d.1.insert(user);
            let b = browsers
                .entry(log.browser.clone().unwrap_or_else(unknown))
                .or_default();
            b.0 += 1;
            b.1.insert(user);
            let mut spans = Vec::new();
            for (s, e) in visits_of(&log.times, started, log.ended_at, rules.idle_timeout) {
                if s > rules.until {
                    continue;
                }
                let open = e > rules.until;
                let end = e.min(rules.until);
                spans.push((s, end));
                visits.push(Visit {
                    user_id: user.clone(),
                    session_id: session.clone(),
                    device_type: log.device_type.clone(),
                    browser: log.browser.clone(),
                    start_ms: s,
                    end_ms: end,
                    open,
                });
            }
            user_spans
                .entry(user)
                .or_default()
                .extend(spans.iter().copied());
            count_minutes(&mut sessions_series, &mut spans);
        }
        for spans in user_spans.values_mut() {
            count_minutes(&mut users_series, spans);
        }
        let first = users_series.keys().next().copied();
        let last = users_series.keys().next_back().copied();
        let minutes: Vec<Minute> = match (first, last) {
            (Some(first), Some(last)) => (first..=last)
                .map(|m| Minute {
                    minute: rfc3339(m * MINUTE),
                    minute_ms: m * MINUTE,
                    active_users: users_series.get(&m).copied().unwrap_or(0),
                    active_sessions: sessions_series.get(&m).copied().unwrap_or(0),
                })
                .collect(),
            _ => Vec::new(),
        };
        let peak = minutes.iter().fold(None::<&Minute>, |best, m| match best {
            Some(b) if b.active_users >= m.active_users => Some(b),
            _ => Some(m),
        });
        let mut heat = [[0u64; 24]; 7];
        for m in &minutes {
            let (d, h) = weekday_hour(m.minute_ms);
            heat[d][h] += m.active_users;
        }
        let peak_hours = (0..7)
            .flat_map(|d| (0..24).map(move |h| (d, h)))
            .map(|(d, h)| HourCell {
                weekday: WEEKDAYS[d],
                hour: h as u8,
                events: self.events_by_hour[d][h],
                user_minutes: heat[d][h],
            })
            .collect();
        let closed: Vec<Millis> = visits
            .iter()
            .filter(|v| !v.open)
            .map(Visit::duration_ms)
            .collect();
        let sessions = Sessions {
            sessions: started_sessions,
            users: started_users.len(),
            visits: visits.len(),
            open_visits: visits.iter().filter(|v| v.open).count(),
            histogram: histogram(&closed, VISIT_BUCKETS),
            duration: stats(closed),
        };
        let mut pages: Vec<PageCount> = self
            .pages
            .iter()
            .map(|(page, p)| PageCount {
                page: page.clone(),
                views: p.views,
                users: p.users.len() as u64,
            })
            .collect();
        pages.sort_by(|a, b| b.views.cmp(&a.views).then_with(|| a.page.cmp(&b.page)));
        let (imports, import_outcomes) = self.import_figures();
        Report {
            as_of: rfc3339(rules.until),
            idle_timeout_ms: rules.idle_timeout,
            concurrency: Concurrency {
                peak_users: peak.map_or(0, |m| m.active_users),
                peak_minute: peak.map(|m| m.minute.clone()),
                minutes,
            },
            sessions,
            devices: counts(devices),
            browsers: counts(browsers),
            peak_hours,
            pages,
            imports,
            daily_users: daily_users(&visits),
            visits,
            import_outcomes,
        }
    }

    fn import_figures(&self) -> (Imports, Vec<ImportOutcome>) {
        let mut outcomes = Vec::new();
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, log) in &self.imports {
            let outcome = if log.completed_at.is_some() {
                "completed"
            } else if log.abandoned_at.is_some() {
                "abandoned"
            } else if log.deleted_at.is_some() {
                "deleted"
            } else {
                "in_progress"
            };
            if let Some(reason) = &log.abandon_reason {
                *reasons.entry(reason).or_default() += 1;
            }
            outcomes.push(ImportOutcome {
                import_id: id.clone(),
                owner_id: log.owner_id.clone(),
                outcome,
                started_ms: log.started_at,
                finished_ms: log.completed_at.or(log.abandoned_at),
                time_to_complete_ms: log
                    .completed_at
                    .zip(log.started_at)
                    .map(|(done, start)| done - start),
                abandon_reason: log.abandon_reason.clone(),
            });
        }
        let n = |o: &str| outcomes.iter().filter(|x| x.outcome == o).count();
        let (completed, abandoned) = (n("completed"), n("abandoned"));
        let times: Vec<Millis> = outcomes
            .iter()
            .filter_map(|o| o.time_to_complete_ms)
            .collect();
        let mut abandon_reasons: Vec<Reason> = reasons
            .into_iter()
            .map(|(reason, imports)| Reason {
                reason: reason.to_owned(),
                imports,
            })
            .collect();
        abandon_reasons.sort_by(|a, b| {
            b.imports
                .cmp(&a.imports)
                .then_with(|| a.reason.cmp(&b.reason))
        });
        let imports = Imports {
            started: outcomes.iter().filter(|o| o.started_ms.is_some()).count(),
            completed,
            abandoned,
            deleted: n("deleted"),
            in_progress: n("in_progress"),
            abandonment_rate: (completed + abandoned > 0)
                .then(|| abandoned as f64 / (completed + abandoned) as f64),
            histogram: histogram(&times, IMPORT_BUCKETS),
            time_to_complete: stats(times),
            abandon_reasons,
        };
        (imports, outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_longer_than_the_idle_timeout_makes_two_visits() {
        let times = [0, 60_000, 120_000, 600_000, 660_000];
        assert_eq!(
            visits_of(&times, 0, None, 300_000),
            vec![(0, 420_000), (600_000, 960_000)]
        );
        assert_eq!(visits_of(&times, 0, None, 600_000), vec![(0, 1_260_000)]);
    }

    #[test]
    fn an_end_cuts_the_visit_and_nothing_after_it_counts() {
        let times = [0, 60_000, 90_000, 900_000];
        assert_eq!(
            visits_of(&times, 0, Some(90_000), 300_000),
            vec![(0, 90_000)]
        );
    }

    #[test]
    fn an_event_exactly_at_expiry_starts_a_new_visit() {
        assert_eq!(
            visits_of(&[0, 300_000], 0, None, 300_000),
            vec![(0, 300_000), (300_000, 600_000)]
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Millis> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&v, 99), Some(10));
        assert_eq!(percentile(&[7], 1), Some(7));
        let s = stats(vec![3, 1, 2]);
        assert_eq!(
            (s.count, s.min_ms, s.max_ms, s.mean_ms),
            (3, Some(1), Some(3), Some(2))
        );
    }

    #[test]
    fn a_minute_is_counted_once_per_user() {
        let mut series = BTreeMap::new();
        count_minutes(&mut series, &mut [(10_000, 20_000), (30_000, 130_000)]);
        assert_eq!(series, BTreeMap::from([(0, 1), (1, 1), (2, 1)]));
    }
}
