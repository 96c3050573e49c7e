//! Activity events: what browsers and services report about sessions.

use apache_avro::types::Value;

use crate::Millis;
use crate::avro::{self, Fields, Record};
use crate::error::SchemaError;

symbols! {
    /// What the user did that caused a heartbeat.
    Interaction {
        Mouse = "mouse",
        Keyboard = "keyboard",
        Click = "click",
        Scroll = "scroll",
        Visibility = "visibility",
        Timer = "timer",
        Navigation = "navigation",
    }
}

symbols! {
    /// Why a session ended, as reported by the client.
    EndReason {
        Logout = "logout",
        Closed = "closed",
    }
}

/// The profile and device a session started with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionStarted {
    /// The user's e-mail address.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// Membership tier or plan.
    pub membership: Option<String>,
    /// Roles the application gives the user.
    pub roles: Vec<String>,
    /// desktop, mobile, tablet, …
    pub device_type: Option<String>,
    /// Browser family.
    pub browser: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Client address as the application saw it.
    pub ip_address: Option<String>,
    /// Raw user agent.
    pub user_agent: Option<String>,
    /// Page the session started on.
    pub page: Option<String>,
}

/// The kind of an activity event with its own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityBody {
    /// A session began.
    SessionStarted(Box<SessionStarted>),
    /// The user is still there.
    Heartbeat {
        /// Page the user is on.
        page: Option<String>,
        /// What caused the heartbeat.
        activity: Interaction,
    },
    /// The user opened a page.
    PageViewed {
        /// The page.
        page: String,
        /// Its title.
        title: Option<String>,
    },
    /// The session ended.
    SessionEnded {
        /// Why.
        reason: EndReason,
    },
}

impl ActivityBody {
    /// The event kind as named in the JSON API and in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ActivityBody::SessionStarted(_) => "session_started",
            ActivityBody::Heartbeat { .. } => "heartbeat",
            ActivityBody::PageViewed { .. } => "page_viewed",
            ActivityBody::SessionEnded { .. } => "session_ended",
        }
    }
}

/// One record of the activity topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEvent {
    /// Unique id; repeats are applied once.
    pub event_id: String,
    /// Event time.
    pub occurred_at: Millis,
    /// The acting user (the record key).
    pub user_id: String,
    /// The session the event belongs to.
    pub session_id: String,
    /// Kind and fields.
    pub body: ActivityBody,
    /// When the producer accepted it (absent in version 1 records).
    pub received_at: Option<Millis>,
}

/// Longest identifier accepted in ids and keys.
pub const MAX_ID_LEN: usize = 256;
/// Longest free-text field accepted.
pub const MAX_TEXT_LEN: usize = 2048;

