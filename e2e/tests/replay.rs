//! Replay against a real broker: the same answer as the live pipeline, and
//! the same bytes every time.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sessionfold_e2e::{
    Feeder, Stack, activity, bin, eventually, get_json, now_millis, session_started,
};
use sessionfold_schemas::{ImportBody, ImportEvent};

fn run_replay(prefix: &str, until: &str, out: &Path, extra: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(bin("sessionfold-processor")?)
        .args([
            "replay",
            "--brokers",
            &sessionfold_e2e::brokers(),
            "--topic-prefix",
            prefix,
        ])
        .args(["--from", "earliest", "--until", until, "--out"])
        .arg(out)
        .args(extra)
        .output()?;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(output.status.success(), "replay failed:\n{log}");
    Ok(log)
}

fn read(dir: &Path, name: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join(name),
    )?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_matches_the_live_views_and_is_byte_identical() -> anyhow::Result<()> {
    let s = Stack::start("replay", &[], &[]).await?;
    let feeder = Feeder::new(&s.prefix)?;
    let t0 = now_millis() - 60_000;
    let mut events = Vec::new();
    for u in 0..12 {
        let user = format!("r-{u:02}");
        events.push(session_started(format!("{user}-s"), &user, t0 + u));
        for k in 0..5 {
            events.push(activity(
                format!("{user}-{k}"),
                &user,
                t0 + 1_000 * (k + 1),
                k % 2 == 0,
            ));
        }
    }
    // A duplicate, as a retrying client would send it: applied once.
    events.push(activity("r-03-2".into(), "r-03", t0 + 3_000, true));
    feeder.send(&events).await?;
    let import = |id: &str, body: ImportBody| ImportEvent {
        event_id: id.into(),
        occurred_at: t0 + 10_000,
        import_id: "imp-r".into(),
        actor_id: Some("r-01".into()),
        body,
        received_at: None,
    };
    feeder
        .send_imports(&[
            import(
                "i1",
                ImportBody::Started {
                    owner_id: Some("r-01".into()),
                    json_hash: "H".into(),
                    file_name: "f.json".into(),
                    questions_total: 9,
                },
            ),
            import(
                "i2",
                ImportBody::Progressed {
                    step: "parse".into(),
                    progress: 30,
                    questions_imported: 3,
                    questions_total: 9,
                },
            ),
        ])
        .await?;

    let url = format!(
        "{}/v1/presence/active?window=15m&limit=1000",
        s.projections.url
    );
    let views_are = |want: i64| {
        let url = url.clone();
        move || {
            let url = url.clone();
            async move {
                let (_, page) = get_json(&url).await?;
                let views: i64 = page["users"]
                    .as_array()
                    .map(|us| {
                        us.iter()
                            .map(|u| u["sessions"][0]["page_views"].as_i64().unwrap_or(0))
                            .sum()
                    })
                    .unwrap_or(0);
                Ok((page["total"] == 12 && views == want).then_some(page))
            }
        }
    };
    eventually(
        Duration::from_secs(60),
        "live views complete",
        views_are(36),
    )
    .await?;
    // What the live view answers now, recorded to be asked of a replay later.
    let user_url = format!("{}/v1/presence/users/r-03", s.projections.url);
    let (_, live_then) = get_json(&user_url).await?;
    let then = now_millis();
    tokio::time::sleep(Duration::from_millis(20)).await;
    feeder
        .send(&[activity("r-03-later".into(), "r-03", now_millis(), true)])
        .await?;
    let live = eventually(Duration::from_secs(60), "the later view", views_are(37)).await?;
    let (_, live_imports) = get_json(&format!("{}/v1/imports?all=true", s.projections.url)).await?;

    let dir = sessionfold_e2e::scratch()?;
    let until = rfc3339(now_millis());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_replay(&s.prefix, &until, &a, &["--window", "15m"])?;
    run_replay(&s.prefix, &until, &b, &["--window", "15m"])?;
    for name in [
        "presence-users.json",
        "presence-active.json",
        "presence-summary.json",
        "imports.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(name))?,
            std::fs::read(b.join(name))?,
            "{name} differs between two replays"
        );
    }

    // The replayed users are the live users, field for field.
    let replayed = read(&a, "presence-users.json")?;
    let users = replayed["users"].as_array().cloned().unwrap_or_default();
    assert_eq!(users.len(), 12);
    for u in &users {
        let live_user = live["users"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["user_id"] == u["user_id"]))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(u, &live_user, "user {} differs from live", u["user_id"]);
    }
    assert_eq!(users[3]["sessions"][0]["page_views"], 4);
    assert_eq!(users[3]["sessions"][0]["heartbeats"], 2);
    let active = read(&a, "presence-active.json")?;
    assert_eq!(active["total"], 12);
    assert_eq!(active["users"], live["users"]);
    let imports = read(&a, "imports.json")?;
    assert_eq!(imports["imports"], live_imports["imports"]);
    assert_eq!(imports["imports"][0]["progress"], 30);

    // As of the moment recorded above: what the live view answered then.
    let at_then = dir.path().join("then");
    run_replay(&s.prefix, &rfc3339(then), &at_then, &["--window", "15m"])?;
    let replayed_then = read(&at_then, "presence-users.json")?;
    assert_eq!(replayed_then["users"][3], live_then);
    assert_eq!(live_then["sessions"][0]["page_views"], 3);

    // Until a time before the page views: the as-of state of that moment.
    let early = dir.path().join("early");
    run_replay(
        &s.prefix,
        &rfc3339(t0 + 1_500),
        &early,
        &["--window", "15m"],
    )?;
    let then = read(&early, "presence-users.json")?;
    let first = &then["users"][0]["sessions"][0];
    assert_eq!(
        (&first["page_views"], &first["heartbeats"]),
        (&1.into(), &0.into())
    );
    assert_eq!(
        read(&early, "imports.json")?["imports"],
        Value::Array(vec![])
    );

    // Until an hour before every event: nothing folded, and the log says why.
    let before = dir.path().join("before");
    let until = rfc3339(t0 - 3_600_000);
    let log = run_replay(&s.prefix, &until, &before, &[])?;
    let said = format!("--until {until} is before all ");
    let line = log
        .lines()
        .find(|l| l.contains(&said))
        .ok_or_else(|| anyhow::anyhow!("no warning for an empty window in:\n{log}"))?;
    assert!(line.contains(" events read; nothing was folded"), "{line}");
    assert_eq!(
        read(&before, "presence-users.json")?["users"],
        Value::Array(vec![])
    );
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn replay_command(args: &[&str]) -> anyhow::Result<()> {
    sessionfold_e2e::run_processor_command(args).map(|_| ())
}

