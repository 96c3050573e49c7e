//! Warm standbys: copies of the partitions this instance does not own, kept
//! current in the local store by tailing their changelog partitions, so that
//! taking one on after its owner is gone reads only the changelog's tail.
//!
//! librdkafka takes no custom assignor, so the group cannot be told to hand
//! a dead member's partitions to the member holding their copies. The copies
//! go where the partitions may land instead: an instance with standbys keeps
//! every partition it does not own warm, and whichever survivor the
//! assignor picks holds one.
//!
//! A copy and an owner never write the same tree: the rebalance callback
//! [`Standby::release`]s a partition before it restores it, and the tailer
//! checks under the same lock, before every write, that the partition is
//! still its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sessionfold_edge::QuietLogs;
use sessionfold_schemas::{Contract, Topics};

use crate::error::ProcessorError;
use crate::metrics::Metrics;
use crate::offsets::{OffsetTracker, Verdict};
use crate::pipeline::Status;
use crate::restore::{Gathered, changelog_reader};
use crate::store::{PartitionWrite, SharedStore};
use crate::tables::{Part, Stream, Table, tree};

mod metrics;
pub use metrics::StandbyMetrics;

/// Most records read before the copies are written.
const READ_MAX: usize = 5_000;
/// How often the changelogs' ends are asked for, to tell each copy's lag.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How often the changelogs' partition counts are read again.
const METADATA_EVERY: Duration = Duration::from_secs(30);
/// How long a seek back on a changelog may wait for the consumer.
const SEEK_WITHIN: Duration = Duration::from_secs(1);

/// What the rebalance callback and the tailer share.
#[derive(Default)]
struct Claims {
    /// Partitions this instance owns: never written by the tailer.
    owned: BTreeSet<Part>,
}

