//! Exactly-once application of event ids within a window of event time.

use sessionfold_schemas::{Millis, SeenEvent};

use crate::{Applied, Position, Rejected};

/// Refuses a record whose key is not the entity it names (it sits on the wrong partition).
pub(crate) fn check_key(
    key: Option<&str>,
    field: &'static str,
    value: &str,
) -> Result<(), Rejected> {
    match key {
        Some(k) if k != value => Err(Rejected::KeyMismatch {
            key: k.to_owned(),
            field,
            value: value.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// What an existing entity remembers for admitting events exactly once.
pub(crate) struct Memory<'a> {
    /// Input position of the last event applied.
    pub(crate) position: Position,
    /// Ids applied within the window.
    pub(crate) recent: &'a [SeenEvent],
    /// Latest event time of the entity.
    pub(crate) latest: Millis,
}

/// Decides whether an event may be applied: `Ok(None)` to apply it,
/// `Ok(Some(..))` when it already was, `Err` when it is too late to tell.
pub(crate) fn admit(
    memory: Option<Memory<'_>>,
    entity: &str,
    hash: i64,
    occurred_at: Millis,
    pos: Position,
    window: Millis,
) -> Result<Option<Applied>, Rejected> {
    let Some(m) = memory else {
        return Ok(None);
    };
    if m.position.partition == pos.partition && m.position.offset >= pos.offset {
        return Ok(Some(Applied::AlreadyApplied));
    }
    if seen(m.recent, hash) {
        return Ok(Some(Applied::Duplicate));
    }
    let horizon = m.latest - window;
    if occurred_at < horizon {
        return Err(Rejected::Late {
            entity: entity.to_owned(),
            late_by_ms: horizon - occurred_at,
            window_ms: window,
        });
    }
    Ok(None)
}

/// A stable 64-bit hash of an event id (FNV-1a): the same on every machine
/// and in every release, because it is stored in state and on the changelog.
pub fn event_hash(event_id: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// True when `hash` is among the seen ids (kept sorted by hash).
pub(crate) fn seen(recent: &[SeenEvent], hash: i64) -> bool {
    recent.binary_search_by_key(&hash, |s| s.id_hash).is_ok()
}

/// Records an applied id, keeping the list sorted by hash.
pub(crate) fn remember(recent: &mut Vec<SeenEvent>, hash: i64, occurred_at: Millis) {
    if let Err(i) = recent.binary_search_by_key(&hash, |s| s.id_hash) {
        recent.insert(
            i,
            SeenEvent {
                id_hash: hash,
                occurred_at,
            },
        );
    }
}

/// Drops ids of events older than `horizon`; they can no longer be applied anyway.
pub(crate) fn forget_before(recent: &mut Vec<SeenEvent>, horizon: Millis) -> bool {
    let before = recent.len();
    recent.retain(|s| s.occurred_at >= horizon);
    recent.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fnv1a() {
        // Published FNV-1a 64 vectors.
        assert_eq!(event_hash("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(event_hash("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(event_hash("foobar") as u64, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn remember_keeps_sorted_and_unique() {
        let mut r = Vec::new();
        for (h, t) in [(5, 1), (-3, 2), (5, 9), (0, 3)] {
            remember(&mut r, h, t);
        }
        let hashes: Vec<i64> = r.iter().map(|s| s.id_hash).collect();
        assert_eq!(hashes, vec![-3, 0, 5]);
        assert!(seen(&r, 0) && !seen(&r, 1));
        assert!(forget_before(&mut r, 2));
        assert_eq!(r.len(), 2);
    }
}
