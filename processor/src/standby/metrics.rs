//! What the warm standbys tell Prometheus.

use prometheus::{GaugeVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// The standby metrics, beside the processor's own.
#[derive(Clone)]
pub struct StandbyMetrics {
    /// Changelog records a copy is behind, per input partition.
    pub lag_records: IntGaugeVec,
    /// Seconds since the latest look at a changelog partition's end that a
    /// copy has reached, per input partition.
    pub lag_seconds: GaugeVec,
    /// Partitions kept warm here.
    pub partitions: IntGauge,
    /// Changelog records applied to copies.
    pub records: IntCounter,
}

impl StandbyMetrics {
    /// Registers the standby metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<StandbyMetrics, prometheus::Error> {
        let labels = &["topic", "partition"];
        Ok(StandbyMetrics {
            lag_records: sessionfold_edge::registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "standby_lag_records",
                        "Changelog records a warm copy of a partition not owned here is behind",
                    ),
                    labels,
                ),
            )?,
            lag_seconds: sessionfold_edge::registered(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "standby_lag_seconds",
                        "Age of the latest look at its changelog partition's end that a warm copy has reached (a look every second; 0 at the end)",
                    ),
                    labels,
                ),
            )?,
            partitions: sessionfold_edge::registered(
                registry,
                IntGauge::new("standby_partitions", "Input partitions kept warm here"),
            )?,
            records: sessionfold_edge::registered(
                registry,
                IntCounter::new(
                    "standby_records_total",
                    "Changelog records applied to warm copies",
                ),
            )?,
        })
    }
}
