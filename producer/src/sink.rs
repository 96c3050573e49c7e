//! The producer's way into Kafka: a buffered, idempotent producer, replaced
//! when it fails for good, and acknowledgements a request can wait for.
//!
//! librdkafka's idempotent producer can enter a fatal state (a broker that
//! lost its producer state after a restart answers with a sequence it
//! cannot reconcile). From then on it accepts nothing and fails what it
//! held. A watcher replaces such a producer: new requests are told to retry
//! for the moment it takes, the old producer's records come back through
//! their delivery reports and are sent again, in their order, through the
//! new one, with any request still waiting on them. A record the broker had
//! stored before the failure may so arrive twice; the fold applies an event
//! id once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounterVec, IntGauge};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

/// Why an event could not be handed to the producer.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The local buffer is full, usually because the broker is unreachable.
    #[error("producer buffer full; broker unreachable or slow")]
    BufferFull,
    /// The producer is being replaced after a fatal error; retry in a moment.
    #[error("the Kafka producer is being replaced after a fatal error")]
    Replacing,
    /// Anything else the client refused.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// How long new requests are refused after a failed delivery. Past it,
/// requests flow again and act as the probe: one success ends the episode,
/// another failure holds the door shut once more.
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// A run of failed deliveries, from the first failure to the next success.
#[derive(Debug, Clone)]
pub struct FailureEpisode {
    /// When the first delivery of the run failed.
    pub since: SystemTime,
    /// The broker's or the client's word on the first failure.
    pub first_error: String,
    /// Deliveries failed in this run.
    pub failed: u64,
    last_failure: Instant,
}

impl FailureEpisode {
    /// Whether new requests are refused now.
    pub fn holding(&self) -> bool {
        self.last_failure.elapsed() < FAILURE_HOLD
    }

    /// Seconds a client should wait before it retries.
    pub fn retry_after(&self) -> u64 {
        FAILURE_HOLD
            .saturating_sub(self.last_failure.elapsed())
            .as_secs()
            .max(1)
    }
}

/// The broker's acknowledgements of one request's records.
#[derive(Debug)]
pub struct Acks {
    remaining: AtomicUsize,
    outcome: Mutex<Option<tokio::sync::oneshot::Sender<Result<(), String>>>>,
    settled: Mutex<Option<tokio::sync::oneshot::Receiver<Result<(), String>>>>,
}

impl Acks {
    /// Acknowledgements of `records` records to come.
    pub fn new(records: usize) -> Arc<Acks> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let acks = Arc::new(Acks {
            remaining: AtomicUsize::new(records),
            outcome: Mutex::new(Some(tx)),
            settled: Mutex::new(Some(rx)),
        });
        if records == 0 {
            acks.settle(Ok(()));
        }
        acks
    }

    /// One record acknowledged, or refused for good; the first refusal
    /// settles the whole request.
    fn settle(&self, result: Result<(), String>) {
        let last = result.is_ok() && self.remaining.fetch_sub(1, Ordering::SeqCst) == 1;
        if (last || result.is_err())
            && let Some(tx) = sessionfold_edge::lock(&self.outcome).take()
        {
            let _ = tx.send(result);
        }
    }

    /// Records not queued after all (the buffer filled part way): they will
    /// never be acknowledged, so they are not waited for.
    pub fn abandon(&self, records: usize) {
        for _ in 0..records {
            self.settle(Ok(()));
        }
    }

    /// Waits for every record's acknowledgement, at most `timeout`: `Ok`
    /// when all are stored, `Err` with the first refusal, or with the
    /// timeout.
    pub async fn wait(&self, timeout: Duration) -> Result<(), String> {
        let Some(rx) = sessionfold_edge::lock(&self.settled).take() else {
            return Err("already waited for".into());
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the producer dropped the records".into()),
            Err(_) => Err(format!("not acknowledged within {timeout:?}")),
        }
    }
}

/// What a record carries through librdkafka to its delivery report.
type Opaque = Box<Option<Arc<Acks>>>;

/// A record handed back by a failed producer, to send again.
struct Held {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
    acks: Option<Arc<Acks>>,
}

/// What the producers of one sink share: counters, the current run of
/// failures, and the records a failed producer handed back.
struct Shared {
    delivered: IntCounterVec,
    failing: IntGauge,
    episode: Mutex<Option<FailureEpisode>>,
    held: Mutex<Vec<Held>>,
    logs: sessionfold_edge::QuietLogs,
}

