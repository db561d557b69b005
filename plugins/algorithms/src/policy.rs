//! The default tool policy: allow-list and deny-list globs, one rate-limit bucket per server,
//! and rules per caller (`spec.tools.callers`): the first rule that matches a caller narrows the
//! lists for it and gives it a bucket of its own. It fails closed: a policy that was never
//! configured denies every call.

use crate::glob;

/// Who is calling, as the host saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller<'a> {
    /// True when an access token was checked; false for the client's self-given name.
    pub verified: bool,
    pub subject: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    pub groups: &'a [String],
}

/// A WIT `caller` record (each side's generated type: the plugins', the host's) seen as a
/// [`Caller`]; [`impl_caller_view!`](crate::impl_caller_view) writes the impl.
pub trait CallerView {
    fn view(&self) -> Caller<'_>;
}

/// Implements [`CallerView`] for a type with the WIT `caller` record's fields.
#[macro_export]
macro_rules! impl_caller_view {
    ($caller:ty) => {
        impl $crate::policy::CallerView for $caller {
            fn view(&self) -> $crate::policy::Caller<'_> {
                $crate::policy::Caller {
                    verified: self.verified,
                    subject: &self.subject,
                    client_id: &self.client_id,
                    scopes: &self.scopes,
                    groups: &self.groups,
                }
            }
        }
    };
}

impl Caller<'_> {
    /// How refusals name the caller.
    fn describe(&self) -> String {
        if self.verified {
            format!("caller {:?}", self.subject)
        } else {
            format!("unverified caller {:?}", self.subject)
        }
    }
}

