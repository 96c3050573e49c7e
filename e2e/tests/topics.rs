//! Topics as a Kafka operator expects: created with compaction on the
//! changelogs and the configured retention, replication and min ISR, read
//! back with an admin client; made by the operator when creation is off;
//! and a changelog whose partition count differs from its input refused.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sessionfold_e2e::{Feeder, brokers, consume_all, now_millis, session_started, unique_prefix};
use sessionfold_schemas::Topics;

fn admin() -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()?)
}

async fn configs(topic: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let results = admin()?
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    let mut out = BTreeMap::new();
    for r in results {
        let r = r.map_err(|e| anyhow::anyhow!("describing {topic}: {e}"))?;
        for e in r.entries {
            if let Some(v) = e.value {
                out.insert(e.name, v);
            }
        }
    }
    Ok(out)
}

async fn operator_creates(topics: &[(&str, i32, bool)]) -> anyhow::Result<()> {
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, parts, compact)| {
            let t = NewTopic::new(name, *parts, TopicReplication::Fixed(1));
            if *compact {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    for r in admin()?.create_topics(&new, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Runs the processor until it exits (at most 60 s); returns its status and log.
fn processor_exits(prefix: &str, extra: &[&str]) -> anyhow::Result<(bool, String)> {
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("s").to_string_lossy().into_owned();
    let mut args = vec![
        "--topic-prefix",
        prefix,
        "--state-dir",
        &state,
        "--group-id",
        prefix,
    ];
    args.extend_from_slice(extra);
    sessionfold_e2e::exits_within("sessionfold-processor", &args, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_topics_carry_the_operator_settings() -> anyhow::Result<()> {
    let prefix = unique_prefix("topiccfg");
    let t = Topics::new(&prefix);
    let dir = sessionfold_e2e::scratch()?;
    let _processor = sessionfold_e2e::start_processor(
        &prefix,
        &dir.path().join("s"),
        dir.path(),
        &[
            "--input-retention",
            "3d",
            "--dead-letter-retention",
            "forever",
            "--min-insync-replicas",
            "1",
        ],
    )
    .await?;
    for (topic, policy, retention) in [
        (&t.activity, "delete", "259200000"),
        (&t.imports, "delete", "259200000"),
        (&t.dead_letter, "delete", "-1"),
    ] {
        let c = configs(topic).await?;
        assert_eq!(
            c.get("cleanup.policy").map(String::as_str),
            Some(policy),
            "{topic}"
        );
        assert_eq!(
            c.get("retention.ms").map(String::as_str),
            Some(retention),
            "{topic}"
        );
        assert_eq!(
            c.get("min.insync.replicas").map(String::as_str),
            Some("1"),
            "{topic}"
        );
    }
    for topic in [&t.presence, &t.import_ownership, &t.erasures] {
        let c = configs(topic).await?;
        assert_eq!(
            c.get("cleanup.policy").map(String::as_str),
            Some("compact"),
            "{topic}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_creation_off_the_operator_s_topics_are_used() -> anyhow::Result<()> {
    // Missing topics: a clear refusal, not a crash loop of create attempts.
    let missing = unique_prefix("nocreate-missing");
    let (ok, log) = processor_exits(&missing, &["--create-topics", "false"])?;
    assert!(!ok);
    assert!(
        log.contains(&format!(
            "topic {missing}.activity does not exist and topic creation is off"
        )),
        "{log}"
    );

    let prefix = unique_prefix("nocreate");
    let t = Topics::new(&prefix);
    operator_creates(&[
        (&t.activity, 3, false),
        (&t.imports, 3, false),
        (&t.presence, 3, true),
        (&t.import_ownership, 3, true),
        (&t.dead_letter, 1, false),
        (&t.erasures, 1, true),
    ])
    .await?;
    let dir = sessionfold_e2e::scratch()?;
    let _processor = sessionfold_e2e::start_processor(
        &prefix,
        &dir.path().join("s"),
        dir.path(),
        &["--create-topics", "false"],
    )
    .await?;
    Feeder::new(&prefix)?
        .send(&[session_started("s1".into(), "op-user", now_millis())])
        .await?;
    let states = consume_all(&t.presence, 1, Duration::from_secs(60)).await?;
    assert_eq!(states.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_with_another_partition_count_is_refused() -> anyhow::Result<()> {
    let prefix = unique_prefix("mismatch");
    let t = Topics::new(&prefix);
    operator_creates(&[
        (&t.activity, 3, false),
        (&t.imports, 3, false),
        (&t.presence, 2, true),
        (&t.import_ownership, 3, true),
        (&t.dead_letter, 1, false),
    ])
    .await?;
    let (ok, log) = processor_exits(&prefix, &[])?;
    assert!(!ok);
    assert!(
        log.contains(&format!(
            "{prefix}.activity has 3 partitions but its changelog {prefix}.presence has 2"
        )),
        "{log}"
    );
    Ok(())
}
