//! The HTTP handlers, each scoped to the caller's token (docs/contract.md §5).

pub(crate) mod imports;
pub(crate) mod presence;
pub(crate) mod rooms;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The body of every refusal.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

/// A request the projections cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The caller's token lacks the role or permission.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that id that the caller may see.
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

pub(crate) use sessionfold_edge::now_millis;
