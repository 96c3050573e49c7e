//! How large batches may grow: small while the input is caught up, so that a
//! change reaches the changelog within milliseconds; larger while the input
//! lags, so that repeated changes of one user coalesce into one store write
//! and one changelog record, and fewer batches pay the broker's round trip.
//!
//! Two sizes are kept apart. A *poll* is what the consumer's thread copies
//! out of the consumer and hands to the fold thread; a *commit* is what the
//! fold thread publishes and stores at once, one or more polls folded into
//! the same pending changes. Only polls hold input records, so they stay
//! small ([`Sizing::polls`], up to [`MAX_FACTOR`] times the base); a commit
//! holds only the users it changed, so it may grow far larger while that
//! coalesces ([`Sizing::commits`]).
//!
//! A batch that ended because the consumer had nothing more to give, or
//! because its time ran out before its count was reached (a trickle), means
//! the input is caught up: the next batch starts at the base limits, unless
//! the broker's high watermarks say another batch's worth is waiting. A batch
//! that ended full by count, or short with that much waiting, means records
//! are waiting; so does a commit cut by its time while the polls it took
//! came full (the fold runs slower than the base limits assume). The limits
//! then grow, up to [`MAX_FACTOR`] times the base. Past that a commit grows to
//! [`TRY_FACTOR`] times while the last one still wrote more than
//! [`ENOUGH`] states per record, and on up to [`COALESCING_MAX_FACTOR`]
//! times only once a commit at [`TRY_FACTOR`] coalesced more (a tenth fewer
//! states per record than one at [`MAX_FACTOR`]); if it did not, commits go
//! back to [`MAX_FACTOR`] for the rest of the backlog. Many users each seen
//! a few times in a backlog (100k users) coalesce only in large commits; a
//! million users each seen once never coalesce, and a commit of 1,280,000
//! of them would only make one sled batch and one burst of changelog records
//! that large.

use std::time::Duration;

/// How far the limits grow while the input lags, whatever the coalescing.
pub const MAX_FACTOR: u32 = 4;

/// How far commits grow while the input lags, to find out whether larger
/// ones coalesce more.
pub const TRY_FACTOR: u32 = 16;

/// How far commits grow while the input lags and larger ones keep
/// coalescing more: 128 times the base of 10,000 records is 1,280,000
/// records. A commit holds only the users it changed, so its size costs
/// memory only where it does not coalesce, and there it stops at
/// [`MAX_FACTOR`].
pub const COALESCING_MAX_FACTOR: u32 = 128;

/// States written per input record at or below which a commit is large
/// enough.
pub const ENOUGH: f64 = 0.1;

/// A larger commit pays when it writes at most this share of the states per
/// record that one at [`MAX_FACTOR`] wrote.
const PAID: f64 = 0.9;

/// The limits of the next batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    base_records: usize,
    base_wait: Duration,
    factor: u32,
    /// What a batch ended full multiplies the factor by.
    step: u32,
    /// The largest factor.
    ceiling: u32,
    /// States written per record, by factor (index: log2 of the factor),
    /// from the batches since the input last caught up.
    written: [Option<f64>; 8],
    /// Larger batches were tried in this backlog and did not pay.
    tried: bool,
    /// Larger batches were tried in this backlog and did pay.
    pays: bool,
    /// States written per record by the batch reported last.
    latest: Option<f64>,
}

impl Sizing {
    /// The polls' limits: doubling while the input lags, up to
    /// [`MAX_FACTOR`] times the base.
    pub fn polls(base_records: usize, base_wait: Duration) -> Self {
        Self::with(base_records, base_wait, 2, MAX_FACTOR)
    }

    /// The commits' limits: four times larger after each commit ended full,
    /// past [`MAX_FACTOR`] only while larger commits coalesce more, up to
    /// [`COALESCING_MAX_FACTOR`] times the base.
    pub fn commits(base_records: usize, base_wait: Duration) -> Self {
        Self::with(base_records, base_wait, 4, COALESCING_MAX_FACTOR)
    }

    fn with(base_records: usize, base_wait: Duration, step: u32, ceiling: u32) -> Self {
        Self {
            base_records,
            base_wait,
            factor: 1,
            step,
            ceiling,
            written: [None; 8],
            tried: false,
            pays: false,
            latest: None,
        }
    }

    /// Most records in the next batch.
    pub fn records(&self) -> usize {
        self.base_records.saturating_mul(self.factor as usize)
    }

