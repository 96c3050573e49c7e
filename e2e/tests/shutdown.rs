//! Every service stops on SIGTERM within a bounded time and exits 0: the
//! producer delivers what it accepted, the processor commits its batch, and
//! the projections end an open stream with a last `closing` event.

use std::time::{Duration, Instant};

use serde_json::json;
use sessionfold_e2e::{SseClient, Stack, consume_all, post_json, root_token};
use sessionfold_schemas::Topics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_stops_cleanly_on_sigterm() -> anyhow::Result<()> {
    let mut stack = Stack::start("sigterm", &[], &[]).await?;
    let mut sse = SseClient::connect(
        &format!("{}/v1/stream", stack.projections.url),
        &root_token(),
        None,
    )
    .await?;
    let events: Vec<_> = (0..200)
        .map(|i| json!({"kind": "heartbeat", "user_id": format!("t{}", i % 20), "session_id": "s", "activity": "timer", "event_id": format!("e{i}")}))
        .collect();
    let (status, body) = post_json(
        &format!("{}/v1/activity", stack.producer.url),
        &json!({"events": events}),
    )
    .await?;
    assert_eq!(status, 202, "{body}");

    // The producer: accepted events are delivered before it exits.
    let t = Instant::now();
    let exit = stack.producer.stop(Duration::from_secs(20)).await?;
    assert!(exit.success(), "producer exit {exit}");
    let took = t.elapsed();
    let delivered = consume_all(
        &Topics::new(&stack.prefix).activity,
        200,
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(delivered.len(), 200, "every accepted event is on the topic");

    // The processor commits and leaves.
    let t2 = Instant::now();
    let exit = stack.processor.stop(Duration::from_secs(30)).await?;
    assert!(exit.success(), "processor exit {exit}");
    let took2 = t2.elapsed();

    // The projections end the open stream with a last event.
    let t3 = Instant::now();
    let exit = stack.projections.stop(Duration::from_secs(15)).await?;
    assert!(exit.success(), "projections exit {exit}");
    let took3 = t3.elapsed();
    let mut last = None;
    loop {
        match sse.next(Duration::from_secs(5)).await {
            Ok(Some(e)) => last = Some(e),
            Ok(None) => break,
            Err(e) => anyhow::bail!("the stream did not end cleanly after {last:?}: {e:#}"),
        }
    }
    assert_eq!(last.map(|e| e.event).as_deref(), Some("closing"));
    assert!(took3 < Duration::from_secs(5), "projections took {took3:?}");
    eprintln!("stopped in {took:?} (producer), {took2:?} (processor), {took3:?} (projections)");
    Ok(())
}
