//! The ingest's routes in process (`Router` + `oneshot`): every route, who
//! may post what and how a bad body is answered. Nothing here needs a broker: an accepted
//! event waits in the producer's buffer.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sessionfold_auth::{Authenticator, Claims, mint_hs256};
use sessionfold_producer::{AppState, Limits, Metrics, app};
use sessionfold_schemas::Topics;
use tower::ServiceExt;

const SECRET: &[u8] = b"routes-test-secret";

fn state() -> AppState {
    AppState::new(
        "127.0.0.1:1",
        Topics::new("routes"),
        Limits {
            max_body_bytes: 4096,
            // No broker answers here: a request that waits for one gives up soon.
            ack_timeout: std::time::Duration::from_millis(300),
            ..Limits::default()
        },
        1000,
        Metrics::new().expect("metrics register"),
        Authenticator::hs256(SECRET),
    )
    .expect("the state builds without a broker")
}

fn token(sub: &str, roles: &[&str]) -> String {
    let claims = Claims::expiring_in(
        sub,
        roles.iter().map(|r| (*r).to_owned()).collect(),
        Vec::new(),
        std::time::Duration::from_secs(600),
    );
    mint_hs256(SECRET, &claims).expect("signs")
}

async fn post(path: &str, token: Option<&str>, body: String) -> (StatusCode, Value) {
    let (status, _, bytes) = call(app(state()), "POST", path, token, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Status, content type and body of one request to `router`.
async fn call(
    router: axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: String,
) -> (StatusCode, String, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("the router answers");
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, kind, bytes.to_vec())
}

async fn get(path: &str) -> (StatusCode, String, Vec<u8>) {
    call(app(state()), "GET", path, None, String::new()).await
}

fn start(user: &str) -> Value {
    json!({"kind": "session_started", "user_id": user, "session_id": "s1", "email": "a@example.com", "event_id": "e1"})
}

#[tokio::test]
async fn a_user_posts_their_own_events_and_no_one_else_s() {
    let alice = token("alice", &[]);
    let (status, body) = post("/v1/activity", Some(&alice), start("alice").to_string()).await;
    assert_eq!(
        (status, &body["accepted"]),
        (StatusCode::ACCEPTED, &json!(["e1"]))
    );
    let (status, body) = post("/v1/activity", Some(&alice), start("bob").to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let service = token("svc", &["service"]);
    let (status, _) = post("/v1/activity", Some(&service), start("bob").to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post("/v1/activity", None, start("alice").to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        "/v1/activity",
        Some("not-a-jwt"),
        start("alice").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bad_body_is_answered_with_the_field() {
    let alice = token("alice", &[]);
    let (status, body) = post(
        "/v1/activity",
        Some(&alice),
        json!({"kind": "heartbeat", "user_id": "alice", "activity": "click"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "session_id", "{body}");
    let (status, body) = post("/v1/activity", Some(&alice), "{not json".into()).await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("body"))
    );
    let (status, _) = post("/v1/activity", Some(&alice), "x".repeat(5000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn only_import_admins_transfer_imports() {
    let transfer = json!({"kind": "import_transferred", "new_owner_id": "bob"}).to_string();
    let (status, _) = post(
        "/v1/imports/i1/events",
        Some(&token("alice", &[])),
        transfer.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = post(
        "/v1/imports/i1/events?ack=buffer",
        Some(&token("root", &["admin"])),
        transfer.clone(),
    )
    .await;
    assert_eq!(
        (status, &body["acknowledged"]),
        (StatusCode::ACCEPTED, &json!(false)),
        "{body}"
    );
    // Import events wait for the broker by default; with none, the caller
    // is told to send them again, and nothing counts as accepted.
    let (status, body) = post(
        "/v1/imports/i1/events",
        Some(&token("root", &["admin"])),
        transfer,
    )
    .await;
    assert_eq!(
        (status, &body["accepted"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!([])),
        "{body}"
    );
    let (status, body) = post(
        "/v1/activity?ack=later",
        Some(&token("alice", &[])),
        start("alice").to_string(),
    )
    .await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("ack"))
    );
}

#[tokio::test]
async fn a_session_ends_with_its_ticket_and_nothing_else() {
    let router = app(state());
    let alice = token("alice", &[]);
    let (status, _, body) = call(
        router.clone(),
        "POST",
        "/v1/sessions/s1/end-ticket",
        Some(&alice),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ticket: Value = serde_json::from_slice(&body).expect("json");
    let expires_in = ticket["expires_in"].as_u64().expect("a lifetime");
    assert!(expires_in > 0, "{ticket}");
    let ticket = ticket["ticket"].as_str().expect("a ticket").to_owned();
    assert_eq!(
        call(
            router.clone(),
            "POST",
            "/v1/sessions/s1/end-ticket",
            None,
            String::new()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let long = format!("/v1/sessions/{}/end-ticket", "s".repeat(300));
    let (status, _, body) = call(router.clone(), "POST", &long, Some(&alice), String::new()).await;
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("session_id"))
    );
    // The beacon: no bearer token, the ticket is the credential; an end is
    // buffered, not waited for.
    let end = json!({"ticket": ticket, "event_id": "end-1", "reason": "closed"}).to_string();
    let (status, _, body) = call(router.clone(), "POST", "/v1/activity/end", None, end).await;
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (status, &body["accepted"]),
        (StatusCode::ACCEPTED, &json!(["end-1"])),
        "{body}"
    );
    let (status, _, body) = call(
        router.clone(),
        "POST",
        "/v1/activity/end",
        None,
        json!({"reason": "closed"}).to_string(),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("ticket"))
    );
    let forged = json!({"ticket": alice, "reason": "closed"}).to_string();
    assert_eq!(
        call(router, "POST", "/v1/activity/end", None, forged)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn only_admins_and_services_forget_users() {
    let body = json!({"imports": "delete"}).to_string();
    let (status, _) = post(
        "/v1/users/bob/erasure",
        Some(&token("alice", &[])),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post("/v1/users/bob/erasure", None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, refusal) = post(
        "/v1/users/bob/erasure",
        Some(&token("root", &["admin"])),
        "{not json".into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refusal}");
    // An erasure is answered once the broker has it; with none, the caller
    // is told so rather than told it is done.
    let (status, refusal) = post(
        "/v1/users/bob/erasure",
        Some(&token("root", &["admin"])),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refusal}");
}

#[tokio::test]
async fn the_browser_client_and_the_service_routes_are_served() {
    let (status, kind, body) = get("/v1/client/sessionfold.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/javascript"), "{kind}");
    assert!(String::from_utf8_lossy(&body).contains("end-ticket"));
    let (status, kind, _) = get("/v1/client/sessionfold.d.ts").await;
    assert_eq!(status, StatusCode::OK, "{kind}");
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    // Nothing has failed to reach the broker yet: ready.
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
    let (status, kind, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(String::from_utf8_lossy(&body).contains("sessionfold_producer_ready 1"));
    let (status, _, body) = get("/openapi.json").await;
    let doc: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!((status, &doc["openapi"]), (StatusCode::OK, &json!("3.1.0")));
    assert_eq!(get("/v1/nothing-here").await.0, StatusCode::NOT_FOUND);
}
