//! The three services and a replay over a SASL_SSL listener (SCRAM-SHA-512
//! over TLS with a CA made at test time), as a managed Kafka is reached; a
//! wrong password is a clear error and a 503, not a crash loop.
//!
//! scripts/test starts Apache Kafka with that listener and names it in
//! `SESSIONFOLD_TEST_SECURE_BROKERS`, `SESSIONFOLD_TEST_SECURE_CA`,
//! `SESSIONFOLD_TEST_SCRAM_USER` and `SESSIONFOLD_TEST_SCRAM_PASSWORD`.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sessionfold_e2e::{
    Service, eventually, get_json, post_json, run_processor_command, unique_prefix,
};

struct Secure {
    brokers: String,
    ca: String,
    user: String,
    password: String,
}

/// The secure listener, or `None` on tansu, which has none.
fn secure(test: &str) -> anyhow::Result<Option<Secure>> {
    if sessionfold_e2e::on_tansu() {
        sessionfold_e2e::skip(
            test,
            "tansu has no SASL_SSL listener; this test runs on Apache Kafka",
        )?;
        return Ok(None);
    }
    let var = |name: &str| {
        std::env::var(name).with_context(|| {
            format!("{name} is not set: run the tests with scripts/test, which starts Kafka with a SASL_SSL listener")
        })
    };
    Ok(Some(Secure {
        brokers: var("SESSIONFOLD_TEST_SECURE_BROKERS")?,
        ca: var("SESSIONFOLD_TEST_SECURE_CA")?,
        user: var("SESSIONFOLD_TEST_SCRAM_USER")?,
        password: var("SESSIONFOLD_TEST_SCRAM_PASSWORD")?,
    }))
}

impl Secure {
    fn args(&self, password: &str) -> Vec<String> {
        [
            "security.protocol=SASL_SSL".to_owned(),
            "sasl.mechanism=SCRAM-SHA-512".to_owned(),
            format!("sasl.username={}", self.user),
            format!("sasl.password={password}"),
            format!("ssl.ca.location={}", self.ca),
        ]
        .into_iter()
        .flat_map(|p| ["--kafka-property".to_owned(), p])
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_and_a_replay_run_over_sasl_ssl() -> anyhow::Result<()> {
    let Some(s) = secure("the_services_and_a_replay_run_over_sasl_ssl")? else {
        return Ok(());
    };
    let prefix = unique_prefix("secure");
    let dir = sessionfold_e2e::scratch()?;
    let props = s.args(&s.password);
    let props: Vec<&str> = props.iter().map(String::as_str).collect();
    let state = dir.path().join("s").to_string_lossy().into_owned();
    let mut processor_args = vec!["--state-dir", &state, "--group-id", &prefix];
    processor_args.extend(&props);
    let producer = Service::start_on(
        &s.brokers,
        "sessionfold-producer",
        &prefix,
        &props,
        dir.path(),
    )
    .await?;
    let mut processor = Service::start_on(
        &s.brokers,
        "sessionfold-processor",
        &prefix,
        &processor_args,
        dir.path(),
    )
    .await?;
    processor
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;
    let mut projections = Service::start_on(
        &s.brokers,
        "sessionfold-projections",
        &prefix,
        &props,
        dir.path(),
    )
    .await?;
    projections
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;

    let url = format!("{}/v1/activity", producer.url);
    let events: Vec<_> = (0..3)
        .flat_map(|u| {
            let user = format!("sec-{u}");
            let mut e = vec![json!({"kind": "session_started", "user_id": user, "session_id": format!("{user}-s"), "email": format!("{user}@example.com"), "event_id": format!("{user}-0")})];
            e.extend((0..2).map(|b| json!({"kind": "heartbeat", "user_id": user, "session_id": format!("{user}-s"), "activity": "click", "event_id": format!("{user}-b{b}")})));
            e
        })
        .collect();
    let (status, body) = post_json(&url, &json!({"events": events})).await?;
    assert_eq!(status, 202, "{body}");
    for u in 0..3 {
        let url = format!("{}/v1/presence/users/sec-{u}", projections.url);
        eventually(
            Duration::from_secs(60),
            "a user folded over SASL_SSL",
            || async {
                let (status, v) = get_json(&url).await?;
                Ok((status == 200 && v["sessions"][0]["heartbeats"] == 2).then_some(()))
            },
        )
        .await?;
    }

    let out = dir.path().join("replay").to_string_lossy().into_owned();
    let mut args = vec![
        "replay",
        "--brokers",
        &s.brokers,
        "--topic-prefix",
        &prefix,
        "--until",
        "now",
        "--out",
        &out,
    ];
    args.extend(&props);
    let replay_log = run_processor_command(&args)?;
    // The password appears in no log: not the services', not the replay's.
    for (name, log) in [
        ("producer", producer.log_text()),
        ("processor", processor.log_text()),
        ("projections", projections.log_text()),
        ("replay", replay_log),
    ] {
        assert!(!log.is_empty(), "{name} logged nothing");
        assert!(
            !log.contains(&s.password),
            "the password is in the {name}'s log"
        );
    }
    let users = std::fs::read_to_string(dir.path().join("replay").join("presence-users.json"))
        .context("reading the replay's presence output")?;
    for u in 0..3 {
        assert!(
            users.contains(&format!("sec-{u}")),
            "replay over SASL_SSL has sec-{u}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_and_not_ready() -> anyhow::Result<()> {
    let Some(s) = secure("a_wrong_password_is_a_clear_error_and_not_ready")? else {
        return Ok(());
    };
    let prefix = unique_prefix("badpass");
    let dir = sessionfold_e2e::scratch()?;
    let props = s.args("not-the-password");
    let props: Vec<&str> = props.iter().map(String::as_str).collect();
    let state = dir.path().join("s").to_string_lossy().into_owned();
    let mut args = vec!["--state-dir", &state, "--group-id", &prefix];
    args.extend(&props);
    let p = Service::start_on(
        &s.brokers,
        "sessionfold-processor",
        &prefix,
        &args,
        dir.path(),
    )
    .await?;
    let log = eventually(
        Duration::from_secs(30),
        "the authentication error logged",
        || async {
            let log = p.log_text();
            Ok(log.contains("Authentication failed").then_some(log))
        },
    )
    .await?;
    assert!(
        !log.contains("not-the-password"),
        "the password is never logged"
    );
    let status = reqwest::get(format!("{}/readyz", p.url)).await?.status();
    assert_eq!(status.as_u16(), 503, "not ready without a broker");
    // Every line that reports the failure goes through a throttle (once a
    // minute, or once per 30 s for librdkafka's own), so a service that
    // retries every few hundred milliseconds cannot flood its log with it.
    let log = p.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Authentication failed"))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    for l in &lines {
        assert!(
            l.contains("logged once a minute") || l.contains("repeats are not logged for 30 s"),
            "an unthrottled report of the failure: {l}"
        );
    }
    Ok(())
}
