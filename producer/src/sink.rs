//! The producer's way into Kafka: a buffered, idempotent producer.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounterVec, IntGauge};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

/// Why an event could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The local buffer is full, usually because the broker is unreachable.
    #[error("producer buffer full; broker unreachable or slow")]
    BufferFull,
    /// Anything else the client refused.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// How long new requests are refused after a failed delivery. Past it,
/// requests flow again and act as the probe: one success ends the episode,
/// another failure holds the door shut once more.
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// A run of failed deliveries, from the first failure to the next success.
#[derive(Debug, Clone)]
pub struct FailureEpisode {
    /// When the first delivery of the run failed.
    pub since: SystemTime,
    /// The broker's or the client's word on the first failure.
    pub first_error: String,
    /// Deliveries failed in this run.
    pub failed: u64,
    last_failure: Instant,
}

impl FailureEpisode {
    /// Whether new requests are refused now.
    pub fn holding(&self) -> bool {
        self.last_failure.elapsed() < FAILURE_HOLD
    }

    /// Seconds a client should wait before it retries.
    pub fn retry_after(&self) -> u64 {
        FAILURE_HOLD
            .saturating_sub(self.last_failure.elapsed())
            .as_secs()
            .max(1)
    }
}

/// Counts deliveries as the broker acknowledges (or finally refuses) them,
/// and keeps the current run of failures, so a lost event is never silent.
pub struct DeliveryCounter {
    delivered: IntCounterVec,
    failing: IntGauge,
    episode: Mutex<Option<FailureEpisode>>,
    logs: sessionfold_edge::QuietLogs,
}

impl DeliveryCounter {
    fn episode(&self) -> MutexGuard<'_, Option<FailureEpisode>> {
        sessionfold_edge::lock(&self.episode)
    }
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.logs.log(level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logs.error(error, reason);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.with_label_values(&["ok"]).inc();
                if let Some(ep) = self.episode().take() {
                    self.failing.set(0);
                    tracing::warn!(
                        failed = ep.failed,
                        first_error = %ep.first_error,
                        "deliveries to Kafka succeed again; the events of the failed deliveries were lost"
                    );
                }
            }
            Err((e, _)) => {
                self.delivered.with_label_values(&["failed"]).inc();
                let mut episode = self.episode();
                match episode.as_mut() {
                    Some(ep) => {
                        ep.failed += 1;
                        ep.last_failure = Instant::now();
                        tracing::debug!(error = %e, "event not delivered to Kafka");
                    }
                    None => {
                        self.failing.set(1);
                        tracing::error!(
                            error = %e,
                            "event not delivered to Kafka: new requests answer 503 and /readyz is not ready until a delivery succeeds (one line per run of failures; all are counted in deliveries_total)"
                        );
                        *episode = Some(FailureEpisode {
                            since: SystemTime::now(),
                            first_error: e.to_string(),
                            failed: 1,
                            last_failure: Instant::now(),
                        });
                    }
                }
            }
        }
    }
}

/// Hands encoded events to Kafka. Records wait in a bounded local buffer while
/// the broker is away; the request learns at once when that buffer is full.
#[derive(Clone)]
pub struct Sink {
    producer: ThreadedProducer<DeliveryCounter>,
}

impl Sink {
    /// Creates the producer (no connection is made until the first send).
    pub fn new(
        brokers: &str,
        buffer_messages: usize,
        delivered: IntCounterVec,
        failing: IntGauge,
    ) -> Result<Sink, SinkError> {
        let mut config = sessionfold_edge::client_config(brokers);
        sessionfold_edge::unless_set(
            &mut config,
            &[("linger.ms", "2"), ("compression.type", "lz4")],
        );
        let producer = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The same partition for a key as the Java client, so outside producers agree.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", buffer_messages.to_string())
            .set("message.timeout.ms", "300000")
            .create_with_context(DeliveryCounter {
                delivered,
                failing,
                episode: Mutex::new(None),
                logs: sessionfold_edge::QuietLogs::default(),
            })?;
        Ok(Sink { producer })
    }

    /// Queues one record; import events carry the actor role the ingest vouched for.
    pub fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        actor_role: Option<&str>,
    ) -> Result<(), SinkError> {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key).payload(payload);
        if let Some(role) = actor_role {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: sessionfold_schemas::headers::ACTOR_ROLE,
                value: Some(role),
            }));
        }
        self.producer.send(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SinkError::BufferFull,
            other => SinkError::Kafka(other),
        })
    }

    /// The current run of failed deliveries, if one is open.
    pub fn failures(&self) -> Option<FailureEpisode> {
        self.producer.context().episode().clone()
    }

    /// Waits up to `timeout` for buffered records to be delivered.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), SinkError> {
        self.producer.flush(timeout).map_err(SinkError::from)
    }
}
