//! A delivery the broker refuses is never hidden: the producer turns
//! `/readyz` not ready, answers new requests 503 with `Retry-After` until
//! deliveries succeed again, counts the failure and logs the episode once.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::json;
use sessionfold_e2e::{Service, brokers, eventually, post_json, unique_prefix};
use sessionfold_schemas::Topics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_turns_the_producer_unready() -> anyhow::Result<()> {
    let prefix = unique_prefix("refused");
    let t = Topics::new(&prefix);
    // The operator's activity topic takes record batches of 3,000 bytes at most.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()?;
    let topics = [
        NewTopic::new(&t.activity, 3, TopicReplication::Fixed(1)).set("max.message.bytes", "3000"),
        NewTopic::new(&t.imports, 3, TopicReplication::Fixed(1)),
        NewTopic::new(&t.presence, 3, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
        NewTopic::new(&t.import_ownership, 3, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact"),
        NewTopic::new(&t.dead_letter, 1, TopicReplication::Fixed(1)),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
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
