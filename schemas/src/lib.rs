//! The event contract of sessionfold.
//!
//! Everything that crosses a Kafka topic is defined here: the Avro schemas
//! (`schemas/*.avsc`, the public contract, with every published version under
//! `schemas/history/`), the Rust types of the input events and of the folded
//! state on the changelog topics, and the Avro single-object codec that reads a
//! record written with any known schema version. No I/O happens here.

/// Defines an Avro enum as a Rust enum with its symbols in schema order.
macro_rules! symbols {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $sym:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = $sym] $variant),+
        }

        impl $name {
            /// Every symbol, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The Avro symbol.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $sym),+ }
            }

            /// Position in the schema's symbol list.
            pub fn index(self) -> usize {
                Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
            }

            /// The value for a symbol, if it is one.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($sym => Some($name::$variant),)+ _ => None }
            }

            #[allow(dead_code)]
            pub(crate) fn to_value(self) -> apache_avro::types::Value {
                $crate::avro::symbol(self.index(), self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod activity;
mod avro;
mod binary;
pub mod canonical;
mod codec;
mod direct;
mod erasure;
mod error;
pub mod headers;
mod import;
pub mod partition;
mod state;
mod topics;

pub use activity::{
    ActivityBody, ActivityEvent, EndReason, Interaction, MAX_ID_LEN, MAX_TEXT_LEN, SessionStarted,
    check_id,
};
pub use codec::{
    HEADER_LEN, MAGIC, REGISTRY_HEADER_LEN, REGISTRY_MAGIC, SchemaIds, SchemaSet, fingerprint,
    header_fingerprint, legacy_fingerprint, registry_id, to_registry_format,
};
pub use erasure::{OwnedImports, UserErased};
pub use error::SchemaError;
pub use import::{ImportBody, ImportEvent};
pub use state::{EndedReason, ImportState, ImportStatus, SeenEvent, SessionState, UserPresence};
pub use topics::{Stream, Topics};

/// Milliseconds since the Unix epoch, UTC: the one time type of the pipeline.
pub type Millis = i64;

/// A time as RFC 3339 UTC with milliseconds, as every JSON shape and report
/// of sessionfold writes it; empty for a time chrono cannot represent.
pub fn rfc3339(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Text of the current activity schema.
pub const ACTIVITY_AVSC: &str = include_str!("../activity.avsc");
/// Text of the current import schema.
pub const IMPORT_AVSC: &str = include_str!("../import.avsc");
/// Text of the presence state schema.
pub const PRESENCE_AVSC: &str = include_str!("../presence.avsc");
/// Text of the import state schema.
pub const IMPORT_STATE_AVSC: &str = include_str!("../import_state.avsc");
/// The erasure record schema.
pub const ERASURE_AVSC: &str = include_str!("../erasure.avsc");
/// Every published activity schema version, oldest first.
pub const ACTIVITY_HISTORY: &[&str] = &[
    include_str!("../history/activity.v1.avsc"),
    include_str!("../history/activity.v2.avsc"),
];
/// Every published import schema version, oldest first.
pub const IMPORT_HISTORY: &[&str] = &[include_str!("../history/import.v1.avsc")];

/// Most items or bytes a single Avro length prefix may claim when decoding.
pub const MAX_DECODE_ALLOCATION: usize = 2 * 1024 * 1024;

/// The codecs of all four record types, parsed once.
#[derive(Clone)]
pub struct Contract {
    /// Activity events.
    pub activity: SchemaSet,
    /// Import events.
    pub import: SchemaSet,
    /// Presence state.
    pub presence: SchemaSet,
    /// Import state.
    pub import_state: SchemaSet,
    /// Erasure records.
    pub erasure: SchemaSet,
    /// Resolves the schema ids of records in the Schema Registry wire format.
    ids: Option<std::sync::Arc<dyn SchemaIds>>,
    /// Fingerprints of the schemas compiled into this build, whose records
    /// the direct decoder reads.
    built: Built,
}

/// The writer fingerprints the direct decoder reads.
#[derive(Debug, Clone, Copy)]
struct Built {
    activity: u64,
    import: u64,
    presence: u64,
    import_state: u64,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("activity", &self.activity)
            .field("import", &self.import)
            .field("registry", &self.ids.is_some())
            .finish_non_exhaustive()
    }
}

impl Contract {
    /// Parses the schemas compiled into this build.
    pub fn load() -> Result<Contract, SchemaError> {
        // apache-avro reserves room for as many items as an array's count
        // claims, before reading one: a 50-byte record claiming half a
        // billion items would ask for gigabytes. No value of these schemas
        // comes near this bound (the largest is a copied record's bytes, and
        // Kafka's default record limit is 1 MiB); it caps what one record
        // can make the process reserve. Set once per process.
        let _ = apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
        let activity = SchemaSet::new("ActivityEvent", ACTIVITY_AVSC, ACTIVITY_HISTORY)?;
        let import = SchemaSet::new("ImportEvent", IMPORT_AVSC, IMPORT_HISTORY)?;
        let presence = SchemaSet::new("UserPresence", PRESENCE_AVSC, &[])?;
        let import_state = SchemaSet::new("ImportState", IMPORT_STATE_AVSC, &[])?;
        let erasure = SchemaSet::new("UserErased", ERASURE_AVSC, &[])?;
        let built = Built {
            activity: activity.fingerprint(),
            import: import.fingerprint(),
            presence: presence.fingerprint(),
            import_state: import_state.fingerprint(),
        };
        Ok(Contract {
            activity,
            import,
            presence,
            import_state,
            erasure,
            ids: None,
            built,
        })
    }

    /// The same contract, also reading records in the Schema Registry wire
    /// format, their schema ids resolved by `ids`.
    pub fn with_registry(mut self, ids: std::sync::Arc<dyn SchemaIds>) -> Contract {
        self.ids = Some(ids);
        self
    }

    fn ids(&self) -> Option<&dyn SchemaIds> {
        self.ids.as_deref()
    }

    /// Encodes an activity event.
    pub fn encode_activity(&self, e: &ActivityEvent) -> Result<Vec<u8>, SchemaError> {
        self.activity.encode(e.to_value())
    }

    /// Decodes and validates an activity event: directly when written with
    /// the current schema, by schema resolution when written with an older one.
    pub fn decode_activity(&self, bytes: &[u8]) -> Result<ActivityEvent, SchemaError> {
        let (fp, body) = self.activity.written_with(bytes, self.ids())?;
        let e = if fp == self.built.activity {
            direct::activity(body)?
        } else {
            self.decode_activity_resolving(bytes)?
        };
        e.validate()?;
        Ok(e)
    }

    /// Decodes an activity event of any known version through apache-avro's
    /// schema resolution, without validation: the general path, kept for
    /// older writers and as the reference the direct decoder is tested against.
    pub fn decode_activity_resolving(&self, bytes: &[u8]) -> Result<ActivityEvent, SchemaError> {
        ActivityEvent::from_value(self.activity.decode(bytes, self.ids())?)
    }

    /// Encodes an import event.
    pub fn encode_import(&self, e: &ImportEvent) -> Result<Vec<u8>, SchemaError> {
        self.import.encode(e.to_value())
    }

    /// Decodes and validates an import event (directly when written with the
    /// current schema).
    pub fn decode_import(&self, bytes: &[u8]) -> Result<ImportEvent, SchemaError> {
        let (fp, body) = self.import.written_with(bytes, self.ids())?;
        let e = if fp == self.built.import {
            direct::import(body)?
        } else {
            self.decode_import_resolving(bytes)?
        };
        e.validate()?;
        Ok(e)
    }

    /// Decodes an import event through schema resolution, without validation.
    pub fn decode_import_resolving(&self, bytes: &[u8]) -> Result<ImportEvent, SchemaError> {
        ImportEvent::from_value(self.import.decode(bytes, self.ids())?)
    }

    /// Encodes a presence state (with the direct encoder; see `binary.rs`).
    pub fn encode_presence(&self, s: &UserPresence) -> Result<Vec<u8>, SchemaError> {
        Ok(self.presence.frame(|buf| binary::presence(buf, s)))
    }

    /// Decodes a presence state (directly when written with the current schema).
    pub fn decode_presence(&self, bytes: &[u8]) -> Result<UserPresence, SchemaError> {
        match self.presence.written_with(bytes, self.ids())? {
            (fp, body) if fp == self.built.presence => direct::presence(body),
            _ => self.decode_presence_resolving(bytes),
        }
    }

    /// Decodes a presence state through schema resolution.
    pub fn decode_presence_resolving(&self, bytes: &[u8]) -> Result<UserPresence, SchemaError> {
        UserPresence::from_value(self.presence.decode(bytes, self.ids())?)
    }

    /// Encodes an import state (with the direct encoder; see `binary.rs`).
    pub fn encode_import_state(&self, s: &ImportState) -> Result<Vec<u8>, SchemaError> {
        Ok(self.import_state.frame(|buf| binary::import_state(buf, s)))
    }

    /// Decodes an import state (directly when written with the current schema).
    pub fn decode_import_state(&self, bytes: &[u8]) -> Result<ImportState, SchemaError> {
        match self.import_state.written_with(bytes, self.ids())? {
            (fp, body) if fp == self.built.import_state => direct::import_state(body),
            _ => self.decode_import_state_resolving(bytes),
        }
    }

    /// Decodes an import state through schema resolution.
    pub fn decode_import_state_resolving(&self, bytes: &[u8]) -> Result<ImportState, SchemaError> {
        ImportState::from_value(self.import_state.decode(bytes, self.ids())?)
    }

    /// Encodes an erasure record (single-object encoding).
    pub fn encode_erasure(&self, e: &UserErased) -> Result<Vec<u8>, SchemaError> {
        self.erasure.encode(e.to_value())
    }

    /// Decodes and validates an erasure record.
    pub fn decode_erasure(&self, bytes: &[u8]) -> Result<UserErased, SchemaError> {
        let e = UserErased::from_value(self.erasure.decode(bytes, self.ids())?)?;
        e.validate()?;
        Ok(e)
    }
}
