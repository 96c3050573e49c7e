//! The browser client's entry points on the real ingest and broker: the
//! module served at its stable URL, CORS for the configured origin only,
//! and a closing tab's end sent without a bearer token, with the end ticket
//! its session was given.

use std::time::Duration;

use serde_json::json;
use sessionfold_e2e::{Stack, eventually, get_json_as, post_json_as, token};

const ORIGIN: &str = "http://app.example.test";
/// The end tickets' own key, so the test can sign tickets as an attacker
/// with the key would.
const TICKET_SECRET: &str = "browser-client-test-end-ticket-key-0123";

/// An end ticket signed with `key`, for `user`'s `session`, expiring `exp`
/// (seconds since the epoch).
fn ticket_for(key: &str, user: &str, session: &str, exp: u64) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some(sessionfold_auth::END_TICKET_TYPE.into());
    jsonwebtoken::encode(
        &header,
        &json!({"sub": user, "sid": session, "aud": sessionfold_auth::END_TICKET_AUDIENCE, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap_or_default()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_tab_ends_its_session_with_its_end_ticket() -> anyhow::Result<()> {
    let stack = Stack::start_with(
        "browser",
        &[
            "--cors-origin",
            ORIGIN,
            "--end-ticket-secret",
            TICKET_SECRET,
        ],
        &[],
        &[],
    )
    .await?;
    let http = reqwest::Client::new();
    let base = &stack.producer.url;

    // The module and its declarations, exactly as in the repository.
    let served = http
        .get(format!("{base}/v1/client/sessionfold.js"))
        .send()
        .await?;
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let repo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../client/browser/sessionfold.js"
    );
    assert_eq!(served.text().await?, std::fs::read_to_string(repo)?);
    let dts = http
        .get(format!("{base}/v1/client/sessionfold.d.ts"))
        .send()
        .await?;
    assert_eq!(dts.status(), 200);
    assert!(dts.text().await?.contains("export function start("));

    // CORS: the configured origin may send an Authorization header; another
    // origin gets no permission.
    for (origin, allowed) in [(ORIGIN, true), ("http://evil.example.test", false)] {
        let r = http
            .request(reqwest::Method::OPTIONS, format!("{base}/v1/activity"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .await?;
        let allow = r
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(allow.as_deref(), allowed.then_some(origin), "{origin}");
        if allowed {
            let headers = r.headers()["access-control-allow-headers"].to_str()?;
            assert!(headers.contains("authorization"), "{headers}");
        }
    }

    // A tab starts its session and trades its token for an end ticket.
    let ann = token("ann", &[], &[]);
    let start = json!({"kind": "session_started", "user_id": "ann", "session_id": "tab-1",
                       "email": "ann@example.com", "page": "/quiz"});
    let (status, body) = post_json_as(&format!("{base}/v1/activity"), &start, Some(&ann)).await?;
    assert_eq!(status, 202, "{body}");
    let (status, issued) = post_json_as(
        &format!("{base}/v1/sessions/tab-1/end-ticket"),
        &json!({}),
        Some(&ann),
    )
    .await?;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["expires_in"], 900);
    let ticket = issued["ticket"].as_str().unwrap_or_default().to_owned();
    let (status, _) = post_json_as(
        &format!("{base}/v1/sessions/tab-1/end-ticket"),
        &json!({}),
        None,
    )
    .await?;
    assert_eq!(status, 401, "a ticket needs the bearer token");

    let user = format!("{}/v1/presence/users/ann", stack.projections.url);
    eventually(Duration::from_secs(60), "ann online", || async {
        let (_, v) = get_json_as(&user, Some(&ann)).await?;
        Ok((v["online"] == true).then_some(()))
    })
    .await?;

    // The beacon: text/plain, no Authorization header. A forged ticket is
    // refused; the real one ends exactly that session.
    let beacon = |body: serde_json::Value| {
        http.post(format!("{base}/v1/activity/end"))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("origin", ORIGIN)
            .body(body.to_string())
            .send()
    };
    // Refused, each with 403 and nothing written: a ticket signed with
    // another key, one expired past the leeway, the bearer token itself.
    let forged = ticket_for(
        "a-key-that-is-not-the-ticket-key-0000",
        "ann",
        "tab-1",
        now() + 600,
    );
    let expired = ticket_for(TICKET_SECRET, "ann", "tab-1", now() - 30);
    for (what, t) in [("forged", &forged), ("expired", &expired), ("bearer", &ann)] {
        let r = beacon(json!({"ticket": t, "reason": "closed"})).await?;
        assert_eq!(r.status(), 403, "{what}");
    }
    // Another user's ticket ends that user's session, never ann's.
    let bob = token("bob", &[], &[]);
    let (status, bobs) = post_json_as(
        &format!("{base}/v1/sessions/tab-1/end-ticket"),
        &json!({}),
        Some(&bob),
    )
    .await?;
    assert_eq!(status, 200, "{bobs}");
    let r = beacon(json!({"ticket": bobs["ticket"], "event_id": "end-bob", "reason": "closed"}))
        .await?;
    assert_eq!(r.status(), 202);
    // A ticket is no bearer token, at the ingest or at the views.
    let (status, _) = post_json_as(&format!("{base}/v1/activity"), &start, Some(&ticket)).await?;
    assert_eq!(status, 401, "a ticket as a bearer token at the ingest");
    let (status, _) = get_json_as(&user, Some(&ticket)).await?;
    assert_eq!(status, 401, "a ticket as a bearer token at the views");
    let (_, still) = get_json_as(&user, Some(&ann)).await?;
    assert_eq!(
        still["online"], true,
        "only ann's own ticket ends her tab: {still}"
    );
    let r = beacon(json!({"ticket": ticket, "event_id": "end-1", "reason": "closed"})).await?;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ORIGIN)
    );
    let ended = eventually(Duration::from_secs(60), "ann's tab ended", || async {
        let (_, v) = get_json_as(&user, Some(&ann)).await?;
        Ok((v["online"] == false).then_some(v))
    })
    .await?;
    assert_eq!(ended["sessions"][0]["session_id"], "tab-1");
    assert_eq!(ended["sessions"][0]["ended_reason"], "closed");
    assert_eq!(ended["sessions"][0]["active"], false);
    Ok(())
}

/// Settings that would make a ticket pass for a bearer token, or forgeable,
/// stop the producer at start with a clear message; `*` as the CORS origin
/// lets any page call the ingest, without credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_ticket_keys_are_refused_and_any_origin_is_served() -> anyhow::Result<()> {
    let prefix = sessionfold_e2e::unique_prefix("tickets");
    let secret = sessionfold_e2e::TEST_SECRET;
    for (args, says) in [
        (
            vec!["--jwt-secret", secret, "--end-ticket-secret", secret],
            "equals --jwt-secret",
        ),
        (
            vec!["--jwt-secret", secret, "--end-ticket-secret", ""],
            "--end-ticket-secret is 0 bytes",
        ),
        (
            vec!["--jwt-secret", secret, "--end-ticket-secret", "short"],
            "--end-ticket-secret is 5 bytes",
        ),
        (
            vec!["--jwt-secret", "short-jwt-secret"],
            "--jwt-secret is 16 bytes",
        ),
    ] {
        let mut all = vec!["--topic-prefix", prefix.as_str()];
        all.extend(args);
        let (ok, log) =
            sessionfold_e2e::exits_within("sessionfold-producer", &all, Duration::from_secs(30))?;
        assert!(!ok, "{says}: started anyway");
        assert!(log.contains(says), "{says}: {log}");
    }
    let dir = sessionfold_e2e::scratch()?;
    let any = sessionfold_e2e::Service::start(
        "sessionfold-producer",
        &prefix,
        &["--cors-origin", "*"],
        dir.path(),
    )
    .await?;
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/activity", any.url))
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await?;
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    Ok(())
}

/// The ticket route answers one user at most 60 times a minute; past that
/// 429 with `Retry-After`, while another user is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_limited_per_user() -> anyhow::Result<()> {
    let prefix = sessionfold_e2e::unique_prefix("ticket-limit");
    let dir = sessionfold_e2e::scratch()?;
    let producer =
        sessionfold_e2e::Service::start("sessionfold-producer", &prefix, &[], dir.path()).await?;
    let url = format!("{}/v1/sessions/tab-1/end-ticket", producer.url);
    let http = reqwest::Client::new();
    let ask = |who: &str| {
        http.post(&url)
            .bearer_auth(token(who, &[], &[]))
            .json(&json!({}))
            .send()
    };
    let mut answers = Vec::new();
    for _ in 0..61 {
        answers.push(ask("ann").await?.status().as_u16());
    }
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        60,
        "{answers:?}"
    );
    let refused = ask("ann").await?;
    assert_eq!(refused.status().as_u16(), 429);
    let wait: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(ask("bob").await?.status().as_u16(), 200);
    Ok(())
}
