//! Restoring a partition's state from its changelog partition.
//!
//! Every changelog record carries, in headers, the input offsets its batch
//! started and ended at. Batches are published in order and each is fully
//! acknowledged and stored before the next is published, so only the last batch in a
//! changelog partition can be incomplete. The local store is current when its
//! stored input offset has reached the end of that last batch. Otherwise the
//! partition is rebuilt from the changelog, and reading resumes at the start
//! of the last batch. The per-entity input positions in the states make
//! re-reading that batch harmless.
//!
//! A store whose states were read from the changelog (by an earlier restore
//! or by a warm standby tailing it) also keeps the changelog offset they
//! cover: taking such a partition on reads only the changelog's tail.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use sessionfold_edge::QuietLogs;
use sessionfold_edge::catch_up::{Ends, Patience, read_partition_from, read_to_end};
use sessionfold_schemas::headers::{BATCH_END, BATCH_START};

use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::store::{PartitionWrite, StateStore};

/// What restoring found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// The local store already holds everything the changelog holds.
    LocalCurrent,
    /// The local copy was brought up to date with the changelog's tail
    /// since the position it was last read or written to.
    FromTail {
        /// Records read.
        records: u64,
        /// Whether the copy was a warm standby's (else an earlier owner's).
        standby: bool,
    },
    /// The partition was rebuilt from this many changelog records.
    FromChangelog {
        /// Records read.
        records: u64,
    },
}

fn header_i64(m: &impl Message, name: &str) -> Option<i64> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

/// Reads partition `partition` of `changelog` from the assigned position to
/// `end`, and on until the log is briefly quiet (records past the reported
/// end are newer than the batch headers read, and the input after the resume
/// offset rebuilds them anyway).
fn read_to(
    consumer: &BaseConsumer<QuietLogs>,
    changelog: &str,
    partition: i32,
    (from, end): (i64, i64),
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), ProcessorError> {
    let mut ends = Ends::new();
    ends.expect(changelog, partition, from, end);
    read_to_end(consumer, &mut ends, QUIET, |m| {
        f(m);
        Ok::<(), ProcessorError>(())
    })
}

/// A changelog read ends once the log is quiet this long past its end.
const QUIET: Patience = Patience {
    quiet: Duration::from_millis(100),
    stall: Duration::from_secs(30),
};

/// The input offsets of the last batch a changelog partition records.
struct LastBatch {
    start: i64,
    end: i64,
}

fn batch_of(m: &impl Message) -> Option<LastBatch> {
    Some(LastBatch {
        start: header_i64(m, BATCH_START)?,
        end: header_i64(m, BATCH_END)?,
    })
}

/// Checks a changelog value: `Err` says why it cannot be state for `key`.
pub type Validate<'a> = &'a dyn Fn(&str, &[u8]) -> Result<(), String>;

/// Changelog records gathered into the latest state per key, with what had
/// to be left out; shared by restores and a standby's tailing.
#[derive(Default)]
pub struct Gathered {
    latest: HashMap<String, Option<Vec<u8>>>,
    /// Records read.
    pub records: u64,
    skipped: BTreeMap<&'static str, u64>,
    first_refusal: Option<(i64, String)>,
    /// Input offset the newest batch read starts at.
    pub batch_start: Option<i64>,
    /// The changelog offset after the last record read.
    pub next: Option<i64>,
}

impl Gathered {
    /// Takes one changelog record. Operators and other writers can put
    /// anything on a changelog: a value `valid` refuses or a key that is not
    /// UTF-8 is left out; a tombstone deletes its key, as compaction would.
    pub fn take(&mut self, m: &impl Message, valid: Validate<'_>) {
        self.records += 1;
        self.next = Some(m.offset() + 1);
        let batch = batch_of(m);
        let ours = batch.is_some();
        if let Some(b) = batch {
            self.batch_start = Some(b.start);
        }
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            self.skip("bad_key");
            return;
        };
        match m.payload() {
            None => {
                if !ours {
                    self.skip("tombstone_without_headers");
                }
                self.latest.insert(key.to_owned(), None);
            }
            Some(v) => match valid(key, v) {
                Ok(()) => {
                    if !ours {
                        self.skip("state_without_headers");
                    }
                    self.latest.insert(key.to_owned(), Some(v.to_vec()));
                }
                Err(e) => {
                    self.skip("foreign_value");
                    self.first_refusal.get_or_insert((m.offset(), e));
                }
            },
        }
    }

    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    /// True when no state was gathered since the last write.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Counts and logs (once) what was left out or taken without headers.
    pub fn report(&mut self, partition: i32, changelog: &str, metrics: &Metrics) {
        if self.skipped.is_empty() {
            return;
        }
        for (reason, n) in &self.skipped {
            metrics
                .restore_skipped
                .with_label_values(&[reason])
                .inc_by(*n);
        }
        let (offset, error) = self.first_refusal.take().unzip();
        tracing::warn!(
            partition,
            changelog,
            skipped = ?self.skipped,
            first_refused_offset = offset,
            first_refusal = error,
            "changelog records not written by sessionfold: bad keys and values that are not states left out, tombstones and valid states taken"
        );
        self.skipped.clear();
    }

    /// The gathered states as one store write resuming input at
    /// `next_offset`, covering the changelog up to the last record read.
    pub fn write(&mut self, next_offset: Option<i64>) -> PartitionWrite {
        PartitionWrite {
            entities: std::mem::take(&mut self.latest).into_iter().collect(),
            next_offset,
            changelog_next: self.next,
            standby_copy: None,
        }
    }
}

