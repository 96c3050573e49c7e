use thiserror::Error;

/// Why a replay or an export could not be carried out.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// An output could not be written or an input read.
    #[error("replay: {0}")]
    Replay(String),
    /// An Avro export file could not be written or read.
    #[error("Avro file {path}: {reason}")]
    Archive {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A report file could not be rendered.
    #[error("report: {0}")]
    Report(#[from] sessionfold_report::ReportError),
    /// The fresh state store could not be written.
    #[error(transparent)]
    Store(#[from] sessionfold_processor::ProcessorError),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The broker edge failed.
    #[error(transparent)]
    Edge(#[from] sessionfold_edge::EdgeError),
    /// A state could not be encoded.
    #[error("encoding state: {0}")]
    Encode(#[from] sessionfold_schemas::SchemaError),
}
