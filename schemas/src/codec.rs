//! Avro single-object encoding with writer-schema lookup by fingerprint.

use std::collections::HashMap;
use std::io::Cursor;

use apache_avro::rabin::Rabin;
use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum, to_avro_datum};

use crate::error::SchemaError;

/// The two marker bytes that open every single-object encoded record.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Marker plus the 8-byte fingerprint.
pub const HEADER_LEN: usize = 10;

/// CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as the
/// Avro specification defines both (logical types reduced to their primitive).
pub fn fingerprint(schema: &Schema) -> Result<u64, SchemaError> {
    let json = serde_json::to_value(schema).map_err(|e| SchemaError::Canonical {
        reason: format!("schema does not serialise: {e}"),
    })?;
    Ok(crate::canonical::crc64_avro(
        crate::canonical::canonical_form(&json)?.as_bytes(),
    ))
}

/// The fingerprint that builds before 0.2 wrote: apache-avro's canonical form
/// keeps `{"type":"long"}` for a timestamp, so it differs from the
/// specification's for every schema with a logical type. Records carrying it
/// are still read, as an alias of the same schema version.
pub fn legacy_fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(le)
}

/// The first byte of a record in the Schema Registry wire format, followed by
/// the schema id (4 bytes, big-endian) and the Avro body.
pub const REGISTRY_MAGIC: u8 = 0;
/// Marker plus the 4-byte schema id.
pub const REGISTRY_HEADER_LEN: usize = 5;

/// Resolves Schema Registry ids to the fingerprints of the schemas they name.
/// The edge implements it over HTTP, with a cache; the codec stays pure.
pub trait SchemaIds: Send + Sync {
    /// The CRC-64-AVRO fingerprint of the schema registered under `id`.
    fn fingerprint(&self, id: u32) -> Result<u64, String>;
}

/// The schema id of a record in the Schema Registry wire format, if it is one.
pub fn registry_id(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < REGISTRY_HEADER_LEN || bytes[0] != REGISTRY_MAGIC {
        return None;
    }
    let mut be = [0u8; 4];
    be.copy_from_slice(&bytes[1..REGISTRY_HEADER_LEN]);
    Some(u32::from_be_bytes(be))
}

