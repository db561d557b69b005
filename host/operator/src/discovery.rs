//! The MCPDiscoverySource reconciler: reads the source (a ConfigMap's `providers.yaml`; or, in
//! namespaces matching the selector, ConfigMaps labelled `mcp-hangar.io/providers` and Services
//! annotated `mcp-hangar.io/mcp-server`), hands the raw documents to the discovery plugin, and
//! applies the MCPServers it returns, labelled as the source's. Authoritative prunes the
//! source's servers that were not found again; Additive never deletes. A parse error keeps the
//! last good set and shows the error.

use std::{collections::BTreeSet, sync::Arc};

use hangar_api::{DiscoveryMode, MCPDiscoverySource, MCPDiscoverySourceStatus, MCPServer, SourceType, labels};
use hangar_plugin_runtime::{DiscoveryPlugin, Document, SourceKind};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace, Service},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;

use crate::server::{Context, Error, condition_of, measured};

/// Field manager of the MCPServers discovery applies.
pub const MANAGER: &str = "hangar-discovery";
/// Namespaces Namespace discovery skips unless the selector names them.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

pub async fn reconcile(source: Arc<MCPDiscoverySource>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "MCPDiscoverySource", apply(&source, &ctx)).await
}

pub fn error_policy(source: Arc<MCPDiscoverySource>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(source = %source.name_any(), %error, "discovery failed; retrying");
    Action::requeue(std::time::Duration::from_secs(30))
}

/// `matchLabels` of a selector as the API's `labelSelector` parameter (expressions too).
fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

async fn documents(source: &MCPDiscoverySource, ctx: &Context) -> Result<(SourceKind, Vec<Document>), String> {
    let namespace = source.namespace().unwrap_or_default();
    let spec = &source.spec;
    match spec.source_type {
        SourceType::ConfigMap => {
            let reference = spec.config_map_ref.as_ref().ok_or("spec.configMapRef: required when type is ConfigMap")?;
            let ns = reference.namespace.clone().unwrap_or(namespace);
            let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&reference.name)
                .await
                .map_err(|e| format!("reading ConfigMap {ns}/{}: {e}", reference.name))?
                .ok_or_else(|| format!("spec.configMapRef: ConfigMap {ns}/{} does not exist", reference.name))?;
            let content = cm.data.as_ref().and_then(|d| d.get(&reference.key)).ok_or_else(|| {
                format!("spec.configMapRef.key: ConfigMap {ns}/{} has no key {:?}", reference.name, reference.key)
            })?;
            let document = Document {
                origin: format!("configmap/{ns}/{}", reference.name),
                namespace: ns,
                name: reference.name.clone(),
                key: reference.key.clone(),
                content: content.clone(),
            };
            Ok((SourceKind::ConfigMap, vec![document]))
        }
        SourceType::Namespace => {
            let selector =
                spec.namespace_selector.as_ref().ok_or("spec.namespaceSelector: required when type is Namespace")?;
            let selector_text = selector_string(selector);
            let named: Vec<&String> = selector.match_labels.iter().flatten().map(|(_, v)| v).collect();
            let namespaces = Api::<Namespace>::all(ctx.client.clone())
                .list(&ListParams::default().labels(&selector_text))
                .await
                .map_err(|e| format!("listing namespaces: {e}"))?;
            let mut out = Vec::new();
            for ns in namespaces.items.iter().map(|n| n.name_any()) {
                if SYSTEM_NAMESPACES.contains(&ns.as_str()) && !named.contains(&&ns) {
                    continue;
                }
                let cms = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                    .list(&ListParams::default().labels(labels::PROVIDERS))
                    .await
                    .map_err(|e| format!("listing ConfigMaps in {ns}: {e}"))?;
                for cm in cms.items {
                    for (key, content) in cm.data.clone().unwrap_or_default() {
                        out.push(Document {
                            origin: format!("configmap/{ns}/{}", cm.name_any()),
                            namespace: ns.clone(),
                            name: cm.name_any(),
                            key,
                            content,
                        });
                    }
                }
                let services = Api::<Service>::namespaced(ctx.client.clone(), &ns)
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| format!("listing Services in {ns}: {e}"))?;
                for svc in services.items.iter().filter(|s| s.annotations().contains_key(labels::ANNOTATION_MCP_SERVER))
                {
                    let ports: Vec<_> = svc
                        .spec
                        .iter()
                        .flat_map(|s| s.ports.iter().flatten())
                        .map(|p| json!({"name": p.name, "port": p.port}))
                        .collect();
                    out.push(Document {
                        origin: format!("service/{ns}/{}", svc.name_any()),
                        namespace: ns.clone(),
                        name: svc.name_any(),
                        key: String::new(),
                        content: json!({"name": svc.name_any(), "namespace": ns, "annotations": svc.annotations(), "labels": svc.labels(), "ports": ports}).to_string(),
                    });
                }
            }
            Ok((SourceKind::Namespace, out))
        }
    }
}

