//! Warm standbys on a real broker: a member killed while another keeps warm
//! copies of its partitions is taken over from those copies, its partitions
//! folding again within a second of the group noticing; without standbys
//! the same kill is a full restore. A copy that fell behind takes over by
//! reading exactly the changelog records it lacked.
//!
//! Apache Kafka drops the dead member after the session timeout the test
//! sets. tansu 0.6.0 does not tell the survivor to rejoin: it finds the
//! partitions without an owner itself, after twice the session timeout and
//! a grace period, so the gap is not measured there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sessionfold_e2e::{
    Feeder, Service, activity, consume_all, eventually, get_json, now_millis, on_tansu,
    session_started, unique_prefix,
};
use sessionfold_schemas::Topics;

/// The group's session timeout in these tests, and its heartbeats: a dead
/// member is noticed this long after its last heartbeat.
const SESSION_TIMEOUT_MS: i64 = 6_000;

/// Every change published at once, so that the changelog shows when each
/// partition folds.
const ARGS: [&str; 6] = [
    "--session-timeout",
    "6s",
    "--heartbeat-interval",
    "500ms",
    "--activity-resolution",
    "0",
];

const USERS: usize = 12;

/// One test's topics, scratch directory and projections.
struct Pair {
    prefix: String,
    dir: tempfile::TempDir,
    projections: Service,
}

impl Pair {
    async fn start(test: &str) -> anyhow::Result<Pair> {
        let prefix = unique_prefix(test);
        let dir = sessionfold_e2e::scratch()?;
        let projections =
            Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
        Ok(Pair {
            prefix,
            dir,
            projections,
        })
    }

    /// A member whose store is the scratch directory's `name`.
    async fn member(&self, name: &str, standby: bool) -> anyhow::Result<Service> {
        let mut args = ARGS.to_vec();
        if standby {
            args.extend(["--standby-replicas", "1"]);
        }
        sessionfold_e2e::start_processor(
            &self.prefix,
            &self.dir.path().join(name),
            self.dir.path(),
            &args,
        )
        .await
    }

    fn topics(&self) -> Topics {
        Topics::new(&self.prefix)
    }
}

/// Round `r` of the traffic: the session starts, then one heartbeat per user.
fn round(r: usize, at: i64) -> Vec<sessionfold_schemas::ActivityEvent> {
    (0..USERS)
        .map(|u| {
            let user = format!("u{u:02}");
            if r == 0 {
                session_started(format!("{user}-start"), &user, at)
            } else {
                activity(format!("{user}-{r}"), &user, at, false)
            }
        })
        .collect()
}

/// Waits until every user's session shows `beats` heartbeats.
async fn exact_counts(projections: &Service, beats: i64) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/presence/active?window=1h&limit=1000",
        projections.url
    );
    let want: BTreeMap<String, i64> = (0..USERS).map(|u| (format!("u{u:02}"), beats)).collect();
    eventually(
        Duration::from_secs(120),
        "exact heartbeat counts",
        || async {
            let (_, page) = get_json(&url).await?;
            let got: BTreeMap<String, i64> = page["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| {
                    Some((
                        u["user_id"].as_str()?.to_owned(),
                        u["sessions"][0]["heartbeats"].as_i64()?,
                    ))
                })
                .collect();
            Ok((got == want).then_some(()))
        },
    )
    .await
}

