//! Plugins that loop, over-allocate, trap, recurse or answer nonsense: each is cut off, counted,
//! and the call falls back; the host stays up and the next call with a good plugin works.

use std::time::{Duration, Instant};

use hangar_plugin_runtime::{Fault, Origin, PluginError, StrategyPlugin, round_robin_fallback};
use hangar_tests::{builtin_bytes, hostile_plugin, members, pick_request, runtime};

fn hostile(mode: &str) -> (StrategyPlugin, hangar_plugin_runtime::PluginRuntime, tempfile::TempDir) {
    let (rt, dir) = runtime();
    let bytes = std::fs::read(hostile_plugin()).unwrap();
    let version = rt.compile("hostile", &bytes, Origin::File(hostile_plugin())).unwrap();
    rt.install(version);
    let plugin = StrategyPlugin::new(&rt, "hostile", vec![("mode".into(), mode.into())], None).unwrap();
    (plugin, rt, dir)
}

/// Picks once with the hostile plugin and checks the fault, the fallback and the metric.
fn assert_cut_off(mode: &str, fault: Fault) -> Duration {
    let (plugin, rt, _dir) = hostile(mode);
    let c = members(&[true, false, true]);
    let started = Instant::now();
    let pick = plugin.pick(&pick_request(1), &c);
    let took = started.elapsed();
    let error = pick.fault.expect("the plugin faulted");
    assert_eq!(error.fault(), Some(fault), "{mode}: {error}");
    assert_eq!(pick.index, round_robin_fallback(&pick_request(1), &c), "{mode}: fell back to round robin");
    assert_eq!(pick.index, Some(2));
    let counted = rt.metrics().faults.with_label_values(&["hostile", "strategy", fault.as_str()]).get();
    assert_eq!(counted, 1, "{mode}: fault counted");
    assert!(rt.reports().iter().any(|r| r.plugin == "hostile"), "{mode}: fault reported");
    // The host is fine: a good plugin in the same runtime serves the next call.
    let good = StrategyPlugin::new(&rt, "round-robin", vec![], None).unwrap();
    assert_eq!(good.try_pick(&pick_request(0), &c).unwrap(), Some(0));
    // And the hostile plugin's next call is cut off again, not wedged.
    assert!(plugin.pick(&pick_request(2), &c).fault.is_some());
    took
}

#[test]
fn an_infinite_loop_hits_the_deadline_within_50ms() {
    let took = assert_cut_off("loop", Fault::Timeout);
    assert!(took < Duration::from_millis(50), "deadline trap took {took:?}");
}

#[test]
fn allocating_4_gib_is_stopped_by_the_memory_cap() {
    assert_cut_off("alloc", Fault::OutOfMemory);
}

#[test]
fn a_panic_is_a_trap() {
    assert_cut_off("trap", Fault::Trap);
}

#[test]
fn unbounded_recursion_overflows_the_stack_safely() {
    assert_cut_off("recurse", Fault::Trap);
}

#[test]
fn an_out_of_range_index_is_a_bad_answer() {
    assert_cut_off("out-of-range", Fault::BadAnswer);
}

#[test]
fn choosing_nobody_while_members_are_healthy_is_a_bad_answer() {
    assert_cut_off("none", Fault::BadAnswer);
}

#[test]
fn a_refused_configuration_is_an_error_at_setup() {
    let (rt, _dir) = runtime();
    let bytes = std::fs::read(hostile_plugin()).unwrap();
    rt.install(rt.compile("hostile", &bytes, Origin::Builtin).unwrap());
    let err = StrategyPlugin::new(&rt, "hostile", vec![("mode".into(), "refuse".into())], None).err().unwrap();
    assert_eq!(err.fault(), Some(Fault::Config));
    assert!(err.to_string().contains("refused on purpose"), "{err}");
}

#[test]
fn a_discovery_component_is_refused_as_a_strategy() {
    let (rt, _dir) = runtime();
    rt.install(rt.compile("parser", builtin_bytes("configmap"), Origin::Builtin).unwrap());
    let err = StrategyPlugin::new(&rt, "parser", vec![], None).err().unwrap();
    assert!(matches!(err, PluginError::WrongWorld { expected: "strategy", found: "discovery", .. }), "{err}");
}

#[test]
fn a_good_mode_of_the_same_plugin_behaves() {
    let (plugin, _rt, _dir) = hostile("good");
    let c = members(&[true, true]);
    assert_eq!(plugin.try_pick(&pick_request(3), &c).unwrap(), Some(1));
}
