//! The store writer: a thread of its own that writes an acknowledged
//! batch's states and input offsets to sled while the fold thread folds and
//! publishes the next ones.
//!
//! With many users sled's per-key cost is the fold thread's largest stage,
//! larger than the fold itself, so writing on the fold thread left the
//! second core idle for that long. At most one write is outstanding: the
//! fold thread settles it before it hands over the next, before a rebalance
//! gives partitions away or takes new ones, and before it stops. Positions
//! (and so the group's offsets) move only once the write is settled, so
//! nothing claims a batch sled does not hold.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ProcessorError;
use crate::store::{PartitionWrite, SharedStore, StateStore};
use crate::tables::{Part, tree};

/// A batch's writes, one per partition.
type Job = BTreeMap<Part, PartitionWrite>;

/// What a settled write cost.
pub(super) struct Stored {
    /// Time the writer spent in sled.
    pub spent: Duration,
}

/// The batch a write belongs to, kept by the fold thread until it settles.
pub(super) struct Handed {
    /// Input records of the batch.
    pub records: usize,
    /// When the batch was published.
    pub started: Instant,
    /// Whether the batch wrote any record.
    pub had_output: bool,
    /// The input offset each partition has folded to once the write is
    /// settled (a restart may resume before it, at a held-back change).
    pub reached: Vec<(Part, i64)>,
}

/// The writer thread and the one write it may hold.
pub(super) struct StoreWriter {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Result<Stored, ProcessorError>>,
    pending: Option<Handed>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the writer thread over `store`.
    pub fn start(store: SharedStore) -> Result<StoreWriter, ProcessorError> {
        // One slot each way: the fold thread never hands over a second write
        // before it has the first one's result.
        let (jobs, inbox) = mpsc::sync_channel::<Job>(1);
        let (report, done) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sessionfold-store".into())
            .spawn(move || {
                for job in inbox {
                    let result = write(store.as_ref(), job);
                    if report.send(result).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| ProcessorError::Thread(e.to_string()))?;
        Ok(StoreWriter {
            jobs: Some(jobs),
            done,
            pending: None,
            thread: Some(thread),
        })
    }

    /// Hands a batch's writes to the writer; the previous write must be settled.
    pub fn begin(&mut self, writes: Job, batch: Handed) -> Result<(), ProcessorError> {
        debug_assert!(
            self.pending.is_none(),
            "a store write begun before the last settled"
        );
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(writes).map_err(|_| stopped())?;
        self.pending = Some(batch);
        Ok(())
    }

    /// True while a write is handed over and not settled.
    pub fn pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits for the outstanding write, if any; returns its batch and what
    /// it moved.
    pub fn settle(&mut self) -> Result<Option<(Handed, Stored)>, ProcessorError> {
        let Some(batch) = self.pending.take() else {
            return Ok(None);
        };
        match self.done.recv() {
            Ok(result) => result.map(|stored| Some((batch, stored))),
            Err(_) => Err(stopped()),
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        // Closing the inbox ends the thread once its write (if any) is done.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped() -> ProcessorError {
    ProcessorError::Thread("the store writer stopped".into())
}

fn write(store: &dyn StateStore, job: Job) -> Result<Stored, ProcessorError> {
    let started = Instant::now();
    for (part, write) in job {
        store.commit(&tree(part.0, part.1), write)?;
    }
    Ok(Stored {
        spent: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::store::{MemoryStore, Store};
    use crate::tables::Stream;

    fn write_of(id: &str, next: i64) -> PartitionWrite {
        PartitionWrite {
            entities: vec![(id.to_owned(), Some(id.as_bytes().to_vec()))],
            next_offset: Some(next),
            changelog_next: None,
            standby_copy: None,
        }
    }

    fn states(store: &dyn StateStore, part: Part) -> Result<usize, ProcessorError> {
        let mut n = 0;
        store.for_each_state(&tree(part.0, part.1), &mut |_| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    /// What every store must do behind the writer.
    fn a_settled_write_is_stored_with_its_positions(
        store: SharedStore,
    ) -> Result<(), ProcessorError> {
        let mut writer = StoreWriter::start(store.clone())?;
        assert!(writer.settle()?.is_none());
        let (a, b) = ((Stream::Activity, 0), (Stream::Activity, 3));
        let batch = |records| Handed {
            records,
            started: Instant::now(),
            had_output: true,
            reached: Vec::new(),
        };
        writer.begin(
            BTreeMap::from([(a, write_of("u1", 10)), (b, write_of("u2", 7))]),
            batch(5),
        )?;
        assert!(writer.pending());
        let stored = writer.settle()?.map(|(h, _)| h.records);
        assert_eq!(stored, Some(5));
        assert!(!writer.pending());
        assert_eq!(store.next_offset(&tree(a.0, a.1))?, Some(10));
        assert_eq!(store.next_offset(&tree(b.0, b.1))?, Some(7));
        assert_eq!(states(store.as_ref(), b)?, 1);
        // The next write goes through the same thread.
        writer.begin(BTreeMap::from([(a, write_of("u3", 12))]), batch(1))?;
        assert!(writer.settle()?.is_some());
        assert_eq!(store.next_offset(&tree(a.0, a.1))?, Some(12));
        assert_eq!(states(store.as_ref(), a)?, 2);
        // A replace leaves only what it writes.
        store.replace(&tree(a.0, a.1), write_of("u9", 20))?;
        assert_eq!(
            (
                states(store.as_ref(), a)?,
                store.next_offset(&tree(a.0, a.1))?
            ),
            (1, Some(20))
        );
        Ok(())
    }

    #[test]
    fn sled_stores_a_settled_write_with_its_positions() -> Result<(), ProcessorError> {
        let dir = tempfile::tempdir().map_err(|e| ProcessorError::Thread(e.to_string()))?;
        a_settled_write_is_stored_with_its_positions(Arc::new(Store::open(dir.path())?))
    }

    #[test]
    fn memory_stores_a_settled_write_with_its_positions() -> Result<(), ProcessorError> {
        a_settled_write_is_stored_with_its_positions(Arc::new(MemoryStore::new()))
    }
}
