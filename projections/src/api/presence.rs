//! `/v1/presence/*`: who is online.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionfold_auth::Caller;
use sessionfold_schemas::Millis;

use super::{ApiError, now_millis};
use crate::AppState;
use crate::view::Cursor;

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

#[derive(Debug, Deserialize)]
pub(crate) struct ActiveQuery {
    window: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(crate) async fn active(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ActiveQuery>,
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

#[derive(Debug, Deserialize)]
pub(crate) struct WindowQuery {
    window: Option<String>,
}

pub(crate) async fn summary(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<WindowQuery>,
) -> Result<Response, ApiError> {
    may_list(&caller)?;
    let window = window(q.window.as_deref())?;
    Ok(Json(s.presence().summary(now_millis(), window)).into_response())
}

pub(crate) async fn user(
    State(s): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
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
