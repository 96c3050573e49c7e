//! `sessionfold-processor`: folds the event topics into state and changelogs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use sessionfold_edge::{CommonArgs, ServiceCli, parse_duration};
use sessionfold_fold::{ImportConfig, PresenceConfig};
use sessionfold_processor::replay::{ReplaySettings, Source, Start, archive, progress_bar};
use sessionfold_processor::{LoopSettings, Settings, run};

// glibc's malloc took a quarter of the loop thread at 100k users (sled's
// nodes, encoded states and producer records of many sizes, freed on other
// threads); mimalloc's per-thread free lists avoid its consolidation passes.
// Built with `override`, it also serves librdkafka's own allocations, which
// glibc kept in 64 MiB arenas per thread (100-175 MiB at a million users).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `--help` says this binary does.
const ABOUT: &str =
    "Folds activity and import events into per-user state and publishes changelogs.";

type Cli = ServiceCli<Command, RunArgs>;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the live processor (the default).
    Run(RunArgs),
    /// Fold the input topics (or an export file) again into a fresh store, with event time as the clock, and write the as-of views and the reports.
    Replay(ReplayArgs),
    /// Write the input topics into an Avro object container file, for replay or analysis away from the cluster.
    Export(ExportArgs),
}

/// The fold's rules, the same live and in replay (where a different idle
/// timeout can be tried on the past).
#[derive(Debug, Clone, clap::Args)]
struct FoldArgs {
    /// A session with no activity for this long goes inactive.
    #[arg(long, env = "SESSIONFOLD_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A session is forgotten this long after its last activity.
    #[arg(long, env = "SESSIONFOLD_RETENTION", default_value = "24h", value_parser = parse_duration)]
    retention: Duration,
    /// Event ids are remembered this long behind a user's latest activity;
    /// older events are dead-lettered as late rather than risk a double apply.
    #[arg(long, env = "SESSIONFOLD_DEDUP_WINDOW", default_value = "10m", value_parser = parse_duration)]
    dedup_window: Duration,
}

impl FoldArgs {
    fn presence(&self) -> PresenceConfig {
        PresenceConfig {
            idle_timeout: millis(self.idle_timeout),
            retention: millis(self.retention),
            dedup_window: millis(self.dedup_window),
        }
    }

    fn imports(&self) -> ImportConfig {
        ImportConfig {
            retention: millis(self.retention),
            dedup_window: millis(self.dedup_window),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where to start: `earliest` or an RFC 3339 time (by the records' log timestamps).
    #[arg(long, default_value = "earliest", value_parser = parse_start)]
    from: Start,
    /// The file to write: Avro (an object container file) unless its name
    /// ends in `.parquet`, then a Parquet table of the events for DuckDB,
    /// pandas or Spark.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Where to start: `earliest` or an RFC 3339 time.
    #[arg(long, default_value = "earliest", value_parser = parse_start)]
    from: Start,
    /// The as-of time: `now` or an RFC 3339 time; later events are not folded.
    #[arg(long, default_value = "now", value_parser = parse_until)]
    until: i64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Read this export file instead of the broker.
    #[arg(long, value_name = "FILE.avro")]
    input: Option<PathBuf>,
    #[command(flatten)]
    rules: FoldArgs,
    /// Window of the as-of active list and summary.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    window: Duration,
}

fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))
}

fn parse_start(s: &str) -> Result<Start, String> {
    if s == "earliest" {
        Ok(Start::Earliest)
    } else {
        parse_time(s).map(Start::At)
    }
}

fn parse_until(s: &str) -> Result<i64, String> {
    if s == "now" {
        Ok(chrono::Utc::now().timestamp_millis())
    } else {
        parse_time(s)
    }
}

fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    a.common.init()?;
    let source = match a.input.clone() {
        Some(path) => Source::File(path),
        None => Source::Broker {
            brokers: a.common.brokers.clone(),
            topics: a.common.topics(),
        },
    };
    let settings = ReplaySettings {
        source,
        from: a.from,
        until: a.until,
        presence: a.rules.presence(),
        imports: a.rules.imports(),
        window: millis(a.window),
        out: a.out,
        erasures: match (&a.input, read_erasures(&a.common)) {
            (_, Ok(e)) => e,
            // An export file can be replayed away from the broker; say
            // plainly what that leaves out.
            (Some(file), Err(e)) => {
                tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "replaying the file without the broker's list of forgotten users: users forgotten after the export will appear in the output");
                sessionfold_fold::Erasures::new()
            }
            (None, Err(e)) => return Err(e),
        },
    };
    let report = sessionfold_processor::replay::replay(&settings).context("replay failed")?;
    if report.folded == 0 && report.after_until > 0 {
        tracing::warn!(
            "--until {} is before all {} events read; nothing was folded",
            sessionfold_views::view::rfc3339(settings.until),
            report.after_until
        );
    }
    tracing::info!(?report, out = %settings.out.display(), "replay done");
    Ok(())
}

/// The users forgotten so far, from the broker's erasures topic: a replay
/// honours them whether it reads the topics or an older export file.
fn read_erasures(common: &CommonArgs) -> anyhow::Result<sessionfold_fold::Erasures> {
    let topics = common.topics();
    let contract = sessionfold_edge::registry::contract()?;
    let erasures =
        sessionfold_edge::follow::read_erasures(&common.brokers, &topics.erasures, &contract)
            .with_context(|| {
                format!(
                    "reading the users to forget from {} on {}; a replay must leave them out, so it needs the broker",
                    topics.erasures, common.brokers
                )
            })?;
    tracing::info!(forgotten = erasures.len(), "users to leave out");
    Ok(erasures)
}

