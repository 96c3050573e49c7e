//! The two input streams and their folded state, behind one interface for the loop.

use sessionfold_fold::{
    Applied, Authority, Erasures, ImportConfig, ImportTable, Millis, Position, PresenceConfig,
    PresenceTable,
};
use sessionfold_schemas::{ActivityEvent, Contract, ImportEvent, SchemaError};

pub use sessionfold_schemas::Stream;

/// One owned input partition.
pub type Part = (Stream, i32);

/// Name of the sled tree holding one partition's state.
pub fn tree(stream: Stream, partition: i32) -> String {
    match stream {
        Stream::Activity => format!("presence/{partition}"),
        Stream::Imports => format!("imports/{partition}"),
    }
}

/// The folded state of one owned partition.
pub enum Table {
    /// Presence of the users on an activity partition.
    Presence(PresenceTable),
    /// Imports on an imports partition.
    Imports(ImportTable),
}

/// One input record as the fold needs it.
pub struct Input<'a> {
    /// The record key, when UTF-8.
    pub key: Option<&'a str>,
    /// The record value.
    pub payload: &'a [u8],
    /// Where it was read.
    pub pos: Position,
    /// What the record's headers vouch for its import actor.
    pub authority: Authority,
}

/// Why a record was not applied: the dead-letter kind and message.
pub type Refusal = (&'static str, String);

/// An input record's event, decoded: the one form live and replay fold.
#[derive(Debug, Clone)]
pub enum Event {
    /// From the activity topic.
    Activity(ActivityEvent),
    /// From the imports topic.
    Import(ImportEvent),
}

impl Event {
    /// Decodes a record's value as its stream's event.
    pub fn decode(contract: &Contract, stream: Stream, payload: &[u8]) -> Result<Event, Refusal> {
        let refusal = |e: SchemaError| (e.kind(), e.to_string());
        match stream {
            Stream::Activity => contract
                .decode_activity(payload)
                .map(Event::Activity)
                .map_err(refusal),
            Stream::Imports => contract
                .decode_import(payload)
                .map(Event::Import)
                .map_err(refusal),
        }
    }

    /// The event's kind, as the metrics and the dead letters name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Activity(e) => e.body.kind(),
            Event::Import(e) => e.body.kind(),
        }
    }

    /// When the event says it happened.
    pub fn occurred_at(&self) -> Millis {
        match self {
            Event::Activity(e) => e.occurred_at,
            Event::Import(e) => e.occurred_at,
        }
    }
}

/// The partition a record keyed `key` belongs on, when it is not the one of
/// `partitions` it was read from: Kafka's default partitioner decides, and
/// a record elsewhere is folded only where it belongs.
pub fn home_elsewhere(key: &str, partition: i32, partitions: i32) -> Option<i32> {
    if partitions <= 0 {
        return None;
    }
    let home = sessionfold_schemas::partition::partition_for(key.as_bytes(), partitions);
    (home != partition).then_some(home)
}

/// What the fold made of an event, as the metrics and the events table say it.
pub fn outcome_name(applied: Applied) -> &'static str {
    match applied {
        Applied::Changed => "applied",
        Applied::Duplicate => "duplicate",
        Applied::AlreadyApplied => "already_applied",
        Applied::Forgotten => "forgotten",
    }
}

impl Table {
    /// An empty table for a stream, folding exactly: every change is
    /// published at once.
    pub fn new(stream: Stream, presence: PresenceConfig, imports: ImportConfig) -> Table {
        Table::coalescing(stream, presence, imports, 0)
    }

    /// An empty table for a stream that holds back a presence change that
    /// only refreshes last activity for up to `resolution`.
    pub fn coalescing(
        stream: Stream,
        presence: PresenceConfig,
        imports: ImportConfig,
        resolution: Millis,
    ) -> Table {
        match stream {
            Stream::Activity => {
                Table::Presence(PresenceTable::new(presence).coalescing(resolution))
            }
            Stream::Imports => Table::Imports(ImportTable::new(imports)),
        }
    }

    /// Puts back a stored or restored state.
    pub fn restore(&mut self, contract: &Contract, bytes: &[u8]) -> Result<(), SchemaError> {
        match self {
            Table::Presence(t) => t.restore(contract.decode_presence(bytes)?),
            Table::Imports(t) => t.restore(contract.decode_import_state(bytes)?),
        }
        Ok(())
    }

    /// Checks that `bytes` is a state of this stream for entity `key`.
    pub fn check(
        stream: Stream,
        contract: &Contract,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), String> {
        let id = match stream {
            Stream::Activity => contract
                .decode_presence(bytes)
                .map_err(|e| e.to_string())?
                .user_id
                .into_string(),
            Stream::Imports => {
                contract
                    .decode_import_state(bytes)
                    .map_err(|e| e.to_string())?
                    .import_id
            }
        };
        if id != key {
            return Err(format!("state of {id:?} under key {key:?}"));
        }
        Ok(())
    }

    /// Decodes and applies one record; returns the event kind and what happened.
    pub fn apply(
        &mut self,
        contract: &Contract,
        record: Input<'_>,
        now: Millis,
        erasures: &Erasures,
    ) -> Result<(&'static str, Applied), Refusal> {
        let stream = match self {
            Table::Presence(_) => Stream::Activity,
            Table::Imports(_) => Stream::Imports,
        };
        let event = Event::decode(contract, stream, record.payload)?;
        let applied = self.apply_event(
            record.key,
            &event,
            record.pos,
            now,
            record.authority,
            erasures,
        )?;
        Ok((event.kind(), applied))
    }

