//! Hangar's operator. This first part holds the workloads an MCPServer becomes — a Deployment
//! and a Service with the guide's secure pod defaults — as pure functions of the resource, so
//! the reconciler (next) only compares and applies them.

pub mod workload;
