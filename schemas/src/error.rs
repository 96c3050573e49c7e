use thiserror::Error;

/// Why a record could not be encoded, decoded or accepted.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// The record is shorter than the single-object header.
    #[error("record too short for Avro single-object encoding: {len} bytes, need at least 10")]
    TooShort {
        /// Length of the record in bytes.
        len: usize,
    },
    /// The first two bytes are not the single-object marker.
    #[error(
        "not Avro single-object encoding: header starts {0:02x} {1:02x}, expected c3 01 (or 00 and a schema id: the Schema Registry wire format)"
    )]
    BadMagic(u8, u8),
    /// The writer schema's fingerprint names no schema version this build knows.
    #[error("unknown writer schema fingerprint {fingerprint:016x} for {record}")]
    UnknownFingerprint {
        /// Record the reader expected.
        record: &'static str,
        /// CRC-64-AVRO fingerprint read from the header.
        fingerprint: u64,
    },
    /// A schema's JSON has no Parsing Canonical Form (it is not a valid schema).
    #[error("schema canonical form: {reason}")]
    Canonical {
        /// What was wrong.
        reason: String,
    },
    /// The Avro library rejected the body or the schema.
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    /// A field had a shape the Rust type cannot hold.
    #[error("{record}.{field}: {reason}")]
    Field {
        /// Record holding the field.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The record decoded but a value is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field path, such as `event.progress`.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// A record in the Schema Registry wire format arrived, and no registry
    /// is configured to resolve its schema id.
    #[error(
        "record in the Schema Registry wire format (schema id {id}) and no schema registry is configured"
    )]
    NoRegistry {
        /// The schema id in the record.
        id: u32,
    },
    /// The registry did not name a schema for the id, or names one this
    /// build does not know.
    #[error("schema id {id} from the registry: {reason}")]
    RegistryId {
        /// The schema id in the record.
        id: u32,
        /// Why it does not resolve.
        reason: String,
    },
    /// The Avro body is not a valid encoding of the writer schema.
    #[error("{record}: malformed Avro body: {reason}")]
    Malformed {
        /// Record being decoded.
        record: &'static str,
        /// What is wrong, and where.
        reason: String,
    },
    /// Bytes remained after the Avro body.
    #[error("{0} trailing bytes after the Avro body")]
    TrailingBytes(usize),
}

impl From<apache_avro::Error> for SchemaError {
    fn from(e: apache_avro::Error) -> Self {
        SchemaError::Avro(Box::new(e))
    }
}

impl SchemaError {
    /// Shorthand for an [`SchemaError::Invalid`] value.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SchemaError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A short stable name for the kind of error, used in dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SchemaError::TooShort { .. } | SchemaError::BadMagic(..) => "not_single_object",
            SchemaError::UnknownFingerprint { .. } | SchemaError::RegistryId { .. } => {
                "unknown_schema"
            }
            SchemaError::NoRegistry { .. } => "no_registry",
            SchemaError::Avro(_)
            | SchemaError::Malformed { .. }
            | SchemaError::TrailingBytes(_)
            | SchemaError::Canonical { .. } => "undecodable",
            SchemaError::Field { .. } => "bad_field",
            SchemaError::Invalid { .. } => "invalid_value",
        }
    }
}
