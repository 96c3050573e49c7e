//! The intake: what the consumer's thread does with each record, and how a
//! batch of them reaches the fold thread.
//!
//! The consumer's thread only polls. It checks each record's offset against
//! its partition's expectation, seeking back over a gap at once (on the
//! thread that owns the fetches, so that the records already fetched past
//! the gap cannot push the seek further back), and copies the record into
//! its partition's queue. A full batch goes to the fold thread through a
//! one-place slot; polling goes on while that thread folds, publishes and
//! stores the batch before it. The rebalance callback, which runs inside
//! poll on the consumer's thread, reaches both the slot and the batch being
//! filled, so that a revocation folds and commits every record taken.
//!
//! Locks are taken in one order: the core, then the slot, then the batch
//! being filled. The consumer's thread holds at most one of the last two at a
//! time, and the fold thread never waits on the batch being filled.

use std::sync::Condvar;

use super::*;
use sessionfold_edge::lock as hold;

/// One owned partition as the consumer's thread sees it.
struct Incoming {
    /// Where the partition's next record must be.
    offsets: OffsetTracker,
    /// Records taken in the batch being filled.
    queue: fold::Queue,
    /// The partition's high watermark as last heard.
    high: Option<i64>,
}

/// The batch being filled by the consumer's thread.
#[derive(Default)]
struct Filling {
    parts: BTreeMap<Part, Incoming>,
    records: usize,
    /// When the first record of the batch was polled.
    started: Option<Instant>,
}

/// A batch of polled records on its way to the fold.
pub(super) struct Polled {
    /// Each partition's records, in offset order.
    pub(super) queues: Vec<(Part, fold::Queue)>,
    /// Records in all queues.
    pub(super) records: usize,
    /// When its first record was polled.
    pub(super) started: Instant,
    /// From its first record polled to its hand-over: the consumer's
    /// thread's time on it, beside the fold thread's work on the batch before.
    pub(super) polling: Duration,
    /// It was filled to its count: more records were waiting, and the
    /// fold thread may fold the next poll into the same commit.
    pub(super) full: bool,
}

#[derive(Default)]
struct Slot {
    /// A batch handed over and not yet taken by the fold thread.
    ready: Option<Polled>,
    /// Emptied queues given back, so that their buffers are reused.
    spare: Vec<fold::Queue>,
    /// No more batches will come; `commit` tells whether to store what came.
    closing: Option<bool>,
    /// The fold thread has returned.
    worker_gone: bool,
    /// The first error either thread met; the loop stops with it.
    failed: Option<ProcessorError>,
    /// The consumer's thread found nothing to poll since its last hand-over.
    idle: bool,
}

/// What the consumer's thread and the fold thread share, besides the core.
#[derive(Default)]
pub(super) struct Handoff {
    slot: Mutex<Slot>,
    changed: Condvar,
    filling: Mutex<Filling>,
    /// Set with `failed`, so that the consumer's thread checks a flag, not a
    /// lock, after each poll.
    failing: AtomicBool,
}

/// What queuing one record asks of the consumer's thread.
pub(super) enum Queued {
    /// Nothing more.
    Taken,
    /// The record lies past the next expected offset: the broker skipped
    /// records (tansu 0.6.0 does when a fetch starts inside a record batch),
    /// so the caller seeks back to this offset, further each time; records
    /// already taken are then dropped by offset. Only when even the
    /// partition's beginning starts past the expected offset (data deleted)
    /// is the gap accepted.
    SeekBack(Part, i64),
}

