//! The Schema Registry at the edge: the Confluent REST API that most
//! organisations running Kafka with Avro already have.
//!
//! The producer registers (or finds) the subject `<topic>-value` for each
//! input topic, after checking that the schema it writes is compatible with
//! the subject's history, and writes the registry wire format. Every reader
//! takes both formats; the schema id of a registry-framed record is looked
//! up once over HTTP (on a background task, then cached) and mapped to the
//! published schema version with the same fingerprint, so decoding stays the
//! pure codec of `sessionfold-schemas`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sessionfold_schemas::{Contract, SchemaError, SchemaIds};

use crate::EdgeError;

/// How to reach the registry.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Schema Registry base URL (Confluent API), e.g. `http://registry:8081`.
    /// Readers need it to read records in the registry wire format; the
    /// producer needs it to write that format.
    #[arg(long, env = "SESSIONFOLD_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// User for the registry's HTTP basic authentication.
    #[arg(long, env = "SESSIONFOLD_SCHEMA_REGISTRY_USER")]
    pub schema_registry_user: Option<String>,
    /// Password for the registry's HTTP basic authentication.
    #[arg(
        long,
        env = "SESSIONFOLD_SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub schema_registry_password: Option<String>,
}

/// A client of one registry.
#[derive(Clone)]
pub struct Registry {
    base: String,
    auth: Option<(String, Option<String>)>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Largest registry answer read.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

fn registry_error(what: impl Into<String>, reason: impl std::fmt::Display) -> EdgeError {
    EdgeError::Registry {
        what: what.into(),
        reason: reason.to_string(),
    }
}

impl Registry {
    /// A client for the configured registry, if one is.
    pub fn from_args(args: &RegistryArgs) -> Result<Option<Registry>, EdgeError> {
        let Some(url) = &args.schema_registry_url else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| registry_error("building the HTTP client", e))?;
        Ok(Some(Registry {
            base: url.trim_end_matches('/').to_owned(),
            auth: args
                .schema_registry_user
                .clone()
                .map(|u| (u, args.schema_registry_password.clone())),
            http,
        }))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        match &self.auth {
            Some((user, pass)) => r.basic_auth(user, pass.as_deref()),
            None => r,
        }
    }

    async fn send(
        &self,
        what: &str,
        r: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), EdgeError> {
        let mut resp = r.send().await.map_err(|e| registry_error(what, e))?;
        let status = resp.status().as_u16();
        // A schema is a few kilobytes; a registry (or something posing as
        // one) that sends more is not read into memory.
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(registry_error(
                what,
                format!("answer over {MAX_RESPONSE_BYTES} bytes"),
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| registry_error(what, e))? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(registry_error(
                    what,
                    format!("answer over {MAX_RESPONSE_BYTES} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Whether `schema` may be added to `subject`, by the subject's
    /// compatibility rule; `None` when the subject has no version yet.
    pub async fn compatible(&self, subject: &str, schema: &str) -> Result<Option<bool>, EdgeError> {
        let what = format!("checking {subject} for compatibility");
        let path = format!("/compatibility/subjects/{subject}/versions/latest");
        let r = self
            .request(reqwest::Method::POST, &path)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&json!({ "schema": schema }));
        match self.send(&what, r).await? {
            (200, body) => Ok(body["is_compatible"].as_bool()),
            (404, _) => Ok(None),
            (status, body) => Err(registry_error(what, format!("HTTP {status}: {body}"))),
        }
    }

    /// Registers `schema` under `subject` (or finds it there); its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, EdgeError> {
        let what = format!("registering the schema of {subject}");
        let r = self
            .request(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
            )
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&json!({ "schema": schema }));
        match self.send(&what, r).await? {
            (200, body) => body["id"]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| registry_error(what, format!("no id in {body}"))),
            (status, body) => Err(registry_error(what, format!("HTTP {status}: {body}"))),
        }
    }

    /// The schema text registered under `id`; `None` when the registry has
    /// no schema with that id.
    pub async fn schema(&self, id: u32) -> Result<Option<String>, EdgeError> {
        let what = format!("looking up schema id {id}");
        match self
            .send(
                &what,
                self.request(reqwest::Method::GET, &format!("/schemas/ids/{id}")),
            )
            .await?
        {
            (200, body) => body["schema"]
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| registry_error(what, format!("no schema in {body}"))),
            (404, _) => Ok(None),
            (status, body) => Err(registry_error(what, format!("HTTP {status}: {body}"))),
        }
    }