fn export(a: ExportArgs) -> anyhow::Result<()> {
    a.common.init()?;
    let progress = progress_bar();
    let parquet = a.out.extension().is_some_and(|x| x == "parquet");
    let write = if parquet {
        archive::export_parquet
    } else {
        archive::export
    };
    let report = write(
        &a.common.brokers,
        &a.common.topics(),
        a.from,
        &a.out,
        &progress,
        &read_erasures(&a.common)?,
    )
    .context("export failed")?;
    progress.finish_and_clear();
    tracing::info!(?report, out = %a.out.display(), "export done");
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address of the health and metrics endpoint.
    #[arg(long, env = "SESSIONFOLD_LISTEN", default_value = "127.0.0.1:8082")]
    listen: String,
    /// Directory of the local state store.
    #[arg(
        long,
        env = "SESSIONFOLD_STATE_DIR",
        default_value = ".local/processor"
    )]
    state_dir: PathBuf,
    /// Consumer group shared by all processor instances.
    #[arg(
        long,
        env = "SESSIONFOLD_GROUP_ID",
        default_value = "sessionfold-processor"
    )]
    group_id: String,
    #[command(flatten)]
    rules: FoldArgs,
    /// Interval of the wall-clock expiry tick.
    #[arg(long, env = "SESSIONFOLD_TICK_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    tick_interval: Duration,
    /// Static group membership id (unique per instance, stable across restarts).
    #[arg(long, env = "SESSIONFOLD_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Most records folded in one batch while the input is caught up; while
    /// it lags, the limit doubles batch after batch up to 4 times this, and
    /// on up to 128 times while a batch writes more than 0.1 states per
    /// record but at least a tenth of its records coalesced.
    #[arg(long, env = "SESSIONFOLD_BATCH_MAX", default_value_t = 10_000)]
    batch_max: usize,
    /// Longest a batch folds before it is committed while the input is
    /// caught up; while it lags, as many times this as the batch limit.
    #[arg(long, env = "SESSIONFOLD_BATCH_WAIT", default_value = "50ms", value_parser = parse_duration)]
    batch_wait: Duration,
    /// What to do when the local state of a partition (or the whole store)
    /// cannot be read: move it aside and rebuild it from the changelog, or
    /// stop so that a person can look at it.
    #[arg(long, env = "SESSIONFOLD_ON_DAMAGED_STATE", value_enum, default_value_t = OnDamaged::Rebuild)]
    on_damaged_state: OnDamaged,
    /// The consumer group's session timeout: a member silent this long is
    /// dropped and its partitions move.
    #[arg(long, env = "SESSIONFOLD_SESSION_TIMEOUT", default_value = "6s", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Interval of heartbeats to the group coordinator (a third of the
    /// session timeout or less).
    #[arg(long, env = "SESSIONFOLD_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// An owned partition with records waiting that does not move for this
    /// long is reported stuck (metric, log line, /readyz not ready).
    #[arg(long, env = "SESSIONFOLD_STUCK_AFTER", default_value = "60s", value_parser = parse_duration)]
    stuck_after: Duration,
    /// Whether the watchdog for partitions without an owner asks the
    /// coordinator to describe the group, or goes by this member's own
    /// assignment only (for tansu 0.6.0 on its sqlite store, whose storage
    /// fails on a group description).
    #[arg(long, env = "SESSIONFOLD_DESCRIBE_GROUP", default_value_t = true, action = clap::ArgAction::Set)]
    describe_group: bool,
    /// Threads that fold a batch's partitions side by side; 0 for one per
    /// core. Each partition's records are folded in order by one thread.
    #[arg(long, env = "SESSIONFOLD_FOLD_THREADS", default_value_t = 0)]
    fold_threads: usize,
    /// Fewest records in a batch for which the fold uses more than one
    /// thread: starting a thread costs tens of microseconds, folding a
    /// record about one.
    #[arg(long, env = "SESSIONFOLD_FOLD_PARALLEL_FROM", default_value_t = 2_000)]
    fold_parallel_from: usize,
    /// MiB of the local store's page cache. The state is held in memory
    /// anyway; a larger cache speeds up the store's writes once the encoded
    /// states of the owned partitions outgrow it (many users per
    /// partition), where the processor has a core to spare for sled.
    #[arg(long, env = "SESSIONFOLD_STORE_CACHE_MIB", default_value_t = sessionfold_processor::store::CACHE_BYTES >> 20)]
    store_cache_mib: u64,
}

/// The answer to a damaged local store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnDamaged {
    /// Rebuild from the changelog, log it and count it.
    Rebuild,
    /// Stop with an error.
    Stop,
}

use sessionfold_edge::millis;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_as("sessionfold-processor", ABOUT);
    let args = match cli.command {
        Some(Command::Replay(a)) => return replay(a),
        Some(Command::Export(a)) => return export(a),
        Some(Command::Run(a)) => a,
        None => cli.default,
    };
    args.common.init()?;
    let settings = Settings {
        looping: LoopSettings {
            brokers: args.common.brokers.clone(),
            topics: args.common.topics(),
            group_id: args.group_id,
            presence: args.rules.presence(),
            imports: args.rules.imports(),
            tick: args.tick_interval,
            batch_max: args.batch_max,
            instance_id: args.instance_id,
            batch_wait: args.batch_wait,
            rebuild_damaged: args.on_damaged_state == OnDamaged::Rebuild,
            session_timeout: args.session_timeout,
            heartbeat_interval: args.heartbeat_interval,
            stuck_after: args.stuck_after,
            describe_group: args.describe_group,
            fold_threads: match args.fold_threads {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
            fold_parallel_from: args.fold_parallel_from,
        },
        state_dir: args.state_dir,
        partitions: args.common.partitions,
        store_cache: args.store_cache_mib.saturating_mul(1024 * 1024),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    run(listener, settings, sessionfold_edge::shutdown_signal())
        .await
        .context("processor stopped")
}
