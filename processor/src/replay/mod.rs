//! Replay: the input topics folded again, from the start or a point in time
//! up to an end time, with event time as the only clock.
//!
//! Partitions are assigned directly (no consumer group), so the live group
//! and its offsets are untouched; an export file can stand in for the broker.
//! Each partition is folded in offset order with the same fold code as the
//! live processor; expiry and purge are driven by the event times seen, and a
//! last tick at `until` gives the as-of state. The views are written with the
//! projections' own JSON shapes, the state into a fresh store, and every
//! accepted event into the history the reports are computed from.

pub mod archive;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sessionfold_fold::{
    Applied, Authority, Erasures, ImportConfig, ImportTable, Millis, Position, PresenceConfig,
    PresenceTable,
};
use sessionfold_report::events::EventsWriter;
use sessionfold_report::{History, Rules};
use sessionfold_schemas::{ActivityEvent, Contract, ImportBody, ImportEvent, Topics};
use sessionfold_views::imports::ImportView;
use sessionfold_views::view::{PresenceView, rfc3339};

use crate::error::ProcessorError;
use crate::store::{PartitionWrite, Store};
use crate::tables::{Stream, tree};

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

/// A record's event, decoded and validated.
pub(crate) enum Decoded {
    Activity(ActivityEvent),
    Import(ImportEvent),
    /// Did not decode, or was a tombstone: refused as live would.
    Refused,
}

/// Decodes a record's value as its topic's event.
pub(crate) fn decode(contract: &Contract, stream: Stream, payload: Option<&[u8]>) -> Decoded {
    let Some(payload) = payload else {
        return Decoded::Refused;
    };
    match stream {
        Stream::Activity => contract
            .decode_activity(payload)
            .map_or(Decoded::Refused, Decoded::Activity),
        Stream::Imports => contract
            .decode_import(payload)
            .map_or(Decoded::Refused, Decoded::Import),
    }
}

/// One input record, ready to fold.
pub(crate) struct Input<'a> {
    stream: Stream,
    key: Option<&'a str>,
    event: Decoded,
    pos: Position,
    authority: Authority,
    /// The key belongs on another partition: live moves it there, and the
    /// copy it writes is what replay folds.
    misplaced: bool,
}

/// Whether a record keyed `key` on `partition` of a topic of `partitions`
/// sits where Kafka's default partitioner would not put it.
pub(crate) fn misplaced(key: Option<&str>, partition: i32, partitions: i32) -> bool {
    key.is_some_and(|k| {
        partitions > 0
            && sessionfold_schemas::partition::partition_for(k.as_bytes(), partitions) != partition
    })
}

/// Progress of one input partition, for the store's resume offset.
#[derive(Default)]
struct Read {
    next_offset: i64,
    skipped_after_until: bool,
}

/// The folded state of every partition of both streams.
#[derive(Default)]
pub struct Folded {
    presence: BTreeMap<i32, PresenceTable>,
    imports: BTreeMap<i32, ImportTable>,
    clock: BTreeMap<(Stream, i32), Millis>,
    read: BTreeMap<(Stream, i32), Read>,
    history: History,
    /// `events.parquet`: every event folded, with what the fold made of it.
    events: Option<EventsWriter<std::io::BufWriter<std::fs::File>>>,
    /// The first failure writing it; the replay fails with it at the end.
    events_error: Option<String>,
}

/// What the fold made of an event, as the events table says it.
fn outcome_name(r: &Result<Applied, sessionfold_fold::Rejected>) -> &'static str {
    match r {
        Ok(Applied::Changed) => "applied",
        Ok(Applied::Duplicate) => "duplicate",
        Ok(Applied::AlreadyApplied) => "already_applied",
        Ok(Applied::Forgotten) => "forgotten",
        Err(_) => "refused",
    }
}

