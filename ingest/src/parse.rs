//! Turning a request body into typed events, with field-level errors and
//! event times clamped to the receipt time. Who may emit an event is not
//! decided here (see [`crate::authorize`]).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sessionfold_schemas::{
    ActivityBody, ActivityEvent, EndReason, ImportBody, ImportEvent, Interaction, Millis,
    SchemaError, SessionStarted,
};

/// What is wrong with a request body, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, such as `events[2].activity`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads the fields of one JSON object, naming the path in every error.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(path: String, v: &'a Value) -> Result<Obj<'a>, FieldError> {
        match v {
            Value::Object(map) => Ok(Obj { path, map }),
            _ => Err(FieldError::new(
                if path.is_empty() {
                    "body"
                } else {
                    path.trim_end_matches('.')
                },
                "must be a JSON object",
            )),
        }
    }

    fn at(&self, name: &str) -> String {
        format!("{}{name}", self.path)
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>, FieldError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(FieldError::new(self.at(name), "must be a string")),
        }
    }

    fn str(&self, name: &str) -> Result<String, FieldError> {
        match self.opt_str(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(FieldError::new(self.at(name), "must not be empty")),
            None => Err(FieldError::new(self.at(name), "is required")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, FieldError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(FieldError::new(
                        format!("{}[{i}]", self.at(name)),
                        "must be a string",
                    )),
                })
                .collect(),
            Some(_) => Err(FieldError::new(
                self.at(name),
                "must be an array of strings",
            )),
        }
    }

    fn int(&self, name: &str) -> Result<i32, FieldError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Err(FieldError::new(self.at(name), "is required")),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| FieldError::new(self.at(name), "must be a whole number")),
            Some(_) => Err(FieldError::new(self.at(name), "must be a number")),
        }
    }

    fn time(&self, name: &str) -> Result<Option<Millis>, FieldError> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Some(t.with_timezone(&Utc).timestamp_millis()))
                .map_err(|e| {
                    FieldError::new(self.at(name), format!("must be an RFC 3339 time ({e})"))
                }),
        }
    }

    fn symbol<T: Copy>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        all: &[T],
        show: fn(T) -> &'static str,
    ) -> Result<Option<T>, FieldError> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(s) => parse(&s).map(Some).ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|v| show(*v)).collect();
                FieldError::new(
                    self.at(name),
                    format!("must be one of {}", names.join(", ")),
                )
            }),
        }
    }
}

/// When the producer received a request, and how far ahead of it an event may claim to be.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    /// Time received.
    pub received_at: Millis,
    /// Most an `occurred_at` may lie ahead of `received_at` before it is clamped.
    pub max_clock_skew: Millis,
}

impl Receipt {
    /// The event time to record: the claimed time, clamped to the receipt time
    /// when it is further ahead than the allowed skew.
    pub fn clamp(&self, claimed: Option<Millis>) -> Millis {
        match claimed {
            None => self.received_at,
            Some(t) if t > self.received_at + self.max_clock_skew => self.received_at,
            Some(t) => t,
        }
    }
}

fn schema_error(path: &str, e: SchemaError) -> FieldError {
    match e {
        SchemaError::Invalid { field, reason } => FieldError::new(format!("{path}{field}"), reason),
        other => FieldError::new(path.trim_end_matches('.'), other.to_string()),
    }
}

/// Parses one activity event object.
pub fn activity_event(path: String, v: &Value, r: Receipt) -> Result<ActivityEvent, FieldError> {
    let o = Obj::new(path, v)?;
    let kind = o.str("kind")?;
    let user_id = o.str("user_id")?;
    let session_id = o.str("session_id")?;
    let event_id = o
        .opt_str("event_id")?
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let occurred_at = r.clamp(o.time("occurred_at")?);
    let body = match kind.as_str() {
        "session_started" => ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: o.str("email")?,
            full_name: o.opt_str("full_name")?,
            membership: o.opt_str("membership")?,
            roles: o.strings("roles")?,
            device_type: o.opt_str("device_type")?,
            browser: o.opt_str("browser")?,
            os: o.opt_str("os")?,
            ip_address: o.opt_str("ip_address")?,
            user_agent: o.opt_str("user_agent")?,
            page: o.opt_str("page")?,
        })),
        "heartbeat" => ActivityBody::Heartbeat {
            page: o.opt_str("page")?,
            activity: o
                .symbol(
                    "activity",
                    Interaction::parse,
                    Interaction::ALL,
                    Interaction::as_str,
                )?
                .unwrap_or(Interaction::Timer),
        },
        "page_viewed" => ActivityBody::PageViewed {
            page: o.str("page")?,
            title: o.opt_str("title")?,
        },
        "session_ended" => ActivityBody::SessionEnded {
            reason: o
                .symbol(
                    "reason",
                    EndReason::parse,
                    EndReason::ALL,
                    EndReason::as_str,
                )?
                .ok_or_else(|| FieldError::new(o.at("reason"), "is required"))?,
        },
        other => {
            return Err(FieldError::new(
                o.at("kind"),
                format!(
                    "unknown kind {other:?}; expected session_started, heartbeat, page_viewed or session_ended"
                ),
            ));
        }
    };
    let e = ActivityEvent {
        event_id,
        occurred_at,
        user_id,
        session_id,
        body,
        received_at: Some(r.received_at),
    };
    e.validate().map_err(|err| schema_error(&o.path, err))?;
    Ok(e)
}

