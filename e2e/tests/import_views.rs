//! Import ownership end to end on a real broker: events posted over HTTP
//! with each user's own token, folded by the processor, served by the
//! projections scoped to the caller.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{
    Stack, consume_all, eventually, get_json_as, post_json_as, root_token, token,
};
use sessionfold_schemas::{Topics, headers};

struct Users {
    ada: String,
    bob: String,
    ops: String,
    svc: String,
}

fn users() -> Users {
    Users {
        ada: token("ada", &[], &[]),
        bob: token("bob", &[], &[]),
        ops: token("ops", &[], &["IMPORT_ADMIN"]),
        svc: token("importer", &["service"], &[]),
    }
}

fn started(hash: &str, file: &str) -> Value {
    json!({"kind": "import_started", "json_hash": hash, "file_name": file, "questions_total": 40})
}

fn progressed(pct: i32, done: i32) -> Value {
    json!({"kind": "import_progressed", "step": "import_questions", "progress": pct,
           "questions_imported": done, "questions_total": 40})
}

async fn post(s: &Stack, import: &str, body: Value, tok: &str) -> anyhow::Result<(u16, Value)> {
    let url = format!("{}/v1/imports/{import}/events", s.producer.url);
    post_json_as(&url, &body, Some(tok)).await
}

async fn accepted(s: &Stack, import: &str, body: Value, tok: &str) -> anyhow::Result<()> {
    let (status, answer) = post(s, import, body, tok).await?;
    anyhow::ensure!(status == 202, "{import}: {status} {answer}");
    Ok(())
}

async fn get(s: &Stack, path: &str, tok: Option<&str>) -> anyhow::Result<(u16, Value)> {
    get_json_as(&format!("{}{path}", s.projections.url), tok).await
}

