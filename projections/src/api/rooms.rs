//! `/v1/presence/rooms`: who is in which room now.
//!
//! A room is seen by its members (a user with an active session in it) and
//! by whoever sees all presence (admins, services, `USER_VIEW_ACTIVE_SESSIONS`).
//! Anyone else gets 404, as for a room nobody is in: a room's existence is
//! not revealed.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionfold_auth::Caller;

use super::{ApiError, ErrorBody, now_millis};
use crate::AppState;
use crate::view::rfc3339;
use sessionfold_edge::http::{JsonPath, JsonQuery};
use sessionfold_views::history::Point;
use sessionfold_views::rooms::{RoomCount, RoomJson};

/// The busiest rooms.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RoomList {
    /// When the answer was computed.
    as_of: String,
    /// Rooms by users in them, most first.
    rooms: Vec<RoomCount>,
}

/// Users online a minute over the last hour.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct OnlineHistory {
    /// When the answer was computed.
    as_of: String,
    /// One point a minute, oldest first.
    points: Vec<Point>,
}

/// Most members listed in one answer unless `limit` says otherwise.
const DEFAULT_MEMBERS: usize = 1000;

/// Query of the room routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RoomQuery {
    /// Most members (or rooms) listed.
    limit: Option<usize>,
}

/// Who is in a room now (the room name URL-encoded: `%2Fquiz`).
#[utoipa::path(
    get, path = "/v1/presence/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "The room, URL-encoded"), RoomQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The room", body = RoomJson),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Nobody there, or a room the caller may not see", body = ErrorBody),
    )
)]
pub(crate) async fn room(
    State(s): State<AppState>,
    caller: Caller,
    JsonPath(room): JsonPath<String>,
    JsonQuery(q): JsonQuery<RoomQuery>,
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

/// The busiest rooms; a caller who does not see all presence gets the rooms it is in.
#[utoipa::path(
    get, path = "/v1/presence/rooms", tag = "rooms",
    params(RoomQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rooms", body = RoomList),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn busiest(
    State(s): State<AppState>,
    caller: Caller,
    JsonQuery(q): JsonQuery<RoomQuery>,
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
    Ok(Json(RoomList {
        as_of: rfc3339(now_millis()),
        rooms: list,
    })
    .into_response())
}

/// Users online a minute over the last hour, for whoever sees all presence.
#[utoipa::path(
    get, path = "/v1/presence/online", tag = "presence",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The history", body = OnlineHistory),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs the admin role or USER_VIEW_ACTIVE_SESSIONS", body = ErrorBody),
    )
)]
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
    Ok(Json(OnlineHistory {
        as_of: rfc3339(now_millis()),
        points,
    })
    .into_response())
}