    /// Applies one decoded event, live or in replay: a forgotten user's
    /// activity is left out before anything else (not even dead-lettered),
    /// the rest goes to the stream's fold.
    pub fn apply_event(
        &mut self,
        key: Option<&str>,
        event: &Event,
        pos: Position,
        now: Millis,
        authority: Authority,
        erasures: &Erasures,
    ) -> Result<Applied, Refusal> {
        let refusal = |r: sessionfold_fold::Rejected| (r.kind(), r.to_string());
        match (self, event) {
            (Table::Presence(_), Event::Activity(e)) if erasures.forgets(&e.user_id) => {
                Ok(Applied::Forgotten)
            }
            (Table::Presence(t), Event::Activity(e)) => t.apply(key, e, pos, now).map_err(refusal),
            (Table::Imports(t), Event::Import(e)) => {
                t.apply(key, e, pos, authority).map_err(refusal)
            }
            (_, e) => Err((
                "wrong_stream",
                format!("a {} event on the other stream's partition", e.kind()),
            )),
        }
    }

    /// Expires and purges what is due; returns how many entities changed.
    pub fn tick(&mut self, now: Millis) -> usize {
        match self {
            Table::Presence(t) => t.tick(now),
            Table::Imports(t) => t.tick(now),
        }
    }

    /// Applies the erasures known from the `from`-th on (all of them to
    /// imports, whose rule looks at every forgotten user); returns how many
    /// users' presence or imports were deleted.
    pub fn forget(&mut self, erasures: &Erasures, from: usize) -> usize {
        if erasures.len() <= from {
            return 0;
        }
        match self {
            Table::Presence(t) => erasures
                .since(from)
                .filter(|e| t.forget(&e.user_id))
                .count(),
            Table::Imports(t) => t.forget_users(erasures).len(),
        }
    }

    /// Ids changed since the last call, sorted; the erasures are applied to
    /// them first, so no change gives a forgotten user an import back.
    pub fn take_dirty(&mut self, erasures: &Erasures) -> Vec<String> {
        match self {
            Table::Presence(t) => t.take_dirty(),
            Table::Imports(t) => {
                t.forget_users_in_changed(erasures);
                t.take_dirty()
            }
        }
    }

    /// An entity's encoded state and the input offset it reflects; `None` when deleted.
    pub fn encoded(
        &self,
        contract: &Contract,
        id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>, SchemaError> {
        match self {
            Table::Presence(t) => t
                .get(id)
                .map(|s| Ok((contract.encode_presence(s)?, s.source_offset)))
                .transpose(),
            Table::Imports(t) => t
                .get(id)
                .map(|s| Ok((contract.encode_import_state(s)?, s.source_offset)))
                .transpose(),
        }
    }

    /// The input offset of the first event whose effect is held back (call
    /// after [`Table::take_dirty`]): a restart reads from there.
    pub fn held_from(&mut self) -> Option<i64> {
        match self {
            Table::Presence(t) => t.held_from(),
            Table::Imports(_) => None,
        }
    }

    /// Lists every held-back change for publishing; returns how many.
    pub fn publish_all_held(&mut self) -> usize {
        match self {
            Table::Presence(t) => t.publish_all_held(),
            Table::Imports(_) => 0,
        }
    }

    /// (entities, sessions) held, for the state-size gauges.
    pub fn size(&self) -> (usize, usize) {
        match self {
            Table::Presence(t) => (t.len(), t.session_count()),
            Table::Imports(t) => (t.len(), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use sessionfold_schemas::{ActivityBody, Interaction, OwnedImports, UserErased};

    use super::*;

    fn heartbeat(user: &str) -> Event {
        Event::Activity(ActivityEvent {
            event_id: format!("{user}-1"),
            occurred_at: 1_000,
            user_id: user.into(),
            session_id: "s".into(),
            body: ActivityBody::Heartbeat {
                page: None,
                activity: Interaction::Timer,
            },
            received_at: None,
        })
    }

    fn presence() -> Table {
        Table::new(
            Stream::Activity,
            PresenceConfig::default(),
            ImportConfig::default(),
        )
    }

    const AT: Position = Position {
        partition: 0,
        offset: 7,
    };

    #[test]
    fn a_forgotten_users_activity_is_left_out_before_the_fold_looks_at_it() {
        let mut erasures = Erasures::new();
        erasures.insert(UserErased {
            user_id: "gone".into(),
            erased_at: 0,
            requested_by: "admin".into(),
            imports: OwnedImports::Delete,
        });
        let mut t = presence();
        // Under another user's key the fold would refuse it; the erasure
        // rule answers first, so nothing about a forgotten user reaches a
        // dead letter.
        let applied = t.apply_event(
            Some("someone-else"),
            &heartbeat("gone"),
            AT,
            1_000,
            Authority::Actor,
            &erasures,
        );
        assert_eq!(applied, Ok(Applied::Forgotten));
        assert_eq!(t.size(), (0, 0));
    }

    #[test]
    fn an_event_of_the_other_stream_is_refused_not_folded() {
        let mut t = Table::new(
            Stream::Imports,
            PresenceConfig::default(),
            ImportConfig::default(),
        );
        let refused = t.apply_event(
            Some("u"),
            &heartbeat("u"),
            AT,
            1_000,
            Authority::Actor,
            &Erasures::new(),
        );
        assert_eq!(refused.map_err(|(kind, _)| kind), Err("wrong_stream"));
    }

    #[test]
    fn a_key_is_home_only_on_its_partitioners_partition() {
        let n = 6;
        let home = sessionfold_schemas::partition::partition_for(b"user-42", n);
        assert_eq!(home_elsewhere("user-42", home, n), None);
        assert_eq!(home_elsewhere("user-42", (home + 1) % n, n), Some(home));
        // A topic whose partition count is unknown moves nothing.
        assert_eq!(home_elsewhere("user-42", (home + 1) % n, 0), None);
    }
}
