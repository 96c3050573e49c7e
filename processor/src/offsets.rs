//! Where each input partition's next record must be, to tell a repeat from
//! news and to catch a broker that skips records.
//!
//! A record below the expected offset is a re-delivery. A record beyond it
//! means records were skipped (tansu 0.6.0 does this when a fetch starts
//! inside a record batch): the reader seeks back, twice as far each time,
//! until the expected record comes; only when even that cannot reach it (the
//! records were deleted) is the gap accepted. Pure bookkeeping, no I/O.

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
}

/// The first seek back goes this far.
const FIRST_REWIND: i64 = 64;

impl OffsetTracker {
    /// A partition whose next record is at `next` (`None`: not known yet).
    pub fn at(next: Option<i64>) -> OffsetTracker {
        OffsetTracker {
            expected: next,
            rewind: None,
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
            Some(want) if offset < want => return Verdict::Repeat,
            Some(want) if offset == want => Verdict::Next,
            Some(want) => {
                let back = self.rewind.map_or(FIRST_REWIND, |b| b * 2);
                if back <= 2 * want.max(1) {
                    self.rewind = Some(back);
                    return Verdict::SeekBack((want - back).max(0));
                }
                Verdict::GapAccepted { expected: want }
            }
        };
        self.expected = Some(offset + 1);
        self.rewind = None;
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
    fn a_gap_that_no_seek_can_reach_is_accepted() {
        let mut t = OffsetTracker::at(Some(10));
        assert_eq!(t.observe(50), Verdict::GapAccepted { expected: 10 });
        assert_eq!(t.observe(51), Verdict::Next);
        let mut t = OffsetTracker::at(Some(100));
        assert_eq!(t.observe(150), Verdict::SeekBack(36));
        assert_eq!(t.observe(150), Verdict::SeekBack(0));
        assert_eq!(t.observe(150), Verdict::GapAccepted { expected: 100 });
    }
}
