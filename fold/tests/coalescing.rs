//! Coalesced "last active" refreshes, without a broker: what is published
//! differs from the fold only in last activity and heartbeat counts, by
//! less than the resolution, and a restart from the held offset loses and
//! doubles nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sessionfold_fold::*;
use sessionfold_schemas::*;

const T0: Millis = 1_700_000_000_000;
const MIN: Millis = 60_000;

fn cfg() -> PresenceConfig {
    PresenceConfig {
        idle_timeout: 5 * MIN,
        retention: 60 * MIN,
        dedup_window: 10 * MIN,
    }
}

fn table(resolution: Millis) -> PresenceTable {
    PresenceTable::new(cfg()).coalescing(resolution)
}

fn pos(offset: usize) -> Position {
    Position {
        partition: 0,
        offset: offset as i64,
    }
}

fn event(i: usize, user: u8, session: u8, at: Millis, kind: u8, page: usize) -> ActivityEvent {
    let page = ["/a", "/b"][page];
    let body = match kind {
        0 => ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: format!("u{user}@example.com"),
            page: Some(page.into()),
            ..SessionStarted::default()
        })),
        1 => ActivityBody::PageViewed {
            page: page.into(),
            title: None,
        },
        2 => ActivityBody::SessionEnded {
            reason: EndReason::Logout,
        },
        // Mostly heartbeats on the page held, as in steady traffic.
        _ => ActivityBody::Heartbeat {
            page: (kind % 2 == 0).then(|| page.into()),
            activity: Interaction::Timer,
        },
    };
    ActivityEvent {
        event_id: format!("ev-{i}"),
        occurred_at: at,
        user_id: format!("u{user}"),
        session_id: format!("s{user}-{session}"),
        body,
        received_at: None,
    }
}

/// One step of a schedule.
#[derive(Debug, Clone)]
enum Step {
    /// The next event, `gap` ms after the previous.
    Event(ActivityEvent, Millis),
    /// A tick, `gap` ms on.
    Tick(Millis),
    /// A commit: the changes are taken and published.
    Commit,
}

prop_compose! {
    fn schedule()(specs in proptest::collection::vec(
        (0u8..12, 0u8..4, 0u8..2, 0u8..12, 0usize..2, 0i64..40_000), 1..120))
        -> Vec<Step>
    {
        specs.into_iter().enumerate().map(|(i, (op, user, session, kind, page, gap))| match op {
            0 => Step::Commit,
            1 => Step::Tick(gap * 3),
            _ => Step::Event(event(i, user, session, T0, kind, page), gap),
        }).collect()
    }
}

fn resolutions() -> impl Strategy<Value = Millis> {
    prop::sample::select(vec![0, 30_000, MIN, 5 * MIN])
}

fn by_user(t: &PresenceTable) -> BTreeMap<String, UserPresence> {
    t.users()
        .map(|u| (u.user_id.to_string(), u.clone()))
        .collect()
}

/// The state as a reader sees it, less what a refresh may hold back.
fn visible(u: &UserPresence) -> UserPresence {
    let mut u = u.clone();
    u.recent_events.clear();
    u.source_offset = 0;
    for s in &mut u.sessions {
        s.last_activity = 0;
        s.heartbeats = 0;
        // When the page held was last named: bookkeeping no view shows.
        s.page_at = 0;
    }
    u
}

