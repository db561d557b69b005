//! The MCPDiscoverySource reconciler: reads the source (a ConfigMap's `providers.yaml`; or, in
//! namespaces matching the selector, ConfigMaps labelled `mcp-hangar.io/providers` and Services
//! annotated `mcp-hangar.io/mcp-server`), hands the raw documents to the discovery plugin, and
//! applies the MCPServers it returns, labelled as the source's. Authoritative prunes the
//! source's servers that were not found again; Additive never deletes. A parse error keeps the
//! last good set and shows the error.

use std::{collections::BTreeSet, sync::Arc};

use hangar_api::{
    DiscoveryMode, MCPDiscoverySource, MCPDiscoverySourceSpec, MCPDiscoverySourceStatus, MCPServer, RefusedEntry,
    SourceType, labels,
};
use hangar_plugin_runtime::{DiscoveryError, DiscoveryPlugin, Document, PluginRuntime, SourceKind};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace, Service},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams},
    runtime::{controller::Action, reflector::ObjectRef},
};
use serde_json::json;

use crate::server::{Context, Error, condition_of, measured};

/// Field manager of the MCPServers discovery applies.
pub const MANAGER: &str = "hangar-discovery";
/// Namespaces Namespace discovery skips unless the selector names them.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

pub async fn reconcile(source: Arc<MCPDiscoverySource>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "MCPDiscoverySource", &*source, apply(&source, &ctx)).await
}

pub fn error_policy(source: Arc<MCPDiscoverySource>, error: &Error, _ctx: Arc<Context>) -> Action {
    if crate::server::namespace_terminating(error) {
        return Action::requeue(std::time::Duration::from_secs(5));
    }
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
    let found = match read_source(source, ctx).await {
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
    let mut found = found;
    let Some((servers, foreign)) = not_over_others(std::mem::take(&mut found.servers), ctx, &name, &namespace).await
    else {
        // Nothing is applied before the operator knows which MCPServers exist.
        return Ok(Action::requeue(STORE_WAIT));
    };
    found.refused.extend(foreign);
    for server in &servers {
        let ns = server.namespace().unwrap_or_else(|| namespace.clone());
        // A second of slack for the API server's clock.
        let asked = Timestamp::now().as_second() - 1;
        let applied = Api::<MCPServer>::namespaced(ctx.client.clone(), &ns)
            .patch(&server.name_any(), &params, &Patch::Apply(server))
            .await?;
        let key = format!("{ns}/{}", server.name_any());
        // Created by this apply: the API server stamped it now (seconds), and this process has
        // not recorded that object yet (a sync that failed after it, and ran again, has).
        let created = applied.metadata.creation_timestamp.as_ref().is_some_and(|t| t.0.as_second() >= asked);
        let uid = applied.metadata.uid.clone().unwrap_or_default();
        if created && ANNOUNCED.lock().unwrap().insert(uid) {
            audit_discovery("created", &namespace, &name, &key);
        }
        names.insert(key);
    }
    if source.spec.mode == DiscoveryMode::Authoritative {
        // Owned means this source, in this namespace: a same-named source elsewhere owns others.
        let selector = format!("{}={name},{}={namespace}", labels::DISCOVERED_BY, labels::DISCOVERED_BY_NAMESPACE);
        let owned = Api::<MCPServer>::all(ctx.client.clone()).list(&ListParams::default().labels(&selector)).await?;
        for server in owned.items {
            let ns = server.namespace().unwrap_or_default();
            // A server whose document could not be read this time is kept, like the whole set
            // is kept when the source cannot be read.
            let key = format!("{ns}/{}", server.name_any());
            if server.annotations().get(labels::DISCOVERED_FROM).is_some_and(|o| found.unreadable.contains(o)) {
                names.insert(key);
                continue;
            }
            if names.contains(&key) {
                continue;
            }
            Api::<MCPServer>::namespaced(ctx.client.clone(), &ns)
                .delete(&server.name_any(), &DeleteParams::default())
                .await?;
            ANNOUNCED.lock().unwrap().remove(&server.uid().unwrap_or_default());
            audit_discovery("deleted", &namespace, &name, &key);
        }
    }
    let refused_count = found.refused.len() as i32;
    let shown = found.refused.iter().take(hangar_api::MAX_REFUSED_SHOWN);
    let changed = previous.refused_count != refused_count || !shown.eq(previous.refused.iter());
    if changed && let Some(first) = found.refused.first() {
        let entry = if first.entry.is_empty() { String::new() } else { format!(" entry {:?}", first.entry) };
        let message = format!("{refused_count} refused; first: {}{entry}: {}", first.origin, first.reason);
        ctx.event(&source.object_ref(&()), true, "EntriesRefused", message).await;
    }
    let message = match refused_count {
        0 => format!("{} servers found", names.len()),
        n => format!("{} servers found, {n} entries or documents refused (see status.refused)", names.len()),
    };
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
        refused: found.refused.into_iter().take(hangar_api::MAX_REFUSED_SHOWN).collect(),
        refused_count,
    };
    write_status(source, ctx, &previous, status).await?;
    Ok(requeue)
}

