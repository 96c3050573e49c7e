//! What the three sessionfold services share at their edge.
//!
//! The producer, the processor and the projections all talk to the same broker,
//! name topics from the same prefix, create them on start if missing, log the
//! same way and expose Prometheus metrics the same way. That common ground
//! lives here so each binary stays a thin layer over its own library.

pub mod cluster;
pub mod http;
pub mod registry;
pub mod sync;

pub use sync::{lock, millis, now_millis, read, write};

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Registry, TextEncoder};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use sessionfold_schemas::Topics;
use thiserror::Error;

/// Errors at the broker edge.
#[derive(Debug, Error)]
pub enum EdgeError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic could not be created.
    #[error("creating topic {topic}: {reason}")]
    CreateTopic {
        /// Topic name.
        topic: String,
        /// Broker's answer.
        reason: String,
    },
    /// A setting is wrong.
    #[error("{what}: {reason}")]
    Config {
        /// Which setting.
        what: String,
        /// Why.
        reason: String,
    },
    /// A topic the services need is missing and may not be created.
    #[error(
        "topic {topic} does not exist and topic creation is off (--create-topics false): ask the operator to create it{hint}"
    )]
    MissingTopic {
        /// Topic name.
        topic: String,
        /// What it must look like.
        hint: String,
    },
    /// The input and changelog topics disagree on their partition count.
    #[error(
        "{input} has {input_partitions} partitions but its changelog {changelog} has {changelog_partitions}: a user's state lives on the changelog partition with the number of its input partition, so both must have the same count. Recreate {changelog} with {input_partitions} partitions (and cleanup.policy=compact), or start over with a new --topic-prefix"
    )]
    PartitionMismatch {
        /// Input topic.
        input: String,
        /// Its partitions.
        input_partitions: usize,
        /// Changelog topic.
        changelog: String,
        /// Its partitions.
        changelog_partitions: usize,
    },
    /// The schema registry failed or refused.
    #[error("schema registry, {what}: {reason}")]
    Registry {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The broker did not answer in time.
    #[error("broker {brokers} unreachable after {waited:?}")]
    Unreachable {
        /// Bootstrap list.
        brokers: String,
        /// How long we waited.
        waited: Duration,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options every service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "SESSIONFOLD_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of every topic name.
    #[arg(long, env = "SESSIONFOLD_TOPIC_PREFIX", default_value = "sessionfold")]
    pub topic_prefix: String,
    /// Partitions of topics created on start.
    #[arg(long, env = "SESSIONFOLD_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Log format.
    #[arg(
        long,
        env = "SESSIONFOLD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// A librdkafka property for every Kafka client, `key=value`; repeat it
    /// (e.g. `security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-512`,
    /// `sasl.username=…`, `sasl.password=…`, `ssl.ca.location=…`). In the
    /// environment form, separate several with `;`.
    #[arg(long = "kafka-property", env = "SESSIONFOLD_KAFKA_PROPERTIES", value_delimiter = ';', hide_env_values = true, value_parser = cluster::parse_property)]
    pub kafka_property: Vec<(String, String)>,
    /// A file of librdkafka properties (`key=value` lines, `#` comments),
    /// applied before `--kafka-property`.
    #[arg(long, env = "SESSIONFOLD_KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<std::path::PathBuf>,
    /// Create missing topics on start; with `false`, only check that the
    /// operator made them (a principal without create rights).
    #[arg(long, env = "SESSIONFOLD_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// Replication factor of created topics.
    #[arg(long, env = "SESSIONFOLD_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
    /// `min.insync.replicas` of created topics (the broker's default when unset).
    #[arg(long, env = "SESSIONFOLD_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i32>,
    /// How long the input topics keep events (`retention.ms` of created
    /// topics): the history a replay can read. A duration or `forever`.
    #[arg(long, env = "SESSIONFOLD_INPUT_RETENTION", default_value = "30d", value_parser = cluster::parse_retention)]
    pub input_retention: cluster::Retention,
    /// How long the dead-letter topic keeps records. A duration or `forever`.
    #[arg(long, env = "SESSIONFOLD_DEAD_LETTER_RETENTION", default_value = "30d", value_parser = cluster::parse_retention)]
    pub dead_letter_retention: cluster::Retention,
    /// The Schema Registry, for records in its wire format.
    #[command(flatten)]
    pub registry: registry::RegistryArgs,
}

impl CommonArgs {
    /// Starts logging and installs the Kafka properties and topic settings
    /// for every client of this process; call once, first.
    pub fn init(&self) -> Result<(), EdgeError> {
        init_logging(self.log_format);
        let mut props = match &self.kafka_properties_file {
            Some(path) => cluster::read_properties_file(path)?,
            None => Vec::new(),
        };
        props.extend(self.kafka_property.iter().cloned());
        cluster::install_properties(props);
        if let Some(r) = registry::Registry::from_args(&self.registry)? {
            let runtime = tokio::runtime::Handle::try_current().map_err(|e| EdgeError::Config {
                what: "the schema registry lookups".into(),
                reason: format!("no async runtime: {e}"),
            })?;
            tracing::info!(registry = ?r, "reading the Schema Registry wire format too");
            registry::install(registry::RegistryIds::start(r, &runtime));
        }
        cluster::install_policy(cluster::TopicPolicy {
            create: self.create_topics,
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
            input_retention: self.input_retention.0,
            dead_letter_retention: self.dead_letter_retention.0,
        });
        Ok(())
    }

    /// Topic names under the configured prefix.
    pub fn topics(&self) -> Topics {
        Topics::new(&self.topic_prefix)
    }

    /// A client configuration pointing at the brokers.
    pub fn client_config(&self) -> ClientConfig {
        client_config(&self.brokers)
    }
}

/// A client configuration with the settings every sessionfold client shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("socket.keepalive.enable", "true")
        .set("topic.metadata.refresh.interval.ms", "10000");
    for (k, v) in cluster::properties() {
        c.set(k, v);
    }
    c
}