fn ids(v: &Value) -> Vec<String> {
    v["imports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["import_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Waits until `path`, read with `tok`, lists exactly the imports `want`
/// (in any order: imports started concurrently have no fixed order).
async fn until_listed(s: &Stack, path: &str, tok: &str, want: &[&str]) -> anyhow::Result<Value> {
    let want = sorted(want.iter().map(|w| (*w).to_owned()).collect());
    eventually(Duration::from_secs(60), path, || async {
        let (status, v) = get(s, path, Some(tok)).await?;
        anyhow::ensure!(status == 200, "{path}: {status} {v}");
        Ok((sorted(ids(&v)) == want).then_some(v))
    })
    .await
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["imports"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["import_id"] == id))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_import_at_once_and_each_sees_only_their_own() -> anyhow::Result<()> {
    let s = Stack::start("importviews", &[], &[]).await?;
    let u = users();

    // Both start two imports at the same time; ada uploads the same file twice,
    // bob uploads ada's file once.
    let ada = async {
        accepted(&s, "ada-1", started("H1", "bio.json"), &u.ada).await?;
        accepted(&s, "ada-1", progressed(50, 20), &u.ada).await?;
        accepted(&s, "ada-2", started("H1", "bio.json"), &u.ada).await
    };
    let bob = async {
        accepted(&s, "bob-1", started("H1", "bio.json"), &u.bob).await?;
        accepted(&s, "bob-2", started("H2", "chem.json"), &u.bob).await
    };
    let (a, b) = tokio::join!(ada, bob);
    a?;
    b?;
    let mut legacy = started("H1", "old.json");
    legacy["owner_id"] = Value::Null;
    accepted(&s, "legacy-1", legacy, &u.svc).await?;

    // Each owner sees exactly their own, newest first.
    let mine = until_listed(&s, "/v1/imports", &u.ada, &["ada-2", "ada-1"]).await?;
    assert_eq!(ids(&mine), ["ada-2", "ada-1"]);
    let mine = until_listed(&s, "/v1/imports", &u.bob, &["bob-2", "bob-1"]).await?;
    assert_eq!(ids(&mine), ["bob-2", "bob-1"]);
    let all = until_listed(
        &s,
        "/v1/imports?all=true",
        &u.ops,
        &["legacy-1", "bob-2", "bob-1", "ada-2", "ada-1"],
    )
    .await?;
    assert_eq!(ids(&all)[0], "legacy-1", "newest first");
    let legacy = find(&all, "legacy-1");
    assert_eq!(legacy["owner_id"], Value::Null);
    assert_eq!(legacy["status"], "in_progress");
    let ada1 = find(&all, "ada-1");
    assert_eq!(
        (
            &ada1["progress"],
            &ada1["questions_imported"],
            &ada1["step"]
        ),
        (&json!(50), &json!(20), &json!("import_questions"))
    );

    // Duplicates are per owner: ada's two H1 uploads are duplicates of each
    // other; bob's H1 upload is nobody's duplicate.
    let (_, d) = get(&s, "/v1/imports/duplicates?json_hash=H1", Some(&u.ada)).await?;
    assert_eq!(ids(&d), ["ada-2", "ada-1"]);
    let (_, d) = get(&s, "/v1/imports/duplicates?json_hash=H1", Some(&u.bob)).await?;
    assert_eq!(ids(&d), ["bob-1"]);
    let (_, d) = get(&s, "/v1/imports/duplicates?json_hash=H2", Some(&u.ada)).await?;
    assert_eq!(ids(&d), Vec::<String>::new());
    let (status, _) = get(&s, "/v1/imports/duplicates", Some(&u.ada)).await?;
    assert_eq!(status, 400);

    // Another user's import, and a legacy one, answer 404 to a plain user.
    let (status, one) = get(&s, "/v1/imports/ada-1", Some(&u.ada)).await?;
    assert_eq!((status, &one["owner_id"]), (200, &json!("ada")));
    for path in [
        "/v1/imports/ada-1",
        "/v1/imports/legacy-1",
        "/v1/imports/nope",
    ] {
        let (status, body) = get(&s, path, Some(&u.bob)).await?;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = get(&s, "/v1/imports?all=true", Some(&u.ada)).await?;
    assert_eq!(status, 403);
    let (status, _) = get(&s, "/v1/imports/monitor", Some(&u.bob)).await?;
    assert_eq!(status, 403);
    let (status, _) = get(&s, "/v1/imports", None).await?;
    assert_eq!(status, 401);

    // Only an import admin transfers; afterwards the new owner sees it and the old one does not.
    let transfer = json!({"kind": "import_transferred", "new_owner_id": "bob"});
    let (status, body) = post(&s, "ada-1", transfer.clone(), &u.ada).await?;
    assert_eq!(status, 403, "{body}");
    accepted(&s, "ada-1", transfer, &u.ops).await?;
    until_listed(&s, "/v1/imports", &u.bob, &["bob-2", "bob-1", "ada-1"]).await?;
    until_listed(&s, "/v1/imports", &u.ada, &["ada-2"]).await?;
    let (status, _) = get(&s, "/v1/imports/ada-1", Some(&u.ada)).await?;
    assert_eq!(status, 404);
    let (status, one) = get(&s, "/v1/imports/ada-1", Some(&u.bob)).await?;
    assert_eq!((status, &one["owner_id"]), (200, &json!("bob")));
    // The transferred file is now a duplicate for bob, and no longer for ada.
    let (_, d) = get(&s, "/v1/imports/duplicates?json_hash=H1", Some(&u.bob)).await?;
    assert_eq!(sorted(ids(&d)), ["ada-1", "bob-1"]);
    let (_, d) = get(&s, "/v1/imports/duplicates?json_hash=H1", Some(&u.ada)).await?;
    assert_eq!(ids(&d), ["ada-2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_checks_who_may_emit_what() -> anyhow::Result<()> {
    let s = Stack::start("importauth", &[], &[]).await?;
    let u = users();
    let (status, body) = post(&s, "i-1", started("H", "f.json"), "not-a-token").await?;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("malformed bearer token"))
    );
    let url = format!("{}/v1/imports/i-1/events", s.producer.url);
    let (status, _) = post_json_as(&url, &started("H", "f.json"), None).await?;
    assert_eq!(status, 401);
    let mut for_bob = started("H", "f.json");
    for_bob["owner_id"] = json!("bob");
    let (status, _) = post(&s, "i-1", for_bob.clone(), &u.ada).await?;
    assert_eq!(status, 403);
    let (status, body) = post(&s, "i-1", progressed(101, 1), &u.ada).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("progress: must be between 0 and 100"))
    );
    let (status, body) = post(&s, "i-1", progressed(10, 41), &u.ada).await?;
    assert_eq!(
        (status, &body["error"]),
        (
            400,
            &json!("questions_imported: must be between 0 and questions_total")
        )
    );
    let (status, body) = post(&s, "i-1", json!({"kind": "import_transferred"}), &u.ops).await?;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("new_owner_id: is required"))
    );
    // Activity: a user token emits only for its own sub.
    let hb = |user: &str| json!({"kind": "heartbeat", "user_id": user, "session_id": "s"});
    let activity = format!("{}/v1/activity", s.producer.url);
    assert_eq!(
        post_json_as(&activity, &hb("bob"), Some(&u.ada)).await?.0,
        403
    );
    assert_eq!(
        post_json_as(&activity, &hb("ada"), Some(&u.ada)).await?.0,
        202
    );
    assert_eq!(
        post_json_as(&activity, &hb("bob"), Some(&u.svc)).await?.0,
        202
    );
    // A service starts an import for bob; bob owns it.
    accepted(&s, "i-2", for_bob, &u.svc).await?;
    until_listed(&s, "/v1/imports", &u.bob, &["i-2"]).await?;
    // Nothing refused reached the topic: i-1 never existed.
    let (status, _) = get(&s, "/v1/imports/i-1", Some(&root_token())).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_imports_show_in_the_monitor_and_invalid_lifecycle_changes_nothing()
