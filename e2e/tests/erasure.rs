//! Forgetting a user, on the real broker: the admin route and the CLI write
//! the erasure; the processor deletes the user's presence (a tombstone on
//! the changelog) and hands their imports on or deletes them; the
//! projections drop them; the ingest refuses their events; a replay
//! afterwards, from the topics or from an export, leaves them out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use sessionfold_e2e::{
    Stack, bin, brokers, consume_all, eventually, get_json_as, post_json_as, run_processor_command,
    scratch, token,
};
use sessionfold_schemas::{Contract, Topics};

const ANN: &str = "er-ann-7";
const DAN: &str = "er-dan-7";

/// The last record of each key on a changelog (`None`: a tombstone).
async fn last_by_key(topic: &str) -> anyhow::Result<BTreeMap<String, Option<Vec<u8>>>> {
    let records = consume_all(topic, usize::MAX, Duration::from_secs(5)).await?;
    let mut last = BTreeMap::new();
    for r in records {
        if let Some(k) = r.key {
            last.insert(String::from_utf8_lossy(&k).into_owned(), r.payload);
        }
    }
    Ok(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_user_is_gone_from_state_views_and_replays() -> anyhow::Result<()> {
    let stack = Stack::start("erasure", &[], &[]).await?;
    let topics = Topics::new(&stack.prefix);
    let admin = token("root", &["admin"], &[]);
    let service = token("svc", &["service"], &[]);
    let activity = format!("{}/v1/activity", stack.producer.url);
    let start = |user: &str| {
        json!({"kind": "session_started", "user_id": user, "session_id": format!("{user}-tab"),
               "email": format!("{user}@example.com"), "page": "/quiz"})
    };
    let page = |user: &str| {
        json!({"kind": "page_viewed", "user_id": user, "session_id": format!("{user}-tab"),
               "page": format!("/private/{user}")})
    };
    for user in [ANN, "er-bob", "er-carol", DAN] {
        let body = json!({"events": [start(user), page(user)]});
        let (status, answer) = post_json_as(&activity, &body, Some(&service)).await?;
        assert_eq!(status, 202, "{answer}");
    }
    let import = |id: &str, as_user: &str, body: serde_json::Value| {
        let url = format!("{}/v1/imports/{id}/events", stack.producer.url);
        let t = token(as_user, &[], &[]);
        async move { post_json_as(&url, &body, Some(&t)).await }
    };
    let started = json!({"kind": "import_started", "json_hash": "h", "file_name": "quiz.json", "questions_total": 10});
    for (id, owner) in [
        ("er-a1", ANN),
        ("er-a2", ANN),
        ("er-a3", ANN),
        ("er-c1", "er-carol"),
        ("er-d1", DAN),
    ] {
        assert_eq!(import(id, owner, started.clone()).await?.0, 202);
    }
    // carol's import goes to ann, one of ann's to carol.
    for (id, to) in [("er-c1", ANN), ("er-a3", "er-carol")] {
        let url = format!("{}/v1/imports/{id}/events", stack.producer.url);
        let (status, answer) = post_json_as(
            &url,
            &json!({"kind": "import_transferred", "new_owner_id": to}),
            Some(&admin),
        )
        .await?;
        assert_eq!(status, 202, "{answer}");
    }
    let user_url = |u: &str| format!("{}/v1/presence/users/{u}", stack.projections.url);
    let import_url = |i: &str| format!("{}/v1/imports/{i}", stack.projections.url);
    eventually(Duration::from_secs(60), "everyone folded", || async {
        for u in [ANN, "er-bob", "er-carol", DAN] {
            if get_json_as(&user_url(u), Some(&admin)).await?.0 != 200 {
                return Ok(None);
            }
        }
        let (_, c1) = get_json_as(&import_url("er-c1"), Some(&admin)).await?;
        let (_, a3) = get_json_as(&import_url("er-a3"), Some(&admin)).await?;
        let (d1, _) = get_json_as(&import_url("er-d1"), Some(&admin)).await?;
        Ok((c1["owner_id"] == ANN && a3["owner_id"] == "er-carol" && d1 == 200).then_some(()))
    })
    .await?;

    // Only an admin or a service may forget, and must say what becomes of
    // the imports.
    let erase = format!("{}/v1/users/{ANN}/erasure", stack.producer.url);
    let to_bob = json!({"imports": {"transfer_to": "er-bob"}});
    let (status, _) = post_json_as(&erase, &to_bob, Some(&token(ANN, &[], &[]))).await?;
    assert_eq!(status, 403);
    let (status, answer) = post_json_as(&erase, &json!({}), Some(&admin)).await?;
    assert_eq!((status, answer["field"].as_str()), (400, Some("imports")));
    let (status, answer) = post_json_as(&erase, &to_bob, Some(&admin)).await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["imports"], json!({"transfer_to": "er-bob"}));
    assert_eq!(answer["requested_by"], "root");

    // The CLI forgets dan and deletes his imports.
    let out = std::process::Command::new(bin("sessionfold-producer")?)
        .args(["forget", DAN, "--delete-imports", "--brokers"])
        .arg(brokers())
        .args(["--topic-prefix", &stack.prefix, "--requested-by", "dpo"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "forget failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The ingest refuses their events from now on.
    let (status, answer) = post_json_as(&activity, &start(ANN), Some(&service)).await?;
    assert_eq!(status, 410, "{answer}");
    assert_eq!(answer["field"], "events[0]");
    eventually(
        Duration::from_secs(30),
        "the CLI's erasure known to the ingest",
        || async {
            let (status, _) = post_json_as(&activity, &page(DAN), Some(&service)).await?;
            Ok((status == 410).then_some(()))
        },
    )
    .await?;

    // Projections drop them; the imports follow the rules.
    eventually(Duration::from_secs(60), "both users gone", || async {
        for u in [ANN, DAN] {
            if get_json_as(&user_url(u), Some(&admin)).await?.0 != 404 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    for u in ["er-bob", "er-carol"] {
        assert_eq!(get_json_as(&user_url(u), Some(&admin)).await?.0, 200, "{u}");
    }
    let owners = eventually(Duration::from_secs(60), "imports handed on", || async {
        let mut owners = Vec::new();
        for i in ["er-a1", "er-a2", "er-c1", "er-d1"] {
            let (status, v) = get_json_as(&import_url(i), Some(&admin)).await?;
            owners.push((status, v["owner_id"].as_str().map(str::to_owned)));
        }
        Ok((owners[3].0 == 404 && owners[0].1.as_deref() == Some("er-bob")).then_some(owners))
    })
    .await?;
    let bob = Some("er-bob".to_owned());
    assert_eq!(
        owners,
        vec![
            (200, bob.clone()),
            (200, bob.clone()),
            (200, bob),
            (404, None)
        ]
    );

    // The changelogs end with a tombstone for each of them and for the
    // deleted import; no state left there names them.
    let contract = Contract::load()?;
    let presence = last_by_key(&topics.presence).await?;
    assert_eq!(presence.get(ANN), Some(&None));
    assert_eq!(presence.get(DAN), Some(&None));
    let imports = last_by_key(&topics.import_ownership).await?;
    assert_eq!(imports.get("er-d1"), Some(&None));
    // Owned by ann: bob's now. Given away by ann: no previous owner any
    // more. Given to ann by carol: carol stays the previous owner.
    for (id, owner, previous) in [
        ("er-a1", "er-bob", None),
        ("er-a2", "er-bob", None),
        ("er-a3", "er-carol", None),
        ("er-c1", "er-bob", Some("er-carol")),
    ] {
        let bytes = imports.get(id).cloned().flatten().unwrap_or_default();
        let s = contract.decode_import_state(&bytes)?;
        assert_eq!(
            (s.owner_id.as_deref(), s.previous_owner_id.as_deref()),
            (Some(owner), previous),
            "{id}"
        );
    }
    assert_eq!(
        stack
            .processor
            .metric("sessionfold_processor_forgotten_entities_total")
            .await?,
        3.0,
        "two users' presence and one import deleted"
    );

    // A replay now, from the topics and from an export, leaves them out.
    let dir = scratch()?;
    let export = dir.path().join("history.avro");
    let common = ["--brokers", &brokers(), "--topic-prefix", &stack.prefix];
    let mut args = vec!["export"];
    args.extend(common);
    args.extend(["--out", export.to_str().unwrap_or_default()]);
    run_processor_command(&args)?;
    for (name, input) in [("topics", None), ("file", Some(&export))] {
        let out = dir.path().join(name);
        let mut args = vec!["replay"];
        args.extend(common);
        args.extend(["--out", out.to_str().unwrap_or_default()]);
        if let Some(f) = input {
            args.extend(["--input", f.to_str().unwrap_or_default()]);
        }
        run_processor_command(&args)?;
        let users: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("presence-users.json"))?)?;
        let ids: Vec<&str> = users["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["user_id"].as_str())
            .collect();
        assert_eq!(ids, ["er-bob", "er-carol"], "{name}");
        let imports: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("imports.json"))?)?;
        let mut rows: Vec<(&str, &str)> = imports["imports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| Some((i["import_id"].as_str()?, i["owner_id"].as_str()?)))
            .collect();
        rows.sort_unstable();
        assert_eq!(
            rows,
            [
                ("er-a1", "er-bob"),
                ("er-a2", "er-bob"),
                ("er-a3", "er-carol"),
                ("er-c1", "er-bob")
            ],
            "{name}"
        );
        // No output file names them or their pages, e-mail addresses included.
        for entry in std::fs::read_dir(&out)? {
            let path = entry?.path();
            if path.is_file() {
                let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
                for needle in [ANN, DAN] {
                    assert!(
                        !text.contains(needle),
                        "{name}: {} names {needle}",
                        path.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// An erasure is kept once: the same request again writes nothing and
/// answers with the erasure kept, another rule for the imports is refused
/// (409, by the route and by the CLI), so compaction keeps the rule that was
/// applied. After it, nothing of the user comes back: not an event written
/// straight to the topic, not a beacon of a ticket issued before, not the
/// stream's resume buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_is_kept_once_and_nothing_of_the_user_comes_back() -> anyhow::Result<()> {
    const EVE: &str = "er-eve-3";
    let stack = Stack::start("erasure-once", &[], &[]).await?;
    let topics = Topics::new(&stack.prefix);
    let admin = token("root", &["admin"], &[]);
    let eve = token(EVE, &[], &[]);
    let activity = format!("{}/v1/activity", stack.producer.url);
    let user_url = format!("{}/v1/presence/users/{EVE}", stack.projections.url);
    let stream = format!("{}/v1/stream", stack.projections.url);
    let mut watcher = sessionfold_e2e::SseClient::connect(&stream, &admin, None).await?;
    let (status, answer) = post_json_as(
        &activity,
        &json!({"kind": "session_started", "user_id": EVE, "session_id": "eve-tab",
                "email": "eve@example.com", "page": "/eve-private"}),
        Some(&eve),
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    // The first change held in the stream's buffer is eve's.
    let first = loop {
        let Some(e) = watcher.next(Duration::from_secs(60)).await? else {
            anyhow::bail!("no change of eve on the stream");
        };
        if e.data["user_id"] == EVE {
            break e
                .id
                .ok_or_else(|| anyhow::anyhow!("an event without an id"))?;
        }
    };
    let ticket_url = format!("{}/v1/sessions/eve-tab/end-ticket", stack.producer.url);
    let (status, t) = post_json_as(&ticket_url, &json!({}), Some(&eve)).await?;
    assert_eq!(status, 200, "{t}");
    let ticket = t["ticket"].as_str().unwrap_or_default().to_owned();

    let erase = format!("{}/v1/users/{EVE}/erasure", stack.producer.url);
    let (status, kept) = post_json_as(&erase, &json!({"imports": "delete"}), Some(&admin)).await?;
    assert_eq!(status, 202, "{kept}");
    let (status, again) = post_json_as(&erase, &json!({"imports": "delete"}), Some(&admin)).await?;
    assert_eq!(
        (status, &again),
        (200, &kept),
        "the same rule again answers the kept erasure"
    );
    let (status, other) = post_json_as(
        &erase,
        &json!({"imports": {"transfer_to": "er-frank"}}),
        Some(&admin),
    )
    .await?;
    assert_eq!(status, 409, "{other}");
    assert_eq!(other["kept"], kept);
    let out = std::process::Command::new(bin("sessionfold-producer")?)
        .args([
            "forget",
            EVE,
            "--transfer-imports-to",
            "er-frank",
            "--brokers",
        ])
        .arg(brokers())
        .args(["--topic-prefix", &stack.prefix])
        .output()?;
    assert!(!out.status.success(), "the CLI must refuse another rule");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another rule"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = consume_all(&topics.erasures, 2, Duration::from_secs(5)).await?;
    assert_eq!(records.len(), 1, "one erasure record for eve: {records:?}");

    eventually(Duration::from_secs(60), "eve gone", || async {
        Ok((get_json_as(&user_url, Some(&admin)).await?.0 == 404).then_some(()))
    })
    .await?;
    // A beacon with the ticket issued before: refused, nothing written.
    let beacon = reqwest::Client::new()
        .post(format!("{}/v1/activity/end", stack.producer.url))
        .header("content-type", "text/plain")
        .body(json!({"ticket": ticket, "reason": "closed"}).to_string())
        .send()
        .await?;
    assert_eq!(beacon.status().as_u16(), 410);
    // An event written straight to the topic, past the ingest: left out.
    let feeder = sessionfold_e2e::Feeder::new(&stack.prefix)?;
    feeder
        .send(&[sessionfold_e2e::activity(
            "eve-direct".into(),
            EVE,
            sessionfold_e2e::now_millis(),
            true,
        )])
        .await?;
    eventually(Duration::from_secs(60), "the direct event left out", || async {
        let n = stack
            .processor
            .metric("sessionfold_processor_events_in_total{kind=\"page_viewed\",outcome=\"forgotten\"}")
            .await?;
        Ok((n == 1.0).then_some(()))
    })
    .await?;
    assert_eq!(get_json_as(&user_url, Some(&admin)).await?.0, 404);
    // The resume buffer no longer holds eve's state: resuming from before
    // her first change brings only her deletion.
    let mut resumed = sessionfold_e2e::SseClient::connect(&stream, &admin, Some(&first)).await?;
    let held = resumed.drain(Duration::from_millis(500)).await?;
    let eves: Vec<(&str, &serde_json::Value)> = held
        .iter()
        .filter(|e| e.data["user_id"] == EVE)
        .map(|e| (e.event.as_str(), &e.data))
        .collect();
    assert!(
        eves.iter()
            .any(|(kind, d)| *kind == "presence" && d["change"] == "deleted"),
        "the deletion is held: {held:?}"
    );
    // Her deletion and her leaving the room she was in; nothing of her state.
    assert!(
        eves.iter().all(|(kind, d)| match *kind {
            "presence" => d["change"] == "deleted" && d["user"].is_null(),
            "room" => d["change"] == "leave",
            _ => false,
        }),
        "{eves:?}"
    );
    assert!(
        !held
            .iter()
            .any(|e| e.data.to_string().contains("eve@example.com")),
        "{held:?}"
    );
    Ok(())
}
