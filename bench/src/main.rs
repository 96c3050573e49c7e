//! `sessionfold-bench`: the benchmark suite.
//!
//! Feeds one seeded event history to sessionfold and to the designs it
//! replaces (PostgreSQL rows, Redis sorted sets) and to a do-nothing Kafka
//! consumer, measures every figure of the performance issue in one run, and
//! writes `BENCHMARKS.md` and `bench-results.json`. Every comparison is a
//! ratio within the run, because the machines are shared and noisy.
//! `scripts/bench` installs and starts what it needs and then calls this.

// The same allocator as the processor, so that fold + sled measures its path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baselines;
mod failover;
mod history;
mod live;
mod pipeline;
mod report;
mod restart;
mod sections;
mod services;
mod steady;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sessionfold_schemas::Topics;

/// Measures sessionfold side by side with PostgreSQL, Redis and the broker's ceiling.
#[derive(Debug, Parser)]
#[command(name = "sessionfold-bench", version)]
pub struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "SESSIONFOLD_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// A second broker, Apache Kafka: the ceiling and the processor are
    /// measured on it too, for a column of their own.
    #[arg(long, env = "SESSIONFOLD_BENCH_KAFKA")]
    kafka_brokers: Option<String>,
    /// PostgreSQL connection string; the PostgreSQL baseline is skipped without it.
    #[arg(long, env = "SESSIONFOLD_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Redis URL; the Redis baseline is skipped without it.
    #[arg(long, env = "SESSIONFOLD_BENCH_REDIS")]
    redis: Option<String>,
    /// Events in the history.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Users in the history.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Numbers of tracked sessions at which query latency and memory are measured.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// Requests per latency measurement.
    #[arg(long, default_value_t = 1000)]
    reads: usize,
    /// Heartbeats timed for freshness.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Background load during the freshness probes, events per second.
    #[arg(long, default_value_t = 2000.0)]
    background_rate: f64,
    /// Seed of the history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Where to write the machine-readable results.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Classpath of the Kafka Streams peer (`bench/streams/`, built by
    /// scripts/bench); measured on the Apache Kafka broker when given.
    #[arg(long, env = "SESSIONFOLD_BENCH_STREAMS_CLASSPATH")]
    streams_classpath: Option<String>,
    /// The activity schema the peer reads records with.
    #[arg(long, default_value = "schemas/activity.avsc")]
    activity_schema: PathBuf,
    /// Run one stage of fold + sled and exit (for callgrind; see
    /// `instructions_per_event`).
    #[arg(long, hide = true)]
    stage: Option<String>,
    /// Events in the history callgrind counts instructions over.
    #[arg(long, default_value_t = 20_000)]
    instruction_events: usize,
    /// Run only these parts (fold, pipeline, replay, postgres, redis, ingest,
    /// freshness, sizes); all when empty. Handy under `perf record`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run only the steady-state bench, at these numbers of online users
    /// (on `--brokers` and, when given, `--kafka-brokers`, alternated).
    #[arg(long, value_delimiter = ',')]
    steady: Vec<usize>,
    /// Each online user's heartbeat interval in the steady-state bench.
    #[arg(long, default_value = "30s", value_parser = sessionfold_edge::parse_duration)]
    steady_interval: Duration,
    /// Length of one measured round of the steady-state bench.
    #[arg(long, default_value = "60s", value_parser = sessionfold_edge::parse_duration)]
    steady_window: Duration,
    /// Measured rounds of the steady-state bench.
    #[arg(long, default_value_t = 3)]
    steady_rounds: usize,
    /// Extra processor flags for the steady-state bench, space-separated.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    steady_processor_args: String,
    /// Run only the projections restart bench, with this many users (on
    /// `--kafka-brokers`, else `--brokers`).
    #[arg(long)]
    restart: Option<usize>,
    /// Rounds of the restart bench (each one start from the snapshot and
    /// one full read).
    #[arg(long, default_value_t = 5)]
    restart_rounds: usize,
    /// Changes per user in the restart bench's changelog (a session start,
    /// then new pages).
    #[arg(long, default_value_t = 5)]
    restart_updates: usize,
    /// Run only the failover bench, with this many users (on
    /// `--kafka-brokers`, else `--brokers`).
    #[arg(long)]
    failover: Option<usize>,
    /// Kills of the failover bench, with standbys and as many without.
    #[arg(long, default_value_t = 10)]
    failover_kills: usize,
    /// Process id of the `--brokers` broker, for its CPU.
    #[arg(long, env = "SESSIONFOLD_BENCH_BROKER_PID")]
    broker_pid: Option<u32>,
    /// Process id of the `--kafka-brokers` broker, for its CPU.
    #[arg(long, env = "SESSIONFOLD_BENCH_KAFKA_PID")]
    kafka_pid: Option<u32>,
    /// The command line to print in the report.
    #[arg(
        long,
        env = "SESSIONFOLD_BENCH_COMMAND",
        default_value = "scripts/bench"
    )]
    command: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(users) = args.restart {
        return run_restart(&args, users).await;
    }
    if let Some(users) = args.failover {
        let brokers = args.kafka_brokers.as_deref().unwrap_or(&args.brokers);
        let run = failover::run(brokers, users, args.failover_kills).await?;
        let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        return own_run(
            &args,
            "failover",
            &run.markdown(&args.command, &date),
            "failover",
            run.keys(),
        );
    }
    if !args.steady.is_empty() {
        return run_steady(&args).await;
    }
    let mut r = report::Results::new(&args);
    let now = chrono::Utc::now().timestamp_millis();
    if let Some(stage) = &args.stage {
        let events = history::generate(args.seed, args.users, args.events, now);
        return pipeline::run_stage(&events, stage);
    }
    let events = history::generate(args.seed, args.users, args.events, now);
    let n = events.len();
    eprintln!("history: {n} events of {} users", args.users);
    let runs = |part: &str| args.only.is_empty() || args.only.iter().any(|o| o == part);

    if runs("fold") {
        eprintln!("fold + sled on one core");
        let history = events.clone();
        r.fold =
            Some(tokio::task::spawn_blocking(move || pipeline::fold_and_sled(&history)).await??);
        eprintln!("instructions per event (callgrind)");
        // The same shape as the history: as many events per user.
        let n = args.instruction_events.min(args.events);
        let users = (args.users * n / args.events.max(1)).max(1);
        let seed = args.seed;
        r.instructions =
            tokio::task::spawn_blocking(move || pipeline::instructions_per_event(n, users, seed))
                .await??;
    }
    if !args.only.is_empty() && !["pipeline", "replay"].iter().any(|p| runs(p)) {
        return run_services(&args, r, &events, now).await;
    }

    let prefix = format!("bench{}", std::process::id());
    let topics = Topics::new(&prefix);
    sessionfold_edge::ensure_topics(&args.brokers, &topics, 6, Duration::from_secs(60)).await?;
    eprintln!("producing the history to {}", topics.activity);
    let (brokers, t, history) = (args.brokers.clone(), topics.clone(), events.clone());
    r.produce = Some(
        tokio::task::spawn_blocking(move || pipeline::produce(&brokers, &t, &history)).await??,
    );
    eprintln!("do-nothing consumer");
    let (brokers, topic) = (args.brokers.clone(), topics.activity.clone());
    let drain = tokio::task::spawn_blocking(move || pipeline::drain(&brokers, &topic, n)).await??;
    r.drain = Some(drain.events_per_sec);
    r.drain_cpu = Some(drain);
    if runs("pipeline") {
        eprintln!("processor end to end");
        let (run, entities) = pipeline::processor(&args.brokers, &prefix, n).await?;
        r.processor = Some(run.events_per_sec);
        r.processor_store = Some(run);
        eprintln!("state restore after a rebalance ({entities} entities)");
        r.restore = Some(pipeline::restore(&args.brokers, &prefix, entities).await?);
    }
    if let Some(kafka) = args.kafka_brokers.as_ref().filter(|_| runs("pipeline")) {
        eprintln!("the same on Apache Kafka ({kafka})");
        let prefix = format!("bench{}-kafka", std::process::id());
        let topics = Topics::new(&prefix);
        sessionfold_edge::ensure_topics(kafka, &topics, 6, Duration::from_secs(60)).await?;
        let (b, t, history) = (kafka.clone(), topics.clone(), events.clone());
        let produce =
            tokio::task::spawn_blocking(move || pipeline::produce(&b, &t, &history)).await??;
        let (b, topic) = (kafka.clone(), topics.activity.clone());
        let drain = tokio::task::spawn_blocking(move || pipeline::drain(&b, &topic, n)).await??;
        let (run, _) = pipeline::processor(kafka, &prefix, n).await?;
        let streams = match &args.streams_classpath {
            Some(cp) => {
                eprintln!("the Kafka Streams peer on the same history");
                Some(
                    pipeline::streams_peer(kafka, &topics.activity, n, cp, &args.activity_schema)
                        .await?,
                )
            }
            None => None,
        };
        r.on_kafka = Some(report::BrokerRates {
            produce,
            drain: drain.events_per_sec,
            drain_cpu: drain,
            processor: run.events_per_sec,
            store: run,
            streams,
        });
    }
    if !runs("replay") {
        return run_services(&args, r, &events, now).await;
    }
    eprintln!("replay and export");
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("replay").to_string_lossy().into_owned();
    let file = dir
        .path()
        .join("history.avro")
        .to_string_lossy()
        .into_owned();
    let common = [
        "--brokers",
        args.brokers.as_str(),
        "--topic-prefix",
        prefix.as_str(),
    ];
    let replay_secs = live::timed_command(&[&["replay"][..], &common, &["--out", &out]].concat())?;
    let export_secs = live::timed_command(&[&["export"][..], &common, &["--out", &file]].concat())?;
    // The broker is named so that the replay reads the erasures from it, as
    // a replay of a file does when it can.
    let file_secs =
        live::timed_command(&[&["replay", "--input", &file, "--out", &out][..], &common].concat())?;
    r.replay = Some(report::Replay {
        from_broker: n as f64 / replay_secs,
        export: n as f64 / export_secs,
        from_file: n as f64 / file_secs,
    });

    run_services(&args, r, &events, now).await
}