/// Turns a single-object record into the Schema Registry wire format with `id`.
pub fn to_registry_format(single_object: &[u8], id: u32) -> Result<Vec<u8>, SchemaError> {
    header_fingerprint(single_object)?;
    let body = &single_object[HEADER_LEN..];
    let mut out = Vec::with_capacity(REGISTRY_HEADER_LEN + body.len());
    out.push(REGISTRY_MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Reads the writer fingerprint from a single-object header.
pub fn header_fingerprint(bytes: &[u8]) -> Result<u64, SchemaError> {
    if bytes.len() < HEADER_LEN {
        return Err(SchemaError::TooShort { len: bytes.len() });
    }
    if bytes[..2] != MAGIC {
        return Err(SchemaError::BadMagic(bytes[0], bytes[1]));
    }
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok(u64::from_le_bytes(le))
}

/// One record type: the schema this build writes and reads with, and every
/// published version it can read.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    record: &'static str,
    current: Schema,
    current_fingerprint: u64,
    writers: HashMap<u64, Schema>,
}

impl SchemaSet {
    /// Builds a set from the current schema text and all published versions
    /// (the current one may be among them).
    pub fn new(
        record: &'static str,
        current: &str,
        history: &[&str],
    ) -> Result<SchemaSet, SchemaError> {
        let current_fingerprint = crate::canonical::fingerprint_of_text(current)?;
        let current = Schema::parse_str(current)?;
        let mut writers = HashMap::new();
        for text in history {
            let schema = Schema::parse_str(text)?;
            writers.insert(legacy_fingerprint(&schema), schema.clone());
            writers.insert(crate::canonical::fingerprint_of_text(text)?, schema);
        }
        writers.insert(legacy_fingerprint(&current), current.clone());
        writers.insert(current_fingerprint, current.clone());
        Ok(SchemaSet {
            record,
            current,
            current_fingerprint,
            writers,
        })
    }

    /// Returns a set that reads with `reader` instead of the current schema,
    /// keeping the same known writers; used to read as an older or newer client would.
    pub fn with_reader(&self, reader: &str) -> Result<SchemaSet, SchemaError> {
        let mut set = SchemaSet::new(self.record, reader, &[])?;
        for (fp, schema) in &self.writers {
            set.writers.entry(*fp).or_insert_with(|| schema.clone());
        }
        Ok(set)
    }

    /// The schema records are written with.
    pub fn schema(&self) -> &Schema {
        &self.current
    }

    /// The fingerprint records are written with.
    pub fn fingerprint(&self) -> u64 {
        self.current_fingerprint
    }

    /// Fingerprints of every version this set can read, the legacy aliases included.
    pub fn known_fingerprints(&self) -> impl Iterator<Item = u64> + '_ {
        self.writers.keys().copied()
    }

    /// Encodes a value of the current schema as a single-object record.
    pub fn encode(&self, value: Value) -> Result<Vec<u8>, SchemaError> {
        let body = to_avro_datum(&self.current, value)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.current_fingerprint.to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Frames an Avro body written by `body` (appended to the header) as a
    /// single-object record of the current schema, without validation: for
    /// hand-written encoders checked against [`SchemaSet::encode`] in tests.
    pub fn frame(&self, body: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.current_fingerprint.to_le_bytes());
        body(out)
    }

    /// The writer fingerprint of a record and its Avro body, for a record
    /// in single-object encoding or (with `ids`) the Schema Registry wire
    /// format, told apart by the first byte; refused when the writer is not a
    /// known version.
    pub fn written_with<'b>(
        &self,
        bytes: &'b [u8],
        ids: Option<&dyn SchemaIds>,
    ) -> Result<(u64, &'b [u8]), SchemaError> {
        let (fp, header) = match registry_id(bytes) {
            Some(id) => {
                let ids = ids.ok_or(SchemaError::NoRegistry { id })?;
                let fp = ids
                    .fingerprint(id)
                    .map_err(|reason| SchemaError::RegistryId { id, reason })?;
                if !self.writers.contains_key(&fp) {
                    return Err(SchemaError::RegistryId {
                        id,
                        reason: format!(
                            "names a schema (fingerprint {fp:016x}) that is not a published version of {}",
                            self.record
                        ),
                    });
                }
                (fp, REGISTRY_HEADER_LEN)
            }
            None => (header_fingerprint(bytes)?, HEADER_LEN),
        };
        // Almost every record is written with the current schema: known
        // without hashing its fingerprint.
        if fp != self.current_fingerprint && !self.writers.contains_key(&fp) {
            return Err(SchemaError::UnknownFingerprint {
                record: self.record,
                fingerprint: fp,
            });
        }
        Ok((fp, &bytes[header..]))
    }

    /// Decodes a record written with any known version (see
    /// [`SchemaSet::written_with`]) into a value of the reader schema.
    pub fn decode(&self, bytes: &[u8], ids: Option<&dyn SchemaIds>) -> Result<Value, SchemaError> {
        let (fp, body) = self.written_with(bytes, ids)?;
        let writer = self
            .writers
            .get(&fp)
            .ok_or(SchemaError::UnknownFingerprint {
                record: self.record,
                fingerprint: fp,
            })?;
        let mut cursor = Cursor::new(body);
        let reader = if fp == self.current_fingerprint || *writer == self.current {
            None
        } else {
            Some(&self.current)
        };
        let value = from_avro_datum(writer, &mut cursor, reader)?;
        let rest = body.len() - cursor.position() as usize;
        if rest != 0 {
            return Err(SchemaError::TrailingBytes(rest));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Avro specification's reference implementation.
    #[test]
    fn fingerprints_match_reference_vectors() {
        let cases: &[(&str, i64)] = &[
            (r#""null""#, 7195948357588979594),
            (r#""boolean""#, -6970731678124411036),
            (
                r#"{"name":"foo","type":"fixed","size":15}"#,
                1756455273707447556,
            ),
        ];
        for (text, expected) in cases {
            let schema = Schema::parse_str(text).expect("schema parses");
            assert_eq!(
                fingerprint(&schema).ok().map(|f| f as i64),
                Some(*expected),
                "{text}"
            );
        }
    }

    #[test]
    fn header_errors_are_typed() {
        assert!(matches!(
            header_fingerprint(&[0xC3]),
            Err(SchemaError::TooShort { len: 1 })
        ));
        assert!(matches!(
            header_fingerprint(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(SchemaError::BadMagic(0, 1))
        ));
    }
}
