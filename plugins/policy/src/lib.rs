//! The default `policy`: allowList / denyList globs, one rate-limit bucket per server and the
//! rules per caller of `spec.tools.callers`. Fails closed: until `configure` succeeds, every call
//! is denied and no tool is listed.

wit_bindgen::generate!({ path: "../../wit", world: "policy" });

use std::cell::RefCell;

use exports::hangar::plugins::tool_policy::{Call, Caller, Decision, Guest};
use hangar::plugins::types::RateLimit;
use hangar_plugin_algorithms::policy::{self, CallerView, ToolPolicy};

thread_local! {
    static POLICY: RefCell<Option<ToolPolicy>> = const { RefCell::new(None) };
}

struct Plugin;

impl Guest for Plugin {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = ToolPolicy::from_config(&config);
        POLICY.with_borrow_mut(|p| *p = parsed.as_ref().ok().cloned());
        parsed.map(|_| ())
    }

    fn check(call: Call) -> Decision {
        let decision = POLICY.with_borrow(|p| {
            p.as_ref().map_or_else(policy::unconfigured, |p| p.check(&call.tool, &call.caller.view()))
        });
        match decision {
            policy::Decision::Allow(buckets) => Decision::Allow(
                buckets
                    .into_iter()
                    .map(|b| RateLimit { key: b.key, requests_per_minute: b.requests_per_minute, burst: b.burst })
                    .collect(),
            ),
            policy::Decision::Deny(why) => Decision::Deny(why),
        }
    }

    fn filter_tools(tools: Vec<String>, caller: Caller) -> Vec<String> {
        let caller = caller.view();
        POLICY.with_borrow(|p| match p {
            Some(p) => tools.into_iter().filter(|t| p.visible(t, &caller)).collect(),
            None => Vec::new(),
        })
    }
}

hangar_plugin_algorithms::impl_caller_view!(Caller);

export!(Plugin);
