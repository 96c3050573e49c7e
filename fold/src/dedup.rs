//! Exactly-once application of event ids within a window of event time.

use sessionfold_schemas::{Millis, SeenEvent};

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