impl Shared {
    fn episode(&self) -> MutexGuard<'_, Option<FailureEpisode>> {
        sessionfold_edge::lock(&self.episode)
    }

    fn delivered(&self) {
        self.delivered.with_label_values(&["ok"]).inc();
        if let Some(ep) = self.episode().take() {
            self.failing.set(0);
            tracing::warn!(
                failed = ep.failed,
                first_error = %ep.first_error,
                "deliveries to Kafka succeed again; the events of the failed deliveries were lost"
            );
        }
    }

    fn failed(&self, e: &KafkaError) {
        self.delivered.with_label_values(&["failed"]).inc();
        let mut episode = self.episode();
        match episode.as_mut() {
            Some(ep) => {
                ep.failed += 1;
                ep.last_failure = Instant::now();
                tracing::debug!(error = %e, "event not delivered to Kafka");
            }
            None => {
                self.failing.set(1);
                tracing::error!(
                    error = %e,
                    "event not delivered to Kafka: new requests answer 503 and /readyz is not ready until a delivery succeeds (one line per run of failures; all are counted in deliveries_total)"
                );
                *episode = Some(FailureEpisode {
                    since: SystemTime::now(),
                    first_error: e.to_string(),
                    failed: 1,
                    last_failure: Instant::now(),
                });
            }
        }
    }
}

/// The context of one producer: counts deliveries as the broker
/// acknowledges (or finally refuses) them, and hands back what it held
/// once it has failed for good.
pub struct DeliveryCounter {
    shared: Arc<Shared>,
    /// Set when librdkafka reports the producer fatally failed.
    fatal: AtomicBool,
    /// Why, in librdkafka's words.
    fatal_reason: Mutex<String>,
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.shared.logs.log(level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            *sessionfold_edge::lock(&self.fatal_reason) = reason.to_owned();
            self.fatal.store(true, Ordering::SeqCst);
            return;
        }
        self.shared.logs.error(error, reason);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = Opaque;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Opaque) {
        match result {
            Ok(_) => {
                self.shared.delivered();
                if let Some(a) = acks.as_ref() {
                    a.settle(Ok(()));
                }
            }
            Err((e, m)) => {
                let purged = matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::PurgeQueue
                            | RDKafkaErrorCode::PurgeInflight
                            | RDKafkaErrorCode::Fatal
                    )
                );
                if purged || self.fatal.load(Ordering::SeqCst) {
                    // A failed producer's record: the next one sends it.
                    sessionfold_edge::lock(&self.shared.held).push(Held {
                        topic: m.topic().to_owned(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers: m.headers().map(|h| h.detach()),
                        acks: *acks,
                    });
                    return;
                }
                self.shared.failed(e);
                if let Some(a) = acks.as_ref() {
                    a.settle(Err(e.to_string()));
                }
            }
        }
    }
}

type Client = ThreadedProducer<DeliveryCounter>;

/// Hands encoded events to Kafka. Records wait in a bounded local buffer while
/// the broker is away; the request learns at once when that buffer is full.
#[derive(Clone)]
pub struct Sink {
    current: Arc<RwLock<Arc<Client>>>,
    shared: Arc<Shared>,
    config: Arc<ClientConfig>,
    /// Ends the watcher once the sink is flushed for the last time.
    stop: sessionfold_edge::Stop,
}

impl Sink {
    /// Creates the producer (no connection is made until the first send)
    /// and the watcher that replaces it after a fatal error.
    pub fn new(
        brokers: &str,
        buffer_messages: usize,
        delivered: IntCounterVec,
        failing: IntGauge,
    ) -> Result<Sink, SinkError> {
        let mut config = sessionfold_edge::client_config(brokers);
        sessionfold_edge::unless_set(
            &mut config,
            &[("linger.ms", "2"), ("compression.type", "lz4")],
        );
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The same partition for a key as the Java client, so outside producers agree.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", buffer_messages.to_string())
            .set("message.timeout.ms", "300000");
        let shared = Arc::new(Shared {
            delivered,
            failing,
            episode: Mutex::new(None),
            held: Mutex::new(Vec::new()),
            logs: sessionfold_edge::QuietLogs::default(),
        });
        let first = create(&config, &shared)?;
        let sink = Sink {
            current: Arc::new(RwLock::new(Arc::new(first))),
            shared,
            config: Arc::new(config),
            stop: sessionfold_edge::Stop::new(),
        };
        let watcher = sink.clone();
        std::thread::Builder::new()
            .name("sessionfold-sink".into())
            .spawn(move || watcher.watch())
            .map_err(|e| SinkError::Kafka(KafkaError::ClientCreation(e.to_string())))?;
        Ok(sink)
    }

