//! A projections instance restarted under load starts from its snapshot
//! and reads only the changelogs' tail, answering exactly as an instance
//! that read everything; a damaged or foreign snapshot is reported and
//! ignored, and the changelogs are read from the beginning.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use sessionfold_e2e::{Feeder, Service, Stack, eventually, get_json, session_started};
use sessionfold_projections::snapshot::{self, Identity};

const USERS: usize = 200_000;

fn now() -> i64 {
    sessionfold_e2e::now_millis()
}

async fn start_projections(s: &Stack, prefix: &str, args: &[&str]) -> anyhow::Result<Service> {
    let mut p = Service::start_on(
        &sessionfold_e2e::brokers(),
        "sessionfold-projections",
        prefix,
        args,
        s.dir(),
    )
    .await?;
    p.wait_http("/readyz", Duration::from_secs(180)).await?;
    Ok(p)
}

async fn users_held(p: &Service) -> anyhow::Result<f64> {
    p.metric("sessionfold_projections_presence_users").await
}

/// What a reader sees: the counts by device and browser, and the first
/// page of the active list (ids only: "last seen" is relative to now).
async fn answers(p: &Service) -> anyhow::Result<(Value, Vec<String>)> {
    let (_, mut summary) = get_json(&format!("{}/v1/presence/summary?window=1h", p.url)).await?;
    // The time of the answer differs; what it counts must not.
    summary["as_of"] = Value::Null;
    let (_, page) = get_json(&format!("{}/v1/presence/active?window=1h&limit=500", p.url)).await?;
    let ids = page["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["user_id"].as_str().map(str::to_owned))
        .collect();
    Ok((summary, ids))
}

/// Waits until `a` and `b` hold `users` users and answer alike.
async fn alike(a: &Service, b: &Service, users: f64) -> anyhow::Result<()> {
    eventually(Duration::from_secs(60), "the same answers", || async {
        let (ua, ub) = (users_held(a).await?, users_held(b).await?);
        anyhow::ensure!(
            ua == users && ub == users,
            "{ua} and {ub} users held, not {users}"
        );
        let (x, y) = (answers(a).await?, answers(b).await?);
        anyhow::ensure!(x.1.len() == 500, "a page of {} users", x.1.len());
        anyhow::ensure!(x == y, "{} and {} differ", x.0, y.0);
        Ok(Some(()))
    })
    .await
}

/// Waits until the snapshot in `dir` is whole and holds `users` users.
async fn snapshot_of(dir: &Path, prefix: &str, users: u64) -> anyhow::Result<()> {
    let file = snapshot::path(dir);
    let topics = sessionfold_schemas::Topics::new(prefix);
    eventually(
        Duration::from_secs(60),
        "a snapshot of every user",
        || async {
            // The cluster id is the broker's: take the one the file names,
            // and check its topics, its whole content and its count.
            let Ok(id) = snapshot::identity_in(&file) else {
                return Ok(None);
            };
            anyhow::ensure!(id == Identity::of(&topics, id.cluster_id.clone()), "{id}");
            Ok(snapshot::verify(&file, &id)
                .ok()
                .filter(|v| v.trailer.presence == users)
                .map(|_| ()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_only_the_tail_and_answers_as_a_full_read() -> anyhow::Result<()> {
    let mut s = Stack::start("projrestart", &[], &["--snapshot-interval", "1s"]).await?;
    let feeder = Feeder::new(&s.prefix)?;
    let at = now();
    let events: Vec<_> = (0..USERS)
        .map(|n| session_started(format!("e{n}"), &format!("u{n}"), at))
        .collect();
    for chunk in events.chunks(20_000) {
        feeder.send(chunk).await?;
    }
    eventually(
        Duration::from_secs(180),
        "every user in the views",
        || async { Ok((users_held(&s.projections).await? == USERS as f64).then_some(())) },
    )
    .await?;
    let dir = s.dir().join("projections-snapshot");
    snapshot_of(&dir, &s.prefix, USERS as u64).await?;

    // Under load: more users arrive while the instance is down and restarting.
    let load = {
        let prefix = s.prefix.clone();
        tokio::spawn(async move {
            let feeder = Feeder::new(&prefix)?;
            for round in 0..20 {
                let at = now();
                let batch: Vec<_> = (0..100)
                    .map(|i| {
                        let n = USERS + round * 100 + i;
                        session_started(format!("e{n}"), &format!("u{n}"), at)
                    })
                    .collect();
                feeder.send(&batch).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        })
    };
    s.projections.kill();
    let restarted = start_projections(&s, &s.prefix, &["--snapshot-interval", "1s"]).await?;
    let log = restarted.log_text();
    let loaded: usize = log
        .lines()
        .find(|l| l.contains("views loaded from their snapshot"))
        .and_then(|l| l.split("states=").nth(1)?.split(' ').next()?.parse().ok())
        .with_context(|| format!("the restart did not use the snapshot:\n{log}"))?;
    // The last snapshot before the kill may hold some of the load's users.
    assert!((USERS..=USERS + 2_000).contains(&loaded), "{loaded}");
    assert!(
        !log.contains("reading the changelogs from the beginning"),
        "{log}"
    );
    load.await??;
    let total = (USERS + 2_000) as f64;
    let full = start_projections(&s, &s.prefix, &["--no-snapshot"]).await?;
    alike(&restarted, &full, total).await?;

    // A snapshot cut short: reported, ignored, and everything read again.
    let file = snapshot::path(&dir);
    drop(restarted);
    let bytes = std::fs::read(&file)?;
    std::fs::write(&file, &bytes[..bytes.len() / 2])?;
    let after_damage = start_projections(&s, &s.prefix, &["--snapshot-interval", "1h"]).await?;
    let log = after_damage.log_text();
    assert!(
        log.contains("snapshot of the views ignored") && log.contains("damaged"),
        "{log}"
    );
    alike(&after_damage, &full, total).await?;
    drop(after_damage);

    // Another deployment's snapshot (other topics): reported, not used.
    std::fs::write(&file, &bytes)?;
    let other = sessionfold_e2e::unique_prefix("projrestart-other");
    let foreign = start_projections(
        &s,
        &other,
        &[
            "--snapshot-dir",
            &dir.to_string_lossy(),
            "--snapshot-interval",
            "1h",
        ],
    )
    .await?;
    let log = foreign.log_text();
    assert!(
        log.contains("snapshot of the views ignored") && log.contains("foreign"),
        "{log}"
    );
    assert_eq!(users_held(&foreign).await?, 0.0);
    Ok(())
}
