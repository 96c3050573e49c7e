//! Realistic traffic through the client: logins, browsing, idle spells,
//! closed tabs and logouts, and admins walking imports through their steps
//! (several at once, some abandoned, the same file uploaded twice, one
//! transferred), at a steady overall rate. It acts for many users, so it
//! needs a service token when the producer checks tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{Client, ClientError};
use crate::input::{ActivityInput, ImportInput};

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
    /// Admins running imports (0: no import traffic).
    pub admins: usize,
    /// Share of the events that are import events, 0 to 1.
    pub import_share: f64,
    /// Tag of this run in session and import ids: a session that ended, or an
    /// import that finished, in an earlier run is never written to again.
    pub run: u64,
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
    run: u64,
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
        let session = format!("{}-{:x}-s{}", u.id, u.run, u.sessions_started);
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

/// Files the simulated admins upload; few, so the same file comes up twice.
const FILES: &[(&str, &str, i32)] = &[
    ("biology-2026.json", "sha256:5f1c0a", 120),
    ("chemistry-final.json", "sha256:9e77b2", 80),
    ("history-quiz.json", "sha256:03d4aa", 45),
    ("physics-midterm.json", "sha256:c2a918", 200),
];
const STEPS: &[&str] = &["parse", "validate", "map_categories", "import_questions"];

struct SimImport {
    id: String,
    total: i32,
    step: usize,
}

struct SimAdmin {
    id: String,
    run: u64,
    current: Option<SimImport>,
    started: u32,
}

/// The next import event of one admin, as `(import_id, event)`.
fn next_import_event(
    rng: &mut StdRng,
    admins: &mut [SimAdmin],
    who: usize,
) -> Option<(String, ImportInput)> {
    let admin_ids: Vec<String> = admins.iter().map(|a| a.id.clone()).collect();
    let a = &mut admins[who];
    let base = ImportInput {
        actor_id: Some(a.id.clone()),
        ..ImportInput::default()
    };
    let Some(imp) = a.current.as_mut() else {
        a.started += 1;
        let (file, hash, total) = *pick(rng, FILES);
        let id = format!("imp-{}-{:x}-{}", a.id, a.run, a.started);
        a.current = Some(SimImport {
            id: id.clone(),
            total,
            step: 0,
        });
        // One import in twenty comes from the old system and has no owner.
        let owner_id = rng.random_bool(0.05).then_some(None);
        return Some((
            id,
            ImportInput {
                kind: "import_started".into(),
                owner_id,
                json_hash: Some(hash.into()),
                file_name: Some(file.into()),
                questions_total: Some(total),
                ..base
            },
        ));
    };
    let id = imp.id.clone();
    let roll: f64 = rng.random();
    let event = if imp.step >= STEPS.len() {
        a.current = None;
        ImportInput {
            kind: "import_completed".into(),
            ..base
        }
    } else if roll < 0.65 {
        imp.step += 1;
        let n = i32::try_from(imp.step).unwrap_or(i32::MAX);
        let steps = i32::try_from(STEPS.len()).unwrap_or(1);
        ImportInput {
            kind: "import_progressed".into(),
            step: Some(STEPS[imp.step - 1].into()),
            progress: Some(n * 100 / steps),
            questions_imported: Some(imp.total * n / steps),
            questions_total: Some(imp.total),
            ..base
        }
    } else if roll < 0.85 {
        ImportInput {
            kind: "import_accessed".into(),
            ..base
        }
    } else if roll < 0.95 {
        a.current = None;
        ImportInput {
            kind: "import_abandoned".into(),
            reason: Some("closed the wizard".into()),
            ..base
        }
    } else {
        // Hand the import to another admin, who may or may not pick it up.
        let others: Vec<&String> = admin_ids.iter().filter(|o| **o != a.id).collect();
        if others.is_empty() {
            return None;
        }
        let to = (*pick(rng, &others)).clone();
        a.current = None;
        ImportInput {
            kind: "import_transferred".into(),
            new_owner_id: Some(to),
            ..base
        }
    };
    Some((id, event))
}

/// Sends traffic until `cfg.duration` has passed; one request per 100 ms step.
pub async fn simulate(client: &Client, cfg: SimConfig) -> Result<SimReport, ClientError> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut users: Vec<SimUser> = (0..cfg.users.max(1))
        .map(|i| SimUser {
            id: format!("sim-user-{i:05}"),
            run: cfg.run,
            session: None,
            sessions_started: 0,
            idle_steps: 0,
        })
        .collect();
    let mut report = SimReport::default();
    let mut admins: Vec<SimAdmin> = (0..cfg.admins)
        .map(|i| SimAdmin {
            id: format!("sim-admin-{i:02}"),
            run: cfg.run,
            current: None,
            started: 0,
        })
        .collect();
    if !admins.is_empty() {
        // Admins sign in first, so the import monitor knows their e-mail.
        let logins = admins
            .iter()
            .map(|a| ActivityInput {
                kind: "session_started".into(),
                user_id: a.id.clone(),
                session_id: format!("{}-{:x}-s1", a.id, a.run),
                email: Some(format!("{}@example.com", a.id)),
                full_name: Some(format!("Admin {}", a.id)),
                roles: Some(vec!["admin".into()]),
                device_type: Some("desktop".into()),
                browser: Some("Firefox".into()),
                page: Some("/imports".into()),
                ..ActivityInput::default()
            })
            .collect();
        client.send_activity(logins).await?;
        *report.by_kind.entry("session_started".into()).or_default() += admins.len() as u64;
    }
    let import_share = if admins.is_empty() {
        0.0
    } else {
        cfg.import_share.clamp(0.0, 1.0)
    };
    let step = Duration::from_millis(100);
    let per_step = cfg.rate * step.as_secs_f64();
    let mut carry = 0.0;
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(step);
    while started.elapsed() < cfg.duration {
        ticker.tick().await;
        carry += per_step;
        let want = carry.floor() as usize;
        carry -= want as f64;
        let mut imports: BTreeMap<String, Vec<ImportInput>> = BTreeMap::new();
        let mut import_count = 0;
        for _ in 0..want {
            if rng.random_bool(import_share) {
                let who = rng.random_range(0..admins.len());
                if let Some((id, e)) = next_import_event(&mut rng, &mut admins, who) {
                    imports.entry(id).or_default().push(e);
                    import_count += 1;
                }
            }
        }
        for (id, events) in imports {
            let kinds: Vec<String> = events.iter().map(|e| e.kind.clone()).collect();
            client.send_imports(&id, events).await?;
            for k in kinds {
                *report.by_kind.entry(k).or_default() += 1;
            }
        }
        let want = want - import_count;
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
