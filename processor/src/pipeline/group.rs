//! The consumer group seen from outside: which input partitions have an
//! owner, and the group offsets that standard lag tools read.

use super::*;

/// How often the group's assignment is checked for partitions without an owner.
pub(super) const GROUP_CHECK: Duration = Duration::from_secs(5);

/// How often a broker that did not describe the group the last
/// [`UNDESCRIBED_LIMIT`] times is asked again (tansu 0.6.0 on its sqlite
/// store fails every description and drops the connection).
pub(super) const GROUP_CHECK_SLOW: Duration = Duration::from_secs(300);

/// Failed descriptions in a row after which the group is asked rarely.
pub(super) const UNDESCRIBED_LIMIT: u32 = 3;

impl Processor {
    /// Asks the coordinator which input partitions the group's members own;
    /// when some have had no owner past the grace period, leaves and rejoins
    /// the group (with back-off) so that a new assignment is made. True
    /// when the coordinator described the group.
    pub(super) fn check_group(&self) -> bool {
        let (group, topics, total, describe) = {
            let core = lock(&self.core);
            let total: i32 = core.partition_counts.values().sum();
            (
                core.settings.group_id.clone(),
                core.settings.topics.clone(),
                usize::try_from(total).unwrap_or(0),
                core.settings.describe_group,
            )
        };
        if total == 0 {
            return true;
        }
        let inputs = [topics.activity.as_str(), topics.imports.as_str()];
        // What this member holds is owned, whatever the description says: a
        // coordinator that answers with a stale or empty assignment (tansu
        // after a rejoin) must not make a member that folds its partitions
        // leave the group it serves.
        let mine: BTreeSet<(String, i32)> = lock(&self.core)
            .parts
            .keys()
            .map(|(stream, p)| (stream.input(&topics).to_owned(), *p))
            .collect();
        let listed = if describe {
            self.consumer
                .fetch_group_list(Some(&group), Duration::from_secs(5))
        } else {
            Err(rdkafka::error::KafkaError::Canceled)
        };
        let described = listed.is_ok() || !describe;
        let owned = match listed {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == group)
                .and_then(|g| match g.state() {
                    // A stable group always lists its members; a broker that
                    // lists none (tansu 0.6.0) tells nothing.
                    "Stable" if !g.members().is_empty() => Some(
                        g.members()
                            .iter()
                            .filter_map(|m| crate::liveness::assigned(m.assignment()?, &inputs))
                            .flatten()
                            .chain(mine.iter().cloned())
                            .collect::<BTreeSet<_>>()
                            .len(),
                    ),
                    "Empty" | "Dead" => Some(mine.len()),
                    _ => None,
                }),
            Err(e) => {
                tracing::debug!(error = %e, "describing the consumer group");
                None
            }
        };
        let now = Instant::now();
        let mut core = lock(&self.core);
        match owned {
            Some(owned) => core.coverage.observe(owned, total, now),
            // Without the group's word, a member that owns nothing past the
            // grace period is the one fault it can see for itself.
            None if core.status.joined.load(Ordering::SeqCst) => {
                let mine = if core.parts.is_empty() { 0 } else { total };
                core.coverage.observe(mine, total, now);
            }
            None => {}
        }
        let short = core.coverage.short_for(now);
        core.status
            .unowned_secs
            .store(short.map_or(0, |d| d.as_secs().max(1)), Ordering::SeqCst);
        if core.coverage.rejoin_due(now) {
            tracing::warn!(owned = ?owned, total, for_secs = short.map(|d| d.as_secs()), owned_here = core.parts.len(), "input partitions have no owner in the group: their records are not folded; leaving and rejoining the group (again, with a growing wait, until every partition has an owner)");
            drop(core);
            self.consumer.unsubscribe();
            if let Err(e) = self.consumer.subscribe(&inputs) {
                tracing::error!(error = %e, "subscribing again");
            }
        }
        described
    }
}

impl Core {
    /// The positions stored in sled for `parts` (all owned ones when `None`),
    /// as group offsets.
    pub(super) fn group_offsets(&self, parts: Option<&[Part]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (part, next) in self
            .parts
            .iter()
            .filter_map(|(p, o)| Some((p, o.position?)))
        {
            if parts.is_some_and(|only| !only.contains(part)) {
                continue;
            }
            let topic = part.0.input(&self.settings.topics);
            if let Err(e) = tpl.add_partition_offset(topic, part.1, Offset::Offset(next)) {
                tracing::debug!(partition = ?part, error = %e, "group offset left out");
            }
        }
        tpl
    }

    /// Mirrors the positions stored in sled to the consumer group, so that
    /// standard lag tools see the processor's progress. sled stays the truth
    /// for where to resume; a failed group commit costs only a stale figure.
    pub(super) fn commit_group<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        parts: Option<&[Part]>,
        mode: CommitMode,
    ) {
        if parts.is_none()
            && (!self.group_behind
                || (matches!(mode, CommitMode::Async)
                    && self.group_committed.elapsed() < Duration::from_secs(1)))
        {
            return;
        }
        let tpl = self.group_offsets(parts);
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                if parts.is_none() {
                    self.group_behind = false;
                    self.group_committed = Instant::now();
                }
            }
            Err(e) => tracing::debug!(error = %e, "committing group offsets"),
        }
    }
}
