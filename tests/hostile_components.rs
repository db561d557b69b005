//! Writes hostile plugins that Rust cannot express, as components assembled from text:
//! `hostile-components OUT_DIR` writes
//! - `many-memories.wasm`: a strategy whose core module declares 24 memories of 32 MiB each
//!   (against a host whose memory cap counted each memory alone, 768 MiB for one instance);
//! - `big-data.wasm`: a strategy with a 15 MiB data segment (just under the file-size limit; every
//!   instance starts with 15 MiB of memory written).
//!
//! Both implement `hangar:plugins/load-balancer@0.2.0` correctly, so that the host gets as far as
//! instantiating them: `configure` succeeds (asking for nothing), `pick` answers none.

use std::fmt::Write as _;

/// The 0.2.0 load-balancer export around a core module with `memories` (WAT text).
fn strategy_component(memories: &str) -> String {
    format!(
        r#"(component
  (core module $m
    {memories}
    (func (export "configure") (param i32 i32 i32 i32) (result i32) i32.const 0)
    (func (export "pick") (param i64 i64 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) i32.const 0)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 64))
  (core instance $i (instantiate $m))
  (type $member (record (field "name" string) (field "priority" s32) (field "weight" u32)))
  (type $set (variant (case "word" u64) (case "words" (list u64))))
  (type $inputs (flags "tool" "in-flight" "latency"))
  (type $request (record (field "sequence" u64) (field "random" u64) (field "attempt" u32)
    (field "eligible" $set) (field "tool" (option string)) (field "in-flight" (option (list u32)))
    (field "latency-avg-us" (option (list u64)))))
  (func $configure (param "members" (list $member)) (param "config" (list (tuple string string)))
    (result (result $inputs (error string)))
    (canon lift (core func $i "configure") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (func $pick (param "request" $request) (result (option u32))
    (canon lift (core func $i "pick") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (instance $lb
    (export "member" (type $member))
    (export "member-set" (type $set))
    (export "pick-inputs" (type $inputs))
    (export "pick-request" (type $request))
    (export "configure" (func $configure))
    (export "pick" (func $pick)))
  (export "hangar:plugins/load-balancer@0.2.0" (instance $lb)))"#
    )
}

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: hostile-components OUT_DIR"));
    std::fs::create_dir_all(&out).expect("creating the output directory");

    // 512 pages of 64 KiB: 32 MiB each.
    let mut memories = String::from("(memory (export \"memory\") 512)");
    for _ in 1..24 {
        memories.push_str(" (memory 512)");
    }
    let many = wat::parse_str(strategy_component(&memories)).expect("many-memories assembles");

    // 241 pages hold 1 KiB + 15 MiB of data.
    let mut data = String::with_capacity(15 << 20);
    let _ = write!(data, "(memory (export \"memory\") 241) (data (i32.const 1024) \"");
    data.extend(std::iter::repeat_n('h', 15 << 20));
    data.push_str("\")");
    let big = wat::parse_str(strategy_component(&data)).expect("big-data assembles");

    for (name, bytes) in [("many-memories.wasm", many), ("big-data.wasm", big)] {
        std::fs::write(out.join(name), bytes).expect("writing a component");
    }
}