/// The uids of discovered MCPServers this process recorded as created: a sync that ran again in
/// the same second must not record one twice.
static ANNOUNCED: std::sync::LazyLock<std::sync::Mutex<BTreeSet<String>>> = std::sync::LazyLock::new(Default::default);

/// A discovered MCPServer created or deleted, in the audit log.
fn audit_discovery(decision: &'static str, namespace: &str, source: &str, server: &str) {
    if hangar_telemetry::audit::enabled() {
        hangar_telemetry::audit::log(hangar_telemetry::audit::Record {
            event: "discovery",
            decision,
            request: Some(format!("MCPDiscoverySource {namespace}/{source}")),
            server: Some(server.to_string()),
            ..Default::default()
        });
    }
}

/// What one read of a source yields: the servers to apply, the documents that could not be
/// parsed (their servers are kept as they are), and every refusal.
#[derive(Debug, Default)]
pub struct Found {
    pub servers: Vec<MCPServer>,
    pub unreadable: BTreeSet<String>,
    pub refused: Vec<RefusedEntry>,
}

/// The MCPServers the source describes now, or why it could not be read at all.
/// Splits what a source found into what it may apply and what it may not: an MCPServer of the
/// same name that this source did not create (someone's own, or another source's) is left
/// alone — never applied over, so never labelled as this source's, so never pruned by it.
async fn not_over_others(
    servers: Vec<MCPServer>,
    ctx: &Context,
    source: &str,
    source_namespace: &str,
) -> Option<(Vec<MCPServer>, Vec<RefusedEntry>)> {
    let Some(known) = &ctx.servers else { return Some((servers, Vec::new())) };
    // The cache is filled by the MCPServer controller's first list; until then nobody knows (a
    // short wait: a shutdown waits for this reconcile).
    if !matches!(tokio::time::timeout(STORE_WAIT, known.wait_until_ready()).await, Ok(Ok(()))) {
        return None;
    }
    let mut ours = Vec::with_capacity(servers.len());
    let mut refused = Vec::new();
    for server in servers {
        let ns = server.namespace().unwrap_or_else(|| source_namespace.to_string());
        let existing = known.get(&ObjectRef::<MCPServer>::new(&server.name_any()).within(&ns));
        let by_us = |e: &MCPServer| {
            e.labels().get(labels::DISCOVERED_BY).map(String::as_str) == Some(source)
                && e.labels().get(labels::DISCOVERED_BY_NAMESPACE).map(String::as_str) == Some(source_namespace)
        };
        match existing {
            Some(e) if !by_us(&e) => refused.push(RefusedEntry {
                origin: server.annotations().get(labels::DISCOVERED_FROM).cloned().unwrap_or_default(),
                entry: server.name_any().strip_prefix(&format!("{source}-")).unwrap_or_default().to_string(),
                reason: format!(
                    "metadata.name: MCPServer {ns}/{} exists and was not created by this source; it is left alone (rename the entry)",
                    server.name_any()
                ),
            }),
            _ => ours.push(server),
        }
    }
    Some((ours, refused))
}

