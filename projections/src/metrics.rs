//! Prometheus metrics of the projections.

use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use sessionfold_edge::HttpMetrics;
use sessionfold_views::freshness::Report;

/// Every metric the projections export.
#[derive(Clone)]
pub struct Metrics {
    /// Registry served on `/metrics`.
    pub registry: Registry,
    /// Changelog records read, by outcome.
    pub records: IntCounterVec,
    /// Users held in the presence view.
    pub users: IntGauge,
    /// Imports held in the import view.
    pub imports: IntGauge,
    /// Request counts and latency by route.
    pub http: HttpMetrics,
    /// Open `/v1/stream` subscriptions.
    pub subscribers: IntGauge,
    /// Readiness and the process's own figures.
    pub gauges: sessionfold_edge::ServiceGauges,
    /// When the views last held everything the broker held (0: never).
    pub fresh_as_of: Gauge,
    /// The time of the newest change applied (0: none).
    pub newest_change: Gauge,
    /// Changelog records not yet applied, by the last look at the broker.
    pub lag: IntGauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("sessionfold_projections".into()), None)?;
        let records = sessionfold_edge::registered(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "changelog_records_total",
                    "Changelog records read, by changelog and outcome",
                ),
                &["changelog", "outcome"],
            ),
        )?;
        let users = sessionfold_edge::registered(
            &registry,
            IntGauge::new("presence_users", "Users held in the presence view"),
        )?;
        let imports = sessionfold_edge::registered(
            &registry,
            IntGauge::new("imports", "Imports held in the import view"),
        )?;
        let subscribers = sessionfold_edge::registered(
            &registry,
            IntGauge::new("stream_subscribers", "Open /v1/stream subscriptions"),
        )?;
        let fresh_as_of = sessionfold_edge::registered(
            &registry,
            Gauge::new(
                "view_fresh_as_of_timestamp_seconds",
                "The views hold every change the broker held at this time (0: not yet)",
            ),
        )?;
        let newest_change = sessionfold_edge::registered(
            &registry,
            Gauge::new(
                "view_newest_change_timestamp_seconds",
                "Time of the newest changelog record applied (0: none)",
            ),
        )?;
        let lag = sessionfold_edge::registered(
            &registry,
            IntGauge::new(
                "changelog_lag_records",
                "Changelog records not yet applied, by the last look at the broker",
            ),
        )?;
        let http = HttpMetrics::register(&registry)?;
        let gauges = sessionfold_edge::ServiceGauges::register(&registry)?;
        Ok(Metrics {
            registry,
            records,
            users,
            imports,
            http,
            subscribers,
            gauges,
            fresh_as_of,
            newest_change,
            lag,
        })
    }

    /// Sets the freshness gauges from `report`.
    pub fn freshness(&self, report: &Report) {
        let seconds = |ms: Option<i64>| ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        self.fresh_as_of.set(seconds(report.fresh_as_of));
        self.newest_change.set(seconds(report.newest_change));
        self.lag.set(
            report
                .changelog_lag
                .map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        );
    }
}
