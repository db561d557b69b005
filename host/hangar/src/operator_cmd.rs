//! `hangar operator`: the controllers, their metrics and probes, and leader election.

use std::process::ExitCode;

use anyhow::Context;
use hangar_operator::{core::CoreClient, leader::LeaderElector, metrics::Metrics, workload::Settings};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};

pub fn operator(
    metrics_listen: std::net::SocketAddr,
    hangar_image: String,
    hangar_url: String,
    lease_namespace: Option<String>,
) -> anyhow::Result<ExitCode> {
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
        let listener = tokio::net::TcpListener::bind(metrics_listen).await?;
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

        let settings = Settings { hangar_image };
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