/// The baselines and the figures of running services.
async fn run_services(
    args: &Args,
    mut r: report::Results,
    events: &[sessionfold_schemas::ActivityEvent],
    now: i64,
) -> anyhow::Result<()> {
    let runs = |part: &str| args.only.is_empty() || args.only.iter().any(|o| o == part);
    let n = events.len();
    let prefix = format!("bench{}-live", std::process::id());
    if let Some(pg) = args.postgres.as_ref().filter(|_| runs("postgres")) {
        eprintln!("PostgreSQL baseline");
        r.postgres = Some(baselines::postgres(pg, events, args.reads).await?);
    }
    if let Some(url) = args.redis.as_ref().filter(|_| runs("redis")) {
        eprintln!("Redis baseline");
        r.redis = Some(baselines::redis(url, events, args.reads, now).await?);
    }

    if runs("ingest") {
        eprintln!("HTTP ingest");
        let ingest_prefix = format!("{prefix}-ingest");
        sessionfold_edge::ensure_topics(
            &args.brokers,
            &Topics::new(&ingest_prefix),
            6,
            Duration::from_secs(60),
        )
        .await?;
        let producer =
            services::Service::start("sessionfold-producer", &args.brokers, &ingest_prefix, &[])
                .await?;
        let sample = &events[..n.min(100_000)];
        r.ingest_batched = Some(live::ingest(&producer, sample, 100, 16).await?);
        r.ingest_single =
            Some(live::ingest(&producer, &sample[..sample.len().min(20_000)], 1, 64).await?);
        drop(producer);
    }

    if runs("freshness") {
        eprintln!("freshness under {} events/s", args.background_rate);
        r.freshness = Some(
            live::freshness(
                &args.brokers,
                &format!("{prefix}-fresh"),
                &events[..n.min(50_000)],
                args.background_rate,
                args.probes,
            )
            .await?,
        );
    }

    // On Apache Kafka when there is one: under a million records of
    // catch-up tansu 0.6.0 evicts the group's member without telling it, and
    // the rejoin and restore that follow would be measured as memory.
    let (size_brokers, sizes_broker) = match &args.kafka_brokers {
        Some(k) => (k.as_str(), "Apache Kafka (`--kafka-brokers`)"),
        None => (args.brokers.as_str(), "the `--brokers` broker"),
    };
    r.sizes_broker = sizes_broker;
    for size in args.sizes.iter().filter(|_| runs("sizes")) {
        eprintln!("query latency and memory at {size} sessions");
        let at = live::at_size(
            size_brokers,
            &format!("{prefix}-s{size}"),
            *size,
            args.reads,
            now,
        )
        .await?;
        r.sizes.push(at);
    }

    r.write(args)?;
    eprintln!(
        "wrote {} and {}",
        args.markdown.display(),
        args.json.display()
    );
    Ok(())
}

