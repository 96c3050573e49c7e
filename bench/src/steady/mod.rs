//! The steady state users run: U online users, each heartbeating every 30 s
//! in real time through the ingest, with a few page changes and closed
//! tabs among them. After a warm-up (every user online in the projections,
//! the processor caught up and past its activity resolution), rounds of a
//! fixed window each measure, per tier, CPU from the kernel's nanosecond
//! run-time counters (`/proc/PID/task/*/schedstat`), the processor's store
//! writes and changelog records, the records the projections decode, and,
//! meanwhile, how soon a page change and a closed tab are seen and how far
//! the processor lags.

mod load;
mod probe;
pub mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sessionfold_schemas::Topics;

use crate::services::{Service, admin_token, metric_sum};
use load::{Load, Path, Sent};
pub use report::{Round, SteadyRun};

/// How a steady run goes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Online users.
    pub users: usize,
    /// Each user's heartbeat interval.
    pub interval: Duration,
    /// Length of a measured round.
    pub window: Duration,
    /// Rounds on the batched path.
    pub rounds: usize,
    /// Extra processor flags (e.g. another `--activity-resolution`).
    pub processor_args: Vec<String>,
    /// Seed of the load's mix.
    pub seed: u64,
}

/// Run time of every thread of process `pid` so far, in nanoseconds, from
/// the scheduler's counters (threads that exited are not counted, which is
/// why a round starts after the warm-up, once the services' threads stand).
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(&path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// The processes whose CPU a round counts.
struct Tiers<'a> {
    ingest: &'a Service,
    processor: &'a Service,
    projections: &'a Service,
    broker: Option<u32>,
}

impl Tiers<'_> {
    fn cpu(&self) -> anyhow::Result<[u64; 5]> {
        Ok([
            cpu_ns(self.ingest.pid())?,
            cpu_ns(self.processor.pid())?,
            cpu_ns(self.projections.pid())?,
            self.broker.map(cpu_ns).transpose()?.unwrap_or(0),
            cpu_ns(std::process::id())?,
        ])
    }
}

/// Counters of the services that a round takes differences of.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    folded: f64,
    changelog: f64,
    store_writes: f64,
    decoded: f64,
}

async fn counters(t: &Tiers<'_>, presence: &str) -> anyhow::Result<Counters> {
    let p = t.processor.metrics().await?;
    let changelog = p
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "sessionfold_processor_records_out_total{{topic=\"{presence}\"}} "
            ))?
            .trim()
            .parse()
            .ok()
        })
        .unwrap_or(0.0);
    Ok(Counters {
        folded: metric_sum(&p, "sessionfold_processor_events_in_total"),
        changelog,
        store_writes: metric_sum(&p, "sessionfold_processor_store_writes_total"),
        decoded: metric_sum(
            &t.projections.metrics().await?,
            "sessionfold_projections_changelog_records_total",
        ),
    })
}

