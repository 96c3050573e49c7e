//! Names of the Kafka record headers that are part of the contract: read by
//! operators' tools and by the processor's own restore, so written once here.

/// Dead letter: a sentence saying what was wrong.
pub const ERROR: &str = "sessionfold-error";
/// Dead letter: the machine-readable reason.
pub const ERROR_KIND: &str = "sessionfold-error-kind";
/// Dead letter and changelog: the input topic the record came from.
pub const SOURCE_TOPIC: &str = "sessionfold-source-topic";
/// Dead letter and changelog: the input partition.
pub const SOURCE_PARTITION: &str = "sessionfold-source-partition";
/// Dead letter and changelog: the input offset.
pub const SOURCE_OFFSET: &str = "sessionfold-source-offset";
/// Dead letter: the size in bytes of a value cut short to fit the topic.
pub const ORIGINAL_SIZE: &str = "sessionfold-original-size";
/// Dead letter: SHA-256 (hex) of the whole original value when it was cut short.
pub const ORIGINAL_SHA256: &str = "sessionfold-original-sha256";
/// Dead letter: the size in bytes of a key cut short to fit the topic.
pub const ORIGINAL_KEY_SIZE: &str = "sessionfold-original-key-size";
/// Changelog: first input offset of the batch that produced the record.
pub const BATCH_START: &str = "sessionfold-batch-start";
/// Changelog: input offset after the batch that produced the record.
pub const BATCH_END: &str = "sessionfold-batch-end";
/// Import event: the authority the ingest checked the actor with (`owner`,
/// `admin`, `import_admin` or `service`); without it only the owner may act.
pub const ACTOR_ROLE: &str = "sessionfold-actor-role";
/// A record the processor moved to its key's partition: where it was read
/// (`<partition>@<offset>` of the same topic).
pub const MOVED_FROM: &str = "sessionfold-moved-from";
/// Presence changelog: the idle timeout, in milliseconds, the processor
/// folds with; the projections answer "who is online" with the same one.
pub const IDLE_TIMEOUT_MS: &str = "sessionfold-idle-timeout-ms";
/// Presence changelog: how far, in milliseconds, an active session's
/// published last activity may be behind its activity (refreshes that
/// change nothing else are coalesced up to this long).
pub const ACTIVITY_RESOLUTION_MS: &str = "sessionfold-activity-resolution-ms";
