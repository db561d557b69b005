//! `hangar run DIR`: the embedded default. Runs the manifests in DIR on this machine: stdio
//! servers as child processes, remote ones over HTTP, groups and ConfigMap discovery, plugins
//! from DIR/plugins (hot-reloaded), behind one MCP endpoint; applies edits to DIR live.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use hangar_api::{MCPServerGroupSpec, MCPServerSpec, SourceType, labels};
use hangar_gateway::{Gateway, gateway::GroupMember};
use hangar_manifests::Resource;
use hangar_plugin_runtime::{Document, PluginRuntime, RuntimeConfig, SourceKind};

/// What is running, to apply only differences when DIR changes.
#[derive(Default)]
struct Applied {
    servers: BTreeMap<String, DesiredServer>,
    groups: BTreeMap<String, (String, MCPServerGroupSpec, Vec<GroupMember>)>,
}

type Labels = BTreeMap<String, String>;

/// A server as the manifests describe it: its namespace, spec and labels.
#[derive(Clone, PartialEq)]
struct DesiredServer {
    namespace: String,
    spec: MCPServerSpec,
    labels: Labels,
}

/// The servers, groups (with their namespaces) and problems the manifests in `dir` describe.
struct Desired {
    servers: BTreeMap<String, DesiredServer>,
    groups: BTreeMap<String, (String, MCPServerGroupSpec)>,
    problems: Vec<String>,
}

/// Namespace of a manifest's object; `default` as kubectl would say.
fn namespace_of(meta: &kube::api::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

pub fn run(dir: PathBuf, listen: SocketAddr, limits: crate::core_cmd::Limits) -> anyhow::Result<ExitCode> {
    // Flags are checked before anything starts.
    limits.tool_search.settings()?;
    let dir = dir.canonicalize().with_context(|| format!("{}: no such folder", dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(dir, listen, limits))
}

async fn serve(dir: PathBuf, listen: SocketAddr, limits: crate::core_cmd::Limits) -> anyhow::Result<ExitCode> {
    let registry = prometheus::Registry::new();
    let plugins = PluginRuntime::new(RuntimeConfig::default(), &registry).context("starting the plugin runtime")?;
    let plugin_dir = dir.join("plugins");
    let _plugin_watch = if plugin_dir.is_dir() { Some(plugins.watch_dir(&plugin_dir)?) } else { None };
    let gateway = Gateway::new(plugins.clone(), &registry)?;

    let mut applied = Applied::default();
    apply(&gateway, &plugins, &dir, &mut applied);

    // Re-apply when a manifest changes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && hangar_plugin_runtime::is_change(&event)
            && event.paths.iter().any(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        {
            let _ = tx.send(());
        }
    })?;
    notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)?;
    {
        let (gateway, plugins, dir) = (gateway.clone(), plugins.clone(), dir.clone());
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                tracing::info!("manifests changed; applying");
                apply(&gateway, &plugins, &dir, &mut applied);
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    println!("Hangar MCP endpoint: http://{address}/mcp");
    println!("Metrics:             http://{address}/metrics");
    tokio::spawn(say_when_ready(gateway.clone()));
    crate::core_cmd::serve_until_ctrl_c(listener, gateway, registry, crate::core_cmd::api_key(None)?, limits).await?;
    drop(watcher);
    Ok(ExitCode::SUCCESS)
}

/// Prints one line when every server is up (calls made before then wait for their server, up
/// to its startupTimeout); after a minute, names those still not up, once.
async fn say_when_ready(gateway: Arc<Gateway>) {
    let began = std::time::Instant::now();
    let mut warned = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let starting = gateway.starting_servers();
        if starting.is_empty() {
            let servers = gateway.server_names().len();
            let took = began.elapsed().as_secs_f64();
            println!("Ready:               all {servers} servers ready ({took:.1}s after start)");
            tracing::info!(servers, "all servers ready");
            return;
        }
        if !warned && began.elapsed() > Duration::from_secs(60) {
            warned = true;
            let list: Vec<String> = starting.iter().map(|(name, state)| format!("{name} ({state})")).collect();
            tracing::warn!("not up after a minute: {}; calls to them wait up to their startupTimeout", list.join(", "));
        }
    }
}

/// Only the top level of DIR holds manifests (DIR/plugins, node_modules and the like do not).
pub(crate) fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn desired(plugins: &PluginRuntime, dir: &Path) -> Desired {
    let report = hangar_manifests::check_paths(&manifest_files(dir));
    let mut d = Desired { servers: BTreeMap::new(), groups: BTreeMap::new(), problems: Vec::new() };
    d.problems.extend(report.problems.iter().map(|p| p.to_string()));
    let mut sources = Vec::new();
    for (origin, resource) in report.resources {
        match resource {
            Resource::Server(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                if d.servers.contains_key(&name) {
                    d.problems.push(format!("{origin}: MCPServer {name}: metadata.name: a server of this name is already defined; names must be unique here"));
                    continue;
                }
                let namespace = namespace_of(&s.metadata);
                d.servers.insert(
                    name,
                    DesiredServer { namespace, spec: s.spec, labels: s.metadata.labels.unwrap_or_default() },
                );
            }
            Resource::Group(g) => {
                d.groups.insert(g.metadata.name.clone().unwrap_or_default(), (namespace_of(&g.metadata), g.spec));
            }
            Resource::Source(s) => sources.push((origin, s)),
        }
    }
    for (origin, source) in sources {
        let name = source.metadata.name.clone().unwrap_or_default();
        match discover(plugins, &source, &report.others) {
            Ok((found, refused)) => {
                for (server, found) in found {
                    d.servers.entry(server).or_insert(found);
                }
                d.problems.extend(refused.into_iter().map(|r| format!("{origin}: MCPDiscoverySource {name}: {r}")));
            }
            Err(e) => d.problems.push(format!("{origin}: MCPDiscoverySource {name}: {e}")),
        }
    }
    d
}

