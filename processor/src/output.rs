//! What the processor publishes per batch: the changed states on the
//! changelogs and the dead letters, with their headers. A batch's records are
//! handed to the producer together; their acknowledgements are awaited
//! before the batch's state is stored (while the next batch is folded).

use std::time::Duration;

use std::sync::{Condvar, Mutex};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use sessionfold_schemas::headers;

use crate::ProcessorError;

/// One record to publish.
pub(crate) struct Outgoing<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
}

/// The headers every changelog record of one partition's batch shares:
/// where its states came from and the batch's input offsets, formatted once
/// per partition rather than once per record.
pub(crate) struct BatchHeaders<'a> {
    topic: &'a str,
    partition: String,
    start: String,
    end: String,
    /// On presence records: the idle timeout in ms, so that the projections
    /// need not be told it separately.
    idle_timeout: Option<String>,
    /// On presence records: how far behind an active session's published
    /// last activity may be, in ms.
    activity_resolution: Option<String>,
}

impl<'a> BatchHeaders<'a> {
    /// The shared headers of a batch read from `topic`'s `partition`, input
    /// offsets `start..end`.
    pub(crate) fn new(topic: &'a str, partition: i32, start: i64, end: i64) -> BatchHeaders<'a> {
        BatchHeaders {
            topic,
            partition: partition.to_string(),
            start: start.to_string(),
            end: end.to_string(),
            idle_timeout: None,
            activity_resolution: None,
        }
    }

    /// Adds the idle timeout the presence states were folded with.
    pub(crate) fn with_idle_timeout(mut self, ms: i64) -> BatchHeaders<'a> {
        self.idle_timeout = Some(ms.to_string());
        self
    }

    /// Adds how far behind an active session's last activity may be.
    pub(crate) fn with_activity_resolution(mut self, ms: i64) -> BatchHeaders<'a> {
        self.activity_resolution = Some(ms.to_string());
        self
    }

    /// The headers of one changelog record, whose state reflects input
    /// `offset` (`None` for a deletion).
    pub(crate) fn record(&self, offset: Option<i64>) -> OwnedHeaders {
        let mut h = OwnedHeaders::new_with_capacity(6)
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(self.topic),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(&self.partition),
            })
            .insert(Header {
                key: headers::BATCH_START,
                value: Some(&self.start),
            })
            .insert(Header {
                key: headers::BATCH_END,
                value: Some(&self.end),
            });
        if let Some(ms) = &self.idle_timeout {
            h = h.insert(Header {
                key: headers::IDLE_TIMEOUT_MS,
                value: Some(ms),
            });
        }
        if let Some(ms) = &self.activity_resolution {
            h = h.insert(Header {
                key: headers::ACTIVITY_RESOLUTION_MS,
                value: Some(ms),
            });
        }
        match offset {
            Some(o) => h.insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(&o.to_string()),
            }),
            None => h,
        }
    }
}

/// The changelog's producer: librdkafka's polling thread reports each
/// delivery to [`Acks`].
pub(crate) type ChangelogProducer = ThreadedProducer<Acks>;

/// Counts a batch's deliveries as the broker acknowledges them and keeps
/// the first refusal. A batch holds tens of thousands of records: a count
/// under one lock costs less than a channel, a boxed sender and a future per
/// record, which is what a future per delivery would take.
#[derive(Default)]
pub(crate) struct Acks {
    logs: sessionfold_edge::QuietLogs,
    tally: Mutex<Tally>,
    settled: Condvar,
}

/// The next offset after the last record of a batch acknowledged on each
/// (topic, partition): where a copy of the states stands in the changelog.
pub(crate) type Reached = Vec<(String, i32, i64)>;

/// The deliveries of the batch being published.
#[derive(Default)]
struct Tally {
    /// Per partition written, the offset after its last acknowledged record.
    reached: Reached,
    /// Which batch the count is for; a report of an earlier one (after a
    /// refusal stopped the wait for it) is not counted.
    batch: usize,
    outstanding: usize,
    refused: Option<(String, String)>,
}

