//! Replay and export, for analysts: the input topics (or an export file)
//! folded again from the start or a point in time up to an end time, with
//! event time as the only clock, by the live processor's own per-record step.
//!
//! Partitions are assigned directly (no consumer group), so the live group
//! and its offsets are untouched; an export file can stand in for the broker.
//! Each partition is folded in offset order; expiry and purge are driven by
//! the event times seen, and a last tick at `until` gives the as-of state.
//! The views are written with the projections' own JSON shapes, the state
//! into a fresh store, and every accepted event into the history the reports
//! are computed from. This crate, not the live processor, links the reports,
//! the views and the chart renderer.

pub mod archive;
mod error;
mod fold;
mod output;
mod progress;
pub mod source;

use std::path::PathBuf;

use sessionfold_fold::{Authority, Erasures, ImportConfig, Millis, Position, PresenceConfig};
use sessionfold_processor::tables::{Event, Stream, home_elsewhere};
use sessionfold_report::Rules;
use sessionfold_report::events::EventsWriter;
use sessionfold_schemas::{Contract, Topics};

pub use error::ReplayError;
use fold::{Folded, Input};
pub use progress::progress_bar;

/// Where a replay starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every record still in the topics.
    Earliest,
    /// The first records written at or after this time (ms since the epoch).
    At(Millis),
}

/// Where the history comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The input topics on a broker.
    Broker {
        /// Bootstrap servers.
        brokers: String,
        /// Topic names.
        topics: Topics,
    },
    /// An export file written by [`archive::export`].
    File(PathBuf),
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// The history.
    pub source: Source,
    /// Where to start.
    pub from: Start,
    /// The as-of time: events that occurred later are not folded.
    pub until: Millis,
    /// Presence rules (try a different idle timeout on the past here).
    pub presence: PresenceConfig,
    /// Import rules.
    pub imports: ImportConfig,
    /// Window of the as-of active list and summary.
    pub window: Millis,
    /// Output directory.
    pub out: PathBuf,
    /// The users forgotten: their activity is left out, the rule applied to
    /// their imports.
    pub erasures: Erasures,
}

/// What a replay read and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records read.
    pub records: u64,
    /// Events folded (duplicates included: they are applied as no-ops).
    pub folded: u64,
    /// Records refused (undecodable, late, lifecycle), as live would dead-letter them.
    pub refused: u64,
    /// Events that occurred after `until`.
    pub after_until: u64,
    /// Activity events of forgotten users, left out.
    pub forgotten: u64,
    /// Records on a partition other than their key's, left out: live
    /// writes a copy to the key's partition, and that copy is folded.
    pub misplaced: u64,
}

/// Decodes a record's value as its topic's event; `None` for what live
/// would refuse (a tombstone, a value that does not decode).
pub(crate) fn decode(contract: &Contract, stream: Stream, payload: Option<&[u8]>) -> Option<Event> {
    payload.and_then(|p| Event::decode(contract, stream, p).ok())
}

/// Whether a record keyed `key` on `partition` of a topic of `partitions`
/// sits where Kafka's default partitioner would not put it.
pub(crate) fn misplaced(key: Option<&str>, partition: i32, partitions: i32) -> bool {
    key.is_some_and(|k| home_elsewhere(k, partition, partitions).is_some())
}

/// Reads the history from `s.from` to its end, folds it, and writes the
/// as-of views, the state store and the reports into `s.out`.
pub fn replay(s: &ReplaySettings) -> Result<ReplayReport, ReplayError> {
    let contract = sessionfold_edge::registry::contract()?;
    let progress = progress_bar();
    let mut folded = Folded::default();
    let mut report = ReplayReport::default();
    std::fs::create_dir_all(&s.out)
        .map_err(|e| ReplayError::Replay(format!("creating {}: {e}", s.out.display())))?;
    let events_path = s.out.join("events.parquet");
    let events_file = std::fs::File::create(&events_path)
        .map_err(|e| ReplayError::Replay(format!("creating {}: {e}", events_path.display())))?;
    folded.events = Some(EventsWriter::new(std::io::BufWriter::new(events_file)));
    match &s.source {
        Source::Broker { brokers, topics } => {
            source::read_topics(brokers, topics, s.from, &progress, |raw| {
                let input = Input {
                    stream: raw.stream,
                    key: raw.key,
                    event: decode(&contract, raw.stream, raw.payload),
                    pos: Position {
                        partition: raw.partition,
                        offset: raw.offset,
                    },
                    authority: Authority::from_role(raw.actor_role),
                    misplaced: misplaced(raw.key, raw.partition, raw.partitions),
                };
                folded.fold(s, input, &mut report);
                Ok(())
            })?;
        }
        Source::File(path) => {
            archive::read_file(path, s.from, &progress, |input| {
                folded.fold(s, input, &mut report);
            })?;
        }
    }
    progress.finish_and_clear();
    folded.finish(s.until);
    if let Some(w) = folded.events.take() {
        w.finish()?;
    }
    if let Some(e) = folded.events_error.take() {
        return Err(ReplayError::Replay(format!("writing events.parquet: {e}")));
    }
    output::write_views(&folded, s)?;
    output::write_store(&folded, &contract, &s.out.join("state"))?;
    // The tables by owner name the owner the fold's state ends with.
    let owners: Vec<(String, Option<String>)> = folded
        .imports()
        .flat_map(|(_, t)| t.imports())
        .map(|i| (i.import_id.clone(), i.owner_id.clone()))
        .collect();
    for (id, owner) in &owners {
        folded.history.set_owner(id, owner.as_deref());
    }
    folded.history.forget_owners(|u| s.erasures.forgets(u));
    let figures = folded.history.report(Rules {
        idle_timeout: s.presence.idle_timeout,
        until: s.until,
    });
    let files = sessionfold_report::files(&figures)?
        .into_iter()
        .chain(sessionfold_report::parquet_files(&figures)?);
    for file in files {
        std::fs::write(s.out.join(file.name), file.bytes)
            .map_err(|e| ReplayError::Replay(format!("writing {}: {e}", file.name)))?;
    }
    Ok(report)
}
