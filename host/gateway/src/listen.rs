//! Core's listener, with the limits a public endpoint needs: a cap on open connections (one more
//! is answered 503 and closed at once) and a share of it per peer address (so one client cannot
//! hold every slot), a deadline for a request's headers (which also closes
//! keep-alive connections that stay idle), a deadline for its body (in the handlers), and a
//! graceful stop that drains requests in flight for a bounded time.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

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
    /// Open connections of one peer address at most (0: half of `max_connections`). Behind a
    /// proxy every client has the proxy's address: raise it there.
    pub max_connections_per_peer: usize,
    /// A request's headers must arrive within this; an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// How long a stop waits for requests in flight.
    pub drain: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_peer: 0,
            header_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(20),
        }
    }
}

/// A request's body must arrive within this (checked where bodies are read).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 71\r\n\r\n{\"error\":\"too many open connections to this Hangar; retry in a moment\"}\n";

/// Serves `app` on `listener` until `stop` resolves, then drains for at most `limits.drain`.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, stop: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_peer = match limits.max_connections_per_peer {
        0 => (limits.max_connections / 2).max(1),
        n => n,
    };
    let peers = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
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
        let share = PeerShare::take(&peers, peer.ip(), per_peer);
        let (Ok(permit), Some(share)) = (permits.clone().try_acquire_owned(), share) else {
            tracing::warn!(%peer, max = limits.max_connections, per_peer, "connection refused: too many open connections");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSAL)).await;
            });
            continue;
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop((permit, share));
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; draining calls in flight (at most {:?})", limits.drain);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("calls still in flight after {:?}; stopping anyway", limits.drain);
    }
}

/// One open connection of a peer address, counted while it lives.
struct PeerShare {
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: IpAddr,
}

impl PeerShare {
    /// A share for `peer` if it holds fewer than `most` connections.
    fn take(peers: &Arc<Mutex<HashMap<IpAddr, usize>>>, peer: IpAddr, most: usize) -> Option<Self> {
        let mut open = peers.lock().unwrap();
        let held = open.entry(peer).or_default();
        if *held >= most {
            return None;
        }
        *held += 1;
        Some(Self { peers: peers.clone(), peer })
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut open = self.peers.lock().unwrap();
        if let Some(held) = open.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.peer);
            }
        }
    }
}
