//! The JSON input of sessionfold's ingest API.
//!
//! Browsers and services post activity and import events as JSON; this
//! crate turns a request body into typed events of `sessionfold-schemas`
//! with field-level errors, clamps claimed times to the receipt time, and
//! checks that the caller may emit each event. The producer calls it before
//! anything reaches Kafka, and the Rust client builds its requests from the
//! same wire types. Pure code: no I/O, no Kafka, no clock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sessionfold_auth::Caller;
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
    fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An activity event as a client sends it (docs/contract.md, "Producer input"); the client
/// library builds these and the ingest parses them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActivityInput {
    /// `session_started`, `heartbeat`, `page_viewed` or `session_ended`.
    pub kind: String,
    /// Acting user.
    pub user_id: String,
    /// Session.
    pub session_id: String,
    /// Unique id; set it so that a retried request is applied once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// RFC 3339 event time; the time received when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// session_started: e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// session_started: display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// session_started: membership tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
    /// session_started: roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// session_started: device type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// session_started: browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// session_started: operating system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// session_started: client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// session_started: user agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Page (session_started, heartbeat, page_viewed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// page_viewed: title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// heartbeat: what the user did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// session_ended: `logout` or `closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
        "session_started" => ActivityBody::SessionStarted(SessionStarted {
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
        }),
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

/// Why an event of a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The event is not valid (400).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The caller may not emit it (403).
    #[error("{0}")]
    Forbidden(String),
}

/// An import event as a client sends it to `/v1/imports/{import_id}/events`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ImportInput {
    /// `import_started`, `import_progressed`, `import_accessed`, `import_completed`,
    /// `import_abandoned`, `import_transferred` or `import_deleted`.
    pub kind: String,
    /// Unique id; set it so that a retried request is applied once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// RFC 3339 event time; the time received when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Acting user; only a service token may name someone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// import_started: the owner; `Some(None)` (JSON null) starts a legacy import.
    /// Only a service token may set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Option<String>>,
    /// import_started: hash of the uploaded JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_hash: Option<String>,
    /// import_started: uploaded file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// import_started, import_progressed: questions in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub questions_total: Option<i32>,
    /// import_progressed: step name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// import_progressed: 0 to 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<i32>,
    /// import_progressed: questions imported so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub questions_imported: Option<i32>,
    /// import_abandoned: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// import_transferred: the new owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_owner_id: Option<String>,
}

const FOR_OWN_SUB: &str = "a user token may only emit events for its own sub";

