//! The processor's promises on a real broker: on-time expiry with no further
//! events, exact counts through kill -9 and through group rebalances.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sessionfold_e2e::{
    Feeder, Service, activity, consume_all, eventually, get_json, now_millis, session_started,
    unique_prefix,
};
use sessionfold_schemas::{Contract, EndedReason, Topics};

/// The processor's flags in these tests: small batches, each folded on
/// three threads (more than a small machine's cores), so that the parallel
/// fold is what they prove.
const MEMBER_ARGS: [&str; 6] = [
    "--batch-max",
    "50",
    "--fold-threads",
    "3",
    "--fold-parallel-from",
    "1",
];

/// Starts a processor of `prefix`'s group on `state` and waits until it is ready.
async fn processor(
    prefix: &str,
    state: &Path,
    logs: &Path,
    extra: &[&str],
) -> anyhow::Result<Service> {
    let args = [&MEMBER_ARGS[..], extra].concat();
    sessionfold_e2e::start_processor(prefix, state, logs, &args).await
}

/// One test's topics and scratch directory, the projections reading them,
/// and the members of its processor group.
struct Group {
    prefix: String,
    dir: tempfile::TempDir,
    projections: Service,
}

impl Group {
    /// Topics of `test`, with the projections started on them.
    async fn start(test: &str) -> anyhow::Result<Group> {
        let prefix = unique_prefix(test);
        let dir = sessionfold_e2e::scratch()?;
        let projections =
            Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
        Ok(Group {
            prefix,
            dir,
            projections,
        })
    }

    /// A member whose store is the scratch directory's `name`: the same
    /// name again is the same member restarted on its state.
    async fn member(&self, name: &str) -> anyhow::Result<Service> {
        processor(
            &self.prefix,
            &self.dir.path().join(name),
            self.dir.path(),
            &[],
        )
        .await
    }

