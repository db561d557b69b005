//! `hangar core` (the gateway a cluster runs; servers arrive through the admin API) and
//! `hangar bridge` (one stdio server served over Streamable HTTP, inside a pod).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use hangar_api::MCPServerSpec;
use hangar_gateway::{
    Gateway,
    client::{self, session::SessionKeys},
    gateway::tool_search,
    listen::{self, ConnectionLimits},
    servers::BackendSpec,
};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};

/// The admin API key: `--api-key-file`, else `HANGAR_API_KEY`; none means every admin call is refused.
pub fn api_key(file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    let (key, source) = match file {
        Some(file) => {
            let key = std::fs::read_to_string(file)
                .with_context(|| format!("reading the API key from {}", file.display()))?;
            (key.trim().to_string(), format!("--api-key-file {}", file.display()))
        }
        None => (std::env::var("HANGAR_API_KEY").unwrap_or_default(), "HANGAR_API_KEY".to_string()),
    };
    if key.is_empty() {
        return Ok(None);
    }
    // A short key can be guessed; the chart generates 40 characters.
    anyhow::ensure!(
        key.len() >= MIN_API_KEY_BYTES,
        "{source}: the API key has {} bytes; use at least {MIN_API_KEY_BYTES} (e.g. `openssl rand -hex 24`)",
        key.len()
    );
    Ok(Some(key))
}

/// Shortest admin API key accepted.
pub const MIN_API_KEY_BYTES: usize = 16;

/// Who may call `/mcp`: off unless `--auth-issuer` is given; then every request needs an OAuth
/// access token (a JWT) from that issuer for `--auth-audience`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AuthArgs {
    /// The OAuth authorization server (OpenID provider) whose access tokens /mcp accepts, e.g.
    /// https://login.example.com/realms/mcp (http:// only on loopback).
    #[arg(long, value_name = "URL")]
    pub auth_issuer: Option<String>,
    /// This endpoint's resource URI: tokens must carry it in `aud` (RFC 8707), and clients ask
    /// for tokens with it, e.g. https://hangar.example.com/mcp.
    #[arg(long, value_name = "URI", requires = "auth_issuer")]
    pub auth_audience: Option<String>,
    /// Scopes every token must have (comma-separated); others get 403 insufficient_scope.
    #[arg(long, value_name = "SCOPES", value_delimiter = ',', requires = "auth_issuer")]
    pub auth_required_scopes: Vec<String>,
    /// The token claim that lists the caller's groups, for spec.tools.callers[].groups.
    #[arg(long, value_name = "CLAIM", default_value = "groups")]
    pub auth_group_claim: String,
}

impl AuthArgs {
    /// The token checker, if configured; a bad configuration names its flag.
    pub fn verifier(&self) -> anyhow::Result<Option<Arc<hangar_auth::TokenVerifier>>> {
        let Some(issuer) = &self.auth_issuer else { return Ok(None) };
        let config = hangar_auth::AuthConfig {
            issuer: issuer.clone(),
            audience: self.auth_audience.clone().unwrap_or_default(),
            required_scopes: self.auth_required_scopes.clone(),
            group_claim: self.auth_group_claim.clone(),
        };
        Ok(Some(Arc::new(hangar_auth::TokenVerifier::new(config).map_err(anyhow::Error::msg)?)))
    }
}