/// An import event with the forgotten users it names taken out: an output
/// file never names a user who asked to be forgotten.
pub(crate) fn redacted(e: &ImportEvent, erasures: &Erasures) -> ImportEvent {
    let mut e = e.clone();
    if e.actor_id.as_deref().is_some_and(|u| erasures.forgets(u)) {
        e.actor_id = None;
    }
    match &mut e.body {
        ImportBody::Started { owner_id, .. }
            if owner_id.as_deref().is_some_and(|u| erasures.forgets(u)) =>
        {
            *owner_id = None;
        }
        ImportBody::Transferred { new_owner_id } if erasures.forgets(new_owner_id) => {
            new_owner_id.clear();
        }
        _ => {}
    }
    e
}

impl Folded {
    /// Folds one input record, counting it in `report`.
    fn fold(&mut self, s: &ReplaySettings, record: Input<'_>, report: &mut ReplayReport) {
        let Input {
            stream,
            key,
            event,
            pos,
            authority,
            misplaced,
        } = record;
        report.records += 1;
        let read = self.read.entry((stream, pos.partition)).or_default();
        read.next_offset = pos.offset + 1;
        if misplaced {
            report.misplaced += 1;
            return;
        }
        let occurred_at = match &event {
            Decoded::Activity(e) => e.occurred_at,
            Decoded::Import(e) => e.occurred_at,
            Decoded::Refused => {
                report.refused += 1;
                return;
            }
        };
        if occurred_at > s.until {
            read.skipped_after_until = true;
            report.after_until += 1;
            return;
        }
        let clock = self
            .clock
            .entry((stream, pos.partition))
            .or_insert(Millis::MIN);
        *clock = (*clock).max(occurred_at);
        let origin = |outcome| sessionfold_report::events::Origin {
            partition: pos.partition,
            offset: pos.offset,
            outcome: Some(outcome),
        };
        let outcome = match event {
            Decoded::Activity(e) if s.erasures.forgets(&e.user_id) => {
                report.forgotten += 1;
                return;
            }
            Decoded::Activity(e) => {
                let t = self
                    .presence
                    .entry(pos.partition)
                    .or_insert_with(|| PresenceTable::new(s.presence));
                t.tick(*clock);
                let applied = t.apply(key, &e, pos, *clock);
                if applied == Ok(Applied::Changed) {
                    self.history.activity(&e);
                }
                if let Some(w) = self.events.as_mut()
                    && let Err(err) = w.activity(&e, origin(outcome_name(&applied)))
                {
                    self.events_error.get_or_insert(err.to_string());
                }
                applied
            }
            Decoded::Import(e) => {
                let t = self
                    .imports
                    .entry(pos.partition)
                    .or_insert_with(|| ImportTable::new(s.imports));
                t.tick(*clock);
                let applied = t.apply(key, &e, pos, authority);
                if applied == Ok(Applied::Changed) {
                    self.history.import(&e);
                    for id in t.forget_users_in(vec![e.import_id.clone()], &s.erasures) {
                        self.history.forget_import(&id);
                    }
                }
                if let Some(w) = self.events.as_mut()
                    && let Err(err) =
                        w.import(&redacted(&e, &s.erasures), origin(outcome_name(&applied)))
                {
                    self.events_error.get_or_insert(err.to_string());
                }
                applied
            }
            Decoded::Refused => return,
        };
        if outcome.is_ok() {
            report.folded += 1;
        } else {
            report.refused += 1;
        }
    }

    /// Expires and purges what is due at `until`.
    fn finish(&mut self, until: Millis) {
        for t in self.presence.values_mut() {
            t.tick(until);
        }
        for t in self.imports.values_mut() {
            t.tick(until);
        }
    }
}

/// Sets the bar's length once the amount of input is known.
pub(crate) fn progress_length(progress: &ProgressBar, total: u64) {
    progress.set_length(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {human_pos}/{human_len} records  {per_sec}  {eta} left",
    ) {
        progress.set_style(style);
    }
}

/// A progress bar on standard error; indicatif draws nothing when that is
/// not a terminal, so logs and CI output stay clean.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {human_pos} records  {per_sec}") {
        bar.set_style(style);
    }
    bar
}

