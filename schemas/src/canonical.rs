//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO
//! fingerprint, computed from a schema's JSON, so that the fingerprints in
//! single-object headers are the ones Java Avro, fastavro and every other
//! conforming library compute for the same `.avsc` file.
//!
//! The rules, in the specification's order: primitives in their simple form
//! (a logical type reduces to its primitive: `{"type": "long", "logicalType":
//! "timestamp-millis"}` is `"long"`), full names, only the attributes that
//! matter for parsing (`name`, `type`, `fields`, `symbols`, `items`,
//! `values`, `size`) in that order, strings with UTF-8 rather than escapes,
//! integers without quotes or leading zeros, and no whitespace.

use std::collections::HashSet;

use serde_json::Value;

use crate::error::SchemaError;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema given as JSON.
pub fn canonical_form(schema: &Value) -> Result<String, SchemaError> {
    let mut out = String::new();
    let mut seen = HashSet::new();
    write(schema, "", &mut seen, &mut out)?;
    Ok(out)
}

/// The CRC-64-AVRO (Rabin) fingerprint of `bytes`, as the specification
/// defines it; written little-endian in a single-object header.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let table: [u64; 256] = std::array::from_fn(|i| {
        let mut fp = i as u64;
        for _ in 0..8 {
            fp = (fp >> 1) ^ (EMPTY & 0u64.wrapping_sub(fp & 1));
        }
        fp
    });
    bytes.iter().fold(EMPTY, |fp, b| {
        (fp >> 8) ^ table[((fp ^ u64::from(*b)) & 0xff) as usize]
    })
}

/// The fingerprint of a schema's JSON text.
pub fn fingerprint_of_text(text: &str) -> Result<u64, SchemaError> {
    let json: Value = serde_json::from_str(text).map_err(|e| SchemaError::Canonical {
        reason: format!("schema is not JSON: {e}"),
    })?;
    Ok(crc64_avro(canonical_form(&json)?.as_bytes()))
}

fn bad(reason: impl Into<String>) -> SchemaError {
    SchemaError::Canonical {
        reason: reason.into(),
    }
}

fn quoted(s: &str, out: &mut String) {
    // serde_json writes non-ASCII as UTF-8 and escapes only what JSON requires.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// The full name of a named type, and the namespace its children inherit.
fn full_name(obj: &serde_json::Map<String, Value>, enclosing: &str) -> Result<String, SchemaError> {
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a named type without a name"))?;
    if name.contains('.') {
        return Ok(name.to_owned());
    }
    let ns = match obj.get("namespace") {
        Some(Value::String(ns)) => ns.as_str(),
        Some(Value::Null) | None => enclosing,
        Some(_) => return Err(bad("namespace is not a string")),
    };
    Ok(if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}.{name}")
    })
}

fn namespace_of(full: &str) -> &str {
    full.rsplit_once('.').map_or("", |(ns, _)| ns)
}

