//! The steady-state figures: per round, per run (min, median, max over the
//! rounds), as `bench-results.json` keys and a section of BENCHMARKS.md.

use serde::Serialize;
use serde_json::{Value, json};

use super::Plan;

/// Tiers in the order of [`Round::cpu_ns`].
pub const TIERS: [&str; 5] = [
    "ingest",
    "processor",
    "projections",
    "broker",
    "load generator",
];

/// What one measured window saw.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Length, seconds.
    pub seconds: f64,
    /// Events the ingest accepted.
    pub events: f64,
    /// Of which heartbeats.
    pub heartbeats: f64,
    /// Requests the ingest accepted.
    pub requests: f64,
    /// Input records the processor folded.
    pub folded: f64,
    /// Presence changelog records the processor wrote.
    pub changelog_records: f64,
    /// States it wrote to its store.
    pub store_writes: f64,
    /// Changelog records the projections decoded.
    pub decoded: f64,
    /// CPU nanoseconds per tier (see [`TIERS`]).
    pub cpu_ns: [f64; 5],
    /// How long each probe's change took to show, ms.
    pub freshness_ms: Vec<f64>,
    /// The processor's lag, sampled twice a second, records.
    pub lag_records: Vec<f64>,
}

impl Round {
    fn per_event(&self, tier: usize) -> f64 {
        self.cpu_ns[tier] / 1000.0 / self.events.max(1.0)
    }

    fn rate(&self) -> f64 {
        self.events / self.seconds.max(1e-9)
    }
}

/// min, median, max.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (lower middle).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

/// Min, median and max of `v`.
pub fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(f64::total_cmp);
    let at = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    Spread {
        min: at(0),
        median: at(v.len().saturating_sub(1) / 2),
        max: at(v.len().saturating_sub(1)),
    }
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * 99).div_ceil(100).max(1);
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// One steady run: a broker and a number of users.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyRun {
    /// Online users.
    pub users: usize,
    /// Each user's heartbeat interval, seconds.
    pub heartbeat_interval_s: f64,
    /// Seconds measured on the batched path (all rounds).
    pub duration_s: f64,
    /// The broker.
    pub broker: String,
    /// The processor's extra flags.
    pub processor_args: Vec<String>,
    /// Per figure, over the rounds.
    pub figures: Vec<(String, Spread)>,
    /// The rounds on the batched path.
    pub rounds: Vec<Round>,
    /// The round on the one-event-per-request path.
    pub single: Round,
    /// Resident memory per online user (above the empty process), bytes.
    pub processor_bytes_per_session: f64,
    /// See `processor_bytes_per_session`.
    pub projections_bytes_per_session: f64,
}

impl SteadyRun {
    /// The figures of a run's rounds.
    pub fn of(
        plan: &Plan,
        broker: &str,
        idle_ns: [f64; 5],
        rounds: Vec<Round>,
        single: Round,
        (processor_bytes, projections_bytes): (f64, f64),
    ) -> SteadyRun {
        let users = plan.users as f64;
        let over = |f: &dyn Fn(&Round) -> f64| spread(rounds.iter().map(f).collect());
        // A tier's cost is what it takes idle (one instance) and what each
        // event adds; a million users send (1e6 / users) times the events.
        let marginal = |r: &Round, t: usize| {
            (r.cpu_ns[t] - idle_ns[t] * r.seconds).max(0.0) / 1000.0 / r.events.max(1.0)
        };
        let cores = |r: &Round, tiers: &[usize]| {
            tiers
                .iter()
                .map(|&t| marginal(r, t) / 1e6 * r.rate() * 1e6 / users + idle_ns[t] / 1e9)
                .sum::<f64>()
        };
        let lag_ms = |r: &Round| p99(r.lag_records.clone()) / r.rate().max(1e-9) * 1000.0;
        let mut figures: Vec<(String, Spread)> = vec![
            ("events_per_sec".into(), over(&|r| r.rate())),
            (
                "changelog_records_per_heartbeat".into(),
                over(&|r| r.changelog_records / r.heartbeats.max(1.0)),
            ),
            (
                "store_writes_per_heartbeat".into(),
                over(&|r| r.store_writes / r.heartbeats.max(1.0)),
            ),
            (
                "projections_records_per_event".into(),
                over(&|r| r.decoded / r.events.max(1.0)),
            ),
            (
                "ingest_cpu_us_per_event_batched".into(),
                over(&|r| r.per_event(0)),
            ),
            (
                "processor_cpu_us_per_event".into(),
                over(&|r| r.per_event(1)),
            ),
            (
                "projections_cpu_us_per_event".into(),
                over(&|r| r.per_event(2)),
            ),
            ("broker_cpu_us_per_event".into(), over(&|r| r.per_event(3))),
            ("load_cpu_us_per_event".into(), over(&|r| r.per_event(4))),
            (
                "freshness_p99_ms".into(),
                over(&|r| p99(r.freshness_ms.clone())),
            ),
            ("processor_lag_p99_ms".into(), over(&lag_ms)),
            (
                "processor_lag_p99_records".into(),
                over(&|r| p99(r.lag_records.clone())),
            ),
        ];
        for (i, tier) in TIERS.iter().enumerate().take(4) {
            figures.push((
                format!("{tier}_marginal_cpu_us_per_event"),
                over(&|r| marginal(r, i)),
            ));
            figures.push((format!("{tier}_idle_cores"), spread(vec![idle_ns[i] / 1e9])));
            figures.push((
                format!("{tier}_cores_per_million_online"),
                over(&|r| cores(r, &[i])),
            ));
        }
        figures.push((
            "cores_per_million_online".into(),
            over(&|r| cores(r, &[0, 1, 2, 3])),
        ));
        let single_us = single.cpu_ns[0] / 1000.0 / single.requests.max(1.0);
        figures.push((
            "ingest_cpu_us_per_request_single".into(),
            spread(vec![single_us]),
        ));
        SteadyRun {
            users: plan.users,
            heartbeat_interval_s: plan.interval.as_secs_f64(),
            duration_s: rounds.iter().map(|r| r.seconds).sum(),
            broker: broker.to_owned(),
            processor_args: plan.processor_args.clone(),
            figures,
            rounds,
            single,
            processor_bytes_per_session: processor_bytes,
            projections_bytes_per_session: projections_bytes,
        }
    }