/// A consumer outside the group, for reading changelogs by hand.
pub fn changelog_reader(brokers: &str) -> Result<BaseConsumer<QuietLogs>, ProcessorError> {
    Ok(sessionfold_edge::consumer_config(brokers)
        .set("group.id", "sessionfold-restore")
        .set("enable.auto.commit", "false")
        // A position the log no longer holds reads on from its start.
        .set("auto.offset.reset", "earliest")
        .create_with_context(QuietLogs::default())?)
}

/// Where partition `partition`'s state lives and what is asked of it.
pub struct Target<'a> {
    /// Input topic.
    pub input: &'a str,
    /// Its changelog topic.
    pub changelog: &'a str,
    /// Partition number, the same on both.
    pub partition: i32,
    /// The partition's tree in the store.
    pub tree: &'a str,
}

/// Brings the partition's tree up to date with the same partition of its
/// changelog, unless it is current already: from the changelog position the
/// tree records when the changelog still holds it, else from the beginning.
///
/// None of what others may write to a changelog blocks the start: the batch
/// bounds come from the last record that has them, and records are taken as
/// [`Gathered::take`] says.
pub fn restore_partition(
    consumer: &BaseConsumer<QuietLogs>,
    target: &Target<'_>,
    store: &dyn StateStore,
    metrics: &Metrics,
    valid: Validate<'_>,
) -> Result<Restore, ProcessorError> {
    let Target {
        input,
        changelog,
        partition,
        tree,
    } = *target;
    // A store that has read past the end of its input belongs to another
    // incarnation of the topic (recreated, or another cluster): its offsets
    // mean nothing here. Drop it and rebuild from this cluster's changelog.
    // A broker whose reported end lags (tansu) only costs a needless restore.
    let input_marks = sessionfold_edge::watermarks(consumer, input, partition)?;
    if let Some(local) = store.next_offset(tree)?
        && local > input_marks.1
        // A reported end can lag the records (tansu): only a store ahead of
        // what the partition really holds is thrown away.
        && let input_end = sessionfold_edge::catch_up::real_end(consumer, input, partition, input_marks)?
        && local > input_end
    {
        tracing::warn!(
            partition,
            input,
            local_next_offset = local,
            input_end,
            "local state is ahead of its input topic (topic recreated, or another cluster); discarding it"
        );
        store.replace(tree, PartitionWrite::default())?;
    }
    let (low, high) = sessionfold_edge::watermarks(consumer, changelog, partition)?;
    if high <= low {
        return Ok(Restore::LocalCurrent);
    }
    let assign = |offset: Offset| -> Result<(), ProcessorError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, partition, offset)?;
        consumer.assign(&tpl)?;
        Ok(())
    };
    assign(Offset::Offset(high - 1))?;
    let mut last = None;
    read_to(consumer, changelog, partition, (high - 1, high), |m| {
        last = Some(m.detach());
    })?;
    let last = last.ok_or_else(|| ProcessorError::Restore {
        partition,
        reason: format!("last changelog record (offset {}) not readable", high - 1),
    })?;
    let batch = match batch_of(&last) {
        Some(b) => Some(b),
        None => {
            // Someone else wrote last: find the last batch of ours further back.
            tracing::warn!(
                partition,
                changelog,
                offset = last.offset(),
                "last changelog record has no batch headers (written by another producer); looking further back"
            );
            assign(Offset::Beginning)?;
            let mut found = None;
            read_to(consumer, changelog, partition, (low, high), |m| {
                if let Some(b) = batch_of(m) {
                    found = Some(b);
                }
            })?;
            found
        }
    };
    let Some(LastBatch { start, end }) = batch else {
        tracing::warn!(
            partition,
            changelog,
            records = high - low,
            "no changelog record here was written by sessionfold; keeping the local state"
        );
        metrics
            .restore_skipped
            .with_label_values(&["no_batch_headers"])
            .inc_by(u64::try_from(high - low).unwrap_or(0));
        return Ok(Restore::LocalCurrent);
    };
    if store.next_offset(tree)?.is_some_and(|local| local >= end) {
        if store.standby_copy(tree)? {
            let owned = PartitionWrite {
                standby_copy: Some(false),
                ..PartitionWrite::default()
            };
            store.commit(tree, owned)?;
        }
        return Ok(Restore::LocalCurrent);
    }
    let until = last.offset() + 1;
    // A copy read to a position the changelog still holds needs only the
    // records after it; one past the end read belongs to another changelog.
    let tail_from = store
        .changelog_position(tree)?
        .filter(|c| (low..=until).contains(c));
    metrics.restoring.inc();
    let mut gathered = Gathered::default();
    if tail_from.is_none() {
        tracing::info!(
            partition,
            resume_at = start,
            "restoring partition from the changelog"
        );
    }
    // A copy already at the end reads nothing.
    let read = read_partition_from(
        consumer,
        (changelog, partition),
        (low, tail_from.unwrap_or(low), until),
        QUIET,
        |m| {
            metrics.restored.inc();
            gathered.take(m, valid);
            Ok::<(), ProcessorError>(())
        },
    );
    metrics.restoring.dec();
    read?;
    gathered.report(partition, changelog, metrics);
    let records = gathered.records;
    if gathered.next.is_none() {
        gathered.next = Some(until);
    }
    let mut write = gathered.write(Some(start));
    write.standby_copy = Some(false);
    if tail_from.is_some() {
        let standby = store.standby_copy(tree)?;
        store.commit(tree, write)?;
        tracing::info!(
            partition,
            records,
            resume_at = start,
            standby,
            "partition brought up to date from the changelog's tail"
        );
        return Ok(Restore::FromTail { records, standby });
    }
    store.replace(tree, write)?;
    tracing::info!(partition, records, resume_at = start, "partition restored");
    Ok(Restore::FromChangelog { records })
}
