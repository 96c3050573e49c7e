//! Partitions coming and going: the consumer context that restores and loads
//! a partition on assignment and commits pending work on revocation.

use super::*;

/// Consumer context: restores and loads partitions on assignment, commits
/// pending work on revocation, and starts each partition at the offset stored
/// with its state, never at the group's committed offset.
pub(super) struct Ctx {
    pub(super) core: Shared,
    pub(super) handoff: Arc<Handoff>,
    pub(super) standby: Arc<Standby>,
    pub(super) topics: Topics,
    pub(super) logs: sessionfold_edge::QuietLogs,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.logs.log(level, fac, msg);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.logs.error(error, reason);
    }

    /// librdkafka's periodic statistics give each partition's high offset:
    /// the intake learns from it whether a batch cut short had more waiting;
    /// lag is measured from the position committed to sled, which is ahead of
    /// the group offsets by at most a second.
    fn stats(&self, stats: rdkafka::Statistics) {
        for stream in Stream::ALL {
            let Some(topic) = stats.topics.get(stream.input(&self.topics)) else {
                continue;
            };
            for (p, part) in &topic.partitions {
                if part.hi_offset >= 0 {
                    self.handoff.heard_high((stream, *p), part.hi_offset);
                }
            }
        }
        let mut guard = lock(&self.core);
        // A plain reference, so that the partitions and the metrics can be
        // borrowed side by side.
        let core = &mut *guard;
        let now = Instant::now();
        let after = core.settings.stuck_after;
        let mut stuck = 0;
        for stream in Stream::ALL {
            let name = stream.input(&self.topics);
            let Some(topic) = stats.topics.get(name) else {
                continue;
            };
            for (p, part) in &topic.partitions {
                let key = (stream, *p);
                let Some(owned) = core.parts.get_mut(&key) else {
                    continue;
                };
                if part.hi_offset < 0 {
                    continue;
                }
                let position = owned.position.unwrap_or(0);
                let lag = (part.hi_offset - position).max(0);
                let label = [name, &p.to_string()];
                core.metrics.lag.with_label_values(&label).set(lag);
                let is_stuck = owned.moved.stuck(lag, after, now);
                core.metrics
                    .stuck
                    .with_label_values(&label)
                    .set(i64::from(is_stuck));
                if is_stuck {
                    stuck += 1;
                    if !std::mem::replace(&mut owned.stuck_logged, true) {
                        tracing::error!(partition = ?key, lag, position, stuck_for = ?after, "partition makes no progress although records wait (see the dead-letter topic and the broker); /readyz is not ready until it moves");
                    }
                } else if std::mem::replace(&mut owned.stuck_logged, false) {
                    tracing::info!(partition = ?key, position, "partition moves again");
                }
            }
        }
        core.status.stuck.store(stuck, Ordering::SeqCst);
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<Part> = tpl
            .elements()
            .iter()
            .filter_map(|e| Some((Stream::of_input(&self.topics, e.topic())?, e.partition())))
            .collect();
        let mut core = lock(&self.core);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(?partitions, "partitions assigned");
                core.status.joined.store(true, Ordering::SeqCst);
                let counts = partition_counts(consumer, &self.topics);
                core.partition_counts.extend(counts);
                // Copies are taken from the standby tailer first, and the
                // trees read only once no write of the store writer is left.
                for p in &partitions {
                    self.standby.release(*p);
                }
                let started = Instant::now();
                let restored = match core.settle() {
                    Ok(()) => core.prepare_all(&partitions),
                    Err(e) => {
                        self.handoff.fail(e);
                        Vec::new()
                    }
                };
                for (p, restored) in partitions.iter().zip(restored) {
                    let offset = match core.take_partition(*p, restored, started) {
                        Ok(next) => {
                            self.handoff.own(*p, next);
                            // The statistics tell the high watermark only
                            // after a second; a backlog is known from the start.
                            let topic = p.0.input(&self.topics);
                            match consumer.fetch_watermarks(topic, p.1, Duration::from_secs(2)) {
                                Ok((_, high)) => self.handoff.heard_high(*p, high),
                                Err(e) => {
                                    tracing::debug!(partition = ?p, error = %e, "reading the high watermark")
                                }
                            }
                            next.map_or(Offset::Beginning, Offset::Offset)
                        }
                        Err(e) => {
                            tracing::error!(partition = ?p, error = %e, "restoring partition");
                            self.handoff.fail(e);
                            Offset::Beginning
                        }
                    };
                    if let Err(e) = tpl.set_partition_offset(p.0.input(&self.topics), p.1, offset) {
                        tracing::error!(partition = ?p, error = %e, "setting start offset");
                    }
                }
                // What was revoked and not given back belongs elsewhere now.
                core.kept.clear();
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Every record taken is folded and stored first, the batch
                // handed over before the one being filled.
                let pending = self.handoff.take_all();
                tracing::info!(
                    ?partitions,
                    unfolded = pending.iter().map(|p| p.records).sum::<usize>(),
                    folded = core.batch.records,
                    "partitions revoked; committing pending work first"
                );
                for polled in pending {
                    let queues = core.fold(polled, now_millis());
                    self.handoff.give_back(queues);
                }
                self.handoff.disown(&partitions);
                if let Err(e) = core.commit_all() {
                    self.handoff.fail(e);
                }
                // Async: a broker slow to answer a commit (tansu 0.6.0 at a
                // rebalance) must not hold the rebalance, and sled is the truth.
                core.commit_group(consumer, Some(&partitions), CommitMode::Async);
                for p in &partitions {
                    // Kept through the rebalance: an eager rebalance revokes
                    // every partition and gives most of them back at once.
                    if let Some(owned) = core.parts.remove(p) {
                        core.kept.insert(*p, owned);
                    }
                    self.standby.stand_by(*p);
                    // A partition that left has no lag here: drop its series
                    // rather than leave a stale figure behind.
                    let label = [p.0.input(&self.topics), &p.1.to_string()];
                    let _ = core.metrics.lag.remove_label_values(&label);
                    let _ = core.metrics.stuck.remove_label_values(&label);
                }
                let stuck = core.parts.values().filter(|o| o.stuck_logged).count();
                core.status.stuck.store(stuck, Ordering::SeqCst);
                core.metrics.partitions.set(core.parts.len() as i64);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassigning partitions");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

/// The partitions of each input topic, as the broker's metadata has them now;
/// a topic whose metadata cannot be read is left out.
pub(super) fn partition_counts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &Topics,
) -> BTreeMap<Stream, i32> {
    let mut out = BTreeMap::new();
    for stream in Stream::ALL {
        let topic = stream.input(topics);
        match sessionfold_edge::catch_up::partitions(consumer, topic) {
            Ok(ids) => {
                if let Ok(n) = i32::try_from(ids.len())
                    && n > 0
                {
                    out.insert(stream, n);
                }
            }
            Err(e) => tracing::warn!(topic, error = %e, "reading the partition count"),
        }
    }
    out
}

