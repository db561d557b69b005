//! What a manifest's server spec means for reaching it: its endpoint checked, its headers built
//! (values from Secrets marked sensitive), and how `hangar run` starts it.

use std::path::Path;

use hangar_api::{MCPServerSpec, ServerMode, Transport};

use super::BackendSpec;

/// An endpoint core may call: an absolute `http://` or `https://` URL with a host (no
/// `file://`, `gopher://`, ...). The message never repeats the URL, which may hold a credential.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match reqwest::Url::parse(endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) if matches!(url.scheme(), "http" | "https") => Err("spec.endpoint: the URL names no host".into()),
        Ok(url) => {
            Err(format!("spec.endpoint: scheme {:?} is not allowed; use an http:// or https:// URL", url.scheme()))
        }
        Err(e) => Err(format!("spec.endpoint: not a URL ({e}); use an http:// or https:// URL")),
    }
}

/// A remote server's headers, with values from Secrets found by `secret` (given the entry's
/// index), as HTTP headers marked sensitive; an unusable one is refused naming its entry of
/// `spec.headers` (never the value).
pub fn remote_headers(
    spec: &MCPServerSpec,
    secret: impl Fn(usize, &hangar_api::SecretKeyRef) -> Result<String, String>,
) -> Result<reqwest::header::HeaderMap, String> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut map = reqwest::header::HeaderMap::new();
    for (i, h) in spec.headers.iter().enumerate() {
        let value = match (&h.value, &h.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => secret(i, &from.secret_key_ref)?,
            (None, None) => return Err(format!("spec.headers[{i}]: set value or valueFrom")),
        };
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("spec.headers[{i}].name: {:?} is not an HTTP header name", h.name))?;
        let mut value = HeaderValue::from_str(value.trim_end_matches(['\r', '\n'])).map_err(|_| {
            format!(
                "spec.headers[{i}]: the value of {:?} is not a valid HTTP header value (printable ASCII, one line)",
                h.name
            )
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// How to reach a server outside a cluster: a command runs locally over stdio; a remote
/// endpoint over HTTP. An image alone cannot run here.
pub fn backend_spec(name: &str, spec: &MCPServerSpec, base_dir: &Path) -> Result<BackendSpec, String> {
    match spec.mode {
        ServerMode::Remote => {
            let endpoint = spec.endpoint.clone().ok_or("spec.endpoint: required when mode is remote")?;
            // Outside a cluster a Secret's key comes from the environment.
            let headers = remote_headers(spec, |i, secret| {
                let var = secret.env_var();
                std::env::var(&var).map_err(|_| {
                    format!(
                        "spec.headers[{i}].valueFrom.secretKeyRef: `hangar run` reads Secret {:?} key {:?} from the environment variable {var}, which is not set",
                        secret.name, secret.key
                    )
                })
            })?;
            Ok(BackendSpec::Http { endpoint, headers })
        }
        ServerMode::Container if spec.command.is_empty() => Err(format!(
            "spec.command: server {name:?} has only an image, and `hangar run` starts no containers; give the command that runs it (with transport: stdio)"
        )),
        ServerMode::Container if spec.transport == Transport::StreamableHttp => Err(
            "spec.transport: `hangar run` starts local commands as stdio servers; set transport: stdio (or mode: remote with an endpoint)"
                .to_string(),
        ),
        ServerMode::Container => {
            let mut command = spec.command.clone();
            command.extend(spec.args.iter().cloned());
            let mut env = Vec::new();
            for var in &spec.env {
                match (&var.value, &var.value_from) {
                    (Some(v), _) => env.push((var.name.clone(), v.clone())),
                    (None, Some(_)) => {
                        return Err(format!(
                            "spec.env[{}].valueFrom: `hangar run` has no Secrets or ConfigMaps to read; give a value",
                            var.name
                        ));
                    }
                    (None, None) => env.push((var.name.clone(), String::new())),
                }
            }
            Ok(BackendSpec::Stdio { command, env, dir: base_dir.to_path_buf() })
        }
    }
}
