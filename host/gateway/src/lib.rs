//! Hangar core: one Streamable HTTP MCP endpoint in front of many MCP servers. Aggregates
//! their tools (`<server>__<tool>`), enforces each server's tool policy (a plugin) and rate
//! limit, balances group calls with a strategy plugin and fails over between members. Backends
//! are local stdio processes or remote Streamable HTTP endpoints, of either protocol generation.
//! Builds without the operator and without any Kubernetes client.

pub mod admin;
pub mod answer_stream;
pub mod backend;
pub mod catalog;
pub mod client_sessions;
pub mod gateway;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod origin;
pub mod parse_budget;
pub mod protocol;
pub mod ratelimit;
pub mod session;

pub use gateway::{Gateway, SEPARATOR};