impl Core {
    /// Restores and loads the assigned partitions side by side, each with
    /// its own reader: a takeover waits for the slowest, not for their sum
    /// (every read ends with a quiet wait for records a lagging broker
    /// reports late, and a million states take seconds to decode). A
    /// partition revoked in this rebalance whose store nobody changed since
    /// keeps its table (`None`). The store writer must be settled.
    pub(super) fn prepare_all(&self, parts: &[Part]) -> Vec<Result<Prepared, ProcessorError>> {
        self.status
            .restoring
            .fetch_add(parts.len(), Ordering::SeqCst);
        self.status.running.store(false, Ordering::SeqCst);
        let (settings, contract, store, metrics, kept) = (
            &self.settings,
            &self.contract,
            self.store.as_ref(),
            &self.metrics,
            &self.kept,
        );
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .map(|p| {
                    std::thread::Builder::new()
                        .name("sessionfold-restore".into())
                        .spawn_scoped(s, move || {
                            let how = restore(settings, contract, store, metrics, *p)?;
                            let next = store.next_offset(&tree(p.0, p.1))?;
                            let unchanged = how == Restore::LocalCurrent
                                && kept.get(p).is_some_and(|o| o.resume == next);
                            let table =
                                (!unchanged).then(|| load_table(settings, contract, store, *p));
                            Ok((how, table))
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        Err(ProcessorError::Thread("a restore thread panicked".into()))
                    }),
                    Err(e) => Err(ProcessorError::Thread(e.to_string())),
                })
                .collect()
        });
        self.status
            .restoring
            .fetch_sub(parts.len(), Ordering::SeqCst);
        results
    }

    /// Takes on one assigned partition prepared by [`Core::prepare_all`];
    /// returns where to read from. `started`: when the takeover began.
    pub(super) fn take_partition(
        &mut self,
        p: Part,
        prepared: Result<Prepared, ProcessorError>,
        started: Instant,
    ) -> Result<Option<i64>, ProcessorError> {
        self.status.restoring.fetch_add(1, Ordering::SeqCst);
        let result = (|| {
            let (how, loaded) = prepared?;
            let mut erasures_applied = 0;
            let loaded = match loaded {
                Some(loaded) => loaded,
                None => match self.kept.remove(&p) {
                    Some(owned) => {
                        erasures_applied = owned.erasures_applied;
                        Ok(owned.table)
                    }
                    None => self.load(p),
                },
            };
            let table = match loaded {
                Ok(t) => t,
                Err(e) if self.settings.rebuild_damaged => {
                    tracing::error!(partition = ?p, error = %e, "local state of this partition is damaged; rebuilding it from the changelog");
                    self.metrics.store_rebuilt.inc();
                    self.store
                        .replace(&tree(p.0, p.1), PartitionWrite::default())?;
                    restore(
                        &self.settings,
                        &self.contract,
                        self.store.as_ref(),
                        &self.metrics,
                        p,
                    )?;
                    self.load(p)?
                }
                Err(e) => return Err(e),
            };
            let next = self.store.next_offset(&tree(p.0, p.1))?;
            tracing::info!(partition = ?p, entities = table.size().0, next_offset = ?next, restore = ?how, "partition loaded");
            self.parts.insert(
                p,
                Owned {
                    table,
                    position: next,
                    resume: next,
                    moved: Movement::new(next.unwrap_or(0), Instant::now()),
                    stuck_logged: false,
                    erasures_applied,
                },
            );
            self.metrics.partitions.set(self.parts.len() as i64);
            let (kind, records) = match how {
                Restore::LocalCurrent => ("own_store", 0),
                Restore::FromTail {
                    records,
                    standby: true,
                } => ("standby", records),
                Restore::FromTail { records, .. } => ("own_store", records),
                Restore::FromChangelog { records } => ("full_restore", records),
            };
            self.metrics.takeovers.with_label_values(&[kind]).inc();
            self.metrics
                .takeover_seconds
                .with_label_values(&[kind])
                .observe(started.elapsed().as_secs_f64());
            self.metrics
                .takeover_records
                .with_label_values(&[kind])
                .observe(records as f64);
            Ok(next)
        })();
        self.status.restoring.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Reads a partition's stored states into a table.
    pub(super) fn load(&self, p: Part) -> Result<Table, ProcessorError> {
        load_table(&self.settings, &self.contract, self.store.as_ref(), p)
    }
}

