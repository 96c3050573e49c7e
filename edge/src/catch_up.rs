//! Reading partitions to their real end.
//!
//! Restore, replay and the changelog follower all read some partitions from a
//! position to "what the log held when we started". The end a broker reports
//! can lag the records it stores (tansu 0.6.0 does), so the end is reached
//! when a record at or past the reported end has been seen *and* the log then
//! stays quiet for a moment. [`Ends`] is the pure bookkeeping of which
//! partitions are still short of their end; [`read_to_end`] is the one poll
//! loop built on it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use crate::EdgeError;
use crate::offsets::{OffsetTracker, Verdict};

/// The partitions still short of the end they had when reading began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ends {
    left: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Ends {
    /// Nothing to wait for yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for `partition` of `topic` to be read up to `end` (the offset
    /// after its last record) when it holds anything between `start` and
    /// `end`; an empty range is already reached.
    pub fn expect(&mut self, topic: &str, partition: i32, start: i64, end: i64) {
        if end > start {
            self.left
                .entry(topic.to_owned())
                .or_default()
                .insert(partition, end);
        }
    }

    /// Notes a record read; true when it was the one that brought the last
    /// partition still short to its end.
    pub fn seen(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let Some(parts) = self.left.get_mut(topic) else {
            return false;
        };
        if parts.get(&partition).is_none_or(|end| offset + 1 < *end) {
            return false;
        }
        parts.remove(&partition);
        if parts.is_empty() {
            self.left.remove(topic);
        }
        self.left.is_empty()
    }

    /// True when every expected partition has reached its end.
    pub fn reached(&self) -> bool {
        self.left.is_empty()
    }

    /// How many partitions are still short of their end.
    pub fn pending(&self) -> usize {
        self.left.values().map(BTreeMap::len).sum()
    }

    /// The partitions still short, as `topic/partition < end`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (topic, ends) in &self.left {
            for (p, end) in ends {
                parts.push(format!("{topic}/{p} < {end}"));
            }
        }
        parts.join(", ")
    }
}

/// The partition ids of `topic`, in order; empty when the topic does not exist.
pub fn partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// How long the log must stay quiet once every end is reached, and how long
/// it may stay silent while some partition is still short.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Quiet after the ends that ends the read: records a lagging broker
    /// reports late arrive within it.
    pub quiet: Duration,
    /// Silence, with some partition still short, after which the read fails.
    pub stall: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(200),
            stall: Duration::from_secs(30),
        }
    }
}

