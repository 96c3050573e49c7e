//! `/v1/presence/rooms`: who is in which room now.
//!
//! A room is seen by its members (a user with an active session in it) and
//! by whoever sees all presence (admins, services, `USER_VIEW_ACTIVE_SESSIONS`).
//! Anyone else gets 404, as for a room nobody is in: a room's existence is
//! not revealed.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionfold_auth::Caller;

use super::{ApiError, now_millis};
use crate::AppState;
use crate::view::rfc3339;

/// Most members listed in one answer unless `limit` says otherwise.
const DEFAULT_MEMBERS: usize = 1000;

/// Query of the room routes.
#[derive(Debug, Deserialize)]
pub(crate) struct RoomQuery {
    limit: Option<usize>,
}

/// `GET /v1/presence/rooms/{room}` (the room name URL-encoded: `%2Fquiz`).
pub(crate) async fn room(
    State(s): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Query(q): Query<RoomQuery>,
) -> Result<Response, ApiError> {
    let unknown = || ApiError::NotFound(format!("nobody in room {room:?}"));
    let view = s.presence();
    if !(caller.sees_all_presence()
        || (caller.may_enter_room(&room) && view.in_room(&room, &caller.user_id)))
    {
        return Err(unknown());
    }
    let limit = q.limit.unwrap_or(DEFAULT_MEMBERS).clamp(1, 10_000);
    view.rooms()
        .room(&room, rfc3339(now_millis()), limit)
        .map(|r| Json(r).into_response())
        .ok_or_else(unknown)
}

/// `GET /v1/presence/rooms?limit=20`: the busiest rooms; a caller who does
/// not see all presence gets the rooms it is in.
pub(crate) async fn busiest(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<RoomQuery>,
) -> Result<Response, ApiError> {
    let view = s.presence();
    let rooms = view.rooms();
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let list = if caller.sees_all_presence() {
        rooms.busiest(limit, None)
    } else {
        let mine: Vec<String> = view
            .rooms_of(&caller.user_id)
            .into_iter()
            .filter(|r| caller.may_enter_room(r))
            .collect();
        rooms.busiest(limit, Some(&mine))
    };
    Ok(Json(serde_json::json!({
        "as_of": rfc3339(now_millis()),
        "rooms": list,
    }))
    .into_response())
}

/// `GET /v1/presence/online`: users online a minute over the last hour,
/// for whoever sees all presence.
pub(crate) async fn online(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    if !caller.sees_all_presence() {
        return Err(ApiError::Forbidden(
            "the online history needs the admin role or USER_VIEW_ACTIVE_SESSIONS".into(),
        ));
    }
    let points = sessionfold_edge::read(&s.online).points();
    Ok(Json(serde_json::json!({
        "as_of": rfc3339(now_millis()),
        "points": points,
    }))
    .into_response())
}
