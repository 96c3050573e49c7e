//! Replay: the input topics folded again, from the start or a point in time
//! up to an end time, with event time as the only clock.
//!
//! Partitions are assigned directly (no consumer group), so the live group
//! and its offsets are untouched. Each partition is folded in offset order
//! with the same fold code as the live processor; expiry and purge are
//! driven by the event times seen, and a last tick at `until` gives the
//! as-of state. The views are written with the projections' own JSON shapes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sessionfold_fold::{
    ImportConfig, ImportTable, Millis, Position, PresenceConfig, PresenceTable,
};
use sessionfold_kafka::QuietLogs;
use sessionfold_projections::imports::ImportView;
use sessionfold_projections::view::{PresenceView, rfc3339};
use sessionfold_schemas::{Contract, Topics};

use crate::error::ProcessorError;
use crate::tables::Stream;

/// Where a replay starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every record still in the topics.
    Earliest,
    /// The first records written at or after this time (ms since the epoch).
    At(Millis),
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Where to start.
    pub from: Start,
    /// The as-of time: events that occurred later are not folded.
    pub until: Millis,
    /// Presence rules (try a different idle timeout on the past here).
    pub presence: PresenceConfig,
    /// Import rules.
    pub imports: ImportConfig,
    /// Window of the as-of active list and summary.
    pub window: Millis,
    /// Output directory.
    pub out: PathBuf,
}

/// What a replay read and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records read.
    pub records: u64,
    /// Events folded (duplicates included: they are applied as no-ops).
    pub folded: u64,
    /// Records refused (undecodable, late, lifecycle), as live would dead-letter them.
    pub refused: u64,
    /// Events that occurred after `until`.
    pub after_until: u64,
}

/// One input record.
struct Input<'a> {
    stream: Stream,
    key: Option<&'a str>,
    payload: Option<&'a [u8]>,
    pos: Position,
}

/// The folded state of every partition of both streams.
#[derive(Default)]
pub struct Folded {
    presence: BTreeMap<i32, PresenceTable>,
    imports: BTreeMap<i32, ImportTable>,
    clock: BTreeMap<(Stream, i32), Millis>,
}

impl Folded {
    /// Folds one input record, counting it in `report`.
    fn fold(
        &mut self,
        s: &ReplaySettings,
        contract: &Contract,
        record: Input<'_>,
        report: &mut ReplayReport,
    ) {
        let Input {
            stream,
            key,
            payload,
            pos,
        } = record;
        report.records += 1;
        let Some(payload) = payload else {
            report.refused += 1;
            return;
        };
        let clock = self
            .clock
            .entry((stream, pos.partition))
            .or_insert(Millis::MIN);
        let refused = match stream {
            Stream::Activity => match contract.decode_activity(payload) {
                Err(_) => true,
                Ok(e) if e.occurred_at > s.until => {
                    report.after_until += 1;
                    return;
                }
                Ok(e) => {
                    *clock = (*clock).max(e.occurred_at);
                    let t = self
                        .presence
                        .entry(pos.partition)
                        .or_insert_with(|| PresenceTable::new(s.presence));
                    t.tick(*clock);
                    t.apply(key, &e, pos, *clock).is_err()
                }
            },
            Stream::Imports => match contract.decode_import(payload) {
                Err(_) => true,
                Ok(e) if e.occurred_at > s.until => {
                    report.after_until += 1;
                    return;
                }
                Ok(e) => {
                    *clock = (*clock).max(e.occurred_at);
                    let t = self
                        .imports
                        .entry(pos.partition)
                        .or_insert_with(|| ImportTable::new(s.imports));
                    t.tick(*clock);
                    t.apply(key, &e, pos).is_err()
                }
            },
        };
        if refused {
            report.refused += 1;
        } else {
            report.folded += 1;
        }
    }

    /// Expires and purges what is due at `until`.
    fn finish(&mut self, until: Millis) {
        for t in self.presence.values_mut() {
            t.tick(until);
        }
        for t in self.imports.values_mut() {
            t.tick(until);
        }
    }
}

