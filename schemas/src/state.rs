//! Folded state: the values of the compacted changelog topics and of the
//! processor's store.

use apache_avro::types::Value;

use crate::Millis;
use crate::avro::{self, Fields, Record};
use crate::error::SchemaError;

symbols! {
    /// Why a session stopped being active.
    EndedReason {
        Logout = "logout",
        Closed = "closed",
        Expired = "expired",
    }
}

symbols! {
    /// Where an import is in its life.
    ImportStatus {
        InProgress = "in_progress",
        Completed = "completed",
        Abandoned = "abandoned",
        Deleted = "deleted",
    }
}

/// An applied event id kept for deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenEvent {
    /// 64-bit hash of the event id.
    pub id_hash: i64,
    /// The event's time, which decides when the entry may be dropped.
    pub occurred_at: Millis,
}

/// One session of a user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionState {
    /// Session id.
    pub session_id: Box<str>,
    /// Event time of session_started, once applied.
    pub started_at: Option<Millis>,
    /// desktop, mobile, tablet, …
    pub device_type: Option<Box<str>>,
    /// Browser family.
    pub browser: Option<Box<str>>,
    /// Operating system.
    pub os: Option<Box<str>>,
    /// Client address.
    pub ip_address: Option<Box<str>>,
    /// Raw user agent.
    pub user_agent: Option<Box<str>>,
    /// Page of the latest event (by event time) that named one.
    pub current_page: Option<Box<str>>,
    /// Event time current_page was taken from.
    pub page_at: Millis,
    /// Greatest occurred_at applied.
    pub last_activity: Millis,
    /// Started, not ended and not expired as of the last tick.
    pub active: bool,
    /// Event time of the end.
    pub ended_at: Option<Millis>,
    /// Why it ended.
    pub ended_reason: Option<EndedReason>,
    /// page_viewed events applied.
    pub page_views: i64,
    /// heartbeat events applied.
    pub heartbeats: i64,
}

/// The presence state of one user: the value of the presence changelog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPresence {
    /// User id (the key).
    pub user_id: Box<str>,
    /// E-mail from the latest session_started.
    pub email: Option<Box<str>>,
    /// Display name.
    pub full_name: Option<Box<str>>,
    /// Membership tier.
    pub membership: Option<Box<str>>,
    /// Roles.
    pub roles: Vec<String>,
    /// Event time of the session_started the profile came from.
    pub profile_at: Millis,
    /// Sessions, sorted by session id.
    pub sessions: Vec<SessionState>,
    /// Event ids applied within the deduplication window, sorted.
    pub recent_events: Vec<SeenEvent>,
    /// Input partition of the last applied event.
    pub source_partition: i32,
    /// Input offset of the last applied event.
    pub source_offset: i64,
}

/// The state of one import job: the value of the import-ownership changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportState {
    /// Import id (the key).
    pub import_id: String,
    /// Owner; `None` for a legacy import.
    pub owner_id: Option<String>,
    /// Owner before the last transfer.
    pub previous_owner_id: Option<String>,
    /// Lifecycle status.
    pub status: ImportStatus,
    /// Hash of the uploaded JSON.
    pub json_hash: String,
    /// Uploaded file name.
    pub file_name: String,
    /// Last step reported.
    pub step: Option<String>,
    /// 0 to 100.
    pub progress: i32,
    /// Questions imported so far.
    pub questions_imported: i32,
    /// Questions in the file.
    pub questions_total: i32,
    /// Event time of import_started.
    pub started_at: Millis,
    /// Latest event time of any event on the import.
    pub last_accessed_at: Millis,
    /// When it completed, was abandoned or deleted.
    pub finished_at: Option<Millis>,
    /// Reason given when abandoned.
    pub abandon_reason: Option<String>,
    /// Event ids applied within the deduplication window, sorted.
    pub recent_events: Vec<SeenEvent>,
    /// Input partition of the last applied event.
    pub source_partition: i32,
    /// Input offset of the last applied event.
    pub source_offset: i64,
}

fn seen_to_value(seen: &[SeenEvent]) -> Value {
    Value::Array(
        seen.iter()
            .map(|s| {
                Record::new()
                    .put("id_hash", Value::Long(s.id_hash))
                    .put("occurred_at", avro::millis(s.occurred_at))
                    .build()
            })
            .collect(),
    )
}

/// Converts every item into a vector of exactly their number: collecting a
/// fallible iterator starts at four slots, and a state is held per user, so
/// the three spare `SessionState`s would cost about a kilobyte per user.
fn exact<T>(
    items: Vec<Value>,
    f: impl Fn(Value) -> Result<T, SchemaError>,
) -> Result<Vec<T>, SchemaError> {
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        out.push(f(v)?);
    }
    Ok(out)
}

fn seen_from(items: Vec<Value>) -> Result<Vec<SeenEvent>, SchemaError> {
    exact(items, |v| {
        let mut f = Fields::open("SeenEvent", "recent_events", v)?;
        Ok(SeenEvent {
            id_hash: f.long("id_hash")?,
            occurred_at: f.millis("occurred_at")?,
        })
    })
}

impl SessionState {
    fn to_value(&self) -> Value {
        Record::new()
            .put("session_id", avro::string(&self.session_id))
            .put("started_at", avro::opt_millis(self.started_at))
            .put("device_type", avro::opt_string(self.device_type.as_deref()))
            .put("browser", avro::opt_string(self.browser.as_deref()))
            .put("os", avro::opt_string(self.os.as_deref()))
            .put("ip_address", avro::opt_string(self.ip_address.as_deref()))
            .put("user_agent", avro::opt_string(self.user_agent.as_deref()))
            .put(
                "current_page",
                avro::opt_string(self.current_page.as_deref()),
            )
            .put("page_at", avro::millis(self.page_at))
            .put("last_activity", avro::millis(self.last_activity))
            .put("active", Value::Boolean(self.active))
            .put("ended_at", avro::opt_millis(self.ended_at))
            .put(
                "ended_reason",
                avro::opt_symbol(self.ended_reason.map(|r| (r.index(), r.as_str()))),
            )
            .put("page_views", Value::Long(self.page_views))
            .put("heartbeats", Value::Long(self.heartbeats))
            .build()
    }

