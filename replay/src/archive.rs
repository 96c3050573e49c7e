//! The export file: the input topics as an Avro object container file, the
//! format Spark, pandas (fastavro) and DuckDB read.
//!
//! One record per input record, in partition and offset order, with the event
//! decoded into the current schema of its topic (nested as `activity` or
//! `import`), so analysts see fields, not opaque bytes. A record that did not
//! decode keeps its raw bytes in `undecodable`, so a replay of the file refuses
//! exactly what a replay of the topics refuses.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer};
use indicatif::ProgressBar;
use sessionfold_fold::{Authority, Erasures, Millis, Position};
use sessionfold_schemas::{
    ACTIVITY_AVSC, ActivityEvent, Contract, IMPORT_AVSC, ImportEvent, Topics,
};

use sessionfold_processor::tables::{Event, Stream};

use crate::fold::{Input, redacted};
use crate::source::{RawRecord, read_topics};
use crate::{ReplayError, Start};

fn archive_error(path: &Path, reason: impl std::fmt::Display) -> ReplayError {
    ReplayError::Archive {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The schema of an export file.
pub fn schema() -> Result<Schema, ReplayError> {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text);
    let (activity, import) = parse(ACTIVITY_AVSC)
        .and_then(|a| parse(IMPORT_AVSC).map(|i| (a, i)))
        .map_err(|e| ReplayError::Replay(format!("event schema: {e}")))?;
    let json = serde_json::json!({
        "type": "record",
        "name": "ExportedRecord",
        "namespace": "io.sessionfold.export",
        "doc": "One record of a sessionfold input topic.",
        "fields": [
            {"name": "stream", "type": "string", "doc": "activity or imports"},
            {"name": "partition", "type": "int"},
            {"name": "partitions", "type": ["null", "int"], "default": null, "doc": "Partitions of the topic when it was exported."},
            {"name": "offset", "type": "long"},
            {"name": "timestamp", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null, "doc": "The broker's log timestamp."},
            {"name": "key", "type": ["null", "string"], "default": null},
            {"name": "kind", "type": ["null", "string"], "default": null, "doc": "The event's kind (session_started, heartbeat, import_started, ...); null when the value did not decode."},
            {"name": "actor_role", "type": ["null", "string"], "default": null, "doc": "The authority the ingest vouched for an import event's actor (admin, import_admin, service, owner)."},
            {"name": "activity", "type": ["null", activity], "default": null},
            {"name": "import", "type": ["null", import], "default": null},
            {"name": "undecodable", "type": ["null", "bytes"], "default": null, "doc": "The raw value of a record that did not decode."}
        ]
    });
    Schema::parse(&json).map_err(|e| ReplayError::Replay(format!("export schema: {e}")))
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Activity => "activity",
        Stream::Imports => "imports",
    }
}

