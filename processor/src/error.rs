use thiserror::Error;

/// What can stop the processor (bad records never do: they are dead-lettered).
#[derive(Debug, Error)]
pub enum ProcessorError {
    /// The local store failed.
    #[error("state store, {what}: {source}")]
    Store {
        /// What was being done.
        what: &'static str,
        /// sled's error.
        #[source]
        source: Box<sled::Error>,
    },
    /// A damaged store directory could not be moved aside.
    #[error("moving the damaged store {path} aside: {source}")]
    MoveAside {
        /// The store directory.
        path: String,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// A stored state no longer decodes.
    #[error("stored state of partition {partition} does not decode: {reason}")]
    CorruptState {
        /// Input partition.
        partition: i32,
        /// Decoder's message.
        reason: String,
    },
    /// A thread of the loop could not start or stopped abnormally.
    #[error("processing thread: {0}")]
    Thread(String),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The broker edge failed.
    #[error(transparent)]
    Edge(#[from] sessionfold_edge::EdgeError),
    /// A state could not be encoded.
    #[error("encoding state: {0}")]
    Encode(#[from] sessionfold_schemas::SchemaError),
    /// A partition could not be restored from its changelog.
    #[error("restoring partition {partition}: {reason}")]
    Restore {
        /// Input partition.
        partition: i32,
        /// What went wrong.
        reason: String,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The processing thread died.
    #[error("processing thread: {0}")]
    Worker(String),
    /// A changelog or dead-letter record was not delivered.
    #[error("delivering to {topic}: {reason}")]
    Delivery {
        /// Target topic.
        topic: String,
        /// Broker's answer.
        reason: String,
    },
}

impl ProcessorError {
    pub(crate) fn store(what: &'static str, e: sled::Error) -> Self {
        ProcessorError::Store {
            what,
            source: Box::new(e),
        }
    }
}
