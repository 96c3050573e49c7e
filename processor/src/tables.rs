//! The two input streams and their folded state, behind one interface for the loop.

use sessionfold_fold::{
    Applied, Authority, Erasures, ImportConfig, ImportTable, Millis, Position, PresenceConfig,
    PresenceTable,
};
use sessionfold_schemas::{Contract, SchemaError};

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

impl Table {
    /// An empty table for a stream.
    pub fn new(stream: Stream, presence: PresenceConfig, imports: ImportConfig) -> Table {
        match stream {
            Stream::Activity => Table::Presence(PresenceTable::new(presence)),
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
        let Input {
            key,
            payload,
            pos,
            authority,
        } = record;
        match self {
            Table::Presence(t) => {
                let e = contract
                    .decode_activity(payload)
                    .map_err(|e| (e.kind(), e.to_string()))?;
                // Checked before the key: a forgotten user's record is not
                // copied to the dead-letter topic either.
                if erasures.forgets(&e.user_id) {
                    return Ok((e.body.kind(), Applied::Forgotten));
                }
                let applied = t
                    .apply(key, &e, pos, now)
                    .map_err(|r| (r.kind(), r.to_string()))?;
                Ok((e.body.kind(), applied))
            }
            Table::Imports(t) => {
                let e = contract
                    .decode_import(payload)
                    .map_err(|e| (e.kind(), e.to_string()))?;
                let applied = t
                    .apply(key, &e, pos, authority)
                    .map_err(|r| (r.kind(), r.to_string()))?;
                Ok((e.body.kind(), applied))
            }
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

    /// (entities, sessions) held, for the state-size gauges.
    pub fn size(&self) -> (usize, usize) {
        match self {
            Table::Presence(t) => (t.len(), t.session_count()),
            Table::Imports(t) => (t.len(), 0),
        }
    }
}