/// One entry of `spec.tools.callers`. A rule with no `subjects`, `clientIds`, `groups` or
/// `scopes` matches every caller (verified or not); otherwise only verified callers, and each
/// non-empty list must match (any of its globs).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CallerRule {
    pub subjects: Vec<String>,
    pub client_ids: Vec<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub allow_list: Vec<String>,
    pub deny_list: Vec<String>,
    pub rate_limit: Option<CallerRate>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerRate {
    pub requests_per_minute: u32,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl CallerRule {
    fn matches(&self, caller: &Caller) -> bool {
        let any = |patterns: &[String], values: &[&str]| {
            patterns.is_empty() || patterns.iter().any(|p| values.iter().any(|v| glob::matches(p, v)))
        };
        let unconditional =
            self.subjects.is_empty() && self.client_ids.is_empty() && self.groups.is_empty() && self.scopes.is_empty();
        let groups: Vec<&str> = caller.groups.iter().map(String::as_str).collect();
        let scopes: Vec<&str> = caller.scopes.iter().map(String::as_str).collect();
        unconditional
            || (caller.verified
                && any(&self.subjects, &[caller.subject])
                && any(&self.client_ids, &[caller.client_id])
                && any(&self.groups, &groups)
                && any(&self.scopes, &scopes))
    }
}

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
    /// Rules per caller, first match wins; empty: every caller is treated alike.
    pub callers: Vec<CallerRule>,
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
                "callers" => {
                    policy.callers = serde_json::from_str(value).map_err(|e| format!("callers: {e}"))?;
                    if let Some(i) = policy.callers.iter().position(|r| {
                        r.rate_limit.as_ref().is_some_and(|l| l.requests_per_minute == 0 || l.burst == Some(0))
                    }) {
                        return Err(format!("callers[{i}].rateLimit: requestsPerMinute and burst must be 1 or more"));
                    }
                }
                other => {
                    return Err(format!(
                        "unknown configuration key {other:?}; known: server, allow, deny, requests-per-minute, burst, callers"
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

    /// Whether `tools/list` shows this tool to this caller: exactly when `check` would allow it.
    pub fn visible(&self, tool: &str, caller: &Caller) -> bool {
        self.refusal(tool, caller).is_none()
    }

    fn denied_by(&self, tool: &str) -> Option<&str> {
        self.deny.iter().find(|p| glob::matches(p, tool)).map(String::as_str)
    }

    /// Why this caller may not see or use anything of the server besides tools — its
    /// resources, resource templates, prompts and completions: `callers` is set and no entry
    /// matches the caller. A matching entry's `allowList` and `denyList` name tools only.
    pub fn offerings_refusal(&self, caller: &Caller) -> Option<String> {
        (!self.callers.is_empty() && self.rule_for(caller).is_none()).then(|| {
            format!(
                "{} matches no entry of spec.tools.callers of server {:?}, which governs its resources and prompts too",
                caller.describe(),
                self.server
            )
        })
    }

    /// The first rule of `callers` that matches, with its index.
    fn rule_for(&self, caller: &Caller) -> Option<(usize, &CallerRule)> {
        self.callers.iter().enumerate().find(|(_, r)| r.matches(caller))
    }

    fn refusal(&self, tool: &str, caller: &Caller) -> Option<String> {
        if let Some(why) = self.server_refusal(tool) {
            return Some(why);
        }
        if self.callers.is_empty() {
            return None;
        }
        let Some((i, rule)) = self.rule_for(caller) else {
            return Some(format!(
                "{} matches no entry of spec.tools.callers of server {:?}",
                caller.describe(),
                self.server
            ));
        };
        if let Some(pattern) = rule.deny_list.iter().find(|p| glob::matches(p, tool)) {
            return Some(format!(
                "tool {tool:?} is denied to {} by spec.tools.callers[{i}].denyList entry {pattern:?} of server {:?}",
                caller.describe(),
                self.server
            ));
        }
        if !rule.allow_list.is_empty() && !rule.allow_list.iter().any(|p| glob::matches(p, tool)) {
            return Some(format!(
                "tool {tool:?} is not in spec.tools.callers[{i}].allowList of server {:?} for {} (allowed: {})",
                self.server,
                caller.describe(),
                rule.allow_list.join(", ")
            ));
        }
        None
    }

    pub fn check(&self, tool: &str, caller: &Caller) -> Decision {
        if let Some(why) = self.refusal(tool, caller) {
            return Decision::Deny(why);
        }
        let mut buckets: Vec<Bucket> = self
            .rate
            .map(|(requests_per_minute, burst)| Bucket { key: self.server.clone(), requests_per_minute, burst })
            .into_iter()
            .collect();
        // Each caller its own bucket; an unverified name cannot share a verified subject's.
        if let Some((i, CallerRule { rate_limit: Some(rate), .. })) = self.rule_for(caller) {
            let who =
                if caller.verified { format!("sub:{}", caller.subject) } else { format!("name:{}", caller.subject) };
            buckets.push(Bucket {
                key: format!("{}/callers[{i}]/{who}", self.server),
                requests_per_minute: rate.requests_per_minute,
                burst: rate.burst.unwrap_or(rate.requests_per_minute),
            });
        }
        Decision::Allow(buckets)
    }

    /// The server-wide lists' refusal, if any.
    fn server_refusal(&self, tool: &str) -> Option<String> {
        if let Some(pattern) = self.denied_by(tool) {
            return Some(format!(
                "tool {tool:?} is denied on server {:?} by spec.tools.denyList entry {pattern:?}",
                self.server
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| glob::matches(p, tool)) {
            return Some(format!(
                "tool {tool:?} is not in spec.tools.allowList of server {:?} (allowed: {})",
                self.server,
                self.allow.join(", ")
            ));
        }
        None
    }
}

/// What an unconfigured policy answers: fail closed.
pub fn unconfigured() -> Decision {
    Decision::Deny("the tool policy was not configured; calls are refused until it is".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANYONE: Caller = Caller { verified: false, subject: "", client_id: "", scopes: &[], groups: &[] };

    fn policy(pairs: &[(&str, &str)]) -> Result<ToolPolicy, String> {
        ToolPolicy::from_config(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn allow_list_admits_only_listed_tools() {
        let p = policy(&[("server", "github-tools"), ("allow", "create_issue"), ("allow", "list_*")]).unwrap();
        assert_eq!(p.check("create_issue", &ANYONE), Decision::Allow(vec![]));
        assert_eq!(p.check("list_issues", &ANYONE), Decision::Allow(vec![]));
        let Decision::Deny(why) = p.check("delete_repo", &ANYONE) else { panic!() };
        assert!(why.contains("not in spec.tools.allowList of server \"github-tools\""), "{why}");
        assert!(!p.visible("delete_repo", &ANYONE) && p.visible("list_prs", &ANYONE));
    }

    #[test]
    fn deny_list_wins_over_allow_list() {
        let p = policy(&[("allow", "*"), ("deny", "delete_*")]).unwrap();
        assert!(matches!(p.check("delete_repo", &ANYONE), Decision::Deny(_)));
        assert!(!p.visible("delete_repo", &ANYONE));
        assert_eq!(p.check("read", &ANYONE), Decision::Allow(vec![]));
    }

    #[test]
    fn rate_limit_names_the_servers_bucket() {
        let p = policy(&[("server", "s"), ("requests-per-minute", "30")]).unwrap();
        assert_eq!(
            p.check("t", &ANYONE),
            Decision::Allow(vec![Bucket { key: "s".into(), requests_per_minute: 30, burst: 30 }])
        );
        let p = policy(&[("server", "s"), ("requests-per-minute", "30"), ("burst", "5")]).unwrap();
        assert_eq!(
            p.check("t", &ANYONE),
            Decision::Allow(vec![Bucket { key: "s".into(), requests_per_minute: 30, burst: 5 }])
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_the_key() {
        assert!(policy(&[("requests-per-minute", "0")]).unwrap_err().starts_with("requests-per-minute"));
        assert!(policy(&[("burst", "3")]).unwrap_err().starts_with("burst"));
        assert!(policy(&[("alow", "x")]).unwrap_err().contains("unknown configuration key \"alow\""));
    }

    #[test]
    fn caller_rules_narrow_the_lists_per_caller_and_give_each_caller_a_bucket() {
        let rules = r#"[
            {"groups": ["admins"]},
            {"groups": ["readers"], "allowList": ["get_*"], "rateLimit": {"requestsPerMinute": 6, "burst": 2}},
            {"subjects": ["svc-*"], "scopes": ["tools:write"], "denyList": ["delete_*"]}
        ]"#;
        let p = policy(&[("server", "s"), ("deny", "drop_*"), ("callers", rules)]).unwrap();
        let admins = ["admins".to_string()];
        let readers = ["readers".to_string()];
        let write = ["tools:write".to_string()];
        let admin = Caller { verified: true, subject: "ann", groups: &admins, ..ANYONE };
        let reader = Caller { verified: true, subject: "bob", groups: &readers, ..ANYONE };
        let service = Caller { verified: true, subject: "svc-ci", scopes: &write, ..ANYONE };
        // The server's own denyList holds for everyone, admins included.
        assert!(matches!(p.check("drop_all", &admin), Decision::Deny(w) if w.contains("spec.tools.denyList")));
        assert_eq!(p.check("delete_x", &admin), Decision::Allow(vec![]));
        let Decision::Deny(why) = p.check("delete_x", &reader) else { panic!() };
        assert!(why.contains("spec.tools.callers[1].allowList") && why.contains("caller \"bob\""), "{why}");
        assert!(p.visible("get_x", &reader) && !p.visible("delete_x", &reader));
        assert_eq!(
            p.check("get_x", &reader),
            Decision::Allow(vec![Bucket { key: "s/callers[1]/sub:bob".into(), requests_per_minute: 6, burst: 2 }])
        );
        assert!(matches!(p.check("delete_x", &service), Decision::Deny(w) if w.contains("callers[2].denyList")));
        // A caller no rule matches gets nothing; an unverified one cannot claim a group or subject.
        let nobody = Caller { verified: true, subject: "eve", ..ANYONE };
        // Resources and prompts: the caller must match an entry, whatever its tool lists say.
        assert!(p.offerings_refusal(&nobody).is_some_and(|w| w.contains("resources and prompts")));
        assert!(p.offerings_refusal(&reader).is_none() && p.offerings_refusal(&admin).is_none());
        assert!(policy(&[("server", "s")]).unwrap().offerings_refusal(&nobody).is_none(), "no callers: everyone");
        assert!(
            matches!(p.check("get_x", &nobody), Decision::Deny(w) if w.contains("matches no entry of spec.tools.callers"))
        );
        let forged = Caller { verified: false, subject: "svc-ci", groups: &admins, scopes: &write, ..ANYONE };
        assert!(matches!(p.check("get_x", &forged), Decision::Deny(w) if w.contains("unverified caller")));
        assert!(!p.visible("get_x", &forged));
    }

    #[test]
    fn a_rule_without_matchers_is_the_catch_all_for_every_caller() {
        let p = policy(&[("server", "s"), ("callers", r#"[{"groups": ["a"]}, {"allowList": ["ping"]}]"#)]).unwrap();
        assert!(p.visible("ping", &ANYONE) && !p.visible("other", &ANYONE));
        assert!(policy(&[("callers", r#"[{"group": ["a"]}]"#)]).unwrap_err().contains("unknown field `group`"));
        let zero = policy(&[("callers", r#"[{"rateLimit": {"requestsPerMinute": 0}}]"#)]).unwrap_err();
        assert!(zero.starts_with("callers[0].rateLimit"), "{zero}");
    }
}
