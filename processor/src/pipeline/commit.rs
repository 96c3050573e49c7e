//! The end of a batch. Its output is handed to the producer at once; the
//! next batch is folded while the broker acknowledges it; then, before the
//! next batch is published, the acknowledged batch's states and input
//! offsets go to the store writer, which writes them to sled together while
//! the fold thread goes on (`storing`). At most one batch is in flight, so a
//! changelog partition holds at most one incomplete batch, its last; at most
//! one is being stored, and positions move once it is.

use super::storing::Handed;
use super::*;
use crate::metrics::Stage;
use crate::output::BatchHeaders;
use rdkafka::message::{Header, OwnedHeaders};

/// The partitioner warning is said once per process.
static MOVED_ONCE: std::sync::Once = std::sync::Once::new();

/// A batch handed to the producer whose states are not yet stored.
pub(super) struct InFlight {
    writes: BTreeMap<Part, PartitionWrite>,
    reached: Vec<(Part, i64)>,
    records: usize,
    outgoing: Vec<(String, u64)>,
    started: Instant,
}

impl Core {
    /// Finishes the batch in flight, then publishes the pending batch and
    /// leaves it in flight; returns how many states it publishes.
    pub(super) fn commit(&mut self) -> Result<usize, ProcessorError> {
        self.finish()?;
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        for ((kind, outcome), n) in &batch.outcomes {
            self.metrics
                .events_in
                .with_label_values(&[kind, outcome])
                .inc_by(*n);
        }
        let topics = &self.settings.topics;
        let mut writes: BTreeMap<Part, PartitionWrite> = BTreeMap::new();
        let mut outgoing: Vec<Outgoing<'_>> = Vec::new();
        // Which changelog record carries which entity's state.
        let mut entities: Vec<(Part, String)> = Vec::new();
        {
            let known = sessionfold_edge::read(&self.erasures);
            if known.len() != self.forgotten.len() {
                self.forgotten = known.clone();
            }
        }
        let erasures = &self.forgotten;
        for (part, owned) in self.parts.iter_mut() {
            let table = &mut owned.table;
            let forgotten = table.forget(erasures, owned.erasures_applied);
            owned.erasures_applied = erasures.len();
            if forgotten > 0 {
                self.metrics.forgotten.inc_by(forgotten as u64);
            }
            let dirty = table.take_dirty(erasures);
            // A restart reads from the first change held back, or from
            // where the batch ends; the changelog's batch bounds say the same.
            let position = owned.position.unwrap_or(0);
            let reached = batch.ends.get(part).copied();
            let end = reached.unwrap_or(position);
            let resume = table.held_from().map_or(end, |held| held.min(end));
            let previous = owned.resume.unwrap_or(position);
            if reached.is_some() || owned.resume != Some(resume) {
                writes.entry(*part).or_default().next_offset = Some(resume);
                owned.resume = Some(resume);
            }
            if dirty.is_empty() {
                continue;
            }
            let (stream, p) = *part;
            let start = batch
                .starts
                .get(part)
                .copied()
                .unwrap_or(position)
                .min(previous);
            let mut shared = BatchHeaders::new(stream.input(topics), p, start, resume);
            if stream == Stream::Activity {
                shared = shared
                    .with_idle_timeout(self.settings.presence.idle_timeout)
                    .with_activity_resolution(self.settings.activity_resolution);
            }
            outgoing.reserve(dirty.len());
            entities.reserve(dirty.len());
            for id in dirty {
                let state = table.encoded(&self.contract, &id)?;
                let (value, offset) = match state {
                    Some((v, o)) => (Some(v), Some(o)),
                    None => (None, None),
                };
                outgoing.push(Outgoing {
                    topic: stream.changelog(topics),
                    partition: Some(p),
                    key: id.as_bytes().to_vec(),
                    payload: value,
                    headers: shared.record(offset),
                });
                entities.push((*part, id));
            }
        }
        for d in &batch.dead {
            self.metrics
                .dead_lettered
                .with_label_values(&[d.kind])
                .inc();
            match self.dead_log.admit(d.kind) {
                Some(held_back) => {
                    tracing::warn!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, held_back, "dead-lettered (one line per reason every 30 s; held_back counts the others since the last line)")
                }
                None => {
                    tracing::debug!(topic = %d.source_topic, partition = d.pos.partition, offset = d.pos.offset, reason = d.kind, error = %d.error, "dead-lettered")
                }
            }
            let published = d.published();
            outgoing.push(Outgoing {
                topic: &topics.dead_letter,
                partition: None,
                key: published.key,
                payload: published.payload,
                headers: published.headers,
            });
        }
        for m in &batch.moved {
            let topic = m.stream.input(topics);
            self.metrics.moved.with_label_values(&[topic]).inc();
            MOVED_ONCE.call_once(|| {
                tracing::warn!(
                    topic,
                    from = m.from.partition,
                    to = m.home,
                    "records arrive on partitions other than their key's: a producer uses another partitioner than Kafka's default murmur2 (set partitioner=murmur2_random with librdkafka and the Python, Go and .NET clients); each is written to its key's partition and folded there (counted in moved_records_total; said once)"
                );
            });
            let from = format!("{}@{}", m.from.partition, m.from.offset);
            let mut headers = OwnedHeaders::new().insert(Header {
                key: headers::MOVED_FROM,
                value: Some(&from),
            });
            if m.authority == Authority::Elevated {
                // The authority the ingest vouched for travels with it.
                headers = headers.insert(Header {
                    key: headers::ACTOR_ROLE,
                    value: Some("service"),
                });
            }
            outgoing.push(Outgoing {
                topic,
                partition: Some(m.home),
                key: m.key.clone(),
                payload: m.payload.clone(),
                headers,
            });
        }
        self.producer.publish(&mut outgoing)?;
        let outgoing_empty = outgoing.is_empty();
        self.clock.add(Stage::Publish, started);
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for o in &outgoing {
            *counts.entry(o.topic).or_default() += 1;
        }
        let counts = counts.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
        // The changelog records come first, in the order of `entities`; their
        // states, copied by the producer, move on to the store.
        let states = entities.len();
        for ((part, id), o) in entities.into_iter().zip(outgoing) {
            writes
                .entry(part)
                .or_default()
                .entities
                .push((id, o.payload));
        }
        let reached: Vec<(Part, i64)> = batch.ends.iter().map(|(p, n)| (*p, *n)).collect();
        let nothing_to_await = outgoing_empty;
        if writes.is_empty() && nothing_to_await {
            return Ok(states);
        }
        self.in_flight = Some(InFlight {
            writes,
            reached,
            records: batch.records,
            outgoing: counts,
            started,
        });
        if nothing_to_await {
            // Only positions moved (duplicates, re-reads): store them now.
            self.finish()?;
        }
        Ok(states)
    }

    /// Publishes the pending batch and finishes it: nothing left in flight
    /// and nothing left to store.
    pub(super) fn commit_all(&mut self) -> Result<(), ProcessorError> {
        // Nothing is left held back for a restart or the next owner to re-read.
        for owned in self.parts.values_mut() {
            owned.table.publish_all_held();
        }
        self.commit()?;
        self.finish()?;
        self.settle()
    }

    /// Waits for the write the store writer holds, if any, and moves the
    /// positions it stored.
    pub(super) fn settle(&mut self) -> Result<(), ProcessorError> {
        let waiting = Instant::now();
        let Some((batch, stored)) = self.writer.settle()? else {
            return Ok(());
        };
        self.clock.add(Stage::StoreWait, waiting);
        self.clock.spent(Stage::Store, stored.spent);
        for &(part, n) in &batch.reached {
            if let Some(owned) = self.parts.get_mut(&part) {
                owned.position = Some(n);
                owned.moved.position(n, Instant::now());
            }
            self.group_behind = true;
        }
        self.durable(&batch);
        Ok(())
    }

    /// Counts a batch whose output is acknowledged and whose state is stored.
    fn durable(&self, batch: &Handed) {
        self.metrics.committed.inc_by(batch.records as u64);
        if batch.records > 0 || batch.had_output {
            self.metrics
                .commit_seconds
                .observe(batch.started.elapsed().as_secs_f64());
        }
    }

    /// Waits for the batch in flight to be acknowledged, then hands its
    /// states and input offsets to the store writer (after the write before
    /// it is settled).
    pub(super) fn finish(&mut self) -> Result<(), ProcessorError> {
        self.settle()?;
        let Some(mut f) = self.in_flight.take() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let reached = self.producer.acknowledged()?;
        // The stored states equal the changelog up to here: a copy that
        // starts from this tree later reads only what others wrote after.
        for (topic, p, next) in reached {
            if let Some(stream) = Stream::of_changelog(&self.settings.topics, &topic)
                && let Some(write) = f.writes.get_mut(&(stream, p))
            {
                write.changelog_next = Some(next);
            }
        }
        self.clock.add(Stage::AckWait, waiting);
        for (topic, n) in &f.outgoing {
            self.metrics
                .records_out
                .with_label_values(&[topic])
                .inc_by(*n);
        }
        let had_output = !f.outgoing.is_empty();
        for write in f.writes.values() {
            self.metrics
                .store_writes
                .inc_by(write.entities.len() as u64);
            self.metrics.store_bytes.inc_by(
                write
                    .entities
                    .iter()
                    .map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
                    .sum(),
            );
        }
        let batch = Handed {
            records: f.records,
            started: f.started,
            had_output,
            reached: f.reached,
        };
        if f.writes.is_empty() {
            self.durable(&batch);
        } else {
            self.writer.begin(f.writes, batch)?;
        }
        self.clock.flush(&self.metrics.stage_seconds);
        let (mut users, mut sessions, mut imports) = (0, 0, 0);
        for ((stream, _), owned) in &self.parts {
            let t = &owned.table;
            let (entities, s) = t.size();
            match stream {
                Stream::Activity => users += entities,
                Stream::Imports => imports += entities,
            }
            sessions += s;
        }
        self.metrics
            .state_size
            .with_label_values(&["imports"])
            .set(imports as i64);
        self.metrics
            .state_size
            .with_label_values(&["users"])
            .set(users as i64);
        self.metrics
            .state_size
            .with_label_values(&["sessions"])
            .set(sessions as i64);
        Ok(())
    }
}
