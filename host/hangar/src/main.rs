//! `hangar`: one binary for Hangar's operator, gateway, embedded runner and tools.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod core_cmd;
mod operator_cmd;
mod plugin_cmd;
mod reference;
mod run_cmd;

#[derive(Parser)]
#[command(name = "hangar", version, about = "MCP servers as Kubernetes resources, behind one MCP endpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions generated from the API types.
    Crds {
        /// Write one file per CRD into this folder instead (as committed under crds/).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check manifests (files or folders of YAML) as the API server would.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run the manifests in DIR on this machine behind one MCP endpoint (no cluster needed).
    Run {
        dir: PathBuf,
        /// Address of the MCP endpoint (`/mcp`) and of `/metrics`.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        limits: core_cmd::Limits,
        #[command(flatten)]
        log: Logging,
    },
    /// The gateway of a cluster: MCP at /mcp, servers and groups registered by the operator through /api/v1.
    Core {
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// File holding the admin API key (else HANGAR_API_KEY).
        #[arg(long)]
        api_key_file: Option<PathBuf>,
        /// Directory of custom plugins (the mounted plugins ConfigMap), hot-reloaded.
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
        #[command(flatten)]
        limits: core_cmd::Limits,
        #[command(flatten)]
        log: Logging,
    },
    /// Serve one stdio MCP server over Streamable HTTP: `hangar bridge --listen :8080 -- CMD ARGS`.
    Bridge {
        /// Loopback unless told otherwise; in a pod the operator passes the pod's port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The server's spec.tools.allowList, enforced here too (repeatable; globs).
        #[arg(long = "allow", value_name = "GLOB")]
        allow: Vec<String>,
        /// The server's spec.tools.denyList, enforced here too (repeatable; globs).
        #[arg(long = "deny", value_name = "GLOB")]
        deny: Vec<String>,
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Copy this binary to PATH (the init container of a stdio server's pod uses it to put
    /// `hangar bridge` into the pod; the image has no shell).
    #[command(hide = true)]
    InstallBridge { path: PathBuf },
    /// The operator: reconciles MCPServers into Deployments and Services (uses the in-cluster
    /// or kubeconfig credentials); metrics at --metrics-listen.
    Operator(operator_cmd::OperatorArgs),
    /// Print the ClusterRole the operator needs (exactly the API calls it makes), for installs
    /// without the Helm chart.
    Rbac {
        /// Put the guide's broad rules first (create/update/delete of every pod, Secret and
        /// ConfigMap), as the chart does with `rbac.guideRules: true`.
        #[arg(long)]
        guide_rules: bool,
    },
    /// Print the Deployments and Services the operator makes of the MCPServers in the manifests.
    Render {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The hangar image stdio servers' pods take the bridge from.
        #[arg(long, default_value = concat!("ghcr.io/mcp-hangar/hangar:", env!("CARGO_PKG_VERSION")))]
        hangar_image: String,
    },
    /// Write the generated reference pages (CLI, CRD fields, Helm values, WIT) into DIR, and the
    /// chart's README.
    #[command(hide = true)]
    Reference {
        dir: PathBuf,
        /// The chart whose values.yaml is documented (its README.md is written too).
        #[arg(long, default_value = "charts/mcp-hangar-operator")]
        chart: PathBuf,
        /// Compare with the pages in DIR instead; fail naming the stale ones.
        #[arg(long)]
        check: bool,
    },
    /// Inspect and try WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        command: plugin_cmd::PluginCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { out_dir } => crds(out_dir),
        Command::Validate { paths } => Ok(validate(&paths)),
        Command::Plugin { command } => plugin_cmd::run(command),
        Command::Reference { dir, chart, check } => {
            reference::write(&dir, &chart, <Cli as clap::CommandFactory>::command(), check)
        }
        Command::Run { dir, listen, limits, log } => {
            log.init("hangar").and_then(|_exporter| run_cmd::run(dir, listen, limits))
        }
        Command::Core { listen, api_key_file, plugin_dir, limits, log } => {
            log.init("hangar-core").and_then(|_exporter| core_cmd::core(listen, api_key_file, plugin_dir, limits))
        }
        Command::InstallBridge { path } => install_bridge(&path),
        Command::Operator(args) => args.log.init("hangar-operator").and_then(|_exporter| operator_cmd::operator(args)),
        Command::Rbac { guide_rules } => {
            let role = serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "mcp-hangar-operator"},
                "rules": hangar_operator::rbac::cluster_role_rules(guide_rules),
            });
            print!("{}", serde_yaml::to_string(&role).expect("a ClusterRole serializes"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { paths, hangar_image } => render(&paths, hangar_image),
        Command::Bridge { listen, allow, deny, command } => Logging::default()
            .init("hangar-bridge")
            .and_then(|_exporter| core_cmd::bridge(listen, allow, deny, command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hangar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn render(paths: &[PathBuf], hangar_image: String) -> anyhow::Result<ExitCode> {
    let report = hangar_manifests::check_paths(paths);
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    let settings = hangar_operator::workload::Settings { hangar_image, isolation: Default::default() };
    for (_, resource) in &report.resources {
        let hangar_manifests::Resource::Server(server) = resource else { continue };
        if server.spec.mode != hangar_api::ServerMode::Container {
            continue;
        }
        let mut deployment = serde_json::to_value(hangar_operator::workload::deployment(server, &settings))?;
        deployment["apiVersion"] = "apps/v1".into();
        deployment["kind"] = "Deployment".into();
        let mut service = serde_json::to_value(hangar_operator::workload::service(server))?;
        service["apiVersion"] = "v1".into();
        service["kind"] = "Service".into();
        print!("---\n{}---\n{}", serde_yaml::to_string(&deployment)?, serde_yaml::to_string(&service)?);
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn install_bridge(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe().context("finding this binary")?;
    std::fs::copy(&me, path).with_context(|| format!("copying {} to {}", me.display(), path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(ExitCode::SUCCESS)
}

/// Logging of the long-running commands: lines on stderr, human-readable or JSON; traces when
/// the OTEL_* variables configure an exporter; the audit log when asked for.
#[derive(clap::Args)]
pub struct Logging {
    /// Least severe level logged: error, warn, info, debug or trace (RUST_LOG, when set, wins).
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
    /// human or json (one object a line, for log collectors).
    #[arg(long, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    /// Write the audit log (one JSON object a line per decision: calls allowed, denied, rate
    /// limited or failed; admin API writes; plugins; discovery) to `stdout` or this file.
    #[arg(long, value_name = "stdout|FILE", env = "HANGAR_AUDIT")]
    audit: Option<String>,
    /// Put a SHA-256 of each call's arguments into its audit record (never the values).
    #[arg(long, requires = "audit")]
    audit_hash_arguments: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Self { log_level: "info".into(), log_format: "human".into(), audit: None, audit_hash_arguments: false }
    }
}

impl Logging {
    /// Installs the log, the trace exporter (kept alive by what this returns) and the audit log.
    pub fn init(&self, service: &str) -> anyhow::Result<Option<hangar_telemetry::export::Exporter>> {
        let exporter = hangar_telemetry::export::init(&self.log_level, self.log_format == "json", service)?;
        if let Some(destination) = &self.audit {
            hangar_telemetry::audit::open(destination, self.audit_hash_arguments)
                .with_context(|| format!("--audit {destination}: cannot open it for appending"))?;
        }
        Ok(exporter)
    }
}

fn crds(out_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let crds = hangar_api::crds();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, crd) in &crds {
                let path = dir.join(file);
                std::fs::write(&path, hangar_api::crd_yaml(crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            for (_, crd) in &crds {
                print!("---\n{}", hangar_api::crd_yaml(crd));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let report = hangar_manifests::check_paths(paths);
    for doc in &report.others {
        let kind = doc.value.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
        println!("{}: skipped {kind} (not a Hangar resource)", doc.origin);
    }
    for problem in &report.problems {
        println!("{problem}");
    }
    let valid = report.resources.len();
    if report.problems.is_empty() {
        println!("{valid} Hangar resources valid");
        ExitCode::SUCCESS
    } else {
        let n = report.problems.len();
        println!("{n} problem{}; {valid} Hangar resources valid", if n == 1 { "" } else { "s" });
        ExitCode::FAILURE
    }
}
