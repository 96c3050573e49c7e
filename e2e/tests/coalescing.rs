//! Heartbeats that only refresh "last active" are held back, not written
//! one by one, on a real broker: a page change is published at once with
//! everything held before it, a kill -9 while refreshes are held loses and
//! doubles none of them, and a stop publishes what is held.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{Stack, eventually, get_json, post_json};

const USER: &str = "c1";

fn heartbeat(page: Option<&str>) -> Value {
    json!({"kind": "heartbeat", "user_id": USER, "session_id": "c1-s", "page": page, "activity": "timer"})
}

async fn beats(s: &Stack, n: usize, page: Option<&str>) -> anyhow::Result<()> {
    let ingest = format!("{}/v1/activity?ack=broker", s.producer.url);
    for _ in 0..n {
        let (status, body) = post_json(&ingest, &heartbeat(page)).await?;
        anyhow::ensure!(status == 202, "{status}: {body}");
    }
    Ok(())
}

/// The processor's count of heartbeats it folded, once it reaches `n`.
async fn folded(s: &Stack, n: f64) -> anyhow::Result<()> {
    let series = r#"sessionfold_processor_events_in_total{kind="heartbeat",outcome="applied"}"#;
    eventually(
        Duration::from_secs(30),
        &format!("{n} heartbeats folded"),
        || async {
            let got = s.processor.metric(series).await?;
            anyhow::ensure!(got <= n, "folded {got} heartbeats, more than {n}");
            Ok((got == n).then_some(()))
        },
    )
    .await
}

async fn changelog_records(s: &Stack) -> anyhow::Result<f64> {
    let topic = sessionfold_schemas::Topics::new(&s.prefix).presence;
    s.processor
        .metric(&format!(
            r#"sessionfold_processor_records_out_total{{topic="{topic}"}}"#
        ))
        .await
}

/// The user's one session as the views show it, once `ok` holds.
async fn session_when(
    s: &Stack,
    what: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let url = format!("{}/v1/presence/users/{USER}", s.projections.url);
    eventually(within, what, || async {
        let (status, u) = get_json(&url).await?;
        let session = &u["sessions"][0];
        Ok((status == 200 && ok(session)).then(|| session.clone()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_are_held_published_with_the_next_change_and_never_lost() -> anyhow::Result<()> {
    // Longer than the test waits for anything: only a change, a stop or a
    // restart's re-read can bring a held refresh to the views.
    let mut s = Stack::start("coalescing", &["--activity-resolution", "4m"], &[]).await?;
    let ingest = format!("{}/v1/activity?ack=broker", s.producer.url);
    let start = json!({"kind": "session_started", "user_id": USER, "session_id": "c1-s",
        "email": "c1@example.com", "page": "/a"});
    let (status, body) = post_json(&ingest, &start).await?;
    assert_eq!(status, 202, "{body}");
    session_when(&s, "the session online", Duration::from_secs(30), |v| {
        v["active"] == true && v["heartbeats"] == 0
    })
    .await?;
    let published = changelog_records(&s).await?;

    // Twenty heartbeats on the page held: folded, not one written.
    beats(&s, 20, None).await?;
    folded(&s, 20.0).await?;
    assert_eq!(changelog_records(&s).await?, published);
    let held = session_when(&s, "the session", Duration::from_secs(5), |_| true).await?;
    assert_eq!(
        (&held["heartbeats"], &held["active"]),
        (&json!(0), &json!(true))
    );

    // A page change is published at once, with the twenty held before it.
    beats(&s, 1, Some("/b")).await?;
    session_when(&s, "the page change", Duration::from_secs(30), |v| {
        v["current_page"] == "/b"
    })
    .await
    .map(|v| assert_eq!(v["heartbeats"], 21, "{v}"))?;
    assert_eq!(changelog_records(&s).await?, published + 1.0);

    // Five more held, then the processor is killed: its successor reads
    // them again from where the held refreshes began, and only them.
    beats(&s, 5, Some("/b")).await?;
    folded(&s, 26.0).await?;
    s.restart_processor().await?;
    folded(&s, 5.0).await?;
    let again =
        r#"sessionfold_processor_events_in_total{kind="heartbeat",outcome="already_applied"}"#;
    assert_eq!(s.processor.metric(again).await?, 0.0);
    // It took every partition (3 of each input) back from its own store.
    let kind = |k: &str| format!(r#"sessionfold_processor_takeovers_total{{kind="{k}"}}"#);
    assert_eq!(s.processor.metric(&kind("own_store")).await?, 6.0);
    assert_eq!(s.processor.metric(&kind("full_restore")).await?, 0.0);

    // Three more, then a stop: it publishes everything held.
    beats(&s, 3, None).await?;
    folded(&s, 8.0).await?;
    assert_eq!(changelog_records(&s).await?, 0.0);
    let status = s.processor.stop(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}");
    let last = session_when(&s, "every heartbeat, once", Duration::from_secs(60), |v| {
        v["heartbeats"] != 21
    })
    .await?;
    assert_eq!(last["heartbeats"], 29, "{last}");
    assert_eq!(last["active"], true, "{last}");
    Ok(())
}
