//! Folding a batch. Records are copied out of the consumer as they are
//! polled, into a queue per partition (`intake`), and folded on the fold
//! thread with the partitions spread over threads. A partition's records are
//! folded in order by one thread; partitions share nothing but read-only
//! inputs, so nothing is locked while they fold, and the consumer's thread
//! goes on filling the next batch's own queues.

use std::ops::Range;

use super::*;

/// Bytes a queue keeps at least once a catch-up batch's buffer is given back.
const RETAINED: usize = 64 * 1024;

/// One partition's records polled and not yet folded, copied into one
/// growing buffer so that queuing a record allocates nothing.
#[derive(Default)]
pub(super) struct Queue {
    bytes: Vec<u8>,
    records: Vec<Queued>,
}

struct Queued {
    offset: i64,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
    authority: Authority,
}

impl Queue {
    /// Copies one record in.
    pub(super) fn push(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        authority: Authority,
    ) {
        let key = key.map(|k| self.copy(k));
        let payload = payload.map(|p| self.copy(p));
        self.records.push(Queued {
            offset,
            key,
            payload,
            authority,
        });
    }

    fn copy(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start..self.bytes.len()
    }

    fn slice(&self, r: &Option<Range<usize>>) -> Option<&[u8]> {
        r.as_ref().and_then(|r| self.bytes.get(r.clone()))
    }

    /// Records waiting.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The offset of every record, in order.
    #[cfg(test)]
    pub(super) fn offsets_each(&self) -> Vec<i64> {
        self.records.iter().map(|q| q.offset).collect()
    }

    /// The offset of the first record and the one after the last.
    fn offsets(&self) -> Option<(i64, i64)> {
        Some((
            self.records.first()?.offset,
            self.records.last()?.offset + 1,
        ))
    }

    /// Empties the queue. While the partition lags, the next batch is as
    /// large as this one and the buffers are kept; once a batch uses under
    /// half of them, what a larger batch grew is given back (a quarter let a
    /// batch back at 4 times the base keep the buffers of one tried at 16).
    pub(super) fn clear(&mut self) {
        let (used, records) = (self.bytes.len(), self.records.len());
        self.records.clear();
        self.bytes.clear();
        if used < self.bytes.capacity() / 2 {
            self.bytes.shrink_to((used * 2).max(RETAINED));
        }
        if records < self.records.capacity() / 2 {
            self.records.shrink_to((records * 2).max(RETAINED / 64));
        }
    }

    /// Gives back what a catch-up grew, down to what a small batch keeps,
    /// when the queue is empty: once the input is idle no batch comes to
    /// shrink it in [`Queue::clear`].
    pub(super) fn trim(&mut self) {
        if self.records.is_empty() {
            self.bytes.shrink_to(RETAINED);
            self.records.shrink_to(RETAINED / 64);
        }
    }
}

/// What every partition's fold reads and none changes.
struct Inputs<'a> {
    contract: &'a Contract,
    forgotten: &'a Erasures,
    counts: &'a BTreeMap<Stream, i32>,
    topics: &'a Topics,
    now: Millis,
}

/// What folding one partition's queue produced for the batch.
#[derive(Default)]
struct Folded {
    part: Option<Part>,
    dead: Vec<DeadLetter>,
    moved: Vec<Misplaced>,
    outcomes: BTreeMap<(&'static str, &'static str), u64>,
}

/// A record read from a partition other than its key's, to be written to
/// its key's partition and folded there.
#[derive(Debug, Clone)]
pub(super) struct Misplaced {
    /// The input topic.
    pub stream: Stream,
    /// The key's partition.
    pub home: i32,
    /// Where it was read.
    pub from: Position,
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub authority: Authority,
}

impl Core {
    /// Folds a batch of polled records at `now`, adding it to the pending
    /// batch; returns the emptied queues. Partitions are spread over up to
    /// `fold_threads` threads, balanced by their queued records.
    pub(super) fn fold(&mut self, polled: Polled, now: Millis) -> Vec<Queue> {
        let started = Instant::now();
        let Polled {
            mut queues,
            records,
            polling,
            started: polled_at,
            ..
        } = polled;
        self.clock.spent(Stage::Poll, polling);
        let batch = &mut self.batch;
        batch.records += records;
        batch.started.get_or_insert(polled_at);
        for (part, queue) in &queues {
            if let Some((first, end)) = queue.offsets() {
                batch.starts.entry(*part).or_insert(first);
                batch.ends.insert(*part, end);
            }
        }
        let inputs = Inputs {
            contract: &self.contract,
            forgotten: &self.forgotten,
            counts: &self.partition_counts,
            topics: &self.settings.topics,
            now,
        };
        // A queue of a partition no longer owned (revoked while the batch
        // waited) is dropped: its next owner reads it from the stored offset.
        let mut work: Vec<(Part, &mut Owned, &mut Queue)> = Vec::with_capacity(queues.len());
        let mut parts = self.parts.iter_mut().peekable();
        for (p, q) in queues.iter_mut() {
            while parts.next_if(|(owned, _)| *owned < p).is_some() {}
            if let Some((_, o)) = parts.next_if(|(owned, _)| *owned == p) {
                work.push((*p, o, q));
            }
        }
        let threads = self.settings.fold_threads.clamp(1, work.len().max(1));
        let mut folded = if threads == 1 || records < self.settings.fold_parallel_from {
            work.into_iter()
                .map(|(p, o, q)| fold_partition(p, o, q, &inputs))
                .collect()
        } else {
            // The longest queues are taken first, so that the threads end
            // close together.
            work.sort_by_key(|(_, _, q)| q.len());
            fold_in_parallel(work, threads, &inputs)
        };
        folded.sort_by_key(|f| f.part);
        for f in folded {
            self.batch.dead.extend(f.dead);
            self.batch.moved.extend(f.moved);
            for (k, n) in f.outcomes {
                *self.batch.outcomes.entry(k).or_default() += n;
            }
        }
        self.metrics.folded.inc_by(records as u64);
        self.clock.add(Stage::Fold, started);
        queues
            .into_iter()
            .map(|(_, mut q)| {
                q.clear();
                q
            })
            .collect()
    }
}

