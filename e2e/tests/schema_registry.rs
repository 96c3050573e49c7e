//! The Schema Registry wire format against a real registry (Apicurio
//! Registry's Confluent API, started by scripts/test and named in
//! `SESSIONFOLD_TEST_SCHEMA_REGISTRY`): the ingest registers its schemas and
//! writes the format; the processor folds it, single-object records on the
//! same topic, and what confluent-kafka's own AvroSerializer writes; and a
//! schema the registry finds incompatible is refused before use.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sessionfold_e2e::{
    Feeder, Service, activity, brokers, consume_all, eventually, get_json, now_millis, post_json,
    unique_prefix,
};
use sessionfold_schemas::{Topics, registry_id};

/// The registry's URL; `None` (the test reported as skipped) on tansu.
fn registry(test: &str) -> anyhow::Result<Option<String>> {
    match std::env::var("SESSIONFOLD_TEST_SCHEMA_REGISTRY") {
        Ok(url) => Ok(Some(url)),
        Err(_) if sessionfold_e2e::on_tansu() => {
            sessionfold_e2e::skip(
                test,
                "scripts/test starts the test Schema Registry with Apache Kafka only",
            )?;
            Ok(None)
        }
        Err(_) => anyhow::bail!(
            "SESSIONFOLD_TEST_SCHEMA_REGISTRY is not set: run the tests with scripts/test, which starts a Schema Registry"
        ),
    }
}

