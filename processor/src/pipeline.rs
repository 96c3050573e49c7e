//! The consume → fold → publish → commit loop.
//!
//! One thread owns the consumer and the state. It polls a batch, folds it in
//! memory, publishes the changed states and dead letters and waits for the
//! broker to acknowledge them, then writes states and the next input offsets in
//! one sled batch per partition. Rebalance callbacks run inside `poll`, so they
//! only ever see fully committed work.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sessionfold_fold::{Applied, Millis, Position, PresenceConfig, PresenceTable};
use sessionfold_schemas::{Contract, Topics};

use crate::ProcessorError;
use crate::metrics::Metrics;
use crate::store::{PartitionWrite, Store};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Consumer group of the processor instances.
    pub group_id: String,
    /// Presence rules.
    pub presence: PresenceConfig,
    /// Interval of the wall-clock expiry tick.
    pub tick: Duration,
    /// Most records folded per batch.
    pub batch_max: usize,
    /// Longest a batch waits to fill up.
    pub batch_wait: Duration,
}

/// Partition changes seen by the rebalance callback, handled by the loop.
enum Reassign {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Consumer context: starts each assigned partition at the offset stored with
/// its state in sled, never at the group's committed offset.
struct Ctx {
    store: Store,
    topic: String,
    pending: Mutex<Vec<Reassign>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                for p in &partitions {
                    let offset = match self.store.next_offset(*p) {
                        Ok(Some(o)) => Offset::Offset(o),
                        Ok(None) => Offset::Beginning,
                        Err(e) => {
                            tracing::error!(partition = p, error = %e, "reading stored offset; starting from the beginning");
                            Offset::Beginning
                        }
                    };
                    if let Err(e) = tpl.set_partition_offset(&self.topic, *p, offset) {
                        tracing::error!(partition = p, error = %e, "setting start offset");
                    }
                }
                tracing::info!(?partitions, "partitions assigned");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions");
                }
                self.push(Reassign::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(?partitions, "partitions revoked");
                self.push(Reassign::Revoked(partitions));
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassigning partitions");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

impl Ctx {
    fn push(&self, r: Reassign) {
        match self.pending.lock() {
            Ok(mut p) => p.push(r),
            Err(poisoned) => poisoned.into_inner().push(r),
        }
    }

    fn take(&self) -> Vec<Reassign> {
        match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// A record that goes to the dead-letter topic.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    kind: &'static str,
    error: String,
    source_topic: String,
    pos: Position,
}

/// Current wall-clock time in milliseconds.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// State shared between the loop and the HTTP surface.
#[derive(Default)]
pub struct Status {
    /// True once the loop has joined the group and loaded its partitions.
    pub running: AtomicBool,
}

/// The processing loop; owns the consumer, the producer and the state.
pub struct Processor {
    consumer: BaseConsumer<Ctx>,
    core: Core,
}

/// Everything but the consumer, so a borrowed message and the state can be used together.
struct Core {
    settings: LoopSettings,
    contract: Contract,
    store: Store,
    metrics: Metrics,
    producer: FutureProducer,
    tables: BTreeMap<i32, PresenceTable>,
    runtime: tokio::runtime::Handle,
}

impl Processor {
    /// Connects to the broker and subscribes; call from a blocking thread
    /// inside a tokio runtime.
    pub fn new(
        settings: LoopSettings,
        store: Store,
        metrics: Metrics,
        runtime: tokio::runtime::Handle,
    ) -> Result<Processor, ProcessorError> {
        let contract = Contract::load()?;
        let ctx = Ctx {
            store: store.clone(),
            topic: settings.topics.activity.clone(),
            pending: Mutex::new(Vec::new()),
        };
        let consumer: BaseConsumer<Ctx> = sessionfold_kafka::client_config(&settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("max.poll.interval.ms", "300000")
            .create_with_context(ctx)?;
        consumer.subscribe(&[settings.topics.activity.as_str()])?;
        let producer: FutureProducer = sessionfold_kafka::client_config(&settings.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create()?;
        Ok(Processor {
            consumer,
            core: Core {
                settings,
                contract,
                store,
                metrics,
                producer,
                tables: BTreeMap::new(),
                runtime,
            },
        })
    }

    /// Runs until `stop` is set; returns after committing the last batch.
    pub fn run(mut self, stop: Arc<AtomicBool>, status: Arc<Status>) -> Result<(), ProcessorError> {
        let mut next_tick = Instant::now();
        status.running.store(true, Ordering::SeqCst);
        let core = &mut self.core;
        while !stop.load(Ordering::SeqCst) {
            let mut batch = Batch::default();
            let started = Instant::now();
            let mut timeout = Duration::from_millis(100);
            let now = now_millis();
            while batch.records < core.settings.batch_max {
                let polled = self.consumer.poll(timeout);
                core.reassign(self.consumer.context().take())?;
                match polled {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    Some(Ok(msg)) => core.fold_one(&msg, now, &mut batch),
                }
                if started.elapsed() >= core.settings.batch_wait {
                    break;
                }
                timeout = Duration::ZERO;
            }
            core.metrics
                .fold_seconds
                .observe(started.elapsed().as_secs_f64());
            if Instant::now() >= next_tick {
                core.tick(now_millis());
                next_tick = Instant::now() + core.settings.tick;
            }
            core.commit(batch)?;
        }
        core.store.flush()?;
        self.consumer.unsubscribe();
        Ok(())
    }
}

impl Core {
    fn tick(&mut self, now: Millis) {
        for table in self.tables.values_mut() {
            let n = table.tick(now);
            self.metrics
                .expired
                .with_label_values(&["users"])
                .inc_by(n as u64);
        }
    }

    fn reassign(&mut self, changes: Vec<Reassign>) -> Result<(), ProcessorError> {
        for change in changes {
            match change {
                Reassign::Assigned(parts) => {
                    for p in parts {
                        let mut table = PresenceTable::new(self.settings.presence);
                        let next = self.store.load(p, &self.contract, &mut table)?;
                        tracing::info!(partition = p, users = table.len(), next_offset = ?next, "partition state loaded");
                        self.tables.insert(p, table);
                    }
                }
                Reassign::Revoked(parts) => {
                    for p in parts {
                        self.tables.remove(&p);
                    }
                }
            }
        }
        self.metrics.partitions.set(self.tables.len() as i64);
        Ok(())
    }

    fn fold_one(&mut self, msg: &BorrowedMessage<'_>, now: Millis, batch: &mut Batch) {
        let pos = Position {
            partition: msg.partition(),
            offset: msg.offset(),
        };
        batch.records += 1;
        let Some(table) = self.tables.get_mut(&pos.partition) else {
            tracing::warn!(
                partition = pos.partition,
                "record from a partition not loaded; skipped"
            );
            return;
        };
        batch.next_offsets.insert(pos.partition, pos.offset + 1);
        let dead = |kind: &'static str, error: String| DeadLetter {
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            kind,
            error,
            source_topic: msg.topic().to_owned(),
            pos,
        };
        let key = match msg.key().map(std::str::from_utf8).transpose() {
            Ok(k) => k,
            Err(_) => {
                batch
                    .dead
                    .push(dead("bad_key", "record key is not UTF-8".into()));
                return;
            }
        };
        let event = match self
            .contract
            .decode_activity(msg.payload().unwrap_or_default())
        {
            Ok(e) => e,
            Err(e) => {
                batch.dead.push(dead(e.kind(), e.to_string()));
                return;
            }
        };
        let kind = event.body.kind();
        match table.apply(key, &event, pos, now) {
            Ok(applied) => {
                let outcome = match applied {
                    Applied::Changed => "applied",
                    Applied::Duplicate => "duplicate",
                    Applied::AlreadyApplied => "already_applied",
                };
                self.metrics
                    .events_in
                    .with_label_values(&[kind, outcome])
                    .inc();
            }
            Err(rejected) => {
                batch.dead.push(dead(rejected.kind(), rejected.to_string()));
            }
        }
    }

    fn commit(&mut self, batch: Batch) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let mut writes: HashMap<i32, PartitionWrite> = HashMap::new();
        let topics = &self.settings.topics;
        let mut outgoing: Vec<Outgoing> = Vec::new();
        for (p, table) in self.tables.iter_mut() {
            for id in table.take_dirty() {
                let value = table
                    .get(&id)
                    .map(|s| self.contract.encode_presence(s))
                    .transpose()?;
                let offset = table.get(&id).map(|s| s.source_offset);
                outgoing.push(Outgoing {
                    topic: &topics.presence,
                    partition: Some(*p),
                    key: id.clone().into_bytes(),
                    payload: value.clone(),
                    headers: source_headers(&topics.activity, *p, offset),
                });
                writes.entry(*p).or_default().users.push((id, value));
            }
        }
        for d in &batch.dead {
            self.metrics
                .dead_lettered
                .with_label_values(&[d.kind])
                .inc();
            tracing::warn!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, "dead-lettered");
            outgoing.push(Outgoing {
                topic: &topics.dead_letter,
                partition: None,
                key: d.key.clone().unwrap_or_default(),
                payload: d.payload.clone(),
                headers: OwnedHeaders::new()
                    .insert(Header {
                        key: "sessionfold-error",
                        value: Some(&d.error),
                    })
                    .insert(Header {
                        key: "sessionfold-error-kind",
                        value: Some(d.kind),
                    })
                    .insert(Header {
                        key: "sessionfold-source-topic",
                        value: Some(&d.source_topic),
                    })
                    .insert(Header {
                        key: "sessionfold-source-partition",
                        value: Some(&d.pos.partition.to_string()),
                    })
                    .insert(Header {
                        key: "sessionfold-source-offset",
                        value: Some(&d.pos.offset.to_string()),
                    }),
            });
        }
        if !outgoing.is_empty() {
            deliver(&self.producer, &self.runtime, &outgoing)?;
            for o in &outgoing {
                self.metrics.records_out.with_label_values(&[o.topic]).inc();
            }
        }
        for (p, next) in batch.next_offsets {
            writes.entry(p).or_default().next_offset = Some(next);
        }
        for (p, write) in writes {
            self.store.commit(p, write)?;
        }
        let (mut users, mut sessions) = (0, 0);
        for t in self.tables.values() {
            users += t.len();
            sessions += t.session_count();
        }
        self.metrics
            .state_size
            .with_label_values(&["users"])
            .set(users as i64);
        self.metrics
            .state_size
            .with_label_values(&["sessions"])
            .set(sessions as i64);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

#[derive(Default)]
struct Batch {
    records: usize,
    next_offsets: BTreeMap<i32, i64>,
    dead: Vec<DeadLetter>,
}

/// One record to publish.
struct Outgoing<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

fn source_headers(topic: &str, partition: i32, offset: Option<i64>) -> OwnedHeaders {
    let h = OwnedHeaders::new()
        .insert(Header {
            key: "sessionfold-source-topic",
            value: Some(topic),
        })
        .insert(Header {
            key: "sessionfold-source-partition",
            value: Some(&partition.to_string()),
        });
    match offset {
        Some(o) => h.insert(Header {
            key: "sessionfold-source-offset",
            value: Some(&o.to_string()),
        }),
        None => h,
    }
}

/// Publishes every record and waits until the broker has acknowledged all.
fn deliver(
    producer: &FutureProducer,
    runtime: &tokio::runtime::Handle,
    records: &[Outgoing<'_>],
) -> Result<(), ProcessorError> {
    let sends = records.iter().map(|o| {
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(o.topic)
            .key(o.key.as_slice())
            .headers(o.headers.clone());
        if let Some(p) = o.partition {
            r = r.partition(p);
        }
        if let Some(v) = &o.payload {
            r = r.payload(v.as_slice());
        }
        producer.send(r, Timeout::Never)
    });
    let results = runtime.block_on(join_all(sends));
    for (o, r) in records.iter().zip(results) {
        if let Err((e, _)) = r {
            return Err(ProcessorError::Delivery {
                topic: o.topic.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}
