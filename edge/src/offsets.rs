//! Where each input partition's next record must be, to tell a repeat from
//! news and to catch a broker that skips records.
//!
//! A record below the expected offset is a re-delivery. A record beyond it
//! means records were skipped (tansu 0.6.0 does this when a fetch starts
//! inside a record batch): the reader seeks back, twice as far each time,
//! until the expected record comes. The gap is accepted only when the
//! records are not there: the broker, read from before them, went straight
//! past (deleted, or compacted away on a changelog), or even a read from
//! offset 0 did not bring them. Pure bookkeeping, no I/O.
//!
//! On a compacted changelog records are missing anywhere by design; only a
//! read's first records are judged there ([`OffsetTracker::first_at`]),
//! because a broker skips only where a fetch starts.

/// What to do with a record at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next record, or the first one seen: fold it.
    Next,
    /// Already folded: drop it.
    Repeat,
    /// Records before it were skipped: seek back to this offset.
    SeekBack(i64),
    /// Records are missing for good (deleted): fold it, after `expected`.
    GapAccepted {
        /// The offset that was expected.
        expected: i64,
    },
}

/// The offset bookkeeping of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffsetTracker {
    expected: Option<i64>,
    rewind: Option<i64>,
    /// A record before the expected one came since the last seek back:
    /// the broker reads on from there without skipping.
    before: bool,
    /// Judge only until the first record is taken (a compacted log).
    first_only: bool,
}

/// The first seek back goes this far.
const FIRST_REWIND: i64 = 64;

impl OffsetTracker {
    /// A partition whose next record is at `next` (`None`: not known yet).
    pub fn at(next: Option<i64>) -> OffsetTracker {
        OffsetTracker {
            expected: next,
            rewind: None,
            before: false,
            first_only: false,
        }
    }

    /// A read of a compacted log starting at `next` (`None`: at its
    /// beginning, which no broker skips into): judges the records until the
    /// first one to take, and takes every record after it.
    pub fn first_at(next: Option<i64>) -> OffsetTracker {
        OffsetTracker {
            first_only: true,
            ..OffsetTracker::at(next)
        }
    }

    /// The offset the next record must have, once known.
    pub fn expected(&self) -> Option<i64> {
        self.expected
    }

    /// Judges the record at `offset`; a record to fold moves the expectation past it.
    pub fn observe(&mut self, offset: i64) -> Verdict {
        let verdict = match self.expected {
            None => Verdict::Next,
            Some(want) if offset < want => {
                self.before |= self.rewind.is_some();
                return Verdict::Repeat;
            }
            Some(want) if offset == want => Verdict::Next,
            Some(want) => {
                // Sought back far enough to read from before the gap, or
                // already from the very start: the records are not there.
                let from_start = self.rewind.is_some_and(|b| want - b <= 0);
                if self.before || from_start {
                    Verdict::GapAccepted { expected: want }
                } else {
                    let back = self.rewind.map_or(FIRST_REWIND, |b| b * 2);
                    self.rewind = Some(back);
                    return Verdict::SeekBack((want - back).max(0));
                }
            }
        };
        self.expected = (!self.first_only).then_some(offset + 1);
        self.rewind = None;
        self.before = false;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_records_and_repeats() {
        let mut t = OffsetTracker::at(Some(10));
        assert_eq!(t.observe(9), Verdict::Repeat);
        assert_eq!(t.observe(10), Verdict::Next);
        assert_eq!(t.observe(11), Verdict::Next);
        assert_eq!(t.observe(5), Verdict::Repeat);
        let mut fresh = OffsetTracker::at(None);
        assert_eq!(fresh.observe(42), Verdict::Next);
        assert_eq!(fresh.observe(43), Verdict::Next);
    }

    #[test]
    fn a_skip_seeks_back_further_each_time_until_the_record_comes() {
        let mut t = OffsetTracker::at(Some(1000));
        assert_eq!(t.observe(1006), Verdict::SeekBack(936));
        assert_eq!(t.observe(1003), Verdict::SeekBack(872));
        assert_eq!(t.observe(1000), Verdict::Next);
        // After the expected record came, the next skip starts small again.
        assert_eq!(t.observe(1005), Verdict::SeekBack(937));
    }

    #[test]
    fn a_skip_near_the_start_seeks_back_to_it() {
        // A restart at a held-back heartbeat early in a partition, inside
        // the batch of records tansu skips: the records come from offset 0.
        let mut t = OffsetTracker::at(Some(11));
        assert_eq!(t.observe(14), Verdict::SeekBack(0));
        for o in 0..11 {
            assert_eq!(t.observe(o), Verdict::Repeat);
        }
        assert_eq!(t.observe(11), Verdict::Next);
    }

    #[test]
    fn a_gap_read_across_from_before_it_is_accepted() {
        // Compacted away: read from before, the broker goes straight past.
        let mut t = OffsetTracker::at(Some(500));
        assert_eq!(t.observe(520), Verdict::SeekBack(436));
        assert_eq!(t.observe(440), Verdict::Repeat);
        assert_eq!(t.observe(499), Verdict::Repeat);
        assert_eq!(t.observe(520), Verdict::GapAccepted { expected: 500 });
        assert_eq!(t.observe(521), Verdict::Next);
        // A later skip seeks back again.
        assert_eq!(t.observe(530), Verdict::SeekBack(458));
    }

    #[test]
    fn a_compacted_read_judges_only_its_start() {
        let mut t = OffsetTracker::first_at(Some(100));
        assert_eq!(t.observe(107), Verdict::SeekBack(36));
        assert_eq!(t.observe(98), Verdict::Repeat);
        assert_eq!(t.observe(100), Verdict::Next);
        // Compaction's gaps after the start are taken as they come.
        assert_eq!(t.observe(140), Verdict::Next);
        assert_eq!(t.observe(141), Verdict::Next);
        let mut fresh = OffsetTracker::first_at(None);
        assert_eq!(fresh.observe(5), Verdict::Next);
        assert_eq!(fresh.observe(90), Verdict::Next);
    }

    #[test]
    fn a_gap_that_no_seek_can_reach_is_accepted() {
        let mut t = OffsetTracker::at(Some(10));
        assert_eq!(t.observe(50), Verdict::SeekBack(0));
        assert_eq!(t.observe(50), Verdict::GapAccepted { expected: 10 });
        assert_eq!(t.observe(51), Verdict::Next);
        let mut t = OffsetTracker::at(Some(100));
        assert_eq!(t.observe(150), Verdict::SeekBack(36));
        assert_eq!(t.observe(150), Verdict::SeekBack(0));
        assert_eq!(t.observe(150), Verdict::GapAccepted { expected: 100 });
    }
}
