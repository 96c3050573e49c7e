//! The consume → fold → publish → commit loop.
//!
//! One thread owns the consumer. It polls records into a batch, folds them in
//! memory, publishes the changed states and dead letters and waits for the
//! broker to acknowledge them, then writes states and next input offsets in one
//! sled batch per partition. Rebalance callbacks run inside `poll` on the same
//! thread. On revocation they commit the pending batch before the partitions
//! go. On assignment they restore each partition (from the changelog unless
//! the local store is current) and load it before reading starts, at the
//! offset stored with the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sessionfold_fold::{Applied, Authority, ImportConfig, Millis, Position, PresenceConfig};
use sessionfold_schemas::{Contract, Topics, headers, partition};

use crate::ProcessorError;
use crate::dead_letter::DeadLetter;
use crate::liveness::{Coverage, Progress};
use crate::metrics::Metrics;
use crate::restore::{Restore, restore_partition};
use crate::store::{PartitionWrite, Store};
use crate::tables::{Part, Stream, Table, tree};

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
}

/// Current wall-clock time in milliseconds.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
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
    /// First input offset folded per partition in this batch.
    starts: BTreeMap<Part, i64>,
    /// Next input offset per partition after this batch.
    ends: BTreeMap<Part, i64>,
    dead: Vec<DeadLetter>,
}

/// The state and output side of the processor, shared with the rebalance callback.
struct Core {
    settings: LoopSettings,
    contract: Contract,
    store: Store,
    metrics: Metrics,
    producer: FutureProducer<sessionfold_kafka::QuietLogs>,
    runtime: tokio::runtime::Handle,
    status: Arc<Status>,
    tables: BTreeMap<Part, Table>,
    /// Next input offset per owned partition, as committed.
    positions: BTreeMap<Part, i64>,
    /// Next input offset to fold per partition; anything else is a repeat or a gap.
    expected: BTreeMap<Part, i64>,
    /// How far back the last seek for a gap went, per partition.
    rewinds: BTreeMap<Part, i64>,
    batch: Batch,
    /// Positions moved in sled since they were last committed to the group.
    group_behind: bool,
    /// When the group offsets were last committed: at most once a second.
    group_committed: Instant,
    /// One warning per reason every 30 s: a stream of bad records is counted
    /// in the metrics, not logged line by line.
    dead_log: sessionfold_kafka::LogThrottle,
    /// An error raised inside a rebalance callback, for the loop to return.
    failed: Option<ProcessorError>,
    /// Partitions of each input topic, read at each assignment: a key's
    /// records belong on its murmur2 partition of that many.
    partition_counts: BTreeMap<Stream, i32>,
    /// How long the group has left input partitions without an owner.
    coverage: Coverage,
    /// When each owned partition last moved.
    progress: Progress<Part>,
    /// Stuck partitions already logged, so each episode logs once.
    stuck_logged: BTreeSet<Part>,
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    match core.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Consumer context: restores and loads partitions on assignment, commits
/// pending work on revocation, and starts each partition at the offset stored
/// with its state, never at the group's committed offset.
struct Ctx {
    core: Shared,
    topics: Topics,
    logs: sessionfold_kafka::QuietLogs,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.logs.log(level, fac, msg);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.logs.error(error, reason);
    }

