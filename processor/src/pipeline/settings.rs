//! What the loop is told (its settings) and what it tells the HTTP surface
//! (its readiness).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sessionfold_fold::{ImportConfig, PresenceConfig};
use sessionfold_schemas::{Millis, Topics};

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
    /// Import rules.
    pub imports: ImportConfig,
    /// Longest a change that only refreshes an active session's last
    /// activity is held back before it is stored and published (0: never).
    pub activity_resolution: Millis,
    /// Interval of the wall-clock expiry tick.
    pub tick: Duration,
    /// Most records folded per batch.
    pub batch_max: usize,
    /// Static group membership id: a restart with the same id takes over at
    /// once instead of waiting for the old member's session to time out.
    pub instance_id: Option<String>,
    /// Longest a batch waits to fill up.
    pub batch_wait: Duration,
    /// Rebuild a partition whose local state is damaged from the changelog,
    /// instead of stopping.
    pub rebuild_damaged: bool,
    /// The group's session timeout: a member silent this long is dropped.
    pub session_timeout: Duration,
    /// Interval of the member's heartbeats to the coordinator.
    pub heartbeat_interval: Duration,
    /// An owned partition with records waiting that has not moved for this
    /// long counts as stuck.
    pub stuck_after: Duration,
    /// Whether the group watchdog asks the coordinator to describe the group.
    pub describe_group: bool,
    /// Threads that fold a batch's partitions side by side (at least 1).
    pub fold_threads: usize,
    /// Fewest queued records for which a batch is folded on several threads.
    pub fold_parallel_from: usize,
    /// Whether warm copies of the partitions owned elsewhere are kept here.
    pub standby: bool,
    /// Longest the warm copies of an instance that owns nothing may be
    /// behind for it to be ready.
    pub standby_ready_within: Duration,
}

/// What the HTTP surface reports about the loop.
#[derive(Default)]
pub struct Status {
    /// True once the loop is consuming and no partition is being restored.
    pub running: AtomicBool,
    /// True once the group has given this instance an assignment (maybe empty).
    pub joined: AtomicBool,
    /// Partitions being restored or loaded now.
    pub restoring: AtomicUsize,
    /// Seconds some input partitions have had no owner in the group, past
    /// the grace period (0: all owned).
    pub unowned_secs: AtomicU64,
    /// Owned partitions with records waiting that do not move.
    pub stuck: AtomicUsize,
    /// Seconds the warm copies of an instance that owns nothing are behind,
    /// past the bound (0: within it, or the instance owns partitions).
    pub standby_behind_secs: AtomicU64,
}

impl Status {
    /// `None` when ready; otherwise why not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.running.load(Ordering::SeqCst) {
            return Some("starting: joining the group or restoring partitions".into());
        }
        let unowned = self.unowned_secs.load(Ordering::SeqCst);
        if unowned > 0 {
            return Some(format!(
                "input partitions without an owner in the group for {unowned} s; rejoining"
            ));
        }
        let behind = self.standby_behind_secs.load(Ordering::SeqCst);
        if behind > 0 {
            return Some(format!(
                "owning no partition, and the warm copies of the others are {behind} s behind their changelogs"
            ));
        }
        let stuck = self.stuck.load(Ordering::SeqCst);
        if stuck > 0 {
            return Some(format!(
                "{stuck} owned partition(s) with records waiting make no progress"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_owning_nothing_is_ready_only_while_its_copies_are_fresh() {
        let status = Status::default();
        status.running.store(true, Ordering::SeqCst);
        assert_eq!(status.not_ready(), None);
        status.standby_behind_secs.store(12, Ordering::SeqCst);
        assert_eq!(
            status.not_ready().as_deref(),
            Some(
                "owning no partition, and the warm copies of the others are 12 s behind their changelogs"
            )
        );
        status.standby_behind_secs.store(0, Ordering::SeqCst);
        assert_eq!(status.not_ready(), None);
    }
}
