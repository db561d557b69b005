//! `hangar`: one binary for Hangar's operator, gateway, embedded runner and tools.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod plugin_cmd;

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hangar: {e:#}");
            ExitCode::FAILURE
        }
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
