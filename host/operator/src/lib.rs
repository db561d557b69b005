//! Hangar's operator. This first part holds what the reconcilers decide, as pure functions: the
//! workloads an MCPServer becomes (a Deployment and a Service with the guide's secure pod
//! defaults), its state from what Kubernetes and core show, and the guide's metrics. The
//! reconcilers (next) compare, apply and report them.

pub mod core;
pub mod discovery;
pub mod group;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod run;
pub mod server;
pub mod status;
pub mod workload;
