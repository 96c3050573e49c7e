//! The event routes: activity and import events parsed, authorised,
//! encoded and queued for Kafka, answered once buffered or once the broker
//! stored them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use sessionfold_auth::Caller;

use crate::{
    Accepted, Acks, ApiError, AppState, SinkError, answer, erasure, input, json_body, now_millis,
};

/// When a request is answered: once its events are in the local buffer, or
/// once the broker has stored them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// Answer once buffered (the default for activity).
    Buffer,
    /// Answer once the broker acknowledged every event with `acks=all`
    /// (the default for import events).
    Broker,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct AckQuery {
    ack: Option<Ack>,
}

/// The `ack` query parameter, or `default`.
fn ack_mode(query: Result<Query<AckQuery>, QueryRejection>, default: Ack) -> Result<Ack, ApiError> {
    match query {
        Ok(Query(q)) => Ok(q.ack.unwrap_or(default)),
        Err(_) => Err(ApiError::BadRequest(input::FieldError {
            field: "ack".into(),
            message: "must be buffer or broker".into(),
        })),
    }
}

/// Waits for the broker when asked to: the answer says the events are
/// stored, or 503 says to send them again (a repeated id is applied once).
async fn settle(state: &AppState, queued: Queued) -> Result<Accepted, ApiError> {
    let Some(acks) = queued.acks else {
        return Ok(Accepted {
            ids: queued.ids,
            acknowledged: false,
        });
    };
    match acks.wait(state.limits.ack_timeout).await {
        Ok(()) => Ok(Accepted {
            ids: queued.ids,
            acknowledged: true,
        }),
        Err(why) => Err(ApiError::NotAcknowledged(why)),
    }
}

pub(crate) fn receipt(state: &AppState) -> input::Receipt {
    input::Receipt {
        received_at: now_millis(),
        max_clock_skew: state.limits.max_clock_skew,
    }
}

/// Activity events (session starts, heartbeats, page views, session ends),
/// keyed by user. A user's token may only speak for the user itself; a
/// service's for anyone.
#[utoipa::path(
    post, path = "/v1/activity", tag = "events",
    params(("ack" = Option<Ack>, Query, description = "`buffer` (the default): answer once buffered; `broker`: once the broker stored every event")),
    request_body(content = crate::bodies::ActivityRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(crate::bodies::EventAnswers)
)]
pub(crate) async fn post_activity(
    State(state): State<AppState>,
    caller: Caller,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    query: Result<Query<AckQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = client_address(&state, peer, &headers);
    let result = match ack_mode(query, Ack::Buffer)
        .and_then(|ack| ingest_activity(&state, &caller, client, body, ack))
    {
        Ok(queued) => settle(&state, queued).await,
        Err(e) => Err(e),
    };
    answer(&state, result)
}

/// The client behind a request: the connection's peer, or what trusted
/// proxies say in `X-Forwarded-For`.
pub(crate) fn client_address(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    peer.map(|Extension(ConnectInfo(p))| {
        // Proxies may add their hop as a header line of its own: the lines
        // together are one list (RFC 9110 §5.3), read from the right.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        input::address::client_address(p.ip(), Some(&forwarded), &state.limits.trusted_proxies)
    })
}