/// Folds the partitions on `threads` threads (this one among them), each
/// taking the next partition from the end of `work` until none is left. A
/// thread that cannot be started leaves its share to the others.
fn fold_in_parallel(
    work: Vec<(Part, &mut Owned, &mut Queue)>,
    threads: usize,
    inputs: &Inputs<'_>,
) -> Vec<Folded> {
    let work = Mutex::new(work);
    let drain = || {
        let mut out = Vec::new();
        while let Some((p, o, q)) = sessionfold_edge::lock(&work).pop() {
            out.push(fold_partition(p, o, q, inputs));
        }
        out
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("sessionfold-fold".into())
                    .spawn_scoped(s, drain)
                    .map_err(
                        |e| tracing::warn!(error = %e, "starting a fold thread; folding on fewer"),
                    )
                    .ok()
            })
            .collect();
        let mut out = drain();
        for h in handles {
            match h.join() {
                Ok(f) => out.extend(f),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// Folds one partition's queue in order.
fn fold_partition(part: Part, owned: &mut Owned, queue: &Queue, inputs: &Inputs<'_>) -> Folded {
    let (stream, partition) = part;
    let table = &mut owned.table;
    let mut out = Folded {
        part: Some(part),
        ..Folded::default()
    };
    for q in &queue.records {
        let pos = Position {
            partition,
            offset: q.offset,
        };
        let key_bytes = queue.slice(&q.key);
        let payload = queue.slice(&q.payload);
        let dead = |kind: &'static str, error: String| DeadLetter {
            key: key_bytes.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            kind,
            error,
            source_topic: stream.input(inputs.topics).to_owned(),
            pos,
        };
        let Ok(key) = key_bytes.map(std::str::from_utf8).transpose() else {
            out.dead
                .push(dead("bad_key", "record key is not UTF-8".into()));
            continue;
        };
        if let (Some(k), Some(&n)) = (key, inputs.counts.get(&stream))
            && let Some(home) = crate::tables::home_elsewhere(k, partition, n)
        {
            // A producer with another partitioner (librdkafka's and
            // Python's, Go's and .NET's clients' default): the record is
            // written to its key's partition and folded there, once.
            out.moved.push(Misplaced {
                stream,
                home,
                from: pos,
                key: k.as_bytes().to_vec(),
                payload: payload.map(<[u8]>::to_vec),
                authority: q.authority,
            });
            continue;
        }
        let record = crate::tables::Input {
            key,
            payload: payload.unwrap_or_default(),
            pos,
            authority: q.authority,
        };
        match table.apply(inputs.contract, record, inputs.now, inputs.forgotten) {
            Ok((kind, applied)) => {
                *out.outcomes
                    .entry((kind, crate::tables::outcome_name(applied)))
                    .or_default() += 1;
            }
            Err((kind, error)) => out.dead.push(dead(kind, error)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(records: usize) -> Queue {
        let mut q = Queue::default();
        for o in 0..records {
            q.push(o as i64, Some(b"user"), Some(&[7; 100]), Authority::Actor);
        }
        q
    }

    #[test]
    fn a_full_queue_keeps_its_buffers_until_it_is_trimmed() {
        let mut q = filled(20_000);
        q.clear();
        assert!(q.bytes.capacity() >= 20_000 * 104);
        assert!(q.records.capacity() >= 20_000);
        q.trim();
        assert_eq!(q.len(), 0);
        assert!(q.bytes.capacity() <= RETAINED);
        assert!(q.records.capacity() <= RETAINED / 64);
    }

    #[test]
    fn trimming_leaves_a_queue_with_records_alone() {
        let mut q = filled(20_000);
        let before = (q.bytes.capacity(), q.records.capacity());
        q.trim();
        assert_eq!((q.bytes.capacity(), q.records.capacity()), before);
        assert_eq!(q.offsets(), Some((0, 20_000)));
    }
}
