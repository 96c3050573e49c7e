//! The projections' routes in process (`Router` + `oneshot`) over views
//! filled by hand: every route, who may read what, the answer shapes and
//! the error answers.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, Response, StatusCode};
use serde_json::Value;
use sessionfold_auth::{Authenticator, Claims, mint_hs256};
use sessionfold_edge::now_millis;
use sessionfold_projections::freshness::{self, StaleReads};
use sessionfold_projections::metrics::Metrics;
use sessionfold_projections::{AppState, Settings, app};
use sessionfold_schemas::{ImportState, ImportStatus, SessionState, Topics, UserPresence};
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
            current_page: Some("/quiz".into()),
            active: true,
            heartbeats: 3,
            ..SessionState::default()
        }],
        profile_at: at - 1000,
        ..UserPresence::default()
    }
}

fn import(id: &str, owner: &str, at: i64) -> ImportState {
    ImportState {
        import_id: id.into(),
        owner_id: Some(owner.into()),
        previous_owner_id: None,
        status: ImportStatus::InProgress,
        json_hash: "H".into(),
        file_name: "f.json".into(),
        step: None,
        progress: 10,
        questions_imported: 1,
        questions_total: 9,
        started_at: at,
        last_accessed_at: at,
        finished_at: None,
        abandon_reason: None,
        recent_events: Vec::new(),
        source_partition: 0,
        source_offset: 0,
    }
}

fn state() -> AppState {
    state_ready(true)
}

fn state_ready(ready: bool) -> AppState {
    let state = state_with(StaleReads::Serve);
    state
        .ready
        .store(ready, std::sync::atomic::Ordering::SeqCst);
    state
}

