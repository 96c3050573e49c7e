//! The HTTP listener of every service, with the limits a server facing the
//! open network needs: a client must send its request head within
//! [`HEADER_READ_TIMEOUT`], and at most [`MAX_CONNECTIONS`] connections are
//! served at once, so slow or idle clients cannot hold descriptors forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Longest a client may take to send a request's head (also the longest an
/// idle keep-alive connection waits for its next request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;
/// Longest a graceful stop waits for open requests (streams included).
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// requests finish for a few seconds.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().map_request(with_peer(peer)));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("open HTTP requests cut after the drain period");
    }
    Ok(())
}

/// Puts the connection's peer address on each request, where handlers read
/// it as axum's `ConnectInfo`.
fn with_peer<B>(
    peer: std::net::SocketAddr,
) -> impl Fn(axum::http::Request<B>) -> axum::http::Request<B> + Clone {
    move |mut req| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    }
}

/// A query string or path parameter that does not parse, answered 400
/// with `{"error": …}` in JSON as every other refused request is (axum's own
/// rejections are plain text).
#[derive(Debug)]
pub struct BadParameter(String);

impl From<axum::extract::rejection::QueryRejection> for BadParameter {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        BadParameter(format!("query: {}", r.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for BadParameter {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        BadParameter(format!("path: {}", r.body_text()))
    }
}

impl axum::response::IntoResponse for BadParameter {
    fn into_response(self) -> axum::response::Response {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": self.0 })),
        )
            .into_response()
    }
}

/// A query string read into `T`, refused as [`BadParameter`].
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(BadParameter))]
pub struct JsonQuery<T>(pub T);

/// A path parameter read into `T`, refused as [`BadParameter`].
#[derive(Debug, Clone, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(BadParameter))]
pub struct JsonPath<T>(pub T);
