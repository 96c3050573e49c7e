//! How fresh a view is: up to which moment it holds every change the broker
//! held, the newest change it applied, and how many records it is behind.
//!
//! The reader asks the broker for each changelog partition's end now and
//! then (a probe, stamped with the time it was sent). Once the view has
//! applied every partition up to a probe's ends, it holds everything the
//! broker held at the probe's time: that time is the view's `fresh_as_of`.
//! A reader cut off from the broker stops completing probes, so its
//! staleness grows even though no record says so. Pure: time is passed in.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use sessionfold_schemas::Millis;

/// A changelog partition: topic and partition number.
pub type Partition = (String, i32);

/// Probes waiting for the view to reach them; older ones are dropped first,
/// which only makes the answer more cautious.
const PENDING_PROBES: usize = 128;

/// One question to the broker: its partitions' ends at `at`.
#[derive(Debug, Clone)]
struct Probe {
    at: Millis,
    ends: BTreeMap<Partition, i64>,
}

/// A view's freshness, kept beside it by the changelog reader.
#[derive(Debug, Default, Clone)]
pub struct Freshness {
    /// Next offset to apply per partition.
    positions: BTreeMap<Partition, i64>,
    /// The ends of the last probe answered.
    ends: BTreeMap<Partition, i64>,
    pending: VecDeque<Probe>,
    fresh_as_of: Option<Millis>,
    newest_change: Option<Millis>,
}

/// What an answer says about its freshness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The view holds every change the broker held at this time (ms since
    /// the epoch); `None` until a first probe is reached.
    pub fresh_as_of: Option<Millis>,
    /// `now - fresh_as_of`; `None` while `fresh_as_of` is.
    pub staleness_ms: Option<Millis>,
    /// The time of the newest change applied (the changelog record's time).
    pub newest_change: Option<Millis>,
    /// Records in the changelogs not yet applied, by the last probe.
    pub changelog_lag: Option<u64>,
}

impl Report {
    /// Whether the view is further behind than `bound` (or not known to be within it).
    pub fn stale(&self, bound: Millis) -> bool {
        self.staleness_ms.is_none_or(|s| s > bound)
    }
}

impl Freshness {
    /// Nothing applied, nothing probed.
    pub fn new() -> Freshness {
        Freshness::default()
    }

    /// Records that the view has applied `partition` up to `next_offset`
    /// (exclusive), the newest of those records written at `time`.
    pub fn applied(&mut self, partition: Partition, next_offset: i64, time: Option<Millis>) {
        let at = self.positions.entry(partition).or_insert(next_offset);
        *at = (*at).max(next_offset);
        if let Some(t) = time {
            self.newest_change = Some(self.newest_change.map_or(t, |n| n.max(t)));
        }
        self.settle();
    }

    /// Records the broker's ends of every partition as asked at `at`.
    pub fn probed(&mut self, at: Millis, ends: BTreeMap<Partition, i64>) {
        self.ends = ends.clone();
        if self.pending.len() == PENDING_PROBES {
            self.pending.pop_front();
        }
        self.pending.push_back(Probe { at, ends });
        self.settle();
    }

    /// Next offset to apply per partition, as far as applied.
    pub fn positions(&self) -> &BTreeMap<Partition, i64> {
        &self.positions
    }

    /// The time of the newest change applied.
    pub fn newest_change(&self) -> Option<Millis> {
        self.newest_change
    }

    /// The freshness as of `now`.
    pub fn report(&self, now: Millis) -> Report {
        let lag = (!self.ends.is_empty()).then(|| {
            self.ends
                .iter()
                .map(|(p, end)| {
                    let at = self.positions.get(p).copied().unwrap_or(0);
                    u64::try_from(end - at).unwrap_or(0)
                })
                .sum()
        });
        Report {
            fresh_as_of: self.fresh_as_of,
            staleness_ms: self.fresh_as_of.map(|f| (now - f).max(0)),
            newest_change: self.newest_change,
            changelog_lag: lag,
        }
    }

    fn reached(&self, probe: &Probe) -> bool {
        probe
            .ends
            .iter()
            .all(|(p, end)| *end <= 0 || self.positions.get(p).is_some_and(|at| at >= end))
    }

    /// Takes every probe the positions have reached; the latest sets `fresh_as_of`.
    fn settle(&mut self) {
        let mut newest = None;
        // Ends only grow, so a later probe is reached only if the earlier ones are.
        while let Some(p) = self.pending.front() {
            if !self.reached(p) {
                break;
            }
            newest = Some(p.at);
            self.pending.pop_front();
        }
        if let Some(at) = newest {
            self.fresh_as_of = Some(self.fresh_as_of.map_or(at, |f| f.max(at)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(list: &[(&str, i32, i64)]) -> BTreeMap<Partition, i64> {
        list.iter()
            .map(|(t, p, e)| ((t.to_string(), *p), *e))
            .collect()
    }

    #[test]
    fn unknown_until_a_probe_is_reached() {
        let mut f = Freshness::new();
        assert_eq!(f.report(1_000).staleness_ms, None);
        assert!(f.report(1_000).stale(60_000));
        f.applied(("p".into(), 0), 5, Some(900));
        assert_eq!(f.report(1_000).newest_change, Some(900));
        assert_eq!(f.report(1_000).changelog_lag, None);
        f.probed(1_000, ends(&[("p", 0, 8), ("p", 1, 0)]));
        let r = f.report(1_500);
        assert_eq!((r.fresh_as_of, r.changelog_lag), (None, Some(3)));
        f.applied(("p".into(), 0), 8, Some(1_100));
        let r = f.report(1_500);
        assert_eq!(r.fresh_as_of, Some(1_000));
        assert_eq!(r.staleness_ms, Some(500));
        assert_eq!(r.changelog_lag, Some(0));
        assert!(!r.stale(500));
        assert!(r.stale(499));
    }

    #[test]
    fn a_reader_cut_off_grows_stale_even_when_caught_up() {
        let mut f = Freshness::new();
        f.applied(("p".into(), 0), 3, Some(10));
        f.probed(1_000, ends(&[("p", 0, 3)]));
        assert_eq!(f.report(1_000).staleness_ms, Some(0));
        // No probe answers after this: the broker is away.
        assert_eq!(f.report(31_000).staleness_ms, Some(30_000));
        assert_eq!(f.report(31_000).changelog_lag, Some(0));
    }

    #[test]
    fn the_latest_reached_probe_wins_and_nothing_goes_back() {
        let mut f = Freshness::new();
        f.probed(1_000, ends(&[("p", 0, 2)]));
        f.probed(2_000, ends(&[("p", 0, 4)]));
        f.probed(3_000, ends(&[("p", 0, 9)]));
        f.applied(("p".into(), 0), 5, Some(50));
        assert_eq!(f.report(3_000).fresh_as_of, Some(2_000));
        // An older record time does not move the newest change back.
        f.applied(("p".into(), 0), 9, Some(40));
        let r = f.report(3_000);
        assert_eq!((r.fresh_as_of, r.newest_change), (Some(3_000), Some(50)));
        // A position re-read from the start does not move back either.
        f.applied(("p".into(), 0), 1, None);
        assert_eq!(f.report(3_000).changelog_lag, Some(0));
    }

    #[test]
    fn many_unanswered_probes_keep_only_the_latest() {
        let mut f = Freshness::new();
        for i in 0..1_000 {
            f.probed(i, ends(&[("p", 0, i + 1)]));
        }
        f.applied(("p".into(), 0), 1_000, None);
        assert_eq!(f.report(1_000).fresh_as_of, Some(999));
    }
}
