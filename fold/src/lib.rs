//! The pure fold of sessionfold.
//!
//! Decoded events and the current time go in; new per-entity state and the
//! list of entities that changed come out. There is no Kafka, no disk and no
//! clock in here: the processor feeds it live with the wall clock, replay feeds
//! it with event time, and the property tests feed it shuffled histories. The
//! same input in the same order gives the same state, byte for byte.

mod deadlines;
mod dedup;
mod erasure;
mod imports;
mod keyed;
mod presence;
mod refresh;

pub use dedup::event_hash;
pub use erasure::Erasures;
pub use imports::{Authority, ImportConfig, ImportTable};
pub use keyed::{Keyed, KeyedTable};
pub use presence::{PresenceConfig, PresenceTable, refresh_session, session_status};
pub use sessionfold_schemas::Millis;

use thiserror::Error;

/// Where an input record sits in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Input partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The event id was applied before; nothing changed.
    Duplicate,
    /// This input position is already reflected in the state (a re-read after
    /// a restart or restore); nothing changed.
    AlreadyApplied,
    /// The event's user was forgotten: it is left out.
    Forgotten,
}

/// Why an event was refused; the state is unchanged and the record belongs on
/// the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejected {
    /// The record's key is not the entity the event names, so it sits on the
    /// wrong partition.
    #[error("record key {key:?} does not match {field} {value:?}")]
    KeyMismatch {
        /// The Kafka key.
        key: String,
        /// Field the key must equal.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The import's lifecycle does not allow this event now.
    #[error("import {import_id}: {reason}")]
    Lifecycle {
        /// The import.
        import_id: String,
        /// Which rule the event broke.
        reason: String,
    },
    /// The actor may not act on this import: it is not the owner, and
    /// nothing vouched for an admin, `IMPORT_ADMIN` or a service.
    #[error("import {import_id}: {reason}")]
    NotOwner {
        /// The import.
        import_id: String,
        /// Who tried what.
        reason: String,
    },
    /// Older than the deduplication window allows to apply exactly once.
    #[error(
        "late event: occurred {late_by_ms} ms before the deduplication horizon of {entity} (window {window_ms} ms)"
    )]
    Late {
        /// Entity id.
        entity: String,
        /// How far before the horizon it occurred.
        late_by_ms: i64,
        /// The configured window.
        window_ms: i64,
    },
}

impl Rejected {
    /// A short stable name for dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejected::KeyMismatch { .. } => "key_mismatch",
            Rejected::Late { .. } => "late",
            Rejected::Lifecycle { .. } => "lifecycle",
            Rejected::NotOwner { .. } => "not_owner",
        }
    }
}
