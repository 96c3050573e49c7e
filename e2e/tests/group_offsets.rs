//! The processor's progress is visible to standard Kafka lag tools: it commits
//! its consumer-group offsets after each sled write, and they reach the end
//! of the input.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use sessionfold_e2e::{Stack, brokers, eventually, post_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_reach_the_end_of_the_input() -> anyhow::Result<()> {
    let s = Stack::start("groupoffsets", &[], &[]).await?;
    let ingest = format!("{}/v1/activity", s.producer.url);
    let users = 12;
    let mut events = Vec::new();
    for u in 0..users {
        events.push(
            json!({"kind": "session_started", "user_id": format!("g{u:02}"),
            "session_id": "s1", "email": format!("g{u:02}@example.com"), "page": "/"}),
        );
        for _ in 0..4 {
            events.push(json!({"kind": "heartbeat", "user_id": format!("g{u:02}"),
                "session_id": "s1", "page": "/", "activity": "keyboard"}));
        }
    }
    let (status, body) = post_json(&ingest, &json!({ "events": events })).await?;
    assert_eq!(status, 202, "{body}");

    // A plain client in the processor's group (the harness names the group
    // after the prefix), asking the broker for the committed offsets, as
    // kafka-consumer-groups does.
    let topic = format!("{}.activity", s.prefix);
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &s.prefix)
        .create()?;
    let committed = eventually(
        Duration::from_secs(60),
        "committed offsets at the end of the input",
        || {
            let (reader, topic) = (&reader, &topic);
            async move {
                let mut want = TopicPartitionList::new();
                let mut ends = 0;
                for p in 0..3 {
                    want.add_partition(topic, p);
                    ends += reader.fetch_watermarks(topic, p, Duration::from_secs(5))?.1;
                }
                let got = reader.committed_offsets(want, Duration::from_secs(5))?;
                let sum: i64 = got
                    .elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum();
                Ok((ends == users * 5 && sum == ends).then_some(sum))
            }
        },
    )
    .await?;
    assert_eq!(committed, users * 5);
    Ok(())
}
