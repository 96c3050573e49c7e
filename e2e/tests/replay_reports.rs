//! Replay reports against a real broker: figures a hand calculation gives,
//! independence from arrival order and duplicates, and the Avro export.

use std::path::Path;

use serde_json::Value;
use sessionfold_e2e::{Feeder, activity, brokers, create_topics, run_processor_command, scratch};
use sessionfold_schemas::{
    ActivityBody, ActivityEvent, EndReason, ImportBody, ImportEvent, SessionStarted,
};

/// 2026-01-05T10:00:00Z, a Monday.
const BASE: i64 = 1_767_607_200_000;
const MIN: i64 = 60_000;

fn replay(prefix: &str, until: i64, out: &Path, extra: &[&str]) -> anyhow::Result<String> {
    let until = rfc3339(until);
    let out = out.to_string_lossy();
    let brokers = brokers();
    let mut args = vec![
        "replay",
        "--brokers",
        &brokers,
        "--topic-prefix",
        prefix,
        "--until",
        &until,
        "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    run_processor_command(&args)
}

fn read(dir: &Path, name: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join(name),
    )?)?)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn started(id: &str, user: &str, at: i64, device: &str, browser: &str) -> ActivityEvent {
    ActivityEvent {
        event_id: id.into(),
        occurred_at: at,
        user_id: user.into(),
        session_id: format!("{user}-s"),
        body: ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: format!("{user}@example.com"),
            device_type: Some(device.into()),
            browser: Some(browser.into()),
            ..SessionStarted::default()
        })),
        received_at: Some(at),
    }
}

fn ended(id: &str, user: &str, at: i64) -> ActivityEvent {
    ActivityEvent {
        body: ActivityBody::SessionEnded {
            reason: EndReason::Logout,
        },
        ..activity(id.into(), user, at, false)
    }
}

fn viewed(id: &str, user: &str, at: i64, page: &str) -> ActivityEvent {
    ActivityEvent {
        body: ActivityBody::PageViewed {
            page: page.into(),
            title: None,
        },
        ..activity(id.into(), user, at, false)
    }
}

fn import(id: &str, import_id: &str, at: i64, body: ImportBody) -> ImportEvent {
    ImportEvent {
        event_id: id.into(),
        occurred_at: at,
        import_id: import_id.into(),
        actor_id: Some("a".into()),
        body,
        received_at: Some(at),
    }
}

fn import_started(id: &str, import_id: &str, at: i64) -> ImportEvent {
    import(
        id,
        import_id,
        at,
        ImportBody::Started {
            owner_id: Some("a".into()),
            json_hash: format!("hash-{import_id}"),
            file_name: "quiz.json".into(),
            questions_total: 10,
        },
    )
}

/// Three users on a Monday morning and four imports.
///
/// a: desktop/Firefox, starts 0:00, heartbeats 1:00 2:00 10:00 11:00, logs out 12:00.
/// b: mobile/Safari, starts 0:30, views /reports 3:00, heartbeat 8:30.
/// c: desktop/Firefox, starts 20:00, heartbeat 21:00.
fn small_history() -> (Vec<ActivityEvent>, Vec<ImportEvent>) {
    let at = |m: i64, s: i64| BASE + m * MIN + s * 1000;
    let hb = |id: &str, user: &str, t: i64| activity(id.into(), user, t, false);
    let activity = vec![
        started("a0", "a", at(0, 0), "desktop", "Firefox"),
        started("b0", "b", at(0, 30), "mobile", "Safari"),
        hb("a1", "a", at(1, 0)),
        hb("a2", "a", at(2, 0)),
        viewed("b1", "b", at(3, 0), "/reports"),
        hb("b2", "b", at(8, 30)),
        hb("a3", "a", at(10, 0)),
        hb("a4", "a", at(11, 0)),
        ended("a5", "a", at(12, 0)),
        started("c0", "c", at(20, 0), "desktop", "Firefox"),
        hb("c1", "c", at(21, 0)),
    ];
    let imports = vec![
        import_started("i1-0", "i1", at(0, 0)),
        import("i1-1", "i1", at(1, 30), ImportBody::Completed),
        import_started("i2-0", "i2", at(1, 0)),
        import(
            "i2-1",
            "i2",
            at(5, 0),
            ImportBody::Abandoned {
                reason: "user_cancelled".into(),
            },
        ),
        import_started("i3-0", "i3", at(2, 0)),
        import(
            "i3-1",
            "i3",
            at(2, 10),
            ImportBody::Progressed {
                step: "parse".into(),
                progress: 20,
                questions_imported: 2,
                questions_total: 10,
            },
        ),
        import_started("i4-0", "i4", at(3, 0)),
        import("i4-1", "i4", at(3, 30), ImportBody::Completed),
    ];
    (activity, imports)
}

