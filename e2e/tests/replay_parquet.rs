//! Parquet for analysts, on the real broker: a replay writes its events and
//! the report's tables as Parquet, `export --out *.parquet` writes the
//! events, DuckDB answers the user guide's three questions (run as the
//! guide writes them) with exactly the replay report's figures, and pandas
//! and pyarrow read every file.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};
use sessionfold_e2e::{
    Feeder, brokers, create_topics, run_processor_command, scratch, unique_prefix,
};
use sessionfold_schemas::{
    ActivityBody, ActivityEvent, EndReason, ImportBody, ImportEvent, Interaction,
};

const DAY1: i64 = 1_796_029_200_000; // 2026-11-30T09:00:00Z
const DAY2: i64 = DAY1 + 86_400_000 + 3_600_000; // 2026-12-01T10:00:00Z
const MIN: i64 = 60_000;

/// A session of `user` from `start`, a heartbeat each minute, ended after
/// `minutes` by a logout.
fn session(user: &str, tag: &str, start: i64, minutes: i64) -> Vec<ActivityEvent> {
    let sid = format!("{user}-{tag}");
    let mut out = vec![ActivityEvent {
        session_id: sid.clone(),
        ..sessionfold_e2e::session_started(format!("{sid}-0"), user, start)
    }];
    for m in 1..minutes {
        out.push(ActivityEvent {
            event_id: format!("{sid}-{m}"),
            occurred_at: start + m * MIN,
            user_id: user.into(),
            session_id: sid.clone(),
            body: ActivityBody::Heartbeat {
                page: Some("/quiz".into()),
                activity: Interaction::Click,
            },
            received_at: Some(start + m * MIN),
        });
    }
    out.push(ActivityEvent {
        event_id: format!("{sid}-end"),
        occurred_at: start + minutes * MIN,
        user_id: user.into(),
        session_id: sid,
        body: ActivityBody::SessionEnded {
            reason: EndReason::Logout,
        },
        received_at: Some(start + minutes * MIN),
    });
    out
}

fn import(id: &str, owner: &str, at: i64, body: ImportBody, n: &str) -> ImportEvent {
    ImportEvent {
        event_id: format!("{id}-{n}"),
        occurred_at: at,
        import_id: id.into(),
        actor_id: Some(owner.into()),
        body,
        received_at: Some(at),
    }
}