    /// librdkafka's periodic statistics give each partition's high offset;
    /// lag is measured from the position committed to sled, which is ahead of
    /// the group offsets by at most a second.
    fn stats(&self, stats: rdkafka::Statistics) {
        let mut core = lock(&self.core);
        let now = Instant::now();
        let after = core.settings.stuck_after;
        let mut stuck = 0;
        for stream in Stream::ALL {
            let name = stream.input(&self.topics);
            let Some(topic) = stats.topics.get(name) else {
                continue;
            };
            for (p, part) in &topic.partitions {
                let key = (stream, *p);
                if !core.tables.contains_key(&key) || part.hi_offset < 0 {
                    continue;
                }
                let position = core.positions.get(&key).copied().unwrap_or(0);
                let lag = (part.hi_offset - position).max(0);
                let label = [name, &p.to_string()];
                core.metrics.lag.with_label_values(&label).set(lag);
                let is_stuck = core.progress.stuck(&key, lag, after, now);
                core.metrics
                    .stuck
                    .with_label_values(&label)
                    .set(i64::from(is_stuck));
                if is_stuck {
                    stuck += 1;
                    if core.stuck_logged.insert(key) {
                        tracing::error!(partition = ?key, lag, position, stuck_for = ?after, "partition makes no progress although records wait (see the dead-letter topic and the broker); /readyz is not ready until it moves");
                    }
                } else if core.stuck_logged.remove(&key) {
                    tracing::info!(partition = ?key, position, "partition moves again");
                }
            }
        }
        core.status.stuck.store(stuck, Ordering::SeqCst);
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<Part> = tpl
            .elements()
            .iter()
            .filter_map(|e| Some((Stream::of_input(&self.topics, e.topic())?, e.partition())))
            .collect();
        let mut core = lock(&self.core);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(?partitions, "partitions assigned");
                core.status.joined.store(true, Ordering::SeqCst);
                let counts = partition_counts(consumer, &self.topics);
                core.partition_counts.extend(counts);
                for p in &partitions {
                    let offset = match core.take_partition(*p) {
                        Ok(Some(o)) => Offset::Offset(o),
                        Ok(None) => Offset::Beginning,
                        Err(e) => {
                            tracing::error!(partition = ?p, error = %e, "restoring partition");
                            core.failed.get_or_insert(e);
                            Offset::Beginning
                        }
                    };
                    if let Err(e) = tpl.set_partition_offset(p.0.input(&self.topics), p.1, offset) {
                        tracing::error!(partition = ?p, error = %e, "setting start offset");
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    ?partitions,
                    "partitions revoked; committing pending work first"
                );
                if let Err(e) = core.commit() {
                    core.failed.get_or_insert(e);
                }
                // Async: a broker slow to answer a commit (tansu 0.6.0 at a
                // rebalance) must not hold the rebalance, and sled is the truth.
                core.commit_group(consumer, Some(&partitions), CommitMode::Async);
                for p in &partitions {
                    core.tables.remove(p);
                    core.positions.remove(p);
                    core.expected.remove(p);
                    core.rewinds.remove(p);
                    core.progress.forget(p);
                    core.stuck_logged.remove(p);
                    // A partition that left has no lag here: drop its series
                    // rather than leave a stale figure behind.
                    let label = [p.0.input(&self.topics), &p.1.to_string()];
                    let _ = core.metrics.lag.remove_label_values(&label);
                    let _ = core.metrics.stuck.remove_label_values(&label);
                }
                let stuck = core.stuck_logged.len();
                core.status.stuck.store(stuck, Ordering::SeqCst);
                core.metrics.partitions.set(core.tables.len() as i64);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassigning partitions");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

/// The partitions of each input topic, as the broker's metadata has them now;
/// a topic whose metadata cannot be read is left out.
fn partition_counts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &Topics,
) -> BTreeMap<Stream, i32> {
    let mut out = BTreeMap::new();
    for stream in Stream::ALL {
        let topic = stream.input(topics);
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(m) => {
                let n: usize = m
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic)
                    .map(|t| t.partitions().len())
                    .sum();
                if let Ok(n) = i32::try_from(n)
                    && n > 0
                {
                    out.insert(stream, n);
                }
            }
            Err(e) => tracing::warn!(topic, error = %e, "reading the partition count"),
        }
    }
    out
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
    ) -> Result<Processor, ProcessorError> {
        let producer: FutureProducer<sessionfold_kafka::QuietLogs> =
            sessionfold_kafka::client_config(&settings.brokers)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .set("compression.type", "lz4")
                .create_with_context(sessionfold_kafka::QuietLogs::default())?;
        let topics = settings.topics.clone();
        let core = Arc::new(Mutex::new(Core {
            contract: sessionfold_kafka::registry::contract()?,
            settings,
            store,
            metrics,
            producer,
            runtime,
            status,
            tables: BTreeMap::new(),
            positions: BTreeMap::new(),
            expected: BTreeMap::new(),
            rewinds: BTreeMap::new(),
            batch: Batch::default(),
            dead_log: sessionfold_kafka::LogThrottle::new(Duration::from_secs(30)),
            group_behind: false,
            group_committed: Instant::now(),
            failed: None,
            partition_counts: BTreeMap::new(),
            coverage: Coverage::new(Duration::ZERO),
            progress: Progress::default(),
            stuck_logged: BTreeSet::new(),
        }));
        let settings = lock(&core).settings.clone();
        let mut config = sessionfold_kafka::consumer_config(&settings.brokers);
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
                logs: sessionfold_kafka::QuietLogs::default(),
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
        let mut next_tick = Instant::now();
        let mut next_group_check = Instant::now() + GROUP_CHECK;
        let mut started = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            // Never hold the lock across poll: the rebalance callback takes it.
            let pending = lock(&self.core).batch.records > 0;
            let wait = if pending {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            let polled = self.consumer.poll(wait);
            let mut core = lock(&self.core);
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
                        started = Instant::now();
                    }
                    if let Some((p, at)) = core.fold_one(&msg, now_millis()) {
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
            let full = core.batch.records >= batch_max || started.elapsed() >= batch_wait;
            if !(idle || full) {
                continue;
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
            if Instant::now() >= next_group_check {
                drop(core);
                self.check_group();
                next_group_check = Instant::now() + GROUP_CHECK;
            }
        }
        let mut core = lock(&self.core);
        core.commit()?;
        core.store.flush()?;
        core.group_behind = true;
        core.group_committed = Instant::now() - Duration::from_secs(2);
        core.commit_group(&self.consumer, None, CommitMode::Async);
        drop(core);
        self.consumer.unsubscribe();
        Ok(())
    }
}

