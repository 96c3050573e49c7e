//! Every route of both services against every kind of caller (docs/contract.md §5), on
//! the real binaries and a real broker.

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{
    Stack, TEST_SECRET, eventually, free_port, get_json_as, post_json_as, token,
};

const CALLERS: [&str; 7] = [
    "none",
    "bad-signature",
    "expired",
    "ada",
    "bob",
    "admin",
    "service",
];

fn bearer(caller: &str) -> Option<String> {
    let exp_past = |sub: &str| {
        let claims = sessionfold_auth::Claims {
            sub: sub.into(),
            roles: vec!["admin".into()],
            permissions: Vec::new(),
            exp: Some(1_000_000_000),
            iat: None,
        };
        sessionfold_auth::mint_hs256(TEST_SECRET.as_bytes(), &claims).unwrap_or_default()
    };
    let forged = || {
        let claims = sessionfold_auth::Claims {
            sub: "admin".into(),
            roles: vec!["admin".into()],
            permissions: Vec::new(),
            exp: Some(4_000_000_000),
            iat: None,
        };
        sessionfold_auth::mint_hs256(b"not the secret", &claims).unwrap_or_default()
    };
    match caller {
        "none" => None,
        "bad-signature" => Some(forged()),
        "expired" => Some(exp_past("admin")),
        "ada" => Some(token("ada", &[], &[])),
        "bob" => Some(token("bob", &[], &[])),
        "admin" => Some(token("root", &["admin"], &[])),
        _ => Some(token("svc", &["service"], &[])),
    }
}

/// Expected status for each caller, in the order of [`CALLERS`].
type Row = (&'static str, &'static str, Option<Value>, [u16; 7]);

