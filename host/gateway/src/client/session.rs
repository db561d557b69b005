//! Session ids for the handshake revisions: `<body><capabilities>.<signature>`. The body is
//! base64url of a random 16-byte nonce, the id's expiry (u32 seconds since the epoch) and the
//! first 8 bytes of SHA-256 of the verified subject it was issued to (zeros without OAuth); one
//! character names the client's capabilities that servers may ask for during its calls
//! (sampling, elicitation, roots); the signature is HMAC-SHA256 of both under the core's key
//! (first 18 bytes, base64url): 64 characters however many servers there are. Any core replica
//! sharing the key checks a session — genuine, not expired, used by the subject it was issued to
//! — without shared state; the group member a session stays on is derived from the id itself.
//! Backend sessions and ended ids are the replica's own (`client_sessions.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use crate::protocol::SESSION_LIFETIME;

/// How a server's `requestState` bound to its caller begins.
pub const BOUND_STATE: &str = "hangar:";

/// Characters of the base64url body (28 bytes), then the capabilities character.
const BODY_CHARS: usize = 38;

pub struct SessionKeys {
    key: Vec<u8>,
    lifetime: Duration,
}

impl SessionKeys {
    /// From `HANGAR_SESSION_KEY` when set (share it between replicas), else random per process.
    pub fn from_env() -> Self {
        match std::env::var("HANGAR_SESSION_KEY") {
            Ok(k) if !k.is_empty() => Self::with_key(k.as_bytes()),
            _ => Self::with_key(&rand::random::<[u8; 32]>()),
        }
    }

    pub fn with_key(key: &[u8]) -> Self {
        Self { key: key.to_vec(), lifetime: SESSION_LIFETIME }
    }

    /// The same keys, issuing ids good for `lifetime`.
    pub fn with_lifetime(self, lifetime: Duration) -> Self {
        Self { lifetime, ..self }
    }

    fn sign(&self, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
    }

    /// A new session id for a client with these capabilities, bound to the verified `subject`
    /// (None without OAuth: any holder of the id may use it).
    pub fn issue(&self, capabilities: ClientCapabilities, subject: Option<&str>) -> String {
        let expires = (now() + self.lifetime.as_secs()).min(u64::from(u32::MAX)) as u32;
        let mut raw = Vec::with_capacity(28);
        raw.extend_from_slice(&rand::random::<[u8; 16]>());
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(&subject_tag(subject));
        let body = format!("{}{}", URL_SAFE_NO_PAD.encode(raw), capabilities.to_char());
        let signature = self.sign(&body);
        format!("{body}.{signature}")
    }

    /// What the client of a genuine session id declared it can answer.
    pub fn capabilities(&self, id: &str) -> ClientCapabilities {
        match id.split_once('.') {
            Some((body, _)) if body.len() == BODY_CHARS + 1 && self.signed(id) => {
                ClientCapabilities::from_char(body.as_bytes()[BODY_CHARS])
            }
            _ => ClientCapabilities::default(),
        }
    }

    /// Whether `id` was issued under this key (by any replica sharing it), has not expired, and
    /// is used by the subject it was issued to (`subject`: the request's verified subject).
    pub fn verify(&self, id: &str, subject: Option<&str>) -> bool {
        if !self.signed(id) {
            return false;
        }
        let Some(raw) = id.get(..BODY_CHARS).and_then(|b| URL_SAFE_NO_PAD.decode(b).ok()) else { return false };
        let expires = u32::from_be_bytes(raw[16..20].try_into().expect("28 bytes"));
        u64::from(expires) > now() && raw[20..28] == subject_tag(subject)
    }

    /// A server's `requestState` as a stateless client gets it: bound to the verified subject it
    /// was given to (`hangar:<signature>:<the server's state>`), so that only that caller's retry
    /// reaches the server with it, on any replica sharing the key.
    pub fn bind_state(&self, state: &str, subject: Option<&str>) -> String {
        format!("{BOUND_STATE}{}:{state}", self.sign_state(state, subject))
    }

    /// The server's `requestState` inside a bound one, if `subject` is the caller it was given to.
    pub fn unbind_state<'a>(&self, bound: &'a str, subject: Option<&str>) -> Option<&'a str> {
        let (signature, state) = bound.strip_prefix(BOUND_STATE)?.split_once(':')?;
        let expected = self.sign_state(state, subject);
        // Compared in constant time: the signature is what an attacker would guess.
        let same = signature.len() == expected.len()
            && signature.bytes().zip(expected.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0;
        same.then_some(state)
    }

    fn sign_state(&self, state: &str, subject: Option<&str>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"requestState\0");
        mac.update(&subject_tag(subject));
        mac.update(state.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
    }

    /// The signature alone.
    fn signed(&self, id: &str) -> bool {
        let Some((body, signature)) = id.split_once('.') else { return false };
        if body.len() != BODY_CHARS + 1 {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|given| given.len() == 18 && mac.verify_truncated_left(&given).is_ok())
    }
}

