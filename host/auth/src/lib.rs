//! Hangar as an OAuth 2.1 protected resource (MCP "Authorization", 2025-06-18 and 2025-11-25).
//!
//! Access tokens are JWTs (RFC 9068) checked here, locally: the signature with the issuer's
//! keys (found through its discovery document, cached, fetched again on an unknown `kid` at most
//! once per [`REFETCH_INTERVAL`]), `iss`, `aud` = this resource (RFC 8707), `exp` and `nbf` with
//! a small leeway, and only the asymmetric algorithms the key allows. The cryptography is the
//! `jsonwebtoken` crate's. A token seen before is answered from a bounded cache until it expires.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Mutex, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// An unknown `kid` fetches the issuer's keys again at most this often.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// The issuer's keys are fetched again this often even when no unknown `kid` asks for it, so a
/// key the issuer withdrew stops verifying (and its tokens leave the cache).
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// Longest token considered; IdPs with many group claims stay well below.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest discovery document or key set read from the issuer.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Tokens remembered as verified (each a hash and its identity).
const MAX_CACHED_TOKENS: usize = 10_000;

/// What `--auth-issuer`, `--auth-audience`, `--auth-required-scopes` and `--auth-group-claim` say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The authorization server's issuer identifier (its discovery document must name it).
    pub issuer: String,
    /// This resource's URI, the `aud` tokens must carry (RFC 8707), e.g. `https://hangar.example/mcp`.
    pub audience: String,
    /// Scopes every token must have (403 `insufficient_scope` otherwise).
    pub required_scopes: Vec<String>,
    /// The claim whose values are the caller's groups (e.g. `groups`, `roles`).
    pub group_claim: String,
}

impl AuthConfig {
    /// Refuses what would make the protection meaningless, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| format!("--auth-issuer {:?}: not a URL ({e}); e.g. https://login.example.com", self.issuer))?;
        match issuer.scheme() {
            "https" => {}
            "http" if is_loopback(&issuer) => {}
            "http" => {
                return Err(format!(
                    "--auth-issuer {:?}: http:// issuers are accepted on loopback only; use https://",
                    self.issuer
                ));
            }
            other => return Err(format!("--auth-issuer {:?}: scheme {other:?}; use https://", self.issuer)),
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(format!("--auth-issuer {:?}: an issuer has no query or fragment", self.issuer));
        }
        if self.audience.trim().is_empty() {
            return Err(
                "--auth-audience: required with --auth-issuer (this endpoint's URL, e.g. https://hangar.example/mcp)"
                    .into(),
            );
        }
        if self.group_claim.is_empty() {
            return Err("--auth-group-claim: empty; name the claim that lists a caller's groups (e.g. groups)".into());
        }
        if let Some(bad) = self.required_scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(format!("--auth-required-scopes: {bad:?} is not a scope (no spaces, not empty)"));
        }
        Ok(())
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// A verified caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `client_id` (RFC 9068), else `azp`.
    pub client_id: String,
    /// `scope` (space-separated) or `scp` (a list).
    pub scopes: Vec<String>,
    /// The configured group claim's values.
    pub groups: Vec<String>,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token: 401 with the metadata, no error code (RFC 6750 §3.1).
    Missing,
    /// A token that is not valid here: 401 `invalid_token`, with the reason.
    Invalid(String),
    /// Valid, but without every required scope: 403 `insufficient_scope`.
    InsufficientScope,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::InsufficientScope => 403,
            _ => 401,
        }
    }
}

struct Key {
    decoding: DecodingKey,
    /// The algorithms this key verifies: its `alg`, else those of its type.
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Key>,
    /// Keys without a `kid`, tried for tokens without one.
    unnamed: Vec<Key>,
    jwks_uri: Option<String>,
    fetched: Option<Instant>,
}

struct CachedToken {
    identity: Identity,
    expires: u64,
}