/// What one MCP endpoint accepts: bodies, connections, origins and callers (shared by `run`
/// and `core`).
#[derive(clap::Args, Clone, Debug)]
pub struct Limits {
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub tool_search: ToolSearchArgs,
    /// Largest MCP request body accepted (bytes); larger ones get 413 and a JSON-RPC error.
    #[arg(long, default_value_t = client::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Open connections at most; one more is answered 503 and closed.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// Open connections of one client address at most; 0: half of --max-connections. Behind a
    /// proxy or load balancer every client has its address: raise it (up to --max-connections).
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_peer: usize,
    /// A request's headers must arrive within this; an idle connection is closed after it.
    #[arg(long, default_value = "30s")]
    pub header_timeout: hangar_api::Duration,
    /// A browser origin allowed to call /mcp besides loopback ones, as scheme://host[:port]
    /// (repeatable); requests with any other Origin header get 403 (DNS-rebinding protection).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// A Host header allowed besides loopback names when listening on loopback (repeatable);
    /// others get 403, since a rebound DNS name reaches loopback with its own name as Host.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// How long a handshake session id is good for; then its client gets 404 and initializes
    /// again (as clients do when a server ends a session).
    #[arg(long, default_value = "12h")]
    pub session_lifetime: hangar_api::Duration,
    /// Close the unauthenticated surface besides /mcp and the probes: /metrics and
    /// /api/v1/openapi.json answer 404 (scrape metrics another way, or not at all).
    #[arg(long)]
    pub closed_surface: bool,
}

/// Tool search: `search_tools` and `call_tool` on the endpoint, for catalogues too large to list.
#[derive(clap::Args, Clone, Debug)]
pub struct ToolSearchArgs {
    /// off: every tool is listed (default); on: tools/list shows search_tools, call_tool and the
    /// pinned tools only; auto: as on for a caller who may see more than --tool-search-max-tools.
    #[arg(long = "tool-search", value_name = "MODE", default_value = "off", value_parser = ["off", "on", "auto"])]
    pub mode: String,
    /// In auto mode, search when a caller's catalogue has more tools than this.
    #[arg(long = "tool-search-max-tools", value_name = "N", default_value_t = 40)]
    pub max_tools: usize,
    /// Tools listed beside the search tools, by the name clients see (globs; comma-separated or repeated).
    #[arg(long = "tool-search-pinned", value_name = "GLOB", value_delimiter = ',')]
    pub pinned: Vec<String>,
    /// The ranker plugin that orders the results (a plugin of the ranker world, WIT 0.3.0).
    #[arg(long = "tool-search-ranker", value_name = "PLUGIN", default_value = hangar_builtin_plugins::DEFAULT_RANKER)]
    pub ranker: String,
    /// The ranker's `synonyms`: a domain's own words, `word=other,words;word2=...` (the built-in
    /// ranker adds them to its defaults).
    #[arg(long = "tool-search-synonyms", value_name = "WORDS")]
    pub synonyms: Option<String>,
}

impl Default for ToolSearchArgs {
    fn default() -> Self {
        let settings = tool_search::Settings::default();
        Self {
            mode: "off".into(),
            max_tools: settings.max_tools,
            pinned: settings.pinned,
            ranker: settings.ranker,
            synonyms: None,
        }
    }
}

