//! The producer's way into Kafka: a buffered, idempotent producer.

use prometheus::IntCounterVec;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
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

/// Counts deliveries as the broker acknowledges (or finally refuses) them.
pub struct DeliveryCounter {
    delivered: IntCounterVec,
    logs: sessionfold_kafka::QuietLogs,
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
            Ok(_) => self.delivered.with_label_values(&["ok"]).inc(),
            Err((e, _)) => {
                self.delivered.with_label_values(&["failed"]).inc();
                tracing::error!(error = %e, "event not delivered to Kafka");
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
    ) -> Result<Sink, SinkError> {
        let producer = sessionfold_kafka::client_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            // The same partition for a key as the Java client, so outside producers agree.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", buffer_messages.to_string())
            .set("message.timeout.ms", "300000")
            .create_with_context(DeliveryCounter {
                delivered,
                logs: sessionfold_kafka::QuietLogs::default(),
            })?;
        Ok(Sink { producer })
    }

    /// Queues one record.
    pub fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), SinkError> {
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key).payload(payload);
        self.producer.send(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SinkError::BufferFull,
            other => SinkError::Kafka(other),
        })
    }

    /// Waits up to `timeout` for buffered records to be delivered.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), SinkError> {
        use rdkafka::producer::Producer;
        self.producer.flush(timeout).map_err(SinkError::from)
    }
}
