//! Follows the changelog topics into the in-memory views: from the local
//! snapshot's positions when there is a usable one, else from the beginning.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use sessionfold_edge::catch_up::{self, Ends};
use sessionfold_edge::offsets::{OffsetTracker, Verdict};
use sessionfold_schemas::{Contract, Millis, SchemaError, Stream, headers};

mod apply;
use apply::apply_batch;

use crate::imports::ImportView;
use crate::metrics::Metrics;
use crate::snapshot::{self, Identity};
use crate::stream::Hub;
use crate::view::PresenceView;
use sessionfold_views::freshness::{Freshness, Partition};

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The compiled-in schemas did not load.
    #[error("schemas: {0}")]
    Schema(#[from] SchemaError),
    /// The topic has no partitions (it was not created).
    #[error("topic {0} not found")]
    NoTopic(String),
    /// The operator set an idle timeout the processor does not fold with.
    #[error(
        "--idle-timeout is {ours} ms here but the processor folds with {processors} ms \
         (its presence changelog says so); leave it unset to take the processor's, or set both alike"
    )]
    IdleTimeoutDiffers {
        /// This service's flag.
        ours: Millis,
        /// The processor's, from the changelog's header.
        processors: Millis,
    },
}

/// The views a projections instance serves, each behind its own lock.
#[derive(Clone)]
pub struct Views {
    /// Presence, from `<prefix>.presence`.
    pub presence: Arc<RwLock<PresenceView>>,
    /// Import ownership, from `<prefix>.import-ownership`.
    pub imports: Arc<RwLock<ImportView>>,
}

struct Raw {
    changelog: Stream,
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload: Option<Vec<u8>>,
    /// The idle timeout the processor folded a presence record with.
    idle_timeout: Option<Millis>,
    /// How far behind the record's active sessions' last activity may be.
    activity_resolution: Option<Millis>,
    /// When the processor wrote the record.
    time: Option<Millis>,
}

/// How often the follower asks the broker for the changelogs' ends.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The ends of `parts`, asked now; `None` when the broker does not answer
/// (the views' staleness then grows until it does).
fn probe(
    consumer: &BaseConsumer<sessionfold_edge::QuietLogs>,
    parts: &[Partition],
) -> Option<BTreeMap<Partition, i64>> {
    let mut ends = BTreeMap::new();
    for (topic, p) in parts {
        match consumer.fetch_watermarks(topic, *p, Duration::from_secs(1)) {
            Ok((_, high)) => {
                ends.insert((topic.clone(), *p), high);
            }
            Err(e) => {
                tracing::debug!(error = %e, topic, partition = p, "asking a changelog's end");
                return None;
            }
        }
    }
    Some(ends)
}

/// The milliseconds a record's header `name` holds, if any.
fn header_millis(m: &impl Message, name: &str) -> Option<Millis> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)?
        .value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// What the follower keeps up to date, shared with the service.
#[derive(Clone)]
pub struct Following {
    /// The views.
    pub views: Views,
    /// Where applied changes are streamed once caught up.
    pub hub: Arc<Hub>,
    /// Set once the ends seen at start are reached.
    pub ready: Arc<AtomicBool>,
    /// How fresh the views are.
    pub freshness: Arc<Mutex<Freshness>>,
    /// The projections' metrics.
    pub metrics: Metrics,
    /// Which changelogs the views are of, once the broker has said.
    pub identity: Arc<OnceLock<Identity>>,
}

