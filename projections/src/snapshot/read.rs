//! Reading a snapshot: checking it whole and of the right changelogs, then
//! loading its states into the views.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use sessionfold_schemas::{Contract, ImportState, UserPresence};

use super::{END, IMPORT, Identity, MAGIC, PRESENCE, SnapshotError, Trailer};
use crate::follow::Views;
use sessionfold_views::freshness::Partition;
use std::collections::BTreeMap;

pub(super) fn damaged(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Damaged(why.into())
}

/// A snapshot whose checksum holds, of the changelogs `identity` names.
pub struct Verified {
    file: File,
    /// What it covers.
    pub trailer: Trailer,
    records_end: u64,
}

/// Checks the snapshot at `file`: whole, and of `identity`'s changelogs.
pub fn verify(file: &Path, identity: &Identity) -> Result<Verified, SnapshotError> {
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    if len < 8 + 4 + 1 + 4 + 4 {
        return Err(damaged(format!("{len} bytes is too short")));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut reader = BufReader::with_capacity(1 << 20, (&mut f).take(len - 4));
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
    }
    let mut stored = [0; 4];
    f.read_exact(&mut stored)?;
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Err(damaged(
            "the checksum does not match (cut short or overwritten)",
        ));
    }
    f.seek(SeekFrom::Start(0))?;
    let theirs = read_identity(&mut f)?;
    if theirs != *identity {
        return Err(SnapshotError::Foreign(format!(
            "taken of {theirs}; this instance reads {identity}"
        )));
    }
    f.seek(SeekFrom::Start(len - 8))?;
    let mut n = [0; 4];
    f.read_exact(&mut n)?;
    let n = u64::from(u32::from_le_bytes(n));
    let records_end = (len - 8)
        .checked_sub(n)
        .ok_or_else(|| damaged("the trailer's length is past the start"))?;
    f.seek(SeekFrom::Start(records_end))?;
    let mut json = vec![0; usize::try_from(n).map_err(std::io::Error::other)?];
    f.read_exact(&mut json)?;
    let trailer: Trailer =
        serde_json::from_slice(&json).map_err(|e| damaged(format!("trailer: {e}")))?;
    Ok(Verified {
        file: f,
        trailer,
        records_end,
    })
}

fn get(r: &mut impl Read) -> Result<Vec<u8>, SnapshotError> {
    let mut n = [0; 4];
    r.read_exact(&mut n)?;
    let mut bytes = vec![0; u32::from_le_bytes(n) as usize];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

impl Verified {
    /// The positions it covers.
    pub fn positions(&self) -> BTreeMap<Partition, i64> {
        self.trailer
            .positions
            .iter()
            .map(|(t, p, at)| ((t.clone(), *p), *at))
            .collect()
    }

    /// Applies every state to `views`; returns how many. One thread reads
    /// and decodes while this one applies, so a load takes about the longer
    /// of the two rather than their sum.
    pub fn load(self, contract: &Contract, views: &Views) -> Result<u64, SnapshotError> {
        let Verified {
            mut file,
            trailer,
            records_end,
        } = self;
        file.seek(SeekFrom::Start(0))?;
        let mut r = BufReader::with_capacity(1 << 20, file.take(records_end));
        let mut magic = [0; 8];
        r.read_exact(&mut magic)?;
        get(&mut r)?;
        let mut presence = sessionfold_edge::write(&views.presence);
        presence.set_idle_timeout(trailer.idle_timeout);
        presence.set_activity_resolution(trailer.activity_resolution);
        let mut imports = sessionfold_edge::write(&views.imports);
        let loaded = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(8);
            let reader = scope.spawn(move || decode_all(&mut r, contract, &tx));
            let mut loaded = 0u64;
            for chunk in rx {
                for d in chunk {
                    match d {
                        Decoded::Presence(key, s) => presence.apply(&key, Some(s)),
                        Decoded::Import(key, s) => imports.apply(&key, Some(s)),
                    };
                    loaded += 1;
                }
            }
            match reader.join() {
                Ok(read) => read.map(|()| loaded),
                Err(_) => Err(damaged("the snapshot's reader panicked")),
            }
        })?;
        // Room moves of a load are history, not news for the stream.
        presence.take_room_changes();
        if loaded != trailer.presence + trailer.imports {
            return Err(damaged(format!(
                "{loaded} states, the trailer says {}",
                trailer.presence + trailer.imports
            )));
        }
        Ok(loaded)
    }
}

/// A state read from the snapshot.
enum Decoded {
    Presence(String, UserPresence),
    Import(String, ImportState),
}

/// Reads and decodes every record up to the end mark, sending them to
/// `tx` in chunks; stops early when the receiver is gone.
fn decode_all(
    r: &mut impl Read,
    contract: &Contract,
    tx: &std::sync::mpsc::SyncSender<Vec<Decoded>>,
) -> Result<(), SnapshotError> {
    const CHUNK: usize = 4096;
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let mut kind = [0; 1];
        r.read_exact(&mut kind)?;
        if kind[0] == END {
            break;
        }
        let key = String::from_utf8(get(r)?).map_err(|e| damaged(e.to_string()))?;
        let value = get(r)?;
        chunk.push(match kind[0] {
            PRESENCE => Decoded::Presence(
                key.clone(),
                contract
                    .decode_presence(&value)
                    .map_err(|e| damaged(format!("presence of {key}: {e}")))?,
            ),
            IMPORT => Decoded::Import(
                key.clone(),
                contract
                    .decode_import_state(&value)
                    .map_err(|e| damaged(format!("import {key}: {e}")))?,
            ),
            other => return Err(damaged(format!("unknown record kind {other}"))),
        });
        if chunk.len() == CHUNK {
            if tx.send(std::mem::take(&mut chunk)).is_err() {
                return Ok(());
            }
            chunk.reserve(CHUNK);
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(chunk);
    }
    Ok(())
}

/// The identity at the start of a snapshot, after its magic.
fn read_identity(f: &mut impl Read) -> Result<Identity, SnapshotError> {
    let mut magic = [0; 8];
    f.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(damaged(
            "not a snapshot of the views (or of another version)",
        ));
    }
    serde_json::from_slice(&get(f)?).map_err(|e| damaged(format!("identity: {e}")))
}

/// Which changelogs the snapshot at `file` says it is of, without checking
/// the rest of it.
pub fn identity_in(file: &Path) -> Result<Identity, SnapshotError> {
    read_identity(&mut File::open(file)?)
}
