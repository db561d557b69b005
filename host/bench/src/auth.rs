//! The cost of checking an access token on every `/mcp` request, with the issuer's key known:
//! a token seen for the first time (its RS256 signature verified) and one seen before (the
//! verified-token cache), beside `jsonwebtoken::decode` alone, the library's own check.

use std::time::Duration;

use hangar_auth::{AuthConfig, TokenVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation, jwk::Jwk};
use serde_json::json;

use crate::{Figure, Scale, format_duration, percentiles};

const AUDIENCE: &str = "http://127.0.0.1:8080/mcp";
const ISSUER: &str = "http://127.0.0.1:4000";

pub fn run(scale: &Scale) -> anyhow::Result<Vec<Figure>> {
    // A 2048-bit RSA key, as most OpenID providers sign with (RS256).
    let pem = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()?;
    anyhow::ensure!(pem.status.success(), "openssl genpkey failed");
    let signing = EncodingKey::from_rsa_pem(&pem.stdout)?;
    let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::RS256)?;
    jwk.common.key_id = Some("bench".into());
    let verifier = TokenVerifier::new(AuthConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        required_scopes: vec!["mcp:tools".into()],
        group_claim: "groups".into(),
    })
    .map_err(anyhow::Error::msg)?;
    verifier.install_keys(&json!({"keys": [jwk]})).map_err(anyhow::Error::msg)?;
    let header = Header { kid: Some("bench".into()), ..Header::new(Algorithm::RS256) };
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let token = |i: usize| {
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": format!("agent-{i}"), "exp": exp,
                            "client_id": "agent", "scope": "mcp:tools", "groups": ["ops"]});
        jsonwebtoken::encode(&header, &claims, &signing).expect("signs")
    };
    // Signatures are slow to make: distinct tokens for the first-check sample, made beforehand.
    let calls = (scale.plugin_calls / 20).max(200);
    let fresh: Vec<String> = (0..calls).map(token).collect();
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);

    let time = |f: &mut dyn FnMut(usize)| -> (Duration, Duration) {
        let mut times = Vec::with_capacity(calls);
        for i in 0..calls {
            let t = std::time::Instant::now();
            f(i);
            times.push(t.elapsed());
        }
        percentiles(times)
    };
    let library = time(&mut |i| {
        jsonwebtoken::decode::<serde_json::Value>(&fresh[i], &decoding, &validation).expect("valid");
    });
    let first = time(&mut |i| {
        verifier.verify_with_known_keys(&fresh[i]).expect("valid");
    });
    let again = time(&mut |i| {
        verifier.verify_with_known_keys(&fresh[i % 16]).expect("valid");
    });
    let line = |what: &str, measured: (Duration, Duration)| Figure {
        what: what.into(),
        measured: format!("p50 {} / p99 {}", format_duration(measured.0), format_duration(measured.1)),
        baseline_name: "jsonwebtoken::decode alone".into(),
        baseline: format!("p50 {} / p99 {}", format_duration(library.0), format_duration(library.1)),
        ratio: measured.0.as_nanos() as f64 / (library.0.as_nanos() as f64).max(1.0),
    };
    Ok(vec![
        line("token check, a token not seen before (RS256 2048-bit, key cached)", first),
        line("token check, a token seen before (verified-token cache)", again),
    ])
}