pub struct TokenVerifier {
    config: AuthConfig,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// One fetch of the keys at a time; the others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
    verified: Mutex<HashMap<[u8; 32], CachedToken>>,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            config,
            http,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            verified: Mutex::default(),
            validation,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Checks a request's `Authorization` header value.
    pub async fn verify(&self, authorization: Option<&[u8]>) -> Result<Identity, Refusal> {
        let token = bearer(authorization)?;
        match self.verify_with_known_keys(token) {
            Err(KeyLookup::Unknown) => {
                self.refresh_keys(true).await;
                self.verify_with_known_keys(token).map_err(KeyLookup::into_refusal)?
            }
            other => other.map_err(KeyLookup::into_refusal)?,
        }
        .checked_scopes(&self.config.required_scopes)
    }

    /// The check without any fetch: what a token costs once the keys are known.
    pub fn verify_with_known_keys(&self, token: &str) -> Result<Identity, KeyLookup> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(KeyLookup::Refused(format!("the token has over {MAX_TOKEN_BYTES} bytes")));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some(hit) = self.verified.lock().unwrap().get(&digest)
            && hit.expires + LEEWAY_SECS > now
        {
            return Ok(hit.identity.clone());
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| KeyLookup::Refused(format!("not a signed JWT with a supported algorithm ({e})")))?;
        if names_critical_extensions(token) {
            // RFC 7515 §4.1.11: a `crit` header this resource does not understand (it knows none)
            // makes the token invalid.
            return Err(KeyLookup::Refused(
                "the token names critical header extensions (crit) this resource does not understand".into(),
            ));
        }
        let keys = self.keys.read().unwrap();
        let allows = |k: &&Key| k.algorithms.contains(&header.alg);
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => keys.by_kid.get(kid).into_iter().filter(allows).collect(),
            None => keys.unnamed.iter().chain(keys.by_kid.values()).filter(allows).collect(),
        };
        if candidates.is_empty() {
            // A known kid with another algorithm (HS256 over an RSA key, say) is refused, not refetched.
            return match header.kid.as_ref().filter(|kid| keys.by_kid.contains_key(*kid)) {
                Some(_) => Err(KeyLookup::Refused(format!("algorithm {:?} is not allowed for its key", header.alg))),
                None => Err(KeyLookup::Unknown),
            };
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut last = String::new();
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => {
                    if data.claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return Err(KeyLookup::Refused("the token names no subject (sub is empty)".into()));
                    }
                    let identity = self.identity(&data.claims);
                    let expires = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    let mut cache = self.verified.lock().unwrap();
                    if cache.len() >= MAX_CACHED_TOKENS {
                        cache.retain(|_, t| t.expires + LEEWAY_SECS > now);
                        if cache.len() >= MAX_CACHED_TOKENS {
                            cache.clear();
                        }
                    }
                    cache.insert(digest, CachedToken { identity: identity.clone(), expires });
                    return Ok(identity);
                }
                Err(e) => last = describe(&e),
            }
        }
        Err(KeyLookup::Refused(last))
    }

    fn identity(&self, claims: &serde_json::Map<String, Value>) -> Identity {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let strings = |items: &Vec<Value>| items.iter().filter_map(Value::as_str).map(str::to_string).collect();
        // Scopes are a space-separated string (RFC 8693 `scope`) or a list (`scp`).
        let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => strings(items),
            _ => Vec::new(),
        };
        // Groups are a list; a single string is one group, never split (a group name may hold
        // a space, and splitting would make "crm-admins-readonly x" grant "x").
        let groups = match claims.get(&self.config.group_claim) {
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            Some(Value::Array(items)) => strings(items),
            _ => Vec::new(),
        };
        let client_id = Some(text("client_id")).filter(|c| !c.is_empty()).unwrap_or_else(|| text("azp"));
        Identity { subject: text("sub"), client_id, scopes, groups }
    }

    /// Fetches the keys now, then every [`KEYS_MAX_AGE`], for as long as the verifier lives.
    pub async fn keep_keys_fresh(self: std::sync::Arc<Self>) {
        loop {
            self.refresh_keys(false).await;
            tokio::time::sleep(KEYS_MAX_AGE).await;
        }
    }

    /// Fetches the issuer's keys; with `on_demand` (an unknown `kid`), only when the last fetch
    /// is older than [`REFETCH_INTERVAL`], so a stream of made-up kids cannot hammer the issuer.
    pub async fn refresh_keys(&self, on_demand: bool) {
        let started = Instant::now();
        let _one = self.fetching.lock().await;
        let last = self.keys.read().unwrap().fetched;
        // Another request fetched while this one waited.
        if last.is_some_and(|t| t >= started) {
            return;
        }
        if on_demand && last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
            return;
        }
        match self.fetch_keys().await {
            Ok(set) => {
                tracing::info!(issuer = %self.config.issuer, keys = set.by_kid.len() + set.unnamed.len(), "fetched the issuer's signing keys");
                *self.keys.write().unwrap() = set;
                // Tokens of keys that are gone must not live on in the cache.
                self.verified.lock().unwrap().clear();
            }
            Err(why) => {
                tracing::warn!(issuer = %self.config.issuer, error = %why, "could not fetch the issuer's signing keys");
                self.keys.write().unwrap().fetched = Some(Instant::now());
            }
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, String> {
        let known_uri = self.keys.read().unwrap().jwks_uri.clone();
        let jwks_uri = match known_uri {
            Some(uri) => uri,
            None => self.discover_jwks_uri().await?,
        };
        let set = self.get_json(&jwks_uri).await?;
        KeySet::from_jwks(&set, jwks_uri)
    }

    /// Uses these keys, as the issuer would publish them, until the next fetch; the number of
    /// usable keys. (The gateway fetches them; this is for measuring the check alone.)
    pub fn install_keys(&self, jwks: &Value) -> Result<usize, String> {
        let mut set = KeySet::from_jwks(jwks, "(given)".into())?;
        set.jwks_uri = None;
        let count = set.by_kid.len() + set.unnamed.len();
        *self.keys.write().unwrap() = set;
        self.verified.lock().unwrap().clear();
        Ok(count)
    }
}

