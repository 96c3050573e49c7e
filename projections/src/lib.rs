//! sessionfold projections: live views over the changelog topics.
//!
//! A projections instance reads every partition of the compacted presence
//! changelog from the beginning into memory, drops replayed records by their
//! input position, and answers "who is active in the last W", per-device
//! summaries and single-user lookups over HTTP. It holds no state of its own on
//! disk: the changelog is its store, so any number of instances can serve.

pub mod follow;
pub mod metrics;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sessionfold_schemas::{Millis, Topics};

use crate::metrics::Metrics;
use crate::view::{Cursor, PresenceView};

/// A request the projections cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing by that id.
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The presence view.
    pub presence: Arc<RwLock<PresenceView>>,
    /// True once the changelog has been read up to its end at start.
    pub ready: Arc<AtomicBool>,
    /// Metrics.
    pub metrics: Metrics,
}

impl AppState {
    /// Fresh, empty state.
    pub fn new(idle_timeout: Millis, metrics: Metrics) -> AppState {
        AppState {
            presence: Arc::new(RwLock::new(PresenceView::new(idle_timeout))),
            ready: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    fn presence(&self) -> std::sync::RwLockReadGuard<'_, PresenceView> {
        match self.presence.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

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

fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Deserialize)]
struct ActiveQuery {
    window: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn active(
    State(s): State<AppState>,
    Query(q): Query<ActiveQuery>,
) -> Result<Response, ApiError> {
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
struct WindowQuery {
    window: Option<String>,
}

async fn summary(
    State(s): State<AppState>,
    Query(q): Query<WindowQuery>,
) -> Result<Response, ApiError> {
    let window = window(q.window.as_deref())?;
    Ok(Json(s.presence().summary(now_millis(), window)).into_response())
}

async fn user(
    State(s): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    s.presence()
        .user(&user_id, now_millis())
        .map(|u| Json(u).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("unknown user {user_id:?}")))
}

/// The projections' routes.
pub fn app(state: AppState) -> Router {
    let http = state.metrics.http.clone();
    Router::new()
        .route("/v1/presence/active", get(active))
        .route("/v1/presence/summary", get(summary))
        .route("/v1/presence/users/{user_id}", get(user))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                if s.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "catching up with the changelog",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                sessionfold_kafka::metrics_response(&s.metrics.registry)
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            http,
            sessionfold_kafka::track_http,
        ))
        .with_state(state)
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of topics created on start.
    pub partitions: i32,
    /// Sessions idle this long are not online.
    pub idle_timeout: Millis,
}

/// Follows the changelogs and serves the views on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(settings.idle_timeout, Metrics::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    // Serve at once (readyz answers 503 until caught up); follow once the broker answers.
    let follower = {
        let (view, ready, metrics, stop) = (
            state.presence.clone(),
            state.ready.clone(),
            state.metrics.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            sessionfold_kafka::ensure_topics(
                &settings.brokers,
                &settings.topics,
                settings.partitions,
                Duration::MAX,
            )
            .await?;
            let topic = settings.topics.presence.clone();
            tokio::task::spawn_blocking(move || {
                follow::follow_presence(&settings.brokers, &topic, view, ready, metrics, stop)
            })
            .await??;
            anyhow::Ok(())
        })
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "projections listening");
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    stop.store(true, Ordering::SeqCst);
    served?;
    match tokio::time::timeout(Duration::from_secs(5), follower).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!("changelog follower still waiting for the broker; leaving it"),
    }
    Ok(())
}