-> anyhow::Result<()> {
    let s = Stack::start("importstale", &[], &["--stale-after", "3s"]).await?;
    let u = users();
    let login = json!({"kind": "session_started", "user_id": "ada", "session_id": "ada-s",
                       "email": "ada@example.com", "device_type": "desktop"});
    let (status, _) = post_json_as(
        &format!("{}/v1/activity", s.producer.url),
        &login,
        Some(&u.ada),
    )
    .await?;
    assert_eq!(status, 202);
    accepted(&s, "ada-1", started("H1", "bio.json"), &u.ada).await?;
    accepted(&s, "bob-1", started("H2", "chem.json"), &u.bob).await?;
    accepted(&s, "bob-1", progressed(100, 40), &u.bob).await?;
    accepted(&s, "bob-1", json!({"kind": "import_completed"}), &u.bob).await?;

    // Fresh at first: in progress, not stale; the owner's e-mail comes from presence.
    let fresh = eventually(Duration::from_secs(60), "monitor lists ada-1", || async {
        let (_, v) = get(&s, "/v1/imports/monitor", Some(&u.ops)).await?;
        let ready = ids(&v) == ["ada-1"] && v["imports"][0]["owner_email"] == "ada@example.com";
        Ok(ready.then_some(v))
    })
    .await?;
    let row = &fresh["imports"][0];
    assert_eq!(row["stale"], false);
    assert_eq!(row["owner_id"], "ada");
    assert_eq!(row["questions_total"], 40);
    assert!(
        row["hours_since_access"].as_f64().is_some_and(|h| h < 0.01),
        "{row}"
    );

    // Three seconds without access: stale, in the monitor and to the owner.
    let stale = eventually(Duration::from_secs(20), "ada-1 stale", || async {
        let (_, v) = get(&s, "/v1/imports/ada-1", Some(&u.ada)).await?;
        Ok((v["stale"] == true).then_some(v))
    })
    .await?;
    assert_eq!(stale["status"], "in_progress");
    let (_, m) = get(&s, "/v1/imports/monitor", Some(&u.ops)).await?;
    assert_eq!(m["imports"][0]["stale"], true);
    // An access makes it fresh again.
    accepted(&s, "ada-1", json!({"kind": "import_accessed"}), &u.ada).await?;
    eventually(Duration::from_secs(20), "ada-1 fresh again", || async {
        let (_, v) = get(&s, "/v1/imports/ada-1", Some(&u.ada)).await?;
        Ok((v["stale"] == false).then_some(()))
    })
    .await?;

    // Accepted by the ingest, refused by the lifecycle: dead-lettered, state unchanged.
    accepted(&s, "bob-1", progressed(10, 4), &u.bob).await?;
    accepted(&s, "ghost-1", json!({"kind": "import_accessed"}), &u.bob).await?;
    let dead = consume_all(
        &Topics::new(&s.prefix).dead_letter,
        2,
        Duration::from_secs(60),
    )
    .await?;
    let mut reasons: Vec<&str> = dead
        .iter()
        .filter_map(|r| r.headers.get(headers::ERROR).map(String::as_str))
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "import bob-1: import_progressed on an import that is completed",
            "import ghost-1: import_accessed for an unknown import",
        ]
    );
    let (_, bob1) = get(&s, "/v1/imports/bob-1", Some(&u.bob)).await?;
    assert_eq!(
        (
            &bob1["status"],
            &bob1["progress"],
            &bob1["questions_imported"]
        ),
        (&json!("completed"), &json!(100), &json!(40))
    );
    assert!(bob1["finished_at"].is_string());
    let (status, _) = get(&s, "/v1/imports/ghost-1", Some(&root_token())).await?;
    assert_eq!(status, 404);
    Ok(())
}
