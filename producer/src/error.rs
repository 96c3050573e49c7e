use crate::bodies::Refusal;
use crate::input::FieldError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An ingest request that could not be accepted whole.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid; names the field.
    #[error("{0}")]
    BadRequest(FieldError),
    /// The caller may not emit these events.
    #[error("{0}")]
    Forbidden(String),
    /// The events name a user who asked to be forgotten.
    #[error("{0}")]
    Gone(FieldError),
    /// The request contradicts what is kept; `kept` says what.
    #[error("{message}")]
    Conflict {
        /// What contradicts what.
        message: String,
        /// The record that stands.
        kept: serde_json::Value,
    },
    /// The caller is over its share of a limited route; retry after this long.
    #[error("too many requests")]
    TooMany(std::time::Duration),
    /// The body is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The producer buffer is full; `accepted` lists the events queued before it filled.
    #[error("broker unavailable and buffer full")]
    Unavailable {
        /// Events queued before the buffer filled.
        accepted: Vec<String>,
    },
    /// The Kafka producer is being replaced after a fatal error; `accepted`
    /// lists the events queued before.
    #[error("Kafka producer being replaced")]
    Replacing {
        /// Events queued before.
        accepted: Vec<String>,
    },
    /// The broker did not acknowledge the events of a request that waited
    /// for it; they may still arrive, and may be sent again.
    #[error("not acknowledged by the broker: {0}")]
    NotAcknowledged(String),
    /// Deliveries to Kafka are failing: nothing is accepted until one succeeds.
    #[error("deliveries to Kafka failing")]
    DeliveriesFailing(crate::FailureEpisode),
    /// The broker did not answer for something the request needs (reading
    /// the erasures, acknowledging one); it may be sent again, and
    /// repeating it is harmless.
    #[error("broker unavailable: {0}")]
    BrokerAway(String),
    /// Something on our side failed; details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Gone(_) => "forgotten",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Conflict { .. } => "conflict",
            ApiError::TooMany(_) => "rate_limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Replacing { .. } => "replacing_producer",
            ApiError::NotAcknowledged(_) => "not_acknowledged",
            ApiError::DeliveriesFailing(_) => "deliveries_failing",
            ApiError::BrokerAway(_) => "broker_away",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<crate::input::Refusal> for ApiError {
    fn from(r: crate::input::Refusal) -> Self {
        match r {
            crate::input::Refusal::Invalid(f) => ApiError::BadRequest(f),
            crate::input::Refusal::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let with_field = |f: FieldError| Refusal {
            field: Some(f.field.clone()),
            ..Refusal::new(f.to_string())
        };
        let holding = |error: String, accepted: Vec<String>| Refusal {
            accepted: Some(accepted),
            ..Refusal::new(error)
        };
        match self {
            ApiError::BadRequest(f) => (StatusCode::BAD_REQUEST, Json(with_field(f))).into_response(),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, Json(Refusal::new(m))).into_response(),
            ApiError::Gone(f) => (StatusCode::GONE, Json(with_field(f))).into_response(),
            ApiError::Conflict { message, kept } => (
                StatusCode::CONFLICT,
                Json(Refusal {
                    kept: Some(kept),
                    ..Refusal::new(message)
                }),
            )
                .into_response(),
            ApiError::TooMany(wait) => {
                let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    Refusal::new(format!("too many requests on this route from this caller; retry in {secs} s")),
                    secs,
                )
            }
            ApiError::TooLarge(m) => {
                (StatusCode::PAYLOAD_TOO_LARGE, Json(Refusal::new(m))).into_response()
            }
            ApiError::Unavailable { accepted } => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                holding("broker unavailable and buffer full; retry the events not accepted, with the same event ids".into(), accepted),
                1,
            ),
            ApiError::Replacing { accepted } => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                holding("the Kafka producer is being replaced after a fatal error; retry the events not accepted in a moment, with the same event ids".into(), accepted),
                1,
            ),
            ApiError::NotAcknowledged(why) => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                holding(format!("the broker did not acknowledge the events ({why}); they may still arrive: send them again with the same event ids, which are applied once"), Vec::new()),
                1,
            ),
            ApiError::DeliveriesFailing(ep) => {
                let since = chrono::DateTime::<chrono::Utc>::from(ep.since)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    holding(format!("deliveries to Kafka failing since {since} ({} failed; first error: {}); nothing was accepted, retry later with the same event ids", ep.failed, ep.first_error), Vec::new()),
                    ep.retry_after(),
                )
            }
            ApiError::BrokerAway(why) => {
                tracing::warn!(error = %why, "request not carried out: the broker is away");
                retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Refusal::new(format!("{why}; send the request again in a moment (repeating it is harmless)")),
                    1,
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(Refusal::new("internal error")),
                )
                    .into_response()
            }
        }
    }
}

/// An answer that tells the caller to come back in `secs` seconds.
fn retry_later(status: StatusCode, body: Refusal, secs: u64) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}
