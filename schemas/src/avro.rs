//! Conversions between Avro `Value`s and the typed records of this crate.

use apache_avro::types::Value;

use crate::Millis;
use crate::error::SchemaError;

/// A decoded record whose fields are taken out one by one, by name.
pub(crate) struct Fields {
    record: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    /// Opens a record value; anything else is a field error on `field`.
    pub(crate) fn open(
        record: &'static str,
        field: &'static str,
        value: Value,
    ) -> Result<Fields, SchemaError> {
        match value {
            Value::Record(fields) => Ok(Fields { record, fields }),
            other => Err(SchemaError::Field {
                record,
                field,
                reason: format!("expected a record, found {}", kind(&other)),
            }),
        }
    }

    fn err(&self, field: &'static str, reason: String) -> SchemaError {
        SchemaError::Field {
            record: self.record,
            field,
            reason,
        }
    }

    pub(crate) fn take(&mut self, field: &'static str) -> Result<Value, SchemaError> {
        match self.fields.iter_mut().find(|(name, _)| name == field) {
            Some((_, v)) => Ok(std::mem::replace(v, Value::Null)),
            None => Err(self.err(field, "missing".into())),
        }
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, SchemaError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(self.err(field, format!("expected a string, found {}", kind(&other)))),
        }
    }

    pub(crate) fn opt_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, SchemaError> {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.err(field, format!("expected a string, found {}", kind(&other)))),
        }
    }

    pub(crate) fn strings(&mut self, field: &'static str) -> Result<Vec<String>, SchemaError> {
        match self.take(field)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => {
                        Err(self.err(field, format!("expected strings, found {}", kind(&other))))
                    }
                })
                .collect(),
            other => Err(self.err(field, format!("expected an array, found {}", kind(&other)))),
        }
    }

    pub(crate) fn array(&mut self, field: &'static str) -> Result<Vec<Value>, SchemaError> {
        match self.take(field)? {
            Value::Array(items) => Ok(items),
            other => Err(self.err(field, format!("expected an array, found {}", kind(&other)))),
        }
    }

    pub(crate) fn int(&mut self, field: &'static str) -> Result<i32, SchemaError> {
        match self.take(field)? {
            Value::Int(i) => Ok(i),
            other => Err(self.err(field, format!("expected an int, found {}", kind(&other)))),
        }
    }

    pub(crate) fn long(&mut self, field: &'static str) -> Result<i64, SchemaError> {
        match self.take(field)? {
            Value::Long(i) | Value::TimestampMillis(i) => Ok(i),
            Value::Int(i) => Ok(i64::from(i)),
            other => Err(self.err(field, format!("expected a long, found {}", kind(&other)))),
        }
    }

    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, SchemaError> {
        match self.take(field)? {
            Value::Boolean(b) => Ok(b),
            other => Err(self.err(field, format!("expected a boolean, found {}", kind(&other)))),
        }
    }

    pub(crate) fn millis(&mut self, field: &'static str) -> Result<Millis, SchemaError> {
        self.long(field)
    }

    pub(crate) fn opt_millis(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Millis>, SchemaError> {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::TimestampMillis(i) | Value::Long(i) => Ok(Some(i)),
            other => Err(self.err(
                field,
                format!("expected a timestamp, found {}", kind(&other)),
            )),
        }
    }

    /// An enum field, mapped through `parse` from its symbol.
    pub(crate) fn symbol<T>(
        &mut self,
        field: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, SchemaError> {
        match self.take(field)? {
            Value::Enum(_, s) | Value::String(s) => {
                parse(&s).ok_or_else(|| self.err(field, format!("unknown symbol {s:?}")))
            }
            other => Err(self.err(field, format!("expected an enum, found {}", kind(&other)))),
        }
    }

    /// An optional enum field.
    pub(crate) fn opt_symbol<T>(
        &mut self,
        field: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, SchemaError> {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::Enum(_, s) | Value::String(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| self.err(field, format!("unknown symbol {s:?}"))),
            other => Err(self.err(field, format!("expected an enum, found {}", kind(&other)))),
        }
    }

    /// The branch of a union of records: its index and its fields.
    pub(crate) fn branch(
        &mut self,
        field: &'static str,
    ) -> Result<(u32, Vec<(String, Value)>), SchemaError> {
        match self.take(field)? {
            Value::Union(i, inner) => match *inner {
                Value::Record(fields) => Ok((i, fields)),
                other => Err(self.err(field, format!("expected a record, found {}", kind(&other)))),
            },
            other => Err(self.err(field, format!("expected a union, found {}", kind(&other)))),
        }
    }
}

fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::String(_) => "string",
        Value::Enum(..) => "enum",
        Value::Union(..) => "union",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::TimestampMillis(_) => "timestamp",
        _ => "another type",
    }
}

/// Builds record values field by field, in schema order.
pub(crate) struct Record(Vec<(String, Value)>);

impl Record {
    pub(crate) fn new() -> Record {
        Record(Vec::with_capacity(16))
    }

    pub(crate) fn put(mut self, name: &str, value: Value) -> Record {
        self.0.push((name.to_owned(), value));
        self
    }

    pub(crate) fn build(self) -> Value {
        Value::Record(self.0)
    }
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

pub(crate) fn opt_string(s: Option<&str>) -> Value {
    match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.to_owned()))),
    }
}

pub(crate) fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

pub(crate) fn millis(t: Millis) -> Value {
    Value::TimestampMillis(t)
}

pub(crate) fn opt_millis(t: Option<Millis>) -> Value {
    match t {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(t) => Value::Union(1, Box::new(Value::TimestampMillis(t))),
    }
}

/// An enum value given its symbol list position.
pub(crate) fn symbol(index: usize, name: &str) -> Value {
    Value::Enum(index as u32, name.to_owned())
}

pub(crate) fn opt_symbol(sym: Option<(usize, &str)>) -> Value {
    match sym {
        None => Value::Union(0, Box::new(Value::Null)),
        Some((i, s)) => Value::Union(1, Box::new(symbol(i, s))),
    }
}

pub(crate) fn branch(index: u32, record: Value) -> Value {
    Value::Union(index, Box::new(record))
}
