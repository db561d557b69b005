//! The controllers `hangar operator` runs: MCPServers (and the Deployments they own), and
//! MCPServerGroups (again whenever an MCPServer of their namespace changes: labels or state),
//! and MCPDiscoverySources (on change and every refreshInterval).

use std::sync::Arc;

use hangar_api::{MCPDiscoverySource, MCPServer, MCPServerGroup, SourceType};
use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Pod},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef, reflector},
        watcher::{self, watcher},
    },
};
use tokio_stream::StreamExt;

use crate::{
    core::CoreClient,
    group,
    metrics::Metrics,
    server::{self, Context},
    workload::Settings,
};

/// The groups a change of `server` may concern: those of its namespace (its labels may have
/// entered or left their selectors, or its state changed their health).
pub fn groups_to_recheck(groups: &[Arc<MCPServerGroup>], server: &MCPServer) -> Vec<ObjectRef<MCPServerGroup>> {
    groups.iter().filter(|g| g.namespace() == server.namespace()).map(|g| ObjectRef::from_obj(&**g)).collect()
}

/// The discovery sources a change of `cm` may concern: ConfigMap sources naming it, and
/// Namespace sources when it carries the providers label (its namespace may match their selector).
pub fn sources_to_reread(sources: &[Arc<MCPDiscoverySource>], cm: &ConfigMap) -> Vec<ObjectRef<MCPDiscoverySource>> {
    let providers = cm.labels().contains_key(hangar_api::labels::PROVIDERS);
    sources
        .iter()
        .filter(|s| match (&s.spec.source_type, &s.spec.config_map_ref) {
            (SourceType::ConfigMap, Some(r)) => {
                r.name == cm.name_any() && r.namespace.as_ref().or(s.namespace().as_ref()) == cm.namespace().as_ref()
            }
            (SourceType::Namespace, _) => providers,
            _ => false,
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// Runs until the process is stopped (SIGTERM or Ctrl-C: reconciles in progress finish first).
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
                    .follow_wake_ups(|namespace, server| {
                        let client = client.clone();
                        // Each on its own: one waiting for its Deployment holds up no other.
                        tokio::spawn(async move {
                            if let Err(e) = server::wake(&client, &namespace, &server).await {
                                tracing::warn!(namespace, server, "wake-up failed: {e}");
                            }
                        });
                        std::future::ready(())
                    })
                    .await;
                if let Err(e) = followed {
                    tracing::warn!("core's event stream: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
    }
    // HPAs: cached for the reconciler (a scaled Deployment gets no replicas from us) and a
    // trigger, so a new HPA is respected at once; the cache is written before the trigger fires.
    let (autoscalers, writer) = reflector::store::<HorizontalPodAutoscaler>();
    let autoscaler_changes =
        reflector(writer, watcher(Api::<HorizontalPodAutoscaler>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .touched_objects();
    // The EndpointSlices of servers' Services (they carry the Service's labels): cached for the
    // registration with core, and a trigger, so core hears of a pod that became ready or left.
    let (endpoint_slices, writer) = reflector::store::<EndpointSlice>();
    let slice_changes = reflector(
        writer,
        watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{}=true", hangar_api::labels::MCP_SERVER)),
        ),
    )
    .default_backoff()
    .touched_objects();
    let servers = Api::<MCPServer>::all(client.clone());
    if let Err(e) = servers.list(&kube::api::ListParams::default().limit(1)).await {
        tracing::error!("cannot list MCPServers ({e}); are the CRDs installed? kubectl apply -f crds/");
    }
    let server_controller = Controller::new(servers.clone(), watcher::Config::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        metrics,
        core,
        plugins: Some(plugins),
        recorder: Some(recorder),
        autoscalers: Some(autoscalers),
        servers: Some(server_controller.store()),
        endpoint_slices: Some(endpoint_slices),
    });
    let server_outcomes = server_controller
        .owns(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .watches_stream(autoscaler_changes, |hpa: HorizontalPodAutoscaler| server::scaled_server(&hpa))
        .watches_stream(slice_changes, |slice: EndpointSlice| server::sliced_server(&slice))
        // A pod's state (a crash loop, an image that cannot be pulled) shows in status at once.
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(&format!("{}=true", hangar_api::labels::MCP_SERVER)),
            |pod: Pod| server::pod_server(&pod),
        )
        .shutdown_on_signal()
        .run(server::reconcile, server::error_policy, ctx.clone());

    let groups = Controller::new(Api::<MCPServerGroup>::all(client.clone()), watcher::Config::default());
    let known_groups = groups.store();
    let group_outcomes = groups
        .watches(servers, watcher::Config::default(), move |server: MCPServer| {
            groups_to_recheck(&known_groups.state(), &server)
        })
        .shutdown_on_signal()
        .run(group::reconcile, group::error_policy, ctx.clone());

    let sources = Controller::new(Api::<MCPDiscoverySource>::all(client.clone()), watcher::Config::default());
    let known_sources = sources.store();
    let discovery_outcomes = sources
        .watches(Api::<ConfigMap>::all(client.clone()), watcher::Config::default(), move |cm: ConfigMap| {
            sources_to_reread(&known_sources.state(), &cm)
        })
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn group(namespace: &str, name: &str) -> Arc<MCPServerGroup> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": {"matchLabels": {"team": "a"}}},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_server_change_rechecks_the_groups_of_its_namespace_only() {
        let groups = [group("tools", "search"), group("tools", "notes"), group("other", "search")];
        let server: MCPServer = serde_json::from_value(json!({
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": "s1", "namespace": "tools", "labels": {"team": "b"}},
            "spec": {"mode": "remote", "endpoint": "https://x/mcp"},
        }))
        .unwrap();
        // Its labels match no selector now: the groups still look (it may have just left them).
        let rechecked = groups_to_recheck(&groups, &server);
        let names: Vec<_> = rechecked.iter().map(|r| (r.namespace.clone().unwrap(), r.name.clone())).collect();
        assert_eq!(names, [("tools".to_string(), "search".to_string()), ("tools".into(), "notes".into())]);
    }

    fn source(namespace: &str, name: &str, spec: serde_json::Value) -> Arc<MCPDiscoverySource> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_configmap_change_rereads_the_sources_that_read_it() {
        let sources = [
            source("mcp-system", "here", json!({"type": "ConfigMap", "configMapRef": {"name": "providers"}})),
            source(
                "mcp-system",
                "there",
                json!({"type": "ConfigMap", "configMapRef": {"name": "providers", "namespace": "team"}}),
            ),
            source("mcp-system", "other", json!({"type": "ConfigMap", "configMapRef": {"name": "unrelated"}})),
            source(
                "mcp-system",
                "namespaces",
                json!({"type": "Namespace", "namespaceSelector": {"matchLabels": {"mcp": "on"}}}),
            ),
        ];
        let cm = |namespace: &str, labels: serde_json::Value| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": "providers", "namespace": namespace, "labels": labels}}))
                .unwrap()
        };
        let names = |refs: Vec<ObjectRef<MCPDiscoverySource>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(sources_to_reread(&sources, &cm("mcp-system", json!({})))), ["here"]);
        assert_eq!(names(sources_to_reread(&sources, &cm("team", json!({})))), ["there"]);
        let labelled = cm("team-b", json!({"mcp-hangar.io/providers": "true"}));
        assert_eq!(names(sources_to_reread(&sources, &labelled)), ["namespaces"]);
    }
}
