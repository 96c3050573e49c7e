//! A delivery the broker refuses is never hidden: the producer turns
//! `/readyz` not ready, answers new requests 503 with `Retry-After` until
//! deliveries succeed again, counts the failure and logs the episode once.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::json;
use sessionfold_e2e::{Service, brokers, eventually, post_json, unique_prefix};
use sessionfold_schemas::Topics;

/// Creates `t`'s topics (the changelogs compacted) with `limited` taking
/// record batches of `max_bytes` at most.
async fn create_limiting(
    t: &Topics,
    limited: &str,
    max_bytes: &str,
) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()?;
    let topic = |name, partitions| {
        let new = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        if name == limited {
            new.set("max.message.bytes", max_bytes)
        } else {
            new
        }
    };
    let topics = [
        topic(&t.activity, 3),
        topic(&t.imports, 3),
        topic(&t.presence, 3).set("cleanup.policy", "compact"),
        topic(&t.import_ownership, 3).set("cleanup.policy", "compact"),
        topic(&t.dead_letter, 1),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_turns_the_producer_unready() -> anyhow::Result<()> {
    let prefix = unique_prefix("refused");
    let t = Topics::new(&prefix);
    // The operator's activity topic takes record batches of 3,000 bytes at most.
    create_limiting(&t, &t.activity, "3000").await?;
    let dir = sessionfold_e2e::scratch()?;
    let producer = Service::start("sessionfold-producer", &prefix, &[], dir.path()).await?;
    let url = format!("{}/v1/activity", producer.url);
    let ready = format!("{}/readyz", producer.url);

    // Text that lz4 cannot shrink, so the record stays over the limit.
    let noise = |seed: u64| -> String {
        let mut x = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
        (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b"0123456789abcdef"[(x % 16) as usize])
            })
            .collect()
    };
    let big = json!({"kind": "session_started", "user_id": "big", "session_id": "big-s",
        "email": "big@example.com", "user_agent": noise(1), "full_name": noise(2), "page": noise(3)});
    let (status, _) = post_json(&url, &big).await?;
    assert_eq!(
        status, 202,
        "accepted into the buffer; the broker refuses it later"
    );

    eventually(Duration::from_secs(30), "/readyz not ready", || async {
        Ok((reqwest::get(&ready).await?.status().as_u16() == 503).then_some(()))
    })
    .await?;
    let small = |id: &str| {
        json!({"kind": "session_started", "user_id": "small", "session_id": "small-s",
            "email": "small@example.com", "event_id": id})
    };
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(sessionfold_e2e::root_token())
        .json(&small("s1"))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 503);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = r.json().await?;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("MessageSizeTooLarge"), "{body}");
    assert_eq!(body["accepted"], json!([]));
    assert_eq!(
        producer
            .metric("sessionfold_producer_deliveries_failing")
            .await?,
        1.0
    );
    assert_eq!(
        producer
            .metric(r#"sessionfold_producer_deliveries_total{result="failed"}"#)
            .await?,
        1.0
    );

    // Past the hold, a request is the probe: it is delivered and ends the episode.
    let accepted = eventually(Duration::from_secs(30), "requests flow again", || async {
        let (status, body) = post_json(&url, &small("s2")).await?;
        Ok((status == 202).then_some(body))
    })
    .await?;
    assert_eq!(accepted["accepted"], json!(["s2"]));
    eventually(Duration::from_secs(30), "/readyz ready again", || async {
        Ok((reqwest::get(&ready).await?.status().as_u16() == 200).then_some(()))
    })
    .await?;
    eventually(
        Duration::from_secs(30),
        "the episode closed by a delivery",
        || async {
            Ok((producer
                .metric("sessionfold_producer_deliveries_failing")
                .await?
                == 0.0)
                .then_some(()))
        },
    )
    .await?;
    let log = producer.log_text();
    let episodes = log.lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(episodes, 1, "one error line per episode:\n{log}");
    Ok(())
}

/// The processor's changelog refused by the broker: the processor stops
/// with the reason and moves nothing (no state stored, no offset), and once
/// the topic takes the records again a restart publishes every user's state
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_changelog_stops_the_processor_and_a_restart_loses_nothing() -> anyhow::Result<()>
{
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    use sessionfold_e2e::{Feeder, consume_all, exits_within, now_millis, session_started};

    let prefix = unique_prefix("refusedlog");
    let t = Topics::new(&prefix);
    // The presence changelog takes record batches of 64 bytes at most: less
    // than any batch of one state with its headers.
    let admin = create_limiting(&t, &t.presence, "64").await?;
    let at = now_millis();
    let users: Vec<String> = (0..20).map(|i| format!("u{i:02}")).collect();
    let events: Vec<_> = users
        .iter()
        .map(|u| session_started(format!("{u}-e"), u, at))
        .collect();
    Feeder::new(&prefix)?.send(&events).await?;

    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("state");
    let args: Vec<String> = [
        "--topic-prefix",
        &prefix,
        "--partitions",
        "3",
        "--group-id",
        &prefix,
        "--state-dir",
        &state.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (succeeded, log) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        exits_within("sessionfold-processor", &args, Duration::from_secs(90))
    })
    .await??;
    assert!(
        !succeeded,
        "the processor went on past a refused changelog:\n{log}"
    );
    assert!(
        log.contains(&format!("delivering to {}", t.presence)),
        "the reason names the changelog:\n{log}"
    );
    let published = consume_all(&t.presence, 1, Duration::from_secs(3)).await?;
    assert_eq!(published.len(), 0);

    // The operator lifts the limit (the whole configuration is replaced, so
    // compaction is set again).
    let lifted = AlterConfig::new(ResourceSpecifier::Topic(&t.presence))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", "1048588");
    for r in admin.alter_configs(&[lifted], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("altering {t:?}: {e}"))?;
    }
    let p = sessionfold_e2e::start_processor(&prefix, &state, dir.path(), &[]).await?;
    eventually(Duration::from_secs(60), "every event durable", || async {
        let committed = p
            .metric("sessionfold_processor_committed_records_total")
            .await?;
        Ok((committed >= users.len() as f64).then_some(()))
    })
    .await?;
    assert_eq!(
        p.metric("sessionfold_processor_committed_records_total")
            .await?,
        users.len() as f64,
        "each event committed once"
    );
    let states = consume_all(&t.presence, users.len() + 1, Duration::from_secs(5)).await?;
    let mut keys: Vec<String> = states
        .iter()
        .filter_map(|r| Some(String::from_utf8_lossy(r.key.as_ref()?).into_owned()))
        .collect();
    keys.sort();
    assert_eq!(keys, users, "one state per user, none doubled");
    Ok(())
}