/// How often the group's assignment is checked for partitions without an owner.
const GROUP_CHECK: Duration = Duration::from_secs(5);

impl Processor {
    /// Asks the coordinator which input partitions the group's members own;
    /// when some have had no owner past the grace period, leaves and rejoins
    /// the group (with back-off) so that a new assignment is made.
    fn check_group(&self) {
        let (group, topics, total) = {
            let core = lock(&self.core);
            let total: i32 = core.partition_counts.values().sum();
            (
                core.settings.group_id.clone(),
                core.settings.topics.clone(),
                usize::try_from(total).unwrap_or(0),
            )
        };
        if total == 0 {
            return;
        }
        let inputs = [topics.activity.as_str(), topics.imports.as_str()];
        let owned = match self
            .consumer
            .fetch_group_list(Some(&group), Duration::from_secs(5))
        {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == group)
                .and_then(|g| match g.state() {
                    // A stable group always lists its members; a broker that
                    // lists none (tansu 0.6.0) tells nothing.
                    "Stable" if !g.members().is_empty() => Some(
                        g.members()
                            .iter()
                            .filter_map(|m| crate::liveness::assigned(m.assignment()?, &inputs))
                            .flatten()
                            .collect::<BTreeSet<_>>()
                            .len(),
                    ),
                    "Empty" | "Dead" => Some(0),
                    _ => None,
                }),
            Err(e) => {
                tracing::debug!(error = %e, "describing the consumer group");
                None
            }
        };
        let now = Instant::now();
        let mut core = lock(&self.core);
        match owned {
            Some(owned) => core.coverage.observe(owned, total, now),
            // Without the group's word, a member that owns nothing past the
            // grace period is the one fault it can see for itself.
            None if core.status.joined.load(Ordering::SeqCst) => {
                let mine = if core.tables.is_empty() { 0 } else { total };
                core.coverage.observe(mine, total, now);
            }
            None => {}
        }
        let short = core.coverage.short_for(now);
        core.status
            .unowned_secs
            .store(short.map_or(0, |d| d.as_secs().max(1)), Ordering::SeqCst);
        if core.coverage.rejoin_due(now) {
            tracing::warn!(owned = ?owned, total, for_secs = short.map(|d| d.as_secs()), owned_here = core.tables.len(), "input partitions have no owner in the group; leaving and rejoining it");
            drop(core);
            self.consumer.unsubscribe();
            if let Err(e) = self.consumer.subscribe(&inputs) {
                tracing::error!(error = %e, "subscribing again");
            }
        }
    }
}

impl Core {
    /// The positions stored in sled for `parts` (all owned ones when `None`),
    /// as group offsets.
    fn group_offsets(&self, parts: Option<&[Part]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (part, next) in &self.positions {
            if parts.is_some_and(|only| !only.contains(part)) {
                continue;
            }
            let topic = part.0.input(&self.settings.topics);
            if let Err(e) = tpl.add_partition_offset(topic, part.1, Offset::Offset(*next)) {
                tracing::debug!(partition = ?part, error = %e, "group offset left out");
            }
        }
        tpl
    }

