//! Import events: the life of a long-running import job.

use apache_avro::types::Value;

use crate::Millis;
use crate::activity::{check_id, check_text};
use crate::avro::{self, Fields, Record};
use crate::error::SchemaError;

/// The kind of an import event with its own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportBody {
    /// An upload began an import.
    Started {
        /// Owner; `None` for a legacy import.
        owner_id: Option<String>,
        /// Hash of the uploaded file's JSON, for duplicate detection per owner.
        json_hash: String,
        /// Uploaded file name.
        file_name: String,
        /// Questions in the file.
        questions_total: i32,
    },
    /// A step of the import finished.
    Progressed {
        /// Step name.
        step: String,
        /// 0 to 100.
        progress: i32,
        /// Questions imported so far.
        questions_imported: i32,
        /// Questions in the file.
        questions_total: i32,
    },
    /// Someone opened the import.
    Accessed,
    /// The import finished.
    Completed,
    /// The import was given up.
    Abandoned {
        /// Why.
        reason: String,
    },
    /// An admin gave the import to another user.
    Transferred {
        /// The new owner.
        new_owner_id: String,
    },
    /// The import was deleted.
    Deleted,
}

impl ImportBody {
    /// The event kind as named in the JSON API and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ImportBody::Started { .. } => "import_started",
            ImportBody::Progressed { .. } => "import_progressed",
            ImportBody::Accessed => "import_accessed",
            ImportBody::Completed => "import_completed",
            ImportBody::Abandoned { .. } => "import_abandoned",
            ImportBody::Transferred { .. } => "import_transferred",
            ImportBody::Deleted => "import_deleted",
        }
    }
}

/// One record of the imports topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportEvent {
    /// Unique id; repeats are applied once.
    pub event_id: String,
    /// Event time.
    pub occurred_at: Millis,
    /// The import job (the record key).
    pub import_id: String,
    /// Who caused the event; `None` for a service acting on its own.
    pub actor_id: Option<String>,
    /// Kind and fields.
    pub body: ImportBody,
    /// When the producer accepted it.
    pub received_at: Option<Millis>,
}

impl ImportEvent {
    /// Checks the values the schema cannot: ids, ranges and counts.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_id("event_id", &self.event_id)?;
        check_id("import_id", &self.import_id)?;
        if let Some(a) = &self.actor_id {
            check_id("actor_id", a)?;
        }
        if self.occurred_at < 0 {
            return Err(SchemaError::invalid("occurred_at", "before 1970"));
        }
        match &self.body {
            ImportBody::Started {
                owner_id,
                json_hash,
                file_name,
                questions_total,
            } => {
                if let Some(o) = owner_id {
                    check_id("owner_id", o)?;
                }
                check_id("json_hash", json_hash)?;
                check_id("file_name", file_name)?;
                if *questions_total < 0 {
                    return Err(SchemaError::invalid("questions_total", "must be 0 or more"));
                }
            }
            ImportBody::Progressed {
                step,
                progress,
                questions_imported,
                questions_total,
            } => {
                check_id("step", step)?;
                if !(0..=100).contains(progress) {
                    return Err(SchemaError::invalid(
                        "progress",
                        "must be between 0 and 100",
                    ));
                }
                if *questions_total < 0 {
                    return Err(SchemaError::invalid("questions_total", "must be 0 or more"));
                }
                if *questions_imported < 0 || questions_imported > questions_total {
                    return Err(SchemaError::invalid(
                        "questions_imported",
                        "must be between 0 and questions_total",
                    ));
                }
            }
            ImportBody::Abandoned { reason } => check_text("reason", Some(reason))?,
            ImportBody::Transferred { new_owner_id } => check_id("new_owner_id", new_owner_id)?,
            ImportBody::Accessed | ImportBody::Completed | ImportBody::Deleted => {}
        }
        Ok(())
    }

    /// The Avro value of this event in the current import schema.
    pub fn to_value(&self) -> Value {
        let empty = || Record::new().build();
        let body = match &self.body {
            ImportBody::Started {
                owner_id,
                json_hash,
                file_name,
                questions_total,
            } => avro::branch(
                0,
                Record::new()
                    .put("owner_id", avro::opt_string(owner_id.as_deref()))
                    .put("json_hash", avro::string(json_hash))
                    .put("file_name", avro::string(file_name))
                    .put("questions_total", Value::Int(*questions_total))
                    .build(),
            ),
            ImportBody::Progressed {
                step,
                progress,
                questions_imported,
                questions_total,
            } => avro::branch(
                1,
                Record::new()
                    .put("step", avro::string(step))
                    .put("progress", Value::Int(*progress))
                    .put("questions_imported", Value::Int(*questions_imported))
                    .put("questions_total", Value::Int(*questions_total))
                    .build(),
            ),
            ImportBody::Accessed => avro::branch(2, empty()),
            ImportBody::Completed => avro::branch(3, empty()),
            ImportBody::Abandoned { reason } => {
                avro::branch(4, Record::new().put("reason", avro::string(reason)).build())
            }
            ImportBody::Transferred { new_owner_id } => avro::branch(
                5,
                Record::new()
                    .put("new_owner_id", avro::string(new_owner_id))
                    .build(),
            ),
            ImportBody::Deleted => avro::branch(6, empty()),
        };
        Record::new()
            .put("event_id", avro::string(&self.event_id))
            .put("occurred_at", avro::millis(self.occurred_at))
            .put("import_id", avro::string(&self.import_id))
            .put("actor_id", avro::opt_string(self.actor_id.as_deref()))
            .put("event", body)
            .put("received_at", avro::opt_millis(self.received_at))
            .build()
    }

    /// Reads an event from a value of the current import schema.
    pub fn from_value(value: Value) -> Result<ImportEvent, SchemaError> {
        let mut f = Fields::open("ImportEvent", "", value)?;
        let event_id = f.string("event_id")?;
        let occurred_at = f.millis("occurred_at")?;
        let import_id = f.string("import_id")?;
        let actor_id = f.opt_string("actor_id")?;
        let (branch, fields) = f.branch("event")?;
        let mut s = Fields::open("ImportEvent.event", "event", Value::Record(fields))?;
        let body = match branch {
            0 => ImportBody::Started {
                owner_id: s.opt_string("owner_id")?,
                json_hash: s.string("json_hash")?,
                file_name: s.string("file_name")?,
                questions_total: s.int("questions_total")?,
            },
            1 => ImportBody::Progressed {
                step: s.string("step")?,
                progress: s.int("progress")?,
                questions_imported: s.int("questions_imported")?,
                questions_total: s.int("questions_total")?,
            },
            2 => ImportBody::Accessed,
            3 => ImportBody::Completed,
            4 => ImportBody::Abandoned {
                reason: s.string("reason")?,
            },
            5 => ImportBody::Transferred {
                new_owner_id: s.string("new_owner_id")?,
            },
            6 => ImportBody::Deleted,
            other => {
                return Err(SchemaError::Field {
                    record: "ImportEvent",
                    field: "event",
                    reason: format!("unknown branch {other}"),
                });
            }
        };
        let received_at = f.opt_millis("received_at").unwrap_or(None);
        Ok(ImportEvent {
            event_id,
            occurred_at,
            import_id,
            actor_id,
            body,
            received_at,
        })
    }
}
