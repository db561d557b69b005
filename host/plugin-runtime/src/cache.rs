//! Compile once per content digest: an in-memory map, then an on-disk cache of precompiled
//! artifacts keyed by digest and engine configuration, so a restart deserializes (~0.2 ms)
//! instead of compiling (~25 ms per component).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
    sync::Mutex,
};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, component::Component};

use crate::metrics::PluginMetrics;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
    loaded: Mutex<HashMap<String, Component>>,
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        if let Some(dir) = &dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "plugin cache directory unusable; compiling in memory only");
        }
        Self { dir, engine_key: format!("{:016x}", hasher.finish()), loaded: Mutex::new(HashMap::new()) }
    }

    /// The component for these bytes (whose digest is `digest`), compiling only when neither
    /// memory nor disk has it.
    pub(crate) fn component(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
        metrics: &PluginMetrics,
    ) -> wasmtime::Result<Component> {
        if let Some(c) = self.loaded.lock().unwrap().get(digest) {
            return Ok(c.clone());
        }
        let path = self.dir.as_ref().map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_key)));
        let from_disk = path.as_ref().filter(|p| p.exists()).and_then(|p| {
            // SAFETY: the file is an artifact this process family wrote with `precompile_component`
            // for this engine configuration (the name carries its compatibility hash), into a
            // directory that is Hangar's own; wasmtime still checks its header.
            unsafe { Component::deserialize_file(engine, p) }
                .inspect_err(
                    |e| tracing::warn!(path = %p.display(), error = %e, "stale plugin cache entry; recompiling"),
                )
                .ok()
        });
        let component = match from_disk {
            Some(c) => c,
            None => {
                let artifact = engine.precompile_component(bytes)?;
                metrics.compilations.inc();
                if let Some(p) = &path {
                    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
                    if std::fs::write(&tmp, &artifact).and_then(|_| std::fs::rename(&tmp, p)).is_err() {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::warn!(path = %p.display(), "could not write plugin cache entry");
                    }
                }
                // SAFETY: the artifact was produced just now by this engine.
                unsafe { Component::deserialize(engine, &artifact)? }
            }
        };
        self.loaded.lock().unwrap().insert(digest.to_string(), component.clone());
        Ok(component)
    }
}