    /// The flat keys of `bench-results.json` (medians).
    pub fn keys(&self) -> Value {
        let mut v = json!({
            "users": self.users,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "duration_s": self.duration_s,
            "broker": self.broker,
            "processor_bytes_per_session": self.processor_bytes_per_session,
            "projections_bytes_per_session": self.projections_bytes_per_session,
        });
        for (name, s) in &self.figures {
            v[name] = json!(s.median);
        }
        v
    }

    /// The run's table.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "\n### {} users on {}, heartbeats every {} s{}\n\n{} rounds of {:.0} s on the batched path; one of {:.0} s with one event per request.\n\n| figure | min | median | max |\n|---|---:|---:|---:|\n",
            self.users,
            self.broker,
            self.heartbeat_interval_s,
            if self.processor_args.is_empty() {
                String::new()
            } else {
                format!(", processor `{}`", self.processor_args.join(" "))
            },
            self.rounds.len(),
            self.duration_s / self.rounds.len().max(1) as f64,
            self.single.seconds,
        );
        for (name, s) in &self.figures {
            md.push_str(&format!(
                "| {name} | {:.3} | {:.3} | {:.3} |\n",
                s.min, s.median, s.max
            ));
        }
        md.push_str(&format!(
            "| processor bytes per online user | | {:.0} | |\n| projections bytes per online user | | {:.0} | |\n",
            self.processor_bytes_per_session, self.projections_bytes_per_session
        ));
        md
    }
}

/// The steady-state section, between markers so that other runs keep it.
pub fn section(runs: &[SteadyRun], command: &str, date: &str) -> String {
    let mut md = format!(
        "## Steady state\n\nMeasured {date} with `{command}`. Every online user heartbeats once per interval through the ingest (a gateway posting its users' events in batches of up to 1000); per thousand events, {} are page changes and {} closed tabs, each followed at once by a new session; the rest are heartbeats on the page held. CPU is each process's run time from `/proc/PID/task/*/schedstat` (nanoseconds) over the round; the load generator and the probes run in the benchmark's own process, counted apart. Freshness is a probe user's page change or closed tab, posted with `ack=broker`, until the projections show it. A tier's idle cost is its CPU with the services up and no load (scraped as in a round); its marginal cost per event is its CPU in a round less that, per event; cores per million online users are the idle cost of one instance of each tier plus the marginal cost at a million users' event rate, scaled linearly from the users measured.\n",
        super::load::PAGE_CHANGES_PER_MILLE,
        super::load::CLOSES_PER_MILLE,
    );
    for r in runs {
        md.push_str(&r.markdown());
    }
    crate::sections::wrap("steady", &md)
}

/// `steady` (the largest run on Apache Kafka, else the largest) and
/// `steady_runs` into the results object `json`.
pub fn into_json(json: &mut Value, runs: &[SteadyRun]) {
    let on_kafka = runs.iter().filter(|r| r.broker.contains("Kafka"));
    let largest = on_kafka
        .max_by_key(|r| r.users)
        .or_else(|| runs.iter().max_by_key(|r| r.users));
    if let Some(r) = largest {
        json["steady"] = r.keys();
    }
    json["steady_runs"] = Value::Array(runs.iter().map(SteadyRun::keys).collect());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_percentiles_are_taken_by_rank() {
        let s = spread(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(p99((1..=200).map(f64::from).collect()), 198.0);
    }
}
