//! The designs sessionfold replaces, fed the same events.
//!
//! PostgreSQL: a `user_sessions` row per session, INSERT at start, UPDATE of
//! `last_activity` per heartbeat, active users read with
//! `WHERE last_activity > now() - interval`. A pooled async client
//! (deadpool-postgres over tokio-postgres), prepared statements cached per
//! connection, as many statements in flight as the pool has connections, an
//! index on `last_activity`, and the server started by `scripts/bench` with
//! `synchronous_commit = off` (a fair choice for presence, which tolerates
//! losing the last few hundred milliseconds).
//!
//! Redis: one sorted set scored by last activity, ZADD per event,
//! ZCOUNT / ZREVRANGEBYSCORE per read, over one multiplexed connection with
//! as many commands in flight.

use std::time::Instant;

use futures::StreamExt;
use sessionfold_schemas::{ActivityBody, ActivityEvent};

use crate::services::Latency;

/// Statements in flight at once (and connections in the pool).
const IN_FLIGHT: usize = 32;

/// A baseline's figures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Baseline {
    /// Events written per second.
    pub events_per_sec: f64,
    /// Counting the active users.
    pub count: Latency,
    /// The first page (100) of the active users, most recent first.
    pub first_page: Latency,
}

/// PostgreSQL, on the connection string `conn`.
pub async fn postgres(
    conn: &str,
    events: &[ActivityEvent],
    reads: usize,
) -> anyhow::Result<Baseline> {
    let cfg: tokio_postgres::Config = conn.parse()?;
    let manager = deadpool_postgres::Manager::from_config(
        cfg,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(IN_FLIGHT)
        .build()?;
    let client = pool.get().await?;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS user_sessions;
             CREATE TABLE user_sessions (
               session_id text PRIMARY KEY,
               user_id text NOT NULL,
               device_type text,
               browser text,
               current_page text,
               started_at timestamptz NOT NULL,
               last_activity timestamptz NOT NULL,
               ended_at timestamptz
             );
             CREATE INDEX user_sessions_last_activity ON user_sessions (last_activity);",
        )
        .await?;
    drop(client);
    let events_per_sec = writes_per_sec(events.len(), events.iter().map(|e| {
        let pool = pool.clone();
        async move {
            let c = pool.get().await?;
            let at = e.occurred_at as f64 / 1000.0;
            match &e.body {
                ActivityBody::SessionStarted(s) => {
                    let st = c
                        .prepare_cached(
                            "INSERT INTO user_sessions (session_id, user_id, device_type, browser, current_page, started_at, last_activity)
                             VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($6))
                             ON CONFLICT (session_id) DO NOTHING",
                        )
                        .await?;
                    c.execute(&st, &[&e.session_id, &e.user_id, &s.device_type, &s.browser, &s.page, &at])
                        .await?;
                }
                ActivityBody::SessionEnded { .. } => {
                    let st = c
                        .prepare_cached(
                            "UPDATE user_sessions SET ended_at = to_timestamp($2), last_activity = greatest(last_activity, to_timestamp($2)) WHERE session_id = $1",
                        )
                        .await?;
                    c.execute(&st, &[&e.session_id, &at]).await?;
                }
                ActivityBody::Heartbeat { .. } | ActivityBody::PageViewed { .. } => {
                    let st = c
                        .prepare_cached(
                            "UPDATE user_sessions SET last_activity = greatest(last_activity, to_timestamp($2)) WHERE session_id = $1",
                        )
                        .await?;
                    c.execute(&st, &[&e.session_id, &at]).await?;
                }
            }
            anyhow::Ok(())
        }
    }))
    .await?;
    let c = pool.get().await?;
    let count_sql = c
        .prepare(
            "SELECT count(DISTINCT user_id) FROM user_sessions
             WHERE ended_at IS NULL AND last_activity > now() - interval '15 minutes'",
        )
        .await?;
    let page_sql = c
        .prepare(
            "SELECT user_id, device_type, browser, current_page, last_activity FROM user_sessions
             WHERE ended_at IS NULL AND last_activity > now() - interval '15 minutes'
             ORDER BY last_activity DESC LIMIT 100",
        )
        .await?;
    let mut count = Vec::with_capacity(reads);
    let mut page = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        c.query_one(&count_sql, &[]).await?;
        count.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        c.query(&page_sql, &[]).await?;
        page.push(t.elapsed().as_secs_f64());
    }
    Ok(Baseline {
        events_per_sec,
        count: Latency::of(count),
        first_page: Latency::of(page),
    })
}

/// Redis, at `url`.
pub async fn redis(
    url: &str,
    events: &[ActivityEvent],
    reads: usize,
    now: i64,
) -> anyhow::Result<Baseline> {
    let client = redis::Client::open(url)?;
    let conn = client.get_multiplexed_async_connection().await?;
    let mut c = conn.clone();
    redis::cmd("DEL")
        .arg("presence")
        .query_async::<()>(&mut c)
        .await?;
    let events_per_sec = writes_per_sec(
        events.len(),
        events.iter().map(|e| {
            let mut c = conn.clone();
            async move {
                match &e.body {
                    ActivityBody::SessionEnded { .. } => {
                        redis::cmd("ZREM")
                            .arg("presence")
                            .arg(&e.user_id)
                            .query_async::<()>(&mut c)
                            .await
                    }
                    _ => {
                        redis::cmd("ZADD")
                            .arg("presence")
                            .arg("GT")
                            .arg(e.occurred_at)
                            .arg(&e.user_id)
                            .query_async::<()>(&mut c)
                            .await
                    }
                }
            }
        }),
    )
    .await?;
    let since = now - 15 * 60_000;
    let mut count = Vec::with_capacity(reads);
    let mut page = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        redis::cmd("ZCOUNT")
            .arg("presence")
            .arg(since)
            .arg("+inf")
            .query_async::<u64>(&mut c)
            .await?;
        count.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        redis::cmd("ZRANGE")
            .arg("presence")
            .arg("+inf")
            .arg(since)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .arg("WITHSCORES")
            .query_async::<Vec<(String, i64)>>(&mut c)
            .await?;
        page.push(t.elapsed().as_secs_f64());
    }
    Ok(Baseline {
        events_per_sec,
        count: Latency::of(count),
        first_page: Latency::of(page),
    })
}

/// Runs `writes` (one per event) with `IN_FLIGHT` at a time, as a pool of
/// clients would; events per second, or the first failure.
async fn writes_per_sec<F, T, E>(n: usize, writes: impl Iterator<Item = F>) -> anyhow::Result<f64>
where
    F: std::future::Future<Output = Result<T, E>>,
    anyhow::Error: From<E>,
{
    let t = Instant::now();
    let results = futures::stream::iter(writes)
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