/// The warm standbys of one processor: a handle for the rebalance callback
/// and the thread that tails the changelogs.
pub struct Standby {
    claims: Arc<Mutex<Claims>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Standby {
    /// No copies: every partition taken on is restored as before.
    pub fn none() -> Standby {
        Standby {
            claims: Arc::default(),
            stop: Arc::new(AtomicBool::new(true)),
            thread: Mutex::new(None),
        }
    }

    /// Starts the tailer. It keeps no copy until the group has answered
    /// once (a partition assigned at once is not worth reading twice).
    pub fn start(tailer: Tailer) -> Result<Standby, ProcessorError> {
        let claims = tailer.claims.clone();
        let stop = tailer.stop.clone();
        let thread = std::thread::Builder::new()
            .name("sessionfold-standby".into())
            .spawn(move || tailer.run())
            .map_err(|e| ProcessorError::Thread(e.to_string()))?;
        Ok(Standby {
            claims,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Takes `part` from the tailer for its owner: the tailer writes
    /// nothing to it from here on.
    pub fn release(&self, part: Part) {
        sessionfold_edge::lock(&self.claims).owned.insert(part);
    }

    /// Gives `part` back to the tailer once its owner has stored its last batch.
    pub fn stand_by(&self, part: Part) {
        sessionfold_edge::lock(&self.claims).owned.remove(&part);
    }

    /// Stops the tailer and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = sessionfold_edge::lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One partition's copy as the tailer reads it.
struct Copy {
    /// Next changelog offset to read.
    next: i64,
    /// Tells records read before from news, and a broker that skipped some.
    offsets: OffsetTracker,
    /// Records read and not yet written.
    gathered: Gathered,
    /// The copy holds every record the changelog partition held at this
    /// time (when it began, if it never caught up with a look at the end).
    current_at: Instant,
    /// Looks at the partition's end not yet reached: when, and the end.
    probes: std::collections::VecDeque<(Instant, i64)>,
}

/// The thread that tails the changelogs of the partitions not owned here.
pub struct Tailer {
    claims: Arc<Mutex<Claims>>,
    stop: Arc<AtomicBool>,
    brokers: String,
    topics: Topics,
    contract: Contract,
    store: SharedStore,
    metrics: Metrics,
    status: Arc<Status>,
    /// Longest a copy may be behind for an instance owning nothing to be ready.
    ready_within: Duration,
}

impl Tailer {
    /// A tailer over `store`, for the changelogs named in `topics`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        brokers: &str,
        topics: Topics,
        contract: Contract,
        store: SharedStore,
        metrics: Metrics,
        status: Arc<Status>,
        ready_within: Duration,
    ) -> Tailer {
        Tailer {
            claims: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            brokers: brokers.to_owned(),
            topics,
            contract,
            store,
            metrics,
            status,
            ready_within,
        }
    }

    fn run(self) {
        while !self.stop.load(Ordering::SeqCst) && !self.status.joined.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = self.tail() {
            tracing::error!(error = %e, "warm standby copies stopped; partitions taken on from here are restored from the changelog");
        }
    }

    fn changelog(&self, (stream, _): Part) -> &str {
        stream.changelog(&self.topics)
    }

    fn tail(&self) -> Result<(), ProcessorError> {
        let consumer = changelog_reader(&self.brokers)?;
        let mut all: BTreeSet<Part> = BTreeSet::new();
        let mut copies: BTreeMap<Part, Copy> = BTreeMap::new();
        let mut metadata_at: Option<Instant> = None;
        let mut lag_at = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if metadata_at.is_none_or(|t| t.elapsed() >= METADATA_EVERY) {
                all = self.partitions(&consumer);
                metadata_at = Some(Instant::now());
            }
            if self.follow(&consumer, &all, &mut copies)? {
                continue;
            }
            let mut read = 0;
            while read < READ_MAX {
                let Some(m) = consumer.poll(Duration::from_millis(if read == 0 { 100 } else { 0 }))
                else {
                    break;
                };
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        // The consumer retries on its own; the copy's lag shows it.
                        tracing::debug!(error = %e, "reading a changelog for a warm copy");
                        break;
                    }
                };
                let Some(stream) = Stream::of_changelog(&self.topics, m.topic()) else {
                    continue;
                };
                let part = (stream, m.partition());
                let Some(copy) = copies.get_mut(&part) else {
                    continue;
                };
                match copy.offsets.observe(m.offset()) {
                    Verdict::Repeat => continue,
                    Verdict::SeekBack(to) => {
                        // tansu 0.6.0 skips the rest of a record batch a read
                        // starts inside (a copy's position can be one).
                        let topic = m.topic().to_owned();
                        let seek = consumer.seek(&topic, part.1, Offset::Offset(to), SEEK_WITHIN);
                        if let Err(e) = seek {
                            tracing::debug!(error = %e, partition = part.1, topic, "seeking back on a changelog");
                        }
                        continue;
                    }
                    Verdict::Next | Verdict::GapAccepted { .. } => {}
                }
                read += 1;
                let contract = &self.contract;
                let valid = |key: &str, bytes: &[u8]| Table::check(stream, contract, key, bytes);
                copy.gathered.take(&m, &valid);
                copy.next = m.offset() + 1;
            }
            self.write(&mut copies)?;
            if lag_at.elapsed() >= LAG_EVERY {
                self.measure(&consumer, &mut copies);
                lag_at = Instant::now();
            }
        }
        Ok(())
    }

    /// Every partition of the changelogs, as the broker's metadata has them.
    fn partitions(&self, consumer: &BaseConsumer<QuietLogs>) -> BTreeSet<Part> {
        let mut out = BTreeSet::new();
        for stream in Stream::ALL {
            let topic = stream.changelog(&self.topics);
            match sessionfold_edge::catch_up::partitions(consumer, topic) {
                Ok(ids) => out.extend(ids.into_iter().map(|p| (stream, p))),
                Err(e) => tracing::debug!(topic, error = %e, "reading the partition count"),
            }
        }
        out
    }

    /// Matches the copies to the partitions not owned here; true when the
    /// assignment changed (so the tailer looks again before reading).
    fn follow(
        &self,
        consumer: &BaseConsumer<QuietLogs>,
        all: &BTreeSet<Part>,
        copies: &mut BTreeMap<Part, Copy>,
    ) -> Result<bool, ProcessorError> {
        let wanted: BTreeSet<Part> = {
            let claims = sessionfold_edge::lock(&self.claims);
            all.difference(&claims.owned).copied().collect()
        };
        let held: BTreeSet<Part> = copies.keys().copied().collect();
        if wanted == held {
            return Ok(false);
        }
        for gone in held.difference(&wanted) {
            copies.remove(gone);
            let label = self.label(*gone);
            let _ = self.metrics.standby.lag_records.remove_label_values(&label);
            let _ = self.metrics.standby.lag_seconds.remove_label_values(&label);
        }
        for part in wanted.difference(&held) {
            let claims = sessionfold_edge::lock(&self.claims);
            if claims.owned.contains(part) {
                continue;
            }
            let name = tree(part.0, part.1);
            let next = match self.store.changelog_position(&name)? {
                Some(next) => next,
                None => {
                    // States an earlier owner stored say nothing of where
                    // they stand in the changelog: the copy starts afresh.
                    self.store.replace(&name, PartitionWrite::default())?;
                    0
                }
            };
            drop(claims);
            copies.insert(
                *part,
                Copy {
                    next,
                    offsets: OffsetTracker::first_at(Some(next)),
                    gathered: Gathered::default(),
                    current_at: Instant::now(),
                    probes: std::collections::VecDeque::new(),
                },
            );
        }
        let mut tpl = TopicPartitionList::new();
        for (part, copy) in copies.iter_mut() {
            // Every copy's read starts again at its position.
            copy.offsets = OffsetTracker::first_at(Some(copy.next));
            tpl.add_partition_offset(self.changelog(*part), part.1, Offset::Offset(copy.next))?;
        }
        consumer.assign(&tpl)?;
        self.metrics.standby.partitions.set(copies.len() as i64);
        tracing::info!(
            partitions = copies.len(),
            "keeping warm copies of the partitions owned elsewhere"
        );
        Ok(true)
    }

    /// Writes what each copy gathered, unless its partition was taken since.
    fn write(&self, copies: &mut BTreeMap<Part, Copy>) -> Result<(), ProcessorError> {
        for (part, copy) in copies.iter_mut() {
            if copy.gathered.records == 0 {
                continue;
            }
            let claims = sessionfold_edge::lock(&self.claims);
            if claims.owned.contains(part) {
                copy.gathered = Gathered::default();
                continue;
            }
            self.metrics.standby.records.inc_by(copy.gathered.records);
            copy.gathered
                .report(part.1, self.changelog(*part), &self.metrics);
            let start = copy.gathered.batch_start;
            let mut write = copy.gathered.write(start);
            write.standby_copy = Some(true);
            self.store.commit(&tree(part.0, part.1), write)?;
            copy.gathered = Gathered::default();
        }
        Ok(())
    }

    fn label(&self, part: Part) -> [String; 2] {
        [part.0.input(&self.topics).to_owned(), part.1.to_string()]
    }

    /// Asks for each copied partition's end and sets the lag metrics and
    /// the readiness of an instance that owns nothing.
    fn measure(&self, consumer: &BaseConsumer<QuietLogs>, copies: &mut BTreeMap<Part, Copy>) {
        let now = Instant::now();
        let mut worst = Duration::ZERO;
        for (part, copy) in copies.iter_mut() {
            let high = match sessionfold_edge::watermarks(consumer, self.changelog(*part), part.1) {
                Ok((_, high)) => high,
                Err(e) => {
                    tracing::debug!(partition = ?part, error = %e, "reading a changelog's end");
                    continue;
                }
            };
            let behind = (high - copy.next).max(0);
            // Under steady traffic a copy is seldom at the very end when
            // asked: it is as fresh as the latest end it has since reached.
            copy.probes.push_back((now, high));
            if copy.probes.len() > 600 {
                // A copy this far behind keeps its older freshness.
                copy.probes.pop_back();
            }
            while let Some(&(at, end)) = copy.probes.front()
                && copy.next >= end
            {
                copy.current_at = at;
                copy.probes.pop_front();
            }
            let late = now - copy.current_at;
            worst = worst.max(late);
            let label = self.label(*part);
            let label = [label[0].as_str(), label[1].as_str()];
            self.metrics
                .standby
                .lag_records
                .with_label_values(&label)
                .set(behind);
            self.metrics
                .standby
                .lag_seconds
                .with_label_values(&label)
                .set(late.as_secs_f64());
        }
        let owns_nothing = sessionfold_edge::lock(&self.claims).owned.is_empty();
        let behind = if owns_nothing && worst > self.ready_within {
            worst.as_secs().max(1)
        } else {
            0
        };
        self.status
            .standby_behind_secs
            .store(behind, Ordering::SeqCst);
    }
}
