//! Built against the previous WIT, hangar:plugins@0.1.0, so that the host's adapter is exercised.
//! A policy that answers too much, as `configure(mode=...)` says: huge-deny (a 2 MiB deny
//! reason), invent-tools (2,000 tool names nobody offered), or good (allow, show all).

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "policy" });

use std::cell::RefCell;

use exports::hangar::plugins::tool_policy::{Call, Decision, Guest};

thread_local! {
    static MODE: RefCell<String> = RefCell::new(String::from("good"));
}

struct Plugin;

impl Guest for Plugin {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        for (k, v) in config {
            if k == "mode" {
                MODE.with_borrow_mut(|m| *m = v);
            }
        }
        Ok(())
    }

    fn check(_call: Call) -> Decision {
        match MODE.with_borrow(|m| m.clone()).as_str() {
            "huge-deny" => Decision::Deny("no".repeat(1 << 20)),
            _ => Decision::Allow(Vec::new()),
        }
    }

    fn filter_tools(tools: Vec<String>) -> Vec<String> {
        match MODE.with_borrow(|m| m.clone()).as_str() {
            "invent-tools" => (0..2_000).map(|i| format!("invented_{i}")).collect(),
            _ => tools,
        }
    }
}

export!(Plugin);