/// Polls the partitions `consumer` is assigned, handing each record to `f`,
/// until every partition in `ends` has reached its end and the log has been
/// quiet for `patience.quiet`. Fails when nothing arrives for
/// `patience.stall` while a partition is still short.
pub fn read_to_end<C, E>(
    consumer: &BaseConsumer<C>,
    ends: &mut Ends,
    patience: Patience,
    mut f: impl FnMut(&BorrowedMessage<'_>) -> Result<(), E>,
) -> Result<(), E>
where
    C: ConsumerContext,
    E: From<EdgeError>,
{
    let mut last_record = Instant::now();
    loop {
        match consumer.poll(patience.quiet) {
            Some(Ok(m)) => {
                last_record = Instant::now();
                ends.seen(m.topic(), m.partition(), m.offset());
                f(&m)?;
            }
            Some(Err(e)) => return Err(EdgeError::Kafka(e).into()),
            None if ends.reached() => return Ok(()),
            None if last_record.elapsed() > patience.stall => {
                return Err(stalled(patience, ends).into());
            }
            None => {}
        }
    }
}

fn stalled(patience: Patience, ends: &Ends) -> EdgeError {
    EdgeError::Stalled {
        waited: patience.stall,
        short: ends.describe(),
    }
}

/// How long a read from a position may bring nothing at all before the
/// position is taken to lie inside the partition's last record batch, which
/// tansu 0.6.0 skips whole.
const NOTHING_AFTER: Duration = Duration::from_secs(1);

/// Reads one partition from `start` to `end` (and on while records come),
/// handing `f` each record at or past `start` once; `low` is where the
/// partition begins, which no broker skips into. A broker that starts the
/// read inside a record batch past `start` (tansu 0.6.0 skips the rest of
/// that batch, and brings nothing when it is the last) is read again from
/// further back ([`OffsetTracker`]); only the read's start is judged, so a
/// compacted log's gaps pass.
pub fn read_partition_from<C, E>(
    consumer: &BaseConsumer<C>,
    (topic, partition): (&str, i32),
    (low, start, end): (i64, i64, i64),
    patience: Patience,
    mut f: impl FnMut(&BorrowedMessage<'_>) -> Result<(), E>,
) -> Result<(), E>
where
    C: ConsumerContext,
    E: From<EdgeError>,
{
    if start >= end {
        return Ok(());
    }
    let mut tracker = OffsetTracker::first_at((start > low).then_some(start));
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(start))
        .map_err(EdgeError::Kafka)?;
    consumer.assign(&tpl).map_err(EdgeError::Kafka)?;
    let mut ends = Ends::new();
    ends.expect(topic, partition, start, end);
    let mut last_record = Instant::now();
    let mut delivered = false;
    // A seek, not a new assignment: what was fetched before it is dropped.
    let seek = |to: i64| -> Result<(), EdgeError> {
        tracing::info!(
            topic,
            partition,
            start,
            seek_to = to,
            "the broker skipped records where the read started; reading again from further back"
        );
        consumer
            .seek(
                topic,
                partition,
                rdkafka::Offset::Offset(to),
                patience.stall,
            )
            .map_err(EdgeError::Kafka)
    };
    loop {
        match consumer.poll(patience.quiet) {
            Some(Ok(m)) => {
                // A fetch of what was assigned before must not slip in.
                if m.partition() != partition || m.topic() != topic {
                    continue;
                }
                last_record = Instant::now();
                delivered = true;
                match tracker.observe(m.offset()) {
                    Verdict::Repeat => {}
                    Verdict::SeekBack(to) => {
                        seek(to)?;
                        delivered = false;
                    }
                    Verdict::Next | Verdict::GapAccepted { .. } => {
                        ends.seen(topic, partition, m.offset());
                        f(&m)?;
                    }
                }
            }
            Some(Err(e)) => return Err(EdgeError::Kafka(e).into()),
            None if ends.reached() => return Ok(()),
            None if !delivered && last_record.elapsed() >= NOTHING_AFTER => {
                // Nothing at all although records lie ahead: as if the next
                // record were past the end. Only a seek back is taken from it.
                let mut probe = tracker;
                match probe.observe(end) {
                    Verdict::SeekBack(to) => {
                        tracker = probe;
                        seek(to)?;
                    }
                    // Read from the start already: wait for the records.
                    _ => delivered = true,
                }
                last_record = Instant::now();
            }
            None if last_record.elapsed() > patience.stall => {
                return Err(stalled(patience, &ends).into());
            }
            None => {}
        }
    }
}

/// The end of `partition` of `topic` as its records show it: the reported
/// high watermark `high`, or past it when records lie beyond it (tansu
/// 0.6.0 reports the base offset of the last record batch plus one). Reads
/// from the last reported record until the log is quiet; `consumer` is
/// assigned to that partition on return.
pub fn real_end<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    (low, high): (i64, i64),
) -> Result<i64, EdgeError> {
    let from = (high - 1).max(low);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(from))
        .map_err(EdgeError::Kafka)?;
    consumer.assign(&tpl).map_err(EdgeError::Kafka)?;
    let mut end = high;
    let mut ends = Ends::new();
    ends.expect(topic, partition, from, high);
    let patience = Patience {
        quiet: Duration::from_millis(300),
        stall: Duration::from_secs(5),
    };
    match read_to_end(consumer, &mut ends, patience, |m| {
        end = end.max(m.offset() + 1);
        Ok::<(), EdgeError>(())
    }) {
        // The last reported record is gone (compacted, deleted): nothing
        // lies past the reported end either.
        Ok(()) | Err(EdgeError::Stalled { .. }) => Ok(end),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_partitions_are_reached_at_once() {
        let mut ends = Ends::new();
        ends.expect("a", 0, 5, 5);
        ends.expect("a", 1, 0, 0);
        assert!(ends.reached());
        assert_eq!(ends.pending(), 0);
    }

    #[test]
    fn the_last_partition_to_reach_its_end_is_told() {
        let mut ends = Ends::new();
        ends.expect("a", 0, 0, 3);
        ends.expect("a", 1, 10, 12);
        ends.expect("b", 0, 0, 1);
        assert_eq!(ends.pending(), 3);
        assert!(!ends.seen("a", 0, 1));
        assert!(!ends.seen("a", 0, 2));
        assert!(!ends.seen("b", 0, 0));
        assert_eq!(ends.describe(), "a/1 < 12");
        // A record past the end (the broker's end lagged) counts too.
        assert!(ends.seen("a", 1, 40));
        assert!(ends.reached());
        // Records after that change nothing.
        assert!(!ends.seen("a", 1, 41));
    }

    #[test]
    fn records_of_other_partitions_do_not_count() {
        let mut ends = Ends::new();
        ends.expect("a", 0, 0, 2);
        assert!(!ends.seen("a", 1, 5));
        assert!(!ends.seen("b", 0, 5));
        assert_eq!(ends.pending(), 1);
    }
}
