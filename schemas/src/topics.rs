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
    /// Users who asked to be forgotten (compacted, kept forever), keyed by user_id.
    pub erasures: String,
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
            erasures: format!("{prefix}.erasures"),
        }
    }
}

/// One of the two event streams: its input topic and its changelog belong
/// together, with the same partition count and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// Activity events, folded into presence.
    Activity,
    /// Import events, folded into import ownership.
    Imports,
}

impl Stream {
    /// Both streams.
    pub const ALL: [Stream; 2] = [Stream::Activity, Stream::Imports];

    /// The input topic.
    pub fn input(self, t: &Topics) -> &str {
        match self {
            Stream::Activity => &t.activity,
            Stream::Imports => &t.imports,
        }
    }

    /// The changelog topic.
    pub fn changelog(self, t: &Topics) -> &str {
        match self {
            Stream::Activity => &t.presence,
            Stream::Imports => &t.import_ownership,
        }
    }

    /// The stream whose input topic is `topic`.
    pub fn of_input(t: &Topics, topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.input(t) == topic)
    }

    /// The stream whose changelog topic is `topic`.
    pub fn of_changelog(t: &Topics, topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.changelog(t) == topic)
    }

    /// A short name for logs and metric labels: the changelog's suffix.
    pub fn changelog_label(self) -> &'static str {
        match self {
            Stream::Activity => "presence",
            Stream::Imports => "import-ownership",
        }
    }
}
