//! `/v1/imports*`: whose import is this. Owners see their own; admins see all.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionfold_auth::Caller;

use super::{ApiError, ErrorBody, now_millis};
use crate::AppState;
use sessionfold_edge::http::{JsonPath, JsonQuery};
use sessionfold_views::imports::{ImportJson, MonitorJson};

/// A list of imports.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ImportList {
    /// The imports, newest first.
    imports: Vec<ImportJson>,
}

/// The caller's imports with one file's hash.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DuplicateList {
    /// The hash asked for.
    json_hash: String,
    /// The caller's imports of that file.
    imports: Vec<ImportJson>,
}

/// The import monitor's rows.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct MonitorList {
    /// In-progress imports, least recently accessed first.
    imports: Vec<MonitorJson>,
}

fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.sees_all_imports() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{what} needs the admin role or IMPORT_ADMIN"
        )))
    }
}

/// Whose imports to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Every import, legacy ones included (admins and IMPORT_ADMIN only).
    #[serde(default)]
    all: bool,
}

/// The caller's imports, or with `all=true` every import.
#[utoipa::path(
    get, path = "/v1/imports", tag = "imports",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The imports", body = ImportList),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "all=true needs the admin role or IMPORT_ADMIN", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    JsonQuery(q): JsonQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let now = now_millis();
    let imports = if q.all {
        admin_only(&caller, "all=true")?;
        s.imports().all(now)
    } else {
        s.imports().own(&caller.user_id, now)
    };
    Ok(Json(ImportList { imports }).into_response())
}

/// One import the caller may see.
#[utoipa::path(
    get, path = "/v1/imports/{import_id}", tag = "imports",
    params(("import_id" = String, Path, description = "The import")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The import", body = ImportJson),
        (status = 400, description = "The path is invalid", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Unknown, or another user's", body = ErrorBody),
    )
)]
pub(crate) async fn one(
    State(s): State<AppState>,
    caller: Caller,
    JsonPath(import_id): JsonPath<String>,
) -> Result<Response, ApiError> {
    let view = s.imports();
    // Another user's import answers 404, never 403: its existence is not revealed.
    view.get(&import_id)
        .filter(|i| caller.sees_import_of(i.owner_id.as_deref()))
        .map(|i| Json(view.json(i, now_millis())).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("unknown import {import_id:?}")))
}

/// A file's hash.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DuplicatesQuery {
    /// The hash of the uploaded JSON (required).
    json_hash: Option<String>,
}

/// The caller's own imports of a file (duplicates are per owner).
#[utoipa::path(
    get, path = "/v1/imports/duplicates", tag = "imports",
    params(DuplicatesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's imports of that file", body = DuplicateList),
        (status = 400, description = "json_hash is missing", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(crate) async fn duplicates(
    State(s): State<AppState>,
    caller: Caller,
    JsonQuery(q): JsonQuery<DuplicatesQuery>,
) -> Result<Response, ApiError> {
    let hash = q
        .json_hash
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("json_hash: is required".into()))?;
    let imports = s.imports().duplicates(&caller.user_id, &hash, now_millis());
    Ok(Json(DuplicateList {
        json_hash: hash,
        imports,
    })
    .into_response())
}

/// In-progress imports with their owners' e-mail and hours since access.
#[utoipa::path(
    get, path = "/v1/imports/monitor", tag = "imports",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The monitor", body = MonitorList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs the admin role or IMPORT_ADMIN", body = ErrorBody),
    )
)]
pub(crate) async fn monitor(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    admin_only(&caller, "the import monitor")?;
    // Lock order: imports, then presence (the only place both are held).
    let imports = s.imports();
    let presence = s.presence();
    let rows = imports.monitor(now_millis(), |u| presence.email(u));
    Ok(Json(MonitorList { imports: rows }).into_response())
}
