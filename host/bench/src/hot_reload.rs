//! Hot reload: from a new `.wasm` landing in the watched plugin directory (renamed into place, as
//! a ConfigMap update does) to the new version serving, beside compiling the same component
//! directly. Each version differs by a custom section, so nothing comes from the compile cache.

use std::time::{Duration, Instant};

use hangar_plugin_runtime::{Origin, PluginRuntime, RuntimeConfig, sha256_hex};

use crate::{Figure, Scale, format_duration, percentiles};

/// The component with a custom section appended: the same plugin, another digest.
fn variant(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"hangar-bench";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(size as u8); // LEB128, < 128
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

pub fn run(scale: &Scale) -> anyhow::Result<Vec<Figure>> {
    let base = hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == "round-robin").unwrap().bytes;
    let dir = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let config = || RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    let runtime = PluginRuntime::new(config(), &prometheus::Registry::new())?;
    let _watch = runtime.watch_dir(dir.path())?;
    let repeats = scale.repeats * 2;

    let mut reloads = Vec::new();
    for n in 0..repeats {
        let bytes = variant(base, n);
        let digest = sha256_hex(&bytes);
        let staged = dir.path().join(".staged");
        std::fs::write(&staged, &bytes)?;
        let started = Instant::now();
        std::fs::rename(&staged, dir.path().join("custom.wasm"))?;
        let deadline = started + Duration::from_secs(30);
        while runtime.current("custom").is_none_or(|v| v.digest != digest) {
            anyhow::ensure!(Instant::now() < deadline, "version {n} was not loaded within 30 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        reloads.push(started.elapsed());
    }

    let mut compiles = Vec::new();
    for n in 0..repeats {
        let bytes = variant(base, 1000 + n);
        let started = Instant::now();
        runtime.compile("direct", &bytes, Origin::Builtin)?;
        compiles.push(started.elapsed());
    }
    let (reload, reload_p99) = percentiles(reloads);
    let (compile, compile_p99) = percentiles(compiles);
    Ok(vec![Figure {
        what: format!("file renamed into the watched directory → new version serving ({repeats} reloads)"),
        measured: format!("p50 {} / max {}", format_duration(reload), format_duration(reload_p99)),
        baseline_name: "compiling the component directly".into(),
        baseline: format!("p50 {} / max {}", format_duration(compile), format_duration(compile_p99)),
        ratio: reload.as_secs_f64() / compile.as_secs_f64().max(1e-9),
    }])
}