/// Splits a request body into its event objects: one object, or `{"events": [...]}`.
/// Each comes with the path prefix its errors should name.
fn items(body: &Value, max_events: usize) -> Result<Vec<(String, &Value)>, FieldError> {
    match body.get("events") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(FieldError::new("events", "must not be empty"));
            }
            if items.len() > max_events {
                return Err(FieldError::new(
                    "events",
                    format!("at most {max_events} events per request"),
                ));
            }
            Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("events[{i}]."), v))
                .collect())
        }
        Some(_) => Err(FieldError::new("events", "must be an array")),
        None => Ok(vec![(String::new(), body)]),
    }
}

/// Parses a request body: one event object, or `{"events": [...]}`.
pub fn activity_request(
    body: &Value,
    r: Receipt,
    max_events: usize,
) -> Result<Vec<ActivityEvent>, FieldError> {
    items(body, max_events)?
        .into_iter()
        .map(|(path, v)| activity_event(path, v, r))
        .collect()
}

/// Parses one import event object for `import_id`. The actor defaults to
/// `acting_as` (the caller) and the owner of a started import to the actor.
pub fn import_event(
    path: String,
    v: &Value,
    import_id: &str,
    acting_as: &str,
    r: Receipt,
) -> Result<ImportEvent, FieldError> {
    let o = Obj::new(path, v)?;
    let kind = o.str("kind")?;
    let event_id = o
        .opt_str("event_id")?
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let occurred_at = r.clamp(o.time("occurred_at")?);
    let actor_id = o
        .opt_str("actor_id")?
        .unwrap_or_else(|| acting_as.to_owned());
    let body = match kind.as_str() {
        "import_started" => ImportBody::Started {
            owner_id: match o.map.get("owner_id") {
                None => Some(actor_id.clone()),
                Some(_) => o.opt_str("owner_id")?,
            },
            json_hash: o.str("json_hash")?,
            file_name: o.str("file_name")?,
            questions_total: o.int("questions_total")?,
        },
        "import_progressed" => ImportBody::Progressed {
            step: o.str("step")?,
            progress: o.int("progress")?,
            questions_imported: o.int("questions_imported")?,
            questions_total: o.int("questions_total")?,
        },
        "import_accessed" => ImportBody::Accessed,
        "import_completed" => ImportBody::Completed,
        "import_abandoned" => ImportBody::Abandoned {
            reason: o.str("reason")?,
        },
        "import_transferred" => ImportBody::Transferred {
            new_owner_id: o.str("new_owner_id")?,
        },
        "import_deleted" => ImportBody::Deleted,
        other => {
            return Err(FieldError::new(
                o.at("kind"),
                format!(
                    "unknown kind {other:?}; expected import_started, import_progressed, import_accessed, import_completed, import_abandoned, import_transferred or import_deleted"
                ),
            ));
        }
    };
    let e = ImportEvent {
        event_id,
        occurred_at,
        import_id: import_id.to_owned(),
        actor_id: Some(actor_id),
        body,
        received_at: Some(r.received_at),
    };
    e.validate().map_err(|err| schema_error(&o.path, err))?;
    Ok(e)
}

/// Parses the body of `POST /v1/imports/{import_id}/events` sent by
/// `acting_as`: one event or a batch.
pub fn import_events(
    body: &Value,
    import_id: &str,
    acting_as: &str,
    r: Receipt,
    max_events: usize,
) -> Result<Vec<ImportEvent>, FieldError> {
    sessionfold_schemas::check_id("import_id", import_id).map_err(|e| schema_error("", e))?;
    items(body, max_events)?
        .into_iter()
        .map(|(path, v)| import_event(path, v, import_id, acting_as, r))
        .collect()
}

/// The path prefix of the `i`th event of `body`, as its errors name it.
pub fn item_path(body: &Value, i: usize) -> String {
    if body.get("events").is_some() {
        format!("events[{i}].")
    } else {
        String::new()
    }
}