/// The input partitions of `topic` that `member` owns, from its lag series.
async fn owned(member: &Service, topic: &str) -> anyhow::Result<BTreeSet<i32>> {
    let text = reqwest::get(format!("{}/metrics", member.url))
        .await?
        .text()
        .await?;
    let wanted = format!("topic=\"{topic}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("sessionfold_processor_consumer_lag{") && l.contains(&wanted))
        .filter_map(|l| {
            let (_, rest) = l.split_once("partition=\"")?;
            rest.split('"').next()?.parse().ok()
        })
        .collect())
}

/// The survivor's standby lag series of activity partition `p`.
fn lag_series(topics: &Topics, p: i32) -> String {
    format!(
        "sessionfold_processor_standby_lag_records{{partition=\"{p}\",topic=\"{}\"}}",
        topics.activity
    )
}

fn takeovers(kind: &str) -> String {
    format!(r#"sessionfold_processor_takeovers_total{{kind="{kind}"}}"#)
}

/// What one kill showed.
struct Kill {
    /// Longest time, over the moved partitions, between their last change
    /// before the kill and their first after it.
    gap_ms: i64,
    /// Partitions the kill made the survivor take from warm copies.
    standby: f64,
    /// And from the whole changelog.
    full: f64,
}

/// Two members, traffic at 20 rounds a second, the first member killed
/// with -9 once both hold their partitions (and, with standbys, the
/// survivor's copies are current); the survivor, which never owned the
/// dead member's partitions, takes everything.
async fn kill_one(test: &str, standby: bool) -> anyhow::Result<Kill> {
    let pair = Pair::start(test).await?;
    let feeder = Feeder::new(&pair.prefix)?;
    let topics = pair.topics();
    let mut doomed = pair.member("first", standby).await?;
    feeder.send(&round(0, now_millis())).await?;
    let survivor = pair.member("second", standby).await?;
    let moved = eventually(
        Duration::from_secs(60),
        "both members own activity partitions",
        || async {
            let (mine, theirs) = (
                owned(&survivor, &topics.activity).await?,
                owned(&doomed, &topics.activity).await?,
            );
            Ok(
                (!mine.is_empty() && !theirs.is_empty() && mine.len() + theirs.len() == 3)
                    .then_some(theirs),
            )
        },
    )
    .await?;
    if standby {
        eventually(
            Duration::from_secs(60),
            "the survivor's copies of the other's partitions are current",
            || async {
                let mut lag = 0.0;
                for p in &moved {
                    lag += survivor.metric(&lag_series(&topics, *p)).await?;
                }
                let copies = survivor
                    .metric("sessionfold_processor_standby_partitions")
                    .await?;
                Ok((copies >= moved.len() as f64 && lag == 0.0).then_some(()))
            },
        )
        .await?;
    }
    // Taking partitions on when it joined counted too: only what the kill adds.
    let standby_before = survivor.metric(&takeovers("standby")).await?;
    let full_before = survivor.metric(&takeovers("full_restore")).await?;
    let rounds = 2 + 2 * (SESSION_TIMEOUT_MS as usize / 50);
    let kill_at = 40;
    let start = tokio::time::Instant::now();
    let mut killed_ms = 0;
    for r in 1..rounds {
        if r == kill_at {
            killed_ms = now_millis();
            doomed.kill();
        }
        feeder.send(&round(r, now_millis())).await?;
        // Traffic at survivor steady rate, not survivor wait for survivor condition.
        tokio::time::sleep_until(start + Duration::from_millis(50 * r as u64)).await;
    }
    exact_counts(&pair.projections, rounds as i64 - 1).await?;
    eventually(
        Duration::from_secs(60),
        "the survivor owns all 6 partitions",
        || async {
            Ok((survivor
                .metric("sessionfold_processor_partitions_assigned")
                .await?
                == 6.0)
                .then_some(()))
        },
    )
    .await?;
    let records = consume_all(&topics.presence, usize::MAX, Duration::from_secs(5)).await?;
    let mut gap_ms = 0;
    for p in &moved {
        let times: Vec<i64> = records
            .iter()
            .filter(|r| r.partition == *p)
            .filter_map(|r| r.timestamp)
            .collect();
        let before = times.iter().filter(|t| **t <= killed_ms).max();
        let after = times.iter().filter(|t| **t > killed_ms).min();
        let (Some(before), Some(after)) = (before, after) else {
            anyhow::bail!("partition {p}: no change on both sides of the kill");
        };
        gap_ms = gap_ms.max(after - before);
    }
    Ok(Kill {
        gap_ms,
        standby: survivor.metric(&takeovers("standby")).await? - standby_before,
        full: survivor.metric(&takeovers("full_restore")).await? - full_before,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_s_partitions_are_taken_from_warm_copies() -> anyhow::Result<()> {
    let warm = kill_one("standby-kill", true).await?;
    let cold = kill_one("standby-none", false).await?;
    eprintln!(
        "gap with standbys {} ms, without {} ms (session timeout {SESSION_TIMEOUT_MS} ms)",
        warm.gap_ms, cold.gap_ms
    );
    // The survivor never owned the moved partitions: with standbys it
    // tailed them since it joined, without it restores them from the
    // whole changelog.
    assert!(warm.standby >= 1.0, "{} standby takeovers", warm.standby);
    assert_eq!(warm.full, 0.0, "full restores with warm copies");
    assert_eq!(cold.standby, 0.0, "standby takeovers without standbys");
    assert!(
        cold.full >= 1.0,
        "{} full restores without standbys",
        cold.full
    );
    if on_tansu() {
        // The kinds above hold on tansu; the gap bound cannot, and says so.
        return sessionfold_e2e::skip(
            "standby takeover gap under 1 s beyond the session timeout",
            "tansu 0.6.0 does not rebalance when a member's session times out; the survivor finds the orphaned partitions itself after twice the timeout",
        );
    }
    assert!(
        warm.gap_ms - SESSION_TIMEOUT_MS < 1_000,
        "moved partitions stopped for {} ms, {} ms past the session timeout",
        warm.gap_ms,
        warm.gap_ms - SESSION_TIMEOUT_MS
    );
    Ok(())
}

/// The changelog's end per partition, from its records.
fn ends(records: &[sessionfold_e2e::Record]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for r in records {
        let e = out.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fell_behind_reads_exactly_its_tail() -> anyhow::Result<()> {
    let pair = Pair::start("standby-behind").await?;
    let feeder = Feeder::new(&pair.prefix)?;
    let topics = pair.topics();
    let mut a = pair.member("a", true).await?;
    feeder.send(&round(0, now_millis())).await?;
    let mut b = pair.member("b", true).await?;
    let copied = eventually(
        Duration::from_secs(60),
        "both members own activity partitions",
        || async {
            let (mine, theirs) = (
                owned(&a, &topics.activity).await?,
                owned(&b, &topics.activity).await?,
            );
            Ok(
                (!mine.is_empty() && !theirs.is_empty() && mine.len() + theirs.len() == 3)
                    .then_some(theirs),
            )
        },
    )
    .await?;
    for r in 1..=10 {
        feeder.send(&round(r, now_millis())).await?;
    }
    exact_counts(&pair.projections, 10).await?;
    // The copies hold everything the changelog holds, then stop with `a`.
    eventually(Duration::from_secs(60), "copies current", || async {
        let mut lag = 0.0;
        for p in &copied {
            lag += a.metric(&lag_series(&topics, *p)).await?;
        }
        let copies = a.metric("sessionfold_processor_standby_partitions").await?;
        Ok((copies >= copied.len() as f64 && lag == 0.0).then_some(()))
    })
    .await?;
    let at_stop = ends(&consume_all(&topics.presence, usize::MAX, Duration::from_secs(5)).await?);
    a.stop(Duration::from_secs(30)).await?;
    // `b` folds on alone, then dies; `a` comes back behind and takes all.
    for r in 11..=20 {
        feeder.send(&round(r, now_millis())).await?;
    }
    exact_counts(&pair.projections, 20).await?;
    let at_kill = ends(&consume_all(&topics.presence, usize::MAX, Duration::from_secs(5)).await?);
    b.kill();
    let a = pair.member("a", true).await?;
    eventually(
        Duration::from_secs(60),
        "`a` owns all 6 partitions",
        || async {
            Ok((a
                .metric("sessionfold_processor_partitions_assigned")
                .await?
                == 6.0)
                .then_some(()))
        },
    )
    .await?;
    for r in 21..=25 {
        feeder.send(&round(r, now_millis())).await?;
    }
    exact_counts(&pair.projections, 25).await?;
    let tail: i64 = copied
        .iter()
        .map(|p| at_kill.get(p).copied().unwrap_or(0) - at_stop.get(p).copied().unwrap_or(0))
        .sum();
    assert!(tail > 0, "no record written while the copies were behind");
    let read = a
        .metric(r#"sessionfold_processor_takeover_restored_records_sum{kind="standby"}"#)
        .await?;
    assert_eq!(
        read, tail as f64,
        "records read to bring the copies up to date"
    );
    assert_eq!(a.metric(&takeovers("standby")).await?, copied.len() as f64);
    Ok(())
}
