//! What the processor publishes per batch: the changed states on the
//! changelogs and the dead letters, with their headers. A batch's records are
//! handed to the producer together; their acknowledgements are awaited
//! before the batch's state is stored (while the next batch is folded).

use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
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
        }
    }

    /// The headers of one changelog record, whose state reflects input
    /// `offset` (`None` for a deletion).
    pub(crate) fn record(&self, offset: Option<i64>) -> OwnedHeaders {
        let h = OwnedHeaders::new_with_capacity(5)
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
        match offset {
            Some(o) => h.insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(&o.to_string()),
            }),
            None => h,
        }
    }
}

/// Hands every record to the producer, in order, without waiting for the
/// broker; the deliveries to await before the batch counts as published.
/// Each record's headers are moved out (left empty) rather than copied.
pub(crate) fn publish(
    producer: &FutureProducer<sessionfold_edge::QuietLogs>,
    records: &mut [Outgoing<'_>],
) -> Result<Vec<DeliveryFuture>, ProcessorError> {
    let mut sent = Vec::with_capacity(records.len());
    for o in records.iter_mut() {
        let headers = std::mem::replace(&mut o.headers, OwnedHeaders::new_with_capacity(0));
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(o.topic)
            .key(o.key.as_slice())
            .headers(headers);
        if let Some(p) = o.partition {
            r = r.partition(p);
        }
        if let Some(v) = &o.payload {
            r = r.payload(v.as_slice());
        }
        loop {
            match producer.send_result(r) {
                Ok(delivery) => {
                    sent.push(delivery);
                    break;
                }
                // The producer's queue is full: its own thread drains it as
                // the broker acknowledges; wait a moment and offer it again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(ProcessorError::Delivery {
                        topic: o.topic.to_owned(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(sent)
}

/// Waits until the broker has acknowledged every delivery.
pub(crate) fn acknowledged(
    runtime: &tokio::runtime::Handle,
    deliveries: Vec<DeliveryFuture>,
) -> Result<(), ProcessorError> {
    // Awaited one after the other: most are acknowledged by now, and a
    // batch holds tens of thousands, which `join_all` would poll and
    // collect as a set.
    runtime.block_on(async {
        for d in deliveries {
            check(d.await)?;
        }
        Ok(())
    })
}

/// The outcome of one delivery, as an error when the broker refused it.
fn check(delivery: <DeliveryFuture as std::future::Future>::Output) -> Result<(), ProcessorError> {
    match delivery {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, m))) => Err(ProcessorError::Delivery {
            topic: m.topic().to_owned(),
            reason: e.to_string(),
        }),
        Err(_) => Err(ProcessorError::Delivery {
            topic: "(any)".into(),
            reason: "the producer was dropped before the delivery report".into(),
        }),
    }
}
