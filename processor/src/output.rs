//! What the processor publishes per batch: the changed states on the
//! changelogs and the dead letters, with their headers, all sent before the
//! batch is committed and awaited together.

use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
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

/// Publishes every record and waits until the broker has acknowledged all.
pub(crate) fn deliver(
    producer: &FutureProducer<sessionfold_edge::QuietLogs>,
    runtime: &tokio::runtime::Handle,
    records: &[Outgoing<'_>],
) -> Result<(), ProcessorError> {
    let sends = records.iter().map(|o| {
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(o.topic)
            .key(o.key.as_slice())
            .headers(o.headers.clone());
        if let Some(p) = o.partition {
            r = r.partition(p);
        }
        if let Some(v) = &o.payload {
            r = r.payload(v.as_slice());
        }
        producer.send(r, Timeout::Never)
    });
    let results = runtime.block_on(join_all(sends));
    for (o, r) in records.iter().zip(results) {
        if let Err((e, _)) = r {
            return Err(ProcessorError::Delivery {
                topic: o.topic.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}
