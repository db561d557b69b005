//! Replacing a plugin file while calls run: no call fails, the new behaviour shows within a
//! second, and a corrupt replacement leaves the old version serving.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hangar_tests::{builtin_bytes, group, runtime};

/// Writes like a ConfigMap update: to a temporary name, then renamed into place.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn replacing_a_plugin_under_load_swaps_behaviour_without_errors() {
    let (rt, _cache) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.wasm");
    std::fs::write(&file, builtin_bytes("round-robin")).unwrap();
    let _watch = rt.watch_dir(dir.path()).unwrap();
    // Failover always picks m0 (priority 0); round robin spreads: the two are told apart.
    let c = Arc::new(group(&[true, true, true]));
    let plugin = Arc::new(c.strategy(&rt, "custom", &[]));
    let first_digest = plugin.version().unwrap().digest.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, errors, off_m0) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (plugin, c, stop, calls, errors) =
                (plugin.clone(), c.clone(), stop.clone(), calls.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut seq = w * 1_000_000;
                // Bounded: stops on the flag or after 20 s at most.
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    seq += 1;
                    if let Err(e) = plugin.try_pick(&c.request(seq)) {
                        eprintln!("call failed: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(100));
    let swapped_at = Instant::now();
    replace(&file, builtin_bytes("failover"));
    let mut seen_after = None;
    while swapped_at.elapsed() < Duration::from_secs(5) {
        let version = plugin.version().unwrap();
        if version.digest != first_digest {
            // Every pick now goes to m0.
            let picks: Vec<_> = (0..20).map(|s| plugin.try_pick(&c.request(s)).unwrap()).collect();
            if picks.iter().all(|p| *p == Some(0)) {
                seen_after = Some(swapped_at.elapsed());
                break;
            }
            off_m0.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let seen_after = seen_after.expect("new behaviour visible");
    assert!(seen_after < Duration::from_secs(1), "new behaviour after {seen_after:?}");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no call failed during the swap");
    assert!(calls.load(Ordering::Relaxed) > 1000, "the workers really were calling");
    assert_eq!(rt.metrics().reloads.with_label_values(&["custom", "ok"]).get(), 2, "initial load and the swap");

    // A corrupt replacement: reported, counted, and the failover version keeps serving.
    let serving = plugin.version().unwrap().digest.clone();
    replace(&file, b"\0asm\x0d\0\x01\0garbage");
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.metrics().reloads.with_label_values(&["custom", "error"]).get() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rt.metrics().reloads.with_label_values(&["custom", "error"]).get(), 1, "the corrupt file was seen");
    assert_eq!(plugin.version().unwrap().digest, serving, "the old version keeps serving");
    assert_eq!(plugin.try_pick(&c.request(5)).unwrap(), Some(0));
    assert!(rt.reports().iter().any(|r| r.plugin == "custom" && r.message.contains("previous version keeps serving")));
}

#[test]
fn a_removed_plugin_directory_keeps_loaded_plugins_serving() {
    let (rt, _cache) = runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.wasm"), builtin_bytes("failover")).unwrap();
    let watch = rt.watch_dir(dir.path()).unwrap();
    let c = group(&[true, true]);
    let plugin = c.strategy(&rt, "mine", &[]);
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(!path.exists());
    rt.load_dir(&path);
    assert_eq!(plugin.try_pick(&c.request(1)).unwrap(), Some(0));
    assert!(rt.reports().iter().any(|r| r.message.contains("loaded plugins keep serving")));
    drop(watch);
}
