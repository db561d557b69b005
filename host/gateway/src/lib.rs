//! Hangar core: one Streamable HTTP MCP endpoint in front of many MCP servers. Aggregates
//! their tools (`<server>__<tool>`), enforces each server's tool policy (a plugin) and rate
//! limit, balances group calls with a strategy plugin and fails over between members. Backends
//! are local stdio processes or remote Streamable HTTP endpoints, of either protocol generation.
//! Builds without the operator and without any Kubernetes client.

pub mod client;
pub mod families;
pub mod gateway;
pub mod listen;
pub mod metrics;
pub mod openmetrics;
pub mod param_headers;
pub mod parse_budget;
pub mod protocol;
pub mod routing;
pub mod servers;

pub use gateway::{Gateway, SEPARATOR};