    /// Longest the next batch may take before it ends.
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
            *self = Self::with(self.base_records, self.base_wait, self.step, self.ceiling);
            return;
        }
        let grown = self.factor.saturating_mul(self.step).min(self.ceiling);
        if self.factor < MAX_FACTOR {
            self.factor = grown.min(MAX_FACTOR);
            return;
        }
        if self.tried || self.factor >= self.ceiling {
            return;
        }
        if self.pays || self.factor < TRY_FACTOR {
            if self.latest.is_none_or(|r| r > ENOUGH) {
                self.factor = grown;
            }
            return;
        }
        let at = |f: u32| {
            self.written
                .get(f.trailing_zeros() as usize)
                .copied()
                .flatten()
        };
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
            self.factor = grown;
        } else {
            self.tried = true;
            self.factor = MAX_FACTOR;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut s: Sizing, n: usize, wrote: impl Fn(usize) -> usize) -> Vec<u32> {
        let mut factors = Vec::new();
        for _ in 0..n {
            let f = s.factor();
            factors.push(f);
            s.wrote(f, s.records(), wrote(s.records()));
            s.ended(false);
        }
        factors
    }

    #[test]
    fn polls_double_to_four_times_the_base_and_reset_when_caught_up() {
        let mut s = Sizing::polls(10_000, Duration::from_millis(50));
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
        // Whatever they wrote: coalescing is the commits' business.
        assert_eq!(
            run(Sizing::polls(10_000, Duration::MAX), 5, |r| r / 10),
            [1, 2, 4, 4, 4]
        );
    }

    #[test]
    fn commits_without_a_report_grow_to_sixteen_times_the_base_and_hold() {
        let mut s = Sizing::commits(10_000, Duration::from_millis(50));
        for _ in 0..10 {
            s.ended(false);
        }
        assert_eq!(
            (s.records(), s.wait()),
            (160_000, Duration::from_millis(800))
        );
        s.ended(true);
        assert_eq!(s.factor(), 1);
    }

    /// A backlog of 100k users, each as likely in any record: a commit of
    /// `r` records touches 100k × (1 − e^(−r/100k)) of them, 0.82 per
    /// record at 40,000 records, 0.16 at 640,000, 0.08 at 1,280,000.
    #[test]
    fn commits_keep_growing_while_they_coalesce_more() {
        let touched = |r: usize| (100_000.0 * (1.0 - (-(r as f64) / 100_000.0).exp())) as usize;
        assert_eq!(
            run(Sizing::commits(10_000, Duration::MAX), 7, touched),
            [1, 4, 16, 64, 128, 128, 128]
        );
    }

    /// A million users each seen once: no commit size coalesces, so after
    /// trying 16 times the base commits go back to four times it for the
    /// rest of the backlog.
    #[test]
    fn commits_of_keys_seen_once_go_back_to_four_times_the_base() {
        assert_eq!(
            run(Sizing::commits(10_000, Duration::MAX), 6, |r| r),
            [1, 4, 16, 4, 4, 4]
        );
    }

    /// A backlog of 100k users in turn, each once per 100k records: no
    /// commit up to 40,000 records coalesces, 160,000 do.
    #[test]
    fn users_in_turn_coalesce_once_commits_pass_their_number() {
        assert_eq!(
            run(Sizing::commits(10_000, Duration::MAX), 6, |r| r
                .min(100_000)),
            [1, 4, 16, 64, 128, 128]
        );
    }

    /// Once a commit writes few enough states, it grows no further;
    /// catching up forgets what was learnt.
    #[test]
    fn growth_stops_at_enough_coalescing_and_restarts_after_catching_up() {
        let mut s = Sizing::commits(10_000, Duration::from_millis(50));
        let ratios = [0.95, 0.6, 0.08, 0.05];
        let mut factors = Vec::new();
        for r in ratios {
            let f = s.factor();
            factors.push(f);
            s.wrote(f, s.records(), (s.records() as f64 * r) as usize);
            s.ended(false);
        }
        assert_eq!(factors, [1, 4, 16, 16]);
        s.ended(true);
        assert_eq!(s.factor(), 1);
        // At 16 times the base, growth waits for what a commit at four
        // times it wrote.
        s.ended(false);
        s.ended(false);
        assert_eq!(s.factor(), 16);
        s.wrote(16, 160_000, 48_000);
        s.ended(false);
        assert_eq!(s.factor(), 16, "nothing known at 4 times the base yet");
        s.wrote(4, 40_000, 38_000);
        s.ended(false);
        assert_eq!(s.factor(), 64);
    }
}