/// What a partition taken on needs: how its store was brought up to date,
/// and its table read from the store (`None`: the table kept from its
/// revocation is current).
pub(super) type Prepared = (Restore, Option<Result<Table, ProcessorError>>);

/// Reads a partition's stored states into a table.
fn load_table(
    settings: &LoopSettings,
    contract: &Contract,
    store: &dyn crate::store::StateStore,
    (stream, partition): Part,
) -> Result<Table, ProcessorError> {
    let mut table = Table::coalescing(
        stream,
        settings.presence,
        settings.imports,
        settings.activity_resolution,
    );
    store.for_each_state(&tree(stream, partition), &mut |bytes| {
        table
            .restore(contract, bytes)
            .map_err(|e| ProcessorError::CorruptState {
                partition,
                reason: e.to_string(),
            })
    })?;
    Ok(table)
}

/// Restores one partition's tree from its changelog, unless it is current.
fn restore(
    settings: &LoopSettings,
    contract: &Contract,
    store: &dyn crate::store::StateStore,
    metrics: &Metrics,
    (stream, partition): Part,
) -> Result<Restore, ProcessorError> {
    let valid = |key: &str, bytes: &[u8]| Table::check(stream, contract, key, bytes);
    let consumer = changelog_reader(&settings.brokers)?;
    let name = tree(stream, partition);
    let target = Target {
        input: stream.input(&settings.topics),
        changelog: stream.changelog(&settings.topics),
        partition,
        tree: &name,
    };
    restore_partition(&consumer, &target, store, metrics, &valid)
}
