//! Host bindings generated from `wit/`, one module per world.

pub mod strategy {
    wasmtime::component::bindgen!({ path: "../../wit", world: "strategy", additional_derives: [PartialEq, Eq] });
    pub use hangar::plugins::types::{Candidate, PickRequest};

    hangar_plugin_algorithms::impl_member!(Candidate);
}

pub mod policy {
    wasmtime::component::bindgen!({ path: "../../wit", world: "policy", additional_derives: [PartialEq, Eq] });
    pub use hangar::plugins::types::{Call, Decision, RateLimit};
}

pub mod discovery {
    wasmtime::component::bindgen!({ path: "../../wit", world: "discovery", additional_derives: [PartialEq, Eq] });
    pub use hangar::plugins::types::{Document, ParseError, ServerDefinition, SourceKind};
}
