//! JSON input of the ingest API, turned into typed events with field-level errors.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sessionfold_schemas::{
    ActivityBody, ActivityEvent, EndReason, Interaction, Millis, SchemaError, SessionStarted,
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

/// An activity event as a client sends it (section 9 of the spec); the client
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

/// Parses a request body: one event object, or `{"events": [...]}`.
pub fn activity_request(
    body: &Value,
    r: Receipt,
    max_events: usize,
) -> Result<Vec<ActivityEvent>, FieldError> {
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
            items
                .iter()
                .enumerate()
                .map(|(i, v)| activity_event(format!("events[{i}]."), v, r))
                .collect()
        }
        Some(_) => Err(FieldError::new("events", "must be an array")),
        None => Ok(vec![activity_event(String::new(), body, r)?]),
    }
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
}
