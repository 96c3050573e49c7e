//! `sessionfold-processor`: folds the event topics into state and changelogs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use sessionfold_edge::{CommonArgs, ServiceCli, millis, parse_duration};
use sessionfold_processor::rules::FoldArgs;
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

/// The activity resolution when the idle timeout allows it, in ms.
const DEFAULT_ACTIVITY_RESOLUTION: i64 = 60_000;

/// The binary that replays and exports, installed beside this one.
const REPLAY_BIN: &str = "sessionfold-replay";

type Cli = ServiceCli<Command, RunArgs>;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the live processor (the default).
    Run(Box<RunArgs>),
    /// Fold the input topics (or an export file) again into a fresh store, with event time as the clock, and write the as-of views and the reports (runs sessionfold-replay; `replay --help` for its flags).
    #[command(disable_help_flag = true)]
    Replay {
        /// sessionfold-replay's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Write the input topics into an Avro object container file (or a Parquet table), for replay or analysis away from the cluster (runs sessionfold-replay; `export --help` for its flags).
    #[command(disable_help_flag = true)]
    Export {
        /// sessionfold-replay's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Hands `replay` and `export` to sessionfold-replay: the live binary does
/// not carry the reports, the charts and the Parquet writer it needs.
fn delegate(command: &str, args: Vec<OsString>) -> anyhow::Result<()> {
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(REPLAY_BIN))
        .filter(|p| p.exists());
    let program = beside.unwrap_or_else(|| PathBuf::from(REPLAY_BIN));
    let mut child = std::process::Command::new(&program);
    child.arg(command).args(args);
    let started = || {
        format!(
            "starting {} for `{command}`: replay and export are a binary of their own, \
             {REPLAY_BIN}, looked for beside this one and on PATH",
            program.display()
        )
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        Err(child.exec()).with_context(started)
    }
    #[cfg(not(unix))]
    {
        let status = child.status().with_context(started)?;
        std::process::exit(status.code().unwrap_or(1));
    }
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
    /// Longest a heartbeat that only moves an active session's last
    /// activity is held back before its state is stored and published: the
    /// views' "last active" may be this far behind, while going online or
    /// offline, pages, rooms and session ends are published at once. Must
    /// be shorter than the idle timeout and the dedup window; 0 publishes
    /// every change. Default: 60 s, or a fifth of the idle timeout when
    /// that is less.
    #[arg(long, env = "SESSIONFOLD_ACTIVITY_RESOLUTION", value_parser = parse_duration)]
    activity_resolution: Option<Duration>,
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
    /// Warm standby copies: with 1 or more, this instance keeps a copy of
    /// every partition it does not own current in its local store by
    /// tailing the changelogs, so that a partition it takes on after its
    /// owner is gone needs only the changelog's tail. The group's assignor
    /// cannot be told where the copies are, so an instance with standbys
    /// keeps every partition it does not own: with K instances, each
    /// partition has K - 1 copies, whatever the number (0: none).
    #[arg(long, env = "SESSIONFOLD_STANDBY_REPLICAS", default_value_t = 0)]
    standby_replicas: u32,
    /// Longest the warm copies of an instance that owns no partition may be
    /// behind their changelogs for /readyz to say ready.
    #[arg(long, env = "SESSIONFOLD_STANDBY_READY_WITHIN", default_value = "10s", value_parser = parse_duration)]
    standby_ready_within: Duration,
}

/// The answer to a damaged local store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnDamaged {
    /// Rebuild from the changelog, log it and count it.
    Rebuild,
    /// Stop with an error.
    Stop,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_as("sessionfold-processor", ABOUT);
    let args = match cli.command {
        Some(Command::Replay { args }) => return delegate("replay", args),
        Some(Command::Export { args }) => return delegate("export", args),
        Some(Command::Run(a)) => *a,
        None => cli.default,
    };
    args.common.init()?;
    let presence = args.rules.presence();
    let activity_resolution = args.activity_resolution.map_or(
        DEFAULT_ACTIVITY_RESOLUTION
            .min(presence.idle_timeout / 5)
            .min(presence.dedup_window / 5),
        millis,
    );
    anyhow::ensure!(
        activity_resolution < presence.idle_timeout && activity_resolution < presence.dedup_window,
        "--activity-resolution ({} ms) must be shorter than --idle-timeout ({} ms) and --dedup-window ({} ms)",
        activity_resolution,
        presence.idle_timeout,
        presence.dedup_window
    );
    let settings = Settings {
        looping: LoopSettings {
            brokers: args.common.brokers.clone(),
            topics: args.common.topics(),
            group_id: args.group_id,
            presence,
            imports: args.rules.imports(),
            activity_resolution,
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
            standby: args.standby_replicas > 0,
            standby_ready_within: args.standby_ready_within,
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