/// Who a session belongs to, as it is kept in the id: 8 bytes of the subject's SHA-256.
fn subject_tag(subject: Option<&str>) -> [u8; 8] {
    subject.map_or([0; 8], |s| Sha256::digest(s.as_bytes())[..8].try_into().expect("8 bytes"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The server-to-client requests a client declared at `initialize` that it answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientCapabilities {
    /// From `initialize`'s `params.capabilities`.
    pub fn from_declared(capabilities: &serde_json::Value) -> Self {
        let has = |k: &str| capabilities.get(k).is_some_and(|v| !v.is_null());
        Self { sampling: has("sampling"), elicitation: has("elicitation"), roots: has("roots") }
    }

    /// Whether the client answers requests of this method.
    pub fn answers(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            _ => false,
        }
    }

    /// As a client declares them (`capabilities` of `initialize`, `clientCapabilities` of `_meta`).
    pub fn to_declared(self) -> serde_json::Value {
        let mut declared = serde_json::Map::new();
        for (name, has) in [("sampling", self.sampling), ("elicitation", self.elicitation), ("roots", self.roots)] {
            if has {
                declared.insert(name.into(), serde_json::json!({}));
            }
        }
        declared.into()
    }

    fn to_char(self) -> char {
        let bits = self.sampling as u8 | (self.elicitation as u8) << 1 | (self.roots as u8) << 2;
        (b'0' + bits) as char
    }

    fn from_char(c: u8) -> Self {
        let bits = c.wrapping_sub(b'0');
        Self { sampling: bits & 1 != 0, elicitation: bits & 2 != 0, roots: bits & 4 != 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_request_state_comes_back_only_for_its_caller_and_key() {
        let keys = SessionKeys::with_key(b"one");
        let bound = keys.bind_state("server:state:with:colons", Some("alice"));
        assert!(bound.starts_with(BOUND_STATE));
        assert_eq!(keys.unbind_state(&bound, Some("alice")), Some("server:state:with:colons"));
        assert_eq!(keys.unbind_state(&bound, Some("bob")), None);
        assert_eq!(keys.unbind_state(&bound, None), None);
        assert_eq!(SessionKeys::with_key(b"two").unbind_state(&bound, Some("alice")), None);
        let tampered = bound.replace("colons", "commas");
        assert_eq!(keys.unbind_state(&tampered, Some("alice")), None);
        assert_eq!(keys.unbind_state("server-state", Some("alice")), None);
    }

    #[test]
    fn ids_verify_with_the_same_key_only() {
        let a = SessionKeys::with_key(b"one");
        let id = a.issue(ClientCapabilities::default(), None);
        assert_eq!(id.len(), 64, "a constant size: {id}");
        assert_ne!(id, a.issue(ClientCapabilities::default(), None));
        assert!(a.verify(&id, None));
        assert!(SessionKeys::with_key(b"one").verify(&id, None), "another replica with the key accepts it");
        assert!(!SessionKeys::with_key(b"two").verify(&id, None));
        assert!(!a.verify("made-up", None));
        assert!(!a.verify(&format!("{id}x"), None));
        let (body, sig) = id.split_once('.').unwrap();
        assert!(!a.verify(&format!("{}B{}.{sig}", &body[..5], &body[6..]), None));
    }

    #[test]
    fn ids_belong_to_their_subject_and_expire() {
        let keys = SessionKeys::with_key(b"one");
        let alice = keys.issue(ClientCapabilities::default(), Some("alice"));
        assert!(keys.verify(&alice, Some("alice")));
        assert!(!keys.verify(&alice, Some("bob")), "another subject's id");
        assert!(!keys.verify(&alice, None), "an anonymous request with a subject's id");
        let anonymous = keys.issue(ClientCapabilities::default(), None);
        assert!(!keys.verify(&anonymous, Some("bob")), "an id issued without a subject is not anyone's");
        let short = SessionKeys::with_key(b"one").with_lifetime(Duration::ZERO);
        assert!(!keys.verify(&short.issue(ClientCapabilities::default(), None), None), "expired");
    }

    #[test]
    fn ids_carry_the_capabilities_signed() {
        let keys = SessionKeys::with_key(b"one");
        let declared = serde_json::json!({"sampling": {}, "roots": {"listChanged": true}});
        let caps = ClientCapabilities::from_declared(&declared);
        assert_eq!(caps, ClientCapabilities { sampling: true, elicitation: false, roots: true });
        let id = keys.issue(caps, None);
        assert_eq!(keys.capabilities(&id), caps);
        assert!(caps.answers("sampling/createMessage") && !caps.answers("elicitation/create"));
        // Claiming elicitation by editing the id breaks its signature.
        let (body, sig) = id.split_once('.').unwrap();
        let forged = format!("{}7.{sig}", &body[..BODY_CHARS]);
        assert!(!keys.verify(&forged, None));
        assert_eq!(keys.capabilities(&forged), ClientCapabilities::default());
    }
}