fn ingest_activity(
    state: &AppState,
    caller: &Caller,
    client: Option<std::net::IpAddr>,
    body: Result<Bytes, BytesRejection>,
    ack: Ack,
) -> Result<Queued, ApiError> {
    let value = json_body(state, body)?;
    let mut events = input::activity_request(&value, receipt(state), state.limits.max_events)
        .map_err(ApiError::BadRequest)?;
    input::authorize_request(caller, &value, events.iter().map(input::Event::Activity))?;
    erasure::refuse_forgotten(state, events.iter().map(|e| Some(e.user_id.as_str())))?;
    // Only as much of the address as configured leaves the ingest. Only a
    // service (a backend posting for its browsers) may name the address; a
    // user's own claim is replaced by the connection's client.
    for e in &mut events {
        if let sessionfold_schemas::ActivityBody::SessionStarted(st) = &mut e.body {
            let named = st.ip_address.as_deref().filter(|_| caller.is_service());
            st.ip_address = input::address::recorded(named, client, state.limits.addresses);
        }
    }
    let records = events
        .iter()
        .map(|e| {
            let bytes = state
                .contract
                .encode_activity(e)
                .and_then(|b| state.framing.frame(b, false))
                .map_err(|err| ApiError::Internal(format!("encoding {}: {err}", e.event_id)))?;
            Ok((
                e.event_id.as_str(),
                e.user_id.as_str(),
                e.body.kind(),
                bytes,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    send_all(state, &state.topics.activity, &records, None, ack)
}

/// Import events (started, progressed, accessed, completed, abandoned,
/// transferred, deleted), keyed by import. Only the owner, an admin or a
/// service may act on an import.
#[utoipa::path(
    post, path = "/v1/imports/{import_id}/events", tag = "events",
    params(
        ("import_id" = String, Path, description = "The import"),
        ("ack" = Option<Ack>, Query, description = "`broker` (the default): answer once the broker stored every event; `buffer`: once buffered"),
    ),
    request_body(content = crate::bodies::ImportRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(crate::bodies::EventAnswers)
)]
pub(crate) async fn post_imports(
    State(state): State<AppState>,
    caller: Caller,
    Path(import_id): Path<String>,
    query: Result<Query<AckQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Who owns an import is not to be lost silently: its events wait for
    // the broker unless the caller asks otherwise.
    let result = match ack_mode(query, Ack::Broker)
        .and_then(|ack| ingest_imports(&state, &caller, &import_id, body, ack))
    {
        Ok(queued) => settle(&state, queued).await,
        Err(e) => Err(e),
    };
    answer(&state, result)
}

fn ingest_imports(
    state: &AppState,
    caller: &Caller,
    import_id: &str,
    body: Result<Bytes, BytesRejection>,
    ack: Ack,
) -> Result<Queued, ApiError> {
    let value = json_body(state, body)?;
    let events = input::import_events(
        &value,
        import_id,
        &caller.user_id,
        receipt(state),
        state.limits.max_events,
    )
    .map_err(ApiError::BadRequest)?;
    let owner = state.owners.owner_of(import_id);
    input::authorize_request(
        caller,
        &value,
        events
            .iter()
            .map(|e| input::Event::Import(e, owner.as_ref().map(Option::as_deref))),
    )?;
    erasure::refuse_forgotten(
        state,
        events.iter().map(|e| match &e.body {
            sessionfold_schemas::ImportBody::Started { owner_id, .. } => owner_id.as_deref(),
            sessionfold_schemas::ImportBody::Transferred { new_owner_id } => {
                Some(new_owner_id.as_str())
            }
            _ => None,
        }),
    )?;
    let records = events
        .iter()
        .map(|e| {
            let bytes = state
                .contract
                .encode_import(e)
                .and_then(|b| state.framing.frame(b, true))
                .map_err(|err| ApiError::Internal(format!("encoding {}: {err}", e.event_id)))?;
            Ok((
                e.event_id.as_str(),
                e.import_id.as_str(),
                e.body.kind(),
                bytes,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    send_all(
        state,
        &state.topics.imports,
        &records,
        Some(caller.import_role()),
        ack,
    )
}

/// Events queued for Kafka, and the acknowledgements to wait for when the
/// request asked for them.
pub(crate) struct Queued {
    pub(crate) ids: Vec<String>,
    acks: Option<Arc<Acks>>,
}

/// Queues encoded records `(event_id, key, kind, bytes)` in order, with the
/// actor role the caller's token vouches for on import events; the whole
/// request was validated before, so only a full buffer stops it part way.
pub(crate) fn send_all(
    state: &AppState,
    topic: &str,
    records: &[(&str, &str, &'static str, Vec<u8>)],
    role: Option<&str>,
    ack: Ack,
) -> Result<Queued, ApiError> {
    if let Some(ep) = state.sink.failures().filter(|ep| ep.holding()) {
        return Err(ApiError::DeliveriesFailing(ep));
    }
    let acks = (ack == Ack::Broker).then(|| Acks::new(records.len()));
    let mut ids = Vec::with_capacity(records.len());
    for (i, (event_id, key, kind, bytes)) in records.iter().enumerate() {
        let unqueued = || {
            if let Some(a) = &acks {
                a.abandon(records.len() - i);
            }
        };
        match state.sink.send(topic, key, bytes, role, acks.clone()) {
            Ok(()) => {
                state.metrics.accepted.with_label_values(&[kind]).inc();
                ids.push((*event_id).to_owned());
            }
            Err(SinkError::BufferFull) => {
                unqueued();
                return Err(ApiError::Unavailable { accepted: ids });
            }
            Err(SinkError::Replacing) => {
                unqueued();
                return Err(ApiError::Replacing { accepted: ids });
            }
            Err(other) => {
                unqueued();
                return Err(ApiError::Internal(other.to_string()));
            }
        }
    }
    Ok(Queued { ids, acks })
}
