//! Realistic traffic through the client: logins, browsing, idle spells,
//! closed tabs and logouts, at a steady overall rate.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{Client, ClientError};
use crate::input::ActivityInput;

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Distinct users.
    pub users: usize,
    /// Events per second, overall.
    pub rate: f64,
    /// How long to run.
    pub duration: Duration,
    /// Seed of the random choices, so a run can be repeated.
    pub seed: u64,
}

/// What a simulation sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// Events accepted, by kind.
    pub by_kind: BTreeMap<String, u64>,
}

impl SimReport {
    /// Events accepted in all.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

const PAGES: &[&str] = &[
    "/",
    "/dashboard",
    "/courses",
    "/courses/42",
    "/quiz/7",
    "/settings",
    "/imports",
];
const DEVICES: &[(&str, &str, &str)] = &[
    ("desktop", "Chrome", "Windows"),
    ("desktop", "Firefox", "Linux"),
    ("desktop", "Safari", "macOS"),
    ("mobile", "Safari", "iOS"),
    ("mobile", "Chrome", "Android"),
    ("tablet", "Safari", "iPadOS"),
];
const ACTIVITIES: &[&str] = &[
    "mouse",
    "keyboard",
    "click",
    "scroll",
    "visibility",
    "timer",
    "navigation",
];

struct SimUser {
    id: String,
    session: Option<String>,
    sessions_started: u32,
    idle_steps: u32,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn next_event(rng: &mut StdRng, u: &mut SimUser) -> Option<ActivityInput> {
    if u.idle_steps > 0 {
        u.idle_steps -= 1;
        return None;
    }
    let Some(session) = u.session.clone() else {
        u.sessions_started += 1;
        let session = format!("{}-s{}", u.id, u.sessions_started);
        u.session = Some(session.clone());
        let (device, browser, os) = *pick(rng, DEVICES);
        return Some(ActivityInput {
            kind: "session_started".into(),
            user_id: u.id.clone(),
            session_id: session,
            email: Some(format!("{}@example.com", u.id)),
            full_name: Some(format!("User {}", u.id)),
            membership: Some(
                if rng.random_bool(0.3) {
                    "premium"
                } else {
                    "free"
                }
                .into(),
            ),
            roles: Some(vec!["learner".into()]),
            device_type: Some(device.into()),
            browser: Some(browser.into()),
            os: Some(os.into()),
            ip_address: Some(format!(
                "10.0.{}.{}",
                rng.random_range(0..255),
                rng.random_range(1..255)
            )),
            user_agent: Some(format!("Mozilla/5.0 ({os}) {browser}")),
            page: Some("/".into()),
            ..ActivityInput::default()
        });
    };
    let roll: f64 = rng.random();
    let base = ActivityInput {
        user_id: u.id.clone(),
        session_id: session,
        ..ActivityInput::default()
    };
    Some(if roll < 0.60 {
        ActivityInput {
            kind: "heartbeat".into(),
            page: Some(pick(rng, PAGES).to_string()),
            activity: Some(pick(rng, ACTIVITIES).to_string()),
            ..base
        }
    } else if roll < 0.88 {
        let page = pick(rng, PAGES).to_string();
        ActivityInput {
            kind: "page_viewed".into(),
            title: Some(format!("Page {page}")),
            page: Some(page),
            ..base
        }
    } else if roll < 0.95 {
        // An idle spell: the tab stays open, nothing is sent for a while.
        u.idle_steps = rng.random_range(5..60);
        ActivityInput {
            kind: "heartbeat".into(),
            activity: Some("visibility".into()),
            ..base
        }
    } else {
        u.session = None;
        u.idle_steps = rng.random_range(0..30);
        ActivityInput {
            kind: "session_ended".into(),
            reason: Some(
                if rng.random_bool(0.6) {
                    "closed"
                } else {
                    "logout"
                }
                .into(),
            ),
            ..base
        }
    })
}

/// Sends traffic until `cfg.duration` has passed; one request per 100 ms step.
pub async fn simulate(client: &Client, cfg: SimConfig) -> Result<SimReport, ClientError> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut users: Vec<SimUser> = (0..cfg.users.max(1))
        .map(|i| SimUser {
            id: format!("sim-user-{i:05}"),
            session: None,
            sessions_started: 0,
            idle_steps: 0,
        })
        .collect();
    let step = Duration::from_millis(100);
    let per_step = cfg.rate * step.as_secs_f64();
    let mut carry = 0.0;
    let mut report = SimReport::default();
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(step);
    while started.elapsed() < cfg.duration {
        ticker.tick().await;
        carry += per_step;
        let want = carry.floor() as usize;
        carry -= want as f64;
        let mut events = Vec::with_capacity(want);
        let mut tries = 0;
        while events.len() < want && tries < want * 4 + 4 {
            tries += 1;
            let i = rng.random_range(0..users.len());
            if let Some(e) = next_event(&mut rng, &mut users[i]) {
                events.push(e);
            }
        }
        if events.is_empty() {
            continue;
        }
        let kinds: Vec<String> = events.iter().map(|e| e.kind.clone()).collect();
        client.send_activity(events).await?;
        for k in kinds {
            *report.by_kind.entry(k).or_default() += 1;
        }
    }
    Ok(report)
}
