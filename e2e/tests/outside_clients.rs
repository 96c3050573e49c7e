//! An outside team's producer and reader, written with fastavro and
//! confluent-kafka from the `.avsc` files alone (tests/outside/client.py):
//! its events, in the current and the first activity schema, compressed with
//! every codec Kafka producers use, are folded exactly; and it decodes the
//! states sessionfold publishes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use sessionfold_e2e::{Stack, brokers, eventually, get_json};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const USERS: usize = 3;
const BEATS: i64 = 4;

/// Runs the outside client with the Python that scripts/test prepared.
fn client(args: &[&str]) -> anyhow::Result<String> {
    let python = std::env::var("SESSIONFOLD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/outside/client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} {args:?} failed ({}); it needs fastavro and confluent-kafka (e2e/tests/outside/requirements.txt), which scripts/test installs:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_avro_producer_is_folded_with_every_codec() -> anyhow::Result<()> {
    let stack = Stack::start("outside", &[], &[]).await?;
    let b = brokers();
    for codec in CODECS {
        client(&[
            "produce",
            "--brokers",
            &b,
            "--prefix",
            &stack.prefix,
            "--codec",
            codec,
            "--users",
            &USERS.to_string(),
            "--beats",
            &BEATS.to_string(),
        ])?;
    }
    let users: Vec<String> = CODECS
        .iter()
        .flat_map(|c| (0..USERS).map(move |i| format!("out-{c}-{i}")))
        .collect();
    for user in &users {
        let url = format!("{}/v1/presence/users/{user}", stack.projections.url);
        let u = eventually(Duration::from_secs(60), user, || async {
            let (status, u) = get_json(&url).await?;
            Ok((status == 200 && u["sessions"][0]["page_views"] == 1).then_some(u))
        })
        .await?;
        assert_eq!(u["sessions"][0]["heartbeats"], BEATS, "{user}: {u}");
        assert_eq!(u["email"], format!("{user}@example.com"));
    }
    for codec in CODECS {
        let url = format!("{}/v1/imports/out-{codec}-import", stack.projections.url);
        let i = eventually(Duration::from_secs(60), codec, || async {
            let (status, i) = get_json(&url).await?;
            Ok((status == 200 && i["progress"] == 40).then_some(i))
        })
        .await?;
        assert_eq!(i["owner_id"], format!("out-{codec}-0"));
    }
    let dead = stack
        .processor
        .metric(r#"sessionfold_processor_dead_lettered_total{reason="unknown_schema"}"#)
        .await?;
    assert_eq!(dead, 0.0);

    // The same outside team reads the states back with fastavro.
    let lines = client(&["presence", "--brokers", &b, "--prefix", &stack.prefix])?;
    let states: BTreeMap<String, serde_json::Value> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok((v["user_id"].as_str().unwrap_or_default().to_owned(), v))
        })
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(states.len(), users.len(), "{lines}");
    for user in &users {
        let s = &states[user];
        assert_eq!(
            (&s["heartbeats"], &s["page_views"], &s["current_page"]),
            (
                &serde_json::json!(BEATS),
                &serde_json::json!(1),
                &serde_json::json!("/results")
            ),
            "{user}"
        );
    }

    // An analyst reads the export with pandas: the kind is a column of its own.
    let dir = sessionfold_e2e::scratch()?;
    let file = dir
        .path()
        .join("export.avro")
        .to_string_lossy()
        .into_owned();
    sessionfold_e2e::run_processor_command(&[
        "export",
        "--brokers",
        &b,
        "--topic-prefix",
        &stack.prefix,
        "--out",
        &file,
    ])?;
    let summary: serde_json::Value =
        serde_json::from_str(&client(&["export-kinds", "--file", &file])?)?;
    let n = (CODECS.len() * USERS) as i64;
    assert_eq!(
        summary["kinds"],
        serde_json::json!({
            "session_started": n, "heartbeat": n * BEATS, "page_viewed": n,
            "import_started": CODECS.len(), "import_progressed": CODECS.len(),
        }),
        "{summary}"
    );
    for column in [
        "stream",
        "partition",
        "offset",
        "key",
        "kind",
        "actor_role",
        "activity",
        "import",
    ] {
        assert!(
            summary["columns"]
                .as_array()
                .is_some_and(|c| c.contains(&serde_json::json!(column))),
            "{column} in {summary}"
        );
    }
    Ok(())
}
