//! Logging and metrics: one log line per record whatever the input,
//! librdkafka's repeats throttled, Prometheus text on `/metrics`, and
//! request counts and latency per route.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Registry, TextEncoder};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::LogFormat;

/// Starts logging to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only where a person reads a terminal; a file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(OneLinePerRecord { keep_esc: ansi });
    // A second initialisation (tests start several services in one process) is harmless.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Stderr on which every log record stays one line: control characters
/// inside a record (a newline in an id a client sent) are escaped, so input
/// can never forge a log line. The formatter hands over each record in one
/// write. Colour codes are kept only when they are ours (a terminal).
#[derive(Debug, Clone, Copy)]
struct OneLinePerRecord {
    keep_esc: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLinePerRecord {
    type Writer = OneLinePerRecord;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl std::io::Write for OneLinePerRecord {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&escape_record(buf, self.keep_esc))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One log record with its inner control characters escaped (`\n`, `\r`,
/// `\x1b`…, and the Unicode line breaks U+0085, U+2028 and U+2029, which
/// some log viewers split on); the final newline stays.
fn escape_record(buf: &[u8], keep_esc: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match buf.strip_suffix(b"\n") {
        Some(b) => (b, &b"\n"[..]),
        None => (buf, &b""[..]),
    };
    let bad = |b: u8| (b < 0x20 && b != b'\t' && !(keep_esc && b == 0x1b)) || b == 0x7f;
    // The UTF-8 form of a C1 control (U+0080..U+009F) or of U+2028/U+2029,
    // with the number of bytes it takes.
    let unicode_break = |rest: &[u8]| -> Option<(u32, usize)> {
        match rest {
            [0xc2, b @ 0x80..=0x9f, ..] => Some((u32::from(*b), 2)),
            [0xe2, 0x80, b @ (0xa8 | 0xa9), ..] => Some((0x2000 + u32::from(*b - 0x80), 3)),
            _ => None,
        }
    };
    let clean = !body.iter().any(|b| bad(*b))
        && !body
            .iter()
            .enumerate()
            .any(|(i, b)| matches!(b, 0xc2 | 0xe2) && unicode_break(&body[i..]).is_some());
    if clean {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if let Some((code, len)) = unicode_break(&body[i..]) {
            out.extend_from_slice(format!("\\u{code:04x}").as_bytes());
            i += len;
            continue;
        }
        match b {
            b'\n' if bad(b) => out.extend_from_slice(b"\\n"),
            b'\r' if bad(b) => out.extend_from_slice(b"\\r"),
            b if bad(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
        i += 1;
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

/// The Prometheus text exposition of a registry, as an HTTP response.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Registers a metric as it is made and hands it back, so each metric of a
/// service is declared in one statement: `let m = registered(&r, IntGauge::new(..))?;`.
pub fn registered<M>(
    registry: &Registry,
    metric: Result<M, prometheus::Error>,
) -> Result<M, prometheus::Error>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// What every service exports beside its own metrics: whether it is ready
/// (`ready`, 1 or 0, as `/readyz` would answer when scraped), and its
/// process's resident memory, CPU time and open files (`process_*`).
#[derive(Clone)]
pub struct ServiceGauges {
    ready: prometheus::IntGauge,
}

impl ServiceGauges {
    /// Registers the readiness gauge and the process collector.
    pub fn register(registry: &Registry) -> Result<ServiceGauges, prometheus::Error> {
        let ready = registered(
            registry,
            prometheus::IntGauge::new("ready", "1 when /readyz answers ready, else 0"),
        )?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(ServiceGauges { ready })
    }

    /// The `/metrics` answer, with readiness as it is now.
    pub fn response(&self, registry: &Registry, ready: bool) -> Response {
        self.ready.set(i64::from(ready));
        metrics_response(registry)
    }
}

/// Request counts and latency by route, for any axum service.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: prometheus::IntCounterVec,
    latency: prometheus::HistogramVec,
}

impl HttpMetrics {
    /// Registers the HTTP metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let requests = registered(
            registry,
            prometheus::IntCounterVec::new(
                prometheus::Opts::new("http_requests_total", "HTTP requests by route and status"),
                &["route", "status"],
            ),
        )?;
        let latency = registered(
            registry,
            prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new("http_request_seconds", "HTTP latency by route")
                    .buckets(prometheus::exponential_buckets(0.00005, 2.0, 18)?),
                &["route"],
            ),
        )?;
        Ok(HttpMetrics { requests, latency })
    }
}

/// Middleware recording [`HttpMetrics`]; use with `axum::middleware::from_fn_with_state`.
pub async fn track_http(
    axum::extract::State(m): axum::extract::State<HttpMetrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    m.latency
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

/// Lets one log line per key through per period and counts the ones held
/// back, so that a repeated condition (a broker away, a stream of bad
/// records) is seen once in a while and never floods the log.
pub struct LogThrottle {
    period: Duration,
    seen: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

impl LogThrottle {
    /// A throttle that lets one line per key through every `period`.
    pub fn new(period: Duration) -> LogThrottle {
        LogThrottle {
            period,
            seen: std::sync::Mutex::default(),
        }
    }

    /// `Some(n)` when a line for `key` may be logged now, `n` being how many
    /// were held back since the last one; `None` (and counted) otherwise.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let mut seen = crate::lock(&self.seen);
        let now = std::time::Instant::now();
        match seen.get_mut(key) {
            Some((at, held)) if now.duration_since(*at) < self.period => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                *at = now;
                *held = 0;
                Some(n)
            }
            None => {
                seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Routes librdkafka's own log lines and errors to `tracing`. While a broker
/// is away librdkafka reports the failed connection several times a second;
/// those repeats are logged once per 30 s per kind, as warnings, so the
/// services' own "retrying" line stays readable. Other errors pass through.
pub struct QuietLogs {
    throttle: LogThrottle,
}

impl Default for QuietLogs {
    fn default() -> QuietLogs {
        QuietLogs {
            throttle: LogThrottle::new(Duration::from_secs(30)),
        }
    }
}

impl QuietLogs {
    fn first_in_a_while(&self, what: &'static str) -> bool {
        self.throttle.admit(what).is_some()
    }

    /// Handles a librdkafka log line.
    pub fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let connection = msg.contains("Connect to")
            || msg.contains("Connection refused")
            || msg.contains("Disconnected")
            || msg.contains("brokers are down");
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error if connection => {
                if self.first_in_a_while("connect") {
                    tracing::warn!(target: "librdkafka", facility = fac, "{msg} (repeats are not logged for 30 s)");
                }
            }
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{msg}")
            }
            // A request librdkafka retries by itself (a coordinator still
            // loading after the broker's start) is no fault yet.
            L::Warning if msg.ends_with(": retrying") => {
                tracing::info!(target: "librdkafka", facility = fac, "{msg}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{msg}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", facility = fac, "{msg}"),
            L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{msg}"),
        }
    }

    /// Handles a librdkafka global error.
    pub fn error(&self, error: KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
        );
        if !transport {
            tracing::error!(target: "librdkafka", error = %error, "{reason}");
        } else if self.first_in_a_while("transport") {
            tracing::warn!(target: "librdkafka", error = %error, "{reason} (repeats are not logged for 30 s)");
        }
    }
}

impl rdkafka::ClientContext for QuietLogs {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        QuietLogs::log(self, level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        QuietLogs::error(self, error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietLogs {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_stays_one_line() {
        let forged = b"WARN import a\n2026-01-01T00:00:00Z INFO fake line\r\x1b[31m\n";
        assert_eq!(
            super::escape_record(forged, false).as_ref(),
            b"WARN import a\\n2026-01-01T00:00:00Z INFO fake line\\r\\x1b[31m\n"
        );
        assert_eq!(
            super::escape_record(b"\x1b[2mINFO\x1b[0m ok\tx\n", true).as_ref(),
            b"\x1b[2mINFO\x1b[0m ok\tx\n"
        );
        let unicode = "INFO a\u{85}b\u{2028}c\u{2029}d \u{e9}\u{2027}\u{a0}\n";
        assert_eq!(
            std::str::from_utf8(super::escape_record(unicode.as_bytes(), false).as_ref()),
            Ok("INFO a\\u0085b\\u2028c\\u2029d \u{e9}\u{2027}\u{a0}\n")
        );
    }

    use super::*;

    #[test]
    fn throttle_admits_once_per_period_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(t.admit("a"), Some(0));
        assert_eq!(t.admit("a"), None);
        assert_eq!(t.admit("a"), None);
        assert_eq!(t.admit("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.admit("a"), Some(2));
        assert_eq!(t.admit("a"), None);
    }
}
