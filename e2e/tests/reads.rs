//! Reading a partition from a position inside a producer's record batch:
//! every record from the position on comes exactly once, on a broker that
//! starts a fetch there and on one that skips the rest of the batch
//! (tansu 0.6.0), where the read goes back for them.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sessionfold_e2e::{brokers, create_topics, unique_prefix};
use sessionfold_edge::catch_up::{Patience, read_partition_from};
use sessionfold_schemas::Topics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_from_inside_a_batch_gets_every_record_after_it_once() -> anyhow::Result<()> {
    let prefix = unique_prefix("reads");
    create_topics(&prefix).await?;
    let topic = Topics::new(&prefix).activity;
    // Three batches of a hundred records each, on partition 0.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "50")
        .create()?;
    for batch in 0..3 {
        let sends = (0..100).map(|i| {
            let key = format!("k{batch}-{i}");
            let producer = &producer;
            let topic = &topic;
            async move {
                let r: FutureRecord<'_, str, str> = FutureRecord::to(topic)
                    .partition(0)
                    .key(key.as_str())
                    .payload("v");
                producer
                    .send(r, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))
            }
        });
        futures::future::try_join_all(sends).await?;
    }
    let topic_name = topic.clone();
    tokio::task::spawn_blocking(move || {
        for start in [0, 1, 37, 99, 100, 163, 250, 299] {
            let consumer: BaseConsumer = sessionfold_edge::consumer_config(&brokers())
                .set("group.id", "sessionfold-test-reads")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()?;
            let mut got = Vec::new();
            read_partition_from(
                &consumer,
                (&topic_name, 0),
                (0, start, 300),
                Patience::default(),
                |m| {
                    got.push(m.offset());
                    Ok::<(), sessionfold_edge::EdgeError>(())
                },
            )?;
            let want: Vec<i64> = (start..300).collect();
            assert_eq!(got, want, "read from {start}");
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}
