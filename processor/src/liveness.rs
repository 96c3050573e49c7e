//! Whether the processor is doing its work, told from what the group and
//! the partitions show rather than from the client's own view.
//!
//! Two failures look healthy from inside: a member that the coordinator
//! left with no partitions (or a group in which some partitions have no
//! owner at all), and a partition that is owned but never moves although
//! records wait. Both turn `/readyz` not ready; the first also makes the
//! member leave and rejoin the group, with back-off, until every input
//! partition has an owner.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The partitions of `topics` in one member's assignment, as Kafka's
/// consumer protocol encodes it (version, then topics with their
/// partitions; user data after is ignored). `None` when it does not parse.
pub fn assigned(assignment: &[u8], topics: &[&str]) -> Option<BTreeSet<(String, i32)>> {
    let mut r = Reader(assignment);
    let _version = r.i16()?;
    let mut out = BTreeSet::new();
    let n = r.i32()?;
    for _ in 0..n.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let topic = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
        let parts = r.i32()?;
        for _ in 0..parts.max(0) {
            let p = r.i32()?;
            if topics.contains(&topic.as_str()) {
                out.insert((topic.clone(), p));
            }
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// Tracks how long some input partitions have had no owner in the group.
#[derive(Debug)]
pub struct Coverage {
    grace: Duration,
    short_since: Option<Instant>,
    next_rejoin: Option<Instant>,
    backoff: Duration,
}

/// Longest wait between two rejoins.
const MAX_BACKOFF: Duration = Duration::from_secs(120);

impl Coverage {
    /// Partitions may lack an owner for `grace` (a rebalance in progress)
    /// before it counts.
    pub fn new(grace: Duration) -> Coverage {
        Coverage {
            grace,
            short_since: None,
            next_rejoin: None,
            backoff: grace,
        }
    }

    /// Records what the group's stable assignment covers.
    pub fn observe(&mut self, owned: usize, total: usize, now: Instant) {
        if owned >= total {
            self.short_since = None;
            self.backoff = self.grace;
            self.next_rejoin = None;
        } else {
            self.short_since.get_or_insert(now);
        }
    }

    /// How long partitions have lacked an owner beyond the grace period.
    pub fn short_for(&self, now: Instant) -> Option<Duration> {
        let since = self.short_since?;
        let d = now.saturating_duration_since(since);
        (d > self.grace).then_some(d)
    }

    /// Whether to leave and rejoin now; each rejoin doubles the wait for the next.
    pub fn rejoin_due(&mut self, now: Instant) -> bool {
        if self.short_for(now).is_none() || self.next_rejoin.is_some_and(|t| now < t) {
            return false;
        }
        self.next_rejoin = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }
}

/// When a partition's stored position last moved, to tell a stuck
/// partition from an idle one.
#[derive(Debug, Clone, Copy)]
pub struct Movement {
    position: i64,
    at: Instant,
}

impl Movement {
    /// A partition at `position`, seen at `now`.
    pub fn new(position: i64, now: Instant) -> Movement {
        Movement { position, at: now }
    }

    /// Notes the partition's position; a new value counts as progress.
    pub fn position(&mut self, position: i64, now: Instant) {
        if position != self.position {
            self.position = position;
            self.at = now;
        }
    }

    /// Whether the partition, with `lag` records waiting, has not moved for `after`.
    pub fn stuck(&self, lag: i64, after: Duration, now: Instant) -> bool {
        lag > 0 && now.saturating_duration_since(self.at) >= after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = vec![0, 1];
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn reads_an_assignment() {
        let b = encode(&[
            ("x.activity", &[0, 2]),
            ("other", &[1]),
            ("x.imports", &[5]),
        ]);
        let got = assigned(&b, &["x.activity", "x.imports"]).expect("parses");
        let want: BTreeSet<(String, i32)> = [
            ("x.activity".to_owned(), 0),
            ("x.activity".to_owned(), 2),
            ("x.imports".to_owned(), 5),
        ]
        .into();
        assert_eq!(got, want);
        assert_eq!(assigned(&b[..7], &["x"]), None);
        assert_eq!(assigned(&[], &["x"]), None);
    }

    #[test]
    fn rejoins_after_grace_with_growing_waits() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = Coverage::new(10 * s);
        c.observe(0, 12, t0);
        assert!(!c.rejoin_due(t0 + 5 * s));
        assert_eq!(c.short_for(t0 + 5 * s), None);
        assert!(c.rejoin_due(t0 + 11 * s));
        assert!(!c.rejoin_due(t0 + 20 * s));
        assert!(c.rejoin_due(t0 + 21 * s));
        assert!(!c.rejoin_due(t0 + 40 * s));
        assert!(c.rejoin_due(t0 + 41 * s));
        c.observe(12, 12, t0 + 42 * s);
        assert_eq!(c.short_for(t0 + 60 * s), None);
        assert!(!c.rejoin_due(t0 + 60 * s));
    }

    #[test]
    fn a_partition_is_stuck_only_with_records_waiting() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = Movement::new(10, t0);
        assert!(!p.stuck(5, 30 * s, t0 + 29 * s));
        assert!(p.stuck(5, 30 * s, t0 + 30 * s));
        assert!(!p.stuck(0, 30 * s, t0 + 60 * s));
        p.position(10, t0 + 60 * s);
        assert!(
            p.stuck(5, 30 * s, t0 + 61 * s),
            "the same position is no progress"
        );
        p.position(11, t0 + 60 * s);
        assert!(!p.stuck(5, 30 * s, t0 + 61 * s));
    }
}