impl ToolSearchArgs {
    pub fn settings(&self) -> anyhow::Result<tool_search::Settings> {
        if let Some(synonyms) = &self.synonyms {
            hangar_plugin_algorithms::search::DomainWords::configured(synonyms)
                .map_err(|e| anyhow::anyhow!("--tool-search-synonyms: {e}"))?;
        }
        Ok(tool_search::Settings {
            mode: self.mode.parse().map_err(|e: String| anyhow::anyhow!("--tool-search: {e}"))?,
            max_tools: self.max_tools,
            pinned: self.pinned.clone(),
            ranker: self.ranker.clone(),
            ranker_config: self.synonyms.iter().map(|s| ("synonyms".to_string(), s.clone())).collect(),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        let connections = ConnectionLimits::default();
        Self {
            max_body_bytes: client::MAX_BODY_BYTES,
            max_connections: connections.max_connections,
            max_connections_per_peer: connections.max_connections_per_peer,
            header_timeout: hangar_api::Duration::from_millis(connections.header_timeout.as_millis() as u64),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            closed_surface: false,
            tool_search: ToolSearchArgs::default(),
            session_lifetime: hangar_api::Duration::from_secs(
                hangar_gateway::client::session::SESSION_LIFETIME.as_secs(),
            ),
            auth: AuthArgs { auth_group_claim: "groups".into(), ..Default::default() },
        }
    }
}

/// Serves the endpoint until Ctrl-C or SIGTERM, then drains calls in flight (bounded).
pub async fn serve_until_ctrl_c(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    registry: prometheus::Registry,
    api_key: Option<String>,
    limits: Limits,
) -> anyhow::Result<()> {
    gateway.configure_tool_search(limits.tool_search.settings()?);
    let stopping = gateway.clone();
    let sessions = SessionKeys::from_env().with_lifetime(limits.session_lifetime.as_std());
    let mut state = client::AppState::new(gateway, sessions, registry, api_key);
    state.max_body_bytes = limits.max_body_bytes;
    state.open_surface = !limits.closed_surface;
    state.auth = limits.auth.verifier()?;
    if let Some(auth) = state.auth.clone() {
        let config = auth.config();
        println!(
            "OAuth: tokens from {} for {} (metadata: {})",
            config.issuer,
            config.audience,
            auth.resource_metadata_url(None)
        );
        // The keys are fetched ahead of the first request and every 10 minutes; a failure is
        // retried on demand (an unknown kid).
        tokio::spawn(auth.keep_keys_fresh());
    }
    state.origins = hangar_gateway::client::origin::OriginPolicy {
        loopback_listener: listener.local_addr()?.ip().is_loopback(),
        allowed_origins: limits.allowed_origins,
        allowed_hosts: limits.allowed_hosts,
    };
    let connections = ConnectionLimits {
        max_connections: limits.max_connections,
        max_connections_per_peer: limits.max_connections_per_peer,
        header_timeout: limits.header_timeout.as_std(),
        ..Default::default()
    };
    let stop = async move {
        stop_signal().await;
        stopping.begin_stopping();
    };
    listen::serve(listener, client::router(Arc::new(state)), connections, stop).await;
    tracing::info!("stopped; stopping servers");
    Ok(())
}

/// Ctrl-C, or SIGTERM as Kubernetes sends it.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))
}

pub fn core(
    listen: SocketAddr,
    api_key_file: Option<PathBuf>,
    plugin_dir: Option<PathBuf>,
    limits: Limits,
) -> anyhow::Result<ExitCode> {
    let key = api_key(api_key_file.as_ref())?;
    limits.tool_search.settings()?;
    if key.is_none() {
        tracing::warn!("no API key (HANGAR_API_KEY or --api-key-file): the admin API refuses every call");
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let registry = prometheus::Registry::new();
        let plugins = PluginRuntime::new(RuntimeConfig::default(), &registry)?;
        let _watch = match &plugin_dir {
            Some(dir) => Some(plugins.watch_dir(dir)?),
            None => None,
        };
        let gateway = Gateway::new(plugins, &registry)?;
        let listener = bind(listen).await?;
        println!("Hangar core: MCP at http://{}/mcp, admin API at /api/v1", listener.local_addr()?);
        serve_until_ctrl_c(listener, gateway, registry, key, limits).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `hangar bridge`: one stdio server over Streamable HTTP, with the server's own allow and deny
/// lists enforced here too, so that a client reaching the pod directly gets no more than core gives.
pub fn bridge(
    listen: SocketAddr,
    allow: Vec<String>,
    deny: Vec<String>,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let registry = prometheus::Registry::new();
        let plugins = PluginRuntime::new(RuntimeConfig::default(), &registry)?;
        let gateway = Gateway::single(plugins, &registry)?;
        let spec: MCPServerSpec = serde_json::from_value(serde_json::json!({
            "mode": "container", "image": "bridged", "transport": "stdio", "command": command,
            "tools": {"allowList": allow, "denyList": deny},
        }))?;
        let dir = std::env::current_dir()?;
        // The pod's environment is the server's (the operator set it from spec.env): passed on
        // explicitly, so even HANGAR_* variables a user gave reach the server.
        let env = std::env::vars().collect();
        gateway
            .upsert_server_at("default", "bridged", spec, BackendSpec::Stdio { command, env, dir })
            .map_err(anyhow::Error::msg)?;
        let listener = bind(listen).await?;
        println!("Hangar bridge: MCP at http://{}/mcp", listener.local_addr()?);
        serve_until_ctrl_c(listener, gateway, registry, None, Limits::default()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
