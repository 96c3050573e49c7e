//! sessionfold projections: live views over the changelog topics.
//!
//! A projections instance reads every partition of the compacted presence and
//! import-ownership changelogs from the beginning into memory, drops replayed
//! records by their input position, and answers "who is active in the last
//! W", per-device summaries, single-user lookups and "whose import is this"
//! over HTTP, each answer scoped to the caller's token, each saying how
//! fresh it is. The changelogs are its store, so any number of instances
//! can serve; a local snapshot of the views (`snapshot`) only spares a
//! restart from reading them all again.

mod api;
pub use sessionfold_views::{counts, imports, view};
mod dashboard;
pub mod follow;
pub mod freshness;
pub mod metrics;
mod routes;
pub mod snapshot;
pub mod stream;

pub use crate::routes::{app, document};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use axum::extract::FromRef;
use sessionfold_auth::Authenticator;
use sessionfold_schemas::{Millis, Topics};

pub use crate::api::ApiError;
use crate::follow::Views;
use crate::freshness::{Fresh, StaleReads};
use crate::imports::ImportView;
use crate::metrics::Metrics;
use crate::stream::Hub;
use crate::view::PresenceView;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The views.
    pub views: Views,
    /// True once the changelogs have been read up to their ends at start.
    pub ready: Arc<AtomicBool>,
    /// Metrics.
    pub metrics: Metrics,
    /// Verifies the callers' tokens.
    pub auth: Authenticator,
    /// Fans changes out to `/v1/stream` subscribers.
    pub hub: Arc<Hub>,
    /// Online users a minute, over the last hour.
    pub online: Arc<RwLock<sessionfold_views::history::OnlineHistory>>,
    /// How fresh the views are, and the bound on it.
    pub fresh: Fresh,
}

impl AppState {
    /// Caught up at start and within the staleness bound.
    pub fn is_ready(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err("catching up with the changelogs".to_owned());
        }
        match self.fresh.too_stale(&self.fresh.report()) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

impl FromRef<AppState> for Fresh {
    fn from_ref(s: &AppState) -> Fresh {
        s.fresh.clone()
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(s: &AppState) -> Authenticator {
        s.auth.clone()
    }
}

use sessionfold_edge::read;

impl AppState {
    /// Fresh, empty views.
    pub fn new(settings: &Settings, metrics: Metrics) -> AppState {
        let presence = Arc::new(RwLock::new(PresenceView::new(settings.idle_timeout)));
        let hub = Arc::new(Hub::new(
            format!("{:x}", chrono::Utc::now().timestamp_millis()),
            settings.stream_buffer,
        ));
        let rooms = presence.clone();
        hub.set_membership(Box::new(move |room, user| read(&rooms).in_room(room, user)));
        AppState {
            views: Views {
                presence,
                imports: Arc::new(RwLock::new(ImportView::new(settings.stale_after))),
            },
            ready: Arc::new(AtomicBool::new(false)),
            metrics,
            auth: settings.auth.clone(),
            hub,
            online: Arc::new(RwLock::new(sessionfold_views::history::OnlineHistory::new(
                60,
            ))),
            fresh: Fresh::new(settings.max_staleness, settings.stale_reads),
        }
    }

    fn presence(&self) -> RwLockReadGuard<'_, PresenceView> {
        read(&self.views.presence)
    }

    fn imports(&self) -> RwLockReadGuard<'_, ImportView> {
        read(&self.views.imports)
    }
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
    /// Sessions idle this long are not online, until the processor's
    /// changelog names its own.
    pub idle_timeout: Millis,
    /// The operator set `idle_timeout`: the processor's must be the same,
    /// or the service stops rather than answer by another rule.
    pub idle_timeout_set: bool,
    /// In-progress imports not accessed for this long are stale.
    pub stale_after: Millis,
    /// Verifies the callers' tokens.
    pub auth: Authenticator,
    /// Changes kept for `Last-Event-ID` resumption, and the most a live
    /// subscriber may fall behind before it is sent a resync.
    pub stream_buffer: usize,
    /// Views staler than this make the service not ready.
    pub max_staleness: Millis,
    /// Whether reads are answered while the views are staler than `max_staleness`.
    pub stale_reads: StaleReads,
    /// Where the views' snapshot is kept; `None`: no snapshot, every start
    /// reads the changelogs from the beginning.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// How often the snapshot is written while the views are caught up.
    pub snapshot_interval: Duration,
}

/// How long after the topics are ensured a changelog missing from the
/// broker's metadata is taken for one still appearing.
const TOPICS_APPEAR: Duration = Duration::from_secs(30);

