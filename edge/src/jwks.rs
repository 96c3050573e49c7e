//! Keeping a JWKS-backed verifier's keys current: read once before serving,
//! then again on a schedule and when a token names a key id the set does not
//! hold (an identity provider rotating its keys), at most every 10 s.

use std::time::{Duration, Instant};

use sessionfold_auth::{AuthArgs, Authenticator, KeysHandle, is_url};

/// The shortest time between two reads of the JWKS.
const MIN_GAP: Duration = Duration::from_secs(10);

async fn fetch(source: &str) -> Result<String, String> {
    if is_url(source) {
        let r = reqwest::Client::new()
            .get(source)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("answered {}", r.status()));
        }
        r.text().await.map_err(|e| e.to_string())
    } else {
        let path = source.to_owned();
        tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

async fn load(handle: &KeysHandle, source: &str) -> bool {
    match fetch(source)
        .await
        .and_then(|t| handle.replace(&t).map_err(|e| e.to_string()))
    {
        Ok(n) => {
            tracing::info!(source, keys = n, "JWKS loaded");
            true
        }
        Err(error) => {
            tracing::warn!(source, %error, "reading the JWKS failed; keeping the keys held");
            false
        }
    }
}

/// When `args` name a JWKS: reads it once (a URL is fetched now; until it
/// answers, tokens are refused) and keeps it fresh on a background task.
pub async fn keep_fresh(auth: &Authenticator, args: &AuthArgs) {
    let (Some(source), Some(handle)) = (args.jwt_jwks.clone(), auth.keys_handle()) else {
        return;
    };
    load(&handle, &source).await;
    let every = args.jwt_jwks_refresh.max(MIN_GAP);
    tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let due = last.elapsed() >= every;
            if (due || handle.take_refresh_request()) && last.elapsed() >= MIN_GAP {
                load(&handle, &source).await;
                last = Instant::now();
            }
        }
    });
}