/// Runs a schedule; calls `commit` with the published states and the
/// offset a restart would read from after each commit.
fn run(
    t: &mut PresenceTable,
    steps: &[Step],
    mut commit: impl FnMut(usize, &BTreeMap<String, UserPresence>, usize) -> Result<(), TestCaseError>,
) -> Result<Millis, TestCaseError> {
    let (mut at, mut now) = (T0, T0);
    let mut published = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Event(e, gap) => {
                at += gap;
                now = now.max(at);
                let mut e = e.clone();
                e.occurred_at = at;
                t.apply(Some(&e.user_id), &e, pos(i), now)
                    .map_err(|r| TestCaseError::fail(r.to_string()))?;
            }
            Step::Tick(gap) => {
                now += gap;
                t.tick(now);
            }
            Step::Commit => {
                for id in t.take_dirty() {
                    match t.get(&id) {
                        Some(u) => published.insert(id, u.clone()),
                        None => published.remove(&id),
                    };
                }
                let resume = t.held_from().map_or(i + 1, |h| h as usize);
                commit(i, &published, resume)?;
            }
        }
    }
    Ok(now)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// After every commit the published states equal the fold in all but
    /// last activity and heartbeat counts, last activity is behind by no
    /// more than the resolution, and nothing is held without a resume
    /// offset at or before it.
    #[test]
    fn what_is_published_lags_only_in_last_activity_and_within_the_resolution(
        steps in schedule(),
        resolution in resolutions(),
    ) {
        let mut exact_at = Vec::new();
        // The exact fold, committed at the same points.
        run(&mut table(0), &steps, |i, published, _| {
            exact_at.push((i, published.clone()));
            Ok(())
        })?;
        let mut exact = exact_at.into_iter();
        let mut t = table(resolution);
        run(&mut t, &steps, |i, published, resume| {
            let (j, truth) = exact.next().expect("same commits");
            prop_assert_eq!(i, j);
            prop_assert_eq!(
                published.keys().collect::<Vec<_>>(),
                truth.keys().collect::<Vec<_>>()
            );
            for (id, u) in &truth {
                let p = &published[id];
                prop_assert_eq!(visible(p), visible(u), "{} differs in more than last activity", id);
                for (ps, s) in p.sessions.iter().zip(&u.sessions) {
                    prop_assert!(ps.last_activity <= s.last_activity);
                    prop_assert!(
                        s.last_activity - ps.last_activity <= resolution,
                        "{} last activity {} behind", id, s.last_activity - ps.last_activity
                    );
                }
                if p != u {
                    // The user's first event not in what was published.
                    let first = steps.iter().enumerate().position(|(k, step)| {
                        k as i64 > p.source_offset
                            && matches!(step, Step::Event(e, _) if e.user_id == **id)
                    });
                    let first = first.expect("a held effect comes from an event");
                    prop_assert!(resume <= first, "resume {} past {}'s held effect at {}", resume, id, first);
                }
            }
            Ok(())
        })?;
    }

    /// A crash right after any commit, and a restart from the published
    /// states and the held offset, ends exactly where the run without the
    /// crash ends: every effect once, none lost.
    #[test]
    fn a_restart_from_the_held_offset_is_exactly_once(
        steps in schedule(),
        resolution in resolutions(),
        crash_at in any::<prop::sample::Index>(),
    ) {
        let mut whole = table(resolution);
        let mut commits = Vec::new();
        let end = run(&mut whole, &steps, |i, published, resume| {
            commits.push((i, published.clone(), resume));
            Ok(())
        })?;
        whole.tick(end);
        if commits.is_empty() {
            return Ok(());
        }
        let (crashed_after, published, resume) = crash_at.get(&commits).clone();
        let mut restarted = table(resolution);
        for u in published.values() {
            restarted.restore(u.clone());
        }
        // The input is read again from the held offset; ticks and commits
        // before the crash are gone with the process.
        let (mut at, mut now) = (T0, T0);
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Event(e, gap) => {
                    at += gap;
                    now = now.max(at);
                    if i >= resume {
                        let mut e = e.clone();
                        e.occurred_at = at;
                        restarted.apply(Some(&e.user_id), &e, pos(i), now)
                            .map_err(|r| TestCaseError::fail(r.to_string()))?;
                    }
                }
                Step::Tick(gap) => {
                    now += gap;
                    if i > crashed_after {
                        restarted.tick(now);
                    }
                }
                Step::Commit => {
                    if i > crashed_after {
                        let _ = restarted.take_dirty();
                    }
                }
            }
        }
        restarted.tick(end);
        prop_assert_eq!(by_user(&restarted), by_user(&whole));
    }
}

#[test]
fn steady_heartbeats_publish_once_per_resolution() {
    let mut t = table(5 * MIN);
    let start = event(0, 1, 0, T0, 0, 0);
    t.apply(Some("u1"), &start, pos(0), T0).expect("applies");
    assert_eq!(t.take_dirty(), vec!["u1".to_owned()]);
    let mut published = 0;
    // Twenty minutes of heartbeats every 30 s, committed after each.
    for i in 1..=40usize {
        let at = T0 + i as i64 * 30_000;
        let mut beat = event(i, 1, 0, at, 3, 0);
        beat.occurred_at = at;
        t.apply(Some("u1"), &beat, pos(i), at).expect("applies");
        t.tick(at);
        published += t.take_dirty().len();
        let held = t.held_from();
        assert!(held.is_none_or(|h| h <= i as i64));
    }
    // 40 heartbeats, one publication per five minutes and a half.
    assert_eq!(published, 3);
}

#[test]
fn every_held_refresh_is_published_before_a_handover() {
    let mut t = table(MIN);
    t.apply(Some("u1"), &event(0, 1, 0, T0, 0, 0), pos(0), T0)
        .expect("applies");
    let _ = t.take_dirty();
    t.apply(
        Some("u1"),
        &event(1, 1, 0, T0 + 5_000, 3, 0),
        pos(1),
        T0 + 5_000,
    )
    .expect("applies");
    assert!(t.take_dirty().is_empty());
    assert_eq!(t.held_from(), Some(1));
    assert_eq!(t.publish_all_held(), 1);
    assert_eq!(t.take_dirty(), vec!["u1".to_owned()]);
    assert_eq!(t.held_from(), None);
}
