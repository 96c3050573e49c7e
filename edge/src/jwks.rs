//! Keeping a JWKS-backed verifier's keys current: read once before serving,
//! then again on a schedule and when a token names a key id the set does not
//! hold (an identity provider rotating its keys), at most every 10 s.
//!
//! A key set decides who may do everything, so the fetch is held short:
//! https only unless the operator allowed http, redirects only within the
//! same host, a 10 s timeout and a size cap.

use std::time::Duration;

use sessionfold_auth::{AuthArgs, Authenticator, KeysHandle, is_url};

/// Largest JWKS document read; providers publish a few kilobytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The client that fetches key sets.
fn client() -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt
            .previous()
            .first()
            .is_some_and(|first| first.host_str() == attempt.url().host_str());
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if attempt.previous().len() >= 5 || !same_host || downgrade {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// Reads a JWKS document from a URL or a file.
pub async fn fetch(source: &str) -> Result<String, String> {
    if !is_url(source) {
        let path = source.to_owned();
        return tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
    }
    let mut r = client()?
        .get(source)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().is_redirection() {
        return Err(format!(
            "answered {} with a redirect to another host or to plain http, which is not followed",
            r.status()
        ));
    }
    if !r.status().is_success() {
        return Err(format!("answered {}", r.status()));
    }
    if r.content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the document is not UTF-8".to_owned())
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
            handle.read_failed();
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
    let every = args
        .jwt_jwks_refresh
        .max(sessionfold_auth::verify::JWKS_MIN_GAP);
    tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // A request for a new read waits until 10 s after the last one,
            // then is served; it is never dropped.
            if last.elapsed() >= every || handle.take_refresh_request() {
                load(&handle, &source).await;
                last = tokio::time::Instant::now();
            }
        }
    });
}
