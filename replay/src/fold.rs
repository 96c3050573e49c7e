//! The replay's fold: every partition's records in offset order through the
//! live processor's per-record step, with the history the reports need.

use std::collections::BTreeMap;

use sessionfold_fold::{
    Applied, Authority, Erasures, ImportTable, Millis, Position, PresenceTable,
};
use sessionfold_processor::tables::{Event, Part, Stream, Table, outcome_name};
use sessionfold_report::History;
use sessionfold_report::events::EventsWriter;
use sessionfold_schemas::{ImportBody, ImportEvent};

use crate::{ReplayReport, ReplaySettings};

/// One input record, ready to fold.
pub(crate) struct Input<'a> {
    pub(crate) stream: Stream,
    pub(crate) key: Option<&'a str>,
    /// `None` when it did not decode or was a tombstone: refused as live would.
    pub(crate) event: Option<Event>,
    pub(crate) pos: Position,
    pub(crate) authority: Authority,
    /// The key belongs on another partition: live moves it there, and the
    /// copy it writes is what replay folds.
    pub(crate) misplaced: bool,
}

/// Progress of one input partition, for the store's resume offset.
#[derive(Default)]
pub(crate) struct Read {
    pub(crate) next_offset: i64,
    pub(crate) skipped_after_until: bool,
}

/// The folded state of every partition of both streams.
#[derive(Default)]
pub(crate) struct Folded {
    pub(crate) tables: BTreeMap<Part, Table>,
    clock: BTreeMap<Part, Millis>,
    pub(crate) read: BTreeMap<Part, Read>,
    pub(crate) history: History,
    /// `events.parquet`: every event folded, with what the fold made of it.
    pub(crate) events: Option<EventsWriter<std::io::BufWriter<std::fs::File>>>,
    /// The first failure writing it; the replay fails with it at the end.
    pub(crate) events_error: Option<String>,
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
    pub(crate) fn fold(
        &mut self,
        s: &ReplaySettings,
        record: Input<'_>,
        report: &mut ReplayReport,
    ) {
        let Input {
            stream,
            key,
            event,
            pos,
            authority,
            misplaced,
        } = record;
        let part = (stream, pos.partition);
        report.records += 1;
        let read = self.read.entry(part).or_default();
        read.next_offset = pos.offset + 1;
        if misplaced {
            report.misplaced += 1;
            return;
        }
        let Some(event) = event else {
            report.refused += 1;
            return;
        };
        if event.occurred_at() > s.until {
            read.skipped_after_until = true;
            report.after_until += 1;
            return;
        }
        let clock = self.clock.entry(part).or_insert(Millis::MIN);
        *clock = (*clock).max(event.occurred_at());
        let table = self
            .tables
            .entry(part)
            .or_insert_with(|| Table::new(stream, s.presence, s.imports));
        table.tick(*clock);
        let applied = table.apply_event(key, &event, pos, *clock, authority, &s.erasures);
        if let (Event::Activity(_), Ok(Applied::Forgotten)) = (&event, &applied) {
            report.forgotten += 1;
            return;
        }
        if applied == Ok(Applied::Changed) {
            match (&event, &mut *table) {
                (Event::Activity(e), _) => self.history.activity(e),
                (Event::Import(e), Table::Imports(t)) => {
                    self.history.import(e);
                    for id in t.forget_users_in(vec![e.import_id.clone()], &s.erasures) {
                        self.history.forget_import(&id);
                    }
                }
                (Event::Import(_), Table::Presence(_)) => {}
            }
        }
        let origin = sessionfold_report::events::Origin {
            partition: pos.partition,
            offset: pos.offset,
            outcome: Some(applied.as_ref().map_or("refused", |a| outcome_name(*a))),
        };
        let written = match (self.events.as_mut(), &event) {
            (Some(w), Event::Activity(e)) => w.activity(e, origin),
            (Some(w), Event::Import(e)) => w.import(&redacted(e, &s.erasures), origin),
            (None, _) => Ok(()),
        };
        if let Err(err) = written {
            self.events_error.get_or_insert(err.to_string());
        }
        if applied.is_ok() {
            report.folded += 1;
        } else {
            report.refused += 1;
        }
    }

    /// Expires and purges what is due at `until`.
    pub(crate) fn finish(&mut self, until: Millis) {
        for t in self.tables.values_mut() {
            t.tick(until);
        }
    }

    /// The presence tables, by partition.
    pub(crate) fn presence(&self) -> impl Iterator<Item = (i32, &PresenceTable)> {
        self.tables.iter().filter_map(|((_, p), t)| match t {
            Table::Presence(t) => Some((*p, t)),
            Table::Imports(_) => None,
        })
    }

    /// The import tables, by partition.
    pub(crate) fn imports(&self) -> impl Iterator<Item = (i32, &ImportTable)> {
        self.tables.iter().filter_map(|((_, p), t)| match t {
            Table::Imports(t) => Some((*p, t)),
            Table::Presence(_) => None,
        })
    }
}
