//! How long a dead processor's partitions stop folding: two members under
//! steady traffic, the older one killed with SIGKILL, again and again, with
//! warm standbys and without. Each kill is followed by a fresh member on an
//! empty store (a pod rescheduled to another node), so the survivor of the
//! next kill never owned the dead member's partitions: with standbys it
//! holds warm copies of them, without it holds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use sessionfold_schemas::{ActivityBody, Contract, Topics};

use crate::services::{Service, metric_sum};

mod report;

/// The group's session timeout the members run with (the default).
const SESSION_TIMEOUT_MS: f64 = 6_000.0;
/// Page views a second during the kills: each a new page, so each is a
/// changelog record at once and the changelog shows when folding stops.
pub(crate) const RATE: u64 = 600;

/// One mode's kills.
#[derive(Debug, Clone)]
pub struct Mode {
    /// Gap per kill beyond the session timeout, ms: over the dead member's
    /// activity partitions, the longest time between their last change
    /// before the kill and their first after it, less the session timeout.
    pub gaps: Vec<f64>,
    /// Changelog records read per second while taking the partitions on.
    pub records_per_s: Vec<f64>,
    /// Changelog records read per kill.
    pub records: Vec<f64>,
}

/// The failover bench's figures.
#[derive(Debug, Clone)]
pub struct FailoverRun {
    /// Users (a session each) held.
    pub users: usize,
    /// With `--standby-replicas 1`.
    pub standby: Mode,
    /// Without standbys.
    pub cold: Mode,
}

/// The presence changelog's record times per partition, as a tailing
/// consumer sees them.
type Seen = Arc<Mutex<BTreeMap<i32, Vec<i64>>>>;

fn tail_changelog(
    brokers: &str,
    topic: &str,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = sessionfold_edge::consumer_config(brokers)
        .set("group.id", format!("failover-watch-{}", std::process::id()))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100))
            && let Some(t) = m.timestamp().to_millis()
        {
            sessionfold_edge::lock(&seen)
                .entry(m.partition())
                .or_default()
                .push(t);
        }
    }
    Ok(())
}

