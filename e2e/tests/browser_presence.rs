//! The real browser client in headless Chromium against the real services
//! on the real broker: a page served from another origin imports the module
//! from the producer and starts presence. Two tabs of one user on two pages
//! are in both rooms; closing one leaves its room within 5 s while the user
//! stays online; navigation moves the room; a hidden tab stops beating; a
//! refused token is retried after the app refreshes it; closing the last
//! tab ends the session. The dashboard shows the rooms and the chart.

mod chromium;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use sessionfold_e2e::{Stack, eventually, get_json_as, token};

/// The app page: any path, presence started with the query's settings.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head><body>
<script type="module">
const q = new URLSearchParams(location.search);
const ingest = q.get("ingest");
const { start } = await import(ingest + "/v1/client/sessionfold.js");
let calls = 0;
window.tokenCalls = () => calls;
window.errors = [];
// Every event kind the client sends, counted as it leaves the page.
window.sent = [];
const counting = (url, opts) => {
  try {
    const body = JSON.parse(opts?.body ?? "null");
    for (const e of body?.events ?? [body]) if (e?.kind) window.sent.push(e.kind);
  } catch (_) {}
  return fetch(url, opts);
};
window.presence = start({
  ingestUrl: ingest,
  fetch: counting,
  userId: q.get("user"),
  email: q.get("user") + "@example.com",
  token: async () => {
    calls += 1;
    return calls === 1 && q.has("bad_first") ? "not-a-token" : q.get("token");
  },
  heartbeatInterval: 1000,
  idleAfter: 600000,
  onError: (e) => window.errors.push(String(e)),
});
window.started = true;
</script></body></html>"#;

