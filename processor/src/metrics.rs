//! Prometheus metrics of the processor.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the processor exports.
#[derive(Clone)]
pub struct Metrics {
    /// Registry served on `/metrics`.
    pub registry: Registry,
    /// Readiness and the process's own figures.
    pub gauges: sessionfold_edge::ServiceGauges,
    /// Input records by kind and outcome (applied, duplicate, already_applied).
    pub events_in: IntCounterVec,
    /// Records read from a partition other than their key's and moved to it.
    pub moved: IntCounterVec,
    /// Changelog records written, by topic.
    pub records_out: IntCounterVec,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_lettered: IntCounterVec,
    /// Users changed by expiry ticks.
    pub expired: IntCounterVec,
    /// Users' presence and imports deleted because the user was forgotten.
    pub forgotten: prometheus::IntCounter,
    /// Seconds to fold one batch.
    pub fold_seconds: Histogram,
    /// Seconds to deliver a batch's output and write it to sled.
    pub commit_seconds: Histogram,
    /// Users and sessions held, by kind.
    pub state_size: IntGaugeVec,
    /// Input partitions assigned and restored.
    pub partitions: IntGauge,
    /// Partitions being restored from the changelog now.
    pub restoring: IntGauge,
    /// Changelog records read while restoring.
    pub restored: prometheus::IntCounter,
    /// Changelog records left out of a restore, by reason.
    pub restore_skipped: IntCounterVec,
    /// Local stores found damaged and rebuilt from the changelog.
    pub store_rebuilt: prometheus::IntCounter,
    /// Partitions taken on, by how their state came: `own_store` (the local
    /// store was current, or needed only the changelog's tail), `standby`
    /// (a warm copy and the changelog's tail) or `full_restore` (rebuilt
    /// from the whole changelog).
    pub takeovers: IntCounterVec,
    /// Seconds from taking a partition on to folding it, by kind.
    pub takeover_seconds: HistogramVec,
    /// Changelog records read per partition taken on, by kind.
    pub takeover_records: HistogramVec,
    /// Seeks back over records the broker skipped inside a fetched batch (a
    /// tansu 0.6.0 defence; it never fires on Apache Kafka).
    pub input_gap_seeks: prometheus::IntCounter,
    /// 1 for an owned partition with records waiting that has not moved for a while.
    pub stuck: IntGaugeVec,
    /// Records between the stored position and the end of each partition.
    pub lag: IntGaugeVec,
    /// Input records whose batch is durable: output acknowledged, state and
    /// offsets written to the local store.
    pub committed: prometheus::IntCounter,
    /// Input records folded into the tables (their batch may not be durable yet).
    pub folded: prometheus::IntCounter,
    /// States written to (or deleted from) the local store.
    pub store_writes: prometheus::IntCounter,
    /// Bytes of keys and states written to the local store.
    pub store_bytes: prometheus::IntCounter,
    /// Seconds the loop spent in each stage (see [`Stage`]).
    pub stage_seconds: prometheus::CounterVec,
    /// The warm standby copies' lag and work.
    pub standby: crate::standby::StandbyMetrics,
}

/// The stages of the loop whose time is counted, so that a slow processor
/// shows where its time goes without a profiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Taking records from the consumer and copying them into their
    /// partitions' queues, while records wait or are taken (idle waits are
    /// not counted).
    Poll,
    /// Checking, decoding and folding a batch's records (the wall time of
    /// the fold, however many threads share it).
    Fold,
    /// Encoding changed states and handing records to the producer.
    Publish,
    /// Waiting for the broker to acknowledge a batch's output.
    AckWait,
    /// The fold thread waiting for the store writer to finish the
    /// previous batch's write.
    StoreWait,
    /// Writing states and input offsets to the local store (on the store
    /// writer's thread, beside the fold thread).
    Store,
}

impl Stage {
    /// Every stage, in the order of the loop.
    pub const ALL: [Stage; 6] = [
        Stage::Poll,
        Stage::Fold,
        Stage::Publish,
        Stage::AckWait,
        Stage::StoreWait,
        Stage::Store,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Poll => "poll",
            Stage::Fold => "fold",
            Stage::Publish => "publish",
            Stage::AckWait => "ack_wait",
            Stage::StoreWait => "store_wait",
            Stage::Store => "store",
        }
    }
}

/// Time per stage gathered over a batch and added to the metric at its end,
/// not through a labelled lookup per record.
#[derive(Debug, Default)]
pub struct StageClock {
    spent: [std::time::Duration; Stage::ALL.len()],
}

impl StageClock {
    /// Adds the time since `since` to `stage`.
    pub fn add(&mut self, stage: Stage, since: std::time::Instant) {
        self.spent(stage, since.elapsed());
    }

    /// Adds `d` to `stage`.
    pub fn spent(&mut self, stage: Stage, d: std::time::Duration) {
        self.spent[stage as usize] += d;
    }