fn user_ids(dir: &Path) -> anyhow::Result<Vec<String>> {
    let users = read(dir, "presence-users.json")?["users"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(users
        .iter()
        .filter_map(|u| u["user_id"].as_str().map(str::to_owned))
        .collect())
}

/// `--from` a time starts every partition at its first record written at or
/// after it (the log timestamp, not the event time), from the topics and from
/// an export file alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_time_leaves_out_what_was_written_before_it() -> anyhow::Result<()> {
    let prefix = sessionfold_e2e::unique_prefix("replayfrom");
    sessionfold_e2e::create_topics(&prefix).await?;
    let feeder = Feeder::new(&prefix)?;
    let t0 = now_millis() - 60_000;
    let started =
        |who: &str, u: i64| session_started(format!("{who}-{u}-s"), &format!("{who}-{u}"), t0 + u);
    feeder
        .send(&(0..6).map(|u| started("before", u)).collect::<Vec<_>>())
        .await?;
    // Every record above is stamped before `from`, every one below after it.
    let from = now_millis() + 1;
    while now_millis() <= from {
        std::hint::spin_loop();
    }
    feeder
        .send(&(0..6).map(|u| started("after", u)).collect::<Vec<_>>())
        .await?;
    let dir = tempfile::tempdir()?;
    let (topics, file, whole, from_file) = (
        dir.path().join("topics"),
        dir.path().join("history.avro"),
        dir.path().join("whole"),
        dir.path().join("file"),
    );
    let from_s = rfc3339(from);
    let brokers = sessionfold_e2e::brokers();
    let common = [
        "--brokers",
        brokers.as_str(),
        "--topic-prefix",
        prefix.as_str(),
    ];
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let (topics_s, file_s, whole_s, from_file_s) =
        (path(&topics), path(&file), path(&whole), path(&from_file));
    replay_command(
        &[
            &["replay"][..],
            &common,
            &["--from", &from_s, "--out", &topics_s],
        ]
        .concat(),
    )?;
    let after: Vec<String> = (0..6).map(|u| format!("after-{u}")).collect();
    assert_eq!(user_ids(&topics)?, after);
    // The whole history exported, then replayed from the same time.
    replay_command(&[&["export"][..], &common, &["--out", &file_s]].concat())?;
    replay_command(
        &[
            &["replay"][..],
            &common,
            &["--input", &file_s, "--from", &from_s, "--out", &from_file_s],
        ]
        .concat(),
    )?;
    assert_eq!(user_ids(&from_file)?, after);
    // And without `--from`, everyone.
    replay_command(
        &[
            &["replay"][..],
            &common,
            &["--input", &file_s, "--out", &whole_s],
        ]
        .concat(),
    )?;
    let mut everyone: Vec<String> = (0..6).map(|u| format!("before-{u}")).collect();
    everyone.extend(after);
    everyone.sort();
    assert_eq!(user_ids(&whole)?, everyone);
    Ok(())
}
