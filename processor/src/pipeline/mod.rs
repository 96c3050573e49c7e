//! The consume → fold → publish → commit loop.
//!
//! One thread owns the consumer. It polls records into a batch, copying each
//! into its partition's queue; at the batch's end the partitions' queues are
//! folded in memory on several threads (`fold`), and the loop publishes the
//! changed states and dead letters. While the broker
//! acknowledges them it folds the next batch; before publishing that one it
//! waits for the acknowledgements and writes the states and next input
//! offsets in one sled batch per partition. Batches are small while the input
//! is caught up and grow while it lags (`sizing`). Rebalance callbacks run
//! inside `poll` on the same thread. On revocation they publish and store all
//! pending work before the partitions go. On assignment they restore each partition (from the changelog unless
//! the local store is current) and load it before reading starts, at the
//! offset stored with the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sessionfold_fold::{
    Applied, Authority, Erasures, ImportConfig, Millis, Position, PresenceConfig,
};
use sessionfold_schemas::{Contract, Topics, headers, partition};

use crate::ProcessorError;
use crate::dead_letter::DeadLetter;
use crate::liveness::{Coverage, Movement};
use crate::metrics::{Metrics, Stage, StageClock};
use crate::offsets::{OffsetTracker, Verdict};
use crate::output::Outgoing;

mod commit;
mod fold;
mod group;
mod rebalance;
pub mod sizing;

use crate::restore::{Restore, restore_partition};
use crate::store::{PartitionWrite, Store};
use crate::tables::{Part, Stream, Table, tree};
use group::GROUP_CHECK;
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
    /// Threads that fold a batch's partitions side by side (at least 1).
    pub fold_threads: usize,
    /// Fewest queued records for which a batch is folded on several threads.
    pub fold_parallel_from: usize,
}

pub use sessionfold_edge::now_millis;

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
    /// First input offset folded per partition in this batch.
    starts: BTreeMap<Part, i64>,
    /// Next input offset per partition after this batch.
    ends: BTreeMap<Part, i64>,
    dead: Vec<DeadLetter>,
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
    producer: FutureProducer<sessionfold_edge::QuietLogs>,
    runtime: tokio::runtime::Handle,
    status: Arc<Status>,
    /// The owned partitions, each with its state and where it stands.
    parts: BTreeMap<Part, Owned>,
    batch: Batch,
    /// The batch published and not yet stored.
    in_flight: Option<commit::InFlight>,
    /// Positions moved in sled since they were last committed to the group.
    group_behind: bool,
    /// When the group offsets were last committed: at most once a second.
    group_committed: Instant,
    /// One warning per reason every 30 s: a stream of bad records is counted
    /// in the metrics, not logged line by line.
    dead_log: sessionfold_edge::LogThrottle,
    /// An error raised inside a rebalance callback, for the loop to return.
    failed: Option<ProcessorError>,
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
    /// Where the partition's next record must be.
    offsets: OffsetTracker,
    /// When the committed position last moved.
    moved: Movement,
    /// Whether the current stuck episode was logged, so each logs once.
    stuck_logged: bool,
    /// How many of the known erasures the table has had applied.
    erasures_applied: usize,
    /// Records polled in this batch and not yet folded.
    queue: fold::Queue,
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    sessionfold_edge::lock(core)
}

/// The processing loop; owns the consumer, the producer and the state.
pub struct Processor {
    consumer: BaseConsumer<Ctx>,
    core: Shared,
}

