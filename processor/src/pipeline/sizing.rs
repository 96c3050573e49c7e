//! How large a batch may grow: small while the input is caught up, so that a
//! change reaches the changelog within milliseconds; larger while the input
//! lags, so that repeated changes of one user coalesce into one store write
//! and one changelog record, and fewer batches pay the broker's round trip.
//!
//! A batch that ended because the consumer had nothing more to give, or
//! because its time ran out before its count was reached (a trickle), means
//! the input is caught up: the next batch starts at the base limits. A batch
//! that ended full by count means records are waiting: the limits double, up to [`MAX_FACTOR`] times the base. Past that a lagging
//! input tries two more doublings, up to [`TRY_FACTOR`] times, while the
//! last batch reported still wrote more than [`ENOUGH`] states per record.
//! It goes on up to [`COALESCING_MAX_FACTOR`] times only once a batch at
//! [`TRY_FACTOR`] is known to have coalesced more (a tenth fewer states per
//! record than one at [`MAX_FACTOR`]), and falls back to [`MAX_FACTOR`] for
//! the rest of the backlog if it did not. Many users each seen a few times
//! in a backlog (100k users) coalesce only in large batches; a million users
//! each seen once never coalesce, and their batches go back to
//! [`MAX_FACTOR`].

use std::time::Duration;

/// How far the limits grow while the input lags, whatever the coalescing.
pub const MAX_FACTOR: u32 = 4;

/// How far the limits grow while the input lags, to find out whether larger
/// batches coalesce more.
pub const TRY_FACTOR: u32 = 16;

/// How far the limits grow while the input lags and larger batches keep
/// coalescing more: 64 times the base of 10,000 records is 640,000 records,
/// about 80 MiB of queued input at most.
pub const COALESCING_MAX_FACTOR: u32 = 64;

/// States written per input record at or below which a batch is large enough.
pub const ENOUGH: f64 = 0.2;

/// A larger batch pays when it writes at most this share of the states per
/// record that a batch at [`MAX_FACTOR`] wrote.
const PAID: f64 = 0.9;

/// The limits of the next batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    base_records: usize,
    base_wait: Duration,
    factor: u32,
    /// States written per record, by factor (index: log2 of the factor),
    /// from the batches folded since the input last caught up.
    written: [Option<f64>; 7],
    /// Larger batches were tried in this backlog and did not pay.
    tried: bool,
    /// Larger batches were tried in this backlog and did pay.
    pays: bool,
    /// States written per record by the batch reported last (whatever its
    /// size): the report of a batch comes back from the fold thread while
    /// the next one fills, so growth does not wait for the current size's.
    latest: Option<f64>,
}

