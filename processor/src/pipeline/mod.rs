//! The consume → fold → publish → commit loop.
//!
//! One thread owns the consumer. It polls records into a batch, copying each
//! into its partition's queue, and hands each full batch to the fold thread
//! (`intake`), then goes on polling. The fold thread folds the partitions'
//! queues in memory on several threads (`fold`) and publishes the changed
//! states and dead letters. While the broker acknowledges them it folds the
//! next batch; before publishing that one it waits for the acknowledgements
//! and writes the states and next input offsets in one sled batch per
//! partition. Batches are small while the input is caught up and grow while
//! it lags (`sizing`). Rebalance callbacks run inside `poll` on the
//! consumer's thread and take the core's lock, so they wait for the fold
//! thread's current step. On revocation they fold, publish and store every
//! record taken before the partitions go. On assignment they restore each
//! partition (from the changelog unless the local store is current) and load
//! it before reading starts, at the offset stored with the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sessionfold_fold::{Authority, Erasures, ImportConfig, Millis, Position, PresenceConfig};
use sessionfold_schemas::{Contract, Topics, headers};

use crate::ProcessorError;
use crate::dead_letter::DeadLetter;
use crate::liveness::{Coverage, Movement};
use crate::metrics::{Metrics, Stage, StageClock};
use crate::offsets::{OffsetTracker, Verdict};
use crate::output::{Acks, ChangelogProducer, Outgoing};
use intake::{Handoff, Polled, Queued};

mod commit;
mod fold;
mod group;
mod intake;
mod rebalance;
pub mod sizing;
mod storing;

use crate::restore::{Restore, restore_partition};
use crate::store::{PartitionWrite, Store};
use crate::tables::{Part, Stream, Table, tree};
use group::{GROUP_CHECK, GROUP_CHECK_SLOW, UNDESCRIBED_LIMIT};
use rebalance::{Ctx, partition_counts};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Consumer group of the processor instances.
    pub group_id: String,
    /// Presence rules.
    pub presence: PresenceConfig,
    /// Import rules.
    pub imports: ImportConfig,
    /// Interval of the wall-clock expiry tick.
    pub tick: Duration,
    /// Most records folded per batch.
    pub batch_max: usize,
    /// Static group membership id: a restart with the same id takes over at
    /// once instead of waiting for the old member's session to time out.
    pub instance_id: Option<String>,
    /// Longest a batch waits to fill up.
    pub batch_wait: Duration,
    /// Rebuild a partition whose local state is damaged from the changelog,
    /// instead of stopping.
    pub rebuild_damaged: bool,
    /// The group's session timeout: a member silent this long is dropped.
    pub session_timeout: Duration,
    /// Interval of the member's heartbeats to the coordinator.
    pub heartbeat_interval: Duration,
    /// An owned partition with records waiting that has not moved for this
    /// long counts as stuck.
    pub stuck_after: Duration,
    /// Whether the group watchdog asks the coordinator to describe the group.
    pub describe_group: bool,
    /// Threads that fold a batch's partitions side by side (at least 1).
    pub fold_threads: usize,
    /// Fewest queued records for which a batch is folded on several threads.
    pub fold_parallel_from: usize,
}

pub use sessionfold_edge::now_millis;

/// How long a lagging batch waits for its next record before the input
/// counts as caught up: the consumers' `fetch.wait.max.ms`.
const LAGGING_GAP: Duration = Duration::from_millis(20);

/// Records behind the last one taken that make a backlog: another poll's
/// worth, and never fewer than a few hundred, since the control records
/// that end other producers' transactions sit between the last record and
/// the high watermark and are never delivered.
fn backlog(sizing: &sizing::Sizing) -> usize {
    sizing.records().max(256)
}

/// What the HTTP surface reports about the loop.
#[derive(Default)]
pub struct Status {
    /// True once the loop is consuming and no partition is being restored.
    pub running: AtomicBool,
    /// True once the group has given this instance an assignment (maybe empty).
    pub joined: AtomicBool,
    /// Partitions being restored or loaded now.
    pub restoring: AtomicUsize,
    /// Seconds some input partitions have had no owner in the group, past
    /// the grace period (0: all owned).
    pub unowned_secs: AtomicU64,
    /// Owned partitions with records waiting that do not move.
    pub stuck: AtomicUsize,
}