/// Checks an identifier: not blank, at most [`MAX_ID_LEN`] bytes.
pub fn check_id(field: &str, value: &str) -> Result<(), SchemaError> {
    // An id that opens with a visible ASCII character is not blank: decided
    // without the Unicode-aware trim that every event's ids would pay for.
    let visible_start = value
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii() && !matches!(b, b' ' | b'\t'..=b'\r'));
    if !visible_start && value.trim().is_empty() {
        return Err(SchemaError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(SchemaError::invalid(
            field,
            format!("longer than {MAX_ID_LEN} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn check_text(field: &str, value: Option<&str>) -> Result<(), SchemaError> {
    match value {
        Some(v) if v.len() > MAX_TEXT_LEN => Err(SchemaError::invalid(
            field,
            format!("longer than {MAX_TEXT_LEN} bytes"),
        )),
        _ => Ok(()),
    }
}

impl ActivityEvent {
    /// Checks the values the schema cannot: non-empty ids and bounded text.
    pub fn validate(&self) -> Result<(), SchemaError> {
        check_id("event_id", &self.event_id)?;
        check_id("user_id", &self.user_id)?;
        check_id("session_id", &self.session_id)?;
        if self.occurred_at < 0 {
            return Err(SchemaError::invalid("occurred_at", "before 1970"));
        }
        match &self.body {
            ActivityBody::SessionStarted(s) => {
                check_id("email", &s.email)?;
                for (name, v) in [
                    ("full_name", &s.full_name),
                    ("membership", &s.membership),
                    ("device_type", &s.device_type),
                    ("browser", &s.browser),
                    ("os", &s.os),
                    ("ip_address", &s.ip_address),
                    ("user_agent", &s.user_agent),
                    ("page", &s.page),
                ] {
                    check_text(name, v.as_deref())?;
                }
                for r in &s.roles {
                    check_id("roles", r)?;
                }
            }
            ActivityBody::Heartbeat { page, .. } => check_text("page", page.as_deref())?,
            ActivityBody::PageViewed { page, title } => {
                check_id("page", page)?;
                check_text("title", title.as_deref())?;
            }
            ActivityBody::SessionEnded { .. } => {}
        }
        Ok(())
    }

    /// The Avro value of this event in the current activity schema.
    pub fn to_value(&self) -> Value {
        let body = match &self.body {
            ActivityBody::SessionStarted(s) => avro::branch(
                0,
                Record::new()
                    .put("email", avro::string(&s.email))
                    .put("full_name", avro::opt_string(s.full_name.as_deref()))
                    .put("membership", avro::opt_string(s.membership.as_deref()))
                    .put("roles", avro::strings(&s.roles))
                    .put("device_type", avro::opt_string(s.device_type.as_deref()))
                    .put("browser", avro::opt_string(s.browser.as_deref()))
                    .put("os", avro::opt_string(s.os.as_deref()))
                    .put("ip_address", avro::opt_string(s.ip_address.as_deref()))
                    .put("user_agent", avro::opt_string(s.user_agent.as_deref()))
                    .put("page", avro::opt_string(s.page.as_deref()))
                    .build(),
            ),
            ActivityBody::Heartbeat { page, activity } => avro::branch(
                1,
                Record::new()
                    .put("page", avro::opt_string(page.as_deref()))
                    .put("activity", activity.to_value())
                    .build(),
            ),
            ActivityBody::PageViewed { page, title } => avro::branch(
                2,
                Record::new()
                    .put("page", avro::string(page))
                    .put("title", avro::opt_string(title.as_deref()))
                    .build(),
            ),
            ActivityBody::SessionEnded { reason } => {
                avro::branch(3, Record::new().put("reason", reason.to_value()).build())
            }
        };
        Record::new()
            .put("event_id", avro::string(&self.event_id))
            .put("occurred_at", avro::millis(self.occurred_at))
            .put("user_id", avro::string(&self.user_id))
            .put("session_id", avro::string(&self.session_id))
            .put("event", body)
            .put("received_at", avro::opt_millis(self.received_at))
            .build()
    }

    /// Reads an event from a value of the current activity schema.
    pub fn from_value(value: Value) -> Result<ActivityEvent, SchemaError> {
        let mut f = Fields::open("ActivityEvent", "", value)?;
        let event_id = f.string("event_id")?;
        let occurred_at = f.millis("occurred_at")?;
        let user_id = f.string("user_id")?;
        let session_id = f.string("session_id")?;
        let (branch, fields) = f.branch("event")?;
        let body = match branch {
            0 => {
                let mut s = Fields::open("SessionStarted", "event", Value::Record(fields))?;
                ActivityBody::SessionStarted(Box::new(SessionStarted {
                    email: s.string("email")?,
                    full_name: s.opt_string("full_name")?,
                    membership: s.opt_string("membership")?,
                    roles: s.strings("roles")?,
                    device_type: s.opt_string("device_type")?,
                    browser: s.opt_string("browser")?,
                    os: s.opt_string("os")?,
                    ip_address: s.opt_string("ip_address")?,
                    user_agent: s.opt_string("user_agent")?,
                    page: s.opt_string("page")?,
                }))
            }
            1 => {
                let mut s = Fields::open("Heartbeat", "event", Value::Record(fields))?;
                ActivityBody::Heartbeat {
                    page: s.opt_string("page")?,
                    activity: s.symbol("activity", Interaction::parse)?,
                }
            }
            2 => {
                let mut s = Fields::open("PageViewed", "event", Value::Record(fields))?;
                ActivityBody::PageViewed {
                    page: s.string("page")?,
                    title: s.opt_string("title")?,
                }
            }
            3 => {
                let mut s = Fields::open("SessionEnded", "event", Value::Record(fields))?;
                ActivityBody::SessionEnded {
                    reason: s.symbol("reason", EndReason::parse)?,
                }
            }
            other => {
                return Err(SchemaError::Field {
                    record: "ActivityEvent",
                    field: "event",
                    reason: format!("unknown branch {other}"),
                });
            }
        };
        // Version 1 readers see no received_at; treat its absence as null.
        let received_at = f.opt_millis("received_at").unwrap_or(None);
        Ok(ActivityEvent {
            event_id,
            occurred_at,
            user_id,
            session_id,
            body,
            received_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_id;

    #[test]
    fn an_id_is_blank_exactly_when_trimming_leaves_nothing() {
        let mut cases: Vec<String> = (0u8..128).map(|b| char::from(b).to_string()).collect();
        for c in ['\u{85}', '\u{a0}', '\u{2003}', '\u{3000}', 'é'] {
            cases.push(c.to_string());
        }
        let more: Vec<String> = cases
            .iter()
            .flat_map(|a| [format!("{a} "), format!("{a}x"), format!(" {a}")])
            .collect();
        cases.extend(more);
        cases.push(String::new());
        for c in &cases {
            assert_eq!(check_id("id", c).is_err(), c.trim().is_empty(), "id {c:?}");
        }
    }
}