impl KeySet {
    /// The usable signing keys of a published JWK set (others are skipped).
    fn from_jwks(set: &Value, jwks_uri: String) -> Result<KeySet, String> {
        let mut keys = KeySet { fetched: Some(Instant::now()), ..Default::default() };
        for value in set.get("keys").and_then(Value::as_array).ok_or(format!("{jwks_uri}: no \"keys\" list"))? {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else { continue };
            // Signing keys only; symmetric ones never verify an access token here.
            if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
                continue;
            }
            let Some(algorithms) = key_algorithms(&jwk) else { continue };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else { continue };
            let key = Key { decoding, algorithms };
            match jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid, key);
                }
                None => keys.unnamed.push(key),
            }
        }
        keys.jwks_uri = Some(jwks_uri);
        Ok(keys)
    }
}

impl TokenVerifier {
    /// The issuer's `jwks_uri`, from its OpenID Connect discovery document or its RFC 8414
    /// metadata, which must name the configured issuer (mix-up protection).
    async fn discover_jwks_uri(&self) -> Result<String, String> {
        let issuer = url::Url::parse(&self.config.issuer).map_err(|e| e.to_string())?;
        let trimmed = self.config.issuer.trim_end_matches('/');
        let path = issuer.path().trim_end_matches('/');
        let origin = issuer.origin().ascii_serialization();
        let candidates = [
            format!("{trimmed}/.well-known/openid-configuration"),
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
        ];
        let mut errors = Vec::new();
        for url in candidates {
            match self.get_json(&url).await {
                Ok(doc) => {
                    let named = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
                    if named.trim_end_matches('/') != trimmed {
                        errors.push(format!("{url} names issuer {named:?}, not {:?}", self.config.issuer));
                        continue;
                    }
                    return doc
                        .get("jwks_uri")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| format!("{url}: no jwks_uri"));
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url}: over {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON ({e})"))
    }

    /// The RFC 9728 metadata of this resource.
    pub fn resource_metadata(&self) -> Value {
        let mut doc = json!({
            "resource": self.config.audience,
            "authorization_servers": [self.config.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "Hangar MCP gateway",
        });
        if !self.config.required_scopes.is_empty() {
            doc["scopes_supported"] = json!(self.config.required_scopes);
        }
        doc
    }

    /// Where the metadata is served: the path form for the audience's path (RFC 9728 §3.1),
    /// on the audience's origin when it is a URL, else on the Host the client used.
    pub fn resource_metadata_url(&self, host: Option<&str>) -> String {
        match url::Url::parse(&self.config.audience) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                let path = url.path().trim_end_matches('/');
                format!("{}/.well-known/oauth-protected-resource{path}", url.origin().ascii_serialization())
            }
            _ => format!("http://{}/.well-known/oauth-protected-resource/mcp", host.unwrap_or("localhost")),
        }
    }

    /// The `WWW-Authenticate` value for a refusal.
    pub fn challenge(&self, refusal: &Refusal, host: Option<&str>) -> String {
        let mut parts = Vec::new();
        match refusal {
            Refusal::Missing => {}
            Refusal::Invalid(why) => {
                parts.push("error=\"invalid_token\"".to_string());
                parts.push(format!("error_description=\"{}\"", quoted(why)));
            }
            Refusal::InsufficientScope => parts.push("error=\"insufficient_scope\"".to_string()),
        }
        if !self.config.required_scopes.is_empty() {
            parts.push(format!("scope=\"{}\"", quoted(&self.config.required_scopes.join(" "))));
        }
        parts.push(format!("resource_metadata=\"{}\"", quoted(&self.resource_metadata_url(host))));
        format!("Bearer {}", parts.join(", "))
    }
}

impl Identity {
    fn checked_scopes(self, required: &[String]) -> Result<Identity, Refusal> {
        if required.iter().all(|s| self.scopes.contains(s)) { Ok(self) } else { Err(Refusal::InsufficientScope) }
    }
}

/// The outcome of a check against the keys known so far.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyLookup {
    /// No known key has the token's `kid`: the keys may have rotated.
    Unknown,
    Refused(String),
}

