//! Errors of report rendering.

use thiserror::Error;

/// Why a report file could not be produced.
#[derive(Debug, Error)]
pub enum ReportError {
    /// A CSV table failed to serialize.
    #[error("writing {name}: {source}")]
    Csv {
        /// The table.
        name: &'static str,
        /// The cause.
        source: csv::Error,
    },
    /// The JSON report failed to serialize.
    #[error("writing report.json: {0}")]
    Json(serde_json::Error),
    /// A chart failed to draw.
    #[error("drawing the {chart} chart: {reason}")]
    Chart {
        /// The chart.
        chart: &'static str,
        /// What plotters said.
        reason: String,
    },
    /// A Parquet table failed to write.
    #[error("writing Parquet: {0}")]
    Parquet(String),
}
