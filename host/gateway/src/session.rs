//! Session ids for the handshake revisions: `<nonce><capabilities>.<signature>`, a random 16-byte
//! nonce (base64url), one character naming the client's capabilities that servers may ask for
//! during its calls (sampling, elicitation, roots), and HMAC-SHA256 of both under the core's key
//! (first 18 bytes, base64url): 48 characters however many servers there are. Any core replica sharing the key can check a session without shared
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

    /// A new session id for a client with these capabilities.
    pub fn issue(&self, capabilities: ClientCapabilities) -> String {
        let body = format!("{}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()), capabilities.to_char());
        let signature = self.sign(&body);
        format!("{body}.{signature}")
    }

    /// What the client of a genuine session id declared it can answer.
    pub fn capabilities(&self, id: &str) -> ClientCapabilities {
        match id.split_once('.') {
            Some((body, _)) if body.len() == 23 && self.verify(id) => {
                ClientCapabilities::from_char(body.as_bytes()[22])
            }
            _ => ClientCapabilities::default(),
        }
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
    fn ids_verify_with_the_same_key_only() {
        let a = SessionKeys::with_key(b"one");
        let id = a.issue(ClientCapabilities::default());
        assert_eq!(id.len(), 48, "a constant size: {id}");
        assert_ne!(id, a.issue(ClientCapabilities::default()));
        assert!(a.verify(&id));
        assert!(SessionKeys::with_key(b"one").verify(&id), "another replica with the key accepts it");
        assert!(!SessionKeys::with_key(b"two").verify(&id));
        assert!(!a.verify("made-up"));
        assert!(!a.verify(&format!("{id}x")));
        let (body, sig) = id.split_once('.').unwrap();
        assert!(!a.verify(&format!("{body}A.{sig}")));
    }

    #[test]
    fn ids_carry_the_capabilities_signed() {
        let keys = SessionKeys::with_key(b"one");
        let declared = serde_json::json!({"sampling": {}, "roots": {"listChanged": true}});
        let caps = ClientCapabilities::from_declared(&declared);
        assert_eq!(caps, ClientCapabilities { sampling: true, elicitation: false, roots: true });
        let id = keys.issue(caps);
        assert_eq!(keys.capabilities(&id), caps);
        assert!(caps.answers("sampling/createMessage") && !caps.answers("elicitation/create"));
        // Claiming elicitation by editing the id breaks its signature.
        let (body, sig) = id.split_once('.').unwrap();
        let forged = format!("{}7.{sig}", &body[..22]);
        assert!(!keys.verify(&forged));
        assert_eq!(keys.capabilities(&forged), ClientCapabilities::default());
    }
}
