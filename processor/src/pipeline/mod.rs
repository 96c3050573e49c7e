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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sessionfold_fold::{Authority, Erasures, Millis, Position};
use sessionfold_schemas::{Contract, Topics, headers};

use crate::ProcessorError;
use crate::dead_letter::DeadLetter;
use crate::liveness::{Coverage, Movement};
use crate::metrics::{Metrics, Stage, StageClock};
use crate::offsets::{OffsetTracker, Verdict};
use crate::output::{Acks, ChangelogProducer, ChangelogSink, Outgoing};
use intake::{Handoff, Polled, Queued};

mod commit;
mod fold;
mod group;
mod intake;
mod poll;
mod rebalance;
mod settings;
#[cfg(test)]
mod simulation;
pub mod sizing;
mod storing;
#[cfg(test)]
mod tests;
mod worker;

pub use settings::{LoopSettings, Status};

use crate::restore::{Restore, Target, changelog_reader, restore_partition};
use crate::standby::{Standby, Tailer};
use crate::store::{PartitionWrite, SharedStore};
use crate::tables::{Part, Stream, Table, tree};
use group::{GROUP_CHECK, GROUP_CHECK_SLOW, UNDESCRIBED_LIMIT};
use rebalance::{Ctx, partition_counts};

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
    store: SharedStore,
    metrics: Metrics,
    producer: Box<dyn ChangelogSink>,
    status: Arc<Status>,
    /// The owned partitions, each with its state and where it stands.
    parts: BTreeMap<Part, Owned>,
    /// Partitions revoked in the rebalance under way, until it assigns.
    kept: BTreeMap<Part, Owned>,
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
    /// Where a restart reads from, as last handed to the store: the
    /// position, or the first event whose effect is held back if earlier.
    resume: Option<i64>,
    /// When the committed position last moved.
    moved: Movement,
    /// Whether the current stuck episode was logged, so each logs once.
    stuck_logged: bool,
    /// How many of the known erasures the table has had applied.
    erasures_applied: usize,
}

impl Core {
    /// A core owning no partition yet, publishing to `producer` and
    /// storing in `store`.
    fn new(
        settings: LoopSettings,
        contract: Contract,
        store: SharedStore,
        metrics: Metrics,
        producer: Box<dyn ChangelogSink>,
        status: Arc<Status>,
        erasures: Arc<RwLock<Erasures>>,
    ) -> Result<Core, ProcessorError> {
        Ok(Core {
            contract,
            writer: storing::StoreWriter::start(store.clone())?,
            settings,
            store,
            metrics,
            producer,
            status,
            parts: BTreeMap::new(),
            kept: BTreeMap::new(),
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
        })
    }
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
    standby: Arc<Standby>,
}

impl Processor {
    /// Connects to the broker and subscribes; call from a blocking thread.
    pub fn new(
        settings: LoopSettings,
        store: SharedStore,
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
        let core = Arc::new(Mutex::new(Core::new(
            settings,
            sessionfold_edge::registry::contract()?,
            store,
            metrics,
            Box::new(producer),
            status,
            erasures,
        )?));
        let settings = lock(&core).settings.clone();
        let handoff = Arc::new(Handoff::default());
        let standby = Arc::new(if settings.standby {
            let c = lock(&core);
            Standby::start(Tailer::new(
                &settings.brokers,
                topics.clone(),
                c.contract.clone(),
                c.store.clone(),
                c.metrics.clone(),
                c.status.clone(),
                settings.standby_ready_within,
            ))?
        } else {
            Standby::none()
        });
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
                standby: standby.clone(),
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
            standby,
        })
    }

    /// Runs until a stop is asked; returns after committing the last batch.
    pub fn run(self, stop: sessionfold_edge::Stop) -> Result<(), ProcessorError> {
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
            self.standby.stop();
            Ok(())
        })
    }
}