impl Status {
    /// `None` when ready; otherwise why not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.running.load(Ordering::SeqCst) {
            return Some("starting: joining the group or restoring partitions".into());
        }
        let unowned = self.unowned_secs.load(Ordering::SeqCst);
        if unowned > 0 {
            return Some(format!(
                "input partitions without an owner in the group for {unowned} s; rejoining"
            ));
        }
        let stuck = self.stuck.load(Ordering::SeqCst);
        if stuck > 0 {
            return Some(format!(
                "{stuck} owned partition(s) with records waiting make no progress"
            ));
        }
        None
    }
}

/// Records folded but not yet committed.
#[derive(Default)]
struct Batch {
    records: usize,
    /// When the first record folded into it was polled.
    started: Option<Instant>,
    /// First input offset folded per partition in this batch.
    starts: BTreeMap<Part, i64>,
    /// Next input offset per partition after this batch.
    ends: BTreeMap<Part, i64>,
    dead: Vec<DeadLetter>,
    /// Records to write to their key's partition.
    moved: Vec<fold::Misplaced>,
    /// Input records by (kind, outcome), added to the metric at the end of
    /// the batch rather than through a labelled lookup per record.
    outcomes: BTreeMap<(&'static str, &'static str), u64>,
}

/// The state and output side of the processor, shared with the rebalance callback.
struct Core {
    settings: LoopSettings,
    contract: Contract,
    store: Store,
    metrics: Metrics,
    producer: ChangelogProducer,
    status: Arc<Status>,
    /// The owned partitions, each with its state and where it stands.
    parts: BTreeMap<Part, Owned>,
    batch: Batch,
    /// The batch published and not yet stored.
    in_flight: Option<commit::InFlight>,
    /// Writes acknowledged batches to sled beside the fold thread.
    writer: storing::StoreWriter,
    /// Positions moved in sled since they were last committed to the group.
    group_behind: bool,
    /// When the group offsets were last committed: at most once a second.
    group_committed: Instant,
    /// One warning per reason every 30 s: a stream of bad records is counted
    /// in the metrics, not logged line by line.
    dead_log: sessionfold_edge::LogThrottle,
    /// Partitions of each input topic, read at each assignment: a key's
    /// records belong on its murmur2 partition of that many.
    partition_counts: BTreeMap<Stream, i32>,
    /// How long the group has left input partitions without an owner.
    coverage: Coverage,
    /// The users forgotten so far, as the erasures topic's follower tells them.
    erasures: Arc<RwLock<Erasures>>,
    /// A copy of them taken at the last batch's end, so that folding a
    /// record takes no lock; refreshed when the follower knows more.
    forgotten: Erasures,
    /// Time spent per stage since the last batch's end.
    clock: StageClock,
}

/// One owned input partition: its folded state and where it stands.
struct Owned {
    table: Table,
    /// Next input offset, as committed to sled (`None`: nothing committed yet).
    position: Option<i64>,
    /// When the committed position last moved.
    moved: Movement,
    /// Whether the current stuck episode was logged, so each logs once.
    stuck_logged: bool,
    /// How many of the known erasures the table has had applied.
    erasures_applied: usize,
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    sessionfold_edge::lock(core)
}

/// The processing loop; owns the consumer, the producer and the state.
pub struct Processor {
    consumer: BaseConsumer<Ctx>,
    core: Shared,
    handoff: Arc<Handoff>,
}

