//! The ingest's routes in process (`Router` + `oneshot`): who may post what
//! and how a bad body is answered. Nothing here needs a broker: an accepted
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
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app(state())
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("the router answers");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
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
