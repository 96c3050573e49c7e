//! Topic names, derived from one configurable prefix.

/// The topic names of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Activity events, keyed by user_id.
    pub activity: String,
    /// Import events, keyed by import_id.
    pub imports: String,
    /// Presence changelog (compacted), keyed by user_id.
    pub presence: String,
    /// Import ownership changelog (compacted), keyed by import_id.
    pub import_ownership: String,
    /// Records that could not be decoded or applied.
    pub dead_letter: String,
}

impl Topics {
    /// Names every topic under `prefix`.
    pub fn new(prefix: &str) -> Topics {
        Topics {
            activity: format!("{prefix}.activity"),
            imports: format!("{prefix}.imports"),
            presence: format!("{prefix}.presence"),
            import_ownership: format!("{prefix}.import-ownership"),
            dead_letter: format!("{prefix}.dead-letter"),
        }
    }
}
