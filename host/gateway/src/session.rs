//! Self-describing session ids for the handshake revisions: `<payload>.<signature>`, where the
//! payload (base64url JSON) carries a random nonce and the client's backend sessions (server →
//! backend `Mcp-Session-Id`), and the signature is HMAC-SHA256 under the core's key (first 18
//! bytes, base64url). Any core replica sharing the key can check a session and route it to the
//! same backend sessions without shared state; the group member a session stays on is derived
//! from the id itself.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct SessionKeys {
    key: Vec<u8>,
}

impl SessionKeys {
    /// From `HANGAR_SESSION_KEY` when set (share it between replicas), else random per process.
    pub fn from_env() -> Self {
        match std::env::var("HANGAR_SESSION_KEY") {
            Ok(k) if !k.is_empty() => Self { key: k.into_bytes() },
            _ => Self { key: rand::random::<[u8; 32]>().to_vec() },
        }
    }

    pub fn with_key(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn sign(&self, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
    }

    /// A new session id carrying these backend sessions.
    pub fn issue(&self, backend_sessions: &BTreeMap<String, String>) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
        let payload = serde_json::json!({"n": nonce, "b": backend_sessions});
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        let signature = self.sign(&body);
        format!("{body}.{signature}")
    }

    pub fn verify(&self, id: &str) -> bool {
        self.open(id).is_some()
    }

    /// The backend sessions of a genuine id; None for a forged or malformed one.
    pub fn open(&self, id: &str) -> Option<BTreeMap<String, String>> {
        let (body, signature) = id.split_once('.')?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        let given = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if given.len() != 18 || mac.verify_truncated_left(&given).is_err() {
            return None;
        }
        let payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        serde_json::from_value(payload.get("b").cloned().unwrap_or_default()).ok().or(Some(BTreeMap::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_verify_with_the_same_key_only() {
        let a = SessionKeys::with_key(b"one");
        let sessions: BTreeMap<String, String> = [("docs".to_string(), "backend-7".to_string())].into();
        let id = a.issue(&sessions);
        assert_eq!(a.open(&id), Some(sessions), "the backend sessions travel in the id");
        assert!(a.verify(&id));
        assert!(SessionKeys::with_key(b"one").verify(&id), "another replica with the key accepts it");
        assert!(!SessionKeys::with_key(b"two").verify(&id));
        assert!(!a.verify("made-up"));
        assert!(!a.verify(&format!("{id}x")));
        let (body, sig) = id.split_once('.').unwrap();
        assert!(!a.verify(&format!("{body}A.{sig}")));
    }
}
