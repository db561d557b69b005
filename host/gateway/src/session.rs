//! Session ids for the handshake revisions: `<nonce>.<signature>`, a random 16-byte nonce and
//! HMAC-SHA256 of it under the core's key (first 18 bytes), both base64url: 47 characters however
//! many servers there are. Any core replica sharing the key can check a session without shared
//! state; the group member a session stays on is derived from the id itself. Backend sessions
//! are the replica's own (`client_sessions.rs`).

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

    /// A new session id.
    pub fn issue(&self) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let signature = self.sign(&nonce);
        format!("{nonce}.{signature}")
    }

    /// Whether `id` was issued under this key (by any replica sharing it).
    pub fn verify(&self, id: &str) -> bool {
        let Some((body, signature)) = id.split_once('.') else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|given| given.len() == 18 && mac.verify_truncated_left(&given).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_verify_with_the_same_key_only() {
        let a = SessionKeys::with_key(b"one");
        let id = a.issue();
        assert_eq!(id.len(), 47, "a constant size: {id}");
        assert_ne!(id, a.issue());
        assert!(a.verify(&id));
        assert!(SessionKeys::with_key(b"one").verify(&id), "another replica with the key accepts it");
        assert!(!SessionKeys::with_key(b"two").verify(&id));
        assert!(!a.verify("made-up"));
        assert!(!a.verify(&format!("{id}x")));
        let (body, sig) = id.split_once('.').unwrap();
        assert!(!a.verify(&format!("{body}A.{sig}")));
    }
}
