//! Forgetting a user: the admin route that writes the erasure, and the
//! check that refuses a forgotten user's events from then on.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sessionfold_auth::Caller;
use sessionfold_schemas::{OwnedImports, UserErased};

use crate::bodies::{DeleteWord, Erasure, ImportsRule};
use crate::input::FieldError;
use crate::{ApiError, AppState, json_body, now_millis, refused};

/// Refuses the whole request when an event names a forgotten user (the
/// acting user, or an import's new owner).
pub(crate) fn refuse_forgotten<'a>(
    state: &AppState,
    users: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<(), ApiError> {
    let erasures = sessionfold_edge::read(&state.erasures);
    if erasures.is_empty() {
        return Ok(());
    }
    for (i, user) in users.into_iter().enumerate() {
        if let Some(u) = user.filter(|u| erasures.forgets(u)) {
            return Err(ApiError::Gone(FieldError {
                field: format!("events[{i}]"),
                message: format!(
                    "user {u:?} asked to be forgotten; events for this user are no longer accepted"
                ),
            }));
        }
    }
    Ok(())
}

/// What becomes of the user's imports, from `{"imports": "delete"}` or
/// `{"imports": {"transfer_to": "<user>"}}`: there is no default, the
/// caller decides.
fn owned_imports(body: &serde_json::Value) -> Result<OwnedImports, FieldError> {
    let invalid = |message: &str| FieldError {
        field: "imports".into(),
        message: message.into(),
    };
    match body.get("imports") {
        Some(serde_json::Value::String(s)) if s == "delete" => Ok(OwnedImports::Delete),
        Some(serde_json::Value::Object(o)) => match o.get("transfer_to") {
            Some(serde_json::Value::String(to)) => Ok(OwnedImports::TransferTo(to.clone())),
            _ => Err(invalid(
                "transfer_to must name the user who takes the imports over",
            )),
        },
        _ => Err(invalid(
            r#"required: "delete", or {"transfer_to": "<user id>"} for the imports the user owns"#,
        )),
    }
}

/// Forgets a user (an admin or a service only). Answers 202 once the
/// erasure is on the broker; the processor and the projections drop the
/// user within moments. Repeating it is harmless and writes nothing: the
/// same rule answers 200 with the erasure kept, a different rule 409, since
/// what the first did to the user's imports cannot be undone.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/erasure", tag = "erasure",
    params(("user_id" = String, Path, description = "The user to forget")),
    request_body(content = crate::bodies::ErasureRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Written", body = Erasure),
        (status = 200, description = "Forgotten already with the same rule", body = Erasure),
        (status = 400, description = "A field is invalid", body = crate::bodies::Refusal),
        (status = 401, description = "No valid token", body = crate::bodies::Refusal),
        (status = 403, description = "Not an admin or a service", body = crate::bodies::Refusal),
        (status = 409, description = "Forgotten already with another rule; `kept` is the one that stands", body = crate::bodies::Refusal),
        (status = 413, description = "The body is over the size limit", body = crate::bodies::Refusal),
        (status = 429, description = "Too many erasures by this caller; see Retry-After", body = crate::bodies::Refusal),
        (status = 503, description = "The broker did not answer; send it again (see Retry-After)", body = crate::bodies::Refusal),
    )
)]
pub(crate) async fn post_erasure(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = erase(&state, &caller, user_id, body).await;
    match result {
        Ok((e, fresh)) => (
            if fresh {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            },
            Json(described(&e)),
        )
            .into_response(),
        Err(e) => refused(&state, e),
    }
}

fn described(e: &UserErased) -> Erasure {
    Erasure {
        user_id: e.user_id.clone(),
        erased_at: Some(sessionfold_schemas::rfc3339(e.erased_at)).filter(|t| !t.is_empty()),
        requested_by: e.requested_by.clone(),
        imports: match &e.imports {
            OwnedImports::Delete => ImportsRule::Delete(DeleteWord::Delete),
            OwnedImports::TransferTo(to) => ImportsRule::Transfer {
                transfer_to: to.clone(),
            },
        },
    }
}

/// The erasure of `user_id` already on the broker, if any: the follower's
/// view, else the topic read to its end (another instance may have written
/// one a moment ago).
async fn kept(state: &AppState, user_id: &str) -> Result<Option<UserErased>, ApiError> {
    if let Some(e) = sessionfold_edge::read(&state.erasures).get(user_id) {
        return Ok(Some(e.clone()));
    }
    let (brokers, topic, contract) = (
        state.brokers.to_string(),
        state.topics.erasures.clone(),
        (*state.contract).clone(),
    );
    let all = tokio::task::spawn_blocking(move || {
        sessionfold_edge::follow::read_erasures(&brokers, &topic, &contract)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| {
        ApiError::BrokerAway(format!("the users forgotten so far could not be read: {e}"))
    })?;
    Ok(all.get(user_id).cloned())
}

async fn erase(
    state: &AppState,
    caller: &Caller,
    user_id: String,
    body: Result<Bytes, BytesRejection>,
) -> Result<(UserErased, bool), ApiError> {
    if !(caller.is_admin() || caller.is_service()) {
        return Err(ApiError::Forbidden(
            "only an admin or a service may forget a user".into(),
        ));
    }
    state.throttle(crate::throttle::Route::Erasure, &caller.user_id)?;
    let body = json_body(state, body)?;
    let imports = owned_imports(&body).map_err(ApiError::BadRequest)?;
    let erasure = UserErased {
        user_id,
        erased_at: now_millis(),
        requested_by: caller.user_id.clone(),
        imports,
    };
    erasure.validate().map_err(|e| {
        ApiError::BadRequest(FieldError {
            field: match &e {
                sessionfold_schemas::SchemaError::Invalid { field, .. } => field.clone(),
                _ => "user_id".into(),
            },
            message: e.to_string(),
        })
    })?;
    if let Some(first) = kept(state, &erasure.user_id).await? {
        if first.imports == erasure.imports {
            return Ok((first, false));
        }
        return Err(ApiError::Conflict {
            message: format!(
                "user {:?} was forgotten already with another rule for their imports; that rule stands",
                first.user_id
            ),
            kept: serde_json::to_value(described(&first)).unwrap_or_default(),
        });
    }
    let bytes = state
        .contract
        .encode_erasure(&erasure)
        .map_err(|e| ApiError::Internal(format!("encoding the erasure: {e}")))?;
    // Through the ingest's own producer, waiting for the broker.
    let acks = crate::Acks::new(1);
    state
        .sink
        .send(
            &state.topics.erasures,
            &erasure.user_id,
            &bytes,
            None,
            Some(acks.clone()),
        )
        .map_err(|e| {
            ApiError::Internal(format!("writing the erasure of {}: {e}", erasure.user_id))
        })?;
    acks.wait(std::time::Duration::from_secs(30))
        .await
        .map_err(|e| {
            ApiError::BrokerAway(format!(
                "the erasure of {} was not acknowledged by the broker: {e}",
                erasure.user_id
            ))
        })?;
    tracing::info!(user = %erasure.user_id, by = %erasure.requested_by, "user forgotten");
    // This instance refuses the user's events at once; others when their
    // follower reads the record.
    sessionfold_edge::write(&state.erasures).insert(erasure.clone());
    Ok((erasure, true))
}
