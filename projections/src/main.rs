//! `sessionfold-projections`: live HTTP views over the changelog topics.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use sessionfold_edge::{CommonArgs, ServiceCli, parse_duration};
use sessionfold_projections::freshness::StaleReads;
use sessionfold_projections::{Settings, run};

/// What `--help` says this binary does.
const ABOUT: &str = "Serves who is online and who owns which import, from the changelogs.";

type Cli = ServiceCli<Command, ServeArgs>;

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the views (the default).
    Serve(Box<ServeArgs>),
    /// Print an HS256 token signed with the configured secret (for local runs and tools).
    Token(TokenArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct TokenArgs {
    /// HS256 secret that signs the token.
    #[arg(long, env = "SESSIONFOLD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// The user id (`sub`).
    #[arg(long)]
    sub: String,
    /// A role, such as admin or service; repeat for more.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A permission, such as USER_VIEW_ACTIVE_SESSIONS or IMPORT_ADMIN; repeat for more.
    #[arg(long = "permission")]
    permissions: Vec<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    ttl: Duration,
}

fn print_token(a: TokenArgs) -> anyhow::Result<()> {
    let claims = sessionfold_auth::Claims::expiring_in(a.sub, a.roles, a.permissions, a.ttl);
    println!(
        "{}",
        sessionfold_auth::mint_hs256(a.jwt_secret.as_bytes(), &claims)?
    );
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    auth: sessionfold_auth::AuthArgs,
    /// HTTP address to listen on.
    #[arg(long, env = "SESSIONFOLD_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    /// Sessions idle this long are not online. Unset, the processor's own,
    /// as its presence changelog names it (5m until then); set, it must be
    /// the processor's, or the service stops with an error.
    #[arg(long, env = "SESSIONFOLD_IDLE_TIMEOUT", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// An in-progress import not accessed for this long is shown as stale.
    #[arg(long, env = "SESSIONFOLD_STALE_AFTER", default_value = "24h", value_parser = parse_duration)]
    stale_after: Duration,
    /// Changes kept for stream clients resuming with Last-Event-ID; a live
    /// client further behind than this is sent a resync.
    #[arg(long, env = "SESSIONFOLD_STREAM_BUFFER", default_value_t = 10_000)]
    stream_buffer: usize,
    /// Staler than this (the views missing changes the broker held this
    /// long ago), the service is not ready.
    #[arg(long, env = "SESSIONFOLD_MAX_STALENESS", default_value = "10s", value_parser = parse_duration)]
    max_staleness: Duration,
    /// While staler than --max-staleness: `serve` answers with the staleness
    /// in the headers, `refuse` answers 503 with Retry-After.
    #[arg(
        long,
        env = "SESSIONFOLD_STALE_READS",
        value_enum,
        default_value = "serve"
    )]
    stale_reads: StaleReads,
    /// Where the views' snapshot is kept: a restart reads only the
    /// changelogs' tail after it.
    #[arg(
        long,
        env = "SESSIONFOLD_SNAPSHOT_DIR",
        default_value = ".local/projections"
    )]
    snapshot_dir: std::path::PathBuf,
    /// How often the snapshot is written while the views are caught up
    /// (and once more on stop).
    #[arg(long, env = "SESSIONFOLD_SNAPSHOT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    snapshot_interval: Duration,
    /// Keep no snapshot: every start reads the changelogs from the beginning.
    #[arg(long, env = "SESSIONFOLD_NO_SNAPSHOT")]
    no_snapshot: bool,
}

use sessionfold_edge::millis;

/// The processor's default, taken until its changelog says otherwise.
const DEFAULT_IDLE_TIMEOUT: sessionfold_schemas::Millis = 5 * 60_000;

// At a million users mimalloc holds the views in less memory than glibc's
// malloc, whose per-thread arenas keep freed chunks apart.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_as("sessionfold-projections", ABOUT);
    let a = match cli.command {
        Some(Command::Token(t)) => return print_token(t),
        Some(Command::Serve(a)) => *a,
        None => cli.default,
    };
    a.common.init()?;
    let auth = sessionfold_auth::Authenticator::from_args(&a.auth)?;
    sessionfold_edge::jwks::keep_fresh(&auth, &a.auth).await;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let settings = Settings {
        brokers: a.common.brokers.clone(),
        topics: a.common.topics(),
        partitions: a.common.partitions,
        idle_timeout: a.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, millis),
        idle_timeout_set: a.idle_timeout.is_some(),
        stale_after: millis(a.stale_after),
        auth,
        stream_buffer: a.stream_buffer,
        max_staleness: millis(a.max_staleness),
        stale_reads: a.stale_reads,
        snapshot_dir: (!a.no_snapshot).then_some(a.snapshot_dir),
        snapshot_interval: a.snapshot_interval.max(Duration::from_secs(1)),
    };
    run(listener, settings, sessionfold_edge::shutdown_signal())
        .await
        .context("projections stopped")
}