    fn from_value(v: Value) -> Result<SessionState, SchemaError> {
        let mut f = Fields::open("SessionState", "sessions", v)?;
        Ok(SessionState {
            session_id: f.string("session_id")?.into(),
            started_at: f.opt_millis("started_at")?,
            device_type: f.opt_string("device_type")?.map(Into::into),
            browser: f.opt_string("browser")?.map(Into::into),
            os: f.opt_string("os")?.map(Into::into),
            ip_address: f.opt_string("ip_address")?.map(Into::into),
            user_agent: f.opt_string("user_agent")?.map(Into::into),
            current_page: f.opt_string("current_page")?.map(Into::into),
            page_at: f.millis("page_at")?,
            last_activity: f.millis("last_activity")?,
            active: f.boolean("active")?,
            ended_at: f.opt_millis("ended_at")?,
            ended_reason: f.opt_symbol("ended_reason", EndedReason::parse)?,
            page_views: f.long("page_views")?,
            heartbeats: f.long("heartbeats")?,
        })
    }
}

impl UserPresence {
    /// The Avro value of this state in the presence schema.
    pub fn to_value(&self) -> Value {
        Record::new()
            .put("user_id", avro::string(&self.user_id))
            .put("email", avro::opt_string(self.email.as_deref()))
            .put("full_name", avro::opt_string(self.full_name.as_deref()))
            .put("membership", avro::opt_string(self.membership.as_deref()))
            .put("roles", avro::strings(&self.roles))
            .put("profile_at", avro::millis(self.profile_at))
            .put(
                "sessions",
                Value::Array(self.sessions.iter().map(SessionState::to_value).collect()),
            )
            .put("recent_events", seen_to_value(&self.recent_events))
            .put("source_partition", Value::Int(self.source_partition))
            .put("source_offset", Value::Long(self.source_offset))
            .build()
    }

    /// Reads a state from a value of the presence schema.
    pub fn from_value(v: Value) -> Result<UserPresence, SchemaError> {
        let mut f = Fields::open("UserPresence", "", v)?;
        Ok(UserPresence {
            user_id: f.string("user_id")?.into(),
            email: f.opt_string("email")?.map(Into::into),
            full_name: f.opt_string("full_name")?.map(Into::into),
            membership: f.opt_string("membership")?.map(Into::into),
            roles: f.strings("roles")?,
            profile_at: f.millis("profile_at")?,
            sessions: exact(f.array("sessions")?, SessionState::from_value)?,
            recent_events: seen_from(f.array("recent_events")?)?,
            source_partition: f.int("source_partition")?,
            source_offset: f.long("source_offset")?,
        })
    }

    /// The session with this id, if tracked.
    pub fn session(&self, session_id: &str) -> Option<&SessionState> {
        self.sessions
            .binary_search_by(|s| (*s.session_id).cmp(session_id))
            .ok()
            .map(|i| &self.sessions[i])
    }
}

impl ImportState {
    /// The Avro value of this state in the import-state schema.
    pub fn to_value(&self) -> Value {
        Record::new()
            .put("import_id", avro::string(&self.import_id))
            .put("owner_id", avro::opt_string(self.owner_id.as_deref()))
            .put(
                "previous_owner_id",
                avro::opt_string(self.previous_owner_id.as_deref()),
            )
            .put("status", self.status.to_value())
            .put("json_hash", avro::string(&self.json_hash))
            .put("file_name", avro::string(&self.file_name))
            .put("step", avro::opt_string(self.step.as_deref()))
            .put("progress", Value::Int(self.progress))
            .put("questions_imported", Value::Int(self.questions_imported))
            .put("questions_total", Value::Int(self.questions_total))
            .put("started_at", avro::millis(self.started_at))
            .put("last_accessed_at", avro::millis(self.last_accessed_at))
            .put("finished_at", avro::opt_millis(self.finished_at))
            .put(
                "abandon_reason",
                avro::opt_string(self.abandon_reason.as_deref()),
            )
            .put("recent_events", seen_to_value(&self.recent_events))
            .put("source_partition", Value::Int(self.source_partition))
            .put("source_offset", Value::Long(self.source_offset))
            .build()
    }

    /// Reads a state from a value of the import-state schema.
    pub fn from_value(v: Value) -> Result<ImportState, SchemaError> {
        let mut f = Fields::open("ImportState", "", v)?;
        Ok(ImportState {
            import_id: f.string("import_id")?,
            owner_id: f.opt_string("owner_id")?,
            previous_owner_id: f.opt_string("previous_owner_id")?,
            status: f.symbol("status", ImportStatus::parse)?,
            json_hash: f.string("json_hash")?,
            file_name: f.string("file_name")?,
            step: f.opt_string("step")?,
            progress: f.int("progress")?,
            questions_imported: f.int("questions_imported")?,
            questions_total: f.int("questions_total")?,
            started_at: f.millis("started_at")?,
            last_accessed_at: f.millis("last_accessed_at")?,
            finished_at: f.opt_millis("finished_at")?,
            abandon_reason: f.opt_string("abandon_reason")?,
            recent_events: seen_from(f.array("recent_events")?)?,
            source_partition: f.int("source_partition")?,
            source_offset: f.long("source_offset")?,
        })
    }
}
