//! The presence fold, without a broker: exact cases and properties.

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

fn ev(id: &str, user: &str, session: &str, at: Millis, body: ActivityBody) -> ActivityEvent {
    ActivityEvent {
        event_id: id.into(),
        occurred_at: at,
        user_id: user.into(),
        session_id: session.into(),
        body,
        received_at: None,
    }
}

fn start(id: &str, user: &str, session: &str, at: Millis) -> ActivityEvent {
    ev(
        id,
        user,
        session,
        at,
        ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: format!("{user}@example.com"),
            device_type: Some("mobile".into()),
            browser: Some("Safari".into()),
            page: Some("/login".into()),
            ..SessionStarted::default()
        })),
    )
}

fn beat(id: &str, user: &str, session: &str, at: Millis, page: &str) -> ActivityEvent {
    ev(
        id,
        user,
        session,
        at,
        ActivityBody::Heartbeat {
            page: Some(page.into()),
            activity: Interaction::Mouse,
        },
    )
}

fn pos(offset: i64) -> Position {
    Position {
        partition: 0,
        offset,
    }
}

#[test]
fn heartbeats_update_activity_page_and_counts() {
    let mut t = PresenceTable::new(cfg());
    let now = T0 + MIN;
    assert_eq!(
        t.apply(Some("u1"), &start("a", "u1", "s1", T0), pos(0), now),
        Ok(Applied::Changed)
    );
    t.apply(None, &beat("b", "u1", "s1", T0 + 30_000, "/x"), pos(1), now)
        .expect("applies");
    // Older heartbeat: counted, but neither last_activity nor page go back.
    t.apply(
        None,
        &beat("c", "u1", "s1", T0 + 10_000, "/old"),
        pos(2),
        now,
    )
    .expect("applies");
    let u = t.get("u1").expect("tracked");
    let s = u.session("s1").expect("session");
    assert_eq!(u.email.as_deref(), Some("u1@example.com"));
    assert_eq!(s.heartbeats, 2);
    assert_eq!(s.page_views, 0);
    assert_eq!(s.last_activity, T0 + 30_000);
    assert_eq!(s.current_page.as_deref(), Some("/x"));
    assert_eq!(s.device_type.as_deref(), Some("mobile"));
    assert!(s.active);
    assert_eq!((u.source_partition, u.source_offset), (0, 2));
    assert_eq!(t.take_dirty(), vec!["u1".to_string()]);
    assert_eq!(t.session_count(), 1);
}

#[test]
fn repeats_by_id_and_by_position_change_nothing() {
    let mut t = PresenceTable::new(cfg());
    t.apply(None, &start("a", "u1", "s1", T0), pos(0), T0)
        .expect("applies");
    t.apply(None, &beat("b", "u1", "s1", T0 + 1, "/"), pos(1), T0)
        .expect("applies");
    let snapshot = t.get("u1").cloned();
    t.take_dirty();
    assert_eq!(
        t.apply(None, &beat("b", "u1", "s1", T0 + 1, "/"), pos(2), T0),
        Ok(Applied::Duplicate)
    );
    assert_eq!(
        t.apply(None, &beat("z", "u1", "s1", T0 + 5, "/"), pos(1), T0),
        Ok(Applied::AlreadyApplied)
    );
    assert_eq!(t.get("u1").cloned(), snapshot);
    assert!(t.take_dirty().is_empty());
}

#[test]
fn heartbeat_without_start_is_not_online() {
    let mut t = PresenceTable::new(cfg());
    t.apply(None, &beat("b", "u1", "s1", T0, "/"), pos(0), T0)
        .expect("applies");
    let s = t.get("u1").and_then(|u| u.session("s1")).expect("session");
    assert!(!s.active);
    assert_eq!(s.ended_reason, None);
    // The start arrives late (out of order): now the session is active.
    t.apply(None, &start("a", "u1", "s1", T0 - 1000), pos(1), T0)
        .expect("applies");
    let s = t.get("u1").and_then(|u| u.session("s1")).expect("session");
    assert!(s.active);
    assert_eq!(s.started_at, Some(T0 - 1000));
    assert_eq!(s.last_activity, T0);
}

