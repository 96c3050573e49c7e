//! A local snapshot of the views, so that a restart reads only the
//! changelogs' tail instead of every record from the beginning.
//!
//! The file holds the states the views hold (in the changelogs' own Avro
//! encoding) and, per changelog partition, the position they cover. Each
//! view's states and its positions are taken under that view's read lock,
//! and the positions are never ahead of the states (the follower moves them
//! after applying), so reading the tail from them applies nothing twice:
//! a record the snapshot already holds comes back as a replay and is
//! dropped by its input position, as after any follower restart.
//!
//! Layout: magic, identity (JSON: the changelogs and the cluster it was
//! taken from), the records (kind, key, value), an end mark, the trailer
//! (JSON: positions and the processor's settings), the trailer's length and
//! a CRC-32 of everything before it. It is written to a temporary file,
//! synced and renamed over the last one, so a crash leaves the old one
//! whole. A damaged one (wrong checksum, cut short) or a foreign one (other
//! topics, another cluster, positions the changelogs do not have) is
//! ignored with a log line and the changelogs are read from the beginning.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sessionfold_schemas::{Contract, Millis, Topics};
use sessionfold_views::freshness::{Freshness, Partition};

use crate::follow::Views;

mod read;
pub use read::{Verified, identity_in, verify};

const MAGIC: &[u8; 8] = b"SFVIEWS1";
const PRESENCE: u8 = 1;
const IMPORT: u8 = 2;
const END: u8 = 0;
const FILE: &str = "views.snapshot";

/// Why a snapshot was not taken or not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a whole snapshot.
    #[error("damaged: {0}")]
    Damaged(String),
    /// The file is a snapshot of other changelogs.
    #[error("foreign: {0}")]
    Foreign(String),
    /// A state could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] sessionfold_schemas::SchemaError),
}

/// Which changelogs a snapshot is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The presence changelog.
    pub presence_topic: String,
    /// The import-ownership changelog.
    pub imports_topic: String,
    /// The Kafka cluster id, when the broker names one.
    pub cluster_id: Option<String>,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} and {} on cluster {}",
            self.presence_topic,
            self.imports_topic,
            self.cluster_id.as_deref().unwrap_or("(unnamed)")
        )
    }
}

impl Identity {
    /// The identity of `topics` on `cluster_id`.
    pub fn of(topics: &Topics, cluster_id: Option<String>) -> Identity {
        Identity {
            presence_topic: topics.presence.clone(),
            imports_topic: topics.import_ownership.clone(),
            cluster_id,
        }
    }
}

/// What the views covered when the snapshot was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trailer {
    /// Next offset per changelog partition.
    pub positions: Vec<(String, i32, i64)>,
    /// The processor's idle timeout, as its changelog said.
    pub idle_timeout: Millis,
    /// The processor's activity resolution, as its changelog said.
    pub activity_resolution: Millis,
    /// The time of the newest change applied.
    pub newest_change: Option<Millis>,
    /// Presence states written.
    pub presence: u64,
    /// Import states written.
    pub imports: u64,
}

/// Where the snapshot of `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// A writer that keeps a CRC-32 of what passes through it.
struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn put(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

fn positions_of(fresh: &Mutex<Freshness>, topic: &str) -> Vec<(String, i32, i64)> {
    sessionfold_edge::lock(fresh)
        .positions()
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|((t, p), at)| (t.clone(), *p, *at))
        .collect()
}