fn reads() -> Vec<Row> {
    let un = 401;
    vec![
        (
            "GET",
            "/v1/presence/active",
            None,
            [un, un, un, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/presence/summary",
            None,
            [un, un, un, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/presence/users/ada",
            None,
            [un, un, un, 200, 404, 200, 200],
        ),
        (
            "GET",
            "/v1/presence/users/bob",
            None,
            [un, un, un, 404, 200, 200, 200],
        ),
        ("GET", "/v1/imports", None, [un, un, un, 200, 200, 200, 200]),
        (
            "GET",
            "/v1/imports?all=true",
            None,
            [un, un, un, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/imports/imp-ada",
            None,
            [un, un, un, 200, 404, 200, 200],
        ),
        (
            "GET",
            "/v1/imports/imp-legacy",
            None,
            [un, un, un, 404, 404, 200, 200],
        ),
        (
            "GET",
            "/v1/imports/duplicates?json_hash=H",
            None,
            [un, un, un, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/imports/monitor",
            None,
            [un, un, un, 403, 403, 200, 200],
        ),
        ("GET", "/healthz", None, [200; 7]),
        ("GET", "/readyz", None, [200; 7]),
    ]
}

fn writes() -> Vec<Row> {
    let un = 401;
    let hb = json!({"kind": "heartbeat", "user_id": "ada", "session_id": "ada-s"});
    let start = json!({"kind": "import_started", "json_hash": "H", "file_name": "f.json", "questions_total": 1});
    let mut legacy = start.clone();
    legacy["owner_id"] = Value::Null;
    let transfer = json!({"kind": "import_transferred", "new_owner_id": "bob"});
    vec![
        (
            "POST",
            "/v1/activity",
            Some(hb),
            [un, un, un, 202, 403, 403, 202],
        ),
        (
            "POST",
            // Each caller starts an import of its own: a known import is
            // started again only by its owner.
            "/v1/imports/imp-new-{caller}/events",
            Some(start),
            [un, un, un, 202, 202, 202, 202],
        ),
        (
            "POST",
            "/v1/imports/imp-old/events",
            Some(legacy),
            [un, un, un, 403, 403, 403, 202],
        ),
        (
            "POST",
            "/v1/imports/imp-ada/events",
            Some(transfer),
            [un, un, un, 403, 403, 202, 202],
        ),
    ]
}

async fn call(s: &Stack, row: &Row, caller: &str) -> anyhow::Result<(u16, Value)> {
    let (method, path, body, _) = row;
    let tok = bearer(caller);
    let tok = tok.as_deref();
    if *method == "GET" {
        let url = format!("{}{path}", s.projections.url);
        if path.starts_with("/v1/") {
            return get_json_as(&url, tok).await;
        }
        // Health routes answer text.
        let r = reqwest::get(&url).await?;
        return Ok((r.status().as_u16(), Value::Null));
    }
    let url = format!("{}{}", s.producer.url, path.replace("{caller}", caller));
    post_json_as(&url, body.as_ref().unwrap_or(&Value::Null), tok).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_the_rules_say() -> anyhow::Result<()> {
    let s = Stack::start("access", &[], &[]).await?;
    // Ada and bob are known, ada owns an import, and there is a legacy one.
    let svc = token("svc", &["service"], &[]);
    for user in ["ada", "bob"] {
        let login = json!({"kind": "session_started", "user_id": user, "session_id": format!("{user}-s"),
                           "email": format!("{user}@example.com")});
        let (st, _) = post_json_as(
            &format!("{}/v1/activity", s.producer.url),
            &login,
            Some(&svc),
        )
        .await?;
        assert_eq!(st, 202);
    }
    let start = |owner: Value| json!({"kind": "import_started", "owner_id": owner, "json_hash": "H", "file_name": "f.json", "questions_total": 1});
    for (id, owner) in [("imp-ada", json!("ada")), ("imp-legacy", Value::Null)] {
        let url = format!("{}/v1/imports/{id}/events", s.producer.url);
        assert_eq!(post_json_as(&url, &start(owner), Some(&svc)).await?.0, 202);
    }
    let admin = token("root", &["admin"], &[]);
    eventually(Duration::from_secs(60), "setup folded", || async {
        let (_, all) = get_json_as(
            &format!("{}/v1/imports?all=true", s.projections.url),
            Some(&admin),
        )
        .await?;
        let (st, _) = get_json_as(
            &format!("{}/v1/presence/users/bob", s.projections.url),
            Some(&admin),
        )
        .await?;
        Ok((all["imports"].as_array().map(Vec::len) == Some(2) && st == 200).then_some(()))
    })
    .await?;

    let mut wrong = Vec::new();
    for row in reads().iter().chain(writes().iter()) {
        for (i, caller) in CALLERS.iter().enumerate() {
            let (status, body) = call(&s, row, caller).await?;
            if status != row.3[i] {
                wrong.push(format!(
                    "{} {} as {caller}: {status} (want {}) {body}",
                    row.0, row.1, row.3[i]
                ));
            }
            // Refusals explain themselves and never leak internals.
            if status >= 400 {
                let msg = body["error"].as_str().unwrap_or_default();
                assert!(
                    !msg.is_empty(),
                    "{} {} as {caller}: no error message",
                    row.0,
                    row.1
                );
                assert!(!msg.contains("panicked") && !msg.contains("src/"), "{msg}");
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_key_refuses_to_start_unless_open_mode_is_asked_for()
-> anyhow::Result<()> {
    for name in ["sessionfold-producer", "sessionfold-projections"] {
        let out = std::process::Command::new(sessionfold_e2e::bin(name)?)
            .args(["--listen", "127.0.0.1:0", "--brokers", "127.0.0.1:1"])
            .env_remove("SESSIONFOLD_JWT_SECRET")
            .env_remove("SESSIONFOLD_JWT_PUBLIC_KEY")
            .output()?;
        assert!(!out.status.success(), "{name} started without a key");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no JWT secret or public key configured"),
            "{name}: {err}"
        );
    }
    // Open mode starts, says so loudly, and lets a tokenless caller in.
    let dir = sessionfold_e2e::scratch()?;
    let prefix = sessionfold_e2e::unique_prefix("open");
    let port = free_port()?;
    let log = dir.path().join("open.log");
    let mut child = std::process::Command::new(sessionfold_e2e::bin("sessionfold-projections")?)
        .args(["--auth-disabled", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--brokers",
            &sessionfold_e2e::brokers(),
            "--topic-prefix",
            &prefix,
        ])
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}/v1/imports?all=true");
    let answer = eventually(Duration::from_secs(30), "open projections", || async {
        Ok(get_json_as(&url, None).await.ok())
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer?.0, 200);
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("AUTHENTICATION IS DISABLED"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verify_with_the_public_key() -> anyhow::Result<()> {
    let dir = sessionfold_e2e::scratch()?;
    let key = dir.path().join("public.pem");
    std::fs::write(&key, include_str!("../../auth/testdata/rsa-public.pem"))?;
    let prefix = sessionfold_e2e::unique_prefix("rs256");
    let key = key.to_string_lossy().into_owned();
    let svc = sessionfold_e2e::Service::start_without_secret(
        "sessionfold-projections",
        &prefix,
        &["--jwt-public-key", &key],
        dir.path(),
    )
    .await?;
    let claims = |roles: Vec<String>| sessionfold_auth::Claims {
        sub: "ops".into(),
        roles,
        permissions: Vec::new(),
        exp: Some(4_000_000_000),
        iat: None,
    };
    let private = include_bytes!("../../auth/testdata/rsa-private.pem");
    let signed = sessionfold_auth::mint_rs256(private, &claims(vec!["admin".into()]))?;
    let url = format!("{}/v1/imports?all=true", svc.url);
    assert_eq!(get_json_as(&url, Some(&signed)).await?.0, 200);
    let other = include_bytes!("../../auth/testdata/rsa-other-private.pem");
    let forged = sessionfold_auth::mint_rs256(other, &claims(vec!["admin".into()]))?;
    let (status, body) = get_json_as(&url, Some(&forged)).await?;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("bad token signature"))
    );
    let hs = token("ops", &["admin"], &[]);
    assert_eq!(get_json_as(&url, Some(&hs)).await?.0, 401);
    Ok(())
}
