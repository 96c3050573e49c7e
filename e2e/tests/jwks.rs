//! Keys from an identity provider's JWKS, served over HTTP by the test: a
//! token is verified with the key its `kid` names; when the provider rotates
//! (a new key appears, the old one goes), the service takes the new key once
//! a token names it and refuses the old one after the refresh.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sessionfold_e2e::{Service, eventually, scratch, unique_prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JWKS: &str = include_str!("../../auth/testdata/jwks.json");

/// Serves the current document on every request, over plain HTTP/1.1.
async fn serve_jwks(doc: Arc<Mutex<String>>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = doc.lock().map(|d| d.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

fn keys_named(kids: &[&str]) -> String {
    let doc: Value = serde_json::from_str(JWKS).unwrap_or_default();
    let keys: Vec<Value> = doc["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| kids.iter().any(|id| k["kid"] == *id))
        .cloned()
        .collect();
    json!({ "keys": keys }).to_string()
}

fn signed(alg: Algorithm, kid: &str, key: &EncodingKey, sub: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 600)
        .unwrap_or(0);
    jsonwebtoken::encode(&header, &json!({"sub": sub, "exp": exp}), key).unwrap_or_default()
}

async fn post(producer: &str, token: &str, user: &str) -> anyhow::Result<u16> {
    let body = json!({"kind": "heartbeat", "user_id": user, "session_id": "s"});
    Ok(reqwest::Client::new()
        .post(format!("{producer}/v1/activity"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_follow_the_providers_key_rotation() -> anyhow::Result<()> {
    let doc = Arc::new(Mutex::new(keys_named(&["ec256"])));
    let url = serve_jwks(doc.clone()).await?;
    let dir = scratch()?;
    let producer = Service::start_without_secret(
        "sessionfold-producer",
        &unique_prefix("jwks"),
        &[
            "--jwt-jwks",
            &url,
            "--jwt-jwks-allow-http",
            "--jwt-jwks-refresh",
            "1h",
        ],
        dir.path(),
    )
    .await?;
    let ec = EncodingKey::from_ec_pem(include_bytes!("../../auth/testdata/ec256-private.pem"))?;
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../../auth/testdata/rsa-private.pem"))?;
    let old = signed(Algorithm::ES256, "ec256", &ec, "ada");
    let new = signed(Algorithm::RS256, "rsa", &rsa, "ada");
    assert_eq!(post(&producer.url, &old, "ada").await?, 202);
    assert_eq!(post(&producer.url, &new, "ada").await?, 401);

    // The provider rotates: the RSA key in, the EC key out.
    *doc.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = keys_named(&["rsa"]);
    eventually(Duration::from_secs(30), "the new key accepted", || async {
        // Each refused try asks for a refresh (at most one per 10 s).
        Ok((post(&producer.url, &new, "ada").await? == 202).then_some(()))
    })
    .await?;
    assert_eq!(post(&producer.url, &old, "ada").await?, 401);
    Ok(())
}
