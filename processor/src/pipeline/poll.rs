//! The consumer's thread: polls records into batches and hands them to
//! the fold thread, keeping an eye on readiness and the group.

use super::*;

impl Processor {
    /// The consumer's thread: polls, queues and hands batches over until
    /// a stop is asked or the fold thread fails.
    pub(super) fn poll_loop(&self, stop: &sessionfold_edge::Stop) -> Result<(), ProcessorError> {
        let (batch_max, batch_wait, topics, metrics) = {
            let core = lock(&self.core);
            (
                core.settings.batch_max,
                core.settings.batch_wait,
                core.settings.topics.clone(),
                core.metrics.clone(),
            )
        };
        let status = lock(&self.core).status.clone();
        let mut sizing = sizing::Sizing::polls(batch_max, batch_wait);
        let mut next_group_check = Instant::now() + GROUP_CHECK;
        // Group descriptions that failed in a row.
        let mut undescribed = 0u32;
        // Records in the batch being filled, as it stood after the last
        // record queued. The rebalance callback inside poll can only empty
        // it, and a stale count costs one poll that does not wait.
        let mut filling = 0usize;
        // Polls since the loop began: the readiness flag and the group
        // check are looked at every 64th poll and after an idle one, not
        // per record (a clock read per record was a tenth of this thread).
        let mut polls = 0u64;
        while !stop.is_stopping() {
            polls = polls.wrapping_add(1);
            // Nothing is locked across poll: the callbacks take the locks.
            let wait = if filling == 0 {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            let mut polled = self.consumer.poll(wait);
            // While the input lags, an empty poll is not yet the end of the
            // backlog: the consumer's local queue runs dry between two
            // fetch responses (on Apache Kafka every few batches), and
            // taking that for caught up sent the batch limits back to the
            // base. A lagging batch waits for a record as long as a fetch
            // may take.
            let waited = polled.is_none() && filling > 0 && sizing.factor() > 1;
            if waited {
                polled = self.consumer.poll(LAGGING_GAP);
            }
            if let Some(e) = self.handoff.failure() {
                return Err(e);
            }
            let idle = match polled {
                None => true,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    true
                }
                Some(Ok(msg)) => {
                    let (queued, records) = self.handoff.queue(&msg, &topics, &metrics);
                    filling = records;
                    if let Queued::SeekBack(p, at) = queued {
                        drop(msg);
                        let topic = p.0.input(&topics);
                        if let Err(e) = self.consumer.seek(
                            topic,
                            p.1,
                            Offset::Offset(at),
                            Duration::from_secs(10),
                        ) {
                            tracing::warn!(partition = ?p, offset = at, error = %e, "seeking back over an input gap");
                        }
                    }
                    false
                }
            };
            // The clock is read once every 64 records, and after a poll
            // that waited: a batch's age matters to tens of milliseconds, a
            // record takes under one microsecond.
            let by_count = filling >= sizing.records();
            let by_time = filling > 0
                && (waited || filling % 64 == 0)
                && self
                    .handoff
                    .started()
                    .is_some_and(|t| t.elapsed() >= sizing.wait());
            if (idle || by_count || by_time) && filling > 0 {
                // A batch filled to its count says that records wait. One cut
                // short by an empty local queue or by its time says so too
                // when the broker holds another batch's worth behind it: on
                // a busy machine the queue runs dry between fetch responses
                // while the backlog is still large. Otherwise it was fed by
                // a trickle, and growing it would only hold changes back.
                let behind = !by_count && self.handoff.behind() >= backlog(&sizing);
                let lagging = by_count || behind;
                tracing::debug!(
                    records = filling,
                    factor = sizing.factor(),
                    full = by_count,
                    behind,
                    "batch handed to the fold thread"
                );
                if !self.handoff.hand_over(lagging) {
                    return Ok(());
                }
                sizing.ended(!lagging);
                filling = 0;
            } else if idle && filling == 0 && self.handoff.behind() < backlog(&sizing) {
                // Each idle poll, not once: the last batch's queues come
                // back from the fold thread only after it is folded.
                self.handoff.went_idle();
            }
            if idle || polls % 64 == 0 {
                let ready = status.joined.load(Ordering::SeqCst)
                    && status.restoring.load(Ordering::SeqCst) == 0;
                status.running.store(ready, Ordering::SeqCst);
                if Instant::now() >= next_group_check {
                    undescribed = if self.check_group() {
                        0
                    } else {
                        undescribed + 1
                    };
                    if undescribed == UNDESCRIBED_LIMIT {
                        tracing::info!(
                            every = ?GROUP_CHECK_SLOW,
                            "the broker does not describe the consumer group; it is asked rarely from now on, and this member's own assignment stands in for it"
                        );
                    }
                    next_group_check = Instant::now()
                        + if undescribed >= UNDESCRIBED_LIMIT {
                            GROUP_CHECK_SLOW
                        } else {
                            GROUP_CHECK
                        };
                }
            }
        }
        self.handoff.hand_over(false);
        Ok(())
    }
}
