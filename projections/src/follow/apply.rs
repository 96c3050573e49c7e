//! Applying a batch of changelog records to the views, and streaming each
//! applied change.

use sessionfold_edge::write;
use sessionfold_schemas::{Contract, Millis, SchemaError, Stream};
use sessionfold_views::changes::{ImportChange, PresenceBefore};

use super::{FollowError, Raw, Views};
use crate::metrics::Metrics;
use crate::stream::{Audience, Hub};
use crate::view::Update;

/// Decodes and applies a batch, taking each view's lock once, and publishes
/// every applied change to `hub` when given.
pub(super) fn apply_batch(
    contract: &Contract,
    views: &Views,
    hub: Option<&Hub>,
    metrics: &Metrics,
    fixed_idle_timeout: Option<Millis>,
    batch: impl Iterator<Item = Raw>,
) -> Result<(), FollowError> {
    let now = chrono::Utc::now().timestamp_millis();
    let (presence, imports): (Vec<Raw>, Vec<Raw>) =
        batch.partition(|r| r.changelog == Stream::Activity);
    if !presence.is_empty() {
        let mut view = write(&views.presence);
        for r in presence {
            if let Some(processors) = r.idle_timeout
                && processors != view.idle_timeout()
            {
                match fixed_idle_timeout {
                    Some(ours) => return Err(FollowError::IdleTimeoutDiffers { ours, processors }),
                    None => {
                        tracing::info!(
                            idle_timeout_ms = processors,
                            "taking the processor's idle timeout from its changelog"
                        );
                        view.set_idle_timeout(processors);
                    }
                }
            }
            if let Some(resolution) = r.activity_resolution
                && resolution != view.activity_resolution()
            {
                tracing::info!(
                    activity_resolution_ms = resolution,
                    "taking the processor's activity resolution from its changelog"
                );
                view.set_activity_resolution(resolution);
            }
            let Some((key, state)) = decoded(&r, metrics, |b| contract.decode_presence(b)) else {
                continue;
            };
            let before = hub
                .and_then(|_| view.user(&key, now))
                .map(|u| PresenceBefore::of(&u));
            let outcome = view.apply(&key, state);
            count(metrics, Stream::Activity, outcome);
            if outcome == Update::Deleted
                && let Some(hub) = hub
            {
                hub.forget_user(&key);
            }
            if let Some(hub) = hub.filter(|_| outcome != Update::Stale) {
                let user = view.user(&key, now);
                let change = PresenceBefore::change(before.as_ref(), user.as_ref()).as_str();
                let data = serde_json::json!({"user_id": key, "change": change, "user": user});
                hub.publish("presence", Audience::Presence(key), data.to_string());
            }
        }
        let moved = view.take_room_changes();
        if let Some(hub) = hub {
            for c in moved {
                let data = serde_json::to_string(&c).unwrap_or_default();
                hub.publish(
                    "room",
                    Audience::Room {
                        room: c.room,
                        user: c.user_id,
                        change: c.change,
                    },
                    data,
                );
            }
        }
        metrics.users.set(view.len() as i64);
    }
    if !imports.is_empty() {
        let mut view = write(&views.imports);
        for r in imports {
            let Some((key, state)) = decoded(&r, metrics, |b| contract.decode_import_state(b))
            else {
                continue;
            };
            let before = view.get(&key).map(|s| s.owner_id.clone());
            let outcome = view.apply(&key, state);
            count(metrics, Stream::Imports, outcome);
            if let Some(hub) = hub.filter(|_| outcome != Update::Stale) {
                let import = view.get(&key).map(|s| view.json(s, now));
                let after = import.as_ref().map(|i| i.owner_id.clone());
                let ImportChange {
                    change,
                    owner,
                    previous,
                } = ImportChange::of(before, after);
                let data =
                    serde_json::json!({"import_id": key, "change": change, "import": import});
                hub.publish(
                    "import",
                    Audience::Import { owner, previous },
                    data.to_string(),
                );
            }
        }
        metrics.imports.set(view.len() as i64);
    }
    Ok(())
}

/// The key and state of a record (`None` state: a tombstone); a record
/// without a key or with an undecodable value is counted and skipped.
fn decoded<T>(
    r: &Raw,
    metrics: &Metrics,
    decode: impl Fn(&[u8]) -> Result<T, SchemaError>,
) -> Option<(String, Option<T>)> {
    let label = r.changelog.changelog_label();
    let Some(key) = r.key.clone() else {
        metrics.records.with_label_values(&[label, "no_key"]).inc();
        return None;
    };
    match r.payload.as_deref().map(decode) {
        None => Some((key, None)),
        Some(Ok(s)) => Some((key, Some(s))),
        Some(Err(e)) => {
            tracing::warn!(changelog = label, partition = r.partition, offset = r.offset, error = %e, "undecodable changelog record skipped");
            metrics
                .records
                .with_label_values(&[label, "undecodable"])
                .inc();
            None
        }
    }
}

fn count(metrics: &Metrics, changelog: Stream, outcome: Update) {
    let label = match outcome {
        Update::Upserted => "upserted",
        Update::Deleted => "deleted",
        Update::Stale => "stale",
    };
    metrics
        .records
        .with_label_values(&[changelog.changelog_label(), label])
        .inc();
}
