//! MCP protocol facts the gateway speaks on both sides: revisions, the per-request `_meta` of the
//! stateless revision, and JSON-RPC message shapes.

use serde_json::{Value, json};

/// Revisions reached through the `initialize` handshake, oldest first.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The stateless revision: `server/discover`, `_meta` on every request, no session.
pub const MODERN_VERSION: &str = "2026-07-28";
pub const LATEST_HANDSHAKE: &str = "2025-11-25";

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// JSON-RPC and MCP error codes used here.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The client cancelled the request (LSP's code, used by MCP SDKs).
    pub const REQUEST_CANCELLED: i64 = -32800;
    /// The server is not reachable or not ready (Hangar).
    pub const SERVER_UNAVAILABLE: i64 = -32001;
    /// The tool policy refused the call (Hangar).
    pub const DENIED: i64 = -32003;
    /// No session with that id (Hangar; HTTP 404).
    pub const SESSION_NOT_FOUND: i64 = -32004;
    /// The MCP-Protocol-Version header is missing or disagrees with `_meta` (MCP 2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// A request needs a capability its client did not declare (MCP 2026-07-28; HTTP 400).
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// The protocol version is not spoken here (MCP 2026-07-28).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// A rate limit is exhausted (Hangar).
    pub const RATE_LIMITED: i64 = -32029;
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }

    pub fn from_json(e: &Value) -> Self {
        Self {
            code: e.get("code").and_then(Value::as_i64).unwrap_or(code::INTERNAL_ERROR),
            message: e.get("message").and_then(Value::as_str).unwrap_or("error without message").to_string(),
            data: e.get("data").cloned(),
        }
    }

    /// The error for a revision nobody here speaks, naming the ones that are.
    pub fn unsupported_version(requested: &str) -> Self {
        let mut supported: Vec<&str> = HANDSHAKE_VERSIONS.to_vec();
        supported.push(MODERN_VERSION);
        RpcError::new(
            code::UNSUPPORTED_PROTOCOL_VERSION,
            format!("protocol version {requested:?} is not supported; use one of {}", supported.join(", ")),
        )
        .with_data(json!({"supported": supported, "requested": requested}))
    }
}

impl RpcError {
    /// A stateless request naming another version: the stateless answer lists only what
    /// `server/discover` says (2026-07-28); handshake versions are reached through `initialize`.
    pub fn unsupported_stateless_version(requested: &str) -> Self {
        RpcError::new(
            code::UNSUPPORTED_PROTOCOL_VERSION,
            format!(
                "protocol version {requested:?} is not spoken without a session; use {MODERN_VERSION}, or initialize a session for {}",
                HANDSHAKE_VERSIONS.join(", ")
            ),
        )
        .with_data(json!({"supported": [MODERN_VERSION], "requested": requested}))
    }
}

/// A JSON-RPC error code as a label value (metrics, `error.type`): codes of the spec's reserved
/// range as they are, any other `other` (servers choose codes; any number must not grow /metrics).
pub fn code_label(code: i64) -> String {
    match (-32768..=-32000).contains(&code) {
        true => code.to_string(),
        false => "other".to_string(),
    }
}

pub fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error_response(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

pub fn request(id: u64, method: &str, params: Value) -> Value {
    request_with_id(&Value::from(id), method, params)
}

pub fn request_with_id(id: &Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// `_meta` for a request in the stateless revision, as Hangar sends it to backends.
pub fn modern_meta() -> Value {
    MODERN_META.clone()
}

/// Built once: every request to a stateless server takes what the client's `_meta` lacks from it.
pub static MODERN_META: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({
        META_PROTOCOL_VERSION: MODERN_VERSION,
        META_CLIENT_CAPABILITIES: relayed_capabilities(),
        META_CLIENT_INFO: {"name": "hangar", "version": env!("CARGO_PKG_VERSION")},
    })
});

/// What Hangar declares to servers: the requests it relays to the client of the call (which may
/// still refuse them, with a clear error).
pub fn relayed_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {"form": {}}, "roots": {}})
}

/// The revision a request says it speaks through `_meta`, if it says one.
pub fn requested_modern_version(params: &Value) -> Option<&str> {
    params.get("_meta").and_then(|m| m.get(META_PROTOCOL_VERSION)).and_then(Value::as_str)
}

/// The parameter a method names its tool, prompt or resource by, which the stateless revision
/// repeats in the `Mcp-Name` header.
pub fn named_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Whether a revision is spoken here.
pub fn is_supported(version: &str) -> bool {
    version == MODERN_VERSION || HANDSHAKE_VERSIONS.contains(&version)
}

/// The version to answer an `initialize` with: the client's when spoken here, else the latest.
pub fn negotiate_handshake(requested: Option<&str>) -> &'static str {
    HANDSHAKE_VERSIONS.iter().find(|v| Some(**v) == requested).copied().unwrap_or(LATEST_HANDSHAKE)
}

pub fn server_info() -> Value {
    json!({"name": "hangar", "version": env!("CARGO_PKG_VERSION")})
}

/// What the gateway offers. Handshake clients hear of list changes on their GET stream and may
/// subscribe to resources; stateless clients hear of list changes through `subscriptions/listen`
/// (resource subscriptions are not honored there yet, so not claimed).
pub fn capabilities(modern: bool) -> Value {
    if modern {
        return json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"listChanged": true},
            "completions": {},
            "logging": {},
        });
    }
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "completions": {},
        "logging": {},
    })
}

/// How long a session id is good for; then its client gets 404 and initializes again, as the
/// spec has clients do when a server ends a session.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_negotiation_echoes_known_versions_and_offers_the_latest_otherwise() {
        assert_eq!(negotiate_handshake(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate_handshake(Some("2099-01-01")), LATEST_HANDSHAKE);
        assert_eq!(negotiate_handshake(None), LATEST_HANDSHAKE);
    }

    #[test]
    fn unsupported_version_names_what_is_supported() {
        let e = RpcError::unsupported_version("1999-01-01");
        assert_eq!(e.code, -32022);
        assert_eq!(e.data.unwrap()["supported"][4], MODERN_VERSION);
    }
}