impl Processor {
    /// Connects to the broker and subscribes; call from a blocking thread.
    pub fn new(
        settings: LoopSettings,
        store: Store,
        metrics: Metrics,
        status: Arc<Status>,
        erasures: Arc<RwLock<Erasures>>,
    ) -> Result<Processor, ProcessorError> {
        let mut config = sessionfold_edge::client_config(&settings.brokers);
        // Idempotence is not the operator's to turn off: the changelog's
        // exactly-once rests on it.
        config.set("enable.idempotence", "true");
        sessionfold_edge::unless_set(
            &mut config,
            &[("linger.ms", "5"), ("compression.type", "lz4")],
        );
        let producer: ChangelogProducer = config.create_with_context(Acks::default())?;
        let topics = settings.topics.clone();
        let writer = storing::StoreWriter::start(store.clone())?;
        let core = Arc::new(Mutex::new(Core {
            contract: sessionfold_edge::registry::contract()?,
            writer,
            settings,
            store,
            metrics,
            producer,
            status,
            parts: BTreeMap::new(),
            batch: Batch::default(),
            in_flight: None,
            dead_log: sessionfold_edge::LogThrottle::new(Duration::from_secs(30)),
            group_behind: false,
            group_committed: Instant::now(),
            partition_counts: BTreeMap::new(),
            coverage: Coverage::new(Duration::ZERO),
            erasures,
            forgotten: Erasures::new(),
            clock: StageClock::default(),
        }));
        let settings = lock(&core).settings.clone();
        let handoff = Arc::new(Handoff::default());
        let mut config = sessionfold_edge::consumer_config(&settings.brokers);
        if let Some(id) = &settings.instance_id {
            config.set("group.instance.id", id);
        }
        let consumer: BaseConsumer<Ctx> = config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                settings.heartbeat_interval.as_millis().to_string(),
            )
            .set("max.poll.interval.ms", "600000")
            .set("statistics.interval.ms", "1000")
            .create_with_context(Ctx {
                core: core.clone(),
                handoff: handoff.clone(),
                topics: topics.clone(),
                logs: sessionfold_edge::QuietLogs::default(),
            })?;
        consumer.subscribe(&[topics.activity.as_str(), topics.imports.as_str()])?;
        {
            let counts = partition_counts(&consumer, &topics);
            let mut c = lock(&core);
            c.partition_counts = counts;
            // Past a session timeout and a rebalance, partitions without an
            // owner are a fault, not a rebalance in progress.
            c.coverage = Coverage::new(settings.session_timeout * 2 + Duration::from_secs(5));
        }
        Ok(Processor {
            consumer,
            core,
            handoff,
        })
    }

    /// Runs until `stop` is set; returns after committing the last batch.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<(), ProcessorError> {
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("sessionfold-loop".into())
                .spawn_scoped(s, || {
                    let result = self.fold_loop();
                    if let Err(e) = result {
                        self.handoff.fail(e);
                    }
                    self.handoff.worker_returned();
                })
                .map_err(|e| ProcessorError::Thread(e.to_string()))?;
            let polled = self.poll_loop(&stop);
            // A failure of either thread stops both without storing more:
            // what was folded and not stored is read again.
            let failure = polled.err().or_else(|| self.handoff.failure());
            self.handoff.close(failure.is_none());
            if worker.join().is_err() {
                return Err(ProcessorError::Thread("the fold thread panicked".into()));
            }
            if let Some(e) = failure.or_else(|| self.handoff.failure()) {
                return Err(e);
            }
            let mut core = lock(&self.core);
            core.group_behind = true;
            core.group_committed = Instant::now() - Duration::from_secs(2);
            core.commit_group(&self.consumer, None, CommitMode::Async);
            drop(core);
            self.consumer.unsubscribe();
            Ok(())
        })
    }

    /// The consumer's thread: polls, queues and hands batches over until
    /// `stop` is set or the fold thread fails.
    fn poll_loop(&self, stop: &AtomicBool) -> Result<(), ProcessorError> {
        let (batch_max, batch_wait, topics, metrics) = {
            let core = lock(&self.core);
            (
                core.settings.batch_max,
                core.settings.batch_wait,
                core.settings.topics.clone(),
                core.metrics.clone(),
            )
        };
        let status = lock(&self.core).status.clone();
        let mut sizing = sizing::Sizing::polls(batch_max, batch_wait);
        let mut next_group_check = Instant::now() + GROUP_CHECK;
        // Group descriptions that failed in a row.
        let mut undescribed = 0u32;
        // Records in the batch being filled, as it stood after the last
        // record queued. The rebalance callback inside poll can only empty
        // it, and a stale count costs one poll that does not wait.
        let mut filling = 0usize;
        // Polls since the loop began: the readiness flag and the group
        // check are looked at every 64th poll and after an idle one, not
        // per record (a clock read per record was a tenth of this thread).
        let mut polls = 0u64;
        while !stop.load(Ordering::SeqCst) {
            polls = polls.wrapping_add(1);
            // Nothing is locked across poll: the callbacks take the locks.
            let wait = if filling == 0 {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            let mut polled = self.consumer.poll(wait);
            // While the input lags, an empty poll is not yet the end of the
            // backlog: the consumer's local queue runs dry between two
            // fetch responses (on Apache Kafka every few batches), and
            // taking that for caught up sent the batch limits back to the
            // base. A lagging batch waits for a record as long as a fetch
            // may take.
            let waited = polled.is_none() && filling > 0 && sizing.factor() > 1;
            if waited {
                polled = self.consumer.poll(LAGGING_GAP);
            }
            if let Some(e) = self.handoff.failure() {
                return Err(e);
            }
            let idle = match polled {
                None => true,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    true
                }
                Some(Ok(msg)) => {
                    let (queued, records) = self.handoff.queue(&msg, &topics, &metrics);
                    filling = records;
                    if let Queued::SeekBack(p, at) = queued {
                        drop(msg);
                        let topic = p.0.input(&topics);
                        if let Err(e) = self.consumer.seek(
                            topic,
                            p.1,
                            Offset::Offset(at),
                            Duration::from_secs(10),
                        ) {
                            tracing::warn!(partition = ?p, offset = at, error = %e, "seeking back over an input gap");
                        }
                    }
                    false
                }
            };
            // The clock is read once every 64 records, and after a poll
            // that waited: a batch's age matters to tens of milliseconds, a
            // record takes under one microsecond.
            let by_count = filling >= sizing.records();
            let by_time = filling > 0
                && (waited || filling % 64 == 0)
                && self
                    .handoff
                    .started()
                    .is_some_and(|t| t.elapsed() >= sizing.wait());
            if (idle || by_count || by_time) && filling > 0 {
                // A batch filled to its count says that records wait. One cut
                // short by an empty local queue or by its time says so too
                // when the broker holds another batch's worth behind it: on
                // a busy machine the queue runs dry between fetch responses
                // while the backlog is still large. Otherwise it was fed by
                // a trickle, and growing it would only hold changes back.
                let behind = !by_count && self.handoff.behind() >= backlog(&sizing);
                let lagging = by_count || behind;
                tracing::debug!(
                    records = filling,
                    factor = sizing.factor(),
                    full = by_count,
                    behind,
                    "batch handed to the fold thread"
                );
                if !self.handoff.hand_over(lagging) {
                    return Ok(());
                }
                sizing.ended(!lagging);
                filling = 0;
            } else if idle && filling == 0 && self.handoff.behind() < backlog(&sizing) {
                // Each idle poll, not once: the last batch's queues come
                // back from the fold thread only after it is folded.
                self.handoff.went_idle();
            }
            if idle || polls % 64 == 0 {
                let ready = status.joined.load(Ordering::SeqCst)
                    && status.restoring.load(Ordering::SeqCst) == 0;
                status.running.store(ready, Ordering::SeqCst);
                if Instant::now() >= next_group_check {
                    undescribed = if self.check_group() {
                        0
                    } else {
                        undescribed + 1
                    };
                    if undescribed == UNDESCRIBED_LIMIT {
                        tracing::info!(
                            every = ?GROUP_CHECK_SLOW,
                            "the broker does not describe the consumer group; it is asked rarely from now on, and this member's own assignment stands in for it"
                        );
                    }
                    next_group_check = Instant::now()
                        + if undescribed >= UNDESCRIBED_LIMIT {
                            GROUP_CHECK_SLOW
                        } else {
                            GROUP_CHECK
                        };
                }
            }
        }
        self.handoff.hand_over(false);
        Ok(())
    }

    /// The fold thread: folds each batch handed over, publishes it, stores
    /// the one before, expires on the wall clock and mirrors positions to
    /// the group, until the consumer's thread closes the handoff.
    fn fold_loop(&self) -> Result<(), ProcessorError> {
        let (tick, batch_max, batch_wait) = {
            let core = lock(&self.core);
            let s = &core.settings;
            (s.tick, s.batch_max, s.batch_wait)
        };
        let mut commits = sizing::Sizing::commits(batch_max, batch_wait);
        let dead_max = batch_max.saturating_mul(sizing::MAX_FACTOR as usize);
        let mut next_tick = Instant::now();
        // Whether a batch was in flight when the lock was last let go; the
        // rebalance callback can only empty it.
        let mut in_flight = false;
        // When the pending commit, held for the next poll, must end.
        let mut held_until: Option<Instant> = None;
        loop {
            let timeout = if let Some(until) = held_until {
                until.saturating_duration_since(Instant::now())
            } else if in_flight {
                Duration::ZERO
            } else {
                next_tick
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            };
            let closing = self.handoff.await_batch(timeout, held_until.is_some());
            let mut core = lock(&self.core);
            let ready = self.handoff.take_ready();
            if closing == Some(false) {
                return Ok(());
            }
            let mut full = None;
            if let Some(polled) = ready {
                let started = polled.started;
                full = Some(polled.full);
                // Folded before the tick, so that a heartbeat waiting in the
                // batch is not expired by the tick first.
                let queues = core.fold(polled, now_millis());
                self.handoff.give_back(queues);
                core.metrics
                    .fold_seconds
                    .observe(started.elapsed().as_secs_f64());
            } else if closing == Some(true) {
                core.commit_all()?;
                core.store.flush()?;
                return Ok(());
            }
            if Instant::now() >= next_tick {
                core.tick(now_millis());
                next_tick = Instant::now() + tick;
            }
            // While polls come full, more records wait behind them: the
            // commit takes the next poll too, until it reaches its count or
            // its time, so that a user changed in both is written once.
            let records = core.batch.records;
            let age = core.batch.started.map_or(Duration::ZERO, |t| t.elapsed());
            // Dead letters keep their whole record until published: a
            // backlog full of bad records must not grow a commit's memory
            // with its size, whatever the good ones coalesce.
            let by_count = records >= commits.records() || core.batch.dead.len() >= dead_max;
            let by_time = age >= commits.wait();
            let waiting = full.unwrap_or(held_until.is_some()) && !self.handoff.idle();
            if waiting && !by_count && !by_time {
                held_until = core.batch.started.map(|t| t + commits.wait());
                continue;
            }
            held_until = None;
            let states = core.commit()?;
            if records > 0 {
                tracing::debug!(
                    records,
                    states,
                    factor = commits.factor(),
                    by_count,
                    by_time,
                    waiting,
                    "commit"
                );
                commits.wrote(commits.factor(), records, states);
                // A commit cut by its time while polls still come full lags
                // as much as one filled to its count: the fold is slower
                // than the base limits assume (10,000 records in 50 ms), and
                // holding the limits there kept every commit of a backlog at
                // one poll's worth, coalescing nothing more.
                commits.ended(!waiting);
            }
            core.commit_group(&self.consumer, None, CommitMode::Async);
            in_flight = core.in_flight.is_some() || core.writer.pending();
        }
    }
}

impl Core {
    fn tick(&mut self, now: Millis) {
        for ((stream, _), owned) in self.parts.iter_mut() {
            let n = owned.table.tick(now);
            let what = match stream {
                Stream::Activity => "users",
                Stream::Imports => "imports",
            };
            self.metrics
                .expired
                .with_label_values(&[what])
                .inc_by(n as u64);
        }
    }
}