    /// Checks that `schema` is compatible with what `subject` holds, then
    /// registers it; its id. An incompatible schema is refused before use.
    pub async fn register_checked(&self, subject: &str, schema: &str) -> Result<u32, EdgeError> {
        if self.compatible(subject, schema).await? == Some(false) {
            return Err(registry_error(
                format!("registering the schema of {subject}"),
                "the registry finds it incompatible with the subject's latest version under the subject's compatibility rule; publish a compatible schema version, or change the subject's rule",
            ));
        }
        let id = self.register(subject, schema).await?;
        tracing::info!(subject, id, "schema registered");
        Ok(id)
    }
}

/// Schema ids resolved by a background task and cached: a lookup blocks the
/// caller (a processing thread) at most [`LOOKUP_WAIT`].
pub struct RegistryIds {
    known: RwLock<HashMap<u32, Known>>,
    wanted: tokio::sync::mpsc::UnboundedSender<u32>,
}

/// What the registry said of one id, and when.
#[derive(Debug, Clone)]
enum Known {
    /// The fingerprint of the schema registered under it.
    Found(u64),
    /// Why it cannot be read, as of `at`: forgotten after [`REFUSAL_TTL`],
    /// since the id may be registered a moment later (a producer that
    /// writes before it registers, a registry being restored).
    Refused { why: String, at: Instant },
}

/// How long a refused id is answered from the cache before it is asked again.
pub const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// Most ids cached before the refused ones are forgotten.
const MAX_CACHED: usize = 10_000;

/// Longest a decode waits for a schema id's first lookup.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(15);

impl RegistryIds {
    /// Starts the lookup task on `runtime`.
    pub fn start(registry: Registry, runtime: &tokio::runtime::Handle) -> Arc<RegistryIds> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let ids = Arc::new(RegistryIds {
            known: RwLock::new(HashMap::new()),
            wanted: tx,
        });
        let weak = Arc::downgrade(&ids);
        runtime.spawn(async move {
            while let Some(id) = rx.recv().await {
                let Some(ids) = weak.upgrade() else { break };
                if ids.cached(id).is_some() {
                    continue;
                }
                // A missing id is remembered like a found one: a stream of
                // records with made-up ids costs one lookup each, not a wait.
                let found = match registry.schema(id).await {
                    Ok(Some(text)) => sessionfold_schemas::canonical::fingerprint_of_text(&text)
                        .map_err(|e| format!("the registered schema does not parse: {e}")),
                    Ok(None) => Err("the registry has no schema with this id".to_owned()),
                    Err(e) => {
                        // Unreachable: not cached, so a later record asks again.
                        tracing::warn!(id, error = %e, "schema registry lookup failed");
                        continue;
                    }
                };
                let mut known = crate::write(&ids.known);
                // Made-up ids must not grow the cache without bound.
                if found.is_err() && known.len() >= MAX_CACHED {
                    known.retain(|_, v| matches!(v, Known::Found(_)));
                }
                let entry = match found {
                    Ok(f) => Known::Found(f),
                    Err(why) => Known::Refused {
                        why,
                        at: Instant::now(),
                    },
                };
                known.insert(id, entry);
            }
        });
        ids
    }

    fn cached(&self, id: u32) -> Option<Result<u64, String>> {
        let known = crate::read(&self.known);
        match known.get(&id)? {
            Known::Found(f) => Some(Ok(*f)),
            Known::Refused { why, at } if at.elapsed() < REFUSAL_TTL => Some(Err(why.clone())),
            Known::Refused { .. } => None,
        }
    }
}

impl SchemaIds for RegistryIds {
    fn fingerprint(&self, id: u32) -> Result<u64, String> {
        if let Some(found) = self.cached(id) {
            return found;
        }
        let deadline = Instant::now() + LOOKUP_WAIT;
        let mut polls = 0u32;
        while Instant::now() < deadline {
            // Ask again every second: a failed lookup is not cached.
            if polls % 50 == 0 {
                let _ = self.wanted.send(id);
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(20));
            if let Some(found) = self.cached(id) {
                return found;
            }
        }
        Err(format!(
            "the registry did not answer for this id within {} s",
            LOOKUP_WAIT.as_secs()
        ))
    }
}

static IDS: OnceLock<Arc<RegistryIds>> = OnceLock::new();

/// Makes every contract of this process read the registry wire format.
pub fn install(ids: Arc<RegistryIds>) {
    let _ = IDS.set(ids);
}

/// The contract, reading the registry wire format when a registry is configured.
pub fn contract() -> Result<Contract, SchemaError> {
    let c = Contract::load()?;
    Ok(match IDS.get() {
        Some(ids) => c.with_registry(ids.clone()),
        None => c,
    })
}