/// The steady-state bench alone; its section and keys replace the ones in
/// the report files, and the rest of them stays.
async fn run_steady(args: &Args) -> anyhow::Result<()> {
    let mut brokers = vec![(
        args.brokers.as_str(),
        "tansu (memory store)",
        args.broker_pid,
    )];
    if let Some(k) = &args.kafka_brokers {
        brokers.push((k.as_str(), "Apache Kafka", args.kafka_pid));
    }
    let mut runs = Vec::new();
    for (i, users) in args.steady.iter().enumerate() {
        let plan = steady::Plan {
            users: *users,
            interval: args.steady_interval,
            window: args.steady_window,
            rounds: args.steady_rounds,
            processor_args: args
                .steady_processor_args
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            seed: args.seed,
        };
        // Alternated: the broker that went first goes second next time.
        let mut order = brokers.clone();
        if i % 2 == 1 {
            order.reverse();
        }
        for (b, name, pid) in order {
            runs.push(steady::run(b, name, pid, &plan).await?);
        }
    }
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let section = steady::report::section(&runs, &args.command, &date);
    let markdown = std::fs::read_to_string(&args.markdown).unwrap_or_default();
    std::fs::write(
        &args.markdown,
        sections::splice(&markdown, "steady", &section),
    )?;
    let mut json: serde_json::Value = std::fs::read_to_string(&args.json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    steady::report::into_json(&mut json, &runs);
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)? + "\n")?;
    eprintln!(
        "wrote {} and {}",
        args.markdown.display(),
        args.json.display()
    );
    Ok(())
}

/// The projections restart bench alone.
async fn run_restart(args: &Args, users: usize) -> anyhow::Result<()> {
    let brokers = args.kafka_brokers.as_deref().unwrap_or(&args.brokers);
    let run = restart::run(brokers, users, args.restart_updates, args.restart_rounds).await?;
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    own_run(
        args,
        "restart",
        &run.markdown(&args.command, &date),
        "projections",
        run.keys(),
    )
}

/// A run of its own: its section and key replace the ones in the report
/// files, and the rest of them stays.
fn own_run(
    args: &Args,
    section: &str,
    markdown_section: &str,
    key: &str,
    keys: serde_json::Value,
) -> anyhow::Result<()> {
    let markdown = std::fs::read_to_string(&args.markdown).unwrap_or_default();
    std::fs::write(
        &args.markdown,
        sections::splice(&markdown, section, markdown_section),
    )?;
    let mut json: serde_json::Value = std::fs::read_to_string(&args.json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    json[key] = keys;
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)? + "\n")?;
    eprintln!(
        "wrote {} and {}",
        args.markdown.display(),
        args.json.display()
    );
    Ok(())
}
