//! The steady load: every online user heartbeats once per interval, spread
//! evenly over it, through the ingest, with a documented mix of the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::history::Rng;

/// Per thousand events of the load: page changes, then tab closes (each
/// followed by a new session of the same user at once); the rest are
/// heartbeats on the page held.
pub const PAGE_CHANGES_PER_MILLE: u64 = 30;
/// See [`PAGE_CHANGES_PER_MILLE`].
pub const CLOSES_PER_MILLE: u64 = 10;

/// The ingest's largest batch.
const BATCH: usize = 1000;

/// How the load reaches the ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// A gateway batching its users' events, up to 1000 per request.
    Batched,
    /// One event per request, as a browser posts (keep-alive).
    Single,
}

/// What the load has sent so far.
#[derive(Default)]
pub struct Sent {
    /// Events accepted by the ingest.
    pub events: AtomicU64,
    /// Of which heartbeats.
    pub heartbeats: AtomicU64,
    /// Requests answered 202.
    pub requests: AtomicU64,
    /// Requests answered otherwise (a 503 is retried and counted here).
    pub refused: AtomicU64,
}

impl Sent {
    /// (events, heartbeats, requests) so far.
    pub fn snapshot(&self) -> (f64, f64, f64) {
        (
            self.events.load(Ordering::Relaxed) as f64,
            self.heartbeats.load(Ordering::Relaxed) as f64,
            self.requests.load(Ordering::Relaxed) as f64,
        )
    }
}

/// Users come online over this many intervals, so that their cycles of
/// held and published refreshes are spread as arrivals spread them, not
/// in step.
pub const ARRIVAL_INTERVALS: u64 = 3;

/// One user's session as the load knows it.
#[derive(Clone)]
struct User {
    session: u32,
    page: u8,
    /// Turns before the user comes online.
    arrives_in: u8,
}

fn session_id(user: usize, session: u32) -> String {
    format!("st{user}-{session}")
}

fn start(user: usize, u: &User) -> Value {
    json!({"kind": "session_started", "user_id": format!("st{user}"),
        "session_id": session_id(user, u.session), "email": format!("st{user}@example.com"),
        "device_type": if user % 3 == 0 { "mobile" } else { "desktop" },
        "browser": if user % 2 == 0 { "Firefox" } else { "Chrome" },
        "page": format!("/p/{}", u.page)})
}

/// The users' states and the next events they send.
pub struct Load {
    users: Vec<User>,
    rng: Rng,
    interval: Duration,
}

impl Load {
    /// `n` users heartbeating every `interval` on page 0, each coming
    /// online at its turn in one of the first [`ARRIVAL_INTERVALS`].
    pub fn new(n: usize, interval: Duration, seed: u64) -> Load {
        let mut rng = Rng::new(seed);
        let users = (0..n)
            .map(|_| User {
                session: 0,
                page: 0,
                arrives_in: rng.below(ARRIVAL_INTERVALS) as u8 + 1,
            })
            .collect();
        Load {
            users,
            rng,
            interval,
        }
    }

    /// The events of users whose turn falls in `[from, to)` since the load
    /// began; each user's turn is at its share of the interval.
    pub fn due(&mut self, from: Duration, to: Duration) -> (Vec<Value>, u64) {
        let n = self.users.len() as u128;
        let period = self.interval.as_nanos().max(1);
        let slot = |t: Duration| t.as_nanos() * n / period;
        let (a, b) = (slot(from), slot(to));
        let mut events = Vec::new();
        let mut beats = 0;
        for k in a..b {
            let i = (k % n) as usize;
            let roll = self.rng.below(1000);
            let u = &mut self.users[i];
            let user = format!("st{i}");
            if u.arrives_in > 0 {
                u.arrives_in -= 1;
                if u.arrives_in == 0 {
                    events.push(start(i, u));
                }
                continue;
            }
            if roll < PAGE_CHANGES_PER_MILLE {
                u.page = (u.page + 1) % 8;
                events.push(json!({"kind": "page_viewed", "user_id": user,
                    "session_id": session_id(i, u.session), "page": format!("/p/{}", u.page)}));
            } else if roll < PAGE_CHANGES_PER_MILLE + CLOSES_PER_MILLE {
                events.push(json!({"kind": "session_ended", "user_id": user,
                    "session_id": session_id(i, u.session), "reason": "closed"}));
                u.session += 1;
                events.push(start(i, u));
            } else {
                beats += 1;
                events.push(json!({"kind": "heartbeat", "user_id": user,
                    "session_id": session_id(i, u.session), "activity": "timer"}));
            }
        }
        (events, beats)
    }
}

/// Posts `events` to `url`, batched or one per request, `in_flight` at
/// once; a 503 is retried after a pause. Counts into `sent`.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    events: Vec<Value>,
    path: Path,
    in_flight: usize,
    sent: &Sent,
) -> anyhow::Result<()> {
    let bodies: Vec<Value> = match path {
        Path::Batched => events
            .chunks(BATCH)
            .map(|c| json!({ "events": c }))
            .collect(),
        Path::Single => events,
    };
    let results = futures::stream::iter(bodies.into_iter().map(|body| async move {
        let n = body["events"].as_array().map_or(1, Vec::len) as u64;
        loop {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?;
            match r.status().as_u16() {
                202 => {
                    sent.requests.fetch_add(1, Ordering::Relaxed);
                    sent.events.fetch_add(n, Ordering::Relaxed);
                    return anyhow::Ok(());
                }
                503 | 429 => {
                    sent.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                s => anyhow::bail!("ingest answered {s}: {}", r.text().await?),
            }
        }
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<_>>()
    .await;
    results.into_iter().collect()
}

/// Runs the load until `stop`: every 100 ms the users due are posted.
pub async fn run(
    mut load: Load,
    url: String,
    token: String,
    path: Arc<std::sync::Mutex<Path>>,
    sent: Arc<Sent>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let began = Instant::now();
    let mut done = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = began.elapsed();
        let (events, beats) = load.due(done, now);
        done = now;
        let how = *sessionfold_edge::lock(&path);
        let in_flight = if how == Path::Single { 64 } else { 4 };
        post(&client, &url, &token, events, how, in_flight, &sent).await?;
        sent.heartbeats.fetch_add(beats, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_arrives_once_and_is_then_due_once_per_interval() {
        let mut load = Load::new(1000, Duration::from_secs(30), 7);
        // (session starts, heartbeats and page views) in interval k.
        let interval = |load: &mut Load, k: u32| {
            let (mut starts, mut others) = (0, 0);
            let mut t = Duration::from_secs(30) * k;
            while t < Duration::from_secs(30) * (k + 1) {
                let next = t + Duration::from_millis(100);
                for e in load.due(t, next).0 {
                    match e["kind"].as_str() {
                        Some("session_started") => starts += 1,
                        // A close is followed by the new session's start.
                        Some("session_ended") => {
                            starts -= 1;
                            others += 1;
                        }
                        _ => others += 1,
                    }
                }
                t = next;
            }
            (starts, others)
        };
        let mut online = 0;
        for k in 0..ARRIVAL_INTERVALS as u32 {
            let (starts, others) = interval(&mut load, k);
            assert_eq!(
                others, online,
                "interval {k}: only those online before send"
            );
            online += starts;
        }
        assert_eq!(online, 1000);
        assert_eq!(interval(&mut load, ARRIVAL_INTERVALS as u32), (0, 1000));
    }
}
