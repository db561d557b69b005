//! DNS-rebinding protection for `/mcp`: a browser page of another site must not reach an
//! endpoint on loopback (or a cluster's core) through the visitor's browser. Requests with an
//! `Origin` that is neither loopback nor allowed get 403; on a loopback listener the `Host`
//! must name loopback too (a rebound name does not), or be allowed.

use axum::http::{HeaderMap, header};

#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// The endpoint listens on loopback only: Host headers must name loopback.
    pub loopback_listener: bool,
    /// Origins allowed besides loopback ones, as `scheme://host[:port]` (`--allowed-origin`).
    pub allowed_origins: Vec<String>,
    /// Host headers allowed besides loopback names (`--allowed-host`), as `host[:port]`.
    pub allowed_hosts: Vec<String>,
}

impl OriginPolicy {
    /// Why a request is refused, if it is.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
            let host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
            if !(is_loopback(host) || self.allowed_origins.iter().any(|o| o.trim_end_matches('/') == origin)) {
                return Err(format!(
                    "Origin {origin:?} is not allowed: only loopback origins are, unless listed with --allowed-origin"
                ));
            }
        }
        if self.loopback_listener {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
            if !(is_loopback(host) || self.allowed_hosts.iter().any(|h| h == host || h == strip_port(host))) {
                return Err(format!(
                    "Host {host:?} is not allowed on a loopback endpoint: only loopback names are, unless listed with --allowed-host"
                ));
            }
        }
        Ok(())
    }
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

fn is_loopback(host: &str) -> bool {
    let name = strip_port(host).to_ascii_lowercase();
    match name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => name == "localhost" || name.ends_with(".localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn loopback_origins_and_hosts_pass_others_are_named() {
        let local = OriginPolicy { loopback_listener: true, ..Default::default() };
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost", "127.0.0.2"] {
            assert_eq!(
                local.check(&headers(&[("host", host), ("origin", &format!("http://{host}"))])),
                Ok(()),
                "{host}"
            );
        }
        let e = local.check(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")])).unwrap_err();
        assert!(e.contains("evil.example") && e.contains("--allowed-origin"), "{e}");
        let e = local.check(&headers(&[("host", "evil.example:8080")])).unwrap_err();
        assert!(e.contains("--allowed-host"), "{e}");
        assert!(local.check(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])).is_err());
    }

    #[test]
    fn allowed_lists_and_cluster_listeners() {
        let cluster = OriginPolicy {
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_hosts: vec!["gateway.local".into()],
            ..Default::default()
        };
        assert_eq!(cluster.check(&headers(&[("host", "hangar-core.mcp:8080")])), Ok(()), "any Host off loopback");
        assert_eq!(cluster.check(&headers(&[("origin", "https://app.example.com/")])), Ok(()));
        assert!(cluster.check(&headers(&[("origin", "https://app.example.com.evil")])).is_err());
        let local = OriginPolicy { loopback_listener: true, ..cluster };
        assert_eq!(local.check(&headers(&[("host", "gateway.local:8080")])), Ok(()));
    }
}
