//! Prometheus metrics of the projections.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sessionfold_edge::HttpMetrics;

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
        })
    }
}
