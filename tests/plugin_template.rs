//! The plugin template builds the way its README says and runs in Hangar like a built-in.

use hangar_plugin_runtime::{Origin, WorldKind};
use hangar_tests::{build_plugin, group, repo_root, runtime};

#[test]
fn the_templates_wit_is_hangars_wit() {
    let ours = std::fs::read_to_string(repo_root().join("wit/plugins.wit")).unwrap();
    let template = std::fs::read_to_string(repo_root().join("examples/plugin-template/wit/plugins.wit")).unwrap();
    assert!(
        ours == template,
        "examples/plugin-template/wit/ drifted: cp wit/plugins.wit examples/plugin-template/wit/"
    );
}

#[test]
fn the_template_builds_with_cargo_and_loads_as_a_strategy() {
    let wasm = build_plugin("examples/plugin-template");
    let (rt, _cache) = runtime();
    let version = rt.compile("lowest-latency", &std::fs::read(&wasm).unwrap(), Origin::File(wasm.clone())).unwrap();
    assert_eq!(version.world, WorldKind::Strategy);
    rt.install(version);
    let mut c = group(&[true, true, true, false]);
    c.latency_avg_us = vec![900, 300, 300, 1];
    let plugin = c.strategy(&rt, "lowest-latency", &[]);
    // m3 is fastest but unhealthy; m1 and m2 tie and alternate.
    assert_eq!(plugin.try_pick(&c.request(0)).unwrap(), Some(1));
    assert_eq!(plugin.try_pick(&c.request(1)).unwrap(), Some(2));
    let mut retry = c.request(0);
    retry.attempt = 1;
    retry.members[1].tried = true;
    retry.members[2].tried = true;
    assert_eq!(plugin.try_pick(&retry).unwrap(), Some(0));
}

#[test]
fn the_template_builds_with_cargo_component_too() {
    let available = std::process::Command::new(env!("CARGO"))
        .args(["component", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("HANGAR_REQUIRE_CARGO_COMPONENT").is_none(),
            "cargo-component is required here: cargo install --locked cargo-component@0.21.1"
        );
        eprintln!("skipped: cargo-component is not installed (tests/run.sh installs it)");
        return;
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("test-plugins-component");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["component", "build", "--release", "--locked", "--manifest-path"])
        .arg(repo_root().join("examples/plugin-template/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .unwrap();
    assert!(status.success(), "cargo component build failed");
    let wasm = target_dir.join("wasm32-wasip1/release/lowest_latency.wasm");
    let (rt, _cache) = runtime();
    let version = rt.compile("lowest-latency", &std::fs::read(&wasm).unwrap(), Origin::File(wasm)).unwrap();
    assert_eq!(version.world, WorldKind::Strategy);
    rt.install(version);
    let c = group(&[false, true]);
    assert_eq!(c.strategy(&rt, "lowest-latency", &[]).try_pick(&c.request(0)).unwrap(), Some(1));
}