/// Views caught up with a broker that answered just now.
fn state_with(stale_reads: StaleReads) -> AppState {
    let settings = Settings {
        brokers: "127.0.0.1:1".into(),
        topics: Topics::new("routes"),
        partitions: 1,
        idle_timeout: 300_000,
        idle_timeout_set: false,
        stale_after: 86_400_000,
        auth: Authenticator::hs256(SECRET),
        stream_buffer: 16,
        max_staleness: 10_000,
        stale_reads,
        snapshot_dir: None,
        snapshot_interval: Duration::from_secs(60),
    };
    let state = AppState::new(&settings, Metrics::new().expect("metrics register"));
    let now = now_millis();
    {
        let mut view = sessionfold_edge::write(&state.views.presence);
        view.apply("alice", Some(user("alice", now)));
        view.apply("bob", Some(user("bob", now - 10)));
    }
    {
        let mut view = sessionfold_edge::write(&state.views.imports);
        view.apply("imp-a", Some(import("imp-a", "alice", now)));
        view.apply("imp-b", Some(import("imp-b", "bob", now)));
    }
    sessionfold_edge::lock(&state.fresh.freshness)
        .probed(now, BTreeMap::from([(("routes.presence".into(), 0), 0)]));
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
    let (status, _, bytes) = get_raw(state(), path, token).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The router's answer to a GET.
async fn send(state: AppState, path: &str, token: Option<&str>) -> Response<Body> {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    app(state)
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("the router answers")
}

/// Status, content type and body of a GET.
async fn get_raw(
    state: AppState,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String, Vec<u8>) {
    let resp = send(state, path, token).await;
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

fn admin() -> String {
    token("root", &["admin"], &[])
}

fn ids<'a>(list: &'a Value, field: &str, key: &str) -> Vec<&'a str> {
    list[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x[key].as_str())
        .collect()
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

#[tokio::test]
async fn every_presence_route_answers_its_shape_or_its_refusal() {
    let alice = token("alice", &[], &[]);
    let (status, summary) = get("/v1/presence/summary", Some(&admin())).await;
    assert_eq!(
        (status, &summary["users"]),
        (StatusCode::OK, &Value::from(2))
    );
    assert_eq!(
        get("/v1/presence/summary", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, online) = get("/v1/presence/online", Some(&admin())).await;
    assert_eq!(status, StatusCode::OK, "{online}");
    assert!(online["points"].is_array(), "{online}");
    assert_eq!(
        get("/v1/presence/online", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("/v1/presence/online", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Rooms: the admin sees every one, a member the rooms it is in.
    let (status, rooms) = get("/v1/presence/rooms", Some(&admin())).await;
    assert_eq!(status, StatusCode::OK, "{rooms}");
    assert_eq!(ids(&rooms, "rooms", "room"), ["/quiz"]);
    assert_eq!(rooms["rooms"][0]["users"], 2, "{rooms}");
    let (status, room) = get("/v1/presence/rooms/%2Fquiz", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!(ids(&room, "members", "user_id"), ["alice", "bob"]);
    let carol = token("carol", &[], &[]);
    assert_eq!(
        get("/v1/presence/rooms/%2Fquiz", Some(&carol)).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, none) = get("/v1/presence/rooms", Some(&carol)).await;
    assert_eq!(
        (status, none["rooms"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    // Bad parameters are refused in JSON, naming the parameter.
    let (status, bad) = get("/v1/presence/rooms?limit=many", Some(&admin())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad["error"].as_str().is_some_and(|e| e.contains("limit")),
        "{bad}"
    );
    let (status, bad) = get("/v1/presence/active?window=soon", Some(&admin())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad["error"].is_string(), "{bad}");
}

#[tokio::test]
async fn every_import_route_answers_its_shape_or_its_refusal() {
    let alice = token("alice", &[], &[]);
    let (status, mine) = get("/v1/imports", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(ids(&mine, "imports", "import_id"), ["imp-a"]);
    assert_eq!(
        get("/v1/imports?all=true", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, all) = get("/v1/imports?all=true", Some(&admin())).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(ids(&all, "imports", "import_id"), ["imp-a", "imp-b"]);
    assert_eq!(
        get("/v1/imports?all=perhaps", Some(&admin())).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, one) = get("/v1/imports/imp-a", Some(&alice)).await;
    assert_eq!(
        (status, &one["owner_id"]),
        (StatusCode::OK, &Value::from("alice"))
    );
    // Another user's import is unknown to alice, not forbidden.
    assert_eq!(
        get("/v1/imports/imp-b", Some(&alice)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/v1/imports/imp-b", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, dup) = get("/v1/imports/duplicates?json_hash=H", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{dup}");
    assert_eq!(ids(&dup, "imports", "import_id"), ["imp-a"]);
    let (status, missing) = get("/v1/imports/duplicates", Some(&alice)).await;
    assert_eq!(
        (status, &missing["error"]),
        (
            StatusCode::BAD_REQUEST,
            &Value::from("json_hash: is required")
        )
    );
    assert_eq!(
        get("/v1/imports/monitor", Some(&alice)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, monitor) = get("/v1/imports/monitor", Some(&admin())).await;
    assert_eq!(status, StatusCode::OK, "{monitor}");
    assert_eq!(ids(&monitor, "imports", "import_id"), ["imp-a", "imp-b"]);
    assert_eq!(
        monitor["imports"][0]["owner_email"], "alice@example.com",
        "{monitor}"
    );
}

#[tokio::test]
async fn the_service_routes_answer_for_probes_scrapers_and_tools() {
    let (status, kind, body) = get_raw(state(), "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{kind}");
    assert!(!body.is_empty());
    assert_eq!(get_raw(state(), "/readyz", None).await.0, StatusCode::OK);
    let (status, _, body) = get_raw(state_ready(false), "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, b"catching up with the changelogs");
    let (status, kind, body) = get_raw(state(), "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/plain"), "{kind}");
    let text = String::from_utf8(body).expect("text");
    assert!(text.contains("sessionfold_projections_ready 1"), "{text}");
    let (status, doc) = get("/openapi.json", None).await;
    assert_eq!(
        (status, &doc["openapi"]),
        (StatusCode::OK, &Value::from("3.1.0"))
    );
    assert_eq!(
        get("/v1/nothing-here", Some(&admin())).await.0,
        StatusCode::NOT_FOUND
    );
    // The stream refuses a caller without a token before it opens.
    assert_eq!(
        get_raw(state(), "/v1/stream", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Views 2 records behind a probe sent 60 s ago, the last change applied at `newest`.
fn stale(state: &AppState, newest: i64) {
    let mut f = sessionfold_edge::lock(&state.fresh.freshness);
    *f = sessionfold_views::freshness::Freshness::new();
    f.applied(("routes.presence".into(), 0), 3, Some(newest));
    f.probed(
        now_millis() - 60_000,
        BTreeMap::from([(("routes.presence".into(), 0), 5)]),
    );
}

#[tokio::test]
async fn every_view_answer_says_how_fresh_it_is() {
    let viewer = token("viewer", &[], &["USER_VIEW_ACTIVE_SESSIONS"]);
    let state = state();
    let probed = state.fresh.report().fresh_as_of.expect("probed");
    let resp = send(state.clone(), "/v1/presence/active", Some(&viewer)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, freshness::FRESH_AS_OF),
        Some(sessionfold_schemas::rfc3339(probed).as_str())
    );
    assert_eq!(header(&resp, freshness::CHANGELOG_LAG), Some("0"));
    // No change applied yet: no time to name.
    assert_eq!(header(&resp, freshness::NEWEST_CHANGE), None);
    let staleness: i64 = header(&resp, freshness::STALENESS_MS)
        .and_then(|s| s.parse().ok())
        .expect("a staleness");
    assert!((0..10_000).contains(&staleness), "{staleness}");
    // Service routes carry none.
    let resp = send(state, "/readyz", None).await;
    assert_eq!(header(&resp, freshness::FRESH_AS_OF), None);
}

#[tokio::test]
async fn stale_views_are_not_ready_and_reads_are_served_or_refused_as_configured() {
    let viewer = token("viewer", &[], &["USER_VIEW_ACTIVE_SESSIONS"]);
    let served = state_with(StaleReads::Serve);
    stale(&served, 1_700_000_000_000);
    let resp = send(served.clone(), "/v1/presence/active", Some(&viewer)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, freshness::CHANGELOG_LAG), Some("2"));
    assert_eq!(header(&resp, freshness::FRESH_AS_OF), None);
    assert_eq!(
        header(&resp, freshness::NEWEST_CHANGE),
        Some("2023-11-14T22:13:20.000Z")
    );
    let (status, _, body) = get_raw(served.clone(), "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        b"the views have not yet caught up with the changelogs"
    );
    let (_, _, metrics) = get_raw(served, "/metrics", None).await;
    let text = String::from_utf8(metrics).expect("text");
    assert!(text.contains("sessionfold_projections_ready 0"), "{text}");
    assert!(
        text.contains("sessionfold_projections_changelog_lag_records 2"),
        "{text}"
    );
    assert!(
        text.contains("sessionfold_projections_view_newest_change_timestamp_seconds 1700000000"),
        "{text}"
    );

    let refused = state_with(StaleReads::Refuse);
    stale(&refused, 1_700_000_000_000);
    let resp = send(refused.clone(), "/v1/presence/active", Some(&viewer)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(header(&resp, freshness::CHANGELOG_LAG), Some("2"));
    // Once the views reach the probe, they are fresh as of its time, 60 s
    // ago: past the 10 s bound, still refused, now with the staleness named.
    sessionfold_edge::lock(&refused.fresh.freshness).applied(
        ("routes.presence".into(), 0),
        5,
        None,
    );
    let (status, _, body) = get_raw(refused.clone(), "/v1/presence/active", Some(&viewer)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).expect("json");
    let why = body["error"].as_str().expect("an error");
    assert!(
        why.starts_with("the views are 60")
            && why.ends_with("ms behind the changelogs (the bound is 10000 ms)"),
        "{why}"
    );
    // A probe answered now: fresh again, and served.
    sessionfold_edge::lock(&refused.fresh.freshness).probed(now_millis(), BTreeMap::new());
    assert_eq!(
        send(refused.clone(), "/v1/presence/active", Some(&viewer))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(get_raw(refused, "/readyz", None).await.0, StatusCode::OK);
}
