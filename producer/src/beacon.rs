//! The browser client's way in: its module served at a stable URL, and the
//! end of a session sent from a closing tab.
//!
//! A closing tab can only send `navigator.sendBeacon` (or a keepalive
//! fetch), and a beacon carries no `Authorization` header. So while the tab
//! is open, the client trades its bearer token for an end ticket: a token
//! signed by the ingest, good for 15 minutes, that names one user and one
//! session and allows one thing, ending that session. The ticket travels in
//! the beacon's body, never in a URL, and the client renews it every few
//! minutes. A stolen ticket can end one session early, nothing more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sessionfold_auth::Caller;

use crate::input::FieldError;
use crate::{Accepted, Ack, ApiError, AppState, answer, erasure, json_body, receipt, send_all};

/// The browser client, an ES module.
pub const CLIENT_JS: &str = include_str!("../../client/browser/sessionfold.js");
/// Its TypeScript declarations.
pub const CLIENT_DTS: &str = include_str!("../../client/browser/sessionfold.d.ts");

use sessionfold_auth::{END_TICKET_AUDIENCE as AUDIENCE, END_TICKET_TYPE};

/// Signs and checks end tickets.
#[derive(Clone)]
pub struct Tickets {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Tickets {
    /// Tickets signed with `secret` (at least 32 bytes), or with a random
    /// key of this process when none is given (then only this instance
    /// accepts its tickets).
    pub fn new(
        secret: Option<&[u8]>,
        lifetime: Duration,
    ) -> Result<Tickets, sessionfold_auth::AuthError> {
        let key: Vec<u8> = match secret {
            Some(s) => {
                sessionfold_auth::check_secret("--end-ticket-secret", s)?;
                s.to_vec()
            }
            None => (0..32).map(|_| rand::random::<u8>()).collect(),
        };
        Ok(Tickets {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            lifetime,
        })
    }