    /// Replaces the producer whenever it has failed for good, until stopped.
    fn watch(&self) {
        while !self.stop.is_stopping() {
            std::thread::sleep(Duration::from_millis(100));
            let failed = sessionfold_edge::read(&self.current)
                .context()
                .fatal
                .load(Ordering::SeqCst);
            if failed && let Err(e) = self.replace() {
                tracing::error!(error = %e, "replacing the failed Kafka producer; trying again");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// Builds a new producer, takes back what the failed one held and sends
    /// it again, in order, before new requests are let through.
    fn replace(&self) -> Result<(), SinkError> {
        let mut current = sessionfold_edge::write(&self.current);
        let fresh = create(&self.config, &self.shared)?;
        let old = std::mem::replace(&mut *current, Arc::new(fresh));
        let reason = sessionfold_edge::lock(&old.context().fatal_reason).clone();
        // Everything still queued or in flight comes back through the
        // delivery reports, into `held`.
        old.purge(PurgeConfig::default().queue().inflight());
        let _ = old.flush(Duration::from_secs(5));
        let held = std::mem::take(&mut *sessionfold_edge::lock(&self.shared.held));
        let (mut resent, mut lost) = (0usize, 0usize);
        for h in held {
            let mut record: BaseRecord<'_, [u8], [u8], Opaque> =
                BaseRecord::with_opaque_to(&h.topic, Box::new(h.acks));
            if let Some(k) = &h.key {
                record = record.key(k);
            }
            if let Some(p) = &h.payload {
                record = record.payload(p);
            }
            if let Some(hd) = h.headers {
                record = record.headers(hd);
            }
            match current.send(record) {
                Ok(()) => resent += 1,
                Err((e, r)) => {
                    lost += 1;
                    self.shared.failed(&e);
                    if let Some(a) = r.delivery_opaque.as_ref() {
                        a.settle(Err(e.to_string()));
                    }
                }
            }
        }
        tracing::warn!(
            reason,
            resent,
            lost,
            "the Kafka producer failed for good; replaced it and sent again the events it held (the fold applies an event id once, so one that had arrived is not doubled)"
        );
        Ok(())
    }

    /// Queues one record; import events carry the actor role the ingest
    /// vouched for; `acks` is told when the broker stores it.
    pub fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        actor_role: Option<&str>,
        acks: Option<Arc<Acks>>,
    ) -> Result<(), SinkError> {
        let current = match self.current.try_read() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(SinkError::Replacing),
        };
        let mut record: BaseRecord<'_, str, [u8], Opaque> =
            BaseRecord::with_opaque_to(topic, Box::new(acks))
                .key(key)
                .payload(payload);
        if let Some(role) = actor_role {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: sessionfold_schemas::headers::ACTOR_ROLE,
                value: Some(role),
            }));
        }
        current.send(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SinkError::BufferFull,
            KafkaError::MessageProduction(RDKafkaErrorCode::Fatal) => SinkError::Replacing,
            other => SinkError::Kafka(other),
        })
    }

    /// The current run of failed deliveries, if one is open.
    pub fn failures(&self) -> Option<FailureEpisode> {
        self.shared.episode().clone()
    }

    /// Waits up to `timeout` for buffered records to be delivered, then
    /// stops the watcher.
    pub fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let current = sessionfold_edge::read(&self.current).clone();
        let r = current.flush(timeout).map_err(SinkError::from);
        self.stop.stop();
        r
    }
}

fn create(config: &ClientConfig, shared: &Arc<Shared>) -> Result<Client, SinkError> {
    Ok(config.create_with_context(DeliveryCounter {
        shared: shared.clone(),
        fatal: AtomicBool::new(false),
        fatal_reason: Mutex::new(String::new()),
    })?)
}
