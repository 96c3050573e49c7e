//! Following a compacted topic from its beginning into memory: the import
//! owners the ingest checks early, and the erasures every service honours.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sessionfold_fold::Erasures;
use sessionfold_schemas::Contract;

use crate::QuietLogs;
use crate::shutdown::{Stop, Tasks};

/// Hands every record of `topic`, from its beginning, to `apply` (key,
/// value; `None` for a tombstone) until `stop` is set, starting again with
/// back-off after any failure (the topic may not exist yet). Call from a
/// blocking thread.
pub fn follow(brokers: &str, topic: &str, stop: &Stop, mut apply: impl FnMut(&str, Option<&[u8]>)) {
    let mut backoff = Duration::from_millis(200);
    // A topic not created yet is what a first start looks like (the
    // producer creates the topics while the others start): said once at
    // INFO, and as a warning only if it lasts.
    let started = std::time::Instant::now();
    let mut told = (false, false);
    while !stop.is_stopping() {
        match follow_once(brokers, topic, stop, &mut apply) {
            Ok(()) => return,
            Err(Failure::NoTopic) => {
                if !told.0 {
                    tracing::info!(topic, "waiting for the topic to be created");
                    told.0 = true;
                }
                if !told.1 && started.elapsed() > Duration::from_secs(60) {
                    tracing::warn!(
                        topic,
                        "the topic still does not exist after a minute; still waiting (is the producer running, or topic creation off?)"
                    );
                    told.1 = true;
                }
            }
            Err(Failure::Other(e)) => {
                tracing::warn!(topic, error = %e, retry_in = ?backoff, "following a topic; starting again");
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Why following a topic stopped.
enum Failure {
    /// The topic has no partitions (yet).
    NoTopic,
    /// Anything else, said in words.
    Other(String),
}

impl From<rdkafka::error::KafkaError> for Failure {
    fn from(e: rdkafka::error::KafkaError) -> Failure {
        Failure::Other(e.to_string())
    }
}

fn follow_once(
    brokers: &str,
    topic: &str,
    stop: &Stop,
    apply: &mut impl FnMut(&str, Option<&[u8]>),
) -> Result<(), Failure> {
    let consumer: BaseConsumer<QuietLogs> = crate::consumer_config(brokers)
        .set("group.id", "sessionfold-follower")
        .set("enable.auto.commit", "false")
        .create_with_context(QuietLogs::default())?;
    let mut tpl = TopicPartitionList::new();
    for p in crate::catch_up::partitions(&consumer, topic)? {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    if tpl.count() == 0 {
        return Err(Failure::NoTopic);
    }
    consumer.assign(&tpl)?;
    while !stop.is_stopping() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => tracing::debug!(topic, error = %e, "follower consumer"),
            Some(Ok(m)) => {
                if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    apply(key, m.payload());
                }
            }
        }
    }
    Ok(())
}

/// Adds one erasures-topic record to `erasures`. A tombstone or a record
/// that does not decode changes nothing: an erasure cannot be undone.
pub fn apply_erasure(
    contract: &Contract,
    erasures: &RwLock<Erasures>,
    key: &str,
    payload: Option<&[u8]>,
) {
    let Some(bytes) = payload else {
        return;
    };
    match contract.decode_erasure(bytes) {
        Ok(e) if e.user_id == key => {
            if crate::write(erasures).insert(e) {
                tracing::info!(user = key, "user forgotten");
            }
        }
        Ok(e) => {
            tracing::warn!(key, user = %e.user_id, "erasure record under another user's key; ignored")
        }
        Err(e) => tracing::warn!(key, error = %e, "erasure record does not decode; ignored"),
    }
}

/// Follows the erasures topic into `erasures`, as one of `tasks`, until
/// they are stopped.
pub fn erasures(
    tasks: &mut Tasks,
    brokers: &str,
    topic: &str,
    contract: Contract,
    erasures: Arc<RwLock<Erasures>>,
) {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tasks.spawn_blocking("erasures follower", move |stop| {
        follow(&brokers, &topic, &stop, |key, payload| {
            apply_erasure(&contract, &erasures, key, payload);
        });
        Ok::<(), std::convert::Infallible>(())
    });
}

/// Reads the whole erasures topic once, to the end it has when the read
/// begins: what a replay or an export must leave out. A topic that does not
/// exist yet holds no erasure.
pub fn read_erasures(
    brokers: &str,
    topic: &str,
    contract: &Contract,
) -> Result<Erasures, crate::EdgeError> {
    let consumer: BaseConsumer<QuietLogs> = crate::consumer_config(brokers)
        .set("group.id", "sessionfold-erasures-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(QuietLogs::default())?;
    let erasures = RwLock::new(Erasures::new());
    let mut ends = crate::catch_up::Ends::new();
    let mut tpl = TopicPartitionList::new();
    for p in crate::catch_up::partitions(&consumer, topic)? {
        let (low, high) = crate::watermarks(&consumer, topic, p)?;
        ends.expect(topic, p, low, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    if tpl.count() == 0 {
        return Ok(Erasures::new());
    }
    consumer.assign(&tpl)?;
    crate::catch_up::read_to_end(
        &consumer,
        &mut ends,
        crate::catch_up::Patience::default(),
        |m| {
            if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                apply_erasure(contract, &erasures, key, m.payload());
            }
            Ok::<(), crate::EdgeError>(())
        },
    )?;
    Ok(erasures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Writes one erasure record and waits for the broker to acknowledge it:
/// from then on every service leaves the user out.
pub async fn publish_erasure(
    brokers: &str,
    topic: &str,
    contract: &Contract,
    erasure: &sessionfold_schemas::UserErased,
) -> Result<(), crate::EdgeError> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let config_error = |reason: String| crate::EdgeError::Config {
        what: format!("erasure of {}", erasure.user_id),
        reason,
    };
    erasure
        .validate()
        .map_err(|e| config_error(e.to_string()))?;
    let bytes = contract
        .encode_erasure(erasure)
        .map_err(|e| config_error(e.to_string()))?;
    let producer: FutureProducer<QuietLogs> = crate::client_config(brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create_with_context(QuietLogs::default())?;
    producer
        .send(
            FutureRecord::to(topic)
                .key(erasure.user_id.as_bytes())
                .payload(&bytes),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| crate::EdgeError::Kafka(e))?;
    Ok(())
}
