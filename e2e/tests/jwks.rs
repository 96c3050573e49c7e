//! Keys from an identity provider's JWKS, served over HTTP by the test: a
//! token is verified with the key its `kid` names; when the provider rotates
//! (a new key appears, the old one goes), the service takes the new key once
//! a token names it and refuses the old one after the refresh. Keys that
//! cannot verify are left out one by one, each key takes only its own
//! algorithm, and a failed or oversized read keeps the keys held.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sessionfold_e2e::{Service, eventually, scratch, unique_prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JWKS: &str = include_str!("../../auth/testdata/jwks.json");

/// Serves the current document on every request, over plain HTTP/1.1,
/// with status 200 unless `status` says otherwise; counts the reads.
async fn serve_jwks(
    doc: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
    reads: Arc<AtomicUsize>,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = doc.lock().map(|d| d.clone()).unwrap_or_default();
            let code = status.load(Ordering::SeqCst);
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
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
    let (status, reads) = (Arc::new(AtomicU16::new(200)), Arc::new(AtomicUsize::new(0)));
    let url = serve_jwks(doc.clone(), status, reads.clone()).await?;
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
    let read_at_start = reads.load(Ordering::SeqCst);

    // The provider rotates: the RSA key in, the EC key out. A token naming
    // the new key within 10 s of the last read is told when to retry, and
    // the read it asked for happens once the 10 s have passed, with no
    // other request to prompt it.
    *doc.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = keys_named(&["rsa"]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/activity", producer.url))
        .bearer_auth(&new)
        .json(&json!({"kind": "heartbeat", "user_id": "ada", "session_id": "s"}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Retry-After"))?;
    assert!((1..=10).contains(&retry), "{retry}");
    let body: serde_json::Value = r.json().await?;
    assert!(
        body["error"].as_str().unwrap_or_default().contains("retry"),
        "{body}"
    );
    eventually(
        Duration::from_secs(30),
        "the key set read again",
        || async { Ok((reads.load(Ordering::SeqCst) > read_at_start).then_some(())) },
    )
    .await?;
    eventually(Duration::from_secs(5), "the new key accepted", || async {
        Ok((post(&producer.url, &new, "ada").await? == 202).then_some(()))
    })
    .await?;
    assert_eq!(post(&producer.url, &old, "ada").await?, 401);
    Ok(())
}

/// A set with a key that cannot be used (an X25519 key, an encryption key,
/// a key without verify in key_ops) keeps its usable keys; each key takes
/// the algorithm it declares only; a failed or oversized read keeps the
/// keys held; a plain http URL needs the operator's word.
#[tokio::test(flavor = "multi_thread")]
async fn unusable_keys_wrong_algorithms_and_bad_reads_are_refused() -> anyhow::Result<()> {
    let mut set: Value = serde_json::from_str(&keys_named(&["rsa", "ec256"]))?;
    let rsa_jwk = set["keys"][0].clone();
    let mut enc = rsa_jwk.clone();
    enc["kid"] = json!("rsa-enc");
    enc["use"] = json!("enc");
    let mut wrap = rsa_jwk.clone();
    wrap["kid"] = json!("rsa-wrap");
    wrap.as_object_mut().map(|o| o.remove("use"));
    wrap["key_ops"] = json!(["wrapKey"]);
    if let Some(keys) = set["keys"].as_array_mut() {
        keys.push(json!({"kty": "OKP", "crv": "X25519", "kid": "x",
            "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}));
        keys.push(enc);
        keys.push(wrap);
    }
    let doc = Arc::new(Mutex::new(set.to_string()));
    let (status, reads) = (Arc::new(AtomicU16::new(200)), Arc::new(AtomicUsize::new(0)));
    let url = serve_jwks(doc.clone(), status.clone(), reads.clone()).await?;
    let dir = scratch()?;
    let prefix = unique_prefix("jwks-bad");
    let (ok, log) = sessionfold_e2e::exits_within(
        "sessionfold-producer",
        &["--topic-prefix", &prefix, "--jwt-jwks", &url],
        Duration::from_secs(30),
    )?;
    assert!(!ok && log.contains("plain http"), "{log}");
    let producer = Service::start_without_secret(
        "sessionfold-producer",
        &prefix,
        &[
            "--jwt-jwks",
            &url,
            "--jwt-jwks-allow-http",
            "--jwt-jwks-refresh",
            "10s",
        ],
        dir.path(),
    )
    .await?;
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../../auth/testdata/rsa-private.pem"))?;
    let ec = EncodingKey::from_ec_pem(include_bytes!("../../auth/testdata/ec256-private.pem"))?;
    assert_eq!(
        post(
            &producer.url,
            &signed(Algorithm::RS256, "rsa", &rsa, "ada"),
            "ada"
        )
        .await?,
        202
    );
    assert_eq!(
        post(
            &producer.url,
            &signed(Algorithm::ES256, "ec256", &ec, "ada"),
            "ada"
        )
        .await?,
        202
    );
    // The key declares RS256: the same key with RS512 or PS256 is refused.
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        assert_eq!(
            post(&producer.url, &signed(alg, "rsa", &rsa, "ada"), "ada").await?,
            401,
            "{alg:?}"
        );
    }
    for kid in ["rsa-enc", "rsa-wrap"] {
        assert_eq!(
            post(
                &producer.url,
                &signed(Algorithm::RS256, kid, &rsa, "ada"),
                "ada"
            )
            .await?,
            401,
            "{kid}"
        );
    }
    let log = producer.log_text();
    assert!(log.contains("left out"), "{log}");
    // The provider fails, then sends a document far too large: the keys held
    // go on verifying.
    for (code, body) in [(500u16, set.to_string()), (200, "x".repeat(300 * 1024))] {
        status.store(code, Ordering::SeqCst);
        *doc.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = body;
        let before = reads.load(Ordering::SeqCst);
        eventually(
            Duration::from_secs(30),
            "the key set read again",
            || async { Ok((reads.load(Ordering::SeqCst) > before).then_some(())) },
        )
        .await?;
        // The read has been answered; let the producer finish it.
        eventually(Duration::from_secs(5), "the failed read logged", || async {
            let log = producer.log_text();
            let said = if code == 500 {
                "answered 500"
            } else {
                "over 262144 bytes"
            };
            Ok(log.contains(said).then_some(()))
        })
        .await?;
        assert_eq!(
            post(
                &producer.url,
                &signed(Algorithm::RS256, "rsa", &rsa, "ada"),
                "ada"
            )
            .await?,
            202,
            "after {code}"
        );
    }
    Ok(())
}
