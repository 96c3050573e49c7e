//! `/v1/imports*`: whose import is this. Owners see their own; admins see all.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sessionfold_auth::Caller;

use super::{ApiError, now_millis};
use crate::AppState;

fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.sees_all_imports() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{what} needs the admin role or IMPORT_ADMIN"
        )))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let now = now_millis();
    let imports = if q.all {
        admin_only(&caller, "all=true")?;
        s.imports().all(now)
    } else {
        s.imports().own(&caller.user_id, now)
    };
    Ok(Json(json!({ "imports": imports })).into_response())
}

pub(crate) async fn one(
    State(s): State<AppState>,
    caller: Caller,
    Path(import_id): Path<String>,
) -> Result<Response, ApiError> {
    let view = s.imports();
    // Another user's import answers 404, never 403: its existence is not revealed.
    view.get(&import_id)
        .filter(|i| caller.sees_import_of(i.owner_id.as_deref()))
        .map(|i| Json(view.json(i, now_millis())).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("unknown import {import_id:?}")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DuplicatesQuery {
    json_hash: Option<String>,
}

pub(crate) async fn duplicates(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<DuplicatesQuery>,
) -> Result<Response, ApiError> {
    let hash = q
        .json_hash
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("json_hash: is required".into()))?;
    let imports = s.imports().duplicates(&caller.user_id, &hash, now_millis());
    Ok(Json(json!({ "json_hash": hash, "imports": imports })).into_response())
}

pub(crate) async fn monitor(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    admin_only(&caller, "the import monitor")?;
    // Lock order: imports, then presence (the only place both are held).
    let imports = s.imports();
    let presence = s.presence();
    let rows = imports.monitor(now_millis(), |u| presence.email(u));
    Ok(Json(json!({ "imports": rows })).into_response())
}
