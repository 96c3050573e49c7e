//! What the three sessionfold services share at their edge.
//!
//! The producer, the processor and the projections all talk to the same broker,
//! name topics from the same prefix, create them on start if missing, log the
//! same way and expose Prometheus metrics the same way. That common ground
//! lives here so each binary stays a thin layer over its own library.

mod admin;
pub mod catch_up;
pub mod cluster;
pub mod follow;
pub mod http;
pub mod jwks;
pub mod offsets;
pub mod openapi;
pub mod registry;
pub mod shutdown;
pub mod sync;
mod telemetry;

pub use admin::{check_partition_counts, ensure_topics, watermarks};
pub use telemetry::{
    HttpMetrics, LogThrottle, QuietLogs, ServiceGauges, init_logging, metrics_response, registered,
    track_http,
};

pub use shutdown::{Stop, Tasks};
pub use sync::{lock, millis, now_millis, read, write};

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
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
    /// Reading to the end of some partitions stopped getting records.
    #[error("no records for {waited:?} with partitions still short of their end: {short}")]
    Stalled {
        /// How long nothing arrived.
        waited: Duration,
        /// The partitions still short, with their ends.
        short: String,
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

/// A consumer configuration: [`client_config`] plus short fetch waits,
/// each unless a `--kafka-property` sets it.
///
/// librdkafka's default `fetch.wait.max.ms` of 500 ms is spent in full
/// whenever the broker has no data at the moment of the fetch (tansu
/// answers at the end of the wait rather than when a record arrives), which
/// puts up to half a second on every hop from ingest to view. 20 ms keeps a
/// quiet consumer at about 50 fetches a second per broker.
///
/// Once a partition's local queue passes librdkafka's prefetch thresholds,
/// its next fetch is put off by `fetch.queue.backoff.ms`, 1 s by default. A
/// processor working through a backlog empties its queue in milliseconds
/// and then had nothing to fold for the rest of that second: on tansu it
/// folded 161–172k events/s with holes of 0.9 s between fetches, and
/// 562–637k with the backoff at 20 ms. The thresholds still bound the
/// memory the queue holds.
pub fn consumer_config(brokers: &str) -> ClientConfig {
    let mut c = client_config(brokers);
    unless_set(
        &mut c,
        &[
            ("fetch.wait.max.ms", "20"),
            ("fetch.queue.backoff.ms", "20"),
        ],
    );
    c
}

/// Sets each of a client's tuning `defaults` that the operator's
/// `--kafka-property` did not set: batching and compression are the
/// operator's call on a real network, where loopback's best is not theirs.
pub fn unless_set(c: &mut ClientConfig, defaults: &[(&str, &str)]) {
    for (key, value) in defaults {
        if c.get(key).is_none() {
            c.set(*key, *value);
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

/// A service's command line: one of its subcommands, or, with none, the
/// arguments of its default command.
#[derive(Debug, clap::Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct ServiceCli<C: clap::Subcommand, A: clap::Args> {
    /// The subcommand given, if any.
    #[command(subcommand)]
    pub command: Option<C>,
    /// The default command's arguments.
    #[command(flatten)]
    pub default: A,
}

impl<C: clap::Subcommand, A: clap::Args> ServiceCli<C, A> {
    /// Parses the process arguments as binary `name`, described by `about`;
    /// exits with clap's message on bad arguments or `--help`.
    pub fn parse_as(name: &'static str, about: &'static str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command()
            .name(name)
            .bin_name(name)
            .about(about)
            .get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_property_wins_over_a_tuning_default() {
        let mut c = ClientConfig::new();
        c.set("compression.type", "zstd");
        unless_set(&mut c, &[("linger.ms", "5"), ("compression.type", "lz4")]);
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(c.get("linger.ms"), Some("5"));
    }
}
