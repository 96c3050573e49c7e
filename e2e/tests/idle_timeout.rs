//! One idle timeout for the pipeline: the projections answer "who is online"
//! with the processor's, learnt from its presence changelog, and refuse to
//! serve by another one set by hand.

use std::time::Duration;

use sessionfold_e2e::{Feeder, Stack, eventually, get_json, now_millis, session_started};

const MINUTE: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projections_take_the_processors_idle_timeout() -> anyhow::Result<()> {
    let s = Stack::start("idle-taken", &["--idle-timeout", "2m"], &[]).await?;
    let feeder = Feeder::new(&s.prefix)?;
    let now = now_millis();
    feeder
        .send(&[
            session_started("three".into(), "three-minutes-ago", now - 3 * MINUTE),
            session_started("one".into(), "one-minute-ago", now - MINUTE),
        ])
        .await?;
    let online = |user: &'static str| {
        let url = format!("{}/v1/presence/users/{user}", s.projections.url);
        async move {
            let (status, body) = get_json(&url).await?;
            Ok((status == 200).then(|| body["online"].as_bool()))
        }
    };
    let within = Duration::from_secs(30);
    // Under the projections' own default of 5 minutes both would be online.
    assert_eq!(
        eventually(within, "the recent user", || online("one-minute-ago")).await?,
        Some(true)
    );
    assert_eq!(
        eventually(within, "the idle user", || online("three-minutes-ago")).await?,
        Some(false)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_told_another_idle_timeout_stop_and_say_why() -> anyhow::Result<()> {
    let mut s = Stack::start(
        "idle-differs",
        &["--idle-timeout", "2m"],
        &["--idle-timeout", "5m"],
    )
    .await?;
    Feeder::new(&s.prefix)?
        .send(&[session_started("e".into(), "someone", now_millis())])
        .await?;
    let status = s.projections.exit_within(Duration::from_secs(30)).await?;
    assert!(!status.success(), "{status}");
    let log = s.projections.log_text();
    assert!(
        log.contains("--idle-timeout is 300000 ms here but the processor folds with 120000 ms"),
        "{log}"
    );
    Ok(())
}
