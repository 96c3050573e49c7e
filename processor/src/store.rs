//! Per-partition state, written once per batch together with the input offset.
//!
//! Each input partition of each input topic has its own tree (`presence/3`,
//! `imports/3`), holding the encoded state of every entity (the same bytes
//! as its changelog record) and the next input offset, always written in one
//! atomic batch. The loop sees this through [`StateStore`]: sled on disk
//! ([`Store`]) live and in replay, memory ([`MemoryStore`]) in tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::ProcessorError;

const OFFSET_KEY: &[u8] = b"~next_offset";
const CHANGELOG_KEY: &[u8] = b"~changelog_next";
const STANDBY_KEY: &[u8] = b"~standby_copy";
const ENTITY_PREFIX: &[u8] = b"e/";

/// Renames a damaged store directory to `<dir>.damaged-<millis>` so that a
/// fresh one can be opened in its place; returns the new name.
pub fn move_aside(dir: &Path) -> Result<std::path::PathBuf, ProcessorError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".damaged-{stamp}"));
    let aside = std::path::PathBuf::from(name);
    std::fs::rename(dir, &aside).map_err(|e| ProcessorError::MoveAside {
        path: dir.display().to_string(),
        source: e,
    })?;
    Ok(aside)
}

/// What the loop asks of its local store, whatever keeps it.
pub trait StateStore: Send + Sync {
    /// The stored next offset of a partition's tree, if it was ever committed.
    fn next_offset(&self, tree: &str) -> Result<Option<i64>, ProcessorError>;
    /// The next changelog offset a tree's states were read up to, when they
    /// were last brought up to date from the changelog (a restore or a
    /// standby's tailing); `None` when they never were.
    fn changelog_position(&self, tree: &str) -> Result<Option<i64>, ProcessorError>;
    /// True when a tree's states were last written by a warm standby's
    /// tailing, not by an owner.
    fn standby_copy(&self, tree: &str) -> Result<bool, ProcessorError>;
    /// Hands every encoded state in a partition's tree to `each`.
    fn for_each_state(
        &self,
        tree: &str,
        each: &mut dyn FnMut(&[u8]) -> Result<(), ProcessorError>,
    ) -> Result<(), ProcessorError>;
    /// Applies one partition's batch atomically: states and offset move together.
    fn commit(&self, tree: &str, write: PartitionWrite) -> Result<(), ProcessorError>;
    /// Replaces a partition's whole state (after a restore from the changelog).
    fn replace(&self, tree: &str, write: PartitionWrite) -> Result<(), ProcessorError>;
    /// Makes what was committed durable.
    fn flush(&self) -> Result<(), ProcessorError>;
}

/// The store the loop holds, shared with its writer thread.
pub type SharedStore = Arc<dyn StateStore>;

/// The processor's local store: one sled tree per input partition.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

/// One write for one partition: changed states, deletions and the next input offset.
#[derive(Default)]
pub struct PartitionWrite {
    /// (entity id, encoded state or `None` for a deletion).
    pub entities: Vec<(String, Option<Vec<u8>>)>,
    /// The offset to resume reading from.
    pub next_offset: Option<i64>,
    /// The next changelog offset the states now cover, when they were read
    /// from the changelog.
    pub changelog_next: Option<i64>,
    /// Who keeps the tree from now on: `Some(true)` a warm standby,
    /// `Some(false)` an owner (`None`: unchanged).
    pub standby_copy: Option<bool>,
}

fn entity_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ENTITY_PREFIX.len() + id.len());
    k.extend_from_slice(ENTITY_PREFIX);
    k.extend_from_slice(id.as_bytes());
    k
}

/// sled's page cache by default (`--store-cache-mib`). The folded state lives in memory in the tables; the
/// store is read only when a partition is loaded, so its cache need not hold
/// every state (sled's default is 1 GiB, which at a million users would be
/// most of the process). Once the encoded states outgrow the cache every
/// update reads its page back first, yet a larger default did not pay: with
/// 100k users 64 MiB made the store alone faster but the whole processor,
/// on cores it shares with the broker, slower.
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;

impl Store {
    /// Opens (or creates) the store under `dir`, with the default cache.
    pub fn open(dir: &Path) -> Result<Store, ProcessorError> {
        Store::open_with_cache(dir, CACHE_BYTES)
    }

    /// Opens (or creates) the store under `dir`, with `cache_bytes` of page
    /// cache: more is faster once the states outgrow the cache (every
    /// update of a page that left it reads the page back first).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store, ProcessorError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| ProcessorError::store("opening", e))?;
        Ok(Store { db })
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, ProcessorError> {
        self.db
            .open_tree(name)
            .map_err(|e| ProcessorError::store("opening partition tree", e))
    }
}

