//! The sessionfold producer: HTTP ingest in front of Kafka.
//!
//! Browsers and services post JSON events; the producer validates them (with a
//! field-level message when something is wrong), clamps event times that lie
//! too far ahead, encodes them as Avro single-object records and hands them to
//! an idempotent Kafka producer keyed by user (activity) or import (imports).
//! The [`client`] module is the Rust client other services use, and
//! [`simulate`] generates realistic traffic through it.

pub mod beacon;
mod bodies;
pub use sessionfold_client as client;
mod erasure;
mod error;
mod events;
pub use sessionfold_ingest as input;
pub mod owners;
mod routes;
pub mod simulate;
mod sink;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::FromRef;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sessionfold_auth::Authenticator;
use sessionfold_edge::HttpMetrics;
use sessionfold_schemas::{Contract, Millis, SchemaError, Topics};

pub use error::ApiError;
pub use events::Ack;
pub(crate) use events::{client_address, receipt, send_all};
pub use routes::{app, document};
pub use sink::{Acks, FailureEpisode, Sink, SinkError};

/// Limits and rules of the ingest.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one request.
    pub max_events: usize,
    /// Most an event time may lie ahead of the time received.
    pub max_clock_skew: Millis,
    /// How much of a client's address a session start records.
    pub addresses: input::address::AddressPolicy,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Web origins allowed to call the ingest from a browser (CORS).
    pub cors_origins: Vec<String>,
    /// Longest a request that asks for the broker's acknowledgement waits.
    pub ack_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_events: 1000,
            max_clock_skew: 60_000,
            addresses: input::address::AddressPolicy::default(),
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            ack_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of the ingest.
#[derive(Clone)]
pub struct Metrics {
    /// Registry served on `/metrics`.
    pub registry: Registry,
    /// Events accepted, by kind.
    pub accepted: IntCounterVec,
    /// Requests rejected, by reason.
    pub rejected: IntCounterVec,
    /// Deliveries acknowledged or failed.
    pub delivered: IntCounterVec,
    /// 1 while a run of failed deliveries is open.
    pub failing: IntGauge,
    http: HttpMetrics,
    gauges: sessionfold_edge::ServiceGauges,
}

impl Metrics {
    /// Registers every producer metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("sessionfold_producer".into()), None)?;
        let accepted = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new("events_accepted_total", "Events accepted, by kind"),
                &["kind"],
            ),
        )?;
        let rejected = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new("requests_rejected_total", "Requests rejected, by reason"),
                &["reason"],
            ),
        )?;
        let delivered = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new("deliveries_total", "Kafka deliveries by result"),
                &["result"],
            ),
        )?;
        let failing = sessionfold_edge::registered(
            &registry,
            IntGauge::new(
                "deliveries_failing",
                "1 from a failed delivery until the next successful one",
            ),
        )?;
        let http = HttpMetrics::register(&registry)?;
        let gauges = sessionfold_edge::ServiceGauges::register(&registry)?;
        Ok(Metrics {
            registry,
            accepted,
            rejected,
            delivered,
            failing,
            http,
            gauges,
        })
    }
}

/// Shared state of the ingest handlers.
#[derive(Clone)]
pub struct AppState {
    contract: Arc<Contract>,
    sink: Sink,
    topics: Arc<Topics>,
    metrics: Metrics,
    limits: Limits,
    auth: Authenticator,
    owners: Arc<owners::Owners>,
    framing: Framing,
    /// Users forgotten: their events are refused.
    erasures: Arc<std::sync::RwLock<sessionfold_fold::Erasures>>,
    brokers: Arc<str>,
    /// Signs and checks the end tickets of browser sessions.
    pub tickets: beacon::Tickets,
    /// Per-caller limits of the costly routes.
    throttle: Arc<throttle::Throttle>,
}

/// How the ingest frames the Avro records it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Avro single-object encoding: `C3 01`, the schema fingerprint, the body.
    #[default]
    SingleObject,
    /// The Schema Registry wire format: `00`, the schema id, the body.
    Registry {
        /// Schema id of the activity schema under `<prefix>.activity-value`.
        activity: u32,
        /// Schema id of the import schema under `<prefix>.imports-value`.
        imports: u32,
    },
}

impl Framing {
    /// Registers the current schemas under the input topics' subjects
    /// (`<topic>-value`), each checked for compatibility with the subject first.
    pub async fn registered(
        registry: &sessionfold_edge::registry::Registry,
        topics: &Topics,
    ) -> Result<Framing, sessionfold_edge::EdgeError> {
        let activity = registry
            .register_checked(
                &format!("{}-value", topics.activity),
                sessionfold_schemas::ACTIVITY_AVSC,
            )
            .await?;
        let imports = registry
            .register_checked(
                &format!("{}-value", topics.imports),
                sessionfold_schemas::IMPORT_AVSC,
            )
            .await?;
        Ok(Framing::Registry { activity, imports })
    }