async fn apply(source: &MCPDiscoverySource, ctx: &Context) -> Result<Action, Error> {
    let namespace = source.namespace().ok_or_else(|| Error::NoNamespace(source.name_any()))?;
    let name = source.name_any();
    let previous = source.status.clone().unwrap_or_default();
    let requeue = Action::requeue(source.spec.refresh_interval.as_std().max(std::time::Duration::from_secs(5)));
    let found = match found_servers(source, ctx).await {
        Ok(found) => found,
        Err(message) => {
            ctx.event(&source.object_ref(&()), true, "SourceUnreadable", message.clone()).await;
            // Keep the last good set: nothing is applied or pruned; the error is shown.
            let mut status = previous.clone();
            status.conditions = vec![condition_of(
                &previous.conditions,
                "Synced",
                false,
                "SourceUnreadable",
                &message,
                source.metadata.generation,
            )];
            write_status(source, ctx, &previous, status).await?;
            return Ok(requeue);
        }
    };
    let params = PatchParams::apply(MANAGER).force();
    let mut names = BTreeSet::new();
    for server in &found {
        let ns = server.namespace().unwrap_or_else(|| namespace.clone());
        Api::<MCPServer>::namespaced(ctx.client.clone(), &ns)
            .patch(&server.name_any(), &params, &Patch::Apply(server))
            .await?;
        names.insert(format!("{ns}/{}", server.name_any()));
    }
    if source.spec.mode == DiscoveryMode::Authoritative {
        let owned = Api::<MCPServer>::all(ctx.client.clone())
            .list(&ListParams::default().labels(&format!("{}={name}", labels::DISCOVERED_BY)))
            .await?;
        for server in owned.items {
            let ns = server.namespace().unwrap_or_default();
            if !names.contains(&format!("{ns}/{}", server.name_any())) {
                Api::<MCPServer>::namespaced(ctx.client.clone(), &ns)
                    .delete(&server.name_any(), &DeleteParams::default())
                    .await?;
            }
        }
    }
    let message = format!("{} servers found", names.len());
    let status = MCPDiscoverySourceStatus {
        discovered_count: names.len() as i32,
        discovered: names.into_iter().collect(),
        last_sync_time: Some(Time(Timestamp::now())),
        observed_generation: source.metadata.generation,
        conditions: vec![condition_of(
            &previous.conditions,
            "Synced",
            true,
            "Synced",
            &message,
            source.metadata.generation,
        )],
    };
    write_status(source, ctx, &previous, status).await?;
    Ok(requeue)
}

/// The MCPServers the source describes now, or why it could not be read.
async fn found_servers(source: &MCPDiscoverySource, ctx: &Context) -> Result<Vec<MCPServer>, String> {
    let plugins = ctx.plugins.as_ref().ok_or("no plugin runtime in this operator")?;
    let (kind, docs) = documents(source, ctx).await?;
    let parser = source.spec.parser.clone().unwrap_or_else(|| match kind {
        SourceKind::ConfigMap => "configmap".into(),
        SourceKind::Namespace => "namespace".into(),
    });
    let plugin = DiscoveryPlugin::new(plugins, &parser, None).map_err(|e| format!("spec.parser: {e}"))?;
    let definitions = plugin.parse(kind, &docs).map_err(|e| e.to_string())?;
    let template = source.spec.provider_template.clone().unwrap_or_default();
    let source_name = source.name_any();
    definitions
        .into_iter()
        .map(|d| {
            let spec = template.complete(&d.spec_json).map_err(|e| format!("entry {:?}: {e}", d.name))?;
            let mut server = MCPServer::new(&hangar_api::discovered_name(&source_name, &d.name), spec);
            server.metadata = ObjectMeta {
                name: server.metadata.name.clone(),
                namespace: Some(if d.namespace.is_empty() {
                    source.namespace().unwrap_or_default()
                } else {
                    d.namespace.clone()
                }),
                labels: Some(template.labels_for(&source_name, &d.labels)),
                ..Default::default()
            };
            Ok(server)
        })
        .collect()
}

/// Writes the status when it changed; `lastSyncTime` alone does not count as a change.
async fn write_status(
    source: &MCPDiscoverySource,
    ctx: &Context,
    previous: &MCPDiscoverySourceStatus,
    mut status: MCPDiscoverySourceStatus,
) -> Result<(), Error> {
    let mut comparable = status.clone();
    comparable.last_sync_time = previous.last_sync_time.clone();
    if &comparable == previous {
        return Ok(());
    }
    if status.last_sync_time.is_none() {
        status.last_sync_time = previous.last_sync_time.clone();
    }
    Api::<MCPDiscoverySource>::namespaced(ctx.client.clone(), &source.namespace().unwrap_or_default())
        .patch_status(&source.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