fn started(id: &str, owner: &str, at: i64) -> ImportEvent {
    let body = ImportBody::Started {
        owner_id: Some(owner.into()),
        json_hash: format!("h-{id}"),
        file_name: format!("{id}.json"),
        questions_total: 10,
    };
    import(id, owner, at, body, "start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_answers_the_guide_s_questions_with_the_report_s_figures() -> anyhow::Result<()> {
    let prefix = unique_prefix("parquet");
    create_topics(&prefix).await?;
    let feeder = Feeder::new(&prefix)?;
    let mut activity = Vec::new();
    for (user, tag, start, minutes) in [
        ("ann", "d1", DAY1, 10),
        ("bob", "d1", DAY1 + 30 * MIN, 20),
        ("ann", "d2", DAY2, 30),
        ("cy", "d2", DAY2 + 5 * MIN, 40),
    ] {
        activity.extend(session(user, tag, start, minutes));
    }
    feeder.send(&activity).await?;
    feeder
        .send_imports(&[
            started("i1", "ann", DAY1),
            import("i1", "ann", DAY1 + 5 * MIN, ImportBody::Completed, "done"),
            started("i2", "ann", DAY1 + 60 * MIN),
            import("i2", "ann", DAY1 + 80 * MIN, ImportBody::Completed, "done"),
            started("i3", "bob", DAY1 + 30 * MIN),
            import(
                "i3",
                "bob",
                DAY1 + 31 * MIN,
                ImportBody::Abandoned {
                    reason: "bad file".into(),
                },
                "gone",
            ),
            started("i4", "bob", DAY2),
            import("i4", "bob", DAY2 + 30 * MIN, ImportBody::Completed, "done"),
        ])
        .await?;

    let dir = scratch()?;
    let out = dir.path().join("replay");
    let export = dir.path().join("history.parquet");
    let (out_s, export_s) = (out.to_string_lossy(), export.to_string_lossy());
    let common = ["--brokers", &brokers(), "--topic-prefix", &prefix];
    let mut replay = vec!["replay", "--until", "now", "--out", &out_s];
    replay.extend(common);
    run_processor_command(&replay)?;
    let mut exporting = vec!["export", "--out", &export_s];
    exporting.extend(common);
    run_processor_command(&exporting)?;

    let python = std::env::var("SESSIONFOLD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&python)
        .arg(root.join("tests/outside/analyst.py"))
        .arg(root.join("../docs/replay.md"))
        .arg(&out)
        .arg(&export)
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(
        output.status.success(),
        "the analyst's script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Value = serde_json::from_slice(&output.stdout)?;
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json"))?)?;
    let answers = &found["answers"];

    // Daily active users: the guide's SQL, the report, and the history agree.
    let daily: Vec<(String, u64)> = answers["daily-active-users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["day"].as_str().unwrap_or_default()[..10].to_owned(),
                r["users"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let reported: Vec<(String, u64)> = report["daily_users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["day"].as_str().unwrap_or_default().to_owned(),
                r["users"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(daily, reported);
    assert_eq!(
        daily,
        [("2026-11-30".to_owned(), 2), ("2026-12-01".to_owned(), 2)]
    );

    // Session lengths: nearest-rank percentiles over the four closed visits.
    let p = &answers["session-length-percentiles"][0];
    let d = &report["sessions"]["duration"];
    for q in ["p50_ms", "p90_ms", "p95_ms", "p99_ms"] {
        assert_eq!(p[q], d[q], "{q}");
    }
    assert_eq!(
        (
            p["visits"].clone(),
            p["p50_ms"].clone(),
            p["p99_ms"].clone()
        ),
        (json!(4), json!(20 * MIN), json!(40 * MIN))
    );

    // Imports per owner, from the report's imports table and from the history.
    let per_owner = &answers["imports-per-owner"];
    assert_eq!(
        per_owner,
        &json!([
            {"owner_id": "ann", "imports": 2, "completed": 2, "fastest_ms": 5 * MIN, "slowest_ms": 20 * MIN, "total_ms": 25 * MIN},
            {"owner_id": "bob", "imports": 2, "completed": 1, "fastest_ms": 30 * MIN, "slowest_ms": 30 * MIN, "total_ms": 30 * MIN},
        ])
    );
    let csv = std::fs::read_to_string(out.join("imports.csv"))?;
    let mut from_csv: std::collections::BTreeMap<String, (u64, i64)> = Default::default();
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let e = from_csv.entry(cols[1].to_owned()).or_default();
        e.0 += 1;
        e.1 += cols[5].parse::<i64>().unwrap_or(0);
    }
    for row in per_owner.as_array().into_iter().flatten() {
        let owner = row["owner_id"].as_str().unwrap_or_default();
        assert_eq!(
            from_csv.get(owner).copied(),
            Some((
                row["imports"].as_u64().unwrap_or(0),
                row["total_ms"].as_i64().unwrap_or(0)
            )),
            "{owner}"
        );
    }

    // pandas and pyarrow read the tables and the events; times are timestamps.
    let sessions_events: usize = 10 + 20 + 30 + 40 + 4;
    assert_eq!(found["pandas"]["visits"], json!(4));
    assert!(
        found["pandas"]["start_dtype"]
            .as_str()
            .unwrap_or_default()
            .starts_with("datetime64")
    );
    assert_eq!(found["events"]["rows"], json!(sessions_events + 8));
    assert_eq!(found["events"]["outcomes"], json!(["applied"]));
    assert_eq!(found["export"]["rows"], json!(sessions_events + 8));
    assert_eq!(found["export"]["streams"], json!(["activity", "imports"]));
    assert_eq!(
        found["export"]["kinds"],
        json!([
            "heartbeat",
            "import_abandoned",
            "import_completed",
            "import_started",
            "session_ended",
            "session_started"
        ])
    );
    Ok(())
}