async fn serve_page() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(|| async {
        (
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            PAGE,
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

async fn room(projections: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let admin = token("root", &["admin"], &[]);
    let url = format!(
        "{projections}/v1/presence/rooms/{}",
        name.replace('/', "%2F")
    );
    let (status, v) = get_json_as(&url, Some(&admin)).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    Ok(v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["user_id"].as_str().map(str::to_owned))
        .collect())
}

async fn user(projections: &str, id: &str) -> anyhow::Result<Value> {
    let admin = token("root", &["admin"], &[]);
    Ok(get_json_as(
        &format!("{projections}/v1/presence/users/{id}"),
        Some(&admin),
    )
    .await?
    .1)
}

/// Opens a tab on `path` and waits until its module started.
async fn open_tab(b: &Client, url: &str) -> anyhow::Result<fantoccini::wd::WindowHandle> {
    let w = b.new_window(true).await?;
    b.switch_to_window(w.handle.clone()).await?;
    b.goto(url).await?;
    eventually(
        Duration::from_secs(20),
        "the page's module started",
        || async {
            Ok(
                (b.execute("return window.started === true", vec![]).await? == json!(true))
                    .then_some(()),
            )
        },
    )
    .await?;
    Ok(w.handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_rooms_and_leaves_in_a_real_browser() -> anyhow::Result<()> {
    let origin = serve_page().await?;
    let s = Stack::start_with("browser-rooms", &["--cors-origin", &origin], &[], &[]).await?;
    let p = s.projections.url.clone();
    let (_driver, b) = chromium::browser().await?;
    let result = async {
        let home = b.window().await?;
        let ann = token("ann", &[], &[]);
        let url = |path: &str, extra: &str| {
            format!(
                "{origin}{path}?ingest={}&user=ann&token={ann}{extra}",
                s.producer.url
            )
        };
        // Tab 1 is given a bad token first: refused, refreshed, accepted.
        let tab1 = open_tab(&b, &url("/quiz", "&bad_first=1")).await?;
        let tab2 = open_tab(&b, &url("/results", "")).await?;
        eventually(Duration::from_secs(30), "ann in both rooms", || async {
            let (q, r) = (room(&p, "/quiz").await?, room(&p, "/results").await?);
            Ok((q == ["ann"] && r == ["ann"]).then_some(()))
        })
        .await?;
        b.switch_to_window(tab1.clone()).await?;
        let calls = b.execute("return window.tokenCalls()", vec![]).await?;
        assert!(calls.as_i64() >= Some(2), "the token was asked for again: {calls}");
        let u = user(&p, "ann").await?;
        assert_eq!(u["online"], true);
        assert_eq!(u["sessions"].as_array().map(Vec::len), Some(2));

        // Closing tab 2 takes it out of /results within 5 s; ann stays online.
        b.switch_to_window(tab2.clone()).await?;
        let closed = Instant::now();
        b.close_window().await?;
        eventually(Duration::from_secs(10), "tab 2 left /results", || async {
            Ok(room(&p, "/results").await?.is_empty().then_some(()))
        })
        .await?;
        let took = closed.elapsed();
        assert!(took < Duration::from_secs(5), "the leave took {took:?}");
        eprintln!("closed tab left its room after {took:?}");
        let u = user(&p, "ann").await?;
        assert_eq!(u["online"], true, "{u}");
        let ended: Vec<&Value> = u["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["ended_reason"] == "closed")
            .collect();
        assert_eq!(ended.len(), 1, "{u}");

        // Navigation in tab 1 moves ann from /quiz to /review.
        b.switch_to_window(tab1.clone()).await?;
        b.execute("history.pushState({}, '', '/review')", vec![]).await?;
        eventually(Duration::from_secs(30), "ann moved to /review", || async {
            let (q, r) = (room(&p, "/quiz").await?, room(&p, "/review").await?);
            Ok((q.is_empty() && r == ["ann"]).then_some(()))
        })
        .await?;

        // Input keeps the heartbeats coming; a hidden tab stops them,
        // counted as the client sends them rather than read from a view.
        let input = "window.dispatchEvent(new Event('keydown'))";
        let beats_sent = "return window.sent.filter((k) => k === 'heartbeat').length";
        let sent = |script: &'static str| {
            let b = b.clone();
            async move { Ok::<u64, anyhow::Error>(b.execute(script, vec![]).await?.as_u64().unwrap_or(0)) }
        };
        b.execute(input, vec![]).await?;
        let before = sent(beats_sent).await?;
        eventually(Duration::from_secs(30), "heartbeats while visible", || async {
            b.execute(input, vec![]).await?;
            Ok((sent(beats_sent).await? >= before + 2).then_some(()))
        })
        .await?;
        b.execute(
            "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
             document.dispatchEvent(new Event('visibilitychange'));
             window.hiddenAt = performance.now();",
            vec![],
        )
        .await?;
        let hidden_at = sent(beats_sent).await?;
        // Four heartbeat intervals by the page's own clock, with input all along.
        eventually(Duration::from_secs(30), "four intervals hidden", || async {
            b.execute(input, vec![]).await?;
            let hidden_for = b
                .execute("return performance.now() - window.hiddenAt", vec![])
                .await?
                .as_f64()
                .unwrap_or(0.0);
            Ok((hidden_for >= 4000.0).then_some(()))
        })
        .await?;
        assert_eq!(sent(beats_sent).await?, hidden_at, "no heartbeat sent while hidden");
        // Visible again, the beats resume.
        b.execute(
            "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
             document.dispatchEvent(new Event('visibilitychange'));",
            vec![],
        )
        .await?;
        eventually(Duration::from_secs(30), "heartbeats once visible again", || async {
            b.execute(input, vec![]).await?;
            Ok((sent(beats_sent).await? > hidden_at).then_some(()))
        })
        .await?;

        // The dashboard shows the room and the chart of online users.
        let dash = b.new_window(true).await?;
        b.switch_to_window(dash.handle.clone()).await?;
        b.goto(&format!("{p}/")).await?;
        b.find(Locator::Css("#token"))
            .await?
            .send_keys(&token("root", &["admin"], &[]))
            .await?;
        b.find(Locator::Css("#signin-form button")).await?.click().await?;
        let rooms = eventually(Duration::from_secs(30), "rooms listed", || async {
            let t = b.find(Locator::Css("#rooms tbody")).await?.text().await?;
            Ok(t.contains("/review").then_some(t))
        })
        .await?;
        assert_eq!(rooms.split_whitespace().collect::<Vec<_>>(), ["/review", "1", "1"]);
        let members = b.find(Locator::Css("#room-members tbody")).await?.text().await?;
        assert!(members.contains("ann") && members.contains("desktop"), "{members}");
        let points = eventually(Duration::from_secs(30), "chart drawn", || async {
            b.execute("loadOnline()", vec![]).await?;
            let pts = b.find_all(Locator::Css("#online-chart circle.pt")).await?;
            match pts.last() {
                Some(pt) => Ok(pt.attr("data-online").await?),
                None => Ok(None),
            }
        })
        .await?;
        assert_eq!(points, "1", "one user online");
        let png = b.screenshot().await?;
        std::fs::write(chromium::artifact_dir()?.join("rooms.png"), png)?;
        b.close_window().await?;

        // Closing the last tab ends the session: ann goes offline.
        b.switch_to_window(tab1).await?;
        b.close_window().await?;
        b.switch_to_window(home).await?;
        eventually(Duration::from_secs(10), "ann offline", || async {
            let u = user(&p, "ann").await?;
            Ok((u["online"] == false).then_some(u))
        })
        .await?;
        assert!(room(&p, "/review").await?.is_empty());
        anyhow::Ok(())
    }
    .await;
    b.close().await?;
    result
}