impl Sizing {
    /// Starts at the base limits.
    pub fn new(base_records: usize, base_wait: Duration) -> Self {
        Self {
            base_records,
            base_wait,
            factor: 1,
            written: [None; 7],
            tried: false,
            pays: false,
            latest: None,
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

    /// The multiple of the base limits the next batch is made at.
    pub fn factor(&self) -> u32 {
        self.factor
    }

    /// Notes what a batch made at `factor` wrote: `states` store writes for
    /// `records` input records.
    pub fn wrote(&mut self, factor: u32, records: usize, states: usize) {
        if records == 0 {
            return;
        }
        let ratio = states as f64 / records as f64;
        if let Some(slot) = self.written.get_mut(factor.trailing_zeros() as usize) {
            *slot = Some(ratio);
        }
        self.latest = Some(ratio);
    }

    /// Notes how the last batch ended: `caught_up` unless it was filled to
    /// its count.
    pub fn ended(&mut self, caught_up: bool) {
        if caught_up {
            *self = Sizing::new(self.base_records, self.base_wait);
            return;
        }
        if self.factor < MAX_FACTOR {
            self.factor *= 2;
            return;
        }
        let at = |f: u32| {
            self.written
                .get(f.trailing_zeros() as usize)
                .copied()
                .flatten()
        };
        if self.tried {
            return;
        }
        if self.pays || self.factor < TRY_FACTOR {
            if self.latest.is_none_or(|r| r > ENOUGH) {
                self.factor = (self.factor * 2).min(COALESCING_MAX_FACTOR);
            }
            return;
        }
        // Whether the larger batches paid is known once one of them is
        // reported; until then the size holds.
        let (Some(now), Some(base)) = (at(self.factor), at(MAX_FACTOR)) else {
            return;
        };
        if now <= ENOUGH {
            return;
        }
        if now <= PAID * base {
            self.pays = true;
            self.factor = (self.factor * 2).min(COALESCING_MAX_FACTOR);
        } else {
            self.tried = true;
            self.factor = MAX_FACTOR;
        }
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
        // Without a word on what the batches wrote, they are tried up to
        // 16 times the base and held there.
        for _ in 0..10 {
            s.ended(false);
        }
        assert_eq!(
            (s.records(), s.wait()),
            (160_000, Duration::from_millis(800))
        );
        s.ended(true);
        assert_eq!((s.records(), s.wait()), (10_000, Duration::from_millis(50)));
    }

    /// A backlog of 100k users, each as likely in any record: a batch of `r`
    /// records touches 100k × (1 − e^(−r/100k)) of them, 0.82 per record
    /// at 40,000 records, 0.16 at 640,000.
    #[test]
    fn batches_keep_growing_while_they_coalesce_more() {
        let mut s = Sizing::new(10_000, Duration::from_millis(50));
        let mut factors = Vec::new();
        for _ in 0..10 {
            let f = s.factor();
            factors.push(f);
            let r = s.records() as f64;
            let touched = 100_000.0 * (1.0 - (-r / 100_000.0).exp());
            s.wrote(f, s.records(), touched as usize);
            s.ended(false);
        }
        assert_eq!(factors, [1, 2, 4, 8, 16, 32, 64, 64, 64, 64]);
    }

    /// A million users each seen once: no batch size coalesces, so after
    /// trying 8 and 16 times the base the limits go back to four times it
    /// for the rest of the backlog.
    #[test]
    fn batches_of_keys_seen_once_go_back_to_four_times_the_base() {
        let mut s = Sizing::new(10_000, Duration::from_millis(50));
        let mut factors = Vec::new();
        for _ in 0..9 {
            let f = s.factor();
            factors.push(f);
            s.wrote(f, s.records(), s.records());
            s.ended(false);
        }
        assert_eq!(factors, [1, 2, 4, 8, 16, 4, 4, 4, 4]);
    }

    /// A backlog of 100k users in turn, each once per 100k records: no
    /// batch up to 40,000 records coalesces, 160,000 do.
    #[test]
    fn users_in_turn_coalesce_once_batches_pass_their_number() {
        let mut s = Sizing::new(10_000, Duration::from_millis(50));
        let mut factors = Vec::new();
        for _ in 0..9 {
            let f = s.factor();
            factors.push(f);
            s.wrote(f, s.records(), s.records().min(100_000));
            s.ended(false);
        }
        assert_eq!(factors, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
    }

    /// Once a batch writes few enough states, it grows no further; catching
    /// up forgets what was learnt.
    #[test]
    fn growth_stops_at_enough_coalescing_and_restarts_after_catching_up() {
        let mut s = Sizing::new(10_000, Duration::from_millis(50));
        let ratios = [0.95, 0.92, 0.6, 0.35, 0.18, 0.1];
        let mut factors = Vec::new();
        for r in ratios {
            let f = s.factor();
            factors.push(f);
            s.wrote(f, s.records(), (s.records() as f64 * r) as usize);
            s.ended(false);
        }
        assert_eq!(factors, [1, 2, 4, 8, 16, 16]);
        s.ended(true);
        assert_eq!(s.factor(), 1);
        // Past 16 times the base, growth waits for what such a batch wrote.
        for _ in 0..4 {
            s.ended(false);
        }
        assert_eq!(s.factor(), 16);
        s.ended(false);
        assert_eq!(s.factor(), 16);
        s.wrote(16, 160_000, 48_000);
        s.ended(false);
        assert_eq!(s.factor(), 16, "nothing known at 4 times the base yet");
        s.wrote(4, 40_000, 38_000);
        s.ended(false);
        assert_eq!(s.factor(), 32);
    }
}
