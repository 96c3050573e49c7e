//! `sessionfold-replay`: the input topics, or an export file, folded again
//! for analysts; and the export of the topics to a file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sessionfold_edge::{CommonArgs, millis, parse_duration};
use sessionfold_processor::rules::FoldArgs;
use sessionfold_replay::{ReplaySettings, Source, Start, archive, progress_bar};

/// What `--help` says this binary does.
const ABOUT: &str = "Folds the input topics (or an export file) again into a fresh store, with event time as the clock, and writes the as-of views and the reports; or exports the topics to a file.";

/// `sessionfold-replay replay …` or `sessionfold-replay export …`.
#[derive(Debug, Parser)]
#[command(name = "sessionfold-replay", version, about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fold the history again and write the as-of views and the reports.
    Replay(ReplayArgs),
    /// Write the input topics into an Avro object container file (or a Parquet table), for replay or analysis away from the cluster.
    Export(ExportArgs),
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
    let report = sessionfold_replay::replay(&settings).context("replay failed")?;
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
    let erasures = read_erasures(&a.common)?;
    let topics = a.common.topics();
    let from = archive::ExportFrom {
        brokers: &a.common.brokers,
        topics: &topics,
        from: a.from,
        path: &a.out,
        erasures: &erasures,
    };
    let report = write(from, &progress).context("export failed")?;
    progress.finish_and_clear();
    tracing::info!(?report, out = %a.out.display(), "export done");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Export(a) => export(a),
        Command::Replay(a) => replay(a),
    }
}