    /// A ticket of `user` for `session`, good for the configured lifetime.
    fn sign(&self, user: &str, session: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = TicketClaims {
            sub: user.to_owned(),
            sid: session.to_owned(),
            aud: AUDIENCE.into(),
            exp: unix_now() + self.lifetime.as_secs(),
        };
        let mut header = Header::new(Algorithm::HS256);
        // The type and the audience both say "ticket", so a bearer token
        // check refuses it whatever key signed it.
        header.typ = Some(END_TICKET_TYPE.into());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// The claims of a valid ticket; a bearer token (no ticket type or
    /// audience) is refused whatever key signed it.
    fn check(&self, ticket: &str) -> Result<TicketClaims, String> {
        let header = jsonwebtoken::decode_header(ticket).map_err(|e| e.to_string())?;
        if header.typ.as_deref() != Some(END_TICKET_TYPE) {
            return Err("not an end ticket (a bearer token is not one)".into());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = sessionfold_auth::LEEWAY_SECONDS;
        jsonwebtoken::decode::<TicketClaims>(ticket, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

impl Default for Tickets {
    fn default() -> Self {
        let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        Tickets {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            lifetime: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TicketClaims {
    sub: String,
    sid: String,
    aud: String,
    exp: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The browser client, an ES module.
#[utoipa::path(get, path = "/v1/client/sessionfold.js", tag = "browser",
    responses((status = 200, description = "The module", body = String, content_type = "text/javascript")))]
pub(crate) async fn client_js() -> Response {
    module(CLIENT_JS, "text/javascript; charset=utf-8")
}

/// The TypeScript declarations of the browser client.
#[utoipa::path(get, path = "/v1/client/sessionfold.d.ts", tag = "browser",
    responses((status = 200, description = "The declarations", body = String, content_type = "application/typescript")))]
pub(crate) async fn client_dts() -> Response {
    module(CLIENT_DTS, "application/typescript; charset=utf-8")
}

fn module(text: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// An end ticket for the caller's own session: what the page sends as it
/// closes, in place of its bearer token.
#[utoipa::path(
    post, path = "/v1/sessions/{session_id}/end-ticket", tag = "browser",
    params(("session_id" = String, Path, description = "The caller's session")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ticket", body = crate::bodies::TicketBody),
        (status = 400, description = "The session id is invalid", body = crate::bodies::Refusal),
        (status = 401, description = "No valid token", body = crate::bodies::Refusal),
        (status = 429, description = "Too many tickets asked for by this user; see Retry-After", body = crate::bodies::Refusal),
    )
)]
pub(crate) async fn end_ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> Response {
    if let Err(e) = state.throttle(crate::throttle::Route::EndTicket, &caller.user_id) {
        return crate::refused(&state, e);
    }
    if let Err(e) = sessionfold_schemas::check_id("session_id", &session_id) {
        return ApiError::BadRequest(FieldError {
            field: "session_id".into(),
            message: e.to_string(),
        })
        .into_response();
    }
    match state.tickets.sign(&caller.user_id, &session_id) {
        Ok(ticket) => Json(crate::bodies::TicketBody {
            ticket,
            expires_in: state.tickets.lifetime.as_secs(),
        })
        .into_response(),
        Err(e) => ApiError::Internal(format!("signing an end ticket: {e}")).into_response(),
    }
}

/// Ends the ticket's session: `{"ticket", "event_id", "reason",
/// "occurred_at"}` as any content type (a beacon sends `text/plain`, which
/// needs no CORS preflight). No bearer token: the ticket is the credential.
#[utoipa::path(
    post, path = "/v1/activity/end", tag = "browser",
    request_body(content = crate::bodies::EndRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "The end, buffered", body = crate::bodies::AcceptedBody),
        (status = 400, description = "A field is invalid", body = crate::bodies::Refusal),
        (status = 403, description = "The ticket is invalid or expired", body = crate::bodies::Refusal),
        (status = 410, description = "The user asked to be forgotten", body = crate::bodies::Refusal),
        (status = 413, description = "The body is over the size limit", body = crate::bodies::Refusal),
        (status = 429, description = "Too many ends from this address; see Retry-After", body = crate::bodies::Refusal),
        (status = 503, description = "The broker is away and the buffer full", body = crate::bodies::Refusal),
    )
)]
pub(crate) async fn end_session(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = crate::client_address(&state, peer, &headers)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let result = state
        .throttle(crate::throttle::Route::Beacon, &client)
        .and_then(|()| end(&state, body));
    answer(&state, result)
}

fn end(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Accepted, ApiError> {
    let value = json_body(state, body)?;
    let refused = |message: String| {
        ApiError::Forbidden(format!(
            "ticket: {message}; ask for a new one with the bearer token"
        ))
    };
    let ticket = value
        .get("ticket")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            ApiError::BadRequest(FieldError {
                field: "ticket".into(),
                message: "required: the end ticket of the session".into(),
            })
        })?;
    let claims = state.tickets.check(ticket).map_err(refused)?;
    let mut event = serde_json::json!({
        "kind": "session_ended",
        "user_id": claims.sub,
        "session_id": claims.sid,
        "reason": value.get("reason").cloned().unwrap_or_else(|| "closed".into()),
    });
    for field in ["event_id", "occurred_at"] {
        if let Some(v) = value.get(field) {
            event[field] = v.clone();
        }
    }
    let e = crate::input::activity_event(String::new(), &event, receipt(state))
        .map_err(ApiError::BadRequest)?;
    erasure::refuse_forgotten(state, [Some(e.user_id.as_str())])?;
    let bytes = state
        .contract
        .encode_activity(&e)
        .and_then(|b| state.framing.frame(b, false))
        .map_err(|err| ApiError::Internal(format!("encoding {}: {err}", e.event_id)))?;
    // A closing tab cannot wait for an answer: the end is buffered.
    let queued = send_all(
        state,
        &state.topics.activity,
        &[(&e.event_id, &e.user_id, e.body.kind(), bytes)],
        None,
        Ack::Buffer,
    )?;
    Ok(Accepted {
        ids: queued.ids,
        acknowledged: false,
    })
}

/// A `--cors-origin` that cannot be an `Origin` header value.
#[derive(Debug, thiserror::Error)]
#[error("{origin:?} is not an origin such as https://app.example.com")]
pub struct BadOrigin {
    origin: String,
}

/// The CORS layer for the configured origins: none configured, no CORS;
/// `*` alone lets any page call the ingest (the bearer token still decides
/// what it may do; credentials such as cookies are never allowed).
pub fn cors(origins: &[String]) -> Result<tower_http::cors::CorsLayer, BadOrigin> {
    use axum::http::{HeaderValue, Method};
    use tower_http::cors::AllowOrigin;
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        if let Some(other) = origins.iter().find(|o| o.trim() != "*") {
            return Err(BadOrigin {
                origin: format!("{other} (beside *, which already allows every origin)"),
            });
        }
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                let trimmed = o.trim().trim_end_matches('/');
                let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
                    && !trimmed.contains('*');
                HeaderValue::from_str(trimmed)
                    .ok()
                    .filter(|_| ok)
                    .ok_or_else(|| BadOrigin { origin: o.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(tower_http::cors::CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600)))
}