fn optional(v: Option<Value>) -> Value {
    match v {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

/// The file record of one topic record, and whether it failed to decode;
/// `None` for a forgotten user's activity, which is left out.
fn record_value(
    contract: &Contract,
    r: &RawRecord<'_>,
    erasures: &Erasures,
) -> Option<(Value, bool)> {
    let decoded = crate::decode(contract, r.stream, r.payload);
    let forgotten = match &decoded {
        Some(Event::Activity(e)) => erasures.forgets(&e.user_id),
        _ => r.stream == Stream::Activity && r.key.is_some_and(|k| erasures.forgets(k)),
    };
    if forgotten {
        return None;
    }
    let refused = decoded.is_none();
    let (kind, activity, import, undecodable) = match decoded {
        Some(Event::Activity(e)) => (Some(e.body.kind()), Some(e.to_value()), None, None),
        Some(Event::Import(e)) => (Some(e.body.kind()), None, Some(e.to_value()), None),
        None => (
            None,
            None,
            None,
            Some(Value::Bytes(r.payload.unwrap_or_default().to_vec())),
        ),
    };
    let text = |v: Option<&str>| optional(v.map(|k| Value::String(k.into())));
    let record = Value::Record(vec![
        ("stream".into(), Value::String(stream_name(r.stream).into())),
        ("partition".into(), Value::Int(r.partition)),
        (
            "partitions".into(),
            optional(Some(Value::Int(r.partitions))),
        ),
        ("offset".into(), Value::Long(r.offset)),
        (
            "timestamp".into(),
            optional(r.timestamp.map(Value::TimestampMillis)),
        ),
        ("key".into(), text(r.key)),
        ("kind".into(), text(kind)),
        ("actor_role".into(), text(r.actor_role)),
        ("activity".into(), optional(activity)),
        ("import".into(), optional(import)),
        ("undecodable".into(), optional(undecodable)),
    ]);
    Some((record, refused))
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records written.
    pub records: u64,
    /// Of those, records that did not decode.
    pub undecodable: u64,
    /// Activity records of forgotten users, left out.
    pub forgotten: u64,
}

/// What an export reads and where it writes.
#[derive(Debug, Clone, Copy)]
pub struct ExportFrom<'a> {
    /// Bootstrap servers.
    pub brokers: &'a str,
    /// The input topics.
    pub topics: &'a Topics,
    /// Where to start reading.
    pub from: Start,
    /// The file to write.
    pub path: &'a Path,
    /// The users forgotten, left out of the file.
    pub erasures: &'a Erasures,
}

/// Writes the input topics, from `from` to their current end, into `path`.
pub fn export(x: ExportFrom<'_>, progress: &ProgressBar) -> Result<ExportReport, ReplayError> {
    let ExportFrom {
        brokers,
        topics,
        from,
        path,
        erasures,
    } = x;
    let contract = sessionfold_edge::registry::contract()?;
    let schema = schema()?;
    let file = File::create(path).map_err(|e| archive_error(path, e))?;
    let mut writer = Writer::with_codec(
        &schema,
        BufWriter::new(file),
        Codec::Deflate(DeflateSettings::default()),
    );
    let mut report = ExportReport::default();
    read_topics(brokers, topics, from, progress, |raw| {
        let Some((value, refused)) = record_value(&contract, &raw, erasures) else {
            report.forgotten += 1;
            return Ok(());
        };
        report.undecodable += u64::from(refused);
        writer.append(value).map_err(|e| archive_error(path, e))?;
        report.records += 1;
        Ok(())
    })?;
    let mut out = writer.into_inner().map_err(|e| archive_error(path, e))?;
    out.flush().map_err(|e| archive_error(path, e))?;
    Ok(report)
}

/// Writes the input topics, from `from` to their current end, into `path`
/// as one Parquet table of events (every field a column, see
/// `sessionfold_report::events`). Records that do not decode are left out
/// and counted; so are forgotten users' activity, and the forgotten users
/// an import event names.
pub fn export_parquet(
    x: ExportFrom<'_>,
    progress: &ProgressBar,
) -> Result<ExportReport, ReplayError> {
    let ExportFrom {
        brokers,
        topics,
        from,
        path,
        erasures,
    } = x;
    let contract = sessionfold_edge::registry::contract()?;
    let file = File::create(path).map_err(|e| archive_error(path, e))?;
    let mut writer = sessionfold_report::events::EventsWriter::new(BufWriter::new(file));
    let mut report = ExportReport::default();
    read_topics(brokers, topics, from, progress, |raw| {
        let origin = sessionfold_report::events::Origin {
            partition: raw.partition,
            offset: raw.offset,
            outcome: None,
        };
        match crate::decode(&contract, raw.stream, raw.payload) {
            Some(Event::Activity(e)) if erasures.forgets(&e.user_id) => report.forgotten += 1,
            Some(Event::Activity(e)) => {
                writer
                    .activity(&e, origin)
                    .map_err(|e| archive_error(path, e))?;
                report.records += 1;
            }
            Some(Event::Import(e)) => {
                writer
                    .import(&redacted(&e, erasures), origin)
                    .map_err(|e| archive_error(path, e))?;
                report.records += 1;
            }
            None => report.undecodable += 1,
        }
        Ok(())
    })?;
    writer.finish().map_err(|e| archive_error(path, e))?;
    Ok(report)
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn present(v: Option<&Value>) -> Option<&Value> {
    match v {
        Some(Value::Union(_, inner)) if **inner != Value::Null => Some(inner),
        Some(Value::Null) | None => None,
        Some(Value::Union(..)) => None,
        Some(other) => Some(other),
    }
}

/// One record of the file, parsed.
struct Stored {
    stream: Stream,
    pos: Position,
    event: Option<Event>,
    timestamp: Option<Millis>,
    key: Option<String>,
    actor_role: Option<String>,
    partitions: Option<i32>,
}

fn decode_record(value: Value) -> Result<Stored, String> {
    let Value::Record(fields) = value else {
        return Err("not a record".into());
    };
    let stream = match field(&fields, "stream") {
        Some(Value::String(s)) if s == "activity" => Stream::Activity,
        Some(Value::String(s)) if s == "imports" => Stream::Imports,
        other => return Err(format!("unknown stream {other:?}")),
    };
    let partition = match field(&fields, "partition") {
        Some(Value::Int(p)) => *p,
        other => return Err(format!("bad partition {other:?}")),
    };
    let offset = match field(&fields, "offset") {
        Some(Value::Long(o)) => *o,
        other => return Err(format!("bad offset {other:?}")),
    };
    let timestamp = match present(field(&fields, "timestamp")) {
        Some(Value::TimestampMillis(t) | Value::Long(t)) => Some(*t),
        _ => None,
    };
    let text = |name: &str| match present(field(&fields, name)) {
        Some(Value::String(k)) => Some(k.clone()),
        _ => None,
    };
    let (key, actor_role) = (text("key"), text("actor_role"));
    let partitions = match present(field(&fields, "partitions")) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let event = match (
        stream,
        present(field(&fields, "activity")),
        present(field(&fields, "import")),
    ) {
        (Stream::Activity, Some(v), _) => ActivityEvent::from_value(v.clone())
            .and_then(|e| e.validate().map(|()| e))
            .ok()
            .map(Event::Activity),
        (Stream::Imports, _, Some(v)) => ImportEvent::from_value(v.clone())
            .and_then(|e| e.validate().map(|()| e))
            .ok()
            .map(Event::Import),
        _ => None,
    };
    Ok(Stored {
        stream,
        pos: Position { partition, offset },
        event,
        timestamp,
        key,
        actor_role,
        partitions,
    })
}

/// Hands every record of an export file to `each`. With a start time, each
/// partition starts at its first record stamped at or after it, as the
/// broker's offset-for-time lookup does.
pub(crate) fn read_file(
    path: &Path,
    from: Start,
    progress: &ProgressBar,
    mut each: impl FnMut(Input<'_>),
) -> Result<(), ReplayError> {
    let file = File::open(path).map_err(|e| archive_error(path, e))?;
    let reader = Reader::new(BufReader::new(file)).map_err(|e| archive_error(path, e))?;
    let mut started: BTreeSet<(Stream, i32)> = BTreeSet::new();
    for value in reader {
        let value = value.map_err(|e| archive_error(path, e))?;
        let r = decode_record(value).map_err(|e| archive_error(path, e))?;
        progress.inc(1);
        let part = (r.stream, r.pos.partition);
        if let Start::At(t) = from
            && !started.contains(&part)
        {
            if r.timestamp.is_none_or(|ts| ts < t) {
                continue;
            }
            started.insert(part);
        }
        each(Input {
            stream: r.stream,
            key: r.key.as_deref(),
            event: r.event,
            pos: r.pos,
            authority: Authority::from_role(r.actor_role.as_deref()),
            misplaced: crate::misplaced(
                r.key.as_deref(),
                r.pos.partition,
                r.partitions.unwrap_or(0),
            ),
        });
    }
    Ok(())
}
