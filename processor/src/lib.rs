//! The sessionfold processor.
//!
//! A member of a Kafka consumer group that owns some partitions of the activity
//! topic. For each it keeps the folded per-user state in sled, folds incoming
//! events in batches with the pure fold of `sessionfold-fold`, publishes every
//! changed user to the compacted presence changelog (same partition number as
//! the input) and commits state and input offsets in one sled write. A
//! wall-clock tick expires idle sessions even when no event arrives.

pub mod dead_letter;
mod error;
pub mod liveness;
pub mod metrics;
pub use sessionfold_edge::offsets;
mod output;
pub mod pipeline;
pub mod restore;
pub mod rules;
pub mod standby;
pub mod store;
pub mod tables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

pub use error::ProcessorError;
pub use pipeline::{LoopSettings, Processor, Status};
pub use store::{MemoryStore, SharedStore, StateStore, Store};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The loop's settings.
    pub looping: LoopSettings,
    /// Directory of the sled store.
    pub state_dir: PathBuf,
    /// Partitions of topics created on start.
    pub partitions: i32,
    /// Bytes of sled's page cache.
    pub store_cache: u64,
}

#[derive(Clone)]
struct Ops {
    metrics: metrics::Metrics,
    status: Arc<Status>,
}

/// The processor's HTTP surface: health and metrics.
fn ops_router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(ops): State<Ops>| async move {
                match ops.status.not_ready() {
                    None => (axum::http::StatusCode::OK, "ready".to_owned()),
                    Some(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(ops): State<Ops>| async move {
                let ready = ops.status.not_ready().is_none();
                ops.metrics.gauges.response(&ops.metrics.registry, ready)
            }),
        )
        .with_state(ops)
}

/// How long a stop may take to publish and store the batch in hand; an
/// orchestrator's grace period (Kubernetes: 30 s) is longer.
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs the processor until `shutdown` resolves, serving health and metrics on `listener`.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProcessorError> {
    let metrics = metrics::Metrics::new()?;
    let store = match Store::open_with_cache(&settings.state_dir, settings.store_cache) {
        Ok(s) => s,
        Err(e) if settings.looping.rebuild_damaged => {
            let aside = store::move_aside(&settings.state_dir)?;
            tracing::error!(error = %e, moved_to = %aside.display(), "local store cannot be opened; moved aside, every partition will be rebuilt from the changelog");
            metrics.store_rebuilt.inc();
            Store::open_with_cache(&settings.state_dir, settings.store_cache)?
        }
        Err(e) => return Err(e),
    };
    let status = Arc::new(Status::default());
    let stop = sessionfold_edge::Stop::new();
    let mut tasks = sessionfold_edge::Tasks::new(stop.clone());
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, state_dir = %settings.state_dir.display(), "processor starting");
    let app = ops_router(Ops {
        metrics: metrics.clone(),
        status: status.clone(),
    });
    let server = tokio::spawn(async move {
        sessionfold_edge::http::serve(listener, app, std::future::pending()).await
    });
    tokio::pin!(shutdown);
    let topics = sessionfold_edge::ensure_topics(
        &settings.looping.brokers,
        &settings.looping.topics,
        settings.partitions,
        std::time::Duration::MAX,
    );
    tokio::select! {
        r = topics => r?,
        _ = &mut shutdown => {
            server.abort();
            return Ok(());
        }
    }
    {
        let (brokers, topics) = (
            settings.looping.brokers.clone(),
            settings.looping.topics.clone(),
        );
        tokio::task::spawn_blocking(move || {
            sessionfold_edge::check_partition_counts(&brokers, &topics)
        })
        .await
        .map_err(|e| ProcessorError::Worker(e.to_string()))??;
    }
    let erasures = Arc::new(std::sync::RwLock::new(sessionfold_fold::Erasures::new()));
    sessionfold_edge::follow::erasures(
        &mut tasks,
        &settings.looping.brokers,
        &settings.looping.topics.erasures,
        sessionfold_edge::registry::contract()?,
        erasures.clone(),
    );
    let mut worker = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let p = Processor::new(settings.looping, Arc::new(store), metrics, status, erasures)?;
            p.run(stop)
        })
    };
    let result = tokio::select! {
        r = &mut worker => r,
        _ = &mut shutdown => {
            tracing::info!("stopping: finishing the current batch");
            stop.stop();
            match tokio::time::timeout(STOP_DEADLINE, &mut worker).await {
                Ok(r) => r,
                Err(_) => {
                    // Leaving is safe: what was folded and not stored is
                    // read again from the stored offsets at the next start.
                    tracing::warn!(
                        deadline = ?STOP_DEADLINE,
                        "the current batch could not be published and stored in time (is the broker reachable?); stopping without it: it is folded again at the next start"
                    );
                    server.abort();
                    tasks.stop_within(std::time::Duration::from_secs(1)).await;
                    return Ok(());
                }
            }
        }
    };
    server.abort();
    tasks.stop_within(std::time::Duration::from_secs(5)).await;
    result.map_err(|e| ProcessorError::Worker(e.to_string()))?
}
