//! Figures of the running services: HTTP ingest, query latency and memory by
//! number of tracked sessions, freshness under load, replay and export.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sessionfold_schemas::{ActivityBody, ActivityEvent, Topics};

use crate::services::{Latency, Service, admin_token, get_latency};

/// The ingest's JSON of one event.
pub fn event_json(e: &ActivityEvent) -> Value {
    let at = chrono::DateTime::from_timestamp_millis(e.occurred_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut v = json!({
        "kind": e.body.kind(),
        "event_id": e.event_id,
        "user_id": e.user_id,
        "session_id": e.session_id,
        "occurred_at": at,
    });
    match &e.body {
        ActivityBody::SessionStarted(s) => {
            v["email"] = json!(s.email);
            v["device_type"] = json!(s.device_type);
            v["browser"] = json!(s.browser);
            v["page"] = json!(s.page);
        }
        ActivityBody::Heartbeat { page, .. } => {
            v["activity"] = json!("mouse");
            if let Some(p) = page {
                v["page"] = json!(p);
            }
        }
        ActivityBody::PageViewed { page, .. } => v["page"] = json!(page),
        ActivityBody::SessionEnded { .. } => v["reason"] = json!("logout"),
    }
    v
}

/// Events per second the ingest accepts (202), posted in batches of `batch`
/// with `in_flight` requests at once.
pub async fn ingest(
    producer: &Service,
    events: &[ActivityEvent],
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    let token = admin_token("bench-service")?;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/activity", producer.url);
    let bodies: Vec<Value> = events
        .chunks(batch)
        .map(|c| json!({"events": c.iter().map(event_json).collect::<Vec<_>>()}))
        .collect();
    let t = Instant::now();
    let results = futures::stream::iter(bodies.iter().map(|body| {
        let (client, url, token) = (&client, &url, &token);
        async move {
            loop {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(body)
                    .send()
                    .await?;
                match r.status().as_u16() {
                    202 => return anyhow::Ok(()),
                    503 => tokio::time::sleep(Duration::from_millis(10)).await,
                    s => anyhow::bail!("ingest answered {s}: {}", r.text().await?),
                }
            }
        }
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<_>>()
    .await;
    for r in results {
        r?;
    }
    Ok(events.len() as f64 / t.elapsed().as_secs_f64())
}

/// Query latency and memory with `sessions` sessions tracked.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AtSize {
    /// Sessions tracked.
    pub sessions: usize,
    /// `GET /v1/presence/active?limit=100`.
    pub active_first_page: Latency,
    /// `GET /v1/presence/summary`.
    pub summary: Latency,
    /// Processor resident memory per session (bytes), above its empty size.
    pub processor_bytes_per_session: f64,
    /// Projections resident memory per session (bytes), above its empty size.
    pub projections_bytes_per_session: f64,
}

/// Loads `sessions` sessions (one user each, all active) through the
/// processor into the projections and measures both.
pub async fn at_size(
    brokers: &str,
    prefix: &str,
    sessions: usize,
    reads: usize,
    now: i64,
) -> anyhow::Result<AtSize> {
    let topics = Topics::new(prefix);
    sessionfold_edge::ensure_topics(brokers, &topics, 6, Duration::from_secs(60)).await?;
    let processor = Service::start(
        "sessionfold-processor",
        brokers,
        prefix,
        &["--idle-timeout", "2h"],
    )
    .await?;
    let mut projections = Service::start(
        "sessionfold-projections",
        brokers,
        prefix,
        &["--idle-timeout", "2h"],
    )
    .await?;
    projections
        .wait("/readyz", Duration::from_secs(120))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty = (processor.rss()?, projections.rss()?);
    let events: Vec<ActivityEvent> =
        crate::history::generate(sessions as u64, sessions, 2 * sessions, now)
            .into_iter()
            .filter(|e| matches!(e.body, ActivityBody::SessionStarted(_)))
            .map(|mut e| {
                e.occurred_at = now - 60_000;
                e
            })
            .collect();
    let brokers_owned = brokers.to_owned();
    let topics_owned = topics.clone();
    tokio::task::spawn_blocking(move || {
        crate::pipeline::produce(&brokers_owned, &topics_owned, &events)
    })
    .await??;
    let token = admin_token("bench-admin")?;
    let summary_url = format!("{}/v1/presence/summary?window=2h", projections.url);
    let deadline = Instant::now() + Duration::from_secs(1800);
    let client = reqwest::Client::new();
    loop {
        let r: Value = client
            .get(&summary_url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if r["sessions"].as_u64() == Some(sessions as u64) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "projections at {} of {sessions} sessions",
            r["sessions"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let active_url = format!("{}/v1/presence/active?window=2h&limit=100", projections.url);
    let active_first_page = get_latency(&active_url, &token, reads).await?;
    let summary = get_latency(&summary_url, &token, reads).await?;
    // With SESSIONFOLD_BENCH_SMAPS=DIR the services' memory maps are kept,
    // for the breakdown in docs/performance-history.md.
    if let Some(dir) = std::env::var_os("SESSIONFOLD_BENCH_SMAPS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        processor.save_smaps(&dir.join(format!("processor-{sessions}.smaps")))?;
        projections.save_smaps(&dir.join(format!("projections-{sessions}.smaps")))?;
        processor.save_log(&dir.join(format!("processor-{sessions}.log")))?;
        std::fs::write(
            dir.join(format!("processor-{sessions}.metrics")),
            processor.metrics().await?,
        )?;
    }
    let per = |now: u64, before: u64| (now.saturating_sub(before)) as f64 / sessions as f64;
    Ok(AtSize {
        sessions,
        active_first_page,
        summary,
        processor_bytes_per_session: per(processor.rss()?, empty.0),
        projections_bytes_per_session: per(projections.rss()?, empty.1),
    })
}

/// Freshness figures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Freshness {
    /// Background load, events per second offered.
    pub background_events_per_sec: f64,
    /// Post accepted → visible in `GET /v1/presence/users/{id}`.
    pub user_view: Latency,
    /// Post accepted → change received on `/v1/stream`.
    pub stream: Latency,
    /// A closing tab's end (`POST /v1/activity/end` with its end ticket, as
    /// the browser client's beacon sends it) → the user offline in the view.
    pub leave: Latency,
}

/// Reads the SSE stream and notes when each probe page first appears.
async fn watch_stream(
    url: String,
    token: String,
    seen: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut r = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "stream: {}", r.status());
    let mut buf = String::new();
    while !stop.load(Ordering::Relaxed) {
        let chunk = match tokio::time::timeout(Duration::from_millis(200), r.chunk()).await {
            Err(_) => continue,
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None) | Err(_)) => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buf.find("/probe/") {
            let rest = &buf[at..];
            let end = rest
                .find(|c: char| c == '"' || c.is_whitespace())
                .unwrap_or(rest.len());
            if end == rest.len() {
                break;
            }
            let page = rest[..end].to_owned();
            seen.lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .entry(page)
                .or_insert_with(Instant::now);
            buf.drain(..at + end);
        }
        // Only a probe cut by the chunk's end can still be completed: keep
        // that, not every change read so far. Searching a buffer that grew
        // with each chunk made this reader fall behind 2,000 changes/s on a
        // slow machine, and the stream's latency looked like seconds.
        let mut keep = buf
            .find("/probe/")
            .unwrap_or(buf.len().saturating_sub("/probe/".len() - 1));
        while !buf.is_char_boundary(keep) {
            keep -= 1;
        }
        buf.drain(..keep);
    }
    Ok(())
}

/// Heartbeats of a probe user posted one at a time under a steady background
/// load; each is timed until the user view shows its page and until the
/// stream carries it.
pub async fn freshness(
    brokers: &str,
    prefix: &str,
    background: &[ActivityEvent],
    background_rate: f64,
    probes: usize,
) -> anyhow::Result<Freshness> {
    let topics = Topics::new(prefix);
    sessionfold_edge::ensure_topics(brokers, &topics, 6, Duration::from_secs(60)).await?;
    let producer = Service::start("sessionfold-producer", brokers, prefix, &[]).await?;
    let _processor = Service::start("sessionfold-processor", brokers, prefix, &[]).await?;
    let mut projections = Service::start("sessionfold-projections", brokers, prefix, &[]).await?;
    projections
        .wait("/readyz", Duration::from_secs(120))
        .await?;
    let token = admin_token("bench-admin")?;
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let (client, token, url) = (&client, &token, format!("{}/v1/activity", producer.url));
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 202, "ingest: {}", r.status());
            anyhow::Ok(())
        }
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    post(
        json!({"kind": "session_started", "user_id": "probe", "session_id": "probe-s",
        "email": "probe@example.com", "occurred_at": now}),
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let watcher = tokio::spawn(watch_stream(
        format!("{}/v1/stream", projections.url),
        token.clone(),
        seen.clone(),
        stop.clone(),
    ));
    // Background: batches of 50 every 50 ms / (rate / 1000) as a steady flow.
    let bg_stop = stop.clone();
    let bg_events: Vec<Value> = background.iter().map(event_json).collect();
    let bg_url = format!("{}/v1/activity", producer.url);
    let bg_token = token.clone();
    let per_tick = ((background_rate / 20.0).round() as usize).max(1);
    let bg = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut sent = 0usize;
        for chunk in bg_events.chunks(per_tick).cycle() {
            if bg_stop.load(Ordering::Relaxed) {
                break;
            }
            tick.tick().await;
            let mut chunk: Vec<Value> = chunk.to_vec();
            for e in &mut chunk {
                // Fresh ids and times, so every round counts as new activity.
                e["event_id"] = json!(format!("bg-{sent}"));
                e["occurred_at"] =
                    json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                sent += 1;
            }
            let _ = client
                .post(&bg_url)
                .bearer_auth(&bg_token)
                .json(&json!({"events": chunk}))
                .send()
                .await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let user_url = format!("{}/v1/presence/users/probe", projections.url);
    let mut view = Vec::with_capacity(probes);
    let mut posted = Vec::with_capacity(probes);
    for i in 0..probes {
        let page = format!("/probe/{i}");
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let t = Instant::now();
        post(
            json!({"kind": "page_viewed", "user_id": "probe", "session_id": "probe-s",
            "page": page, "occurred_at": now}),
        )
        .await?;
        posted.push((page.clone(), t));
        let deadline = t + Duration::from_secs(30);
        loop {
            let r: Value = client
                .get(&user_url)
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if r["sessions"][0]["current_page"] == page.as_str() {
                view.push(t.elapsed().as_secs_f64());
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{page} never appeared");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leave = leaves(&producer, &projections, probes).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = bg.await;
    let _ = watcher.await;
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let stream: Vec<f64> = posted
        .iter()
        .filter_map(|(page, t)| seen.get(page).map(|s| s.duration_since(*t).as_secs_f64()))
        .collect();
    anyhow::ensure!(
        stream.len() == probes,
        "the stream carried {} of {probes} probes",
        stream.len()
    );
    Ok(Freshness {
        background_events_per_sec: background_rate,
        user_view: Latency::of(view),
        stream: Latency::of(stream),
        leave,
    })
}

/// `probes` users each open a session, take its end ticket, and close the
/// tab; each close is timed until the user view shows the user offline.
async fn leaves(
    producer: &Service,
    projections: &Service,
    probes: usize,
) -> anyhow::Result<Latency> {
    let client = reqwest::Client::new();
    let admin = admin_token("bench-admin")?;
    let mut took = Vec::with_capacity(probes);
    for i in 0..probes {
        let user = format!("leaver-{i}");
        let token = admin_token(&user)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let start = json!({"kind": "session_started", "user_id": user, "session_id": "tab",
                           "email": format!("{user}@example.com"), "occurred_at": now});
        let r = client
            .post(format!("{}/v1/activity", producer.url))
            .bearer_auth(&token)
            .json(&start)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "ingest: {}", r.status());
        let ticket: Value = client
            .post(format!("{}/v1/sessions/tab/end-ticket", producer.url))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let user_url = format!("{}/v1/presence/users/{user}", projections.url);
        let online = |want: bool| {
            let (client, url, admin) = (&client, &user_url, &admin);
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let r = client.get(url).bearer_auth(admin).send().await?;
                    if r.status().is_success() {
                        let v: Value = r.json().await?;
                        if v["online"] == want {
                            return anyhow::Ok(());
                        }
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "{url} never showed online={want}"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        online(true).await?;
        let t = Instant::now();
        let body = json!({"ticket": ticket["ticket"], "reason": "closed"}).to_string();
        let r = client
            .post(format!("{}/v1/activity/end", producer.url))
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "end: {}", r.status());
        online(false).await?;
        took.push(t.elapsed().as_secs_f64());
    }
    Ok(Latency::of(took))
}

/// Runs `sessionfold-processor` with `args` to completion; returns seconds taken.
pub fn timed_command(args: &[&str]) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .map(|d| d.join("sessionfold-processor"))
        .ok_or_else(|| anyhow::anyhow!("no directory beside the benchmark"))?;
    let t = Instant::now();
    let out = std::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(t.elapsed().as_secs_f64())
}
