//! Only an import's owner (or an admin, an IMPORT_ADMIN, a service) may write
//! its events: the ingest refuses others with 403, and the processor refuses
//! what reaches the topic without that authority.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use sessionfold_e2e::{
    Stack, brokers, consume_all, eventually, get_json_as, now_millis, post_json_as, token,
    unique_prefix,
};
use sessionfold_schemas::{Contract, ImportBody, ImportEvent, ImportStatus, Topics, headers};

fn not_owner(records: &[sessionfold_e2e::Record]) -> usize {
    records
        .iter()
        .filter(|r| r.headers.get(headers::ERROR_KIND).map(String::as_str) == Some("not_owner"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_write_an_import_s_events() -> anyhow::Result<()> {
    let stack = Stack::start("owners", &[], &[]).await?;
    let (alice, bob) = (token("alice", &[], &[]), token("bob", &[], &[]));
    let admin = token("root", &["admin"], &[]);
    let post = |t: &str, body: serde_json::Value| {
        let url = format!("{}/v1/imports/a-imp/events", stack.producer.url);
        let t = t.to_owned();
        async move { post_json_as(&url, &body, Some(&t)).await }
    };
    let started = json!({"kind": "import_started", "json_hash": "h", "file_name": "f.json", "questions_total": 10});
    assert_eq!(post(&alice, started).await?.0, 202);
    let one = format!("{}/v1/imports/a-imp", stack.projections.url);
    eventually(
        Duration::from_secs(60),
        "alice's import visible",
        || async { Ok((get_json_as(&one, Some(&alice)).await?.0 == 200).then_some(())) },
    )
    .await?;

    // Until the ingest has read the owner, bob's events pass it and the
    // processor refuses them; afterwards the ingest answers 403 itself.
    let passed = std::sync::atomic::AtomicUsize::new(0);
    eventually(
        Duration::from_secs(60),
        "the ingest refuses bob",
        || async {
            let (status, body) = post(&bob, json!({"kind": "import_deleted"})).await?;
            if status == 202 {
                passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok((status == 403).then_some(body))
        },
    )
    .await?;
    for kind in ["import_completed", "import_accessed"] {
        let (status, body) = post(&bob, json!({"kind": kind})).await?;
        assert_eq!(status, 403, "{kind}: {body}");
        assert!(body.to_string().contains("is not yours"), "{body}");
    }
    // Starting it again is writing to it: bob may not, even as its "owner".
    let (status, body) = post(&bob, started_again()).await?;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.to_string().contains("exists already and is not yours"),
        "{body}"
    );
    let progress = json!({"kind": "import_progressed", "step": "parse", "progress": 30, "questions_imported": 3, "questions_total": 10});
    assert_eq!(post(&bob, progress.clone()).await?.0, 403);
    assert_eq!(post(&alice, progress).await?.0, 202);
    assert_eq!(
        post(&admin, json!({"kind": "import_accessed"})).await?.0,
        202
    );

    let state = eventually(
        Duration::from_secs(60),
        "alice's progress folded",
        || async {
            let (_, v) = get_json_as(&one, Some(&alice)).await?;
            Ok((v["progress"] == 30).then_some(v))
        },
    )
    .await?;
    assert_eq!(state["status"], "in_progress");
    assert_eq!(state["owner_id"], "alice");
    // What gets past the ingest is refused by the processor: bob's events
    // that raced the ingest's view, and one written straight to the topic
    // with bob's "owner" role, which the ingest never saw.
    let c = Contract::load()?;
    let forged = c.encode_import(&ImportEvent {
        import_id: "a-imp".into(),
        ..ev("forged", Some("bob"), ImportBody::Deleted)
    })?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .create()?;
    producer
        .send(
            FutureRecord::to(&Topics::new(&stack.prefix).imports)
                .key("a-imp")
                .payload(&forged)
                .headers(OwnedHeaders::new().insert(Header {
                    key: headers::ACTOR_ROLE,
                    value: Some("owner"),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
    let refused = passed.into_inner() + 1;
    let dead = consume_all(
        &Topics::new(&stack.prefix).dead_letter,
        refused,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(not_owner(&dead), refused);
    let (_, v) = get_json_as(&one, Some(&alice)).await?;
    assert_eq!(
        v["status"], "in_progress",
        "the forged deletion changed nothing"
    );
    Ok(())
}

fn started_again() -> serde_json::Value {
    json!({"kind": "import_started", "json_hash": "h2", "file_name": "g.json", "questions_total": 5})
}

fn ev(id: &str, actor: Option<&str>, body: ImportBody) -> ImportEvent {
    ImportEvent {
        event_id: id.into(),
        occurred_at: now_millis(),
        import_id: "i1".into(),
        actor_id: actor.map(str::to_owned),
        body,
        received_at: None,
    }
}

/// A writer that bypasses the ingest cannot borrow an owner's rights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_refuses_events_no_one_vouched_for() -> anyhow::Result<()> {
    let prefix = unique_prefix("owners-direct");
    let topics = Topics::new(&prefix);
    let dir = sessionfold_e2e::scratch()?;
    let _processor =
        sessionfold_e2e::start_processor(&prefix, &dir.path().join("s"), dir.path(), &[]).await?;
    let c = Contract::load()?;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .create()?;
    let send = |e: ImportEvent, role: Option<&'static str>| {
        let bytes = c.encode_import(&e);
        let producer = producer.clone();
        let topic = topics.imports.clone();
        async move {
            let bytes = bytes?;
            let mut r: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&topic).key("i1").payload(&bytes);
            if let Some(role) = role {
                r = r.headers(OwnedHeaders::new().insert(Header {
                    key: headers::ACTOR_ROLE,
                    value: Some(role),
                }));
            }
            producer
                .send(r, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
            anyhow::Ok(())
        }
    };
    let start = ImportBody::Started {
        owner_id: Some("alice".into()),
        json_hash: "h".into(),
        file_name: "f.json".into(),
        questions_total: 10,
    };
    let transfer = || ImportBody::Transferred {
        new_owner_id: "bob".into(),
    };
    send(ev("s", Some("alice"), start), Some("owner")).await?;
    send(ev("x1", Some("bob"), ImportBody::Deleted), None).await?;
    send(ev("x2", Some("bob"), ImportBody::Completed), Some("owner")).await?;
    send(ev("x3", Some("alice"), transfer()), Some("owner")).await?;
    send(ev("ok1", Some("root"), transfer()), Some("admin")).await?;
    send(ev("x4", Some("alice"), ImportBody::Accessed), None).await?;
    send(ev("ok2", None, ImportBody::Completed), None).await?;

    let dead = consume_all(&topics.dead_letter, 4, Duration::from_secs(60)).await?;
    assert_eq!(not_owner(&dead), 4);
    let states = consume_all(&topics.import_ownership, 3, Duration::from_secs(60)).await?;
    let last = states
        .last()
        .and_then(|r| r.payload.as_deref())
        .map(|b| c.decode_import_state(b))
        .transpose()?
        .ok_or_else(|| anyhow::anyhow!("no state"))?;
    assert_eq!(
        (
            last.owner_id.as_deref(),
            last.previous_owner_id.as_deref(),
            last.status
        ),
        (Some("bob"), Some("alice"), ImportStatus::Completed)
    );
    Ok(())
}
