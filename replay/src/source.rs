//! Reading the input topics for replay and export: partitions assigned
//! directly, no consumer group, from the earliest offset or a start time to
//! the end the topics have when the read begins.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::ProgressBar;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use sessionfold_edge::QuietLogs;
use sessionfold_edge::catch_up::{self, Patience, read_partition_from};
use sessionfold_fold::Millis;
use sessionfold_schemas::{Topics, headers};

use sessionfold_processor::tables::Stream;

use crate::{ReplayError, Start};

/// One record as the broker holds it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Which input topic.
    pub stream: Stream,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The log timestamp, when the broker gives one.
    pub timestamp: Option<Millis>,
    /// The key, when it is UTF-8.
    pub key: Option<&'a str>,
    /// The value; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// The actor-role header the ingest set on an import event, if any.
    pub actor_role: Option<&'a str>,
    /// Partitions of the record's topic when the read began.
    pub partitions: i32,
}

/// Hands every record of both input topics, from `from` to the ends seen at
/// the start, to `each`: partition after partition (activity first), each
/// in offset order, the same order every time.
pub fn read_topics(
    brokers: &str,
    topics: &Topics,
    from: Start,
    progress: &ProgressBar,
    mut each: impl FnMut(RawRecord<'_>) -> Result<(), ReplayError>,
) -> Result<(), ReplayError> {
    let consumer: BaseConsumer<QuietLogs> = sessionfold_edge::client_config(brokers)
        .set("group.id", "sessionfold-replay")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(QuietLogs::default())?;
    let timeout = Duration::from_secs(10);
    let mut bounds: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    let mut counts: BTreeMap<Stream, i32> = BTreeMap::new();
    for stream in Stream::ALL {
        let topic = stream.input(topics);
        let parts = catch_up::partitions(&consumer, topic)?;
        counts.insert(stream, i32::try_from(parts.len()).unwrap_or(i32::MAX));
        for p in parts {
            bounds.insert(
                (topic.to_owned(), p),
                sessionfold_edge::watermarks(&consumer, topic, p)?,
            );
            let offset = match from {
                Start::Earliest => Offset::Beginning,
                Start::At(t) => Offset::Offset(t),
            };
            tpl.add_partition_offset(topic, p, offset)?;
        }
    }
    if let Start::At(_) = from {
        tpl = consumer.offsets_for_times(tpl, timeout)?;
    }
    // Where each partition starts: a partition with nothing after the start
    // time is already at its end.
    let mut plan = Vec::new();
    let mut total = 0;
    for e in tpl.elements() {
        let Some(&(low, high)) = bounds.get(&(e.topic().to_owned(), e.partition())) else {
            continue;
        };
        let start = match e.offset() {
            Offset::Offset(o) => o.max(low),
            Offset::Beginning => low,
            _ => high,
        };
        total += u64::try_from(high - start).unwrap_or(0);
        plan.push((e.topic().to_owned(), e.partition(), start, (low, high)));
    }
    crate::progress::set_length(progress, total);
    // One partition after the other, in topic and partition order: read
    // side by side, the partitions' records would interleave as the fetches
    // happen to arrive, and the events table and an export file would not
    // come out the same twice.
    plan.sort_by_key(|(topic, partition, ..)| (Stream::of_input(topics, topic), *partition));
    for (topic, partition, start, (low, high)) in plan {
        let Some(stream) = Stream::of_input(topics, &topic) else {
            continue;
        };
        let partitions = counts.get(&stream).copied().unwrap_or(0);
        // A start time lands on any record, which may lie inside a record
        // batch a broker skips (tansu 0.6.0): the read is checked at its start.
        let range = (low, start, high);
        read_partition_from(
            &consumer,
            (&topic, partition),
            range,
            Patience::default(),
            |m| {
                each(RawRecord {
                    stream,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().and_then(|k| std::str::from_utf8(k).ok()),
                    payload: m.payload(),
                    actor_role: m
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == headers::ACTOR_ROLE))
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok()),
                    partitions,
                })?;
                progress.inc(1);
                Ok::<(), ReplayError>(())
            },
        )?;
    }
    Ok(())
}