/// Parses one import event object posted by `caller` for `import_id`, and
/// checks that the caller may emit it.
pub fn import_event(
    path: String,
    v: &Value,
    import_id: &str,
    caller: &Caller,
    r: Receipt,
) -> Result<ImportEvent, Refusal> {
    let o = Obj::new(path, v)?;
    let kind = o.str("kind")?;
    let event_id = o
        .opt_str("event_id")?
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let occurred_at = r.clamp(o.time("occurred_at")?);
    let actor_id = match o.opt_str("actor_id")? {
        Some(a) if !caller.may_act_for(&a) => {
            return Err(Refusal::Forbidden(format!(
                "{}: {FOR_OWN_SUB}",
                o.at("actor_id")
            )));
        }
        Some(a) => a,
        None => caller.user_id.clone(),
    };
    let body = match kind.as_str() {
        "import_started" => {
            let owner_id = match o.map.get("owner_id") {
                None => Some(actor_id.clone()),
                Some(_) => {
                    let named = o.opt_str("owner_id")?;
                    let allowed = match &named {
                        Some(owner) => caller.may_act_for(owner),
                        None => caller.is_service(),
                    };
                    if !allowed {
                        return Err(Refusal::Forbidden(format!(
                            "{}: only a service token may start an import for another owner or a legacy import",
                            o.at("owner_id")
                        )));
                    }
                    named
                }
            };
            ImportBody::Started {
                owner_id,
                json_hash: o.str("json_hash")?,
                file_name: o.str("file_name")?,
                questions_total: o.int("questions_total")?,
            }
        }
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
        "import_transferred" => {
            if !caller.may_transfer_imports() {
                return Err(Refusal::Forbidden(
                    "only an admin or IMPORT_ADMIN may transfer an import".into(),
                ));
            }
            ImportBody::Transferred {
                new_owner_id: o.str("new_owner_id")?,
            }
        }
        "import_deleted" => ImportBody::Deleted,
        other => {
            return Err(FieldError::new(
                o.at("kind"),
                format!(
                    "unknown kind {other:?}; expected import_started, import_progressed, import_accessed, import_completed, import_abandoned, import_transferred or import_deleted"
                ),
            )
            .into());
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

/// Parses the body of `POST /v1/imports/{import_id}/events`: one event or a batch.
pub fn import_request(
    body: &Value,
    import_id: &str,
    caller: &Caller,
    r: Receipt,
    max_events: usize,
) -> Result<Vec<ImportEvent>, Refusal> {
    sessionfold_schemas::check_id("import_id", import_id).map_err(|e| schema_error("", e))?;
    items(body, max_events)?
        .into_iter()
        .map(|(path, v)| import_event(path, v, import_id, caller, r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_700_000_000_000;
    fn r() -> Receipt {
        Receipt {
            received_at: NOW,
            max_clock_skew: 60_000,
        }
    }

    fn err(body: Value) -> String {
        activity_request(&body, r(), 10)
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn heartbeat_defaults() {
        let v = json!({"kind": "heartbeat", "user_id": "u1", "session_id": "s1", "page": "/x"});
        let e = activity_request(&v, r(), 10).expect("valid").remove(0);
        assert_eq!(e.occurred_at, NOW);
        assert_eq!(e.received_at, Some(NOW));
        assert_eq!(e.event_id.len(), 36);
        assert_eq!(
            e.body,
            ActivityBody::Heartbeat {
                page: Some("/x".into()),
                activity: Interaction::Timer
            }
        );
    }

    #[test]
    fn clock_skew_is_clamped_only_past_the_limit() {
        let at = |t: &str| {
            let v =
                json!({"kind": "heartbeat", "user_id": "u", "session_id": "s", "occurred_at": t});
            activity_request(&v, r(), 10).expect("valid")[0].occurred_at
        };
        // 2023-11-14T22:13:20Z is NOW.
        assert_eq!(at("2023-11-14T22:14:20Z"), NOW + 60_000);
        assert_eq!(at("2023-11-14T22:14:20.001Z"), NOW);
        assert_eq!(at("2023-11-14T21:13:20Z"), NOW - 3_600_000);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(json!({"user_id": "u", "session_id": "s"})),
            "kind: is required"
        );
        assert_eq!(
            err(json!({"kind": "wave", "user_id": "u", "session_id": "s"})),
            "kind: unknown kind \"wave\"; expected session_started, heartbeat, page_viewed or session_ended"
        );
        assert_eq!(
            err(json!({"events": [
                {"kind": "heartbeat", "user_id": "u", "session_id": "s"},
                {"kind": "heartbeat", "user_id": "u", "session_id": "s", "activity": "dance"}]})),
            "events[1].activity: must be one of mouse, keyboard, click, scroll, visibility, timer, navigation"
        );
        assert_eq!(
            err(json!({"kind": "session_ended", "user_id": "u", "session_id": "s"})),
            "reason: is required"
        );
        assert_eq!(
            err(json!({"kind": "page_viewed", "user_id": "u", "session_id": "s", "page": 3})),
            "page: must be a string"
        );
        assert_eq!(
            err(
                json!({"kind": "heartbeat", "user_id": "u", "session_id": "s", "occurred_at": "yesterday"})
            ),
            "occurred_at: must be an RFC 3339 time (premature end of input)"
        );
        assert_eq!(err(json!({"events": []})), "events: must not be empty");
        assert_eq!(err(json!([1])), "body: must be a JSON object");
        assert_eq!(
            err(
                json!({"kind": "session_started", "user_id": "u", "session_id": "s", "email": "a@b", "roles": ["x", 1]})
            ),
            "roles[1]: must be a string"
        );
        let long = "x".repeat(300);
        assert_eq!(
            err(json!({"kind": "heartbeat", "user_id": long, "session_id": "s"})),
            "user_id: longer than 256 bytes"
        );
    }

    #[test]
    fn client_input_serializes_to_what_the_parser_reads() {
        let input = ActivityInput {
            kind: "page_viewed".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            event_id: Some("id-1".into()),
            page: Some("/p".into()),
            title: Some("P".into()),
            ..ActivityInput::default()
        };
        let v = serde_json::to_value(&input).expect("serializes");
        let e = activity_request(&v, r(), 10).expect("valid").remove(0);
        assert_eq!(e.event_id, "id-1");
        assert_eq!(
            e.body,
            ActivityBody::PageViewed {
                page: "/p".into(),
                title: Some("P".into())
            }
        );
    }

    fn caller(sub: &str, roles: &[&str], permissions: &[&str]) -> Caller {
        Caller {
            user_id: sub.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            ..Caller::default()
        }
    }

    fn import(body: Value, who: &Caller) -> Result<ImportEvent, Refusal> {
        import_request(&body, "imp-1", who, r(), 10).map(|mut v| v.remove(0))
    }

    fn started() -> Value {
        json!({"kind": "import_started", "json_hash": "h1", "file_name": "a.json", "questions_total": 10})
    }

    #[test]
    fn import_owner_and_actor_come_from_the_token() {
        let alice = caller("alice", &[], &[]);
        let e = import(started(), &alice).expect("valid");
        assert_eq!(e.import_id, "imp-1");
        assert_eq!(e.actor_id.as_deref(), Some("alice"));
        assert_eq!(
            e.body,
            ImportBody::Started {
                owner_id: Some("alice".into()),
                json_hash: "h1".into(),
                file_name: "a.json".into(),
                questions_total: 10
            }
        );
        let mut own = started();
        own["owner_id"] = json!("alice");
        own["actor_id"] = json!("alice");
        assert!(import(own, &alice).is_ok());
    }

    #[test]
    fn users_may_not_act_for_others_or_start_legacy_imports() {
        let alice = caller("alice", &["admin"], &[]);
        let mut other_actor = started();
        other_actor["actor_id"] = json!("bob");
        assert_eq!(
            import(other_actor.clone(), &alice),
            Err(Refusal::Forbidden(
                "actor_id: a user token may only emit events for its own sub".into()
            ))
        );
        let mut legacy = started();
        legacy["owner_id"] = Value::Null;
        assert!(matches!(
            import(legacy.clone(), &alice),
            Err(Refusal::Forbidden(_))
        ));
        let service = caller("importer", &["service"], &[]);
        let e = import(legacy, &service).expect("service may start legacy imports");
        assert!(matches!(e.body, ImportBody::Started { owner_id: None, .. }));
        let e = import(other_actor, &service).expect("service may name the actor");
        assert_eq!(e.actor_id.as_deref(), Some("bob"));
        assert!(matches!(e.body, ImportBody::Started { owner_id: Some(ref o), .. } if o == "bob"));
    }

    #[test]
    fn only_import_admins_transfer() {
        let t = json!({"kind": "import_transferred", "new_owner_id": "bob"});
        assert_eq!(
            import(t.clone(), &caller("alice", &[], &[])),
            Err(Refusal::Forbidden(
                "only an admin or IMPORT_ADMIN may transfer an import".into()
            ))
        );
        assert!(import(t.clone(), &caller("alice", &[], &["IMPORT_ADMIN"])).is_ok());
        assert!(import(t, &caller("root", &["admin"], &[])).is_ok());
    }

    #[test]
    fn import_errors_name_the_field() {
        let alice = caller("alice", &["admin"], &[]);
        let invalid = |body: Value| match import(body, &alice) {
            Err(Refusal::Invalid(f)) => f.to_string(),
            other => panic!("expected a field error, got {other:?}"),
        };
        let progress = |p: i64, done: i64, total: i64| {
            json!({"kind": "import_progressed", "step": "parse", "progress": p,
                   "questions_imported": done, "questions_total": total})
        };
        assert_eq!(
            invalid(progress(101, 1, 2)),
            "progress: must be between 0 and 100"
        );
        assert_eq!(
            invalid(progress(50, 3, 2)),
            "questions_imported: must be between 0 and questions_total"
        );
        assert_eq!(
            invalid(json!({"kind": "import_transferred"})),
            "new_owner_id: is required"
        );
        assert_eq!(
            invalid(
                json!({"kind": "import_progressed", "step": "s", "progress": "half",
                           "questions_imported": 1, "questions_total": 2})
            ),
            "progress: must be a number"
        );
        assert_eq!(
            invalid(json!({"events": [started(), {"kind": "import_paused"}]})),
            "events[1].kind: unknown kind \"import_paused\"; expected import_started, import_progressed, import_accessed, import_completed, import_abandoned, import_transferred or import_deleted"
        );
        assert_eq!(
            import_request(&started(), " ", &alice, r(), 10),
            Err(Refusal::Invalid(FieldError::new(
                "import_id",
                "must not be empty"
            )))
        );
    }

    #[test]
    fn client_import_input_serializes_to_what_the_parser_reads() {
        let input = ImportInput {
            kind: "import_started".into(),
            owner_id: Some(None),
            json_hash: Some("h".into()),
            file_name: Some("f.json".into()),
            questions_total: Some(3),
            actor_id: Some("bob".into()),
            ..ImportInput::default()
        };
        let v = serde_json::to_value(&input).expect("serializes");
        let e = import(v, &caller("svc", &["service"], &[])).expect("valid");
        assert!(matches!(e.body, ImportBody::Started { owner_id: None, .. }));
        assert_eq!(e.actor_id.as_deref(), Some("bob"));
    }
}
