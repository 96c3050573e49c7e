//! What every answer says about how fresh the views are, and what the
//! service does when they are too stale: headers on each `/v1` answer, a
//! `freshness` event on the stream, readiness, and (when the operator asks)
//! refusing reads.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sessionfold_schemas::{Millis, rfc3339};
use sessionfold_views::freshness::{Freshness, Report};

/// Header: the views hold every change the broker held at this time.
pub const FRESH_AS_OF: &str = "sessionfold-fresh-as-of";
/// Header: milliseconds since [`FRESH_AS_OF`].
pub const STALENESS_MS: &str = "sessionfold-staleness-ms";
/// Header: the time of the newest change applied to the views.
pub const NEWEST_CHANGE: &str = "sessionfold-newest-change";
/// Header: changelog records not yet applied, by the last look at the broker.
pub const CHANGELOG_LAG: &str = "sessionfold-changelog-lag";

/// What to do with a read while the views are staler than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StaleReads {
    /// Answer, with the staleness in the headers.
    Serve,
    /// Answer 503 with `Retry-After`.
    Refuse,
}

/// The views' freshness and the operator's bound on it.
#[derive(Clone)]
pub struct Fresh {
    /// Kept by the changelog follower.
    pub freshness: Arc<Mutex<Freshness>>,
    /// Staler than this, the service is not ready.
    pub bound: Millis,
    /// Whether stale reads are answered.
    pub stale_reads: StaleReads,
}

impl Fresh {
    /// Nothing read yet.
    pub fn new(bound: Millis, stale_reads: StaleReads) -> Fresh {
        Fresh {
            freshness: Arc::new(Mutex::new(Freshness::new())),
            bound,
            stale_reads,
        }
    }

    /// The freshness now.
    pub fn report(&self) -> Report {
        sessionfold_edge::lock(&self.freshness).report(sessionfold_edge::now_millis())
    }

    /// Why the views are not fit to answer from, if they are staler than the bound.
    pub fn too_stale(&self, report: &Report) -> Option<String> {
        report.stale(self.bound).then(|| match report.staleness_ms {
            Some(ms) => format!(
                "the views are {ms} ms behind the changelogs (the bound is {} ms)",
                self.bound
            ),
            None => "the views have not yet caught up with the changelogs".to_owned(),
        })
    }
}

/// The freshness as JSON, for the stream's `freshness` events.
pub fn json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "fresh_as_of": report.fresh_as_of.map(rfc3339),
        "staleness_ms": report.staleness_ms,
        "newest_change": report.newest_change.map(rfc3339),
        "changelog_lag": report.changelog_lag,
    })
}

fn headers(report: &Report, h: &mut HeaderMap) {
    let mut put = |name: &'static str, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    };
    put(FRESH_AS_OF, report.fresh_as_of.map(rfc3339));
    put(STALENESS_MS, report.staleness_ms.map(|s| s.to_string()));
    put(NEWEST_CHANGE, report.newest_change.map(rfc3339));
    put(CHANGELOG_LAG, report.changelog_lag.map(|l| l.to_string()));
}

/// Adds the freshness headers to every `/v1` answer, and refuses the read
/// when the views are too stale and the operator chose to refuse.
pub async fn stamp(State(fresh): State<Fresh>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let before = fresh.report();
    let mut response = match fresh.too_stale(&before) {
        Some(why) if fresh.stale_reads == StaleReads::Refuse => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response(),
        _ => next.run(request).await,
    };
    // Taken before the answer was built, so the headers never claim more
    // than the answer holds.
    headers(&before, response.headers_mut());
    response
}

/// Names the freshness headers on every answer of the `/v1` routes, and the
/// refusal of a stale read, in the OpenAPI document.
pub fn document(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::Header;
    use utoipa::openapi::{Object, RefOr, ResponseBuilder, Type};
    let header = |kind: Type, description: &str| {
        let mut h = Header::new(Object::with_type(kind));
        h.description = Some(description.to_owned());
        h
    };
    let named = [
        (
            FRESH_AS_OF,
            Type::String,
            "RFC 3339: the views hold every change the broker held at this time",
        ),
        (
            STALENESS_MS,
            Type::Integer,
            "Milliseconds since sessionfold-fresh-as-of",
        ),
        (
            NEWEST_CHANGE,
            Type::String,
            "RFC 3339: the time of the newest change applied",
        ),
        (
            CHANGELOG_LAG,
            Type::Integer,
            "Changelog records not yet applied",
        ),
    ];
    for (path, item) in api.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        op.responses.responses.entry("503".to_owned()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description("The views are staler than the bound and the service refuses stale reads (Retry-After)")
                    .build(),
            )
        });
        for response in op.responses.responses.values_mut() {
            if let RefOr::T(r) = response {
                for (name, kind, description) in &named {
                    r.headers
                        .insert((*name).to_owned(), header(kind.clone(), description));
                }
            }
        }
    }
}