    /// Moves the gathered time into the metric.
    pub fn flush(&mut self, metric: &prometheus::CounterVec) {
        for stage in Stage::ALL {
            let d = std::mem::take(&mut self.spent[stage as usize]);
            if !d.is_zero() {
                metric
                    .with_label_values(&[stage.label()])
                    .inc_by(d.as_secs_f64());
            }
        }
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("sessionfold_processor".into()), None)?;
        let events_in = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new("events_in_total", "Input records by kind and outcome"),
                &["kind", "outcome"],
            ),
        )?;
        let records_out = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new("records_out_total", "Records written, by topic"),
                &["topic"],
            ),
        )?;
        let dead_lettered = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "dead_lettered_total",
                    "Records sent to the dead-letter topic",
                ),
                &["reason"],
            ),
        )?;
        let expired = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new("expiry_changes_total", "Users changed by an expiry tick"),
                &["what"],
            ),
        )?;
        let buckets = prometheus::exponential_buckets(0.0001, 2.0, 16)?;
        let fold_seconds = sessionfold_edge::registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new("fold_seconds", "Time to fold one batch")
                    .buckets(buckets.clone()),
            ),
        )?;
        let commit_seconds = sessionfold_edge::registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "commit_seconds",
                    "Time to deliver a batch's output and write state and offsets",
                )
                .buckets(buckets),
            ),
        )?;
        let state_size = sessionfold_edge::registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("state_entities", "Entities held in state"),
                &["kind"],
            ),
        )?;
        let partitions = sessionfold_edge::registered(
            &registry,
            IntGauge::new("partitions_assigned", "Input partitions owned"),
        )?;
        let restoring = sessionfold_edge::registered(
            &registry,
            IntGauge::new("restoring_partitions", "Partitions being restored"),
        )?;
        let restored = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "restored_records_total",
                "Changelog records read while restoring",
            ),
        )?;
        let restore_skipped = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "restore_skipped_records_total",
                    "Changelog records left out of a restore (bad key, foreign value) or taken without batch headers",
                ),
                &["reason"],
            ),
        )?;
        let store_rebuilt = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "store_rebuilt_total",
                "Local state found damaged and rebuilt from the changelog",
            ),
        )?;
        let takeovers = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "takeovers_total",
                    "Input partitions taken on, by how their state came (own_store, standby, full_restore)",
                ),
                &["kind"],
            ),
        )?;
        let takeover_seconds = sessionfold_edge::registered(
            &registry,
            HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "takeover_seconds",
                    "Time from taking a partition on to folding it (restore and load), by kind",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
                &["kind"],
            ),
        )?;
        let takeover_records = sessionfold_edge::registered(
            &registry,
            HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "takeover_restored_records",
                    "Changelog records read per partition taken on, by kind",
                )
                .buckets(prometheus::exponential_buckets(1.0, 10.0, 8)?),
                &["kind"],
            ),
        )?;
        let input_gap_seeks = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "input_gap_seeks_total",
                "Seeks back over input records the broker skipped",
            ),
        )?;
        let stuck = sessionfold_edge::registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "partition_stuck",
                    "1 while an owned partition with records waiting makes no progress",
                ),
                &["topic", "partition"],
            ),
        )?;
        let lag = sessionfold_edge::registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("consumer_lag", "Records not yet processed"),
                &["topic", "partition"],
            ),
        )?;
        let committed = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "committed_records_total",
                "Input records whose batch is durable (output acknowledged, state and offsets stored; a heartbeat held back is read again after a restart)",
            ),
        )?;
        let folded = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "folded_records_total",
                "Input records folded into the tables (their batch may not be durable yet)",
            ),
        )?;
        let store_writes = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "store_writes_total",
                "States written to or deleted from the local store",
            ),
        )?;
        let store_bytes = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "store_bytes_total",
                "Bytes of keys and states written to the local store",
            ),
        )?;
        let forgotten = sessionfold_edge::registered(
            &registry,
            prometheus::IntCounter::new(
                "forgotten_entities_total",
                "Users' presence states and imports deleted because the user asked to be forgotten",
            ),
        )?;
        let stage_seconds = sessionfold_edge::registered(
            &registry,
            prometheus::CounterVec::new(
                Opts::new(
                    "stage_seconds_total",
                    "Seconds the loop spent per stage: poll (while records wait), fold (checks, decode, fold), publish (state encoding, handing to the producer), ack_wait (broker acknowledgements), store (local store writes)",
                ),
                &["stage"],
            ),
        )?;
        let moved = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "moved_records_total",
                    "Input records read from a partition other than their key's (a producer with another partitioner), written to their key's partition",
                ),
                &["topic"],
            ),
        )?;
        let gauges = sessionfold_edge::ServiceGauges::register(&registry)?;
        let standby = crate::standby::StandbyMetrics::register(&registry)?;
        Ok(Metrics {
            gauges,
            registry,
            events_in,
            moved,
            records_out,
            dead_lettered,
            expired,
            forgotten,
            fold_seconds,
            commit_seconds,
            state_size,
            partitions,
            restoring,
            restored,
            restore_skipped,
            store_rebuilt,
            takeovers,
            takeover_seconds,
            takeover_records,
            stuck,
            input_gap_seeks,
            lag,
            committed,
            folded,
            store_writes,
            store_bytes,
            stage_seconds,
            standby,
        })
    }
}