    /// A single-object record framed as this ingest writes it.
    fn frame(self, bytes: Vec<u8>, import: bool) -> Result<Vec<u8>, SchemaError> {
        match self {
            Framing::SingleObject => Ok(bytes),
            Framing::Registry { activity, imports } => sessionfold_schemas::to_registry_format(
                &bytes,
                if import { imports } else { activity },
            ),
        }
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(s: &AppState) -> Authenticator {
        s.auth.clone()
    }
}

impl AppState {
    /// Builds the state; the sink is created from `brokers` and counts into `metrics`.
    pub fn new(
        brokers: &str,
        topics: Topics,
        limits: Limits,
        buffer_messages: usize,
        metrics: Metrics,
        auth: Authenticator,
    ) -> Result<AppState, ApiError> {
        let contract = Contract::load().map_err(|e| ApiError::Internal(e.to_string()))?;
        let sink = Sink::new(
            brokers,
            buffer_messages,
            metrics.delivered.clone(),
            metrics.failing.clone(),
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(AppState {
            contract: Arc::new(contract),
            sink,
            topics: Arc::new(topics),
            metrics,
            limits,
            auth,
            owners: Arc::default(),
            framing: Framing::default(),
            erasures: Arc::default(),
            brokers: brokers.into(),
            tickets: beacon::Tickets::default(),
            throttle: Arc::default(),
        })
    }

    /// Counts one call of `route` by `key`; refuses it past the caller's share.
    pub(crate) fn throttle(&self, route: throttle::Route, key: &str) -> Result<(), ApiError> {
        self.throttle.check(route, key).map_err(ApiError::TooMany)
    }

    /// The sink, to flush on shutdown.
    pub fn sink(&self) -> &Sink {
        &self.sink
    }
}

use sessionfold_edge::now_millis;

fn json_body(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Value, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "request body over {} bytes",
                state.limits.max_body_bytes
            ))
        } else {
            ApiError::BadRequest(input::FieldError {
                field: "body".into(),
                message: r.body_text(),
            })
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(input::FieldError {
            field: "body".into(),
            message: format!("malformed JSON: {e}"),
        })
    })
}

fn answer(state: &AppState, result: Result<Accepted, ApiError>) -> Response {
    match result {
        Ok(a) => (
            StatusCode::ACCEPTED,
            Json(bodies::AcceptedBody {
                accepted: a.ids,
                acknowledged: a.acknowledged,
            }),
        )
            .into_response(),
        Err(e) => refused(state, e),
    }
}

/// Events a request handed to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Their ids, in the request's order.
    pub ids: Vec<String>,
    /// True when the broker stored them all before the answer (`ack=broker`);
    /// false when they wait in the producer's buffer.
    pub acknowledged: bool,
}

/// The answer to a refused request, counted by reason.
fn refused(state: &AppState, e: ApiError) -> Response {
    state
        .metrics
        .rejected
        .with_label_values(&[e.reason()])
        .inc();
    e.into_response()
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How records are framed on the input topics.
    pub framing: Framing,
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of topics created on start.
    pub partitions: i32,
    /// Ingest limits.
    pub limits: Limits,
    /// Records buffered while the broker is away.
    pub buffer_messages: usize,
    /// Verifies the callers' tokens.
    pub auth: Authenticator,
    /// Signs the browser sessions' end tickets.
    pub tickets: beacon::Tickets,
}

/// Serves the ingest on `listener` until `shutdown` resolves, then flushes the buffer.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Serve at once: while the broker is away, events wait in the buffer and
    // a full buffer answers 503; topics are created as soon as it is reachable.
    let (brokers, topics, partitions) = (
        settings.brokers.clone(),
        settings.topics.clone(),
        settings.partitions,
    );
    let brokers_for_topics = brokers.clone();
    tokio::spawn(async move {
        if let Err(e) =
            sessionfold_edge::ensure_topics(&brokers_for_topics, &topics, partitions, Duration::MAX)
                .await
        {
            tracing::error!(error = %e, "creating topics");
        }
    });
    let metrics = Metrics::new()?;
    let mut state = AppState::new(
        &settings.brokers,
        settings.topics,
        settings.limits,
        settings.buffer_messages,
        metrics,
        settings.auth,
    )?;
    state.framing = settings.framing;
    state.tickets = settings.tickets;
    let sink = state.sink().clone();
    let mut tasks = sessionfold_edge::Tasks::new(sessionfold_edge::Stop::new());
    sessionfold_edge::follow::erasures(
        &mut tasks,
        &brokers,
        &state.topics.erasures,
        (*state.contract).clone(),
        state.erasures.clone(),
    );
    {
        let owners = state.owners.clone();
        let topic = state.topics.import_ownership.clone();
        tasks.spawn_blocking("import owners follower", move |stop| {
            owners::follow(&brokers, &topic, owners, &stop)
        });
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "producer listening");
    sessionfold_edge::http::serve(listener, app(state), shutdown).await?;
    let flushed = tokio::task::spawn_blocking(move || sink.flush(Duration::from_secs(10)));
    tasks.stop_within(Duration::from_secs(5)).await;
    flushed.await??;
    Ok(())
}