/// The integer fields of an object, in order (`i64::MIN` when absent).
fn ints(v: &Value, names: &[&str]) -> Vec<i64> {
    names
        .iter()
        .map(|n| v[*n].as_i64().unwrap_or(i64::MIN))
        .collect()
}

fn column(csv: &str, name: &str) -> Vec<String> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let Some(i) = header.iter().position(|h| *h == name) else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').nth(i).unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_idle_timeout_gives_the_hand_calculated_figures() -> anyhow::Result<()> {
    let prefix = sessionfold_e2e::unique_prefix("report");
    create_topics(&prefix).await?;
    let feeder = Feeder::new(&prefix)?;
    let (activity, imports) = small_history();
    feeder.send(&activity).await?;
    feeder.send_imports(&imports).await?;
    let dir = scratch()?;
    let until = BASE + 40 * MIN;

    // Idle timeout 2 min: a [0:00,4:00) [10:00,12:00); b [0:30,2:30) [3:00,5:00)
    // [8:30,10:30); c [20:00,23:00).
    let two = dir.path().join("two");
    let log = replay(&prefix, until, &two, &["--idle-timeout", "2m"])?;
    // Standard error is a pipe here: the progress bar must stay silent.
    assert!(
        !log.contains(" records "),
        "progress drawn into a pipe: {log}"
    );
    assert!(log.contains("replay done"), "{log}");
    let r = read(&two, "report.json")?;
    let s = &r["sessions"];
    assert_eq!(ints(s, &["sessions", "users"]), [3, 3]);
    assert_eq!(ints(s, &["visits", "open_visits"]), [6, 0]);
    let d = &s["duration"];
    assert_eq!(
        ints(
            d,
            &["count", "min_ms", "p50_ms", "p90_ms", "max_ms", "mean_ms"]
        ),
        [6, 120_000, 120_000, 240_000, 240_000, 150_000]
    );
    assert_eq!(s["histogram"][1]["label"], "1–5 min");
    assert_eq!(s["histogram"][1]["count"], 6);
    let csv = std::fs::read_to_string(two.join("concurrency.csv"))?;
    let users: Vec<String> = column(&csv, "active_users");
    let expected = "2 2 2 2 1 0 0 0 1 1 2 1 0 0 0 0 0 0 0 0 1 1 1";
    assert_eq!(users.join(" "), expected);
    assert_eq!(column(&csv, "minute")[0], "2026-01-05T10:00:00.000Z");
    assert_eq!(r["concurrency"]["peak_users"], 2);
    assert_eq!(r["concurrency"]["peak_minute"], "2026-01-05T10:00:00.000Z");
    let monday_10 = &r["peak_hours"][10];
    assert_eq!(monday_10["weekday"], "Mon");
    assert_eq!(
        ints(monday_10, &["hour", "events", "user_minutes"]),
        [10, 11, 17]
    );
    assert_eq!(
        r["devices"][0],
        serde_json::json!({"name": "desktop", "sessions": 2, "users": 2})
    );
    assert_eq!(
        r["devices"][1],
        serde_json::json!({"name": "mobile", "sessions": 1, "users": 1})
    );
    assert_eq!(r["browsers"][0]["name"], "Firefox");
    assert_eq!(
        r["pages"],
        serde_json::json!([{"page": "/reports", "views": 1, "users": 1}])
    );
    let i = &r["imports"];
    assert_eq!(
        ints(i, &["started", "completed", "abandoned", "in_progress"]),
        [4, 2, 1, 1]
    );
    assert_eq!(i["abandonment_rate"].as_f64(), Some(1.0 / 3.0));
    let t = &i["time_to_complete"];
    assert_eq!(
        ints(t, &["p50_ms", "max_ms", "mean_ms"]),
        [30_000, 90_000, 60_000]
    );
    assert_eq!(
        i["abandon_reasons"],
        serde_json::json!([{"reason": "user_cancelled", "imports": 1}])
    );
    let visits = std::fs::read_to_string(two.join("visits.csv"))?;
    assert_eq!(
        column(&visits, "duration_ms").join(" "),
        "240000 120000 120000 120000 120000 180000"
    );
    for chart in ["concurrency.svg", "peak-hours.svg", "session-durations.svg"] {
        let svg = std::fs::read_to_string(two.join(chart))?;
        assert!(svg.starts_with("<svg"), "{chart} is not an SVG");
    }
    let summary = std::fs::read_to_string(two.join("summary.md"))?;
    assert!(
        summary.contains("| Peak concurrent users | 2 (minute 2026-01-05T10:00:00.000Z) |"),
        "{summary}"
    );
    assert!(
        summary.contains("| Abandonment rate | 33.3 % |"),
        "{summary}"
    );
    assert!(summary.contains("(concurrency.svg)"), "{summary}");

    // Idle timeout 5 min: a [0:00,7:00) [10:00,12:00); b [0:30,8:00) [8:30,13:30);
    // c [20:00,26:00).
    let five = dir.path().join("five");
    replay(&prefix, until, &five, &["--idle-timeout", "5m"])?;
    let r = read(&five, "report.json")?;
    let d = &r["sessions"]["duration"];
    assert_eq!(r["sessions"]["visits"], 5);
    assert_eq!(
        ints(d, &["min_ms", "p50_ms", "p90_ms", "max_ms", "mean_ms"]),
        [120_000, 360_000, 450_000, 450_000, 330_000]
    );
    assert_eq!(r["sessions"]["histogram"][1]["count"], 1);
    assert_eq!(r["sessions"]["histogram"][2]["count"], 4);
    let csv = std::fs::read_to_string(five.join("concurrency.csv"))?;
    let expected = "2 2 2 2 2 2 2 1 1 1 2 2 1 1 0 0 0 0 0 0 1 1 1 1 1 1";
    assert_eq!(column(&csv, "active_users").join(" "), expected);
    assert_eq!(r["peak_hours"][10]["user_minutes"], 29);

    // As of 21:30 with 5 min: c's visit is still open and left out of the durations.
    let mid = dir.path().join("mid");
    replay(
        &prefix,
        BASE + 21 * MIN + 30_000,
        &mid,
        &["--idle-timeout", "5m"],
    )?;
    let r = read(&mid, "report.json")?;
    assert_eq!(ints(&r["sessions"], &["visits", "open_visits"]), [5, 1]);
    assert_eq!(r["sessions"]["duration"]["count"], 4);
    let active = read(&mid, "presence-active.json")?;
    assert_eq!(active["total"], 1);
    assert_eq!(active["users"][0]["user_id"], "c");
    Ok(())
}