/// Reads every partition of both changelogs into the views in batches, from
/// the local snapshot's positions when there is a usable one, else from the
/// start; sets `ready` once the ends seen at start are reached. Runs until a
/// stop is asked; call from a blocking thread.
pub fn follow(
    settings: &crate::Settings,
    f: Following,
    stop: sessionfold_edge::Stop,
) -> Result<(), FollowError> {
    let Following {
        views,
        hub,
        ready,
        freshness,
        metrics,
        identity,
    } = f;
    let (brokers, topics) = (settings.brokers.as_str(), &settings.topics);
    let fixed_idle_timeout = settings.idle_timeout_set.then_some(settings.idle_timeout);
    let contract = Contract::load()?;
    let consumer: BaseConsumer<sessionfold_edge::QuietLogs> =
        sessionfold_edge::consumer_config(brokers)
            .set(
                "group.id",
                format!("sessionfold-projections-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(sessionfold_edge::QuietLogs::default())?;
    let mut marks = BTreeMap::new();
    for changelog in Stream::ALL {
        let topic = changelog.changelog(topics);
        let partitions = catch_up::partitions(&consumer, topic)?;
        if partitions.is_empty() {
            return Err(FollowError::NoTopic(topic.to_owned()));
        }
        for p in partitions {
            let (low, high) = sessionfold_edge::watermarks(&consumer, topic, p)?;
            marks.insert((topic.to_owned(), p), (low, high));
        }
    }
    let cluster_id = consumer.client().fetch_cluster_id(Duration::from_secs(5));
    let ours = identity
        .get_or_init(|| Identity::of(topics, cluster_id))
        .clone();
    // Only a first read starts from the snapshot: after a follower restart
    // the views already hold more than it does.
    let restored = match &settings.snapshot_dir {
        Some(dir) if sessionfold_edge::read(&views.presence).is_empty() => {
            let real_end = |(topic, p): &Partition, marks: (i64, i64)| {
                catch_up::real_end(&consumer, topic, *p, marks).unwrap_or(marks.1)
            };
            snapshot::restore(dir, &ours, &contract, &views, &marks, &real_end)
        }
        _ => None,
    };
    if restored.is_some() {
        // An operator's own idle timeout stands until a changelog record
        // says what the processor folds with (and stops the service if it
        // differs); the snapshot's may only be an earlier default.
        if let Some(ours) = fixed_idle_timeout {
            sessionfold_edge::write(&views.presence).set_idle_timeout(ours);
        }
        metrics
            .users
            .set(sessionfold_edge::read(&views.presence).len() as i64);
        metrics
            .imports
            .set(sessionfold_edge::read(&views.imports).len() as i64);
    }
    let mut ends = Ends::new();
    // A read that starts inside a record batch (a snapshot's position can
    // be one) is read again from further back where tansu 0.6.0 skips it.
    let mut starts: BTreeMap<(Stream, i32), OffsetTracker> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    let parts: Vec<Partition> = marks.keys().cloned().collect();
    for ((topic, p), (low, high)) in &marks {
        let from = restored
            .as_ref()
            .and_then(|r| r.positions.get(&(topic.clone(), *p)).copied());
        ends.expect(topic, *p, from.unwrap_or(*low), *high);
        if let Some(changelog) = Stream::of_changelog(topics, topic) {
            starts.insert((changelog, *p), OffsetTracker::first_at(from));
        }
        tpl.add_partition_offset(topic, *p, from.map_or(Offset::Beginning, Offset::Offset))?;
        // A partition emptied by retention has no record to say it was read.
        let newest = restored.as_ref().and_then(|r| r.newest_change);
        sessionfold_edge::lock(&freshness).applied(
            (topic.clone(), *p),
            from.unwrap_or(*low),
            newest,
        );
    }
    consumer.assign(&tpl)?;
    tracing::info!(
        partitions = tpl.count(),
        to_catch_up = ends.pending(),
        "following the changelogs"
    );
    if ends.reached() {
        ready.store(true, Ordering::SeqCst);
    }
    let mut batch: Vec<Raw> = Vec::with_capacity(1024);
    let mut probed: Option<std::time::Instant> = None;
    while !stop.is_stopping() {
        if probed.is_none_or(|p| p.elapsed() >= PROBE_EVERY) {
            probed = Some(std::time::Instant::now());
            let at = sessionfold_edge::now_millis();
            if let Some(ends) = probe(&consumer, &parts) {
                sessionfold_edge::lock(&freshness).probed(at, ends);
            }
        }
        let mut wait = Duration::from_millis(100);
        while batch.len() < 5000 {
            match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "changelog consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    let Some(changelog) = Stream::of_changelog(topics, m.topic()) else {
                        continue;
                    };
                    let judged = starts
                        .get_mut(&(changelog, m.partition()))
                        .map(|t| t.observe(m.offset()));
                    match judged {
                        Some(Verdict::Repeat) => continue,
                        Some(Verdict::SeekBack(to)) => {
                            tracing::info!(
                                topic = m.topic(),
                                partition = m.partition(),
                                got = m.offset(),
                                seek_to = to,
                                "changelog read skipped records; reading again from further back"
                            );
                            let (topic, p) = (m.topic().to_owned(), m.partition());
                            if let Err(e) =
                                consumer.seek(&topic, p, Offset::Offset(to), Duration::from_secs(1))
                            {
                                tracing::warn!(topic, partition = p, error = %e, "seeking back on a changelog");
                            }
                            continue;
                        }
                        _ => {}
                    }
                    batch.push(Raw {
                        changelog,
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: m.payload().map(<[u8]>::to_vec),
                        idle_timeout: header_millis(&m, headers::IDLE_TIMEOUT_MS),
                        activity_resolution: header_millis(&m, headers::ACTIVITY_RESOLUTION_MS),
                        time: m.timestamp().to_millis(),
                    });
                }
            }
            wait = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        for r in &batch {
            if ends.seen(r.changelog.changelog(topics), r.partition, r.offset) {
                ready.store(true, Ordering::SeqCst);
                tracing::info!("caught up with the changelogs");
            }
        }
        // Changes are streamed once caught up: what came before is history,
        // which subscribers read from the views themselves.
        let hub = ready.load(Ordering::SeqCst).then_some(&*hub);
        let mut read: BTreeMap<(Stream, i32), (i64, Option<Millis>)> = BTreeMap::new();
        for r in &batch {
            let (next, time) = read.entry((r.changelog, r.partition)).or_default();
            *next = (*next).max(r.offset + 1);
            *time = (*time).max(r.time);
        }
        apply_batch(
            &contract,
            &views,
            hub,
            &metrics,
            fixed_idle_timeout,
            batch.drain(..),
        )?;
        let mut fresh = sessionfold_edge::lock(&freshness);
        for ((changelog, partition), (next, time)) in read {
            fresh.applied(
                (changelog.changelog(topics).to_owned(), partition),
                next,
                time,
            );
        }
    }
    Ok(())
}
