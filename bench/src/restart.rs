//! How long a projections instance takes from start to ready over a large
//! presence changelog: from its local snapshot (reading only the tail)
//! against reading every record, in alternated rounds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sessionfold_schemas::{ActivityBody, Topics};

use crate::services::{Service, metric_sum};
use crate::steady::report::{Spread, spread};

/// One restart bench's figures.
#[derive(Debug, Clone)]
pub struct RestartRun {
    /// Users (one session each) in the changelog.
    pub users: usize,
    /// Changelog records per user (each user's changes, uncompacted).
    pub updates: usize,
    /// Start to ready, from the snapshot, ms.
    pub from_snapshot: Spread,
    /// Start to ready, reading the whole changelog, ms.
    pub full_read: Spread,
    /// Size of the snapshot file.
    pub snapshot_bytes: u64,
    /// Time to write the snapshot on stop, ms (stop to exit).
    pub stop_ms: Spread,
}

async fn users_held(p: &Service) -> anyhow::Result<f64> {
    Ok(metric_sum(
        &p.metrics().await?,
        "sessionfold_projections_presence_users",
    ))
}

/// Starts projections with `args` and times it from spawn to a ready
/// `/readyz` holding every user; returns it and the milliseconds.
async fn time_to_ready(
    brokers: &str,
    prefix: &str,
    args: &[&str],
    users: usize,
) -> anyhow::Result<(Service, f64)> {
    let started = Instant::now();
    let mut p = Service::start("sessionfold-projections", brokers, prefix, args).await?;
    p.wait("/readyz", Duration::from_secs(600)).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let held = users_held(&p).await?;
    anyhow::ensure!(
        held == users as f64,
        "ready holding {held} users, not {users}"
    );
    Ok((p, ms))
}

/// Loads `users` users changed `updates` times each through the processor,
/// then restarts projections `rounds` times from the snapshot and as many
/// times with a full read, alternating which goes first.
pub async fn run(
    brokers: &str,
    users: usize,
    updates: usize,
    rounds: usize,
) -> anyhow::Result<RestartRun> {
    let prefix = format!("restart-{users}-{}", std::process::id());
    let topics = Topics::new(&prefix);
    sessionfold_edge::ensure_topics(brokers, &topics, 6, Duration::from_secs(60)).await?;
    let processor = Service::start(
        "sessionfold-processor",
        brokers,
        &prefix,
        &["--idle-timeout", "2h"],
    )
    .await?;
    // Each user changes `updates` times (a session start, then new pages),
    // one round at a time, each folded before the next is sent: every
    // change is a changelog record of its own, as in a day of use before
    // compaction, where a full read reads them all and a snapshot holds one
    // state per user.
    let now = sessionfold_edge::now_millis();
    for update in 0..updates.max(1) {
        eprintln!(
            "restart bench: update {} of {updates} for {users} users",
            update + 1
        );
        let at = now + update as i64;
        let events: Vec<_> = (0..users)
            .map(|n| {
                let (id, user) = (format!("e{update}-{n}"), format!("u{n:07}"));
                let mut e = sessionfold_e2e::session_started(id, &user, at);
                if update > 0 {
                    e.body = ActivityBody::PageViewed {
                        page: format!("/page/{update}"),
                        title: None,
                    };
                }
                e
            })
            .collect();
        let (b, t) = (brokers.to_owned(), topics.clone());
        tokio::task::spawn_blocking(move || crate::pipeline::produce(&b, &t, &events)).await??;
        let sent = ((update + 1) * users) as f64;
        let deadline = Instant::now() + Duration::from_secs(1800);
        while metric_sum(
            &processor.metrics().await?,
            "sessionfold_processor_committed_records_total",
        ) < sent
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the processor never folded every update"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let dir = tempfile::tempdir()?;
    let snapshot_dir = dir.path().to_string_lossy().into_owned();
    let with_snapshot = [
        "--idle-timeout",
        "2h",
        "--snapshot-dir",
        &snapshot_dir,
        "--snapshot-interval",
        "1h",
    ];
    let full = ["--idle-timeout", "2h", "--no-snapshot"];
    // The first start reads everything and leaves the snapshot on stop.
    let mut first =
        Service::start("sessionfold-projections", brokers, &prefix, &with_snapshot).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while users_held(&first).await? < users as f64 {
        anyhow::ensure!(Instant::now() < deadline, "the views never held every user");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    first.wait("/readyz", Duration::from_secs(60)).await?;
    first.stop(Duration::from_secs(120)).await?;
    let (mut snap, mut whole, mut stops) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("restart bench: round {} of {rounds}", round + 1);
        for from_snapshot in [round % 2 == 0, round % 2 == 1] {
            let args: &[&str] = if from_snapshot { &with_snapshot } else { &full };
            let (p, ms) = time_to_ready(brokers, &prefix, args, users).await?;
            let stopped = Instant::now();
            p.stop(Duration::from_secs(120)).await?;
            if from_snapshot {
                snap.push(ms);
                stops.push(stopped.elapsed().as_secs_f64() * 1000.0);
            } else {
                whole.push(ms);
            }
        }
    }
    let snapshot_bytes = std::fs::metadata(dir.path().join("views.snapshot"))?.len();
    Ok(RestartRun {
        users,
        updates,
        from_snapshot: spread(snap),
        full_read: spread(whole),
        snapshot_bytes,
        stop_ms: spread(stops),
    })
}

impl RestartRun {
    /// The section of BENCHMARKS.md.
    pub fn markdown(&self, command: &str, date: &str) -> String {
        let row = |what: &str, s: &Spread| {
            format!(
                "| {what} | {:.0} | {:.0} | {:.0} |\n",
                s.min, s.median, s.max
            )
        };
        let mut md = format!(
            "## Projections restart\n\nMeasured {date} with `{command}` on Apache Kafka: {} users with a session each, each changed {} times (a session start, then new pages), one round at a time, so that the presence changelog (6 partitions, not yet compacted) holds {} records, as after a day of use; the processor folds them all before the projections start. Each round starts a projections instance from its snapshot and one reading the whole changelog (`--no-snapshot`), alternating which goes first, and times each from spawning the process to `/readyz` answering 200 with every user held; each is then stopped with SIGTERM (the one with a snapshot writes it again on stop). The snapshot is {:.1} MB.\n\n| start to ready, ms | min | median | max |\n|---|---|---|---|\n",
            self.users,
            self.updates,
            self.users * self.updates,
            self.snapshot_bytes as f64 / 1e6
        );
        md.push_str(&row("from the snapshot", &self.from_snapshot));
        md.push_str(&row("reading the whole changelog", &self.full_read));
        md.push_str(&row("stop, writing the snapshot", &self.stop_ms));
        crate::sections::wrap("restart", &md)
    }

    /// The `projections` key of bench-results.json.
    pub fn keys(&self) -> Value {
        let mut v = json!({
            "users": self.users,
            "changelog_records": self.users * self.updates,
            "restart_to_ready_ms": self.from_snapshot.median,
            "restart_to_ready_ms_min": self.from_snapshot.min,
            "restart_to_ready_ms_max": self.from_snapshot.max,
            "full_read_to_ready_ms": self.full_read.median,
            "snapshot_bytes": self.snapshot_bytes,
            "stop_writing_snapshot_ms": self.stop_ms.median,
        });
        if self.users == 1_000_000 {
            v["restart_to_ready_ms_1m"] = json!(self.from_snapshot.median);
        }
        v
    }
}
