//! Who owns which import, as the ingest learns it from the ownership
//! changelog, so that it can refuse another user's import events at once.
//!
//! The view may lag the processor: an import it does not know yet is let
//! through, and the processor, which folds events in order, refuses what the
//! owner rule forbids (dead letter `not_owner`). The ingest's check only
//! answers early and clearly; the processor's is the one that holds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sessionfold_schemas::Contract;

/// One import's owner and the input offset its state reflects.
#[derive(Debug, Clone)]
struct Known {
    owner: Option<String>,
    offset: i64,
}

/// The owners of the imports seen on the ownership changelog.
#[derive(Debug, Default)]
pub struct Owners {
    map: RwLock<HashMap<String, Known>>,
}

impl Owners {
    /// The owner of an import: `None` when unknown here, `Some(None)` for an
    /// import with no owner.
    pub fn owner_of(&self, import_id: &str) -> Option<Option<String>> {
        let map = sessionfold_edge::read(&self.map);
        map.get(import_id).map(|k| k.owner.clone())
    }

    /// Applies one changelog record; an older state than the one held (a
    /// re-published batch) changes nothing.
    fn apply(&self, contract: &Contract, key: &str, payload: Option<&[u8]>) {
        let mut map = sessionfold_edge::write(&self.map);
        let Some(bytes) = payload else {
            map.remove(key);
            return;
        };
        let Ok(state) = contract.decode_import_state(bytes) else {
            return;
        };
        if state.import_id != key {
            return;
        }
        if map.get(key).is_some_and(|k| k.offset > state.source_offset) {
            return;
        }
        map.insert(
            key.to_owned(),
            Known {
                owner: state.owner_id,
                offset: state.source_offset,
            },
        );
    }
}

/// Follows `topic` from its beginning into `owners` until `stop` is set,
/// starting again with back-off after any failure (the topic may not exist
/// yet). Call from a blocking thread.
pub fn follow(
    brokers: &str,
    topic: &str,
    owners: Arc<Owners>,
    stop: &sessionfold_edge::Stop,
) -> Result<(), sessionfold_schemas::SchemaError> {
    let contract = Contract::load()?;
    sessionfold_edge::follow::follow(brokers, topic, stop, |key, payload| {
        owners.apply(&contract, key, payload);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use sessionfold_schemas::{ImportState, ImportStatus};

    use super::*;

    fn state(id: &str, owner: Option<&str>, offset: i64) -> ImportState {
        ImportState {
            import_id: id.into(),
            owner_id: owner.map(str::to_owned),
            previous_owner_id: None,
            status: ImportStatus::InProgress,
            json_hash: "h".into(),
            file_name: "f.json".into(),
            step: None,
            progress: 0,
            questions_imported: 0,
            questions_total: 1,
            started_at: 0,
            last_accessed_at: 0,
            finished_at: None,
            abandon_reason: None,
            recent_events: Vec::new(),
            source_partition: 0,
            source_offset: offset,
        }
    }

    #[test]
    fn the_newest_state_names_the_owner() -> Result<(), Box<dyn std::error::Error>> {
        let c = Contract::load()?;
        let o = Owners::default();
        o.apply(
            &c,
            "i1",
            Some(&c.encode_import_state(&state("i1", Some("bob"), 5))?),
        );
        o.apply(
            &c,
            "i1",
            Some(&c.encode_import_state(&state("i1", Some("ann"), 3))?),
        );
        assert_eq!(o.owner_of("i1"), Some(Some("bob".into())));
        o.apply(
            &c,
            "i2",
            Some(&c.encode_import_state(&state("other", Some("x"), 1))?),
        );
        o.apply(&c, "i3", Some(b"garbage"));
        assert_eq!((o.owner_of("i2"), o.owner_of("i3")), (None, None));
        o.apply(&c, "i1", None);
        assert_eq!(o.owner_of("i1"), None);
        Ok(())
    }
}
