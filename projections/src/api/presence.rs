//! `/v1/presence/*`: who is online.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionfold_auth::Caller;
use sessionfold_schemas::Millis;

use super::{ApiError, now_millis};
use crate::AppState;
use crate::view::{ActivePage, Cursor, Summary, UserJson};
use sessionfold_edge::http::{JsonPath, JsonQuery};

const MIN_WINDOW: Millis = 60_000;
const MAX_WINDOW: Millis = 24 * 3_600_000;

fn window(raw: Option<&str>) -> Result<Millis, ApiError> {
    let Some(raw) = raw else {
        return Ok(5 * 60_000);
    };
    let d = humantime::parse_duration(raw)
        .map_err(|e| ApiError::BadRequest(format!("window: {e} (use 5m, 15m, 1h, 4h)")))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&ms) {
        return Err(ApiError::BadRequest(
            "window: must be between 1m and 24h".into(),
        ));
    }
    Ok(ms)
}

fn may_list(caller: &Caller) -> Result<(), ApiError> {
    if caller.sees_all_presence() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "listing presence needs the admin role or USER_VIEW_ACTIVE_SESSIONS".into(),
        ))
    }
}

/// The query of the active list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActiveQuery {
    /// Activity within this long counts: `1m` to `24h` (default `5m`).
    window: Option<String>,
    /// Users per page, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// Users with a session active in the window, most recent first, a page at a time.
#[utoipa::path(
    get, path = "/v1/presence/active", tag = "presence",
    params(ActiveQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of active users", body = ActivePage),
        (status = 400, description = "A query parameter is invalid", body = super::ErrorBody),
        (status = 401, description = "No valid token", body = super::ErrorBody),
        (status = 403, description = "Needs the admin role or USER_VIEW_ACTIVE_SESSIONS", body = super::ErrorBody),
    )
)]
pub(crate) async fn active(
    State(s): State<AppState>,
    caller: Caller,
    JsonQuery(q): JsonQuery<ActiveQuery>,
) -> Result<Response, ApiError> {
    may_list(&caller)?;
    let window = window(q.window.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit: must be between 1 and 1000".into(),
        ));
    }
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            Cursor::decode(c)
                .ok_or_else(|| ApiError::BadRequest("cursor: not a cursor from this API".into()))?,
        ),
    };
    let page = s
        .presence()
        .active(now_millis(), window, limit, cursor.as_ref());
    Ok(Json(page).into_response())
}

/// A window of activity.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// Activity within this long counts: `1m` to `24h` (default `5m`).
    window: Option<String>,
}

/// Active users and sessions in the window, by device and by browser.
#[utoipa::path(
    get, path = "/v1/presence/summary", tag = "presence",
    params(WindowQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The counts", body = Summary),
        (status = 400, description = "A query parameter is invalid", body = super::ErrorBody),
        (status = 401, description = "No valid token", body = super::ErrorBody),
        (status = 403, description = "Needs the admin role or USER_VIEW_ACTIVE_SESSIONS", body = super::ErrorBody),
    )
)]
pub(crate) async fn summary(
    State(s): State<AppState>,
    caller: Caller,
    JsonQuery(q): JsonQuery<WindowQuery>,
) -> Result<Response, ApiError> {
    may_list(&caller)?;
    let window = window(q.window.as_deref())?;
    Ok(Json(s.presence().summary(now_millis(), window)).into_response())
}

/// One user's presence: the caller's own, or anyone's for whoever sees all presence.
#[utoipa::path(
    get, path = "/v1/presence/users/{user_id}", tag = "presence",
    params(("user_id" = String, Path, description = "The user")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserJson),
        (status = 400, description = "The path is invalid", body = super::ErrorBody),
        (status = 401, description = "No valid token", body = super::ErrorBody),
        (status = 404, description = "Unknown, or another user the caller may not see", body = super::ErrorBody),
    )
)]
pub(crate) async fn user(
    State(s): State<AppState>,
    caller: Caller,
    JsonPath(user_id): JsonPath<String>,
) -> Result<Response, ApiError> {
    // Another user's presence answers as if unknown: existence is not revealed.
    let unknown = || ApiError::NotFound(format!("unknown user {user_id:?}"));
    if !caller.sees_presence_of(&user_id) {
        return Err(unknown());
    }
    s.presence()
        .user(&user_id, now_millis())
        .map(|u| Json(u).into_response())
        .ok_or_else(unknown)
}
