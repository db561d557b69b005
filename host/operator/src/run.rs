//! The controllers `hangar operator` runs: MCPServers (and the Deployments they own), and
//! MCPServerGroups (again whenever an MCPServer of their namespace changes: labels or state),
//! and MCPDiscoverySources (on change and every refreshInterval).

use std::sync::Arc;

use hangar_api::{MCPServer, MCPServerGroup};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, reflector::ObjectRef, watcher},
};
use tokio_stream::StreamExt;

use crate::{
    core::CoreClient,
    group,
    metrics::Metrics,
    server::{self, Context},
    workload::Settings,
};

/// Runs until the process is stopped.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    core: Option<CoreClient>,
    plugins: hangar_plugin_runtime::PluginRuntime,
) {
    let reporter = kube::runtime::events::Reporter {
        controller: "hangar-operator".into(),
        instance: std::env::var("HOSTNAME").ok(),
    };
    let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
    if let Some(core) = core.clone() {
        // Wake-ups arrive as core's events; a broken stream is followed again after a pause.
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let followed = core
                    .follow_wake_ups(|server| {
                        let client = client.clone();
                        async move {
                            if let Err(e) = server::wake(&client, &server).await {
                                tracing::warn!(server, "wake-up failed: {e}");
                            }
                        }
                    })
                    .await;
                if let Err(e) = followed {
                    tracing::warn!("core's event stream: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        metrics,
        core,
        plugins: Some(plugins),
        recorder: Some(recorder),
    });
    let servers = Api::<MCPServer>::all(client.clone());
    if let Err(e) = servers.list(&kube::api::ListParams::default().limit(1)).await {
        tracing::error!("cannot list MCPServers ({e}); are the CRDs installed? kubectl apply -f crds/");
    }
    let server_outcomes = Controller::new(servers.clone(), watcher::Config::default())
        .owns(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .shutdown_on_signal()
        .run(server::reconcile, server::error_policy, ctx.clone());

    let groups = Controller::new(Api::<MCPServerGroup>::all(client.clone()), watcher::Config::default());
    let known_groups = groups.store();
    let group_outcomes = groups
        .watches(servers, watcher::Config::default(), move |server: MCPServer| {
            let namespace = server.namespace();
            known_groups
                .state()
                .into_iter()
                .filter(|g| g.namespace() == namespace)
                .map(|g| ObjectRef::from_obj(&*g))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(group::reconcile, group::error_policy, ctx.clone());

    let discovery_outcomes =
        Controller::new(Api::<hangar_api::MCPDiscoverySource>::all(client.clone()), watcher::Config::default())
            .shutdown_on_signal()
            .run(crate::discovery::reconcile, crate::discovery::error_policy, ctx);

    tokio::pin!(server_outcomes);
    tokio::pin!(group_outcomes);
    tokio::pin!(discovery_outcomes);
    let mut outcomes = server_outcomes
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        .merge(group_outcomes.map(|r| r.map(|_| ()).map_err(|e| e.to_string())))
        .merge(discovery_outcomes.map(|r| r.map(|_| ()).map_err(|e| e.to_string())));
    while let Some(outcome) = outcomes.next().await {
        if let Err(e) = outcome {
            tracing::debug!("reconcile: {e}");
        }
    }
}