#[test]
fn session_end_is_sticky() {
    let mut t = PresenceTable::new(cfg());
    t.apply(None, &start("a", "u1", "s1", T0), pos(0), T0)
        .expect("applies");
    let end = ev(
        "e",
        "u1",
        "s1",
        T0 + 10,
        ActivityBody::SessionEnded {
            reason: EndReason::Logout,
        },
    );
    t.apply(None, &end, pos(1), T0 + 10).expect("applies");
    t.apply(None, &beat("b", "u1", "s1", T0 + 20, "/"), pos(2), T0 + 20)
        .expect("applies");
    let s = t.get("u1").and_then(|u| u.session("s1")).expect("session");
    assert!(!s.active);
    assert_eq!(s.ended_reason, Some(EndedReason::Logout));
    assert_eq!(s.ended_at, Some(T0 + 10));
    assert_eq!(s.heartbeats, 1);
}

#[test]
fn tick_expires_then_purges_then_deletes() {
    let mut t = PresenceTable::new(cfg());
    t.apply(None, &start("a", "u1", "s1", T0), pos(0), T0)
        .expect("applies");
    t.apply(
        None,
        &start("b", "u2", "s2", T0 + 2 * MIN),
        pos(1),
        T0 + 2 * MIN,
    )
    .expect("applies");
    t.take_dirty();
    assert_eq!(t.next_deadline(), Some(T0 + 5 * MIN));
    assert_eq!(t.tick(T0 + 5 * MIN - 1), 0);
    assert_eq!(t.tick(T0 + 5 * MIN), 1);
    let s = t
        .get("u1")
        .and_then(|u| u.session("s1"))
        .expect("still stored");
    assert!(!s.active);
    assert_eq!(s.ended_reason, Some(EndedReason::Expired));
    assert_eq!(t.take_dirty(), vec!["u1".to_string()]);
    assert_eq!(t.next_deadline(), Some(T0 + 7 * MIN));
    // Activity after expiry brings the session back.
    t.apply(
        None,
        &beat("c", "u1", "s1", T0 + 6 * MIN, "/"),
        pos(2),
        T0 + 6 * MIN,
    )
    .expect("applies");
    assert!(
        t.get("u1")
            .and_then(|u| u.session("s1"))
            .is_some_and(|s| s.active)
    );
    assert_eq!(t.tick(T0 + 11 * MIN), 2);
    // Retention of 60 min after the last activity: u1 at T0+66, u2 at T0+62.
    t.take_dirty();
    assert_eq!(t.tick(T0 + 62 * MIN), 1);
    assert!(t.get("u2").is_none());
    assert_eq!(t.take_dirty(), vec!["u2".to_string()]);
    assert_eq!(t.tick(T0 + 66 * MIN), 1);
    assert!(t.is_empty());
    assert_eq!(t.session_count(), 0);
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn late_and_misrouted_events_are_rejected_unchanged() {
    let mut t = PresenceTable::new(cfg());
    t.apply(None, &start("a", "u1", "s1", T0), pos(0), T0)
        .expect("applies");
    let before = t.get("u1").cloned();
    let late = beat("old", "u1", "s1", T0 - 11 * MIN, "/");
    assert_eq!(
        t.apply(None, &late, pos(1), T0),
        Err(Rejected::Late {
            entity: "u1".into(),
            late_by_ms: MIN,
            window_ms: 10 * MIN
        })
    );
    let err = t
        .apply(Some("u9"), &beat("x", "u1", "s1", T0, "/"), pos(2), T0)
        .expect_err("wrong key");
    assert_eq!(
        err.to_string(),
        "record key \"u9\" does not match user_id \"u1\""
    );
    assert_eq!(t.get("u1").cloned(), before);
}

/// Strips what legitimately depends on arrival order: the input position.
fn order_free(t: &PresenceTable) -> Vec<UserPresence> {
    let mut v: Vec<UserPresence> = t
        .users()
        .cloned()
        .map(|mut u| {
            u.source_offset = 0;
            u
        })
        .collect();
    v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    v
}

prop_compose! {
    /// Distinct ids and distinct times, all inside the dedup window.
    fn history()(specs in proptest::collection::vec((0u8..3, 0u8..2, 0u8..4, 0usize..3), 1..40))
        -> Vec<ActivityEvent>
    {
        specs.into_iter().enumerate().map(|(i, (user, session, kind, page))| {
            let (u, s) = (format!("u{user}"), format!("s{user}-{session}"));
            let at = T0 + (i as i64) * 1_000;
            let id = format!("ev-{i}");
            let page = ["/a", "/b", "/c"][page];
            match kind {
                0 => start(&id, &u, &s, at),
                1 => beat(&id, &u, &s, at, page),
                2 => ev(&id, &u, &s, at, ActivityBody::PageViewed { page: page.into(), title: None }),
                _ => ev(&id, &u, &s, at, ActivityBody::SessionEnded { reason: EndReason::Closed }),
            }
        }).collect()
    }
}

fn fold_all(events: &[ActivityEvent], now: Millis) -> PresenceTable {
    let mut t = PresenceTable::new(cfg());
    for (i, e) in events.iter().enumerate() {
        let before: Vec<(Box<str>, Millis)> = t
            .get(&e.user_id)
            .map(|u| {
                u.sessions
                    .iter()
                    .map(|s| (s.session_id.clone(), s.last_activity))
                    .collect()
            })
            .unwrap_or_default();
        t.apply(Some(&e.user_id), e, pos(i as i64), now)
            .expect("in window");
        let u = t.get(&e.user_id).expect("tracked");
        for (id, old) in before {
            let s = u.session(&id).expect("sessions are not dropped by events");
            assert!(s.last_activity >= old, "last_activity of {id} went back");
        }
    }
    t
}

/// Every user's state as a full recount of expiry at `now` would leave it:
/// sessions refreshed, sessions past retention dropped, empty users gone.
fn expired_by_recount(t: &PresenceTable, now: Millis) -> Vec<UserPresence> {
    let c = cfg();
    let mut v: Vec<UserPresence> = t
        .users()
        .cloned()
        .filter_map(|mut u| {
            for s in &mut u.sessions {
                refresh_session(s, &c, now);
            }
            u.sessions.retain(|s| s.last_activity + c.retention > now);
            (!u.sessions.is_empty()).then_some(u)
        })
        .collect();
    v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    v
}

fn by_user(t: &PresenceTable) -> std::collections::BTreeMap<String, UserPresence> {
    t.users()
        .map(|u| (u.user_id.to_string(), u.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn order_does_not_matter(events in history(), seed in any::<u64>()) {
        let now = T0 + 60_000;
        let sorted = fold_all(&events, now);
        let mut shuffled = events.clone();
        shuffle(&mut shuffled, seed);
        let other = fold_all(&shuffled, now);
        prop_assert_eq!(order_free(&sorted), order_free(&other));
    }

    #[test]
    fn duplicates_change_nothing(events in history(), seed in any::<u64>(), picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..20)) {
        let now = T0 + 60_000;
        let clean = fold_all(&events, now);
        let mut noisy = events.clone();
        for p in &picks {
            let e = p.get(&events).clone();
            noisy.push(e);
        }
        shuffle(&mut noisy, seed);
        let mut t = PresenceTable::new(cfg());
        let mut seen = std::collections::HashSet::new();
        for (i, e) in noisy.iter().enumerate() {
            let r = t.apply(None, e, pos(i as i64), now).expect("in window");
            let first = seen.insert(e.event_id.clone());
            prop_assert_eq!(r == Applied::Duplicate, !first);
        }
        prop_assert_eq!(order_free(&clean), order_free(&t));
    }

    /// Events, ticks, forgetting and taking the changes, interleaved: every
    /// user whose state differs from the last take is among the changes
    /// taken (a change left out would never reach the store or the
    /// changelog), and a tick expires exactly what a recount of every user
    /// would.
    #[test]
    fn changes_are_never_lost_and_ticks_miss_nothing(
        events in history(),
        steps in proptest::collection::vec((0u8..6, 0i64..90), 1..40),
    ) {
        let mut t = PresenceTable::new(cfg());
        let mut taken = by_user(&t);
        let mut now = T0;
        let mut next = 0usize;
        for (op, minutes) in steps {
            match op {
                0..=2 => {
                    for _ in 0..3 {
                        let Some(e) = events.get(next) else { break };
                        now = now.max(e.occurred_at);
                        let _ = t.apply(Some(&e.user_id), e, pos(next as i64), now);
                        next += 1;
                    }
                }
                3 => {
                    now += minutes * MIN / 3;
                    let expected = expired_by_recount(&t, now);
                    t.tick(now);
                    let mut got: Vec<UserPresence> = t.users().cloned().collect();
                    got.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                    prop_assert_eq!(got, expected);
                }
                4 => {
                    t.forget(&format!("u{}", minutes % 3));
                }
                _ => {
                    let dirty = t.take_dirty();
                    let mut sorted = dirty.clone();
                    sorted.sort();
                    sorted.dedup();
                    prop_assert_eq!(&dirty, &sorted);
                    let current = by_user(&t);
                    for id in taken.keys().chain(current.keys()) {
                        if taken.get(id) != current.get(id) {
                            prop_assert!(dirty.contains(id), "change of {} not taken", id);
                        }
                    }
                    prop_assert!(!t.has_dirty());
                    taken = current;
                }
            }
        }
    }
}

/// A small deterministic shuffle (xorshift), so a failing case reproduces from its seed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}
