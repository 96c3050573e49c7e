//! Per-caller limits on the routes that cost the ingest more than queuing a
//! record (signing a ticket, checking one, writing an erasure): a caller
//! past its share is answered 429 with `Retry-After`, and the others are not
//! slowed down by it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Keys kept before the ones not seen for a while are dropped.
const KEYS_KEPT: usize = 100_000;

/// The routes with a limit of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/sessions/{id}/end-ticket`, per user.
    EndTicket,
    /// `POST /v1/activity/end`, per client address (a beacon carries no token).
    Beacon,
    /// `POST /v1/users/{id}/erasure`, per caller.
    Erasure,
}

/// Requests a caller may make per minute on each limited route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMinute {
    /// End tickets per user: the browser client renews one every few
    /// minutes per tab.
    pub end_tickets: u32,
    /// Session ends per client address.
    pub beacons: u32,
    /// Erasures per admin or service.
    pub erasures: u32,
}

impl Default for PerMinute {
    fn default() -> Self {
        PerMinute {
            end_tickets: 60,
            beacons: 120,
            erasures: 30,
        }
    }
}

/// The limiters of the limited routes.
pub struct Throttle {
    end_tickets: DefaultKeyedRateLimiter<String>,
    beacons: DefaultKeyedRateLimiter<String>,
    erasures: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

fn limiter(per_minute: u32) -> DefaultKeyedRateLimiter<String> {
    let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    governor::RateLimiter::keyed(Quota::per_minute(n))
}

impl Throttle {
    /// Limiters allowing `limits` per caller and minute.
    pub fn new(limits: PerMinute) -> Throttle {
        Throttle {
            end_tickets: limiter(limits.end_tickets),
            beacons: limiter(limits.beacons),
            erasures: limiter(limits.erasures),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `key` may call `route` now; otherwise how long to wait.
    pub fn check(&self, route: Route, key: &str) -> Result<(), Duration> {
        let l = match route {
            Route::EndTicket => &self.end_tickets,
            Route::Beacon => &self.beacons,
            Route::Erasure => &self.erasures,
        };
        if l.len() > KEYS_KEPT {
            l.retain_recent();
        }
        l.check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(PerMinute::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_past_its_share_waits_and_others_do_not() {
        let t = Throttle::new(PerMinute {
            end_tickets: 3,
            beacons: 1,
            erasures: 1,
        });
        for _ in 0..3 {
            assert_eq!(t.check(Route::EndTicket, "alice"), Ok(()));
        }
        let wait = t
            .check(Route::EndTicket, "alice")
            .expect_err("a fourth in the minute");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(t.check(Route::EndTicket, "bob"), Ok(()));
        // Each route counts on its own.
        assert_eq!(t.check(Route::Erasure, "alice"), Ok(()));
        assert!(t.check(Route::Erasure, "alice").is_err());
        assert_eq!(t.check(Route::Beacon, "203.0.113.1"), Ok(()));
    }
}