/// Waits until the projections show every user online and the processor
/// has nothing left to read.
async fn warm(t: &Tiers<'_>, users: usize, within: Duration) -> anyhow::Result<()> {
    let token = admin_token("bench-admin")?;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/presence/summary?window=5m", t.projections.url);
    let deadline = Instant::now() + within;
    loop {
        let summary: serde_json::Value = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let lag = metric_sum(
            &t.processor.metrics().await?,
            "sessionfold_processor_consumer_lag",
        );
        if summary["users"].as_u64() >= Some(users as u64) && lag < 1000.0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "warm-up: {} of {users} users online, processor lag {lag}: the stack does not keep up",
            summary["users"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One round: the counters and CPU over `window`, with the probes and the
/// lag sampled meanwhile.
async fn round(
    t: &Tiers<'_>,
    presence: &str,
    sent: &Sent,
    window: Duration,
    prober: &mut probe::Prober,
) -> anyhow::Result<Round> {
    let (c0, cpu0, s0) = (counters(t, presence).await?, t.cpu()?, sent.snapshot());
    let began = Instant::now();
    let mut lag = Vec::new();
    let mut fresh = Vec::new();
    while began.elapsed() < window {
        fresh.extend(prober.probe().await?);
        lag.push(metric_sum(
            &t.processor.metrics().await?,
            "sessionfold_processor_consumer_lag",
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let (c1, cpu1, s1) = (counters(t, presence).await?, t.cpu()?, sent.snapshot());
    let cpu: Vec<f64> = cpu1
        .iter()
        .zip(cpu0)
        .map(|(b, a)| b.saturating_sub(a) as f64)
        .collect();
    Ok(Round {
        seconds,
        events: s1.0 - s0.0,
        heartbeats: s1.1 - s0.1,
        requests: s1.2 - s0.2,
        folded: c1.folded - c0.folded,
        changelog_records: c1.changelog - c0.changelog,
        store_writes: c1.store_writes - c0.store_writes,
        decoded: c1.decoded - c0.decoded,
        cpu_ns: [cpu[0], cpu[1], cpu[2], cpu[3], cpu[4]],
        freshness_ms: fresh,
        lag_records: lag,
    })
}

/// CPU nanoseconds per second of each tier with the services up and no
/// load (scraped as a round scrapes them): their fixed cost.
async fn idle(t: &Tiers<'_>, window: Duration) -> anyhow::Result<[f64; 5]> {
    let cpu0 = t.cpu()?;
    let began = Instant::now();
    while began.elapsed() < window {
        metric_sum(
            &t.processor.metrics().await?,
            "sessionfold_processor_consumer_lag",
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let cpu1 = t.cpu()?;
    let mut per_second = [0.0; 5];
    for (i, v) in per_second.iter_mut().enumerate() {
        *v = cpu1[i].saturating_sub(cpu0[i]) as f64 / seconds;
    }
    Ok(per_second)
}

/// Runs the plan on `brokers` (the broker's process id, when known, for
/// its CPU); `broker` names it in the report.
pub async fn run(
    brokers: &str,
    broker: &str,
    broker_pid: Option<u32>,
    plan: &Plan,
) -> anyhow::Result<SteadyRun> {
    let tag: String = broker.chars().filter(char::is_ascii_alphanumeric).collect();
    let prefix = format!("steady{}-{tag}-{}", std::process::id(), plan.users);
    let topics = Topics::new(&prefix);
    sessionfold_edge::ensure_topics(brokers, &topics, 6, Duration::from_secs(60)).await?;
    let processor_args: Vec<&str> = plan.processor_args.iter().map(String::as_str).collect();
    let ingest = Service::start("sessionfold-producer", brokers, &prefix, &[]).await?;
    let processor =
        Service::start("sessionfold-processor", brokers, &prefix, &processor_args).await?;
    let mut projections = Service::start("sessionfold-projections", brokers, &prefix, &[]).await?;
    projections
        .wait("/readyz", Duration::from_secs(120))
        .await?;
    let empty = (processor.rss()?, projections.rss()?);
    let tiers = Tiers {
        ingest: &ingest,
        processor: &processor,
        projections: &projections,
        broker: broker_pid,
    };
    eprintln!("steady {broker}: the services idle");
    let idle_ns = idle(&tiers, plan.window.min(Duration::from_secs(30))).await?;
    let token = admin_token("bench-gateway")?;
    let url = format!("{}/v1/activity", ingest.url);
    let sent = Arc::new(Sent::default());
    eprintln!(
        "steady {broker}: {} users coming online over {} intervals",
        plan.users,
        load::ARRIVAL_INTERVALS
    );
    let path = Arc::new(std::sync::Mutex::new(Path::Batched));
    let stop = Arc::new(AtomicBool::new(false));
    let generator = tokio::spawn(load::run(
        Load::new(plan.users, plan.interval, plan.seed),
        url,
        token,
        path.clone(),
        sent.clone(),
        stop.clone(),
    ));
    let result = async {
        warm(&tiers, plan.users, Duration::from_secs(600)).await?;
        // Past the processor's resolution, so that what it holds back is as
        // it will stay.
        tokio::time::sleep(Duration::from_secs(70)).await;
        let mut prober = probe::Prober::new(&ingest.url, &projections.url).await?;
        let mut rounds = Vec::new();
        for i in 0..plan.rounds {
            eprintln!("steady {broker}: round {} of {}", i + 1, plan.rounds);
            rounds.push(round(&tiers, &topics.presence, &sent, plan.window, &mut prober).await?);
        }
        let memory = (processor.rss()?, projections.rss()?);
        eprintln!("steady {broker}: one event per request");
        *sessionfold_edge::lock(&path) = Path::Single;
        let single = round(&tiers, &topics.presence, &sent, plan.window, &mut prober).await?;
        anyhow::Ok((rounds, single, memory))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let generated = generator.await;
    let (rounds, single, memory) = result?;
    generated??;
    let per_user = |now: u64, before: u64| now.saturating_sub(before) as f64 / plan.users as f64;
    Ok(SteadyRun::of(
        plan,
        broker,
        idle_ns,
        rounds,
        single,
        (per_user(memory.0, empty.0), per_user(memory.1, empty.1)),
    ))
}
