//! The listener: hyper's HTTP/1 connections with the limits `axum::serve` does not set.
//!
//! - A header-read timeout (hyper's own, which needs a timer): a client that does not finish a
//!   request head in time is disconnected, and since hyper starts the same clock while a
//!   kept-alive connection waits for its next request, it is also the idle timeout.
//! - A connection cap: past it, a connection is answered `503` with a problem document and
//!   closed, so a flood of idle sockets cannot take every file descriptor.
//! - A bounded graceful stop: on shutdown, no new connections; open ones finish their request
//!   (hyper's graceful shutdown) for at most the grace period, then are dropped. Streams that
//!   never end would otherwise hold the process up forever.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::problem::{Kind, Problem};

pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

/// Serves `app` on `listener` until `shutdown`, then stops within `limits.grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin.
                    tracing::warn!(%error, "Cannot accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // At trace level, as axum's own server said it (an operator tracing connections).
        tracing::trace!(%peer, "Connection accepted.");
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service =
            TowerToHyperService::new(app.clone().map_request(
                |request: hyper::Request<Incoming>| request.map(axum::body::Body::new),
            ));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Connection ended with an error.");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.grace, "Closing connections still open after the grace period.");
    }
    Ok(())
}

/// Answers a connection past the cap with a `503` problem and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::to_string(&Problem::new(
        Kind::Unavailable,
        "too many open connections; try again shortly",
    ))
    .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
