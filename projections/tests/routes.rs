//! The projections' routes in process (`Router` + `oneshot`) over views
//! filled by hand: who may read what, and the answer shapes.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sessionfold_auth::{Authenticator, Claims, mint_hs256};
use sessionfold_edge::now_millis;
use sessionfold_projections::metrics::Metrics;
use sessionfold_projections::{AppState, Settings, app};
use sessionfold_schemas::{SessionState, Topics, UserPresence};
use tower::ServiceExt;

const SECRET: &[u8] = b"routes-test-secret";

fn user(id: &str, at: i64) -> UserPresence {
    UserPresence {
        user_id: id.into(),
        email: Some(format!("{id}@example.com").into()),
        sessions: vec![SessionState {
            session_id: format!("{id}-s").into(),
            started_at: Some(at - 1000),
            last_activity: at,
            page_at: at,
            active: true,
            heartbeats: 3,
            ..SessionState::default()
        }],
        profile_at: at - 1000,
        ..UserPresence::default()
    }
}

fn state() -> AppState {
    let settings = Settings {
        brokers: "127.0.0.1:1".into(),
        topics: Topics::new("routes"),
        partitions: 1,
        idle_timeout: 300_000,
        idle_timeout_set: false,
        stale_after: 86_400_000,
        auth: Authenticator::hs256(SECRET),
        stream_buffer: 16,
    };
    let state = AppState::new(&settings, Metrics::new().expect("metrics register"));
    let now = now_millis();
    {
        let mut view = sessionfold_edge::write(&state.views.presence);
        view.apply("alice", Some(user("alice", now)));
        view.apply("bob", Some(user("bob", now - 10)));
    }
    state.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    state
}

fn token(sub: &str, roles: &[&str], permissions: &[&str]) -> String {
    let claims = Claims::expiring_in(
        sub,
        roles.iter().map(|r| (*r).to_owned()).collect(),
        permissions.iter().map(|p| (*p).to_owned()).collect(),
        Duration::from_secs(600),
    );
    mint_hs256(SECRET, &claims).expect("signs")
}

async fn get(path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app(state())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("the router answers");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn each_caller_reads_what_the_rules_allow() {
    let alice = token("alice", &[], &[]);
    let viewer = token("viewer", &[], &["USER_VIEW_ACTIVE_SESSIONS"]);
    assert_eq!(
        get("/v1/presence/active", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/v1/presence/active", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, page) = get("/v1/presence/active?window=5m", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(page["total"], 2);
    let (status, me) = get("/v1/presence/users/alice", Some(&alice)).await;
    assert_eq!(
        (status, &me["sessions"][0]["heartbeats"]),
        (StatusCode::OK, &Value::from(3))
    );
    assert_eq!(me["online"], true);
    // Another user's presence: not found, so its existence does not leak.
    assert_eq!(
        get("/v1/presence/users/bob", Some(&alice)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/v1/presence/users/bob", Some(&viewer)).await.0,
        StatusCode::OK
    );
}
