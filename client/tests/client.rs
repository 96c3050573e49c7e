//! The client against HTTP servers in this process: the real ingest (no
//! broker needed: activity is accepted into its buffer) and a scripted one
//! that answers 503 with part of a batch taken, as a busy ingest does.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sessionfold_auth::{Authenticator, Claims, mint_hs256};
use sessionfold_client::{Client, ClientError};
use sessionfold_ingest::ActivityInput;

const SECRET: &[u8] = b"client-test-secret-of-32-bytes!!";

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn heartbeat(user: &str) -> ActivityInput {
    ActivityInput {
        kind: "heartbeat".into(),
        user_id: user.into(),
        session_id: format!("{user}-s"),
        activity: Some("mouse".into()),
        ..ActivityInput::default()
    }
}

fn token(sub: &str) -> String {
    let claims = Claims::expiring_in(sub, vec![], vec![], std::time::Duration::from_secs(600));
    mint_hs256(SECRET, &claims).expect("signs")
}

#[tokio::test]
async fn the_ingest_takes_what_the_client_sends_and_refuses_what_it_must() {
    let state = sessionfold_producer::AppState::new(
        "127.0.0.1:1",
        sessionfold_schemas::Topics::new("client"),
        sessionfold_producer::Limits::default(),
        1000,
        sessionfold_producer::Metrics::new().expect("metrics"),
        Authenticator::hs256(SECRET),
    )
    .expect("state");
    let url = serve(sessionfold_producer::app(state)).await;
    let ada = Client::new(&url).with_token(token("ada"));
    let ids = ada
        .send_activity(vec![heartbeat("ada"), heartbeat("ada")])
        .await
        .expect("accepted");
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(
        ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{ids:?}"
    );
    // Another user's events: refused, with the ingest's reason, not retried.
    match ada.send_activity(vec![heartbeat("bob")]).await {
        Err(ClientError::Rejected {
            status: 403,
            message,
        }) => assert!(!message.is_empty()),
        other => panic!("expected a 403, got {other:?}"),
    }
    match Client::new(&url)
        .send_activity(vec![heartbeat("ada")])
        .await
    {
        Err(ClientError::Rejected { status: 401, .. }) => {}
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn after_a_503_only_what_was_not_taken_is_sent_again_with_the_same_ids() {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let bodies = seen.clone();
    let router = axum::Router::new().route(
        "/v1/activity",
        axum::routing::post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let bodies = bodies.clone();
            async move {
                assert_eq!(
                    headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok()),
                    Some("Bearer t")
                );
                let ids: Vec<Value> = body["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["event_id"].clone())
                    .collect();
                let first = {
                    let mut b = bodies.lock().expect("lock");
                    b.push(body);
                    b.len() == 1
                };
                if first {
                    // The first event taken, the buffer full for the rest.
                    let answer = json!({"accepted": [ids[0]], "error": "buffer full"});
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "0")],
                        Json(answer),
                    )
                        .into_response()
                } else {
                    (StatusCode::ACCEPTED, Json(json!({ "accepted": ids }))).into_response()
                }
            }
        }),
    );
    let url = serve(router).await;
    let ids = Client::new(&url)
        .with_token("t")
        .send_activity(vec![heartbeat("a"), heartbeat("b"), heartbeat("c")])
        .await
        .expect("accepted in the end");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    let sent = |i: usize| -> Vec<Value> {
        seen[i]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["event_id"].clone())
            .collect()
    };
    let (first, second) = (sent(0), sent(1));
    assert_eq!(first.len(), 3);
    assert_eq!(second, first[1..].to_vec());
    assert_eq!(
        ids,
        first
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    );
}