impl Processor {
    /// Connects to the broker and subscribes; call from a blocking thread
    /// inside a tokio runtime.
    pub fn new(
        settings: LoopSettings,
        store: Store,
        metrics: Metrics,
        status: Arc<Status>,
        runtime: tokio::runtime::Handle,
        erasures: Arc<RwLock<Erasures>>,
    ) -> Result<Processor, ProcessorError> {
        let producer: FutureProducer<sessionfold_edge::QuietLogs> =
            sessionfold_edge::client_config(&settings.brokers)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .set("compression.type", "lz4")
                .create_with_context(sessionfold_edge::QuietLogs::default())?;
        let topics = settings.topics.clone();
        let core = Arc::new(Mutex::new(Core {
            contract: sessionfold_edge::registry::contract()?,
            settings,
            store,
            metrics,
            producer,
            runtime,
            status,
            parts: BTreeMap::new(),
            batch: Batch::default(),
            in_flight: None,
            dead_log: sessionfold_edge::LogThrottle::new(Duration::from_secs(30)),
            group_behind: false,
            group_committed: Instant::now(),
            failed: None,
            partition_counts: BTreeMap::new(),
            coverage: Coverage::new(Duration::ZERO),
            erasures,
            forgotten: Erasures::new(),
            clock: StageClock::default(),
        }));
        let settings = lock(&core).settings.clone();
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
            .set("statistics.interval.ms", "5000")
            .create_with_context(Ctx {
                core: core.clone(),
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
        Ok(Processor { consumer, core })
    }

    /// Runs until `stop` is set; returns after committing the last batch.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<(), ProcessorError> {
        let (tick, batch_max, batch_wait) = {
            let core = lock(&self.core);
            (
                core.settings.tick,
                core.settings.batch_max,
                core.settings.batch_wait,
            )
        };
        let mut sizing = sizing::Sizing::new(batch_max, batch_wait);
        let mut next_tick = Instant::now();
        let mut next_group_check = Instant::now() + GROUP_CHECK;
        let mut started = Instant::now();
        // Whether a batch is being folded or is in flight, as it stood when
        // the lock was last let go. The rebalance callback inside poll can
        // only empty both, and a stale `true` costs one poll that does not wait.
        let mut pending = false;
        // When the last record was queued: the time from there to the next
        // poll counts as polling, so that a record costs two clock reads.
        let mut queued_at: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            // Never hold the lock across poll: the rebalance callback takes it.
            let wait = if pending {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            let polling = Instant::now();
            let polled = self.consumer.poll(wait);
            let polled_at = Instant::now();
            let mut core = lock(&self.core);
            if let Some(since) = queued_at.take() {
                core.clock
                    .spent(Stage::Poll, polling.saturating_duration_since(since));
            }
            if pending || matches!(polled, Some(Ok(_))) {
                core.clock
                    .spent(Stage::Poll, polled_at.saturating_duration_since(polling));
            }
            if let Some(e) = core.failed.take() {
                return Err(e);
            }
            let ready = core.status.joined.load(Ordering::SeqCst)
                && core.status.restoring.load(Ordering::SeqCst) == 0;
            core.status.running.store(ready, Ordering::SeqCst);
            let idle = match polled {
                None => true,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    true
                }
                Some(Ok(msg)) => {
                    if core.batch.records == 0 {
                        started = polled_at;
                    }
                    let gap = core.queue_one(&msg);
                    queued_at = Some(polled_at);
                    if let Some((p, at)) = gap {
                        drop(msg);
                        let topic = p.0.input(&core.settings.topics).to_owned();
                        if let Err(e) = self.consumer.seek(
                            &topic,
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
            let full = core.batch.records >= sizing.records()
                || polled_at.saturating_duration_since(started) >= sizing.wait();
            if !(idle || full) {
                pending = core.batch.records > 0 || core.in_flight.is_some();
                continue;
            }
            if let Some(since) = queued_at.take() {
                core.clock.add(Stage::Poll, since);
            }
            // Folded before the tick, so that a heartbeat waiting in the
            // queue is not expired by the tick first.
            core.fold_queued(now_millis());
            if core.batch.records > 0 {
                sizing.ended(idle);
            }
            core.metrics
                .fold_seconds
                .observe(started.elapsed().as_secs_f64());
            if Instant::now() >= next_tick {
                core.tick(now_millis());
                next_tick = Instant::now() + tick;
            }
            core.commit()?;
            core.commit_group(&self.consumer, None, CommitMode::Async);
            pending = core.batch.records > 0 || core.in_flight.is_some();
            if Instant::now() >= next_group_check {
                drop(core);
                self.check_group();
                next_group_check = Instant::now() + GROUP_CHECK;
            }
        }
        let mut core = lock(&self.core);
        core.commit_all()?;
        core.store.flush()?;
        core.group_behind = true;
        core.group_committed = Instant::now() - Duration::from_secs(2);
        core.commit_group(&self.consumer, None, CommitMode::Async);
        drop(core);
        self.consumer.unsubscribe();
        Ok(())
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

    /// Queues one record for the batch's fold. Returns `Some((partition,
    /// offset))` when the record lies past the next expected offset: the
    /// broker skipped records (tansu 0.6.0 does when a fetch starts inside a
    /// record batch), so the caller seeks back to `offset`, further each
    /// time, and records already taken are then dropped by offset. Only when
    /// even the partition's beginning starts past the expected offset (data
    /// deleted) is the gap accepted.
    fn queue_one(&mut self, msg: &BorrowedMessage<'_>) -> Option<(Part, i64)> {
        let pos = Position {
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let Some(stream) = Stream::of_input(&self.settings.topics, msg.topic()) else {
            tracing::warn!(
                topic = msg.topic(),
                "record from a topic not folded; skipped"
            );
            return None;
        };
        let part = (stream, pos.partition);
        let Some(owned) = self.parts.get_mut(&part) else {
            tracing::warn!(partition = ?part, "record from a partition not owned; skipped");
            return None;
        };
        match owned.offsets.observe(pos.offset) {
            Verdict::Next => {}
            Verdict::Repeat => {
                self.metrics
                    .events_in
                    .with_label_values(&["any", "reread"])
                    .inc();
                return None;
            }
            Verdict::SeekBack(to) => {
                tracing::info!(partition = ?part, got = pos.offset, seek_to = to, "input gap; seeking back");
                self.metrics.input_gap_seeks.inc();
                return Some((part, to));
            }
            Verdict::GapAccepted { expected } => {
                tracing::warn!(partition = ?part, expected, got = pos.offset, "records missing from the input partition; continuing after the gap");
                self.metrics
                    .dead_lettered
                    .with_label_values(&["input_gap"])
                    .inc();
            }
        }
        let batch = &mut self.batch;
        batch.records += 1;
        batch.starts.entry(part).or_insert(pos.offset);
        batch.ends.insert(part, pos.offset + 1);
        // Only an import's actor needs vouching for; parsing the headers of
        // every activity record cost a twentieth of the loop.
        let authority = match stream {
            Stream::Activity => Authority::Actor,
            Stream::Imports => Authority::from_role(
                msg.headers()
                    .and_then(|h| h.iter().find(|h| h.key == headers::ACTOR_ROLE))
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok()),
            ),
        };
        owned
            .queue
            .push(pos.offset, msg.key(), msg.payload(), authority);
        None
    }
}
