//! Host bindings generated from `wit/` (the current `hangar:plugins@0.2.0`), one module per
//! world, from `wit/v0.3.0/` for the ranker world new in 0.3.0, and from `wit/v0.1.0/` for
//! plugins built against the previous version.

pub mod strategy {
    wasmtime::component::bindgen!({ path: "../../wit", world: "strategy", additional_derives: [PartialEq, Eq] });
    pub use hangar::plugins::types::{Member, MemberSet, PickInputs, PickRequest};

    hangar_plugin_algorithms::impl_member_set!(MemberSet);
}

pub mod policy {
    wasmtime::component::bindgen!({ path: "../../wit", world: "policy", additional_derives: [PartialEq, Eq] });
    pub use hangar::plugins::types::{Call, Caller, Decision, RateLimit};

    hangar_plugin_algorithms::impl_caller_view!(Caller);
}

pub mod discovery {
    wasmtime::component::bindgen!({ path: "../../wit", world: "discovery", additional_derives: [PartialEq, Eq] });
    pub use hangar::plugins::types::{Document, ParseError, ServerDefinition, SourceKind};
}

/// `hangar:plugins@0.3.0`'s new world (`wit/v0.3.0/`).
pub mod ranker {
    wasmtime::component::bindgen!({ path: "../../wit/v0.3.0", world: "ranker" });
    pub use hangar::plugins::search_types::{Candidate, Fields, Query};

    hangar_plugin_algorithms::impl_field_bits!(Fields);
}

/// `hangar:plugins@0.1.0`: the same worlds, before members moved into `configure` and the caller
/// became a record. The host adapts each call (see `world.rs`).
pub mod v0_1_0 {
    pub mod strategy {
        wasmtime::component::bindgen!({ path: "../../wit/v0.1.0", world: "strategy" });
        pub use hangar::plugins::types::{Candidate, PickRequest};
    }

    pub mod policy {
        wasmtime::component::bindgen!({ path: "../../wit/v0.1.0", world: "policy" });
        pub use hangar::plugins::types::{Call, Decision};
    }

    pub mod discovery {
        wasmtime::component::bindgen!({ path: "../../wit/v0.1.0", world: "discovery" });
        pub use hangar::plugins::types::{Document, SourceKind};
    }
}

impl Default for policy::Caller {
    fn default() -> Self {
        Self::unverified("")
    }
}

impl policy::Caller {
    /// A caller known only by the name its MCP client gave (no token was checked).
    pub fn unverified(name: &str) -> Self {
        Self {
            verified: false,
            subject: name.to_string(),
            client_id: String::new(),
            scopes: Vec::new(),
            groups: Vec::new(),
        }
    }
}
