//! How the services reach a cluster and what they expect of its topics: the
//! librdkafka properties every client gets (security settings of a managed
//! Kafka), and the topic settings used when topics are created or checked.
//!
//! Both are set once at start from the command line and apply to every
//! client the process makes, so that no code path can forget them.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::EdgeError;

static PROPERTIES: OnceLock<Vec<(String, String)>> = OnceLock::new();
static POLICY: OnceLock<TopicPolicy> = OnceLock::new();

/// A librdkafka property given as `key=value`.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected key=value"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("{s:?}: empty key"));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

/// Reads a Java-style properties file: `key=value` lines, `#` or `!` comments.
pub fn read_properties_file(path: &Path) -> Result<Vec<(String, String)>, EdgeError> {
    let text = std::fs::read_to_string(path).map_err(|e| EdgeError::Config {
        what: format!("reading Kafka properties file {}", path.display()),
        reason: e.to_string(),
    })?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| {
            parse_property(l).map_err(|reason| EdgeError::Config {
                what: format!("Kafka properties file {}", path.display()),
                reason,
            })
        })
        .collect()
}

/// Whether a property's value is a secret that must never be logged.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", ".key", "credentials"]
        .iter()
        .any(|s| k.contains(s))
        && !k.ends_with(".location")
}

/// Sets the properties every Kafka client of this process gets; logs their
/// keys (never the values of secrets). A second call changes nothing.
pub fn install_properties(props: Vec<(String, String)>) {
    for (k, v) in &props {
        let shown = if is_secret(k) { "(hidden)" } else { v.as_str() };
        tracing::info!(property = %k, value = %shown, "Kafka client property");
    }
    let _ = PROPERTIES.set(props);
}

/// The installed client properties.
pub fn properties() -> &'static [(String, String)] {
    PROPERTIES.get().map_or(&[], Vec::as_slice)
}

/// What the services create, or expect to find, on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPolicy {
    /// Create missing topics; otherwise only check that they exist.
    pub create: bool,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// `min.insync.replicas` of created topics, when set.
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms` of the input topics (`None`: kept forever).
    pub input_retention: Option<Duration>,
    /// `retention.ms` of the dead-letter topic (`None`: kept forever).
    pub dead_letter_retention: Option<Duration>,
}

impl Default for TopicPolicy {
    fn default() -> Self {
        TopicPolicy {
            create: true,
            replication_factor: 1,
            min_insync_replicas: None,
            input_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            dead_letter_retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// Sets the topic policy of this process. A second call changes nothing.
pub fn install_policy(policy: TopicPolicy) {
    let _ = POLICY.set(policy);
}

/// The installed topic policy, or the default.
pub fn policy() -> TopicPolicy {
    POLICY.get().cloned().unwrap_or_default()
}

/// How long a topic keeps records: `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// A retention setting: a duration such as `30d`, or `forever`.
pub fn parse_retention(s: &str) -> Result<Retention, String> {
    match s.trim() {
        "forever" | "infinite" | "-1" => Ok(Retention(None)),
        other => humantime::parse_duration(other)
            .map(|d| Retention(Some(d)))
            .map_err(|e| format!("{other:?}: {e}; a duration such as 30d, or forever")),
    }
}

/// `retention.ms` for a retention setting.
pub fn retention_ms(r: Option<Duration>) -> String {
    r.map_or_else(|| "-1".to_owned(), |d| d.as_millis().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_and_secrets_are_known() {
        assert_eq!(
            parse_property("sasl.password = s3cr=t"),
            Ok(("sasl.password".into(), "s3cr=t".into()))
        );
        assert!(parse_property("nokey").is_err());
        assert!(parse_property("=v").is_err());
        for k in [
            "sasl.password",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
            "ssl.key.pem",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in [
            "security.protocol",
            "sasl.mechanism",
            "ssl.ca.location",
            "ssl.key.location",
            "sasl.username",
        ] {
            assert!(!is_secret(k), "{k}");
        }
        assert_eq!(parse_retention("forever"), Ok(Retention(None)));
        assert_eq!(
            parse_retention("3d"),
            Ok(Retention(Some(Duration::from_secs(3 * 86_400))))
        );
        assert_eq!(retention_ms(Some(Duration::from_secs(2))), "2000");
        assert_eq!(retention_ms(None), "-1");
    }
}
