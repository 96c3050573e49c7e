//! Online users over the last hour, one point a minute, sampled by the
//! projections from the live counts: what the dashboard's chart draws.

use std::collections::VecDeque;

use serde::Serialize;
use sessionfold_schemas::Millis;

const MINUTE: Millis = 60_000;

/// One minute of the chart: the most users online at any sample in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the minute.
    pub minute: String,
    /// Most users online in that minute.
    pub online: usize,
}

/// The last `minutes` minutes of online counts.
#[derive(Debug, Clone)]
pub struct OnlineHistory {
    minutes: usize,
    points: VecDeque<(Millis, usize)>,
}

impl OnlineHistory {
    /// Keeps `minutes` minutes.
    pub fn new(minutes: usize) -> OnlineHistory {
        OnlineHistory {
            minutes: minutes.max(1),
            points: VecDeque::new(),
        }
    }

    /// Records `online` users at `now`; samples within one minute keep the peak.
    pub fn sample(&mut self, now: Millis, online: usize) {
        let minute = now.div_euclid(MINUTE) * MINUTE;
        match self.points.back_mut() {
            Some((m, peak)) if *m == minute => *peak = (*peak).max(online),
            Some((m, _)) if *m > minute => {}
            _ => self.points.push_back((minute, online)),
        }
        let oldest = minute - (self.minutes as Millis - 1) * MINUTE;
        while self.points.front().is_some_and(|(m, _)| *m < oldest) {
            self.points.pop_front();
        }
    }

    /// The minutes recorded, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.points
            .iter()
            .map(|(m, n)| Point {
                minute: crate::view::rfc3339(*m),
                online: *n,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_keeps_its_peak_and_the_hour_rolls_on() {
        let t0 = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE;
        let mut h = OnlineHistory::new(3);
        h.sample(t0, 2);
        h.sample(t0 + 10_000, 5);
        h.sample(t0 + 50_000, 1);
        h.sample(t0 + MINUTE, 4);
        h.sample(t0 + 3 * MINUTE + 1, 7);
        h.sample(t0 + 2 * MINUTE, 9);
        let online: Vec<usize> = h.points().iter().map(|p| p.online).collect();
        assert_eq!(
            online,
            [4, 7],
            "the oldest minute fell out; a late sample is dropped"
        );
        assert_eq!(h.points()[1].minute, crate::view::rfc3339(t0 + 3 * MINUTE));
    }
}