/// How long discovery waits for the operator's cache of MCPServers, and when it tries again.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn read_source(source: &MCPDiscoverySource, ctx: &Context) -> Result<Found, String> {
    let plugins = ctx.plugins.as_ref().ok_or("no plugin runtime in this operator")?;
    let (kind, docs) = documents(source, ctx).await?;
    let (plugins, spec, namespace, name) =
        (plugins.clone(), source.spec.clone(), source.namespace().unwrap_or_default(), source.name_any());
    let document_count = docs.len();
    // Parsing a large source takes a while: off the async workers.
    let found = tokio::task::spawn_blocking(move || discover(&plugins, &spec, &namespace, &name, kind, &docs))
        .await
        .map_err(|e| format!("the discovery parser stopped: {e}"))??;
    // Nothing readable at all is the source being unreadable: keep the last good set.
    if document_count > 0 && found.unreadable.len() == document_count {
        let first = &found.refused[0];
        return Err(format!("{}: {}", first.origin, first.reason));
    }
    Ok(found)
}

/// Parses each document on its own (one bad or huge document fails alone) and admits each entry
/// by the source's rules (`MCPDiscoverySourceSpec::admit`). Shared by the operator and `hangar run`.
pub fn discover(
    plugins: &PluginRuntime,
    spec: &MCPDiscoverySourceSpec,
    source_namespace: &str,
    source_name: &str,
    kind: SourceKind,
    documents: &[Document],
) -> Result<Found, String> {
    let parser = spec.parser.clone().unwrap_or_else(|| match kind {
        SourceKind::ConfigMap => "configmap".into(),
        SourceKind::Namespace => "namespace".into(),
    });
    let plugin = DiscoveryPlugin::new(plugins, &parser, None).map_err(|e| format!("spec.parser: {e}"))?;
    let template = spec.provider_template.clone().unwrap_or_default();
    let mut found = Found::default();
    let mut seen = BTreeSet::new();
    for document in documents {
        let refuse = |entry: &str, reason: String| RefusedEntry {
            origin: document.origin.clone(),
            entry: entry.to_string(),
            reason,
        };
        let definitions = match plugin.parse(kind, std::slice::from_ref(document)) {
            Ok(definitions) => definitions,
            Err(e) => {
                let reason = match e {
                    DiscoveryError::Parse { message, .. } => message,
                    other => other.to_string(),
                };
                found.unreadable.insert(document.origin.clone());
                found.refused.push(refuse("", reason));
                continue;
            }
        };
        let home = spec.home_namespace(source_namespace, &document.namespace);
        for d in definitions {
            let admitted = match spec.admit(home, &d.namespace, &d.spec_json) {
                Ok(admitted) => admitted,
                Err(reason) => {
                    found.refused.push(refuse(&d.name, reason));
                    continue;
                }
            };
            let name = hangar_api::discovered_name(source_name, &d.name);
            if !hangar_api::labels::is_dns_label(&name) {
                found.refused.push(refuse(
                    &d.name,
                    format!(
                        "the server name {name:?} is not a DNS label (at most 63 characters); shorten the entry's name"
                    ),
                ));
                continue;
            }
            if !seen.insert((admitted.namespace.clone(), name.clone())) {
                found.refused.push(refuse(
                    &d.name,
                    format!("another document of this source already defines {name:?}; rename one entry"),
                ));
                continue;
            }
            let mut server = MCPServer::new(&name, admitted.spec);
            server.metadata = ObjectMeta {
                name: Some(name),
                namespace: Some(admitted.namespace),
                labels: Some(template.labels_for(source_namespace, source_name, &d.labels)),
                annotations: Some([(labels::DISCOVERED_FROM.to_string(), document.origin.clone())].into()),
                ..Default::default()
            };
            found.servers.push(server);
        }
    }
    Ok(found)
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