impl StateStore for Store {
    /// The stored next offset of a partition's tree, if it was ever committed.
    fn next_offset(&self, tree: &str) -> Result<Option<i64>, ProcessorError> {
        let v = self
            .tree(tree)?
            .get(OFFSET_KEY)
            .map_err(|e| ProcessorError::store("reading offset", e))?;
        Ok(v.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok().map(i64::from_be_bytes)))
    }

    fn changelog_position(&self, tree: &str) -> Result<Option<i64>, ProcessorError> {
        let v = self
            .tree(tree)?
            .get(CHANGELOG_KEY)
            .map_err(|e| ProcessorError::store("reading changelog position", e))?;
        Ok(v.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok().map(i64::from_be_bytes)))
    }

    fn standby_copy(&self, tree: &str) -> Result<bool, ProcessorError> {
        let v = self
            .tree(tree)?
            .get(STANDBY_KEY)
            .map_err(|e| ProcessorError::store("reading who keeps a partition", e))?;
        Ok(v.is_some_and(|b| b.as_ref() == [1]))
    }

    fn for_each_state(
        &self,
        tree: &str,
        each: &mut dyn FnMut(&[u8]) -> Result<(), ProcessorError>,
    ) -> Result<(), ProcessorError> {
        for item in self.tree(tree)?.scan_prefix(ENTITY_PREFIX) {
            let (_, v) = item.map_err(|e| ProcessorError::store("scanning state", e))?;
            each(&v)?;
        }
        Ok(())
    }

    /// Applies one partition's batch atomically: states and offset move together.
    fn commit(&self, tree: &str, write: PartitionWrite) -> Result<(), ProcessorError> {
        let t = self.tree(tree)?;
        let mut batch = sled::Batch::default();
        let mut written = Vec::with_capacity(write.entities.len());
        for (id, value) in write.entities {
            let key = entity_key(&id);
            match value {
                Some(v) => {
                    batch.insert(key.as_slice(), v);
                    written.push(key);
                }
                None => batch.remove(key),
            }
        }
        if let Some(o) = write.next_offset {
            batch.insert(OFFSET_KEY, &o.to_be_bytes());
        }
        if let Some(o) = write.changelog_next {
            batch.insert(CHANGELOG_KEY, &o.to_be_bytes());
        }
        if let Some(copy) = write.standby_copy {
            batch.insert(STANDBY_KEY, &[u8::from(copy)]);
        }
        t.apply_batch(batch)
            .map_err(|e| ProcessorError::store("writing batch", e))?;
        // sled charges a write to its page cache at the size of the change,
        // not of the page it lands on, so a stream of writes alone never
        // reaches the cache's bound: at a million users it held 2.4 KB per
        // state. A read charges the whole page and pages out past the bound
        // (180 B per state, docs/performance-history.md).
        for key in &written {
            t.get(key)
                .map_err(|e| ProcessorError::store("reading back a batch", e))?;
        }
        Ok(())
    }

    /// Replaces a partition's whole state (after a restore from the changelog).
    fn replace(&self, tree: &str, write: PartitionWrite) -> Result<(), ProcessorError> {
        // Cleared first: a crash in between leaves no offset, so the next
        // assignment restores again.
        self.tree(tree)?
            .clear()
            .map_err(|e| ProcessorError::store("clearing partition", e))?;
        self.commit(tree, write)
    }

    /// Flushes sled's buffers to disk.
    fn flush(&self) -> Result<(), ProcessorError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| ProcessorError::store("flushing", e))
    }
}

/// A store in memory, for tests of the loop: the same contract as sled's,
/// gone with the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    trees: Arc<Mutex<BTreeMap<String, MemoryTree>>>,
}

#[derive(Debug, Clone, Default)]
struct MemoryTree {
    states: BTreeMap<String, Vec<u8>>,
    next_offset: Option<i64>,
    changelog_next: Option<i64>,
    standby_copy: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl StateStore for MemoryStore {
    fn next_offset(&self, tree: &str) -> Result<Option<i64>, ProcessorError> {
        Ok(sessionfold_edge::lock(&self.trees)
            .get(tree)
            .and_then(|t| t.next_offset))
    }

    fn changelog_position(&self, tree: &str) -> Result<Option<i64>, ProcessorError> {
        Ok(sessionfold_edge::lock(&self.trees)
            .get(tree)
            .and_then(|t| t.changelog_next))
    }

    fn standby_copy(&self, tree: &str) -> Result<bool, ProcessorError> {
        Ok(sessionfold_edge::lock(&self.trees)
            .get(tree)
            .is_some_and(|t| t.standby_copy))
    }

    fn for_each_state(
        &self,
        tree: &str,
        each: &mut dyn FnMut(&[u8]) -> Result<(), ProcessorError>,
    ) -> Result<(), ProcessorError> {
        let states: Vec<Vec<u8>> = sessionfold_edge::lock(&self.trees)
            .get(tree)
            .map(|t| t.states.values().cloned().collect())
            .unwrap_or_default();
        states.iter().try_for_each(|s| each(s))
    }

    fn commit(&self, tree: &str, write: PartitionWrite) -> Result<(), ProcessorError> {
        let mut trees = sessionfold_edge::lock(&self.trees);
        let t = trees.entry(tree.to_owned()).or_default();
        for (id, value) in write.entities {
            match value {
                Some(v) => t.states.insert(id, v),
                None => t.states.remove(&id),
            };
        }
        if let Some(o) = write.next_offset {
            t.next_offset = Some(o);
        }
        if let Some(o) = write.changelog_next {
            t.changelog_next = Some(o);
        }
        if let Some(copy) = write.standby_copy {
            t.standby_copy = copy;
        }
        Ok(())
    }

    fn replace(&self, tree: &str, write: PartitionWrite) -> Result<(), ProcessorError> {
        sessionfold_edge::lock(&self.trees).remove(tree);
        self.commit(tree, write)
    }

    fn flush(&self) -> Result<(), ProcessorError> {
        Ok(())
    }
}
