//! One fixed, seeded event history that every contender is fed.

use sessionfold_schemas::{
    ActivityBody, ActivityEvent, EndReason, Interaction, Millis, SessionStarted,
};

/// A small deterministic generator (PCG-style LCG), so the history is the same
/// on every run and every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const BROWSERS: [&str; 4] = ["Chrome", "Firefox", "Safari", "Edge"];

/// `events` events of `users` users ending near `end`: each user starts a
/// session, sends heartbeats about every 30 s with a page view now and then,
/// and half of them log out at the end. Sorted by event time, as a live
/// stream would arrive.
pub fn generate(seed: u64, users: usize, events: usize, end: Millis) -> Vec<ActivityEvent> {
    let mut rng = Rng::new(seed);
    let per_user = (events / users.max(1)).max(2);
    let span = per_user as i64 * 30_000;
    let mut out = Vec::with_capacity(events);
    for u in 0..users {
        if out.len() >= events {
            break;
        }
        let user = format!("user-{u:07}");
        let session = format!("{user}-s1");
        let mut t = end - span - rng.below(30_000) as i64;
        let push = |out: &mut Vec<ActivityEvent>, n: usize, t: Millis, body| {
            out.push(ActivityEvent {
                event_id: format!("{user}-{n}"),
                occurred_at: t,
                user_id: user.clone(),
                session_id: session.clone(),
                body,
                received_at: Some(t),
            });
        };
        push(
            &mut out,
            0,
            t,
            ActivityBody::SessionStarted(Box::new(SessionStarted {
                email: format!("{user}@example.com"),
                device_type: Some(DEVICES[rng.below(3) as usize].into()),
                browser: Some(BROWSERS[rng.below(4) as usize].into()),
                page: Some("/".into()),
                ..SessionStarted::default()
            })),
        );
        let logout = rng.below(2) == 0;
        let steps = if logout { per_user - 2 } else { per_user - 1 };
        for k in 1..=steps {
            t += 20_000 + rng.below(20_000) as i64;
            let body = if rng.below(5) == 0 {
                ActivityBody::PageViewed {
                    page: format!("/page/{}", rng.below(40)),
                    title: None,
                }
            } else {
                ActivityBody::Heartbeat {
                    page: None,
                    activity: Interaction::Mouse,
                }
            };
            push(&mut out, k, t, body);
        }
        if logout {
            push(
                &mut out,
                per_user,
                t + 1_000,
                ActivityBody::SessionEnded {
                    reason: EndReason::Logout,
                },
            );
        }
    }
    out.truncate(events);
    out.sort_by_key(|e| e.occurred_at);
    out
}
