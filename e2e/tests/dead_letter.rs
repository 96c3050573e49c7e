//! Records that cannot be decoded or applied go to the dead-letter topic with
//! the reason and their source position; the events around them are applied.

use std::time::Duration;

use sessionfold_e2e::{Service, consume_all, eventually, get_json, produce_raw, unique_prefix};
use sessionfold_schemas::{
    ActivityBody, ActivityEvent, Contract, Interaction, SessionStarted, Topics, headers,
};

fn event(id: &str, user: &str, at: i64, body: ActivityBody) -> ActivityEvent {
    ActivityEvent {
        event_id: id.into(),
        occurred_at: at,
        user_id: user.into(),
        session_id: format!("{user}-s"),
        body,
        received_at: None,
    }
}

/// A processor (ready, its topics made) and projections on fresh topics; the
/// directory holds their state and logs for as long as the test keeps it.
async fn services(test: &str) -> anyhow::Result<(Topics, tempfile::TempDir, Service, Service)> {
    let prefix = unique_prefix(test);
    let dir = sessionfold_e2e::scratch()?;
    let processor =
        sessionfold_e2e::start_processor(&prefix, &dir.path().join("state"), dir.path(), &[])
            .await?;
    let projections = Service::start("sessionfold-projections", &prefix, &[], dir.path()).await?;
    Ok((Topics::new(&prefix), dir, processor, projections))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_invalid_events_are_dead_lettered() -> anyhow::Result<()> {
    let (topics, _dir, _processor, projections) = services("dlq").await?;
    let c = Contract::load()?;
    let now = chrono_now();
    let start = c.encode_activity(&event(
        "e1",
        "v1",
        now,
        ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: "v1@example.com".into(),
            ..SessionStarted::default()
        })),
    ))?;
    let beat = |id: &str| {
        c.encode_activity(&event(
            id,
            "v1",
            now + 1,
            ActivityBody::Heartbeat {
                page: None,
                activity: Interaction::Click,
            },
        ))
    };
    let (b1, b2) = (beat("e2")?, beat("e3")?);
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&7u64.to_le_bytes());
    unknown.extend_from_slice(b"\x02ab");
    let mut empty_user = event(
        "e4",
        "v1",
        now,
        ActivityBody::Heartbeat {
            page: None,
            activity: Interaction::Timer,
        },
    );
    empty_user.session_id = " ".into();
    let invalid = c.encode_activity(&empty_user)?;
    let misrouted = beat("e5")?;
    produce_raw(
        &topics.activity,
        &[
            (Some("v1"), &start),
            (Some("v1"), b"this is not avro"),
            (Some("v1"), &b1),
            (Some("v1"), &unknown),
            (Some("v1"), &invalid),
            (Some("v2"), &misrouted),
            (Some("v1"), &b2),
        ],
    )
    .await?;

    let dead = consume_all(&topics.dead_letter, 4, Duration::from_secs(60)).await?;
    let mut kinds: Vec<&str> = dead
        .iter()
        .map(|r| {
            r.headers
                .get(headers::ERROR_KIND)
                .map_or("", String::as_str)
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "invalid_value",
            "key_mismatch",
            "not_single_object",
            "unknown_schema"
        ]
    );
    let garbage = dead
        .iter()
        .find(|r| r.payload.as_deref() == Some(b"this is not avro".as_slice()))
        .expect("raw bytes kept");
    assert_eq!(
        garbage.headers.get(headers::SOURCE_TOPIC),
        Some(&topics.activity)
    );
    assert!(garbage.headers.contains_key(headers::SOURCE_OFFSET));
    assert!(garbage.headers.contains_key(headers::SOURCE_PARTITION));
    assert_eq!(
        garbage.headers.get(headers::ERROR).map(String::as_str),
        Some(
            "not Avro single-object encoding: header starts 74 68, expected c3 01 (or 00 and a schema id: the Schema Registry wire format)"
        )
    );
    let invalid = dead
        .iter()
        .find(|r| r.headers.get(headers::ERROR_KIND).map(String::as_str) == Some("invalid_value"));
    assert_eq!(
        invalid
            .and_then(|r| r.headers.get(headers::ERROR))
            .map(String::as_str),
        Some("invalid session_id: must not be empty")
    );

    let url = format!("{}/v1/presence/users/v1", projections.url);
    let user = eventually(
        Duration::from_secs(60),
        "v1 with both heartbeats",
        || async {
            let (status, u) = get_json(&url).await?;
            Ok((status == 200 && u["sessions"][0]["heartbeats"] == 2).then_some(u))
        },
    )
    .await?;
    assert_eq!(user["sessions"][0]["page_views"], 0);
    assert_eq!(user["online"], true);
    let (status, _) = get_json(&format!("{}/v1/presence/users/v2", projections.url)).await?;
    assert_eq!(status, 404);
    Ok(())
}

