//! The controller loop `hangar operator` runs: MCPServers, and the Deployments they own.

use std::sync::Arc;

use hangar_api::MCPServer;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    runtime::{Controller, watcher},
};
use tokio_stream::StreamExt;

use crate::{
    core::CoreClient,
    metrics::Metrics,
    server::{self, Context},
    workload::Settings,
};

/// Runs until the process is stopped.
pub async fn run(client: Client, settings: Settings, metrics: Metrics, core: Option<CoreClient>) {
    let ctx = Arc::new(Context { client: client.clone(), settings, metrics, core });
    let servers = Api::<MCPServer>::all(client.clone());
    if let Err(e) = servers.list(&kube::api::ListParams::default().limit(1)).await {
        tracing::error!("cannot list MCPServers ({e}); are the CRDs installed? kubectl apply -f crds/");
    }
    let outcomes = Controller::new(servers, watcher::Config::default())
        .owns(Api::<Deployment>::all(client), watcher::Config::default())
        .shutdown_on_signal()
        .run(server::reconcile, server::error_policy, ctx);
    tokio::pin!(outcomes);
    while let Some(outcome) = outcomes.next().await {
        if let Err(e) = outcome {
            tracing::debug!("reconcile: {e}");
        }
    }
}
