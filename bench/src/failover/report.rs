//! The failover bench's section of BENCHMARKS.md and its keys.

use serde_json::{Value, json};

use super::{FailoverRun, RATE};
use crate::steady::report::{Spread, spread};

/// Nearest-rank 99th percentile.
fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = (v.len() as f64 * 0.99).ceil() as usize;
    v.get(rank.saturating_sub(1)).copied().unwrap_or(f64::NAN)
}

impl FailoverRun {
    /// The section of BENCHMARKS.md.
    pub fn markdown(&self, command: &str, date: &str) -> String {
        let row = |what: &str, s: Spread, p: f64| {
            format!(
                "| {what} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                s.min, s.median, p, s.max
            )
        };
        let mut md = format!(
            "## Failover\n\nMeasured {date} with `{command}` on Apache Kafka: {} users with a session each in 6 activity partitions, two processor members (default session timeout 6 s, `--heartbeat-interval 500ms`) and page views at {RATE}/s throughout. Each round starts a member on an empty store (a pod on a new node), waits until both own partitions (and, with standbys, the new member's copies are current), then kills the older member with SIGKILL. The gap is, over the dead member's activity partitions, the longest time between their last changelog record before the kill and their first after it, less the session timeout: the time the group took to act on the loss plus the takeover (below zero when the group, which counts the timeout from the dead member's last heartbeat, acted sooner). {} kills each way.\n\n| gap beyond the session timeout, ms | min | median | p99 | max |\n|---|---|---|---|---|\n",
            self.users,
            self.standby.gaps.len()
        );
        md.push_str(&row(
            "from warm copies (`--standby-replicas 1`)",
            spread(self.standby.gaps.clone()),
            p99(self.standby.gaps.clone()),
        ));
        md.push_str(&row(
            "restoring from the changelog (no standbys)",
            spread(self.cold.gaps.clone()),
            p99(self.cold.gaps.clone()),
        ));
        let records = spread(self.cold.records.clone());
        let rate = spread(self.cold.records_per_s.clone());
        md.push_str(&format!(
            "\nA full restore read {:.0} changelog records per kill (median), at {:.0} records/s per partition (min {:.0}, max {:.0}); a takeover from warm copies read {:.0} (median), the tail written since the copies were last current.\n",
            records.median,
            rate.median,
            rate.min,
            rate.max,
            spread(self.standby.records.clone()).median
        ));
        crate::sections::wrap("failover", &md)
    }

    /// The `failover` key of bench-results.json.
    pub fn keys(&self) -> Value {
        json!({
            "users": self.users,
            "kills": self.standby.gaps.len(),
            "standby_gap_p99_ms": p99(self.standby.gaps.clone()),
            "standby_gap_median_ms": spread(self.standby.gaps.clone()).median,
            "full_restore_gap_ms": spread(self.cold.gaps.clone()).median,
            "full_restore_gap_max_ms": spread(self.cold.gaps.clone()).max,
            "restore_records_per_s": spread(self.cold.records_per_s.clone()).median,
        })
    }
}
