//! Heartbeats posted over HTTP become Avro in Kafka, are folded by the
//! processor and show up in the projections: the whole presence path on a real broker.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{Stack, eventually, get_json, post_json, root_token};

async fn stack(test: &str, processor_args: &[&str]) -> anyhow::Result<Stack> {
    Stack::start(test, processor_args, &[]).await
}

fn started(user: &str, device: &str, browser: &str) -> Value {
    json!({
        "kind": "session_started", "user_id": user, "session_id": format!("{user}-s1"),
        "email": format!("{user}@example.com"), "full_name": format!("User {user}"),
        "roles": ["learner"], "device_type": device, "browser": browser, "os": "Linux",
        "page": "/"
    })
}

fn heartbeat(user: &str, page: &str) -> Value {
    json!({"kind": "heartbeat", "user_id": user, "session_id": format!("{user}-s1"), "page": page, "activity": "mouse"})
}

fn page_view(user: &str, page: &str) -> Value {
    json!({"kind": "page_viewed", "user_id": user, "session_id": format!("{user}-s1"), "page": page})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_show_users_online() -> anyhow::Result<()> {
    let s = stack("presence", &[]).await?;
    let ingest = format!("{}/v1/activity", s.producer.url);

    // Four users start sessions; u1..u4 get i heartbeats and i-1 page views each.
    let mut events = Vec::new();
    let devices = [
        ("desktop", "Firefox"),
        ("mobile", "Safari"),
        ("desktop", "Chrome"),
        ("tablet", "Safari"),
    ];
    for (i, (device, browser)) in devices.iter().enumerate() {
        events.push(started(&format!("u{}", i + 1), device, browser));
    }
    let (status, body) = post_json(&ingest, &json!({ "events": events })).await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().map(Vec::len), Some(4));
    for i in 1..=4 {
        let user = format!("u{i}");
        for _ in 0..i {
            let (status, body) =
                post_json(&ingest, &heartbeat(&user, &format!("/course/{i}"))).await?;
            assert_eq!(status, 202, "{body}");
        }
        for _ in 0..(i - 1) {
            let (status, _) = post_json(&ingest, &page_view(&user, "/catalog")).await?;
            assert_eq!(status, 202);
        }
    }
    // A fifth user logs in and out: known, but not active.
    post_json(&ingest, &started("u5", "mobile", "Chrome")).await?;
    post_json(&ingest, &json!({"kind": "session_ended", "user_id": "u5", "session_id": "u5-s1", "reason": "logout"})).await?;

    let active_url = format!("{}/v1/presence/active?window=5m", s.projections.url);
    let page = eventually(
        Duration::from_secs(60),
        "four users online with all their events",
        || async {
            let (_, page) = get_json(&active_url).await?;
            let done = page["total"] == 4
                && page["users"].as_array().is_some_and(|users| {
                    users.iter().all(|u| {
                        let n: i64 = u["user_id"]
                            .as_str()
                            .and_then(|id| id[1..].parse().ok())
                            .unwrap_or(-1);
                        u["sessions"][0]["heartbeats"] == n
                    })
                });
            Ok(done.then_some(page))
        },
    )
    .await?;
    assert_eq!(page["window_seconds"], 300);
    assert_eq!(page["next_cursor"], Value::Null);
    for u in page["users"].as_array().into_iter().flatten() {
        let id = u["user_id"].as_str().unwrap_or_default();
        let n: i64 = id[1..].parse()?;
        assert_eq!(u["online"], true, "{u}");
        assert_eq!(u["email"], format!("{id}@example.com"));
        let session = &u["sessions"][0];
        assert_eq!(session["heartbeats"], n, "{u}");
        assert_eq!(session["page_views"], n - 1, "{u}");
        assert_eq!(session["active"], true);
        let page = if n > 1 {
            "/catalog".to_string()
        } else {
            format!("/course/{n}")
        };
        assert_eq!(session["current_page"], page, "{u}");
    }

    // Pagination: two pages of two cover the same four users.
    let (_, first) = get_json(&format!("{active_url}&limit=2")).await?;
    let cursor = first["next_cursor"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(!cursor.is_empty());
    let (_, second) = get_json(&format!("{active_url}&limit=2&cursor={cursor}")).await?;
    let mut ids: Vec<String> = first["users"]
        .as_array()
        .into_iter()
        .chain(second["users"].as_array())
        .flatten()
        .filter_map(|u| u["user_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    assert_eq!(ids, ["u1", "u2", "u3", "u4"]);
    assert_eq!(second["next_cursor"], Value::Null);

    let (_, summary) = get_json(&format!(
        "{}/v1/presence/summary?window=15m",
        s.projections.url
    ))
    .await?;
    assert_eq!(summary["users"], 4);
    assert_eq!(
        summary["by_device"],
        json!({"desktop": 2, "mobile": 1, "tablet": 1})
    );
    assert_eq!(
        summary["by_browser"],
        json!({"Chrome": 1, "Firefox": 1, "Safari": 2})
    );

    let (status, u5) = get_json(&format!("{}/v1/presence/users/u5", s.projections.url)).await?;
    assert_eq!(status, 200);
    assert_eq!(u5["online"], false);
    assert_eq!(u5["sessions"][0]["ended_reason"], "logout");
    let (status, missing) =
        get_json(&format!("{}/v1/presence/users/nobody", s.projections.url)).await?;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("unknown user \"nobody\""))
    );
    let (status, _) = get_json(&format!(
        "{}/v1/presence/active?window=2d",
        s.projections.url
    ))
    .await?;
    assert_eq!(status, 400);
    // The 22 records were each folded once, and their batches made durable.
    let counts = eventually(
        Duration::from_secs(20),
        "22 records folded and durable",
        || async {
            let folded = s
                .processor
                .metric("sessionfold_processor_folded_records_total")
                .await?;
            let committed = s
                .processor
                .metric("sessionfold_processor_committed_records_total")
                .await?;
            Ok((committed >= 22.0).then_some((folded, committed)))
        },
    )
    .await?;
    assert_eq!(counts, (22.0, 22.0));
    drop(s.processor);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_and_nothing_else_is_lost() -> anyhow::Result<()> {
    let s = stack("badinput", &[]).await?;
    let ingest = format!("{}/v1/activity", s.producer.url);
    let client = reqwest::Client::new();
    let r = client
        .post(&ingest)
        .bearer_auth(root_token())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("body: malformed JSON")),
        "{body}"
    );

    let (status, body) = post_json(
        &ingest,
        &json!({"events": [
            started("ok1", "desktop", "Firefox"),
            {"kind": "teleport", "user_id": "x", "session_id": "y"}
        ]}),
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "events[1].kind");

    let (status, body) =
        post_json(&ingest, &json!({"kind": "heartbeat", "session_id": "s"})).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("user_id: is required"))
    );

    let big = "x".repeat(2 << 20);
    let r = client
        .post(&ingest)
        .bearer_auth(root_token())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 413);

    // The rejected batch left nothing behind: only this valid user appears.
    post_json(&ingest, &started("ok2", "desktop", "Firefox")).await?;
    let url = format!("{}/v1/presence/active", s.projections.url);
    let page = eventually(Duration::from_secs(60), "ok2 online", || async {
        let (_, page) = get_json(&url).await?;
        Ok((page["total"] == 1).then_some(page))
    })
    .await?;
    assert_eq!(page["users"][0]["user_id"], "ok2");
    let (status, _) = get_json(&format!("{}/v1/presence/users/ok1", s.projections.url)).await?;
    assert_eq!(status, 404);
    drop(s.processor);
    Ok(())
}