fn input_partitions(
    consumer: &BaseConsumer<QuietLogs>,
    topic: &str,
) -> Result<Vec<i32>, ProcessorError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Reads both input topics from `s.from` to their ends as seen at start and
/// folds them; writes the as-of views into `s.out`.
pub fn replay(s: &ReplaySettings) -> Result<ReplayReport, ProcessorError> {
    let contract = Contract::load().map_err(|e| ProcessorError::Replay(e.to_string()))?;
    let consumer: BaseConsumer<QuietLogs> = sessionfold_kafka::client_config(&s.brokers)
        .set("group.id", "sessionfold-replay")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(QuietLogs::default())?;
    let timeout = Duration::from_secs(10);
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for stream in Stream::ALL {
        let topic = stream.input(&s.topics);
        for p in input_partitions(&consumer, topic)? {
            let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
            if high > low {
                ends.insert((topic.to_owned(), p), high);
            }
            let offset = match s.from {
                Start::Earliest => Offset::Beginning,
                Start::At(t) => Offset::Offset(t),
            };
            tpl.add_partition_offset(topic, p, offset)?;
        }
    }
    if let Start::At(_) = s.from {
        tpl = consumer.offsets_for_times(tpl, timeout)?;
    }
    consumer.assign(&tpl)?;
    let mut folded = Folded::default();
    let mut report = ReplayReport::default();
    // Past the reported ends, read on until nothing arrives for a moment: a
    // broker's reported end can lag the records it stores (tansu does).
    let mut idle_since = std::time::Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(300)) {
            Some(Ok(m)) => {
                idle_since = std::time::Instant::now();
                let Some(stream) = Stream::of_topic(&s.topics, m.topic()) else {
                    continue;
                };
                let pos = Position {
                    partition: m.partition(),
                    offset: m.offset(),
                };
                let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
                let record = Input {
                    stream,
                    key,
                    payload: m.payload(),
                    pos,
                };
                folded.fold(s, &contract, record, &mut report);
                let part = (m.topic().to_owned(), m.partition());
                if ends.get(&part).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&part);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None if ends.is_empty() => break,
            None if idle_since.elapsed() > Duration::from_secs(30) => {
                return Err(ProcessorError::Replay(format!(
                    "no records for 30 s with partitions still short of their end: {ends:?}"
                )));
            }
            None => {}
        }
    }
    folded.finish(s.until);
    write_views(&folded, s)?;
    Ok(report)
}

fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<(), ProcessorError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ProcessorError::Replay(format!("{name}: {e}")))?;
    std::fs::write(dir.join(name), text + "\n")
        .map_err(|e| ProcessorError::Replay(format!("writing {name}: {e}")))
}

/// Writes the as-of views, in the projections' shapes, into `s.out`.
fn write_views(f: &Folded, s: &ReplaySettings) -> Result<(), ProcessorError> {
    std::fs::create_dir_all(&s.out)
        .map_err(|e| ProcessorError::Replay(format!("creating {}: {e}", s.out.display())))?;
    let mut presence = PresenceView::new(s.presence.idle_timeout);
    let mut ids = Vec::new();
    for t in f.presence.values() {
        for u in t.users() {
            ids.push(u.user_id.clone());
            presence.apply(&u.user_id, Some(u.clone()));
        }
    }
    ids.sort();
    let users: Vec<_> = ids
        .iter()
        .filter_map(|id| presence.user(id, s.until))
        .collect();
    write_json(
        &s.out,
        "presence-users.json",
        &serde_json::json!({ "as_of": rfc3339(s.until), "users": users }),
    )?;
    write_json(
        &s.out,
        "presence-active.json",
        &presence.active(s.until, s.window, usize::MAX, None),
    )?;
    write_json(
        &s.out,
        "presence-summary.json",
        &presence.summary(s.until, s.window),
    )?;
    // Stale is a read-time property; a replay uses the default rule.
    let mut imports = ImportView::new(24 * 3_600_000);
    for t in f.imports.values() {
        for i in t.imports() {
            imports.apply(&i.import_id, Some(i.clone()));
        }
    }
    write_json(
        &s.out,
        "imports.json",
        &serde_json::json!({ "as_of": rfc3339(s.until), "imports": imports.all(s.until) }),
    )
}
