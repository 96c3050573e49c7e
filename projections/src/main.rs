//! `sessionfold-projections`: live HTTP views over the changelog topics.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sessionfold_kafka::{CommonArgs, parse_duration};
use sessionfold_projections::{Settings, run};

/// Serves who is online and who owns which import, from the changelogs.
#[derive(Debug, Parser)]
#[command(
    name = "sessionfold-projections",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the views (the default).
    Serve(ServeArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// HTTP address to listen on.
    #[arg(long, env = "SESSIONFOLD_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    /// Sessions idle this long are not online (match the processor's).
    #[arg(long, env = "SESSIONFOLD_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    idle_timeout: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let a = match cli.command {
        Some(Command::Serve(a)) => a,
        None => cli.serve,
    };
    sessionfold_kafka::init_logging(a.common.log_format);
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let settings = Settings {
        brokers: a.common.brokers.clone(),
        topics: a.common.topics(),
        partitions: a.common.partitions,
        idle_timeout: i64::try_from(a.idle_timeout.as_millis()).unwrap_or(i64::MAX),
    };
    run(listener, settings, sessionfold_kafka::shutdown_signal())
        .await
        .context("projections stopped")
}
