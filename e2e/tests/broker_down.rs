//! With no broker at start the services stay up, say why they wait, and keep
//! trying; the producer buffers events meanwhile.

use std::time::Duration;

use serde_json::json;
use sessionfold_e2e::{Service, free_port, post_json, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_wait_for_a_missing_broker() -> anyhow::Result<()> {
    let nowhere = format!("127.0.0.1:{}", free_port()?);
    let prefix = unique_prefix("down");
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("state").to_string_lossy().into_owned();
    let mut producer =
        Service::start_on(&nowhere, "sessionfold-producer", &prefix, &[], dir.path()).await?;
    let mut processor = Service::start_on(
        &nowhere,
        "sessionfold-processor",
        &prefix,
        &["--state-dir", &state],
        dir.path(),
    )
    .await?;
    let projections = Service::start_on(
        &nowhere,
        "sessionfold-projections",
        &prefix,
        &[],
        dir.path(),
    )
    .await?;

    let (status, body) = post_json(
        &format!("{}/v1/activity", producer.url),
        &json!({"kind": "heartbeat", "user_id": "u", "session_id": "s", "event_id": "kept"}),
    )
    .await?;
    assert_eq!(status, 202, "buffered while the broker is away: {body}");
    assert_eq!(body["accepted"], json!(["kept"]));
    let ready = reqwest::get(format!("{}/readyz", projections.url)).await?;
    assert_eq!(ready.status().as_u16(), 503);
    let ready = reqwest::get(format!("{}/readyz", processor.url)).await?;
    assert_eq!(ready.status().as_u16(), 503);

    tokio::time::sleep(Duration::from_secs(2)).await;
    for s in [&mut producer, &mut processor] {
        s.wait_http("/healthz", Duration::from_secs(5)).await?;
        let log = s.log_text();
        assert!(
            log.contains("broker not reachable yet; retrying"),
            "{} log:\n{log}",
            s.name
        );
    }
    Ok(())
}
