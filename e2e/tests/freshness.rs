//! Reads say how fresh they are, on a broker of the test's own: the
//! freshness headers only move forward while changes flow; with the broker
//! frozen the views grow stale, readiness turns, a `serve` instance goes on
//! answering with the staleness shown and a `refuse` instance answers 503
//! with Retry-After; both recover when the broker does, and two instances
//! behind one address give the same answers.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::broker::{Kind, PrivateBroker};
use sessionfold_e2e::{Service, SseClient, Stack, eventually, post_json, root_token};

const BOUND: &str = "3s";

/// Status, freshness headers and body of a view read.
struct Read {
    status: u16,
    fresh_as_of: Option<String>,
    staleness_ms: Option<i64>,
    newest_change: Option<String>,
    lag: Option<u64>,
    retry_after: Option<String>,
    body: Value,
}

async fn read(projections: &Service, path: &str) -> anyhow::Result<Read> {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", projections.url))
        .bearer_auth(root_token())
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (fresh_as_of, newest_change, retry_after) = (
        header("sessionfold-fresh-as-of"),
        header("sessionfold-newest-change"),
        header("retry-after"),
    );
    let staleness_ms = header("sessionfold-staleness-ms").and_then(|s| s.parse().ok());
    let lag = header("sessionfold-changelog-lag").and_then(|s| s.parse().ok());
    let status = r.status().as_u16();
    Ok(Read {
        status,
        fresh_as_of,
        staleness_ms,
        newest_change,
        lag,
        retry_after,
        body: r.json().await?,
    })
}

async fn ready(s: &Service) -> anyhow::Result<u16> {
    Ok(reqwest::Client::new()
        .get(format!("{}/readyz", s.url))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .status()
        .as_u16())
}

async fn start_session(s: &Stack, user: &str) -> anyhow::Result<()> {
    let ingest = format!("{}/v1/activity?ack=broker", s.producer.url);
    let event = json!({"kind": "session_started", "user_id": user, "session_id": format!("{user}-s"),
        "email": format!("{user}@example.com"), "page": format!("/{user}")});
    let (status, body) = post_json(&ingest, &event).await?;
    anyhow::ensure!(status == 202, "{status}: {body}");
    Ok(())
}

/// The user ids the active-users view lists.
fn users(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["user_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_say_how_fresh_they_are_and_stale_views_are_not_ready() -> anyhow::Result<()> {
    let dir = sessionfold_e2e::scratch()?;
    let broker = PrivateBroker::start(Kind::of_suite(), dir.path()).await?;
    let s = Stack::start_on(
        &broker.address(),
        "freshness",
        &[],
        &[],
        &["--max-staleness", BOUND],
    )
    .await?;
    let mut refusing = Service::start_on(
        &broker.address(),
        "sessionfold-projections",
        &s.prefix,
        &["--max-staleness", BOUND, "--stale-reads", "refuse"],
        dir.path(),
    )
    .await?;
    refusing
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;

    // While changes flow, the headers never go back, and the views catch up
    // to a lag of 0 with each user listed.
    let (mut fresh_as_of, mut newest) = (String::new(), String::new());
    for i in 0..10 {
        let user = format!("f{i}");
        start_session(&s, &user).await?;
        let r = eventually(Duration::from_secs(30), "the user listed", || async {
            let r = read(&s.projections, "/v1/presence/active?window=5m").await?;
            Ok(users(&r.body).contains(&user).then_some(r))
        })
        .await?;
        assert_eq!(r.status, 200);
        let (f, n) = (
            r.fresh_as_of.expect("fresh-as-of on a view answer"),
            r.newest_change
                .expect("newest-change once a change is applied"),
        );
        // RFC 3339 in UTC with milliseconds compares as text.
        assert!(
            f >= fresh_as_of,
            "fresh-as-of went back: {f} < {fresh_as_of}"
        );
        assert!(n >= newest, "newest-change went back: {n} < {newest}");
        (fresh_as_of, newest) = (f, n);
    }
    let caught_up = eventually(Duration::from_secs(10), "a lag of 0", || async {
        let r = read(&s.projections, "/v1/presence/active?window=5m").await?;
        Ok((r.lag == Some(0)).then_some(r))
    })
    .await?;
    assert!(caught_up.staleness_ms.is_some_and(|ms| ms < 3_000));
    // Two instances behind one address answer alike.
    let other = eventually(Duration::from_secs(10), "the same answer", || async {
        let r = read(&refusing, "/v1/presence/active?window=5m").await?;
        Ok((users(&r.body) == users(&caught_up.body)).then_some(r))
    })
    .await?;
    assert_eq!(users(&other.body).len(), 10);
    assert_eq!(ready(&s.projections).await?, 200);
    // The stream says the same when it opens.
    let mut stream = SseClient::connect(
        &format!("{}/v1/stream", s.projections.url),
        &root_token(),
        None,
    )
    .await?;
    assert_eq!(stream.next(Duration::from_secs(1)).await?, None);
    let told = stream
        .freshness
        .take()
        .expect("a freshness event on opening");
    assert_eq!(told["changelog_lag"], json!(0));
    assert_eq!(told["newest_change"], json!(newest));
    assert!(
        told["staleness_ms"].as_i64().is_some_and(|ms| ms < 3_000),
        "{told}"
    );

    // A frozen broker answers nothing: the views cannot be known fresh.
    broker.pause()?;
    let outcome = async {
        eventually(Duration::from_secs(30), "not ready while stale", || async {
            Ok(
                (ready(&s.projections).await? == 503 && ready(&refusing).await? == 503)
                    .then_some(()),
            )
        })
        .await?;
        let served = read(&s.projections, "/v1/presence/active?window=5m").await?;
        assert_eq!(served.status, 200, "{}", served.body);
        assert_eq!(users(&served.body).len(), 10);
        assert!(
            served.staleness_ms.is_some_and(|ms| ms > 3_000),
            "{:?}",
            served.staleness_ms
        );
        let refused = read(&refusing, "/v1/presence/active?window=5m").await?;
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.retry_after.as_deref(), Some("1"));
        let why = refused.body["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            why.contains("ms behind the changelogs (the bound is 3000 ms)"),
            "{why}"
        );
        anyhow::Ok(())
    }
    .await;
    broker.unpause()?;
    outcome?;

    eventually(Duration::from_secs(60), "ready again", || async {
        Ok((ready(&s.projections).await? == 200 && ready(&refusing).await? == 200).then_some(()))
    })
    .await?;
    let back = read(&refusing, "/v1/presence/active?window=5m").await?;
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(back.fresh_as_of.is_some_and(|f| f > fresh_as_of));
    Ok(())
}
