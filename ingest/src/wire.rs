//! The request bodies as clients write them: the Rust client builds these
//! and the parser reads the JSON they serialize to.

use serde::Serialize;

/// An activity event as a client sends it (docs/contract.md, "Producer input"); the client
/// library builds these and the ingest parses them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityInput {
    /// `session_started`, `heartbeat`, `page_viewed` or `session_ended`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(session_started|heartbeat|page_viewed|session_ended)$")
    )]
    pub kind: String,
    /// Acting user.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S", max_length = 256))]
    pub user_id: String,
    /// Session.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S", max_length = 256))]
    pub session_id: String,
    /// Unique id; set it so that a retried request is applied once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S", max_length = 256))]
    pub event_id: Option<String>,
    /// RFC 3339 event time; the time received when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
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

/// An import event as a client sends it to `/v1/imports/{import_id}/events`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportInput {
    /// `import_started`, `import_progressed`, `import_accessed`, `import_completed`,
    /// `import_abandoned`, `import_transferred` or `import_deleted`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^import_(started|progressed|accessed|completed|abandoned|transferred|deleted)$"
        )
    )]
    pub kind: String,
    /// Unique id; set it so that a retried request is applied once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S", max_length = 256))]
    pub event_id: Option<String>,
    /// RFC 3339 event time; the time received when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub occurred_at: Option<String>,
    /// Acting user; only a service token may name someone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// import_started: the owner; null starts a legacy import (one without owner).
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