impl KeyLookup {
    fn into_refusal(self) -> Refusal {
        match self {
            KeyLookup::Unknown => {
                Refusal::Invalid("signed with a key the issuer does not publish (unknown kid)".into())
            }
            KeyLookup::Refused(why) => Refusal::Invalid(why),
        }
    }
}

/// The token of an `Authorization: Bearer …` value.
fn bearer(authorization: Option<&[u8]>) -> Result<&str, Refusal> {
    let Some(value) = authorization else { return Err(Refusal::Missing) };
    let value =
        std::str::from_utf8(value).map_err(|_| Refusal::Invalid("the Authorization header is not text".into()))?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Invalid("use Authorization: Bearer <access token>".into()));
    }
    let token = token.trim();
    if token.is_empty() { Err(Refusal::Missing) } else { Ok(token) }
}

/// The algorithms a published key may verify: its own `alg` if it names one, else its type's
/// asymmetric ones. Symmetric keys: none.
fn key_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => jsonwebtoken::AlgorithmFamily::Rsa.algorithms().to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        _ => return None,
    };
    match &jwk.common.key_algorithm {
        Some(alg) => {
            let alg = Algorithm::from_str(&alg.to_string()).ok()?;
            by_type.contains(&alg).then(|| vec![alg])
        }
        None => Some(by_type),
    }
}

/// A reason a client can act on, from the library's error.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match e.kind() {
        ExpiredSignature => "the token has expired".into(),
        ImmatureSignature => "the token is not valid yet (nbf)".into(),
        InvalidAudience => "the token is for another resource (aud); request it with this resource's URI".into(),
        InvalidIssuer => "the token is from another issuer (iss)".into(),
        InvalidSignature => "the signature does not verify".into(),
        MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
        InvalidAlgorithm => "the token's algorithm is not allowed for its key".into(),
        Base64(_) | Json(_) | Utf8(_) | InvalidToken => "the token is not a well-formed JWT".into(),
        other => format!("the token is not valid ({other:?})"),
    }
}

/// Text fit for a quoted-string in a header: no quotes, backslashes or control characters.
fn quoted(text: &str) -> String {
    text.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

/// Whether the token's header has a `crit` parameter (read from the header itself: the JWT
/// library does not look at it).
fn names_critical_extensions(token: &str) -> bool {
    use base64::Engine as _;
    let Some(encoded) = token.split('.').next() else { return false };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else { return false };
    serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).is_ok_and(|h| h.contains_key("crit"))
}

#[cfg(test)]
mod tests;
