//! The projections' routes and their OpenAPI document, built from the same
//! handler list so the document cannot name a route that is not served.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use sessionfold_edge::openapi::BearerJwt;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AppState, api, dashboard, freshness, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessionfold projections",
        description = "Live views of presence and import ownership, each answer scoped to the caller's token."
    ),
    modifiers(&BearerJwt),
    tags(
        (name = "presence", description = "Who is online"),
        (name = "imports", description = "Whose import is this"),
        (name = "stream", description = "Changes as they are applied"),
        (name = "service", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

/// The changelogs have been read to their ends as seen at start, and the
/// views are within the staleness bound (`--max-staleness`).
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Still catching up with the changelogs, or staler than the bound", body = String, content_type = "text/plain"),
    ))]
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.is_ready() {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics.freshness(&s.fresh.report());
    s.metrics
        .gauges
        .response(&s.metrics.registry, s.is_ready().is_ok())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

fn split() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::presence::active))
        .routes(routes!(api::presence::summary))
        .routes(routes!(api::presence::user))
        .routes(routes!(api::rooms::busiest))
        .routes(routes!(api::rooms::online))
        .routes(routes!(api::rooms::room))
        .routes(routes!(api::imports::list))
        .routes(routes!(api::imports::duplicates))
        .routes(routes!(api::imports::monitor))
        .routes(routes!(api::imports::one))
        .routes(routes!(stream::handler))
        .routes(routes!(sessionfold_edge::openapi::healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let mut api = api;
    freshness::document(&mut api);
    (router, api)
}

/// The OpenAPI document of every route but the dashboard's page and assets.
pub fn document() -> utoipa::openapi::OpenApi {
    split().1
}

/// The projections' routes.
pub fn app(state: AppState) -> Router {
    let http = state.metrics.http.clone();
    let fresh = state.fresh.clone();
    split()
        .0
        .merge(dashboard::routes())
        .layer(axum::middleware::from_fn_with_state(
            fresh,
            freshness::stamp,
        ))
        .layer(axum::middleware::from_fn_with_state(
            http,
            sessionfold_edge::track_http,
        ))
        .with_state(state)
}
