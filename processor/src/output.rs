//! What the processor publishes per batch: the changed states on the
//! changelogs and the dead letters, with their headers. A batch's records are
//! handed to the producer together; their acknowledgements are awaited
//! before the batch's state is stored (while the next batch is folded).

use std::time::Duration;

use futures::future::join_all;
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

/// The headers of a changelog record: where its state came from, and the
/// input offsets of the batch that produced it.
pub(crate) fn changelog_headers(
    topic: &str,
    partition: i32,
    offset: Option<i64>,
    start: i64,
    end: i64,
) -> OwnedHeaders {
    let h = OwnedHeaders::new()
        .insert(Header {
            key: headers::SOURCE_TOPIC,
            value: Some(topic),
        })
        .insert(Header {
            key: headers::SOURCE_PARTITION,
            value: Some(&partition.to_string()),
        })
        .insert(Header {
            key: headers::BATCH_START,
            value: Some(&start.to_string()),
        })
        .insert(Header {
            key: headers::BATCH_END,
            value: Some(&end.to_string()),
        });
    match offset {
        Some(o) => h.insert(Header {
            key: headers::SOURCE_OFFSET,
            value: Some(&o.to_string()),
        }),
        None => h,
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
    for r in runtime.block_on(join_all(deliveries)) {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err((e, m))) => {
                return Err(ProcessorError::Delivery {
                    topic: m.topic().to_owned(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(ProcessorError::Delivery {
                    topic: "(any)".into(),
                    reason: "the producer was dropped before the delivery report".into(),
                });
            }
        }
    }
    Ok(())
}
