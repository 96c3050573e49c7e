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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use sessionfold_edge::QuietLogs;
use sessionfold_edge::catch_up::{Ends, Patience, read_to_end};
use sessionfold_schemas::headers::{BATCH_END, BATCH_START};

use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::store::{PartitionWrite, StateStore};

/// What restoring found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// The local store already holds everything the changelog holds.
    LocalCurrent,
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
    let patience = Patience {
        quiet: Duration::from_millis(100),
        ..Patience::default()
    };
    read_to_end(consumer, &mut ends, patience, |m| {
        f(m);
        Ok::<(), ProcessorError>(())
    })
}

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

/// Brings store tree `tree` (partition `partition` of topic `input`) up to
/// date with the same partition of `changelog`, unless it is current already.
///
/// Operators and other writers can put anything on a changelog: a record
/// without headers, a value that is not a state, a tombstone. None of them
/// blocks the start. The batch bounds come from the last record that has
/// them; a value that `valid` refuses or a record without a UTF-8 key is left
/// out; a tombstone deletes its key, as compaction would. What was left out
/// or taken without headers is logged once per restore and counted.
#[allow(clippy::too_many_arguments)]
pub fn restore_partition(
    brokers: &str,
    input: &str,
    changelog: &str,
    partition: i32,
    tree: &str,
    store: &dyn StateStore,
    metrics: &Metrics,
    valid: Validate<'_>,
) -> Result<Restore, ProcessorError> {
    let consumer: BaseConsumer<QuietLogs> = sessionfold_edge::consumer_config(brokers)
        .set("group.id", "sessionfold-restore")
        .set("enable.auto.commit", "false")
        .create_with_context(QuietLogs::default())?;
    // A store that has read past the end of its input belongs to another
    // incarnation of the topic (recreated, or another cluster): its offsets
    // mean nothing here. Drop it and rebuild from this cluster's changelog.
    // A broker whose reported end lags (tansu) only costs a needless restore.
    let input_marks = sessionfold_edge::watermarks(&consumer, input, partition)?;
    if let Some(local) = store.next_offset(tree)?
        && local > input_marks.1
        // A reported end can lag the records (tansu): only a store ahead of
        // what the partition really holds is thrown away.
        && let input_end = sessionfold_edge::catch_up::real_end(&consumer, input, partition, input_marks)?
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
    let (low, high) = sessionfold_edge::watermarks(&consumer, changelog, partition)?;
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
    read_to(&consumer, changelog, partition, (high - 1, high), |m| {
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
            read_to(&consumer, changelog, partition, (low, high), |m| {
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
        return Ok(Restore::LocalCurrent);
    }
    tracing::info!(
        partition,
        resume_at = start,
        "restoring partition from the changelog"
    );
    metrics.restoring.inc();
    assign(Offset::Beginning)?;
    let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut records = 0u64;
    let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut first_refusal: Option<(i64, String)> = None;
    let read = read_to(
        &consumer,
        changelog,
        partition,
        (low, last.offset() + 1),
        |m| {
            records += 1;
            metrics.restored.inc();
            let mut skip = |reason: &'static str| *skipped.entry(reason).or_default() += 1;
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                skip("bad_key");
                return;
            };
            let ours = batch_of(m).is_some();
            match m.payload() {
                None => {
                    if !ours {
                        skip("tombstone_without_headers");
                    }
                    latest.insert(key.to_owned(), None);
                }
                Some(v) => match valid(key, v) {
                    Ok(()) => {
                        if !ours {
                            skip("state_without_headers");
                        }
                        latest.insert(key.to_owned(), Some(v.to_vec()));
                    }
                    Err(e) => {
                        skip("foreign_value");
                        first_refusal.get_or_insert((m.offset(), e));
                    }
                },
            }
        },
    );
    metrics.restoring.dec();
    read?;
    if !skipped.is_empty() {
        for (reason, n) in &skipped {
            metrics
                .restore_skipped
                .with_label_values(&[reason])
                .inc_by(*n);
        }
        let (offset, error) = first_refusal.unzip();
        tracing::warn!(
            partition,
            changelog,
            ?skipped,
            first_refused_offset = offset,
            first_refusal = error,
            "changelog records not written by sessionfold: bad keys and values that are not states left out, tombstones and valid states taken"
        );
    }
    store.replace(
        tree,
        PartitionWrite {
            entities: latest.into_iter().collect(),
            next_offset: Some(start),
        },
    )?;
    tracing::info!(partition, records, resume_at = start, "partition restored");
    Ok(Restore::FromChangelog { records })
}