fn write(
    schema: &Value,
    ns: &str,
    seen: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), SchemaError> {
    match schema {
        Value::String(name) => {
            if PRIMITIVES.contains(&name.as_str()) || name.contains('.') || ns.is_empty() {
                quoted(name, out);
            } else {
                quoted(&format!("{ns}.{name}"), out);
            }
            Ok(())
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(b, ns, seen, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(obj) => {
            let kind = match obj.get("type") {
                Some(Value::String(t)) => t.as_str(),
                // {"type": {...}} or {"type": [...]}: the inner schema is the schema.
                Some(inner @ (Value::Object(_) | Value::Array(_))) => {
                    return write(inner, ns, seen, out);
                }
                _ => return Err(bad("an object schema without a type")),
            };
            if PRIMITIVES.contains(&kind) {
                // Logical types and any other attribute reduce to the primitive.
                quoted(kind, out);
                return Ok(());
            }
            match kind {
                "record" | "error" | "enum" | "fixed" => {
                    let full = full_name(obj, ns)?;
                    if !seen.insert(full.clone()) {
                        // A second definition of a name is an error; a
                        // reference is written as a string, handled above.
                        return Err(bad(format!("{full} defined twice")));
                    }
                    out.push_str("{\"name\":");
                    quoted(&full, out);
                    out.push_str(",\"type\":");
                    quoted(if kind == "error" { "error" } else { kind }, out);
                    match kind {
                        "enum" => {
                            out.push_str(",\"symbols\":");
                            let symbols = obj
                                .get("symbols")
                                .and_then(Value::as_array)
                                .ok_or_else(|| bad(format!("enum {full} without symbols")))?;
                            out.push('[');
                            for (i, s) in symbols.iter().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                quoted(
                                    s.as_str().ok_or_else(|| bad("a symbol is not a string"))?,
                                    out,
                                );
                            }
                            out.push(']');
                        }
                        "fixed" => {
                            let size = obj
                                .get("size")
                                .and_then(|v| match v {
                                    Value::Number(n) => n.as_u64(),
                                    Value::String(s) => s.trim().parse().ok(),
                                    _ => None,
                                })
                                .ok_or_else(|| bad(format!("fixed {full} without a size")))?;
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            let inner_ns = namespace_of(&full).to_owned();
                            let fields = obj
                                .get("fields")
                                .and_then(Value::as_array)
                                .ok_or_else(|| bad(format!("record {full} without fields")))?;
                            out.push_str(",\"fields\":[");
                            for (i, f) in fields.iter().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                let name =
                                    f.get("name").and_then(Value::as_str).ok_or_else(|| {
                                        bad(format!("a field of {full} without a name"))
                                    })?;
                                let ty = f.get("type").ok_or_else(|| {
                                    bad(format!("field {full}.{name} without a type"))
                                })?;
                                out.push_str("{\"name\":");
                                quoted(name, out);
                                out.push_str(",\"type\":");
                                write(ty, &inner_ns, seen, out)?;
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                    Ok(())
                }
                "array" => {
                    let items = obj.get("items").ok_or_else(|| bad("array without items"))?;
                    out.push_str("{\"type\":\"array\",\"items\":");
                    write(items, ns, seen, out)?;
                    out.push('}');
                    Ok(())
                }
                "map" => {
                    let values = obj.get("values").ok_or_else(|| bad("map without values"))?;
                    out.push_str("{\"type\":\"map\",\"values\":");
                    write(values, ns, seen, out)?;
                    out.push('}');
                    Ok(())
                }
                // A reference to a named type, written as an object.
                other => write(&Value::String(other.to_owned()), ns, seen, out),
            }
        }
        _ => Err(bad("a schema must be a string, an array or an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcf(text: &str) -> String {
        let v: Value = serde_json::from_str(text).expect("test schema is JSON");
        canonical_form(&v).expect("canonical form")
    }

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        assert_eq!(
            pcf(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
            r#""long""#
        );
        assert_eq!(
            pcf(
                r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
                {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"default":0},
                {"name":"u","type":["null",{"type":"string","logicalType":"uuid"}]}]}"#
            ),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"t","type":"long"},{"name":"u","type":["null","string"]}]}"#
        );
    }

    #[test]
    fn names_are_full_and_references_are_strings() {
        assert_eq!(
            pcf(r#"{"type":"record","name":"R","namespace":"n","fields":[
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
                {"name":"f","type":"E"},
                {"name":"g","type":{"type":"fixed","name":"o.F","size":"016"}}]}"#),
            r#"{"name":"n.R","type":"record","fields":[{"name":"e","type":{"name":"n.E","type":"enum","symbols":["A","B"]}},{"name":"f","type":"n.E"},{"name":"g","type":{"name":"o.F","type":"fixed","size":16}}]}"#
        );
    }

    /// Vectors from the Avro specification's reference implementation.
    #[test]
    fn crc64_avro_matches_reference_vectors() {
        assert_eq!(crc64_avro(br#""null""#) as i64, 7195948357588979594);
        assert_eq!(crc64_avro(br#""boolean""#) as i64, -6970731678124411036);
        assert_eq!(
            fingerprint_of_text(r#"{"name":"foo","type":"fixed","size":15}"#).ok(),
            Some(1756455273707447556)
        );
    }
}
