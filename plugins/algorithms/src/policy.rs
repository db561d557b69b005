//! The default tool policy: allow-list and deny-list globs, and one rate-limit bucket per server.
//! It fails closed: a policy that was never configured denies every call.

use crate::glob;

/// A token bucket the host enforces for an allowed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub requests_per_minute: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Vec<Bucket>),
    Deny(String),
}

/// A server's tool policy, from the key/value configuration the host passes to `configure`:
/// `server`, `allow` and `deny` (each repeated, globs), `requests-per-minute`, `burst`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    pub server: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// (requests per minute, burst)
    pub rate: Option<(u32, u32)>,
}

impl ToolPolicy {
    pub fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let mut policy = ToolPolicy::default();
        let mut rpm = None;
        let mut burst = None;
        let number = |key: &str, value: &str| -> Result<u32, String> {
            match value.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("{key}: {value:?} is not a whole number of at least 1")),
            }
        };
        for (key, value) in config {
            match key.as_str() {
                "server" => policy.server = value.clone(),
                "allow" => policy.allow.push(value.clone()),
                "deny" => policy.deny.push(value.clone()),
                "requests-per-minute" => rpm = Some(number(key, value)?),
                "burst" => burst = Some(number(key, value)?),
                other => {
                    return Err(format!(
                        "unknown configuration key {other:?}; known: server, allow, deny, requests-per-minute, burst"
                    ));
                }
            }
        }
        match (rpm, burst) {
            (Some(r), b) => policy.rate = Some((r, b.unwrap_or(r))),
            (None, Some(_)) => return Err("burst: given without requests-per-minute".into()),
            (None, None) => {}
        }
        Ok(policy)
    }

    /// Whether `tools/list` shows this tool.
    pub fn visible(&self, tool: &str) -> bool {
        self.denied_by(tool).is_none() && (self.allow.is_empty() || self.allow.iter().any(|p| glob::matches(p, tool)))
    }

    fn denied_by(&self, tool: &str) -> Option<&str> {
        self.deny.iter().find(|p| glob::matches(p, tool)).map(String::as_str)
    }

    pub fn check(&self, tool: &str) -> Decision {
        if let Some(pattern) = self.denied_by(tool) {
            return Decision::Deny(format!(
                "tool {tool:?} is denied on server {:?} by spec.tools.denyList entry {pattern:?}",
                self.server
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| glob::matches(p, tool)) {
            return Decision::Deny(format!(
                "tool {tool:?} is not in spec.tools.allowList of server {:?} (allowed: {})",
                self.server,
                self.allow.join(", ")
            ));
        }
        let buckets = self
            .rate
            .map(|(requests_per_minute, burst)| Bucket { key: self.server.clone(), requests_per_minute, burst })
            .into_iter()
            .collect();
        Decision::Allow(buckets)
    }
}

/// What an unconfigured policy answers: fail closed.
pub fn unconfigured() -> Decision {
    Decision::Deny("the tool policy was not configured; calls are refused until it is".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<ToolPolicy, String> {
        ToolPolicy::from_config(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn allow_list_admits_only_listed_tools() {
        let p = policy(&[("server", "github-tools"), ("allow", "create_issue"), ("allow", "list_*")]).unwrap();
        assert_eq!(p.check("create_issue"), Decision::Allow(vec![]));
        assert_eq!(p.check("list_issues"), Decision::Allow(vec![]));
        let Decision::Deny(why) = p.check("delete_repo") else { panic!() };
        assert!(why.contains("not in spec.tools.allowList of server \"github-tools\""), "{why}");
        assert!(!p.visible("delete_repo") && p.visible("list_prs"));
    }

    #[test]
    fn deny_list_wins_over_allow_list() {
        let p = policy(&[("allow", "*"), ("deny", "delete_*")]).unwrap();
        assert!(matches!(p.check("delete_repo"), Decision::Deny(_)));
        assert!(!p.visible("delete_repo"));
        assert_eq!(p.check("read"), Decision::Allow(vec![]));
    }

    #[test]
    fn rate_limit_names_the_servers_bucket() {
        let p = policy(&[("server", "s"), ("requests-per-minute", "30")]).unwrap();
        assert_eq!(p.check("t"), Decision::Allow(vec![Bucket { key: "s".into(), requests_per_minute: 30, burst: 30 }]));
        let p = policy(&[("server", "s"), ("requests-per-minute", "30"), ("burst", "5")]).unwrap();
        assert_eq!(p.check("t"), Decision::Allow(vec![Bucket { key: "s".into(), requests_per_minute: 30, burst: 5 }]));
    }

    #[test]
    fn bad_configuration_is_refused_with_the_key() {
        assert!(policy(&[("requests-per-minute", "0")]).unwrap_err().starts_with("requests-per-minute"));
        assert!(policy(&[("burst", "3")]).unwrap_err().starts_with("burst"));
        assert!(policy(&[("alow", "x")]).unwrap_err().contains("unknown configuration key \"alow\""));
    }
}