    fn feeder(&self) -> anyhow::Result<Feeder> {
        Feeder::new(&self.prefix)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_on_time_and_are_purged() -> anyhow::Result<()> {
    let prefix = unique_prefix("expiry");
    let dir = sessionfold_e2e::scratch()?;
    let _p = processor(
        &prefix,
        &dir.path().join("s"),
        dir.path(),
        &[
            "--idle-timeout",
            "2s",
            "--retention",
            "4s",
            "--tick-interval",
            "200ms",
        ],
    )
    .await?;
    let feeder = Feeder::new(&prefix)?;
    let at = now_millis();
    feeder
        .send(&[session_started("x1".into(), "idle-user", at)])
        .await?;

    // Three records for the user: active, expired, then a tombstone. No further event is sent.
    let topic = Topics::new(&prefix).presence;
    let records = consume_all(&topic, 3, Duration::from_secs(30)).await?;
    assert_eq!(records.len(), 3, "active, expired, tombstone");
    let c = Contract::load()?;
    let first = c.decode_presence(records[0].payload.as_deref().unwrap_or_default())?;
    assert!(first.sessions[0].active);
    let expired = c.decode_presence(records[1].payload.as_deref().unwrap_or_default())?;
    assert!(!expired.sessions[0].active);
    assert_eq!(expired.sessions[0].ended_reason, Some(EndedReason::Expired));
    assert_eq!(expired.sessions[0].heartbeats, 0);
    assert!(records[2].payload.is_none(), "purged user is a tombstone");
    // On time: not before idle_timeout, and within idle_timeout plus one tick
    // (and the time to publish, kept under a second).
    let expired_at = records[1].timestamp.unwrap_or_default();
    assert!(
        expired_at - at >= 2_000,
        "expired after {} ms",
        expired_at - at
    );
    assert!(
        expired_at - at <= 2_000 + 200 + 1_000,
        "expired after {} ms",
        expired_at - at
    );
    let purged_at = records[2].timestamp.unwrap_or_default();
    assert!(
        purged_at - at >= 4_000 && purged_at - at <= 4_000 + 200 + 1_000,
        "purged after {} ms",
        purged_at - at
    );
    Ok(())
}

/// Users `u00..uNN`, each with one start, `beats` heartbeats and `views` page views.
struct Stream {
    users: usize,
    beats: usize,
    views: usize,
    base: i64,
}

impl Stream {
    /// The events of round `r` (0 = the starts), interleaved over users.
    fn round(&self, r: usize) -> Vec<sessionfold_schemas::ActivityEvent> {
        (0..self.users)
            .filter_map(|u| {
                let user = format!("u{u:02}");
                let at = self.base + r as i64 * 10;
                if r == 0 {
                    return Some(session_started(format!("{user}-start"), &user, at));
                }
                let k = r - 1;
                (k < self.beats + self.views)
                    .then(|| activity(format!("{user}-{k}"), &user, at, k >= self.beats))
            })
            .collect()
    }

    fn rounds(&self) -> usize {
        1 + self.beats + self.views
    }
}

async fn exact_counts(projections: &Service, s: &Stream) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/presence/active?window=1h&limit=1000",
        projections.url
    );
    let want: BTreeMap<String, (i64, i64)> = (0..s.users)
        .map(|u| (format!("u{u:02}"), (s.beats as i64, s.views as i64)))
        .collect();
    let got = eventually(
        Duration::from_secs(120),
        "exact heartbeat and page view counts",
        || async {
            let (_, page) = get_json(&url).await?;
            let got: BTreeMap<String, (i64, i64)> = page["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| {
                    let s = &u["sessions"][0];
                    Some((
                        u["user_id"].as_str()?.to_owned(),
                        (s["heartbeats"].as_i64()?, s["page_views"].as_i64()?),
                    ))
                })
                .collect();
            Ok((got == want).then_some(got))
        },
    )
    .await;
    match got {
        Ok(_) => Ok(()),
        Err(e) => {
            let (_, page) = get_json(&url).await?;
            anyhow::bail!("{e}\nlast answer: {page}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_never_loses_or_doubles() -> anyhow::Result<()> {
    let g = Group::start("crash").await?;
    let feeder = g.feeder()?;
    let s = Stream {
        users: 20,
        beats: 60,
        views: 15,
        base: now_millis(),
    };
    let mut p = g.member("s").await?;
    let rounds = s.rounds();
    let mut kills = 0;
    for r in 0..rounds {
        feeder.send(&s.round(r)).await?;
        // Every 15 rounds, while the stream flows, kill the processor hard
        // and start it again on the same state directory.
        if r % 15 == 7 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            p.kill();
            kills += 1;
            p = g.member("s").await?;
        }
    }
    assert_eq!(kills, 5);
    exact_counts(&g.projections, &s).await?;
    drop(p);
    Ok(())
}

/// A member joining while the first works through a backlog: the first
/// gives its partitions up in the middle of its catch-up, often with records
/// polled and not yet folded (its log line at the revocation counts them).
/// Every record taken is folded and stored before the partitions go, or read
/// again by their next owner, and the final counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_during_a_backlog_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let g = Group::start("backlog").await?;
    let feeder = g.feeder()?;
    let s = Stream {
        users: 60,
        beats: 900,
        views: 100,
        base: now_millis(),
    };
    let half = s.rounds() / 2;
    for r in 0..half {
        feeder.send(&s.round(r)).await?;
    }
    let a = g.member("a").await?;
    eventually(
        Duration::from_secs(60),
        "the first member folds",
        || async {
            Ok((a
                .metric("sessionfold_processor_folded_records_total")
                .await?
                > 0.0)
                .then_some(()))
        },
    )
    .await?;
    let c = g.member("c").await?;
    for r in half..s.rounds() {
        feeder.send(&s.round(r)).await?;
    }
    exact_counts(&g.projections, &s).await?;
    eventually(
        Duration::from_secs(60),
        "both members own partitions",
        || async {
            Ok((processor_metric(&a, OWNED).await? >= 1.0
                && processor_metric(&c, OWNED).await? >= 1.0)
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// A member killed mid-stream: the survivor takes its partitions, with their
/// state restored from the changelog, no replacement started, and the final
/// counts are exact. Apache Kafka tells the survivor to rejoin once the dead
/// member's session times out; on a broker that does not (tansu 0.6.0), the
/// survivor sees partitions without an owner in the group and rejoins itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_s_partitions_move_with_their_state() -> anyhow::Result<()> {
    let g = Group::start("rebalance").await?;
    let feeder = g.feeder()?;
    let s = Stream {
        users: 24,
        beats: 40,
        views: 10,
        base: now_millis(),
    };
    let mut a = g.member("a").await?;
    let b = g.member("b").await?;
    eventually(
        Duration::from_secs(60),
        "both members own partitions",
        || async {
            Ok((processor_metric(&a, OWNED).await? >= 1.0
                && processor_metric(&b, OWNED).await? >= 1.0)
                .then_some(()))
        },
    )
    .await?;
    let half = s.rounds() / 2;
    for r in 0..half {
        feeder.send(&s.round(r)).await?;
    }
    a.kill();
    for r in half..s.rounds() {
        feeder.send(&s.round(r)).await?;
    }
    exact_counts(&g.projections, &s).await?;
    eventually(
        Duration::from_secs(60),
        "the survivor owns all 3 activity and 3 import partitions",
        || async { Ok((processor_metric(&b, OWNED).await? == 6.0).then_some(())) },
    )
    .await?;
    Ok(())
}

/// A processor killed and started again while the group still counts its
/// dead incarnation as a member (inside the session timeout) owns its
/// partitions again and ends with exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_inside_the_session_timeout_owns_partitions_again() -> anyhow::Result<()> {
    let g = Group::start("restart").await?;
    let feeder = g.feeder()?;
    let s = Stream {
        users: 12,
        beats: 20,
        views: 5,
        base: now_millis(),
    };
    let mut p = g.member("s").await?;
    let half = s.rounds() / 2;
    for r in 0..half {
        feeder.send(&s.round(r)).await?;
    }
    for wait_ms in [2_500, 3_700] {
        p.kill();
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        p = g.member("s").await?;
    }
    for r in half..s.rounds() {
        feeder.send(&s.round(r)).await?;
    }
    exact_counts(&g.projections, &s).await?;
    eventually(
        Duration::from_secs(60),
        "the restarted processor owns all 6 partitions",
        || async { Ok((processor_metric(&p, OWNED).await? == 6.0).then_some(())) },
    )
    .await?;
    p.wait_http("/readyz", Duration::from_secs(60)).await?;
    // Its own store was current: never taken for one ahead of its input and
    // thrown away (a broker whose reported end lags is read to the real end),
    // and a member that holds its partitions is not judged stranded.
    let log = p.log_text();
    assert!(!log.contains("ahead of its input"), "{log}");
    assert!(
        log.matches("leaving and rejoining").count() <= 1,
        "a member that owns its partitions left the group again:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_takes_partitions_with_their_state() -> anyhow::Result<()> {
    let g = Group::start("join").await?;
    let feeder = g.feeder()?;
    let s = Stream {
        users: 24,
        beats: 40,
        views: 10,
        base: now_millis(),
    };
    let _a = g.member("a").await?;
    let half = s.rounds() / 2;
    for r in 0..half {
        feeder.send(&s.round(r)).await?;
    }
    let c = g.member("c").await?;
    eventually(
        Duration::from_secs(60),
        "the newcomer owns partitions",
        || async { Ok((processor_metric(&c, OWNED).await? >= 1.0).then_some(())) },
    )
    .await?;
    for r in half..s.rounds() {
        feeder.send(&s.round(r)).await?;
    }
    exact_counts(&g.projections, &s).await?;
    // The newcomer owns partitions, and built their state from the changelog.
    assert!(processor_metric(&c, OWNED).await? >= 1.0);
    let restored = processor_metric(&c, "sessionfold_processor_restored_records_total").await?;
    assert!(restored >= 1.0, "restored {restored} records");
    // Its store was empty: what it took with state came from the changelog,
    // and each partition taken on is counted once, by kind.
    let kind = |k: &str| format!(r#"sessionfold_processor_takeovers_total{{kind="{k}"}}"#);
    let full = processor_metric(&c, &kind("full_restore")).await?;
    let own = processor_metric(&c, &kind("own_store")).await?;
    assert!(full >= 1.0, "{full} full restores");
    let timed = processor_metric(
        &c,
        "sessionfold_processor_takeover_seconds_count{kind=\"full_restore\"}",
    )
    .await?;
    assert_eq!(timed, full);
    assert!(own + full >= processor_metric(&c, OWNED).await?);
    // Consumer lag (from librdkafka's statistics every 5 s) reaches 0 on every owned partition.
    let url = format!("{}/metrics", c.url);
    eventually(
        Duration::from_secs(20),
        "lag 0 on the newcomer's partitions",
        || async {
            let text = reqwest::get(&url).await?.text().await?;
            let lags: Vec<f64> = text
                .lines()
                .filter(|l| l.starts_with("sessionfold_processor_consumer_lag{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect();
            Ok((!lags.is_empty() && lags.iter().all(|v| *v == 0.0)).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A processor's current value of an unlabelled metric (0 when absent).
async fn processor_metric(svc: &Service, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", svc.url))
        .await?
        .text()
        .await?;
    Ok(metric(&text, name).unwrap_or(0.0))
}

const OWNED: &str = "sessionfold_processor_partitions_assigned";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_another_topic_incarnation_is_discarded() -> anyhow::Result<()> {
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("s");
    // The store reads 60 records of the first incarnation, about 20 per partition.
    let old = unique_prefix("incarnation-old");
    let p = processor(&old, &state, dir.path(), &[]).await?;
    let at = now_millis();
    let events: Vec<_> = (0..30)
        .flat_map(|u| {
            let user = format!("old-{u}");
            [
                session_started(format!("{user}-a"), &user, at),
                activity(format!("{user}-b"), &user, at + 1, false),
            ]
        })
        .collect();
    Feeder::new(&old)?.send(&events).await?;
    consume_all(&Topics::new(&old).presence, 30, Duration::from_secs(60)).await?;
    drop(p);

    // The same store against fresh topics (as after a topic is recreated):
    // its offsets are past their end, and must not make it skip the new records.
    let new = unique_prefix("incarnation-new");
    let p = processor(&new, &state, dir.path(), &[]).await?;
    Feeder::new(&new)?
        .send(&[
            session_started("n-a".into(), "newbie", at),
            activity("n-b".into(), "newbie", at + 1, false),
            activity("n-c".into(), "newbie", at + 2, false),
            activity("n-d".into(), "newbie", at + 3, true),
        ])
        .await?;
    let c = Contract::load()?;
    let topic = Topics::new(&new).presence;
    let last = eventually(Duration::from_secs(60), "newbie folded", || async {
        let records = consume_all(&topic, 100, Duration::from_secs(3)).await?;
        let last = records
            .iter()
            .filter_map(|r| r.payload.as_deref())
            .map(|b| c.decode_presence(b))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .rfind(|s| &*s.user_id == "newbie");
        Ok(last.filter(|s| s.sessions[0].heartbeats == 2))
    })
    .await?;
    assert_eq!(last.sessions[0].page_views, 1);
    assert!(
        p.log_text()
            .contains("local state is ahead of its input topic"),
        "the discard is logged"
    );
    Ok(())
}
