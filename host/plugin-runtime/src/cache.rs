//! Compile once per content digest: an in-memory map, then an on-disk cache of precompiled
//! artifacts keyed by digest and engine configuration, so a restart deserializes (~0.2 ms)
//! instead of compiling (~25 ms per component). Both are bounded, least recently used first out:
//! a plugin hot-reloaded many times does not grow memory or disk (a version still in use stays
//! alive through its instances; the cache only stops holding it).

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
    /// digest → (component, its code size, last use); see [`MEMORY_BYTES`].
    loaded: Mutex<HashMap<String, (Component, usize, u64)>>,
    uses: std::sync::atomic::AtomicU64,
}

/// Compiled code kept in memory for components not otherwise in use.
const MEMORY_BYTES: usize = 64 << 20;
/// Precompiled artifacts kept on disk.
const DISK_BYTES: u64 = 256 << 20;

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        if let Some(dir) = &dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "plugin cache directory unusable; compiling in memory only");
        }
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            loaded: Mutex::new(HashMap::new()),
            uses: Default::default(),
        }
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
        let now = self.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((c, _, used)) = self.loaded.lock().unwrap().get_mut(digest) {
            *used = now;
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
                    self.trim_disk(p);
                }
                // SAFETY: the artifact was produced just now by this engine.
                unsafe { Component::deserialize(engine, &artifact)? }
            }
        };
        if let Some(p) = path.as_ref().filter(|p| p.exists()) {
            // Used now: the disk cache evicts by modification time.
            let _ = std::fs::File::options()
                .append(true)
                .open(p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
        let range = component.image_range();
        let size = (range.end as usize).saturating_sub(range.start as usize);
        let mut loaded = self.loaded.lock().unwrap();
        loaded.insert(digest.to_string(), (component.clone(), size, now));
        while loaded.len() > 1 && loaded.values().map(|(_, size, _)| size).sum::<usize>() > MEMORY_BYTES {
            let oldest = loaded.iter().min_by_key(|(_, (_, _, used))| *used).map(|(d, _)| d.clone());
            oldest.and_then(|d| loaded.remove(&d));
        }
        Ok(component)
    }

    /// Removes the least recently used artifacts until the directory holds at most [`DISK_BYTES`]
    /// (never `keep`, just written).
    fn trim_disk(&self, keep: &std::path::Path) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm") && e.path() != keep)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 =
            files.iter().map(|(_, len, _)| len).sum::<u64>() + std::fs::metadata(keep).map(|m| m.len()).unwrap_or(0);
        files.sort();
        for (_, len, path) in files {
            if total <= DISK_BYTES {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}
