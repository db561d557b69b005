//! Where an HTTP server is reached: one URL (a remote server), or each ready pod of a cluster
//! server at its own address, as the operator reads them from the Service's EndpointSlices.
//!
//! Why pods and not the Service: a handshake-era server keeps its sessions in the memory of the
//! pod that opened them, and behind the Service's virtual IP each new connection may land on
//! another pod, which answers `404 session not found`. So a session stays with its pod here:
//! a client's own backend session is opened on the next pod in turn (which spreads clients
//! over the replicas), and its later requests go to that pod; requests in the core's own
//! session go to each pod in turn. When a pod leaves, its sessions are forgotten, and their
//! clients get new ones on the pods that remain (see `Gateway::backend_session`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::http::HttpBackend;

pub struct Endpoints {
    /// The registered URL: a remote server's endpoint, a cluster server's Service.
    base: Arc<HttpBackend>,
    /// The pods, when known; else the base alone.
    members: RwLock<Vec<Arc<HttpBackend>>>,
    /// Backend session → the member that opened it.
    sessions: Mutex<HashMap<String, Arc<HttpBackend>>>,
    next: AtomicUsize,
}

impl Endpoints {
    pub(super) fn new(base: HttpBackend) -> Self {
        let base = Arc::new(base);
        Self { members: RwLock::new(vec![base.clone()]), base, sessions: Mutex::default(), next: AtomicUsize::new(0) }
    }

    /// The next member in turn.
    pub(super) fn next(&self) -> Arc<HttpBackend> {
        let members = self.members.read().unwrap();
        members[self.next.fetch_add(1, Ordering::Relaxed) % members.len()].clone()
    }

    /// How many addresses there are.
    pub(super) fn len(&self) -> usize {
        self.members.read().unwrap().len()
    }

    /// The member holding `session`, if it is still one.
    pub(super) fn holder(&self, session: &str) -> Option<Arc<HttpBackend>> {
        self.sessions.lock().unwrap().get(session).cloned()
    }

    pub(super) fn opened(&self, session: &str, at: Arc<HttpBackend>) {
        self.sessions.lock().unwrap().insert(session.to_string(), at);
    }

    pub(super) fn closed(&self, session: &str) -> Option<Arc<HttpBackend>> {
        self.sessions.lock().unwrap().remove(session)
    }

    /// Any member that is connected, else the first.
    pub(super) fn any_connected(&self) -> Arc<HttpBackend> {
        let members = self.members.read().unwrap();
        members.iter().find(|m| m.state.lock().unwrap().is_some()).unwrap_or(&members[0]).clone()
    }

    /// The pods' URLs now (none: back to the registered endpoint). Members still listed keep
    /// their connections and sessions; the sessions of members gone are forgotten.
    pub fn set(&self, urls: &[String]) {
        let mut members = self.members.write().unwrap();
        let now: Vec<&str> = members.iter().map(|m| m.endpoint.as_str()).collect();
        let wanted: Vec<&str> = match urls.is_empty() {
            true => vec![self.base.endpoint.as_str()],
            false => urls.iter().map(String::as_str).collect(),
        };
        if now == wanted {
            return;
        }
        let mut kept: HashMap<String, Arc<HttpBackend>> = members.drain(..).map(|m| (m.endpoint.clone(), m)).collect();
        *members = wanted
            .iter()
            .map(|url| match kept.remove(*url) {
                Some(member) => member,
                None if *url == self.base.endpoint => self.base.clone(),
                None => Arc::new(self.base.at(url.to_string())),
            })
            .collect();
        let members_now: Vec<&str> = members.iter().map(|m| m.endpoint.as_str()).collect();
        self.sessions.lock().unwrap().retain(|_, m| members_now.contains(&m.endpoint.as_str()));
    }

    /// The members' URLs, for status.
    pub fn urls(&self) -> Vec<String> {
        self.members.read().unwrap().iter().map(|m| m.endpoint.clone()).collect()
    }
}