/// A small deterministic generator, so the history is the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Forty users over two hours, with pauses longer than the idle timeout,
/// logouts, page views on a handful of pages, and imports of every outcome.
fn generated_history() -> (Vec<ActivityEvent>, Vec<ImportEvent>) {
    let mut rng = Lcg(7);
    let devices = ["desktop", "mobile", "tablet"];
    let browsers = ["Firefox", "Chrome", "Safari"];
    let pages = ["/home", "/quiz", "/reports", "/imports", "/settings"];
    let mut activity = Vec::new();
    let mut imports = Vec::new();
    for u in 0..40u64 {
        let user = format!("g{u:02}");
        let mut t = BASE + (rng.next(60) as i64) * MIN;
        activity.push(started(
            &format!("{user}-0"),
            &user,
            t,
            devices[rng.next(3) as usize],
            browsers[rng.next(3) as usize],
        ));
        let steps = 5 + rng.next(30);
        for k in 1..=steps {
            t += 20_000 + (rng.next(240) as i64) * 1000;
            if rng.next(10) == 0 {
                t += 8 * MIN;
            }
            let id = format!("{user}-{k}");
            activity.push(if rng.next(3) == 0 {
                viewed(&id, &user, t, pages[rng.next(5) as usize])
            } else {
                sessionfold_e2e::activity(id, &user, t, false)
            });
        }
        if rng.next(2) == 0 {
            activity.push(ended(&format!("{user}-end"), &user, t + 1000));
        }
        if u % 4 == 0 {
            let id = format!("imp-{u}");
            let s = BASE + (rng.next(90) as i64) * MIN;
            imports.push(import_started(&format!("{id}-0"), &id, s));
            match u % 3 {
                0 => imports.push(import(
                    &format!("{id}-1"),
                    &id,
                    s + (rng.next(600) as i64) * 1000,
                    ImportBody::Completed,
                )),
                1 => imports.push(import(
                    &format!("{id}-1"),
                    &id,
                    s + 5 * MIN,
                    ImportBody::Abandoned {
                        reason: "timeout".into(),
                    },
                )),
                _ => {}
            }
        }
    }
    activity.sort_by_key(|e| e.occurred_at);
    (activity, imports)
}

