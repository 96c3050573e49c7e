//! How large a batch may grow: small while the input is caught up, so that a
//! change reaches the changelog within milliseconds; larger while the input
//! lags, so that repeated changes of one user coalesce into one store write
//! and one changelog record, and fewer batches pay the broker's round trip.
//!
//! A batch that ended because the consumer had nothing more to give means
//! the input is caught up: the next batch starts at the base limits. A batch
//! that ended full (by count or by time) means records are waiting: the
//! limits double, up to [`MAX_FACTOR`] times the base.

use std::time::Duration;

/// The most the base limits are multiplied by while the input lags. Past
/// 4 the store writes per event barely fall, while a batch's states and
/// records in flight (held until acknowledged) keep growing the memory.
pub const MAX_FACTOR: u32 = 4;

/// The limits of the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    base_records: usize,
    base_wait: Duration,
    factor: u32,
}

impl Sizing {
    /// Starts at the base limits.
    pub fn new(base_records: usize, base_wait: Duration) -> Self {
        Self {
            base_records,
            base_wait,
            factor: 1,
        }
    }

    /// Most records in the next batch.
    pub fn records(&self) -> usize {
        self.base_records.saturating_mul(self.factor as usize)
    }

    /// Longest the next batch may fold before it is committed.
    pub fn wait(&self) -> Duration {
        self.base_wait.saturating_mul(self.factor)
    }

    /// Notes how the last batch ended: `caught_up` when the consumer had no
    /// record waiting.
    pub fn ended(&mut self, caught_up: bool) {
        self.factor = if caught_up {
            1
        } else {
            (self.factor * 2).min(MAX_FACTOR)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_grow_while_lagging_and_reset_when_caught_up() {
        let mut s = Sizing::new(10_000, Duration::from_millis(50));
        assert_eq!((s.records(), s.wait()), (10_000, Duration::from_millis(50)));
        s.ended(false);
        assert_eq!(
            (s.records(), s.wait()),
            (20_000, Duration::from_millis(100))
        );
        for _ in 0..10 {
            s.ended(false);
        }
        assert_eq!(
            (s.records(), s.wait()),
            (40_000, Duration::from_millis(200))
        );
        s.ended(true);
        assert_eq!((s.records(), s.wait()), (10_000, Duration::from_millis(50)));
    }
}
