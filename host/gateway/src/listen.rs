//! Core's listener, with the limits a public endpoint needs: a cap on open connections (one more
//! is answered 503 and closed at once), a deadline for a request's headers (which also closes
//! keep-alive connections that stay idle), a deadline for its body (in the handlers), and a
//! graceful stop that drains requests in flight for a bounded time.

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::Semaphore};

/// Limits of [`serve`]; the defaults are the documented ones.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most; more are refused with 503.
    pub max_connections: usize,
    /// A request's headers must arrive within this; an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// How long a stop waits for requests in flight.
    pub drain: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 4096, header_timeout: Duration::from_secs(30), drain: Duration::from_secs(20) }
    }
}

/// A request's body must arrive within this (checked where bodies are read).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 71\r\n\r\n{\"error\":\"too many open connections to this Hangar; retry in a moment\"}\n";

/// Serves `app` on `listener` until `stop` resolves, then drains for at most `limits.drain`.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, stop: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let service = TowerToHyperService::new(app);
    tokio::pin!(stop);
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSAL)).await;
            });
            continue;
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; draining calls in flight (at most {:?})", limits.drain);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("calls still in flight after {:?}; stopping anyway", limits.drain);
    }
}