/// Every file a replay writes except the sled store.
fn outputs(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path())?,
            ));
        }
    }
    files.sort();
    Ok(files)
}

fn assert_same_outputs(a: &Path, b: &Path, what: &str) -> anyhow::Result<()> {
    let (a, b) = (outputs(a)?, outputs(b)?);
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs: {what}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_duplicated_history_gives_the_sorted_answer_and_the_export_too()
-> anyhow::Result<()> {
    let (activity, imports) = generated_history();
    let sorted = sessionfold_e2e::unique_prefix("sorted");
    let messy = sessionfold_e2e::unique_prefix("messy");
    for p in [&sorted, &messy] {
        create_topics(p).await?;
    }
    Feeder::new(&sorted)?.send(&activity).await?;
    Feeder::new(&sorted)?.send_imports(&imports).await?;

    // Each event moved up to three minutes from its place (well inside the
    // ten-minute deduplication window), and one in eight sent twice.
    let mut rng = Lcg(11);
    let mut shuffled: Vec<(i64, ActivityEvent)> = activity
        .iter()
        .map(|e| {
            (
                e.occurred_at + (rng.next(360) as i64 - 180) * 1000,
                e.clone(),
            )
        })
        .collect();
    let mut extra = Vec::new();
    for (at, e) in &shuffled {
        if rng.next(8) == 0 {
            extra.push((at + (rng.next(120) as i64) * 1000, e.clone()));
        }
    }
    shuffled.extend(extra);
    shuffled.sort_by_key(|(at, e)| (*at, e.event_id.clone()));
    let messy_events: Vec<ActivityEvent> = shuffled.into_iter().map(|(_, e)| e).collect();
    assert!(
        messy_events.len() > activity.len() + 50,
        "enough duplicates"
    );
    assert!(
        messy_events
            .windows(2)
            .filter(|w| w[1].occurred_at < w[0].occurred_at)
            .count()
            > 100,
        "enough disorder"
    );
    let feeder = Feeder::new(&messy)?;
    feeder.send(&messy_events).await?;
    let mut messy_imports = imports.clone();
    messy_imports.extend(imports.iter().step_by(3).cloned());
    feeder.send_imports(&messy_imports).await?;

    let dir = scratch()?;
    let until = BASE + 4 * 60 * MIN;
    let (a, b) = (dir.path().join("sorted"), dir.path().join("messy"));
    replay(&sorted, until, &a, &[])?;
    replay(&messy, until, &b, &[])?;
    let r = read(&a, "report.json")?;
    assert_eq!(r["sessions"]["sessions"], 40);
    assert!(
        r["sessions"]["visits"].as_u64() > Some(40),
        "pauses make extra visits"
    );
    assert_eq!(r["imports"]["started"], 10);
    // The views carry input offsets, which differ between the two topics;
    // the users themselves must not.
    let users = |d: &Path| -> anyhow::Result<Value> {
        let mut v = read(d, "presence-users.json")?;
        for u in v["users"].as_array_mut().into_iter().flatten() {
            if let Some(o) = u.as_object_mut() {
                o.retain(|k, _| !k.starts_with("source_"));
            }
        }
        Ok(v)
    };
    assert_eq!(users(&a)?, users(&b)?);
    for name in [
        "report.json",
        "concurrency.csv",
        "visits.csv",
        "session-durations.csv",
        "devices-browsers.csv",
        "peak-hours.csv",
        "pages.csv",
        "imports.csv",
        "summary.md",
        "concurrency.svg",
        "peak-hours.svg",
        "session-durations.svg",
        "presence-active.json",
        "presence-summary.json",
    ] {
        assert!(
            std::fs::read(a.join(name))? == std::fs::read(b.join(name))?,
            "{name}: the shuffled, duplicated history answers differently"
        );
    }

    // The export file replays to the very same bytes as the topics.
    let file = dir.path().join("messy.avro");
    let file_arg = file.to_string_lossy().into_owned();
    let brokers = brokers();
    run_processor_command(&[
        "export",
        "--brokers",
        &brokers,
        "--topic-prefix",
        &messy,
        "--out",
        &file_arg,
    ])?;
    let c = dir.path().join("from-file");
    let c_arg = c.to_string_lossy().into_owned();
    let until_arg = rfc3339(until);
    run_processor_command(&[
        "replay", "--input", &file_arg, "--until", &until_arg, "--out", &c_arg,
    ])?;
    assert_same_outputs(
        &b,
        &c,
        "a replay of the export differs from a replay of the topics",
    )?;
    Ok(())
}