/// Reads the history from `s.from` to its end, folds it, and writes the
/// as-of views, the state store and the reports into `s.out`.
pub fn replay(s: &ReplaySettings) -> Result<ReplayReport, ProcessorError> {
    let contract = sessionfold_edge::registry::contract()?;
    let progress = progress_bar();
    let mut folded = Folded::default();
    let mut report = ReplayReport::default();
    std::fs::create_dir_all(&s.out)
        .map_err(|e| ProcessorError::Replay(format!("creating {}: {e}", s.out.display())))?;
    let events_path = s.out.join("events.parquet");
    let events_file = std::fs::File::create(&events_path)
        .map_err(|e| ProcessorError::Replay(format!("creating {}: {e}", events_path.display())))?;
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
        return Err(ProcessorError::Replay(format!(
            "writing events.parquet: {e}"
        )));
    }
    write_views(&folded, s)?;
    write_store(&folded, &contract, &s.out.join("state"))?;
    // The tables by owner name the owner the fold's state ends with.
    let owners: Vec<(String, Option<String>)> = folded
        .imports
        .values()
        .flat_map(|t| t.imports())
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
            .map_err(|e| ProcessorError::Replay(format!("writing {}: {e}", file.name)))?;
    }
    Ok(report)
}

/// Writes the as-of state into a fresh store with the live processor's
/// layout. A partition's resume offset is set only when nothing on it was
/// left out for being after `until`, so a processor started on this store
/// never skips an event.
fn write_store(f: &Folded, contract: &Contract, dir: &Path) -> Result<(), ProcessorError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| ProcessorError::Replay(format!("clearing {}: {e}", dir.display())))?;
    }
    let store = Store::open(dir)?;
    let offset = |stream: Stream, p: i32| {
        f.read
            .get(&(stream, p))
            .filter(|r| !r.skipped_after_until)
            .map(|r| r.next_offset)
    };
    for (p, t) in &f.presence {
        let mut entities = Vec::with_capacity(t.len());
        for u in t.users() {
            entities.push((u.user_id.to_string(), Some(contract.encode_presence(u)?)));
        }
        let write = PartitionWrite {
            entities,
            next_offset: offset(Stream::Activity, *p),
        };
        store.replace(&tree(Stream::Activity, *p), write)?;
    }
    for (p, t) in &f.imports {
        let mut entities = Vec::with_capacity(t.len());
        for i in t.imports() {
            entities.push((i.import_id.clone(), Some(contract.encode_import_state(i)?)));
        }
        let write = PartitionWrite {
            entities,
            next_offset: offset(Stream::Imports, *p),
        };
        store.replace(&tree(Stream::Imports, *p), write)?;
    }
    store.flush()
}

fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<(), ProcessorError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ProcessorError::Replay(format!("{name}: {e}")))?;
    std::fs::write(dir.join(name), text + "\n")
        .map_err(|e| ProcessorError::Replay(format!("writing {name}: {e}")))
}

/// Writes the as-of views, in the projections' shapes, into `s.out`.
fn write_views(f: &Folded, s: &ReplaySettings) -> Result<(), ProcessorError> {
    let mut presence = PresenceView::new(s.presence.idle_timeout);
    let mut ids = Vec::new();
    for t in f.presence.values() {
        for u in t.users() {
            ids.push(u.user_id.clone());
            presence.apply(&u.user_id, Some(u.clone()));
        }
    }
    ids.sort();
    let users: Vec<_> = ids
        .iter()
        .filter_map(|id| presence.user(id, s.until))
        .collect();
    write_json(
        &s.out,
        "presence-users.json",
        &serde_json::json!({ "as_of": rfc3339(s.until), "users": users }),
    )?;
    write_json(
        &s.out,
        "presence-active.json",
        &presence.active(s.until, s.window, usize::MAX, None),
    )?;
    write_json(
        &s.out,
        "presence-summary.json",
        &presence.summary(s.until, s.window),
    )?;
    // Stale is a read-time property; a replay uses the default rule.
    let mut imports = ImportView::new(24 * 3_600_000);
    for t in f.imports.values() {
        for i in t.imports() {
            imports.apply(&i.import_id, Some(i.clone()));
        }
    }
    write_json(
        &s.out,
        "imports.json",
        &serde_json::json!({ "as_of": rfc3339(s.until), "imports": imports.all(s.until) }),
    )
}