impl Handoff {
    fn wait<'a>(&self, slot: MutexGuard<'a, Slot>) -> MutexGuard<'a, Slot> {
        self.changed
            .wait(slot)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an error that stops the loop; the first one wins.
    pub(super) fn fail(&self, e: ProcessorError) {
        hold(&self.slot).failed.get_or_insert(e);
        self.failing.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// The error that stops the loop, if one happened.
    pub(super) fn failure(&self) -> Option<ProcessorError> {
        if !self.failing.load(Ordering::SeqCst) {
            return None;
        }
        hold(&self.slot).failed.take()
    }

    /// A partition now owned, whose next record is at `next`.
    pub(super) fn own(&self, p: Part, next: Option<i64>) {
        let mut filling = hold(&self.filling);
        let fresh = Incoming {
            offsets: OffsetTracker::at(next),
            queue: fold::Queue::default(),
            high: None,
        };
        if let Some(old) = filling.parts.insert(p, fresh) {
            filling.records -= old.queue.len();
        }
    }

    /// Partitions no longer owned; their records not taken by
    /// [`Handoff::take_all`] are dropped (the next owner reads them).
    pub(super) fn disown(&self, parts: &[Part]) {
        let mut filling = hold(&self.filling);
        for p in parts {
            if let Some(gone) = filling.parts.remove(p) {
                filling.records -= gone.queue.len();
            }
        }
    }

    /// Checks and queues one record, on the consumer's thread.
    pub(super) fn queue(
        &self,
        msg: &BorrowedMessage<'_>,
        topics: &Topics,
        metrics: &Metrics,
    ) -> (Queued, usize) {
        let mut filling = hold(&self.filling);
        let queued = filling.queue_one(msg, topics, metrics);
        if filling.records > 0 && filling.started.is_none() {
            filling.started = Some(Instant::now());
        }
        (queued, filling.records)
    }

    /// Notes a partition's high watermark from the consumer's statistics.
    pub(super) fn heard_high(&self, p: Part, high: i64) {
        if let Some(incoming) = hold(&self.filling).parts.get_mut(&p) {
            incoming.high = Some(high);
        }
    }

    /// Records the broker holds past those taken, over the owned
    /// partitions, by the high watermarks last heard. Those only grow, so
    /// an old one makes this too small, never too large: a partition caught
    /// up since is never taken for lagging.
    pub(super) fn behind(&self) -> usize {
        hold(&self.filling)
            .parts
            .values()
            .filter_map(|i| usize::try_from(i.high? - i.offsets.expected()?).ok())
            .sum()
    }

    /// When the batch being filled took its first record.
    pub(super) fn started(&self) -> Option<Instant> {
        hold(&self.filling).started
    }

    /// Hands the batch being filled (`full` when filled to its count) to
    /// the fold thread, waiting while the one before it has not been taken.
    /// Returns false when the fold thread has stopped.
    pub(super) fn hand_over(&self, full: bool) -> bool {
        let mut spare = std::mem::take(&mut hold(&self.slot).spare);
        let taken = hold(&self.filling).take(&mut spare, full);
        let Some(polled) = taken else {
            hold(&self.slot).spare.append(&mut spare);
            return true;
        };
        let mut slot = hold(&self.slot);
        slot.spare.append(&mut spare);
        while slot.ready.is_some() && !slot.worker_gone {
            slot = self.wait(slot);
        }
        if slot.worker_gone {
            return false;
        }
        slot.ready = Some(polled);
        slot.idle = false;
        drop(slot);
        self.changed.notify_all();
        true
    }

    /// Tells the fold thread that no batch will follow; with `commit` it
    /// stores what it holds before it returns.
    pub(super) fn close(&self, commit: bool) {
        hold(&self.slot).closing = Some(commit);
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for a batch (or the close, or with `or_idle`
    /// the consumer's thread going idle); returns how the loop was asked to
    /// close, if it was.
    pub(super) fn await_batch(&self, timeout: Duration, or_idle: bool) -> Option<bool> {
        let mut slot = hold(&self.slot);
        if slot.ready.is_none()
            && slot.closing.is_none()
            && !(or_idle && slot.idle)
            && !timeout.is_zero()
        {
            slot = self
                .changed
                .wait_timeout(slot, timeout)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        slot.closing
    }

    /// Takes the batch handed over, if any. Called only with the core's lock
    /// held, so that the rebalance callback sees every batch either here or
    /// folded.
    pub(super) fn take_ready(&self) -> Option<Polled> {
        let ready = hold(&self.slot).ready.take();
        if ready.is_some() {
            self.changed.notify_all();
        }
        ready
    }

    /// Takes the batch handed over and the one being filled, in that order,
    /// for the rebalance callback to fold before partitions go.
    pub(super) fn take_all(&self) -> Vec<Polled> {
        let ready = self.take_ready();
        let mut spare = Vec::new();
        let filling = hold(&self.filling).take(&mut spare, false);
        ready.into_iter().chain(filling).collect()
    }

    /// Tells the fold thread that a poll found nothing and nothing is being
    /// filled, so that it commits a batch it held for the next poll; and
    /// shrinks the spare queues and the empty ones being filled: the queues
    /// of a catch-up's polls (up to three of 40,000 records: one being
    /// filled, one handed over, one folding) would otherwise stay resident
    /// for as long as nothing comes.
    pub(super) fn went_idle(&self) {
        let mut slot = hold(&self.slot);
        for q in slot.spare.iter_mut() {
            q.trim();
        }
        if !slot.idle {
            slot.idle = true;
            self.changed.notify_all();
        }
        drop(slot);
        for incoming in hold(&self.filling).parts.values_mut() {
            incoming.queue.trim();
        }
    }

    /// Whether the consumer's thread went idle since its last hand-over.
    pub(super) fn idle(&self) -> bool {
        hold(&self.slot).idle
    }

    /// Gives emptied queues back for reuse.
    pub(super) fn give_back(&self, queues: impl IntoIterator<Item = fold::Queue>) {
        hold(&self.slot).spare.extend(queues);
    }

    /// Marks the fold thread as returned, releasing a consumer's thread
    /// waiting to hand a batch over.
    pub(super) fn worker_returned(&self) {
        hold(&self.slot).worker_gone = true;
        self.changed.notify_all();
    }
}

impl Filling {
    fn queue_one(
        &mut self,
        msg: &BorrowedMessage<'_>,
        topics: &Topics,
        metrics: &Metrics,
    ) -> Queued {
        let Some(stream) = Stream::of_input(topics, msg.topic()) else {
            tracing::warn!(
                topic = msg.topic(),
                "record from a topic not folded; skipped"
            );
            return Queued::Taken;
        };
        // Only an import's actor needs vouching for; parsing the headers of
        // every activity record cost a twentieth of the loop.
        let authority = || match stream {
            Stream::Activity => Authority::Actor,
            Stream::Imports => Authority::from_role(
                msg.headers()
                    .and_then(|h| h.iter().find(|h| h.key == headers::ACTOR_ROLE))
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok()),
            ),
        };
        let record = (msg.offset(), msg.key(), msg.payload());
        self.accept((stream, msg.partition()), record, authority, metrics)
    }

    /// Checks a record's offset and queues it if it is the next one.
    fn accept(
        &mut self,
        part: Part,
        (offset, key, payload): (i64, Option<&[u8]>, Option<&[u8]>),
        authority: impl FnOnce() -> Authority,
        metrics: &Metrics,
    ) -> Queued {
        let Some(incoming) = self.parts.get_mut(&part) else {
            tracing::warn!(partition = ?part, "record from a partition not owned; skipped");
            return Queued::Taken;
        };
        match incoming.offsets.observe(offset) {
            Verdict::Next => {}
            Verdict::Repeat => {
                metrics
                    .events_in
                    .with_label_values(&["any", "reread"])
                    .inc();
                return Queued::Taken;
            }
            Verdict::SeekBack(to) => {
                tracing::info!(partition = ?part, got = offset, seek_to = to, "input gap; seeking back");
                metrics.input_gap_seeks.inc();
                return Queued::SeekBack(part, to);
            }
            Verdict::GapAccepted { expected } => {
                tracing::warn!(partition = ?part, expected, got = offset, "records missing from the input partition; continuing after the gap");
                metrics
                    .dead_lettered
                    .with_label_values(&["input_gap"])
                    .inc();
            }
        }
        incoming.queue.push(offset, key, payload, authority());
        self.records += 1;
        Queued::Taken
    }

    /// Takes the records queued, leaving each partition a queue from
    /// `spare` (or a new one).
    fn take(&mut self, spare: &mut Vec<fold::Queue>, full: bool) -> Option<Polled> {
        if self.records == 0 {
            return None;
        }
        let mut queues = Vec::new();
        for (p, incoming) in self.parts.iter_mut() {
            if incoming.queue.len() > 0 {
                let fresh = spare.pop().unwrap_or_default();
                queues.push((*p, std::mem::replace(&mut incoming.queue, fresh)));
            }
        }
        let records = std::mem::take(&mut self.records);
        let started = self.started.take().unwrap_or_else(Instant::now);
        Some(Polled {
            queues,
            records,
            started,
            polling: started.elapsed(),
            full,
        })
    }
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