/// A value just under the broker's default record limit cannot be copied
/// whole to the dead-letter topic with its headers; it is cut short with its
/// size and digest, and the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_to_copy_is_dead_lettered_cut_short() -> anyhow::Result<()> {
    use sha2::Digest;
    let (topics, _dir, _processor, projections) = services("dlqbig").await?;
    let c = Contract::load()?;
    let start = c.encode_activity(&event(
        "e1",
        "big",
        chrono_now(),
        ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: "big@example.com".into(),
            ..SessionStarted::default()
        })),
    ))?;
    // The current schema's header, then bytes that do not decode.
    let mut big = start[..10].to_vec();
    big.extend((0..999_800u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    assert_eq!(big.len(), 999_810);
    produce_raw(
        &topics.activity,
        &[(Some("big"), &big), (Some("big"), &start)],
    )
    .await?;

    let dead = consume_all(&topics.dead_letter, 1, Duration::from_secs(60)).await?;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.payload.as_deref(), Some(&big[..64 * 1024]));
    assert_eq!(
        d.headers.get(headers::ORIGINAL_SIZE).map(String::as_str),
        Some("999810")
    );
    let digest: String = sha2::Sha256::digest(&big)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(d.headers.get(headers::ORIGINAL_SHA256), Some(&digest));
    assert_eq!(
        d.headers.get(headers::ERROR_KIND).map(String::as_str),
        Some("undecodable")
    );
    assert_eq!(
        d.headers.get(headers::SOURCE_OFFSET).map(String::as_str),
        Some("0")
    );
    let url = format!("{}/v1/presence/users/big", projections.url);
    eventually(Duration::from_secs(60), "the next event folded", || async {
        let (status, _) = get_json(&url).await?;
        Ok((status == 200).then_some(()))
    })
    .await?;
    Ok(())
}

/// A record on another partition than its key's murmur2 partition (as a
/// client with another partitioner writes it, librdkafka's default among
/// them) would split its user's state in two: the processor writes it to its
/// key's partition and folds it there, once, even when it arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_on_the_wrong_partition_is_moved_to_its_key_s() -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let (topics, _dir, processor, projections) = services("dlqpart").await?;
    let c = Contract::load()?;
    let now = chrono_now();
    let start = c.encode_activity(&event(
        "p1",
        "w1",
        now,
        ActivityBody::SessionStarted(Box::new(SessionStarted {
            email: "w1@example.com".into(),
            ..SessionStarted::default()
        })),
    ))?;
    let beat = |id: &str| {
        c.encode_activity(&event(
            id,
            "w1",
            now + 1,
            ActivityBody::Heartbeat {
                page: None,
                activity: Interaction::Click,
            },
        ))
    };
    let home = sessionfold_schemas::partition::partition_for(b"w1", 3);
    let away = (home + 1) % 3;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", sessionfold_e2e::brokers())
        .create()?;
    // p2 arrives twice on the wrong partition, as a retry of a producer
    // would write it.
    for (id, bytes, partition) in [
        ("p1", start, home),
        ("p2", beat("p2")?, away),
        ("p3", beat("p3")?, home),
        ("p4", beat("p4")?, away),
        ("p2", beat("p2")?, away),
    ] {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&topics.activity)
                    .key("w1")
                    .partition(partition)
                    .payload(&bytes),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing {id}: {e}"))?;
    }
    let url = format!("{}/v1/presence/users/w1", projections.url);
    let user = eventually(Duration::from_secs(60), "w1 folded", || async {
        let (status, u) = get_json(&url).await?;
        Ok((status == 200 && u["sessions"][0]["heartbeats"] == 3).then_some(u))
    })
    .await?;
    assert_eq!(user["sessions"].as_array().map(Vec::len), Some(1));
    // The copies sit on the key's partition, saying where they came from.
    let records = consume_all(&topics.activity, 8, Duration::from_secs(30)).await?;
    let moved: Vec<&String> = records
        .iter()
        .filter_map(|r| r.headers.get(headers::MOVED_FROM))
        .collect();
    assert_eq!(moved.len(), 3, "{records:?}");
    assert!(
        moved.iter().all(|m| m.starts_with(&format!("{away}@"))),
        "{moved:?}"
    );
    assert_eq!(
        processor
            .metric(&format!(
                "sessionfold_processor_moved_records_total{{topic=\"{}\"}}",
                topics.activity
            ))
            .await?,
        3.0
    );
    assert_eq!(
        processor
            .metric(
                "sessionfold_processor_events_in_total{kind=\"heartbeat\",outcome=\"duplicate\"}"
            )
            .await?,
        1.0
    );
    let log = processor.log_text();
    assert_eq!(
        log.matches("set partitioner=murmur2_random").count(),
        1,
        "the partitioner is named once:\n{log}"
    );
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
