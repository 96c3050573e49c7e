//! A record that names a schema id before the registry has it (a producer
//! that writes first and registers after, a registry being restored) is
//! refused while the id is unknown, and read once the id is registered: a
//! refusal is remembered for a short while only. In a test binary of its
//! own, so that nothing else takes registry ids meanwhile.

use std::time::Duration;

use serde_json::json;
use sessionfold_e2e::{Service, consume_all, eventually, get_json, unique_prefix};
use sessionfold_schemas::{Contract, Topics};

/// The activity schema with its own top-level doc: the same canonical form
/// (doc is not part of it), another text, so another registry id.
fn variant(doc: &str) -> anyhow::Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(sessionfold_schemas::ACTIVITY_AVSC)?;
    v["doc"] = json!(doc);
    Ok(v.to_string())
}

async fn register(url: &str, subject: &str, schema: &str) -> anyhow::Result<u32> {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({ "schema": schema }))
        .send()
        .await?
        .json()
        .await?;
    r["id"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| anyhow::anyhow!("no id in {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_refused_before_it_is_registered_is_read_once_it_is() -> anyhow::Result<()> {
    let test = "an_id_refused_before_it_is_registered_is_read_once_it_is";
    let url = match std::env::var("SESSIONFOLD_TEST_SCHEMA_REGISTRY") {
        Ok(u) => u,
        Err(_) if sessionfold_e2e::on_tansu() => {
            return sessionfold_e2e::skip(
                test,
                "scripts/test starts the test Schema Registry with Apache Kafka only",
            );
        }
        Err(_) => anyhow::bail!("SESSIONFOLD_TEST_SCHEMA_REGISTRY is not set: run scripts/test"),
    };
    let prefix = unique_prefix("late-id");
    let t = Topics::new(&prefix);
    let dir = sessionfold_e2e::scratch()?;
    let state = dir.path().join("s").to_string_lossy().into_owned();
    let mut processor = Service::start(
        "sessionfold-processor",
        &prefix,
        &[
            "--state-dir",
            &state,
            "--group-id",
            &prefix,
            "--schema-registry-url",
            &url,
        ],
        dir.path(),
    )
    .await?;
    processor
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;
    let mut projections = Service::start(
        "sessionfold-projections",
        &prefix,
        &["--schema-registry-url", &url],
        dir.path(),
    )
    .await?;
    projections
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;

    let a = register(&url, &format!("{prefix}-probe-a"), &variant("probe a")?).await?;
    let next = a + 1;
    let contract = Contract::load()?;
    let framed = |id: &str, n: i64| -> anyhow::Result<Vec<u8>> {
        let e =
            sessionfold_e2e::session_started(id.into(), "late", sessionfold_e2e::now_millis() + n);
        Ok(sessionfold_schemas::to_registry_format(
            &contract.encode_activity(&e)?,
            next,
        )?)
    };
    let first = framed("late-0", 0)?;
    sessionfold_e2e::produce_raw(&t.activity, &[(Some("late"), &first)]).await?;
    let dead = consume_all(&t.dead_letter, 1, Duration::from_secs(60)).await?;
    assert_eq!(dead.len(), 1, "the id is refused while unknown");
    let b = register(&url, &format!("{prefix}-probe-b"), &variant("probe b")?).await?;
    assert_eq!(b, next, "the registry gives ids in sequence");
    // Records naming it are read once the refusal is forgotten.
    let user = format!("{}/v1/presence/users/late", projections.url);
    let mut n = 0;
    eventually(
        Duration::from_secs(90),
        "a record of the new id folded",
        || {
            n += 1;
            let record = framed(&format!("late-{n}"), n);
            let (t, user) = (t.activity.clone(), user.clone());
            async move {
                let record = record?;
                sessionfold_e2e::produce_raw(&t, &[(Some("late"), &record)]).await?;
                let (status, _) = get_json(&user).await?;
                Ok((status == 200).then_some(()))
            }
        },
    )
    .await?;
    Ok(())
}
