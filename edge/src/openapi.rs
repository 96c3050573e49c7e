//! What the services' OpenAPI documents share.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// Declares `bearer`, the JWT every `/v1` route but the browser's session
/// end asks for in `Authorization: Bearer`.
#[derive(Debug, Clone, Copy)]
pub struct BearerJwt;

impl utoipa::Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// Compares a service's document with the copy committed at `committed`,
/// after rewriting that copy when `SESSIONFOLD_WRITE_OPENAPI` is set: the
/// copy users read is the one the service serves.
pub fn check_committed(
    served: &utoipa::openapi::OpenApi,
    committed: &std::path::Path,
) -> Result<(), String> {
    let text = serde_json::to_string_pretty(served).map_err(|e| e.to_string())? + "\n";
    if std::env::var_os("SESSIONFOLD_WRITE_OPENAPI").is_some() {
        std::fs::write(committed, &text)
            .map_err(|e| format!("writing {}: {e}", committed.display()))?;
    }
    let kept = std::fs::read_to_string(committed).unwrap_or_default();
    if kept == text {
        Ok(())
    } else {
        Err(format!(
            "{} differs from the routes; rewrite it with SESSIONFOLD_WRITE_OPENAPI=1 cargo test --test openapi",
            committed.display()
        ))
    }
}

/// The service is up (it answers; readiness is `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Up", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}
