//! A processor starts whatever operators and other writers put on its
//! changelogs, and rebuilds a damaged local store from them.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use sessionfold_e2e::{
    Feeder, Service, activity, brokers, eventually, get_json, now_millis, produce_raw,
    session_started, start_processor, unique_prefix,
};
use sessionfold_schemas::Topics;

const USERS: usize = 10;

fn user(u: usize) -> String {
    format!("u{u:02}")
}

/// Sends `beats` heartbeats per user (and a start when `first`).
async fn feed(feeder: &Feeder, round: &str, beats: usize, first: bool) -> anyhow::Result<()> {
    let at = now_millis();
    let events: Vec<_> = (0..USERS)
        .flat_map(|u| {
            let name = user(u);
            let start = first.then(|| session_started(format!("{name}-start"), &name, at));
            start.into_iter().chain(
                (0..beats)
                    .map(move |b| activity(format!("{name}-{round}-{b}"), &name, at + 1, false)),
            )
        })
        .collect();
    feeder.send(&events).await
}

async fn heartbeats_are(projections: &Service, want: i64) -> anyhow::Result<()> {
    let url = format!(
        "{}/v1/presence/active?window=1h&limit=1000",
        projections.url
    );
    let expected: BTreeMap<String, i64> = (0..USERS).map(|u| (user(u), want)).collect();
    eventually(
        Duration::from_secs(90),
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
            Ok((got == expected).then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_changelog_records_do_not_block_a_restore() -> anyhow::Result<()> {
    let prefix = unique_prefix("stray");
    let topics = Topics::new(&prefix);
    let dir = sessionfold_e2e::scratch()?;
    let projections = Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
    let feeder = Feeder::new(&prefix)?;
    let mut p = start_processor(&prefix, &dir.path().join("a"), dir.path(), &[]).await?;
    feed(&feeder, "r1", 2, true).await?;
    heartbeats_are(&projections, 2).await?;
    p.stop(Duration::from_secs(30)).await?;

    // What an operator or a stray producer might leave, written last on
    // the changelog partitions: values that are no state (one under each
    // user's key, so on every partition that holds a user) and a tombstone
    // without headers for a key nobody has. (Kafka itself refuses a record
    // without a key on a compacted topic.)
    let garbage: Vec<(String, Vec<u8>)> = (0..USERS)
        .map(|u| (user(u), format!("not a state {u}").into_bytes()))
        .collect();
    let records: Vec<(Option<&str>, &[u8])> = garbage
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_slice()))
        .collect();
    produce_raw(&topics.presence, &records).await?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .create()?;
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&topics.presence).key("ghost"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;

    // A fresh store: every partition is rebuilt from the changelog.
    let p = start_processor(&prefix, &dir.path().join("b"), dir.path(), &[]).await?;
    assert_eq!(
        p.metric(r#"sessionfold_processor_restore_skipped_records_total{reason="foreign_value"}"#)
            .await?,
        USERS as f64
    );
    assert_eq!(
        p.metric(
            r#"sessionfold_processor_restore_skipped_records_total{reason="tombstone_without_headers"}"#
        )
        .await?,
        1.0
    );
    assert!(
        p.log_text()
            .contains("last changelog record has no batch headers"),
        "the stray record is logged"
    );
    feed(&feeder, "r2", 1, false).await?;
    heartbeats_are(&projections, 3).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_moved_aside_and_rebuilt() -> anyhow::Result<()> {
    let prefix = unique_prefix("damaged");
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("s");
    let projections = Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
    let feeder = Feeder::new(&prefix)?;
    let mut p = start_processor(&prefix, &state, dir.path(), &[]).await?;
    feed(&feeder, "r1", 2, true).await?;
    heartbeats_are(&projections, 2).await?;
    p.stop(Duration::from_secs(30)).await?;
    // A second run leaves a snapshot that points into the data file.
    let mut p = start_processor(&prefix, &state, dir.path(), &[]).await?;
    p.stop(Duration::from_secs(30)).await?;

    // Zero the start of the store's data file: sled can no longer open it.
    let db = state.join("db");
    let mut bytes = std::fs::read(&db)?;
    let end = bytes.len().min(64 * 1024);
    bytes[..end].fill(0);
    std::fs::write(&db, bytes)?;

    let p = start_processor(&prefix, &state, dir.path(), &[]).await?;
    assert_eq!(
        p.metric("sessionfold_processor_store_rebuilt_total")
            .await?,
        1.0,
        "the rebuild is counted; log:\n{}",
        p.log_text()
    );
    let aside = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("s.damaged-"))
        .count();
    assert_eq!(
        aside, 1,
        "the damaged store is kept aside for a person to look at"
    );
    feed(&feeder, "r2", 1, false).await?;
    heartbeats_are(&projections, 3).await?;
    Ok(())
}
