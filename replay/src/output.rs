//! What a replay writes besides the reports: the as-of views in the
//! projections' shapes and the state in the live processor's store layout.

use std::path::Path;

use sessionfold_processor::store::{PartitionWrite, StateStore, Store};
use sessionfold_processor::tables::{Stream, tree};
use sessionfold_schemas::Contract;
use sessionfold_views::imports::ImportView;
use sessionfold_views::view::{PresenceView, rfc3339};

use crate::fold::Folded;
use crate::{ReplayError, ReplaySettings};

/// Writes the as-of state into a fresh store with the live processor's
/// layout. A partition's resume offset is set only when nothing on it was
/// left out for being after `until`, so a processor started on this store
/// never skips an event.
pub(crate) fn write_store(f: &Folded, contract: &Contract, dir: &Path) -> Result<(), ReplayError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| ReplayError::Replay(format!("clearing {}: {e}", dir.display())))?;
    }
    let store = Store::open(dir)?;
    let offset = |stream: Stream, p: i32| {
        f.read
            .get(&(stream, p))
            .filter(|r| !r.skipped_after_until)
            .map(|r| r.next_offset)
    };
    for (p, t) in f.presence() {
        let mut entities = Vec::with_capacity(t.len());
        for u in t.users() {
            entities.push((u.user_id.to_string(), Some(contract.encode_presence(u)?)));
        }
        let write = PartitionWrite {
            entities,
            next_offset: offset(Stream::Activity, p),
            changelog_next: None,
            standby_copy: None,
        };
        store.replace(&tree(Stream::Activity, p), write)?;
    }
    for (p, t) in f.imports() {
        let mut entities = Vec::with_capacity(t.len());
        for i in t.imports() {
            entities.push((i.import_id.clone(), Some(contract.encode_import_state(i)?)));
        }
        let write = PartitionWrite {
            entities,
            next_offset: offset(Stream::Imports, p),
            changelog_next: None,
            standby_copy: None,
        };
        store.replace(&tree(Stream::Imports, p), write)?;
    }
    Ok(store.flush()?)
}

fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<(), ReplayError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ReplayError::Replay(format!("{name}: {e}")))?;
    std::fs::write(dir.join(name), text + "\n")
        .map_err(|e| ReplayError::Replay(format!("writing {name}: {e}")))
}

/// Writes the as-of views, in the projections' shapes, into `s.out`.
pub(crate) fn write_views(f: &Folded, s: &ReplaySettings) -> Result<(), ReplayError> {
    let mut presence = PresenceView::new(s.presence.idle_timeout);
    let mut ids = Vec::new();
    for (_, t) in f.presence() {
        for u in t.users() {
            ids.push(u.user_id.clone());
            presence.apply(&u.user_id, Some(u.clone()));
        }
    }
    ids.sort();
    let users: Vec<_> = ids
        .iter()
        .filter_map(|id| presence.user(id, s.until))
        .collect();
    write_json(
        &s.out,
        "presence-users.json",
        &serde_json::json!({ "as_of": rfc3339(s.until), "users": users }),
    )?;
    write_json(
        &s.out,
        "presence-active.json",
        &presence.active(s.until, s.window, usize::MAX, None),
    )?;
    write_json(
        &s.out,
        "presence-summary.json",
        &presence.summary(s.until, s.window),
    )?;
    // Stale is a read-time property; a replay uses the default rule.
    let mut imports = ImportView::new(24 * 3_600_000);
    for (_, t) in f.imports() {
        for i in t.imports() {
            imports.apply(&i.import_id, Some(i.clone()));
        }
    }
    write_json(
        &s.out,
        "imports.json",
        &serde_json::json!({ "as_of": rfc3339(s.until), "imports": imports.all(s.until) }),
    )
}
