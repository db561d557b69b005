//! `hangar operator`: the controllers, their metrics and probes, and leader election.

use std::process::ExitCode;

use anyhow::Context;
use hangar_operator::{
    core::CoreClient,
    leader::LeaderElector,
    metrics::Metrics,
    workload::{Isolation, Settings},
};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};

/// The operator: reconciles MCPServers into Deployments and Services (uses the in-cluster or
/// kubeconfig credentials); metrics and probes at --metrics-listen.
#[derive(clap::Args)]
pub struct OperatorArgs {
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_listen: std::net::SocketAddr,
    #[arg(long, default_value = concat!("ghcr.io/mcp-hangar/hangar:", env!("CARGO_PKG_VERSION")))]
    hangar_image: String,
    /// Core's URL (`hangar.url`); empty: no core integration. The API key is HANGAR_API_KEY.
    #[arg(long, env = "HANGAR_URL", default_value = "")]
    hangar_url: String,
    /// Elect one leader among replicas with a Lease (`--leader-elect=false` to run alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_namespace: String,
    /// Directory of custom plugins (the mounted plugins ConfigMap: discovery parsers), hot-reloaded.
    #[arg(long)]
    plugin_dir: Option<std::path::PathBuf>,
    /// Label this namespace (core's) `mcp-hangar.io/core=true`, so that the guide's NetworkPolicy
    /// admits core's traffic to MCP servers.
    #[arg(long)]
    label_core_namespace: Option<String>,
    /// The NetworkPolicy kept in each namespace with container servers: `ingress` (only core's
    /// namespace reaches server pods; their egress stays open), `full` (the guide's policy: egress
    /// only to core's namespace too) or `off`.
    #[arg(long, default_value = "ingress")]
    network_policy: Isolation,
    #[command(flatten)]
    pub log: crate::Logging,
}

pub fn operator(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    let OperatorArgs {
        metrics_listen,
        hangar_image,
        hangar_url,
        leader_elect,
        leader_namespace,
        plugin_dir,
        label_core_namespace,
        network_policy,
        log: _,
    } = args;
    let lease_namespace = leader_elect.then_some(leader_namespace);
    let core = if hangar_url.is_empty() {
        None
    } else {
        let key = std::env::var("HANGAR_API_KEY")
            .context("HANGAR_API_KEY: required with --hangar-url (from the Secret hangar.existingSecret)")?;
        Some(CoreClient::new(&hangar_url, &key))
    };
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry)?;
        let plugins = PluginRuntime::new(RuntimeConfig::default(), &registry)?;
        let _watch = match &plugin_dir {
            Some(dir) => Some(plugins.watch_dir(dir).with_context(|| format!("--plugin-dir {}", dir.display()))?),
            None => None,
        };
        if let Some(namespace) = &label_core_namespace {
            // Not fatal: without the label only the NetworkPolicy's admission of core is missing.
            if let Err(e) = hangar_operator::server::label_core_namespace(&client, namespace).await {
                tracing::warn!("labelling namespace {namespace} mcp-hangar.io/core=true: {e}");
            }
        }
        let listener = tokio::net::TcpListener::bind(metrics_listen).await?;
        tracing::info!(address = %listener.local_addr()?, "metrics and probes listening");
        let app =
            axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let registry = registry.clone();
                        async move {
                            prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_default()
                        }
                    }),
                )
                .route("/healthz", axum::routing::get(|| async { "ok" }))
                .route("/readyz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let settings = Settings { hangar_image, isolation: network_policy };
        let Some(namespace) = lease_namespace else {
            hangar_operator::run::run(client, settings, metrics, core, plugins).await;
            return Ok(ExitCode::SUCCESS);
        };
        let identity = std::env::var("HOSTNAME").unwrap_or_else(|_| format!("hangar-operator-{}", std::process::id()));
        let elector = LeaderElector::new(client.clone(), &namespace, "hangar-operator", &identity);
        tracing::info!(%identity, "waiting to lead (Lease {namespace}/hangar-operator)");
        elector.acquire().await;
        tracing::info!(%identity, "leading");
        let led = tokio::select! {
            () = hangar_operator::run::run(client, settings, metrics, core, plugins) => true,
            () = elector.keep() => false,
        };
        if !led {
            // Another replica leads now; restarting makes this one a follower.
            tracing::error!("lost the lease; exiting");
            return Ok(ExitCode::FAILURE);
        }
        // Stopped by a signal, after the reconciles in progress finished: hand over at once.
        match elector.release().await {
            Ok(()) => tracing::info!("stopped; lease released"),
            Err(e) => tracing::warn!("releasing the lease: {e}"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
