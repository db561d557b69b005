//! Builds the plugins workspace (`plugins/`) for wasm32-wasip2 with the same cargo, so the
//! built-in plugins are real components made from `wit/`, like any user's plugin.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};

/// (plugin name, crate file stem, world)
const PLUGINS: [(&str, &str, &str); 9] = [
    ("round-robin", "hangar_plugin_round_robin", "strategy"),
    ("least-connections", "hangar_plugin_least_connections", "strategy"),
    ("random", "hangar_plugin_random", "strategy"),
    ("failover", "hangar_plugin_failover", "strategy"),
    ("weighted-round-robin", "hangar_plugin_weighted_round_robin", "strategy"),
    ("policy", "hangar_plugin_policy", "policy"),
    ("configmap", "hangar_plugin_configmap", "discovery"),
    ("namespace", "hangar_plugin_namespace", "discovery"),
    ("ranker", "hangar_plugin_ranker", "ranker"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    let mut inputs = vec![plugins.join("Cargo.toml"), plugins.join("Cargo.lock"), root.join("wit")];
    for dir in [
        "algorithms",
        "round-robin",
        "least-connections",
        "random",
        "failover",
        "weighted-round-robin",
        "policy",
        "configmap",
        "namespace",
        "ranker",
    ] {
        inputs.push(plugins.join(dir).join("src"));
        inputs.push(plugins.join(dir).join("Cargo.toml"));
    }
    for input in &inputs {
        println!("cargo:rerun-if-changed={}", input.display());
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // Share one wasm build between debug, release and clippy builds: beside the host's target dir.
    let target_dir = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out_dir.join("wasm-plugins"));

    // Built once per content of the sources: a fresh clone (new mtimes, same text) reuses the
    // components of an earlier build instead of compiling the plugins workspace again.
    let digest = sources_digest(&root, &inputs);
    let by_digest = target_dir.join("by-source").join(&digest);
    let cached = PLUGINS.iter().all(|(_, stem, _)| by_digest.join(format!("{stem}.wasm")).exists());
    if !cached {
        build(&plugins, &target_dir);
        std::fs::create_dir_all(&by_digest).unwrap();
        for (_, stem, _) in PLUGINS {
            let built = target_dir.join("wasm32-wasip2/release").join(format!("{stem}.wasm"));
            assert!(built.exists(), "{} was not built", built.display());
            std::fs::copy(&built, by_digest.join(format!("{stem}.wasm"))).unwrap();
        }
    }

    let mut generated =
        String::from("/// The built-in plugins, as embedded component bytes.\npub const BUILTINS: &[Builtin] = &[\n");
    for (name, stem, world) in PLUGINS {
        let wasm = by_digest.join(format!("{stem}.wasm"));
        generated.push_str(&format!(
            "    Builtin {{ name: {name:?}, world: {world:?}, bytes: include_bytes!({:?}) }},\n",
            wasm.display().to_string()
        ));
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), generated).unwrap();
}

/// sha256 over the relative paths and contents of every file under `inputs`, in a fixed order.
fn sources_digest(root: &Path, inputs: &[PathBuf]) -> String {
    fn files(path: &Path, out: &mut Vec<PathBuf>) {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(path).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            for entry in entries {
                files(&entry, out);
            }
        } else if path.is_file() {
            out.push(path.to_path_buf());
        }
    }
    let mut all = Vec::new();
    for input in inputs {
        files(input, &mut all);
    }
    let mut hasher = Sha256::new();
    for file in all {
        hasher.update(file.strip_prefix(root).unwrap_or(&file).to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&file).unwrap());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn build(plugins: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's settings are for the host, not for the wasm guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("running cargo for the wasm plugins");
    if !status.success() {
        panic!(
            "building the built-in plugins for wasm32-wasip2 failed (see above). \
             If the target is missing: rustup target add wasm32-wasip2"
        );
    }
}
