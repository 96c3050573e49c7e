//! The bodies the ingest reads and answers, as its OpenAPI document
//! describes them. Answers are written through these types; requests are
//! read field by field (to name the field that is wrong), so their types
//! here only describe them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::input::{ActivityInput, ImportInput};

/// One activity event, or several in `events`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(
    dead_code,
    reason = "describes a body the handler reads field by field"
)]
pub(crate) enum ActivityRequest {
    /// One event.
    One(Box<ActivityInput>),
    /// Several events, applied in order.
    Batch {
        /// 1 to `--max-events` events.
        events: Vec<ActivityInput>,
    },
}

/// One import event, or several in `events`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(
    dead_code,
    reason = "describes a body the handler reads field by field"
)]
pub(crate) enum ImportRequest {
    /// One event.
    One(Box<ImportInput>),
    /// Several events, applied in order.
    Batch {
        /// 1 to `--max-events` events.
        events: Vec<ImportInput>,
    },
}

/// The end of a browser session, sent as the tab closes.
#[derive(Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "describes a body the handler reads field by field"
)]
pub(crate) struct EndRequest {
    /// The session's end ticket.
    ticket: String,
    /// Unique id; a repeated one is applied once.
    event_id: Option<String>,
    /// `closed` (the default) or `logout`.
    reason: Option<String>,
    /// RFC 3339 time of the end; the time received when absent.
    occurred_at: Option<String>,
}

/// What becomes of a forgotten user's imports.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ImportsRule {
    /// `"delete"`: the imports are deleted.
    Delete(DeleteWord),
    /// The imports pass to another user.
    Transfer {
        /// The user who takes the imports over.
        transfer_to: String,
    },
}

/// The word `delete`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeleteWord {
    /// Delete the imports.
    Delete,
}

/// An erasure request.
#[derive(Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "describes a body the handler reads field by field"
)]
pub(crate) struct ErasureRequest {
    /// Required: there is no default, the caller decides.
    imports: ImportsRule,
}

/// A user forgotten.
#[derive(Serialize, ToSchema)]
pub(crate) struct Erasure {
    /// The forgotten user.
    pub user_id: String,
    /// RFC 3339 time of the erasure.
    #[schema(format = DateTime)]
    pub erased_at: Option<String>,
    /// The admin or service that asked.
    pub requested_by: String,
    /// What became of the user's imports.
    pub imports: ImportsRule,
}

/// Events handed to Kafka.
#[derive(Serialize, ToSchema)]
pub(crate) struct AcceptedBody {
    /// Their ids, in the request's order.
    pub accepted: Vec<String>,
    /// True when the broker stored them before the answer; false when they
    /// wait in the ingest's buffer.
    pub acknowledged: bool,
}

/// An end ticket for the caller's own session.
#[derive(Serialize, ToSchema)]
pub(crate) struct TicketBody {
    /// Send it in `POST /v1/activity/end`; it is not a bearer token.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

/// The body of every refusal.
#[derive(Serialize, ToSchema)]
pub(crate) struct Refusal {
    /// What was wrong, and what to do.
    pub error: String,
    /// The field that is wrong (400, 410).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Events accepted before the refusal (503): send the others again,
    /// with the same ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Vec<String>>,
    /// The record that stands (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub kept: Option<serde_json::Value>,
}

impl Refusal {
    /// A refusal that only says what was wrong.
    pub fn new(error: impl Into<String>) -> Refusal {
        Refusal {
            error: error.into(),
            field: None,
            accepted: None,
            kept: None,
        }
    }
}

/// The answers of the event routes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "describes answers written through ApiError")]
pub(crate) enum EventAnswers {
    /// Accepted: in the ingest's buffer, or stored by the broker when
    /// `acknowledged` is true.
    #[response(status = 202)]
    Accepted(AcceptedBody),
    /// A field is invalid; `field` names it. Nothing was accepted.
    #[response(status = 400)]
    Invalid(Refusal),
    /// No valid token.
    #[response(status = 401)]
    Unauthorized(Refusal),
    /// The token may not emit these events. Nothing was accepted.
    #[response(status = 403)]
    Forbidden(Refusal),
    /// An event names a user who asked to be forgotten. Nothing was accepted.
    #[response(status = 410)]
    Forgotten(Refusal),
    /// The body is over the size limit.
    #[response(status = 413)]
    TooLarge(Refusal),
    /// The broker is away: `accepted` lists what was kept; send the rest
    /// again after `Retry-After`, with the same event ids.
    #[response(status = 503)]
    Unavailable(Refusal),
}
