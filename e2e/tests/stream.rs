//! `GET /v1/stream` on the real services: each subscriber receives exactly
//! the changes its token may see, live, and resumes without gaps.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{SseClient, SseEvent, Stack, eventually, get_json_as, post_json_as, token};

/// `(event, key, change)` of an event, for comparing.
fn summary(e: &SseEvent) -> (String, String, String) {
    let key = e.data["user_id"]
        .as_str()
        .or_else(|| e.data["import_id"].as_str())
        .unwrap_or_default();
    (
        e.event.clone(),
        key.to_owned(),
        e.data["change"].as_str().unwrap_or_default().to_owned(),
    )
}

fn summaries(v: &[SseEvent]) -> Vec<(String, String, String)> {
    let mut s: Vec<_> = v.iter().map(summary).collect();
    s.sort();
    s
}

fn want(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_receives_exactly_what_it_may_see() -> anyhow::Result<()> {
    let s = Stack::start("stream", &[], &[]).await?;
    let (ada, bob) = (token("ada", &[], &[]), token("bob", &[], &[]));
    let admin = token("root", &["admin"], &[]);
    let svc = token("svc", &["service"], &[]);
    let url = format!("{}/v1/stream", s.projections.url);
    let (status, _) = get_json_as(&url, None).await?;
    assert_eq!(status, 401);
    let mut ada_sub = SseClient::connect(&url, &ada, None).await?;
    let mut bob_sub = SseClient::connect(&url, &bob, None).await?;
    let mut admin_sub = SseClient::connect(&url, &admin, None).await?;

    let activity = format!("{}/v1/activity", s.producer.url);
    for user in ["ada", "bob"] {
        let login = json!({"kind": "session_started", "user_id": user,
                           "session_id": format!("{user}-s"), "email": format!("{user}@example.com")});
        assert_eq!(post_json_as(&activity, &login, Some(&svc)).await?.0, 202);
    }
    let events = |id: &str| format!("{}/v1/imports/{id}/events", s.producer.url);
    let start = |owner: Value| {
        json!({"kind": "import_started", "owner_id": owner, "json_hash": "H",
               "file_name": "f.json", "questions_total": 3})
    };
    assert_eq!(
        post_json_as(&events("imp-1"), &start(json!("ada")), Some(&svc))
            .await?
            .0,
        202
    );
    assert_eq!(
        post_json_as(&events("imp-legacy"), &start(Value::Null), Some(&svc))
            .await?
            .0,
        202
    );
    // The transfer goes after the start has been folded, so the order is fixed.
    let one = format!("{}/v1/imports/imp-1", s.projections.url);
    eventually(Duration::from_secs(60), "imp-1 folded", || async {
        Ok((get_json_as(&one, Some(&ada)).await?.0 == 200).then_some(()))
    })
    .await?;
    let transfer = json!({"kind": "import_transferred", "new_owner_id": "bob"});
    assert_eq!(
        post_json_as(&events("imp-1"), &transfer, Some(&admin))
            .await?
            .0,
        202
    );

    let admin_got = admin_sub.drain(Duration::from_secs(4)).await?;
    assert_eq!(
        summaries(&admin_got),
        want(&[
            ("presence", "ada", "online"),
            ("presence", "bob", "online"),
            ("import", "imp-1", "updated"),
            ("import", "imp-legacy", "updated"),
            ("import", "imp-1", "transferred"),
        ])
    );
    let ada_got = ada_sub.drain(Duration::from_secs(1)).await?;
    assert_eq!(
        summaries(&ada_got),
        want(&[
            ("presence", "ada", "online"),
            ("import", "imp-1", "updated"),
            ("import", "imp-1", "transferred"),
        ])
    );
    let bob_got = bob_sub.drain(Duration::from_secs(1)).await?;
    assert_eq!(
        summaries(&bob_got),
        want(&[
            ("presence", "bob", "online"),
            ("import", "imp-1", "transferred")
        ])
    );
    let moved = bob_got
        .iter()
        .find(|e| e.event == "import")
        .map(|e| e.data["import"]["owner_id"].clone());
    assert_eq!(moved, Some(json!("bob")));
    let ada_online = ada_got.iter().find(|e| e.event == "presence").map(|e| {
        (
            e.data["user"]["online"].clone(),
            e.data["user"]["email"].clone(),
        )
    });
    assert_eq!(ada_online, Some((json!(true), json!("ada@example.com"))));

    // A page change of an online user is its own kind of change, for ada and admins only.
    let view =
        json!({"kind": "page_viewed", "user_id": "ada", "session_id": "ada-s", "page": "/imports"});
    assert_eq!(post_json_as(&activity, &view, Some(&svc)).await?.0, 202);
    let page = ada_sub.next(Duration::from_secs(30)).await?;
    assert_eq!(
        page.map(|e| (
            summary(&e),
            e.data["user"]["sessions"][0]["current_page"].clone()
        )),
        Some((
            ("presence".into(), "ada".into(), "page".into()),
            json!("/imports")
        ))
    );
    let admin_page = admin_sub.next(Duration::from_secs(30)).await?;
    assert_eq!(admin_page.map(|e| summary(&e).2), Some("page".to_owned()));
    assert_eq!(bob_sub.drain(Duration::from_secs(1)).await?, Vec::new());

    // Resuming after bob's first event sends exactly the one he missed since.
    let first = bob_got[0].id.clone().unwrap_or_default();
    let mut again = SseClient::connect(&url, &bob, Some(&first)).await?;
    let resumed = again.drain(Duration::from_secs(1)).await?;
    assert_eq!(summaries(&resumed), summaries(&bob_got[1..]));
    assert_eq!(resumed[0].id, bob_got[1].id);
    // An id this instance never gave asks the client to reload.
    let mut lost = SseClient::connect(&url, &bob, Some("0-1")).await?;
    let e = lost.next(Duration::from_secs(5)).await?;
    assert_eq!(e.map(|e| e.event), Some("resync".to_owned()));
    Ok(())
}

/// A stream never outlives its token: when the token expires the server
/// says so in a last event and closes, and the projections accept tokens
/// only from the configured issuer and audience, not before their `nbf`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closes_when_its_token_expires() -> anyhow::Result<()> {
    let stack = Stack::start(
        "stream-expiry",
        &[],
        &[
            "--jwt-issuer",
            "https://id.example.com",
            "--jwt-audience",
            "sessionfold",
        ],
    )
    .await?;
    let now = sessionfold_e2e::now_millis() / 1000;
    let signed = |claims: Value| -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(sessionfold_e2e::TEST_SECRET.as_bytes()),
        )?)
    };
    let claims = json!({"sub": "watcher", "roles": ["admin"], "exp": now + 3,
        "iss": "https://id.example.com", "aud": "sessionfold"});
    let url = format!("{}/v1/stream", stack.projections.url);
    let summary_url = format!("{}/v1/presence/summary", stack.projections.url);
    assert_eq!(
        get_json_as(&summary_url, Some(&signed(claims.clone())?))
            .await?
            .0,
        200
    );
    for (field, value) in [
        ("iss", json!("https://other.example.com")),
        ("aud", json!("billing")),
        ("nbf", json!(now + 86_400)),
    ] {
        let mut c = claims.clone();
        c[field] = value;
        let (status, body) = get_json_as(&summary_url, Some(&signed(c)?)).await?;
        assert_eq!(status, 401, "{field}: {body}");
    }

    let mut sse = SseClient::connect(&url, &signed(claims)?, None).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let last = loop {
        match sse.next(Duration::from_millis(500)).await? {
            Some(e) if e.event == "expired" => break e,
            _ if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("no expiry event within 20 s")
            }
            _ => {}
        }
    };
    assert_eq!(
        last.data["reason"],
        "the token expired; reconnect with a fresh token and Last-Event-ID"
    );
    Ok(())
}