/// A consumer configuration: [`client_config`] plus a short fetch wait.
///
/// librdkafka's default `fetch.wait.max.ms` of 500 ms is spent in full
/// whenever the broker has no data at the moment of the fetch (tansu
/// answers at the end of the wait rather than when a record arrives), which
/// puts up to half a second on every hop from ingest to view. 20 ms keeps a
/// quiet consumer at about 50 fetches a second per broker.
pub fn consumer_config(brokers: &str) -> ClientConfig {
    let mut c = client_config(brokers);
    c.set("fetch.wait.max.ms", "20");
    c
}

/// Starts logging to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only where a person reads a terminal; a file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(OneLinePerRecord { keep_esc: ansi });
    // A second initialisation (tests start several services in one process) is harmless.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Stderr on which every log record stays one line: control characters
/// inside a record (a newline in an id a client sent) are escaped, so input
/// can never forge a log line. The formatter hands over each record in one
/// write. Colour codes are kept only when they are ours (a terminal).
#[derive(Debug, Clone, Copy)]
struct OneLinePerRecord {
    keep_esc: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLinePerRecord {
    type Writer = OneLinePerRecord;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl std::io::Write for OneLinePerRecord {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&escape_record(buf, self.keep_esc))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One log record with its inner control characters escaped (`\n`, `\r`,
/// `\x1b`…); the final newline stays.
fn escape_record(buf: &[u8], keep_esc: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match buf.strip_suffix(b"\n") {
        Some(b) => (b, &b"\n"[..]),
        None => (buf, &b""[..]),
    };
    let bad = |b: u8| (b < 0x20 && b != b'\t' && !(keep_esc && b == 0x1b)) || b == 0x7f;
    if !body.iter().any(|b| bad(*b)) {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' if bad(b) => out.extend_from_slice(b"\\n"),
            b'\r' if bad(b) => out.extend_from_slice(b"\\r"),
            b if bad(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

/// Creates every sessionfold topic that does not exist yet, waiting for the
/// broker (with a log line per attempt) up to `patience`.
pub async fn ensure_topics(
    brokers: &str,
    topics: &Topics,
    partitions: i32,
    patience: Duration,
) -> Result<(), EdgeError> {
    let admin: AdminClient<QuietLogs> =
        client_config(brokers).create_with_context(QuietLogs::default())?;
    let policy = cluster::policy();
    let input_retention = cluster::retention_ms(policy.input_retention);
    let dead_retention = cluster::retention_ms(policy.dead_letter_retention);
    let min_isr = policy.min_insync_replicas.map(|n| n.to_string());
    let compacted = vec![("cleanup.policy", "compact")];
    let input = vec![("retention.ms", input_retention.as_str())];
    let dead = vec![("retention.ms", dead_retention.as_str())];
    let specs: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (&topics.activity, input.clone()),
        (&topics.imports, input),
        (&topics.presence, compacted.clone()),
        (&topics.import_ownership, compacted),
        (&topics.dead_letter, dead),
    ];
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|(name, cfg)| {
            let t = cfg.iter().fold(
                NewTopic::new(
                    name,
                    partitions,
                    TopicReplication::Fixed(policy.replication_factor),
                ),
                |t, (k, v)| t.set(k, v),
            );
            match &min_isr {
                Some(n) => t.set("min.insync.replicas", n),
                None => t,
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut last_cause: Option<String> = None;
    let mut last_logged = started;
    loop {
        // Creating topics on an absent broker just waits; a short metadata probe
        // tells at once whether it is there, so the wait is logged and retried.
        let probe = {
            let config = client_config(brokers);
            tokio::task::spawn_blocking(move || {
                let consumer: rdkafka::consumer::BaseConsumer<ProbeLogs> = config
                    .create_with_context(ProbeLogs::default())
                    .map_err(|error| ProbeFailure { error, cause: None })?;
                let found = rdkafka::consumer::Consumer::fetch_metadata(
                    &consumer,
                    None,
                    Duration::from_secs(2),
                );
                match found {
                    Ok(m) => Ok(m
                        .topics()
                        .iter()
                        .filter(|t| !t.partitions().is_empty())
                        .map(|t| t.name().to_owned())
                        .collect::<Vec<_>>()),
                    Err(e) => {
                        // The reason (refused connection, TLS, authentication)
                        // arrives as an event: serve the queue to collect it.
                        let _ = consumer.poll(Duration::from_millis(100));
                        Err(ProbeFailure {
                            error: e,
                            cause: rdkafka::consumer::Consumer::context(&consumer).cause(),
                        })
                    }
                }
            })
            .await
            .map_err(|e| EdgeError::CreateTopic {
                topic: "(probe)".into(),
                reason: e.to_string(),
            })?
        };
        let result = match probe {
            Ok(names) if !policy.create => {
                return match specs.iter().find(|(n, _)| !names.iter().any(|x| x == *n)) {
                    None => Ok(()),
                    Some((topic, cfg)) => Err(EdgeError::MissingTopic {
                        topic: (*topic).to_owned(),
                        hint: if cfg.contains(&("cleanup.policy", "compact")) {
                            format!(" with {partitions} partitions and cleanup.policy=compact")
                        } else {
                            format!(" with {partitions} partitions")
                        },
                    }),
                };
            }
            Ok(names) => admin
                .create_topics(new.iter(), &opts)
                .await
                .map(|r| (r, names))
                .map_err(|error| ProbeFailure { error, cause: None }),
            Err(e) => Err(e),
        };
        match result {
            Ok((results, existing)) => {
                for r in results {
                    match r {
                        Ok(name) => tracing::info!(topic = %name, partitions, "created topic"),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        // A principal without create rights is refused even
                        // for a topic the operator made: that one is fine.
                        Err((topic, _)) if existing.contains(&topic) => {}
                        Err((topic, code)) => {
                            return Err(EdgeError::CreateTopic {
                                topic,
                                reason: code.to_string(),
                            });
                        }
                    }
                }
                return Ok(());
            }
            Err(ProbeFailure { error, cause }) if started.elapsed() < patience => {
                // The same cause is logged once a minute, not at every retry.
                let cause = cause.unwrap_or_default();
                if last_cause.as_deref() != Some(cause.as_str())
                    || last_logged.elapsed() >= Duration::from_secs(60)
                {
                    tracing::warn!(brokers, error = %error, cause = %cause, retry_in = ?delay, "broker not reachable yet; retrying (the same cause is logged once a minute)");
                    last_cause = Some(cause);
                    last_logged = tokio::time::Instant::now();
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(_) => {
                return Err(EdgeError::Unreachable {
                    brokers: brokers.to_owned(),
                    waited: started.elapsed(),
                });
            }
        }
    }
}

/// A failed look at the cluster, with the client's own word on why.
struct ProbeFailure {
    error: KafkaError,
    cause: Option<String>,
}

/// Keeps the first error librdkafka reported, so that "not reachable" can
/// say why (connection refused, TLS, authentication).
#[derive(Default)]
struct ProbeLogs {
    last: std::sync::Mutex<Option<String>>,
}

impl ProbeLogs {
    fn cause(&self) -> Option<String> {
        crate::lock(&self.last).clone()
    }

    /// Keeps the first error of the probe: the later ones repeat it.
    fn note(&self, what: String) {
        let mut g = crate::lock(&self.last);
        g.get_or_insert(what);
    }
}

impl rdkafka::ClientContext for ProbeLogs {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(level, L::Emerg | L::Alert | L::Critical | L::Error) {
            // Drop the thread tag and the timing, which differ at every try.
            let msg = msg.split_once("]: ").map_or(msg, |(_, m)| m);
            let msg = msg.split(" (after ").next().unwrap_or(msg);
            self.note(msg.to_owned());
        } else {
            tracing::debug!(target: "librdkafka", facility = fac, "{msg}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(format!("{error}: {reason}"));
    }
}

impl rdkafka::consumer::ConsumerContext for ProbeLogs {}

/// A partition's low and high watermarks. A partition whose leader is still
/// being elected (just after its topic was created, or during a broker
/// restart) answers "not leader" for a moment: asked again for up to 30 s.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    use rdkafka::consumer::Consumer;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut wait = Duration::from_millis(50);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Err(e)
                if std::time::Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::NotLeaderForPartition
                                | RDKafkaErrorCode::LeaderNotAvailable
                                | RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::NotCoordinator
                        )
                    ) =>
            {
                tracing::debug!(topic, partition, error = %e, "partition has no leader yet; asking again");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Refuses to go on when an input topic and its changelog have different
/// partition counts (topics made by hand, or a changelog recreated).
pub fn check_partition_counts(brokers: &str, topics: &Topics) -> Result<(), EdgeError> {
    let consumer: rdkafka::consumer::BaseConsumer<QuietLogs> =
        client_config(brokers).create_with_context(QuietLogs::default())?;
    let count = |topic: &str| -> Result<usize, EdgeError> {
        let m = rdkafka::consumer::Consumer::fetch_metadata(
            &consumer,
            Some(topic),
            Duration::from_secs(10),
        )?;
        Ok(m.topics()
            .iter()
            .filter(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .sum())
    };
    for (input, changelog) in [
        (&topics.activity, &topics.presence),
        (&topics.imports, &topics.import_ownership),
    ] {
        let (i, c) = (count(input)?, count(changelog)?);
        if i != c {
            return Err(EdgeError::PartitionMismatch {
                input: input.clone(),
                input_partitions: i,
                changelog: changelog.clone(),
                changelog_partitions: c,
            });
        }
    }
    Ok(())
}

/// The Prometheus text exposition of a registry, as an HTTP response.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Parses a humantime duration such as `500ms`, `5s`, `5m`, `24h` (for clap).
pub fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Request counts and latency by route, for any axum service.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: prometheus::IntCounterVec,
    latency: prometheus::HistogramVec,
}

impl HttpMetrics {
    /// Registers the HTTP metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )?;
        let latency = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("http_request_seconds", "HTTP latency by route")
                .buckets(prometheus::exponential_buckets(0.00005, 2.0, 18)?),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(HttpMetrics { requests, latency })
    }
}

/// Middleware recording [`HttpMetrics`]; use with `axum::middleware::from_fn_with_state`.
pub async fn track_http(
    axum::extract::State(m): axum::extract::State<HttpMetrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    m.latency
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

/// Lets one log line per key through per period and counts the ones held
/// back, so that a repeated condition (a broker away, a stream of bad
/// records) is seen once in a while and never floods the log.
pub struct LogThrottle {
    period: Duration,
    seen: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

impl LogThrottle {
    /// A throttle that lets one line per key through every `period`.
    pub fn new(period: Duration) -> LogThrottle {
        LogThrottle {
            period,
            seen: std::sync::Mutex::default(),
        }
    }

    /// `Some(n)` when a line for `key` may be logged now, `n` being how many
    /// were held back since the last one; `None` (and counted) otherwise.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let mut seen = crate::lock(&self.seen);
        let now = std::time::Instant::now();
        match seen.get_mut(key) {
            Some((at, held)) if now.duration_since(*at) < self.period => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                *at = now;
                *held = 0;
                Some(n)
            }
            None => {
                seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Routes librdkafka's own log lines and errors to `tracing`. While a broker
/// is away librdkafka reports the failed connection several times a second;
/// those repeats are logged once per 30 s per kind, as warnings, so the
/// services' own "retrying" line stays readable. Other errors pass through.
pub struct QuietLogs {
    throttle: LogThrottle,
}

impl Default for QuietLogs {
    fn default() -> QuietLogs {
        QuietLogs {
            throttle: LogThrottle::new(Duration::from_secs(30)),
        }
    }
}

impl QuietLogs {
    fn first_in_a_while(&self, what: &'static str) -> bool {
        self.throttle.admit(what).is_some()
    }

    /// Handles a librdkafka log line.
    pub fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let connection = msg.contains("Connect to")
            || msg.contains("Connection refused")
            || msg.contains("Disconnected")
            || msg.contains("brokers are down");
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error if connection => {
                if self.first_in_a_while("connect") {
                    tracing::warn!(target: "librdkafka", facility = fac, "{msg} (repeats are not logged for 30 s)");
                }
            }
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{msg}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{msg}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", facility = fac, "{msg}"),
            L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{msg}"),
        }
    }

    /// Handles a librdkafka global error.
    pub fn error(&self, error: KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
        );
        if !transport {
            tracing::error!(target: "librdkafka", error = %error, "{reason}");
        } else if self.first_in_a_while("transport") {
            tracing::warn!(target: "librdkafka", error = %error, "{reason} (repeats are not logged for 30 s)");
        }
    }
}

impl rdkafka::ClientContext for QuietLogs {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        QuietLogs::log(self, level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        QuietLogs::error(self, error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietLogs {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_stays_one_line() {
        let forged = b"WARN import a\n2026-01-01T00:00:00Z INFO fake line\r\x1b[31m\n";
        assert_eq!(
            super::escape_record(forged, false).as_ref(),
            b"WARN import a\\n2026-01-01T00:00:00Z INFO fake line\\r\\x1b[31m\n"
        );
        assert_eq!(
            super::escape_record(b"\x1b[2mINFO\x1b[0m ok\tx\n", true).as_ref(),
            b"\x1b[2mINFO\x1b[0m ok\tx\n"
        );
    }

    use super::*;

    #[test]
    fn throttle_admits_once_per_period_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(t.admit("a"), Some(0));
        assert_eq!(t.admit("a"), None);
        assert_eq!(t.admit("a"), None);
        assert_eq!(t.admit("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.admit("a"), Some(2));
        assert_eq!(t.admit("a"), None);
    }
}
