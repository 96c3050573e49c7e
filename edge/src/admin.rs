//! Topic administration: creating or checking the topics, their partition
//! counts, and partition ends read with patience for leader elections.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use sessionfold_schemas::Topics;

use crate::{EdgeError, QuietLogs, client_config, cluster};

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
        (&topics.import_ownership, compacted.clone()),
        // Erasures are kept for good: every replay must know them.
        (&topics.erasures, compacted),
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
    // A topic created a moment ago may not be in the metadata yet (no
    // partitions, or an error for it): wait for it rather than judge it.
    let count = |topic: &str| -> Result<usize, EdgeError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let n = crate::catch_up::partitions(&consumer, topic)?.len();
            if n > 0 || std::time::Instant::now() >= deadline {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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
