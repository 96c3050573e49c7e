//! Per-partition state in sled, written once per batch together with the input offset.

use std::path::Path;

use sessionfold_fold::PresenceTable;
use sessionfold_schemas::Contract;

use crate::error::ProcessorError;

const OFFSET_KEY: &[u8] = b"~next_offset";
const USER_PREFIX: &[u8] = b"u/";

/// The processor's local store: one sled tree per input partition.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

/// One write for one partition: changed states, deletions and the next input offset.
#[derive(Default)]
pub struct PartitionWrite {
    /// (user id, encoded state or `None` for a deletion).
    pub users: Vec<(String, Option<Vec<u8>>)>,
    /// The offset to resume reading from.
    pub next_offset: Option<i64>,
}

fn tree_name(partition: i32) -> String {
    format!("presence/{partition}")
}

fn user_key(user_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(USER_PREFIX.len() + user_id.len());
    k.extend_from_slice(USER_PREFIX);
    k.extend_from_slice(user_id.as_bytes());
    k
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, ProcessorError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| ProcessorError::store("opening", e))?;
        Ok(Store { db })
    }

    fn tree(&self, partition: i32) -> Result<sled::Tree, ProcessorError> {
        self.db
            .open_tree(tree_name(partition))
            .map_err(|e| ProcessorError::store("opening partition tree", e))
    }

    /// The stored next offset of a partition, if it was ever committed.
    pub fn next_offset(&self, partition: i32) -> Result<Option<i64>, ProcessorError> {
        let t = self.tree(partition)?;
        let v = t
            .get(OFFSET_KEY)
            .map_err(|e| ProcessorError::store("reading offset", e))?;
        Ok(v.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok().map(i64::from_be_bytes)))
    }

    /// Loads a partition's presence state into `table`; returns the next offset.
    pub fn load(
        &self,
        partition: i32,
        contract: &Contract,
        table: &mut PresenceTable,
    ) -> Result<Option<i64>, ProcessorError> {
        let t = self.tree(partition)?;
        for item in t.scan_prefix(USER_PREFIX) {
            let (_, v) = item.map_err(|e| ProcessorError::store("scanning state", e))?;
            let state = contract
                .decode_presence(&v)
                .map_err(|e| ProcessorError::CorruptState {
                    partition,
                    reason: e.to_string(),
                })?;
            table.restore(state);
        }
        self.next_offset(partition)
    }

    /// Applies one partition's batch atomically: states and offset move together.
    pub fn commit(&self, partition: i32, write: PartitionWrite) -> Result<(), ProcessorError> {
        let t = self.tree(partition)?;
        let mut batch = sled::Batch::default();
        for (id, value) in write.users {
            match value {
                Some(v) => batch.insert(user_key(&id), v),
                None => batch.remove(user_key(&id)),
            }
        }
        if let Some(o) = write.next_offset {
            batch.insert(OFFSET_KEY, &o.to_be_bytes());
        }
        t.apply_batch(batch)
            .map_err(|e| ProcessorError::store("writing batch", e))
    }

    /// Replaces a partition's whole state (after a restore from the changelog).
    pub fn replace(&self, partition: i32, write: PartitionWrite) -> Result<(), ProcessorError> {
        let t = self.tree(partition)?;
        // Cleared first: a crash in between leaves no offset, so the next
        // assignment restores again.
        t.clear()
            .map_err(|e| ProcessorError::store("clearing partition", e))?;
        self.commit(partition, write)
    }

    /// Flushes sled's buffers to disk.
    pub fn flush(&self) -> Result<(), ProcessorError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| ProcessorError::store("flushing", e))
    }
}