fn traffic(
    brokers: &str,
    topics: &Topics,
    users: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let contract = Contract::load()?;
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        sessionfold_edge::client_config(brokers)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()?;
    let started = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        // Spread over the users by a fixed stride, so that every partition
        // sees changes all along.
        let user = format!("u{:07}", (n * 7919) as usize % users);
        let mut e = sessionfold_e2e::session_started(
            format!("f-{n}"),
            &user,
            sessionfold_edge::now_millis(),
        );
        e.body = ActivityBody::PageViewed {
            page: format!("/failover/{n}"),
            title: None,
        };
        let bytes = contract.encode_activity(&e)?;
        let record = BaseRecord::<str, [u8]>::to(&topics.activity)
            .key(&e.user_id)
            .payload(&bytes);
        if producer.send(record).is_err() {
            producer.poll(Duration::from_millis(5));
        }
        n += 1;
        let due = started + Duration::from_micros(n * 1_000_000 / RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// The input partitions of `topic` a member owns, from its lag series.
async fn owned(member: &Service, topic: &str) -> anyhow::Result<BTreeSet<i32>> {
    let wanted = format!("topic=\"{topic}\"");
    Ok(member
        .metrics()
        .await?
        .lines()
        .filter(|l| l.starts_with("sessionfold_processor_consumer_lag{") && l.contains(&wanted))
        .filter_map(|l| {
            l.split_once("partition=\"")?
                .1
                .split('"')
                .next()?
                .parse()
                .ok()
        })
        .collect())
}

async fn until(
    what: &str,
    within: Duration,
    mut ok: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !ok().await? {
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn member(
    brokers: &str,
    prefix: &str,
    state: &std::path::Path,
    standby: bool,
) -> anyhow::Result<Service> {
    let state = state.to_string_lossy().into_owned();
    // Heartbeats twice a second: the survivor learns of the loss at its
    // next heartbeat after the session timeout, so they bound the gap.
    let mut args = vec![
        "--state-dir",
        state.as_str(),
        "--idle-timeout",
        "2h",
        "--heartbeat-interval",
        "500ms",
    ];
    if standby {
        args.extend(["--standby-replicas", "1"]);
    }
    Service::start("sessionfold-processor", brokers, prefix, &args).await
}

/// The largest value of a labelled series family (0 when absent).
fn metric_max(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

fn kind_sum(text: &str, series: &str, kind: &str) -> f64 {
    metric_sum(text, &format!("{series}{{kind=\"{kind}\"}}"))
}

/// One mode: fill, then `kills` kills of the older member.
async fn mode(brokers: &str, users: usize, kills: usize, standby: bool) -> anyhow::Result<Mode> {
    let prefix = format!(
        "failover-{users}-{}-{}",
        u8::from(standby),
        std::process::id()
    );
    let topics = Topics::new(&prefix);
    sessionfold_edge::ensure_topics(brokers, &topics, 6, Duration::from_secs(60)).await?;
    let dir = tempfile::tempdir()?;
    let mut older = member(brokers, &prefix, &dir.path().join("m0"), standby).await?;
    let at = sessionfold_edge::now_millis();
    let events: Vec<_> = (0..users)
        .map(|n| sessionfold_e2e::session_started(format!("s-{n}"), &format!("u{n:07}"), at))
        .collect();
    let (b, t) = (brokers.to_owned(), topics.clone());
    tokio::task::spawn_blocking(move || crate::pipeline::produce(&b, &t, &events)).await??;
    until(
        "the first member folds every user",
        Duration::from_secs(1800),
        async || {
            Ok(metric_sum(
                &older.metrics().await?,
                "sessionfold_processor_committed_records_total",
            ) >= users as f64)
        },
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let watch = {
        let (b, t, s, stop) = (
            brokers.to_owned(),
            topics.presence.clone(),
            seen.clone(),
            stop.clone(),
        );
        tokio::task::spawn_blocking(move || tail_changelog(&b, &t, s, stop))
    };
    let load = {
        let (b, t, stop) = (brokers.to_owned(), topics.clone(), stop.clone());
        tokio::task::spawn_blocking(move || traffic(&b, &t, users, stop))
    };
    let mut out = Mode {
        gaps: Vec::new(),
        records_per_s: Vec::new(),
        records: Vec::new(),
    };
    for kill in 0..kills {
        eprintln!(
            "failover bench ({}): kill {} of {kills}",
            if standby { "standby" } else { "cold" },
            kill + 1
        );
        let mut newer = member(
            brokers,
            &prefix,
            &dir.path().join(format!("m{}", kill + 1)),
            standby,
        )
        .await?;
        newer.wait("/readyz", Duration::from_secs(1800)).await?;
        let moved = {
            let (older, newer, topics) = (&older, &newer, &topics);
            let mut moved = BTreeSet::new();
            until(
                "both members own partitions",
                Duration::from_secs(600),
                async || {
                    let (a, b) = (
                        owned(older, &topics.activity).await?,
                        owned(newer, &topics.activity).await?,
                    );
                    moved = a.clone();
                    Ok(!a.is_empty() && !b.is_empty() && a.len() + b.len() == 6)
                },
            )
            .await?;
            moved
        };
        if standby {
            until(
                "the newer member's copies are current",
                Duration::from_secs(1800),
                async || {
                    let text = newer.metrics().await?;
                    // Under traffic a copy is rarely at the very end when
                    // asked; current means it was within the last second.
                    Ok(
                        metric_sum(&text, "sessionfold_processor_standby_partitions") > 0.0
                            && metric_max(&text, "sessionfold_processor_standby_lag_seconds")
                                <= 1.5,
                    )
                },
            )
            .await?;
        }
        let before = newer.metrics().await?;
        // Some changes on every partition before the kill.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed_ms = sessionfold_edge::now_millis();
        drop(older);
        until(
            "the survivor owns every partition",
            Duration::from_secs(1800),
            async || {
                Ok(metric_sum(
                    &newer.metrics().await?,
                    "sessionfold_processor_partitions_assigned",
                ) == 12.0)
            },
        )
        .await?;
        // Changes after the takeover on every moved partition.
        let seen_after = {
            let seen = seen.clone();
            let moved = moved.clone();
            move || {
                let seen = sessionfold_edge::lock(&seen);
                moved.iter().all(|p| {
                    seen.get(p)
                        .is_some_and(|t| t.iter().any(|t| *t > killed_ms))
                })
            }
        };
        until(
            "changes after the kill on every moved partition",
            Duration::from_secs(600),
            async || Ok(seen_after()),
        )
        .await?;
        let gap = {
            let seen = sessionfold_edge::lock(&seen);
            moved
                .iter()
                .filter_map(|p| {
                    let t = seen.get(p)?;
                    let before = t.iter().filter(|t| **t <= killed_ms).max()?;
                    let after = t.iter().filter(|t| **t > killed_ms).min()?;
                    Some(after - before)
                })
                .max()
                .unwrap_or(0)
        };
        let after = newer.metrics().await?;
        let kind = if standby { "standby" } else { "full_restore" };
        let delta = |series: &str| kind_sum(&after, series, kind) - kind_sum(&before, series, kind);
        let records = delta("sessionfold_processor_takeover_restored_records_sum");
        let seconds = delta("sessionfold_processor_takeover_seconds_sum");
        anyhow::ensure!(
            delta("sessionfold_processor_takeovers_total") >= 1.0,
            "the kill was not taken over as {kind}"
        );
        out.gaps.push(gap as f64 - SESSION_TIMEOUT_MS);
        out.records.push(records);
        out.records_per_s.push(if seconds > 0.0 {
            records / seconds
        } else {
            0.0
        });
        older = newer;
    }
    stop.store(true, Ordering::SeqCst);
    load.await??;
    watch.await??;
    Ok(out)
}

/// Runs `kills` kills with standbys, then as many without.
pub async fn run(brokers: &str, users: usize, kills: usize) -> anyhow::Result<FailoverRun> {
    let standby = mode(brokers, users, kills, true).await?;
    let cold = mode(brokers, users, kills, false).await?;
    Ok(FailoverRun {
        users,
        standby,
        cold,
    })
}