async fn registry_call(
    method: reqwest::Method,
    url: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let r = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&body)
        .send()
        .await?;
    Ok(r.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_format_is_written_and_both_formats_are_folded() -> anyhow::Result<()> {
    let Some(url) = registry("the_registry_format_is_written_and_both_formats_are_folded")? else {
        return Ok(());
    };
    let prefix = unique_prefix("registry");
    let t = Topics::new(&prefix);
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("s").to_string_lossy().into_owned();
    let producer = Service::start(
        "sessionfold-producer",
        &prefix,
        &["--wire-format", "registry", "--schema-registry-url", &url],
        dir.path(),
    )
    .await?;
    let mut processor = Service::start(
        "sessionfold-processor",
        &prefix,
        &[
            "--state-dir",
            &state,
            "--group-id",
            &prefix,
            "--schema-registry-url",
            &url,
        ],
        dir.path(),
    )
    .await?;
    processor
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;
    let mut projections =
        Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
    projections
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;

    // Through the ingest: the registry format.
    let events: Vec<_> = std::iter::once(json!({"kind": "session_started", "user_id": "r1", "session_id": "r1-s", "email": "r1@example.com", "event_id": "r1-0"}))
        .chain((0..3).map(|b| json!({"kind": "heartbeat", "user_id": "r1", "session_id": "r1-s", "activity": "click", "event_id": format!("r1-b{b}")})))
        .collect();
    let (status, body) = post_json(
        &format!("{}/v1/activity", producer.url),
        &json!({"events": events}),
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    // On the same topic, two single-object records of the same session.
    let at = now_millis();
    let mut direct: Vec<_> = (0..2)
        .map(|b| activity(format!("r1-d{b}"), "r1", at + b, false))
        .collect();
    for e in &mut direct {
        e.session_id = "r1-s".into();
    }
    Feeder::new(&prefix)?.send(&direct).await?;
    // And what confluent-kafka's AvroSerializer writes through the registry.
    let python = std::env::var("SESSIONFOLD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/outside/client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([
            "produce-registry",
            "--brokers",
            &brokers(),
            "--prefix",
            &prefix,
        ])
        .args([
            "--registry",
            &url,
            "--tag",
            "py",
            "--users",
            "2",
            "--beats",
            "3",
        ])
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(
        out.status.success(),
        "the AvroSerializer producer failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Records naming ids the registry never gave: each is dead-lettered at
    // once (a missing id is remembered), and the stream goes on.
    let mut bogus = Vec::new();
    for id in [2_000_000_001u32, 2_000_000_002, 2_000_000_003] {
        let mut r = vec![0u8];
        r.extend_from_slice(&id.to_be_bytes());
        r.extend_from_slice(b"\x02x");
        bogus.push(r);
    }
    let records: Vec<(Option<&str>, &[u8])> =
        bogus.iter().map(|r| (Some("r1"), r.as_slice())).collect();
    sessionfold_e2e::produce_raw(&t.activity, &records).await?;
    let dead = consume_all(&t.dead_letter, 3, Duration::from_secs(60)).await?;
    assert_eq!(dead.len(), 3);
    for d in &dead {
        assert_eq!(
            d.headers
                .get(sessionfold_schemas::headers::ERROR)
                .map(String::as_str),
            Some(
                format!(
                    "schema id {} from the registry: the registry has no schema with this id",
                    registry_id(d.payload.as_deref().unwrap_or_default()).unwrap_or(0)
                )
                .as_str()
            )
        );
    }

    for (user, beats) in [("r1", 5), ("py-0", 3), ("py-1", 3)] {
        let u = format!("{}/v1/presence/users/{user}", projections.url);
        eventually(Duration::from_secs(60), user, || async {
            let (status, v) = get_json(&u).await?;
            Ok((status == 200 && v["sessions"][0]["heartbeats"] == beats).then_some(()))
        })
        .await?;
    }

    // Every registry-framed record names a version of the subject (the
    // serializer registers its own rendering of the same schema, which the
    // registry may keep as a version of its own).
    let versions = reqwest::get(format!("{url}/subjects/{}-value/versions", t.activity))
        .await?
        .json::<Vec<u64>>()
        .await?;
    let mut subject_ids = Vec::new();
    for v in versions {
        let version = reqwest::get(format!("{url}/subjects/{}-value/versions/{v}", t.activity))
            .await?
            .json::<serde_json::Value>()
            .await?;
        subject_ids.push(version["id"].as_u64().and_then(|i| u32::try_from(i).ok()));
    }
    let raw = consume_all(&t.activity, 4 + 2 + 8 + 3, Duration::from_secs(30)).await?;
    let ids: Vec<Option<u32>> = raw
        .iter()
        .map(|r| r.payload.as_deref().and_then(registry_id))
        .collect();
    assert_eq!(ids.len(), 17);
    assert_eq!(ids.iter().filter(|i| i.is_none()).count(), 2, "{ids:?}");
    let foreign = ids
        .iter()
        .flatten()
        .filter(|i| !subject_ids.contains(&Some(**i)))
        .count();
    assert_eq!(
        foreign, 3,
        "only the three made-up ids are not the subject's: {ids:?} against {subject_ids:?}"
    );
    assert_eq!(
        processor
            .metric(r#"sessionfold_processor_dead_lettered_total{reason="unknown_schema"}"#)
            .await?,
        3.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_subject_is_refused_before_use() -> anyhow::Result<()> {
    let Some(url) = registry("an_incompatible_subject_is_refused_before_use")? else {
        return Ok(());
    };
    let prefix = unique_prefix("incompat");
    let subject = format!("{}-value", Topics::new(&prefix).activity);
    let other = json!({"schema": r#"{"type":"record","name":"ActivityEvent","namespace":"io.sessionfold.activity","fields":[{"name":"x","type":"int"}]}"#});
    let registered = registry_call(
        reqwest::Method::POST,
        &format!("{url}/subjects/{subject}/versions"),
        other,
    )
    .await?;
    assert!(registered["id"].is_u64(), "{registered}");
    registry_call(
        reqwest::Method::PUT,
        &format!("{url}/config/{subject}"),
        json!({"compatibility": "BACKWARD"}),
    )
    .await?;
    let (ok, log) = sessionfold_e2e::exits_within(
        "sessionfold-producer",
        &[
            "--topic-prefix",
            &prefix,
            "--jwt-secret",
            sessionfold_e2e::TEST_SECRET,
            "--wire-format",
            "registry",
            "--schema-registry-url",
            &url,
        ],
        Duration::from_secs(30),
    )?;
    assert!(!ok, "the producer started with an incompatible subject");
    assert!(
        log.contains(&format!("registering the schema of {subject}"))
            && log.contains("incompatible"),
        "{log}"
    );
    Ok(())
}