/// The servers a source found (by name) and what it refused, one line each.
type Discovered = (Vec<(String, DesiredServer)>, Vec<String>);

/// A ConfigMap source read from a ConfigMap manifest in the same folder, through the discovery plugin.
fn discover(
    plugins: &PluginRuntime,
    source: &hangar_api::MCPDiscoverySource,
    others: &[hangar_manifests::Document],
) -> Result<Discovered, String> {
    let spec = &source.spec;
    if spec.source_type != SourceType::ConfigMap {
        return Err(
            "spec.type: only ConfigMap sources can be read without a cluster; Namespace discovery needs the operator"
                .into(),
        );
    }
    let reference = spec.config_map_ref.as_ref().ok_or("spec.configMapRef: required when type is ConfigMap")?;
    let config_map = others
        .iter()
        .find(|d| d.value["kind"] == "ConfigMap" && d.value["metadata"]["name"] == reference.name.as_str())
        .ok_or_else(|| format!("spec.configMapRef: no ConfigMap {:?} in this folder", reference.name))?;
    let content = config_map.value["data"][&reference.key].as_str().ok_or_else(|| {
        format!("spec.configMapRef.key: ConfigMap {:?} has no key {:?}", reference.name, reference.key)
    })?;
    let document = Document {
        origin: format!("configmap/{}", reference.name),
        namespace: String::new(),
        name: reference.name.clone(),
        key: reference.key.clone(),
        content: content.to_string(),
    };
    let source_name = source.metadata.name.clone().unwrap_or_default();
    let source_namespace = namespace_of(&source.metadata);
    let found = hangar_operator::discovery::discover(
        plugins,
        spec,
        &source_namespace,
        &source_name,
        SourceKind::ConfigMap,
        &[document],
    )?;
    let refused = found.refused.iter().map(|r| match r.entry.as_str() {
        "" => format!("{}: {}", r.origin, r.reason),
        entry => format!("{} entry {entry:?}: {}", r.origin, r.reason),
    });
    let servers = found.servers.into_iter().map(|s| {
        let name = s.metadata.name.clone().unwrap_or_default();
        let namespace = namespace_of(&s.metadata);
        (name, DesiredServer { namespace, spec: s.spec, labels: s.metadata.labels.unwrap_or_default() })
    });
    Ok((servers.collect(), refused.collect()))
}

fn apply(gateway: &Arc<Gateway>, plugins: &PluginRuntime, dir: &Path, applied: &mut Applied) {
    let desired = desired(plugins, dir);
    for problem in &desired.problems {
        tracing::warn!("{problem}");
    }
    for (name, running) in applied.servers.clone() {
        if desired.servers.get(&name).is_none_or(|d| d.namespace != running.namespace) {
            gateway.remove_server(&running.namespace, &name);
            applied.servers.remove(&name);
            tracing::info!(server = %name, "server removed");
        }
    }
    for (name, server) in &desired.servers {
        if applied.servers.get(name) == Some(server) {
            continue;
        }
        match gateway.upsert_server(&server.namespace, name, server.spec.clone(), dir) {
            Ok(()) => {
                tracing::info!(server = %name, "server started");
                applied.servers.insert(name.clone(), server.clone());
            }
            Err(e) => tracing::warn!("MCPServer {}/{name}: {e}", server.namespace),
        }
    }
    for (name, (namespace, _, _)) in applied.groups.clone() {
        if desired.groups.get(&name).is_none_or(|(ns, _)| *ns != namespace) {
            gateway.remove_group(&namespace, &name);
            applied.groups.remove(&name);
        }
    }
    for (name, (namespace, spec)) in &desired.groups {
        let members: Vec<GroupMember> = desired
            .servers
            .iter()
            .filter(|(_, s)| &s.namespace == namespace && labels::selector_matches(&spec.selector, &s.labels))
            .map(|(n, s)| GroupMember::from_labels(n, &s.labels))
            .collect();
        let wanted = (namespace.clone(), spec.clone(), members.clone());
        if applied.groups.get(name) == Some(&wanted) {
            continue;
        }
        match gateway.upsert_group(namespace, name, spec.clone(), members) {
            Ok(()) => {
                applied.groups.insert(name.clone(), wanted);
            }
            Err(e) => tracing::warn!("MCPServerGroup {namespace}/{name}: {e}"),
        }
    }
}
