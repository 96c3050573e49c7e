//! The ingest's routes and their OpenAPI document, built from the same
//! handler list so the document cannot name a route that is not served.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use sessionfold_edge::openapi::BearerJwt;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::bodies::Refusal;
use crate::{ApiError, AppState, beacon, erasure, events};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessionfold producer",
        description = "The ingest: activity and import events in, Avro records on Kafka out."
    ),
    components(schemas(events::Ack)),
    modifiers(&BearerJwt),
    tags(
        (name = "events", description = "Activity and import events"),
        (name = "browser", description = "The browser client and its session ends"),
        (name = "erasure", description = "Forgetting a user"),
        (name = "service", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

/// Ready unless deliveries to Kafka are failing now.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Deliveries to Kafka are failing", body = Refusal),
    ))]
async fn readyz(State(s): State<AppState>) -> Response {
    match s.sink.failures().filter(|ep| ep.holding()) {
        None => (StatusCode::OK, "ready").into_response(),
        Some(ep) => ApiError::DeliveriesFailing(ep).into_response(),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let ready = s.sink.failures().filter(|ep| ep.holding()).is_none();
    s.metrics.gauges.response(&s.metrics.registry, ready)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

fn split() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(events::post_activity))
        .routes(routes!(events::post_imports))
        .routes(routes!(beacon::end_session))
        .routes(routes!(beacon::end_ticket))
        .routes(routes!(beacon::client_js))
        .routes(routes!(beacon::client_dts))
        .routes(routes!(erasure::post_erasure))
        .routes(routes!(sessionfold_edge::openapi::healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// The OpenAPI document of every route.
pub fn document() -> utoipa::openapi::OpenApi {
    split().1
}

/// The ingest's routes.
pub fn app(state: AppState) -> Router {
    let http = state.metrics.http.clone();
    let cors = beacon::cors(&state.limits.cors_origins);
    let router = split()
        .0
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            http,
            sessionfold_edge::track_http,
        ))
        .with_state(state);
    match cors {
        Ok(layer) => router.layer(layer),
        Err(e) => {
            tracing::error!(error = %e, "CORS origins ignored");
            router
        }
    }
}
