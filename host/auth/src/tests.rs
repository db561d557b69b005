use super::*;

fn config(issuer: &str) -> AuthConfig {
    AuthConfig {
        issuer: issuer.into(),
        audience: "http://127.0.0.1:9000/mcp".into(),
        required_scopes: vec!["mcp:tools".into()],
        group_claim: "groups".into(),
    }
}

#[test]
fn http_issuers_only_on_loopback() {
    assert!(config("http://127.0.0.1:4000").validate().is_ok());
    assert!(config("http://localhost:4000/realms/a").validate().is_ok());
    assert!(config("https://login.example.com").validate().is_ok());
    let err = config("http://login.example.com").validate().unwrap_err();
    assert!(err.contains("--auth-issuer") && err.contains("loopback only"), "{err}");
    let err = config("not a url").validate().unwrap_err();
    assert!(err.starts_with("--auth-issuer"), "{err}");
    let mut c = config("https://login.example.com");
    c.audience = " ".into();
    assert!(c.validate().unwrap_err().starts_with("--auth-audience"));
    c = config("https://login.example.com");
    c.required_scopes = vec!["a b".into()];
    assert!(c.validate().unwrap_err().starts_with("--auth-required-scopes"));
}

#[test]
fn bearer_tokens_are_taken_from_the_header_only_in_the_bearer_scheme() {
    assert_eq!(bearer(None), Err(Refusal::Missing));
    assert_eq!(bearer(Some(b"Bearer ")), Err(Refusal::Missing));
    assert_eq!(bearer(Some(b"bearer abc")), Ok("abc"));
    assert!(matches!(bearer(Some(b"Basic dXNlcjpwdw==")), Err(Refusal::Invalid(_))));
    assert!(matches!(bearer(Some(b"Bearer \xff")), Err(Refusal::Invalid(_))));
}

#[test]
fn challenges_name_the_metadata_and_the_error() {
    let v = TokenVerifier::new(config("http://127.0.0.1:4000")).unwrap();
    let url = "http://127.0.0.1:9000/.well-known/oauth-protected-resource/mcp";
    assert_eq!(v.resource_metadata_url(None), url);
    assert_eq!(
        v.challenge(&Refusal::Missing, None),
        format!("Bearer scope=\"mcp:tools\", resource_metadata=\"{url}\"")
    );
    let invalid = v.challenge(&Refusal::Invalid("bad \"quote\"\n".into()), None);
    assert!(invalid.starts_with("Bearer error=\"invalid_token\", error_description=\"bad quote\""), "{invalid}");
    assert!(
        v.challenge(&Refusal::InsufficientScope, None)
            .starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp:tools\"")
    );
    assert_eq!(v.resource_metadata()["resource"], "http://127.0.0.1:9000/mcp");
    assert_eq!(v.resource_metadata()["authorization_servers"][0], "http://127.0.0.1:4000");
}

#[test]
fn only_asymmetric_signing_keys_verify() {
    let jwk = |v: Value| serde_json::from_value::<Jwk>(v).unwrap();
    let rsa = json!({"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "r"});
    assert_eq!(key_algorithms(&jwk(rsa.clone())).unwrap().len(), 6);
    let mut rs256 = rsa.clone();
    rs256["alg"] = json!("RS256");
    assert_eq!(key_algorithms(&jwk(rs256)), Some(vec![Algorithm::RS256]));
    // A key that claims an algorithm of another type verifies nothing.
    let mut lying = rsa;
    lying["alg"] = json!("HS256");
    assert_eq!(key_algorithms(&jwk(lying)), None);
    assert_eq!(key_algorithms(&jwk(json!({"kty": "oct", "k": "c2VjcmV0"}))), None);
    let ec = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
    assert_eq!(key_algorithms(&jwk(ec)), Some(vec![Algorithm::ES256]));
}

#[test]
fn oversized_and_malformed_tokens_are_refused_before_any_key_lookup() {
    let v = TokenVerifier::new(config("http://127.0.0.1:4000")).unwrap();
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(v.verify_with_known_keys(&huge), Err(KeyLookup::Refused(w)) if w.contains("bytes")));
    assert!(matches!(v.verify_with_known_keys("x.y"), Err(KeyLookup::Refused(_))));
    // alg none has no place in the library's algorithms: refused as unsupported.
    let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    assert!(matches!(v.verify_with_known_keys(none), Err(KeyLookup::Refused(_))));
}

#[test]
fn groups_are_a_list_or_one_group_and_scopes_are_split() {
    let v = TokenVerifier::new(config("http://127.0.0.1:4000")).unwrap();
    let claims = |v: Value| v.as_object().unwrap().clone();
    let one = v.identity(&claims(json!({"sub": "bob", "groups": "crm-admins readers", "scope": "mcp:tools mcp:read"})));
    assert_eq!(one.groups, ["crm-admins readers"], "a string is one group, never split");
    assert_eq!(one.scopes, ["mcp:tools", "mcp:read"]);
    let many = v.identity(&claims(json!({"sub": "bob", "groups": ["crm-admins", 7, "readers"]})));
    assert_eq!(many.groups, ["crm-admins", "readers"]);
    assert!(v.identity(&claims(json!({"sub": "bob", "groups": ""}))).groups.is_empty());
}

#[test]
fn a_crit_header_is_seen() {
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let with = format!("{}.{}.sig", b64(json!({"alg": "RS256", "crit": ["exp-x"], "exp-x": 1})), b64(json!({})));
    let without = format!("{}.{}.sig", b64(json!({"alg": "RS256"})), b64(json!({})));
    assert!(names_critical_extensions(&with));
    assert!(!names_critical_extensions(&without));
}