/// Follows the changelogs and serves the views on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(&settings, Metrics::new()?);
    let stop = sessionfold_edge::Stop::new();
    let mut tasks = sessionfold_edge::Tasks::new(stop.clone());
    // Set when the follower finds the service must not go on serving.
    let refused = Arc::new(tokio::sync::Notify::new());
    let following = follow::Following {
        views: state.views.clone(),
        hub: state.hub.clone(),
        ready: state.ready.clone(),
        freshness: state.fresh.freshness.clone(),
        metrics: state.metrics.clone(),
        identity: Arc::new(std::sync::OnceLock::new()),
    };
    let snapshot_dir = settings.snapshot_dir.clone();
    if let Some(dir) = snapshot_dir.clone() {
        let (following, every) = (following.clone(), settings.snapshot_interval);
        tasks.spawn("views snapshot", async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                snapshot_now(&dir, &following).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), std::convert::Infallible>(())
        });
    }
    // Serve at once (readyz answers 503 until caught up); follow once the broker answers.
    let follower = {
        let (following, stop) = (following.clone(), stop.clone());
        let refused = refused.clone();
        tokio::spawn(async move {
            sessionfold_edge::ensure_topics(
                &settings.brokers,
                &settings.topics,
                settings.partitions,
                Duration::MAX,
            )
            .await?;
            // A follower that fails (a topic whose partitions have no leader
            // yet, a broker that went away) starts again: the views drop what
            // they already hold, so nothing is applied twice, and the service
            // never goes on answering from a view that stopped moving.
            let mut delay = Duration::from_millis(200);
            let started = std::time::Instant::now();
            loop {
                let (following, stopping, settings) =
                    (following.clone(), stop.clone(), settings.clone());
                let outcome = tokio::task::spawn_blocking(move || {
                    follow::follow(&settings, following, stopping)
                })
                .await?;
                match outcome {
                    Ok(()) => return anyhow::Ok(()),
                    Err(e @ follow::FollowError::IdleTimeoutDiffers { .. }) => {
                        tracing::error!(error = %e, "stopping");
                        refused.notify_one();
                        return Err(e.into());
                    }
                    // Topics just created can take a moment to show in the
                    // broker's metadata: a first start, not a fault.
                    Err(e @ follow::FollowError::NoTopic(_))
                        if !stop.is_stopping() && started.elapsed() < TOPICS_APPEAR =>
                    {
                        tracing::info!(error = %e, retry_in = ?delay, "the changelogs are not in the broker's metadata yet; waiting for them");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) if !stop.is_stopping() => {
                        tracing::error!(error = %e, retry_in = ?delay, "following the changelogs failed; starting again");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    };
    // The chart's data: online users, sampled every 5 s, peak per minute.
    {
        let (presence, online, ready) = (
            state.views.presence.clone(),
            state.online.clone(),
            state.ready.clone(),
        );
        tasks.spawn("online sampler", async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                if !ready.load(Ordering::SeqCst) {
                    continue;
                }
                let now = chrono::Utc::now().timestamp_millis();
                let view = read(&presence);
                let users = view.summary(now, view.idle_timeout()).users;
                drop(view);
                sessionfold_edge::write(&online).sample(now, users);
            }
            #[allow(unreachable_code)]
            Ok::<(), std::convert::Infallible>(())
        });
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "projections listening");
    // On stop, open streams get a last `closing` event and end, so the
    // drain does not wait on them.
    let hub = state.hub.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = refused.notified() => {}
        }
        hub.close();
    };
    let served = sessionfold_edge::http::serve(listener, app(state), shutdown).await;
    tasks.stop_within(Duration::from_secs(1)).await;
    // A stop leaves a fresh snapshot, so the next start reads little.
    if let Some(dir) = snapshot_dir {
        snapshot_now(&dir, &following).await;
    }
    served?;
    match tokio::time::timeout(Duration::from_secs(5), follower).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!("changelog follower still waiting for the broker; leaving it"),
    }
    Ok(())
}

/// Writes the views' snapshot into `dir` when they are caught up, off the
/// async threads; a failure is logged and the last snapshot stays.
async fn snapshot_now(dir: &std::path::Path, f: &follow::Following) {
    let Some(identity) = f.identity.get().cloned() else {
        return;
    };
    if !f.ready.load(Ordering::SeqCst) {
        return;
    }
    let (dir, views, freshness) = (dir.to_owned(), f.views.clone(), f.freshness.clone());
    let started = std::time::Instant::now();
    let written = tokio::task::spawn_blocking(move || {
        let contract = sessionfold_schemas::Contract::load()?;
        snapshot::write(&dir, &identity, &contract, &views, &freshness)
    })
    .await;
    match written {
        Ok(Ok(t)) => tracing::debug!(
            presence = t.presence,
            imports = t.imports,
            took_ms = started.elapsed().as_millis() as u64,
            "views snapshot written"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "writing the views' snapshot; the last one stays"),
        Err(e) => tracing::warn!(error = %e, "writing the views' snapshot; the last one stays"),
    }
}
