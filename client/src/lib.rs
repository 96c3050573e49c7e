//! A Rust client of sessionfold's ingest API, for the services that post
//! activity and import events: it gives every event an id before the first
//! try, so that a retry after a timeout or a 503 is applied once, and it
//! retries what the ingest could not take yet. HTTP only: using it needs no
//! Kafka client library.

use std::time::Duration;

use serde::Serialize;

use sessionfold_ingest::{ActivityInput, ImportInput};

/// An event the client can give an id before sending, so that retries are applied once.
trait Identified: Serialize {
    fn id_slot(&mut self) -> &mut Option<String>;
}

impl Identified for ActivityInput {
    fn id_slot(&mut self) -> &mut Option<String> {
        &mut self.event_id
    }
}

impl Identified for ImportInput {
    fn id_slot(&mut self) -> &mut Option<String> {
        &mut self.event_id
    }
}

/// Why the ingest did not accept events.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request did not reach the ingest or its answer was unreadable.
    #[error("ingest request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The ingest refused the request.
    #[error("ingest answered {status}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The `error` field of the answer.
        message: String,
    },
    /// The producer's base URL cannot carry a path.
    #[error("not a usable producer URL: {0}")]
    BadUrl(String),
    /// The broker stayed unavailable through every retry.
    #[error("ingest unavailable after {attempts} attempts; {accepted} events accepted")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Events accepted before giving up.
        accepted: usize,
    },
}

/// A client of one producer.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    attempts: u32,
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    accepted: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

impl Client {
    /// A client of the producer at `base_url` (such as `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
            attempts: 5,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// Sends activity events; returns their ids. Missing event ids are filled in
    /// first, so that a retry after a 503 is applied once.
    pub async fn send_activity(
        &self,
        events: Vec<ActivityInput>,
    ) -> Result<Vec<String>, ClientError> {
        self.send(format!("{}/v1/activity", self.base), events)
            .await
    }

    /// Sends events of one import; returns their ids, as [`Client::send_activity`] does.
    pub async fn send_imports(
        &self,
        import_id: &str,
        events: Vec<ImportInput>,
    ) -> Result<Vec<String>, ClientError> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| ClientError::BadUrl(format!("{}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|()| ClientError::BadUrl(self.base.clone()))?
            .pop_if_empty()
            .extend(["v1", "imports", import_id, "events"]);
        self.send(url.to_string(), events).await
    }

    async fn send<T: Identified>(
        &self,
        url: String,
        mut events: Vec<T>,
    ) -> Result<Vec<String>, ClientError> {
        for e in &mut events {
            e.id_slot()
                .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        }
        let mut accepted: Vec<String> = Vec::with_capacity(events.len());
        let mut pending = events;
        let mut delay = Duration::from_millis(200);
        for _ in 0..self.attempts {
            let mut req = self
                .http
                .post(&url)
                .json(&serde_json::json!({ "events": pending }));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let answer: Answer = resp.json().await?;
            if status.is_success() {
                accepted.extend(answer.accepted);
                return Ok(accepted);
            }
            if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                return Err(ClientError::Rejected {
                    status: status.as_u16(),
                    message: answer.error.unwrap_or_default(),
                });
            }
            pending.retain_mut(|e| {
                !answer
                    .accepted
                    .iter()
                    .any(|a| Some(a) == e.id_slot().as_ref())
            });
            accepted.extend(answer.accepted);
            tokio::time::sleep(retry_after.unwrap_or(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Err(ClientError::Unavailable {
            attempts: self.attempts,
            accepted: accepted.len(),
        })
    }
}