impl ClientContext for Acks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.logs.log(level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logs.error(error, reason);
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let mut tally = sessionfold_edge::lock(&self.tally);
        if tally.batch != batch {
            return;
        }
        tally.outstanding = tally.outstanding.saturating_sub(1);
        match result {
            Ok(m) => {
                let (topic, partition, next) = (m.topic(), m.partition(), m.offset() + 1);
                // A batch writes a handful of partitions: a scan beats a map.
                match tally
                    .reached
                    .iter_mut()
                    .find(|(t, p, _)| *p == partition && t == topic)
                {
                    Some((_, _, at)) => *at = (*at).max(next),
                    None => tally.reached.push((topic.to_owned(), partition, next)),
                }
            }
            Err((e, m)) if tally.refused.is_none() => {
                tally.refused = Some((m.topic().to_owned(), e.to_string()));
            }
            Err(_) => {}
        }
        if tally.outstanding == 0 || tally.refused.is_some() {
            self.settled.notify_all();
        }
    }
}

/// Where a batch's records go, and how the loop learns that they arrived:
/// a Kafka producer live, memory in tests.
pub(crate) trait ChangelogSink: Send {
    /// Hands every record over, in order, without waiting for the broker.
    /// Each record's headers are moved out (left empty) rather than copied.
    fn publish(&self, records: &mut [Outgoing<'_>]) -> Result<(), ProcessorError>;
    /// Waits until every record of the batch published last is
    /// acknowledged, or one of them is refused; says where its records
    /// ended on each partition.
    fn acknowledged(&self) -> Result<Reached, ProcessorError>;
}

impl ChangelogSink for ChangelogProducer {
    fn publish(&self, records: &mut [Outgoing<'_>]) -> Result<(), ProcessorError> {
        publish(self, records)
    }

    fn acknowledged(&self) -> Result<Reached, ProcessorError> {
        acknowledged(self)
    }
}

/// Hands every record to the producer, in order, without waiting for the
/// broker; [`acknowledged`] then waits for their deliveries.
fn publish(
    producer: &ChangelogProducer,
    records: &mut [Outgoing<'_>],
) -> Result<(), ProcessorError> {
    let acks = producer.context();
    let total = records.len();
    let batch = {
        let mut tally = sessionfold_edge::lock(&acks.tally);
        tally.batch = tally.batch.wrapping_add(1);
        tally.outstanding = total;
        tally.refused = None;
        tally.reached.clear();
        tally.batch
    };
    for (i, o) in records.iter_mut().enumerate() {
        let headers = std::mem::replace(&mut o.headers, OwnedHeaders::new_with_capacity(0));
        let mut r: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(o.topic, batch)
            .key(o.key.as_slice())
            .headers(headers);
        if let Some(p) = o.partition {
            r = r.partition(p);
        }
        if let Some(v) = &o.payload {
            r = r.payload(v.as_slice());
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                // The producer's queue is full: its own thread drains it as
                // the broker acknowledges; wait a moment and offer it again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    // The records not handed over will not be reported.
                    let mut tally = sessionfold_edge::lock(&acks.tally);
                    tally.outstanding = tally.outstanding.saturating_sub(total - i);
                    return Err(ProcessorError::Delivery {
                        topic: o.topic.to_owned(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Waits until the broker has acknowledged every record of the batch
/// published last, or has refused one of them.
fn acknowledged(producer: &ChangelogProducer) -> Result<Reached, ProcessorError> {
    let acks = producer.context();
    let mut tally = sessionfold_edge::lock(&acks.tally);
    while tally.outstanding > 0 && tally.refused.is_none() {
        tally = acks
            .settled
            .wait(tally)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    match tally.refused.take() {
        Some((topic, reason)) => Err(ProcessorError::Delivery { topic, reason }),
        None => Ok(std::mem::take(&mut tally.reached)),
    }
}
