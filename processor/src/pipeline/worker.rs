//! The fold thread: folds the batches handed over, publishes and stores
//! them in order, and expires on the wall clock.

use super::*;

impl Processor {
    /// The fold thread: folds each batch handed over, publishes it, stores
    /// the one before, expires on the wall clock and mirrors positions to
    /// the group, until the consumer's thread closes the handoff.
    pub(super) fn fold_loop(&self) -> Result<(), ProcessorError> {
        let (tick, batch_max, batch_wait) = {
            let core = lock(&self.core);
            let s = &core.settings;
            (s.tick, s.batch_max, s.batch_wait)
        };
        let mut commits = sizing::Sizing::commits(batch_max, batch_wait);
        let dead_max = batch_max.saturating_mul(sizing::MAX_FACTOR as usize);
        let mut next_tick = Instant::now();
        // Whether a batch was in flight when the lock was last let go; the
        // rebalance callback can only empty it.
        let mut in_flight = false;
        // When the pending commit, held for the next poll, must end.
        let mut held_until: Option<Instant> = None;
        loop {
            let timeout = if let Some(until) = held_until {
                until.saturating_duration_since(Instant::now())
            } else if in_flight {
                Duration::ZERO
            } else {
                next_tick
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            };
            let closing = self.handoff.await_batch(timeout, held_until.is_some());
            let mut core = lock(&self.core);
            let ready = self.handoff.take_ready();
            if closing == Some(false) {
                return Ok(());
            }
            let mut full = None;
            if let Some(polled) = ready {
                let started = polled.started;
                full = Some(polled.full);
                // Folded before the tick, so that a heartbeat waiting in the
                // batch is not expired by the tick first.
                let queues = core.fold(polled, now_millis());
                self.handoff.give_back(queues);
                core.metrics
                    .fold_seconds
                    .observe(started.elapsed().as_secs_f64());
            } else if closing == Some(true) {
                core.commit_all()?;
                core.store.flush()?;
                return Ok(());
            }
            if Instant::now() >= next_tick {
                core.tick(now_millis());
                next_tick = Instant::now() + tick;
            }
            // While polls come full, more records wait behind them: the
            // commit takes the next poll too, until it reaches its count or
            // its time, so that a user changed in both is written once.
            let records = core.batch.records;
            let age = core.batch.started.map_or(Duration::ZERO, |t| t.elapsed());
            // Dead letters keep their whole record until published: a
            // backlog full of bad records must not grow a commit's memory
            // with its size, whatever the good ones coalesce.
            let by_count = records >= commits.records() || core.batch.dead.len() >= dead_max;
            let by_time = age >= commits.wait();
            let waiting = full.unwrap_or(held_until.is_some()) && !self.handoff.idle();
            if waiting && !by_count && !by_time {
                held_until = core.batch.started.map(|t| t + commits.wait());
                continue;
            }
            held_until = None;
            let states = core.commit()?;
            if records > 0 {
                tracing::debug!(
                    records,
                    states,
                    factor = commits.factor(),
                    by_count,
                    by_time,
                    waiting,
                    "commit"
                );
                commits.wrote(commits.factor(), records, states);
                // A commit cut by its time while polls still come full lags
                // as much as one filled to its count: the fold is slower
                // than the base limits assume (10,000 records in 50 ms), and
                // holding the limits there kept every commit of a backlog at
                // one poll's worth, coalescing nothing more.
                commits.ended(!waiting);
            }
            core.commit_group(&self.consumer, None, CommitMode::Async);
            in_flight = core.in_flight.is_some() || core.writer.pending();
        }
    }
}

impl Core {
    /// Expires what is due at `now` in every owned partition.
    pub(super) fn tick(&mut self, now: Millis) {
        for ((stream, _), owned) in self.parts.iter_mut() {
            let n = owned.table.tick(now);
            let what = match stream {
                Stream::Activity => "users",
                Stream::Imports => "imports",
            };
            self.metrics
                .expired
                .with_label_values(&[what])
                .inc_by(n as u64);
        }
    }
}