/// A burst of 20,000 users against a buffer of 100: a subscriber that keeps
/// reading is never cut off; what went by too fast is announced in
/// `resync` events, and what it received plus what they say it missed is
/// every change, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_resyncs_a_reading_subscriber_and_never_drops_it() -> anyhow::Result<()> {
    const USERS: usize = 20_000;
    let s = Stack::start("burst", &[], &["--stream-buffer", "100"]).await?;
    let mut stream = SseClient::connect(
        &format!("{}/v1/stream", s.projections.url),
        &sessionfold_e2e::root_token(),
        None,
    )
    .await?;
    let feeder = sessionfold_e2e::Feeder::new(&s.prefix)?;
    let at = sessionfold_e2e::now_millis();
    let burst: Vec<_> = (0..USERS)
        .map(|n| sessionfold_e2e::session_started(format!("b{n}"), &format!("b{n}"), at))
        .collect();
    feeder.send(&burst).await?;
    // The subscriber reads nothing until the views hold the whole burst:
    // its socket fills and the burst outruns it.
    eventually(
        Duration::from_secs(60),
        "the burst in the views",
        || async {
            let held = s
                .projections
                .metric("sessionfold_projections_presence_users")
                .await?;
            Ok((held == USERS as f64).then_some(()))
        },
    )
    .await?;
    let (mut received, mut missed, mut resyncs) = (0u64, 0u64, 0u64);
    while received + missed < USERS as u64 {
        let Some(e) = stream.next(Duration::from_secs(30)).await? else {
            anyhow::bail!(
                "the stream ended or went quiet after {received} changes and {missed} missed"
            );
        };
        match e.event.as_str() {
            "presence" => received += 1,
            "resync" => {
                resyncs += 1;
                missed += e.data["missed"].as_u64().unwrap_or_default();
            }
            other => anyhow::bail!("unexpected {other}: {}", e.data),
        }
    }
    assert_eq!(received + missed, USERS as u64, "{resyncs} resyncs");
    assert!(
        resyncs >= 1 && missed >= 1,
        "the burst never outran the subscriber"
    );
    // Still open: the next change arrives.
    feeder
        .send(&[sessionfold_e2e::session_started(
            "after".into(),
            "after",
            at,
        )])
        .await?;
    let next = stream
        .next(Duration::from_secs(30))
        .await?
        .map(|e| summary(&e));
    assert_eq!(
        next,
        Some(("presence".into(), "after".into(), "online".into()))
    );
    Ok(())
}
