//! Builds the plugins workspace (`plugins/`) for wasm32-wasip2 with the same cargo, so the
//! built-in plugins are real components made from `wit/`, like any user's plugin.

use std::{env, path::PathBuf, process::Command};

/// (plugin name, crate file stem, world)
const PLUGINS: [(&str, &str, &str); 8] = [
    ("round-robin", "hangar_plugin_round_robin", "strategy"),
    ("least-connections", "hangar_plugin_least_connections", "strategy"),
    ("random", "hangar_plugin_random", "strategy"),
    ("failover", "hangar_plugin_failover", "strategy"),
    ("weighted-round-robin", "hangar_plugin_weighted_round_robin", "strategy"),
    ("policy", "hangar_plugin_policy", "policy"),
    ("configmap", "hangar_plugin_configmap", "discovery"),
    ("namespace", "hangar_plugin_namespace", "discovery"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.lock").display());
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
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(dir).join("src").display());
        println!("cargo:rerun-if-changed={}", plugins.join(dir).join("Cargo.toml").display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // Share one wasm build between debug, release and clippy builds: beside the host's target dir.
    let target_dir = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out_dir.join("wasm-plugins"));

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
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

    let mut generated =
        String::from("/// The built-in plugins, as embedded component bytes.\npub const BUILTINS: &[Builtin] = &[\n");
    for (name, stem, world) in PLUGINS {
        let wasm = target_dir.join("wasm32-wasip2/release").join(format!("{stem}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        generated.push_str(&format!(
            "    Builtin {{ name: {name:?}, world: {world:?}, bytes: include_bytes!({:?}) }},\n",
            wasm.display().to_string()
        ));
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), generated).unwrap();
}
