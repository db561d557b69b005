//! The sessions handshake-era clients hold at handshake-era HTTP backends, on this replica.
//!
//! A client's session id is constant-size (see `client/session.rs`) and names no backend session: a
//! backend session is opened the first time the client calls a tool of that server through this
//! replica, reused for its later calls, and closed (HTTP DELETE at the backend) when the client
//! ends its session. Another replica that receives the same (signed) id serves it with backend
//! sessions of its own; keep a client on one replica (the chart's core Service has
//! `sessionAffinity: ClientIP`) where backend-side session state matters.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::Instant,
};

use crate::protocol::SESSION_LIFETIME;

/// Most client sessions with backend sessions kept at once; the least recently used one is
/// ended (its backend sessions closed) to make room.
pub const MAX_CLIENT_SESSIONS: usize = 10_000;
/// Most ended session ids remembered, so that a request with one is refused (404) as the spec
/// asks rather than served with fresh backend sessions. An id is remembered until it would have
/// expired anyway ([`SESSION_LIFETIME`] after it ended, at the latest), as a 16-byte digest
/// (about 10 MB at the cap): ending 250,000 sessions within their lifetime is needed to push
/// one out, and every id belongs to its subject besides.
const MAX_ENDED: usize = 250_000;

struct Client {
    /// server → its backend session for this client.
    backends: BTreeMap<String, String>,
    last_used: Instant,
}

#[derive(Default)]
pub struct ClientSessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Client>,
    /// Backend sessions held per server (the gauge), kept with `clients`.
    held: HashMap<String, usize>,
    /// Digests of ended ids, looked up on every handshake request; `ended_order` (oldest first,
    /// with when each ended) says which to forget first.
    ended: HashSet<[u8; 16]>,
    ended_order: VecDeque<([u8; 16], Instant)>,
}

impl Inner {
    /// Takes a client out, returning its backend sessions and uncounting them.
    fn remove(&mut self, client: &str) -> ToClose {
        let Some(gone) = self.clients.remove(client) else { return Vec::new() };
        for server in gone.backends.keys() {
            if let Some(n) = self.held.get_mut(server) {
                *n = n.saturating_sub(1);
            }
        }
        gone.backends.into_iter().collect()
    }
}

fn digest(id: &str) -> [u8; 16] {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes())[..16].try_into().expect("16 bytes")
}

/// Backend sessions to close: (server, backend session).
pub type ToClose = Vec<(String, String)>;

impl ClientSessions {
    /// The backend session `client` holds at `server`, if one was opened on this replica.
    pub fn get(&self, client: &str, server: &str) -> Option<String> {
        let mut inner = self.inner.lock().unwrap();
        let entry = inner.clients.get_mut(client)?;
        entry.last_used = Instant::now();
        entry.backends.get(server).cloned()
    }

    /// Records a backend session opened for `client` at `server`. Returns the one to use (an
    /// earlier concurrent call may have won) and what to close: the loser of such a race, and the
    /// backend sessions of a client evicted to make room.
    pub fn insert(&self, client: &str, server: &str, opened: String) -> (String, ToClose) {
        let mut inner = self.inner.lock().unwrap();
        let mut to_close = Vec::new();
        if !inner.clients.contains_key(client) && inner.clients.len() >= MAX_CLIENT_SESSIONS {
            let oldest = inner.clients.iter().min_by_key(|(_, c)| c.last_used).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                to_close.extend(inner.remove(&oldest));
            }
        }
        let entry = inner
            .clients
            .entry(client.to_string())
            .or_insert_with(|| Client { backends: BTreeMap::new(), last_used: Instant::now() });
        entry.last_used = Instant::now();
        let kept = entry.backends.entry(server.to_string()).or_insert_with(|| opened.clone()).clone();
        if kept == opened {
            *inner.held.entry(server.to_string()).or_default() += 1;
        } else {
            to_close.push((server.to_string(), opened));
        }
        (kept, to_close)
    }

    /// Forgets `client`'s backend session at `server` if it is still `session` (its pod has
    /// left, so nothing is there to close).
    pub fn forget(&self, client: &str, server: &str, session: &str) {
        let mut inner = self.inner.lock().unwrap();
        let Some(entry) = inner.clients.get_mut(client) else { return };
        if entry.backends.get(server).is_some_and(|s| s == session) {
            entry.backends.remove(server);
            if let Some(n) = inner.held.get_mut(server) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Ends `client`'s session on this replica: its backend sessions, to close.
    pub fn end(&self, client: &str) -> ToClose {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        // Ids that have expired since are refused for that alone: forget them.
        while let Some(&(digest, ended)) = inner.ended_order.front()
            && (now.duration_since(ended) > SESSION_LIFETIME || inner.ended_order.len() >= MAX_ENDED)
        {
            inner.ended_order.pop_front();
            inner.ended.remove(&digest);
        }
        let digest = digest(client);
        if inner.ended.insert(digest) {
            inner.ended_order.push_back((digest, now));
        }
        inner.remove(client)
    }

    /// Whether the client ended this session here (DELETE).
    pub fn ended(&self, client: &str) -> bool {
        self.inner.lock().unwrap().ended.contains(&digest(client))
    }

    /// Backend sessions held at `server`.
    pub fn count(&self, server: &str) -> usize {
        self.inner.lock().unwrap().held.get(server).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_kept_until_its_client_ends_it_and_a_race_closes_the_loser() {
        let sessions = ClientSessions::default();
        assert_eq!(sessions.get("c1", "docs"), None);
        assert_eq!(sessions.insert("c1", "docs", "b-1".into()), ("b-1".into(), vec![]));
        assert_eq!(sessions.get("c1", "docs").as_deref(), Some("b-1"));
        // A concurrent first call opened another one: the first stays, the second is closed.
        assert_eq!(sessions.insert("c1", "docs", "b-2".into()), ("b-1".into(), vec![("docs".into(), "b-2".into())]));
        assert_eq!(sessions.count("docs"), 1);
        assert_eq!(sessions.end("c1"), vec![("docs".to_string(), "b-1".to_string())]);
        assert!(sessions.ended("c1") && !sessions.ended("c2"));
        assert_eq!(sessions.count("docs"), 0);
    }
}