/// Writes a snapshot of `views` into `dir`, replacing the last one;
/// returns its trailer.
pub fn write(
    dir: &Path,
    identity: &Identity,
    contract: &Contract,
    views: &Views,
    fresh: &Mutex<Freshness>,
) -> Result<Trailer, SnapshotError> {
    std::fs::create_dir_all(dir)?;
    // Two instances may share a directory: each writes its own file, and
    // the last rename wins with a whole snapshot either way.
    let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    let file = File::create(&tmp)?;
    let mut w = Summed {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    put(
        &mut w,
        &serde_json::to_vec(identity).map_err(std::io::Error::other)?,
    )?;
    let mut trailer = Trailer {
        positions: Vec::new(),
        idle_timeout: 0,
        activity_resolution: 0,
        newest_change: sessionfold_edge::lock(fresh).newest_change(),
        presence: 0,
        imports: 0,
    };
    {
        let view = sessionfold_edge::read(&views.presence);
        trailer
            .positions
            .extend(positions_of(fresh, &identity.presence_topic));
        trailer.idle_timeout = view.idle_timeout();
        trailer.activity_resolution = view.activity_resolution();
        for s in view.states() {
            w.write_all(&[PRESENCE])?;
            put(&mut w, s.user_id.as_bytes())?;
            put(&mut w, &contract.encode_presence(s)?)?;
            trailer.presence += 1;
        }
    }
    {
        let view = sessionfold_edge::read(&views.imports);
        trailer
            .positions
            .extend(positions_of(fresh, &identity.imports_topic));
        for s in view.states() {
            w.write_all(&[IMPORT])?;
            put(&mut w, s.import_id.as_bytes())?;
            put(&mut w, &contract.encode_import_state(s)?)?;
            trailer.imports += 1;
        }
    }
    w.write_all(&[END])?;
    let json = serde_json::to_vec(&trailer).map_err(std::io::Error::other)?;
    w.write_all(&json)?;
    w.write_all(
        &u32::try_from(json.len())
            .map_err(std::io::Error::other)?
            .to_le_bytes(),
    )?;
    let crc = w.crc.clone().finalize();
    let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.write_all(&crc.to_le_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path(dir))?;
    // The rename is durable once the directory is.
    File::open(dir)?.sync_all()?;
    Ok(trailer)
}

/// What a usable snapshot gave the follower.
pub struct Restored {
    /// Where to read each changelog partition from.
    pub positions: BTreeMap<Partition, i64>,
    /// The time of the newest change it holds.
    pub newest_change: Option<Millis>,
}

/// Loads the snapshot in `dir` into the (empty) `views` when it is whole,
/// of `identity`'s changelogs, and within each partition's `marks` (low and
/// high watermarks); otherwise says why in the log, leaves the views empty
/// and returns `None`, so the changelogs are read from the beginning.
/// `real_end` reads where a partition really ends when a position lies past
/// its reported high watermark (tansu 0.6.0 reports the last record batch's
/// first offset).
pub fn restore(
    dir: &Path,
    identity: &Identity,
    contract: &Contract,
    views: &Views,
    marks: &BTreeMap<Partition, (i64, i64)>,
    real_end: &dyn Fn(&Partition, (i64, i64)) -> i64,
) -> Option<Restored> {
    let file = path(dir);
    let started = std::time::Instant::now();
    let verified = match verify(&file, identity) {
        Ok(v) => v,
        Err(SnapshotError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %file.display(), "no snapshot of the views yet; reading the changelogs from the beginning");
            return None;
        }
        // Another cluster's or other topics' snapshot is expected after a
        // broker is reset; a damaged one is not.
        Err(e @ SnapshotError::Foreign(_)) => {
            tracing::info!(file = %file.display(), error = %e, "snapshot of the views ignored; reading the changelogs from the beginning");
            return None;
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "snapshot of the views ignored; reading the changelogs from the beginning");
            return None;
        }
    };
    let positions = verified.positions();
    let fits = positions.len() == marks.len()
        && marks.iter().all(|(p, (low, high))| {
            positions.get(p).is_some_and(|at| {
                (*low..=*high).contains(at) || (*at > *high && *at <= real_end(p, (*low, *high)))
            })
        });
    if !fits {
        tracing::info!(file = %file.display(), snapshot = ?positions, changelogs = ?marks,
            "snapshot of the views ignored: its positions are not in the changelogs (recreated, truncated or repartitioned); reading them from the beginning");
        return None;
    }
    let newest_change = verified.trailer.newest_change;
    match verified.load(contract, views) {
        Ok(states) => {
            let tail: i64 = marks
                .iter()
                // A reported end that lags (tansu) counts no tail.
                .map(|(p, (_, high))| (high - positions.get(p).copied().unwrap_or(0)).max(0))
                .sum();
            tracing::info!(
                states,
                tail_records = tail,
                took_ms = started.elapsed().as_millis() as u64,
                "views loaded from their snapshot; reading the changelogs' tail"
            );
            Some(Restored {
                positions,
                newest_change,
            })
        }
        Err(e) => {
            sessionfold_edge::write(&views.presence).clear();
            sessionfold_edge::write(&views.imports).clear();
            tracing::warn!(file = %file.display(), error = %e, "snapshot of the views ignored; reading the changelogs from the beginning");
            None
        }
    }
}
