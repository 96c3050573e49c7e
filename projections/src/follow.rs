//! Follows a changelog topic from the beginning into the in-memory view.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sessionfold_schemas::Contract;

use crate::metrics::Metrics;
use crate::view::{PresenceView, Update};

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The compiled-in schemas did not load.
    #[error("schemas: {0}")]
    Schema(#[from] sessionfold_schemas::SchemaError),
    /// The topic has no partitions (it was not created).
    #[error("topic {0} not found")]
    NoTopic(String),
}

/// Reads every partition of `topic` from the start, applying records to
/// `view` in batches; sets `ready` once the end seen at start is reached.
/// Runs until `stop` is set; call from a blocking thread.
pub fn follow_presence(
    brokers: &str,
    topic: &str,
    view: Arc<RwLock<PresenceView>>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> Result<(), FollowError> {
    let contract = Contract::load()?;
    let consumer: BaseConsumer<sessionfold_kafka::QuietLogs> =
        sessionfold_kafka::client_config(brokers)
            .set(
                "group.id",
                format!("sessionfold-projections-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(sessionfold_kafka::QuietLogs::default())?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(FollowError::NoTopic(topic.to_owned()));
    }
    let mut targets: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            targets.insert(*p, high);
        }
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    tracing::info!(topic, partitions = partitions.len(), to_catch_up = ?targets, "following changelog");
    if targets.is_empty() {
        ready.store(true, Ordering::SeqCst);
    }
    let mut batch = Vec::with_capacity(1024);
    while !stop.load(Ordering::SeqCst) {
        let mut wait = Duration::from_millis(100);
        while batch.len() < 5000 {
            match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "changelog consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let value = m.payload().map(|v| contract.decode_presence(v));
                    batch.push((m.partition(), m.offset(), key, value));
                }
            }
            wait = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        let mut guard = match view.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (partition, offset, key, value) in batch.drain(..) {
            if let Some(t) = targets.get(&partition)
                && offset + 1 >= *t
            {
                targets.remove(&partition);
                if targets.is_empty() {
                    ready.store(true, Ordering::SeqCst);
                    tracing::info!("caught up with the changelog");
                }
            }
            let Some(key) = key else {
                metrics.records.with_label_values(&["no_key"]).inc();
                continue;
            };
            let state = match value {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => {
                    tracing::warn!(partition, offset, error = %e, "undecodable changelog record skipped");
                    metrics.records.with_label_values(&["undecodable"]).inc();
                    continue;
                }
            };
            let label = match guard.apply(&key, state) {
                Update::Upserted => "upserted",
                Update::Deleted => "deleted",
                Update::Stale => "stale",
            };
            metrics.records.with_label_values(&[label]).inc();
        }
        metrics.users.set(guard.len() as i64);
    }
    Ok(())
}
