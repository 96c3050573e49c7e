//! What tests of the loop need of the intake, without a broker.

use super::*;

impl Handoff {
    /// Queues one record as the consumer's thread would, for tests that
    /// drive the loop without a broker.
    pub(in crate::pipeline) fn accept_record(
        &self,
        part: Part,
        offset: i64,
        key: &[u8],
        payload: &[u8],
        metrics: &Metrics,
    ) -> Queued {
        hold(&self.filling).accept(
            part,
            (offset, Some(key), Some(payload)),
            || Authority::Actor,
            metrics,
        )
    }
}