    /// Mirrors the positions stored in sled to the consumer group, so that
    /// standard lag tools see the processor's progress. sled stays the truth
    /// for where to resume; a failed group commit costs only a stale figure.
    fn commit_group<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        parts: Option<&[Part]>,
        mode: CommitMode,
    ) {
        if parts.is_none()
            && (!self.group_behind
                || (matches!(mode, CommitMode::Async)
                    && self.group_committed.elapsed() < Duration::from_secs(1)))
        {
            return;
        }
        let tpl = self.group_offsets(parts);
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                if parts.is_none() {
                    self.group_behind = false;
                    self.group_committed = Instant::now();
                }
            }
            Err(e) => tracing::debug!(error = %e, "committing group offsets"),
        }
    }

    /// Restores (if needed) and loads one assigned partition; returns where to read from.
    fn take_partition(&mut self, p: Part) -> Result<Option<i64>, ProcessorError> {
        self.status.restoring.fetch_add(1, Ordering::SeqCst);
        self.status.running.store(false, Ordering::SeqCst);
        let result = (|| {
            let how = self.restore(p)?;
            let table = match self.load(p) {
                Ok(t) => t,
                Err(e) if self.settings.rebuild_damaged => {
                    tracing::error!(partition = ?p, error = %e, "local state of this partition is damaged; rebuilding it from the changelog");
                    self.metrics.store_rebuilt.inc();
                    self.store
                        .replace(&tree(p.0, p.1), PartitionWrite::default())?;
                    self.restore(p)?;
                    self.load(p)?
                }
                Err(e) => return Err(e),
            };
            let next = self.store.next_offset(&tree(p.0, p.1))?;
            tracing::info!(partition = ?p, entities = table.size().0, next_offset = ?next, restore = ?how, "partition loaded");
            self.tables.insert(p, table);
            if let Some(o) = next {
                self.positions.insert(p, o);
                self.expected.insert(p, o);
            }
            self.progress
                .position(&p, next.unwrap_or(0), Instant::now());
            self.metrics.partitions.set(self.tables.len() as i64);
            Ok(next)
        })();
        self.status.restoring.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn restore(&self, (stream, partition): Part) -> Result<Restore, ProcessorError> {
        let contract = &self.contract;
        let valid = |key: &str, bytes: &[u8]| Table::check(stream, contract, key, bytes);
        restore_partition(
            &self.settings.brokers,
            stream.input(&self.settings.topics),
            stream.changelog(&self.settings.topics),
            partition,
            &tree(stream, partition),
            &self.store,
            &self.metrics,
            &valid,
        )
    }

    /// Reads a partition's stored states into a table.
    fn load(&self, (stream, partition): Part) -> Result<Table, ProcessorError> {
        let mut table = Table::new(stream, self.settings.presence, self.settings.imports);
        for bytes in self.store.states(&tree(stream, partition))? {
            table
                .restore(&self.contract, &bytes)
                .map_err(|e| ProcessorError::CorruptState {
                    partition,
                    reason: e.to_string(),
                })?;
        }
        Ok(table)
    }

    fn tick(&mut self, now: Millis) {
        for ((stream, _), table) in self.tables.iter_mut() {
            let n = table.tick(now);
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

    /// Folds one record. Returns `Some((partition, offset))` when the record
    /// lies past the next expected offset: the broker skipped records (tansu
    /// 0.6.0 does when a fetch starts inside a record batch), so the caller
    /// seeks back to `offset`, further each time, and records already folded
    /// are then dropped by offset. Only when even the partition's beginning
    /// starts past the expected offset (data deleted) is the gap accepted.
    fn fold_one(&mut self, msg: &BorrowedMessage<'_>, now: Millis) -> Option<(Part, i64)> {
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
        if !self.tables.contains_key(&part) {
            tracing::warn!(partition = ?part, "record from a partition not owned; skipped");
            return None;
        }
        if let Some(&want) = self.expected.get(&part) {
            if pos.offset < want {
                self.metrics
                    .events_in
                    .with_label_values(&["any", "reread"])
                    .inc();
                return None;
            }
            if pos.offset > want {
                let back = self.rewinds.get(&part).map_or(64, |b| b * 2);
                if back <= 2 * want.max(1) {
                    self.rewinds.insert(part, back);
                    let to = (want - back).max(0);
                    tracing::info!(partition = ?part, expected = want, got = pos.offset, seek_to = to, "input gap; seeking back");
                    self.metrics.input_gap_seeks.inc();
                    return Some((part, to));
                }
                tracing::warn!(partition = ?part, expected = want, got = pos.offset, "records missing from the input partition; continuing after the gap");
                self.metrics
                    .dead_lettered
                    .with_label_values(&["input_gap"])
                    .inc();
            }
        }
        self.expected.insert(part, pos.offset + 1);
        self.rewinds.remove(&part);
        let table = self.tables.get_mut(&part)?;
        let batch = &mut self.batch;
        batch.records += 1;
        batch.starts.entry(part).or_insert(pos.offset);
        batch.ends.insert(part, pos.offset + 1);
        let dead = |kind: &'static str, error: String| DeadLetter {
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            kind,
            error,
            source_topic: msg.topic().to_owned(),
            pos,
        };
        let Ok(key) = msg.key().map(std::str::from_utf8).transpose() else {
            batch
                .dead
                .push(dead("bad_key", "record key is not UTF-8".into()));
            return None;
        };
        if let (Some(k), Some(&n)) = (key, self.partition_counts.get(&stream)) {
            let home = partition::partition_for(k.as_bytes(), n);
            if home != pos.partition {
                batch.dead.push(dead(
                    "wrong_partition",
                    format!(
                        "key {k:?} belongs on partition {home} of {n} (murmur2, Kafka's default partitioner), not {}: produce with the murmur2 partitioner (librdkafka: partitioner=murmur2_random)",
                        pos.partition
                    ),
                ));
                return None;
            }
        }
        let role = msg
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == headers::ACTOR_ROLE))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok());
        match table.apply(
            &self.contract,
            key,
            msg.payload().unwrap_or_default(),
            pos,
            now,
            Authority::from_role(role),
        ) {
            Ok((kind, applied)) => {
                let outcome = match applied {
                    Applied::Changed => "applied",
                    Applied::Duplicate => "duplicate",
                    Applied::AlreadyApplied => "already_applied",
                };
                self.metrics
                    .events_in
                    .with_label_values(&[kind, outcome])
                    .inc();
            }
            Err((kind, error)) => batch.dead.push(dead(kind, error)),
        }
        None
    }

    /// Publishes the pending batch's output, waits for it, then writes states
    /// and offsets to sled.
    fn commit(&mut self) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        let topics = &self.settings.topics;
        let mut writes: BTreeMap<Part, PartitionWrite> = BTreeMap::new();
        let mut outgoing: Vec<Outgoing<'_>> = Vec::new();
        for (part, table) in self.tables.iter_mut() {
            let dirty = table.take_dirty();
            if dirty.is_empty() {
                continue;
            }
            let (stream, p) = *part;
            let position = self.positions.get(part).copied().unwrap_or(0);
            let start = batch.starts.get(part).copied().unwrap_or(position);
            let end = batch.ends.get(part).copied().unwrap_or(position);
            for id in dirty {
                let state = table.encoded(&self.contract, &id)?;
                let (value, offset) = match state {
                    Some((v, o)) => (Some(v), Some(o)),
                    None => (None, None),
                };
                outgoing.push(Outgoing {
                    topic: stream.changelog(topics),
                    partition: Some(p),
                    key: id.clone().into_bytes(),
                    payload: value.clone(),
                    headers: changelog_headers(stream.input(topics), p, offset, start, end),
                });
                writes.entry(*part).or_default().entities.push((id, value));
            }
        }
        for d in &batch.dead {
            self.metrics
                .dead_lettered
                .with_label_values(&[d.kind])
                .inc();
            match self.dead_log.admit(d.kind) {
                Some(held_back) => {
                    tracing::warn!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, held_back, "dead-lettered (one line per reason every 30 s; held_back counts the others since the last line)")
                }
                None => {
                    tracing::debug!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, "dead-lettered")
                }
            }
            let published = d.published();
            outgoing.push(Outgoing {
                topic: &topics.dead_letter,
                partition: None,
                key: published.key,
                payload: published.payload,
                headers: published.headers,
            });
        }
        if !outgoing.is_empty() {
            deliver(&self.producer, &self.runtime, &outgoing)?;
            for o in &outgoing {
                self.metrics.records_out.with_label_values(&[o.topic]).inc();
            }
        }
        for (p, next) in &batch.ends {
            writes.entry(*p).or_default().next_offset = Some(*next);
        }
        for (part, write) in writes {
            let next = write.next_offset;
            self.store.commit(&tree(part.0, part.1), write)?;
            if let Some(n) = next {
                self.positions.insert(part, n);
                self.progress.position(&part, n, Instant::now());
                self.group_behind = true;
            }
        }
        let (mut users, mut sessions, mut imports) = (0, 0, 0);
        for ((stream, _), t) in &self.tables {
            let (entities, s) = t.size();
            match stream {
                Stream::Activity => users += entities,
                Stream::Imports => imports += entities,
            }
            sessions += s;
        }
        self.metrics
            .state_size
            .with_label_values(&["imports"])
            .set(imports as i64);
        self.metrics
            .state_size
            .with_label_values(&["users"])
            .set(users as i64);
        self.metrics
            .state_size
            .with_label_values(&["sessions"])
            .set(sessions as i64);
        if batch.records > 0 || !outgoing.is_empty() {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// One record to publish.
struct Outgoing<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

fn changelog_headers(
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
fn deliver(
    producer: &FutureProducer<sessionfold_kafka::QuietLogs>,
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
