//! Misbehaves as `configure(mode=...)` says: loop, alloc, trap, recurse, out-of-range, none,
//! read-file (reads `path` through WASI filesystem), connect (opens a TCP connection to `addr`
//! through WASI sockets), refuse (configure fails), sleep (3 s in pick), sleep-in-configure,
//! burn (9 ms of CPU per pick, just under the deadline), leak (keeps 256 KiB per pick), or good
//! (round robin over healthy members).

wit_bindgen::generate!({ path: "../../../wit", world: "strategy" });

use std::cell::RefCell;

use exports::hangar::plugins::load_balancer::{Guest, Member, MemberSet, PickInputs, PickRequest};

thread_local! {
    static MODE: RefCell<String> = RefCell::new(String::from("good"));
    static TARGET: RefCell<String> = const { RefCell::new(String::new()) };
    static LEAKED: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static MEMBERS: RefCell<u32> = const { RefCell::new(0) };
}

struct Plugin;

#[inline(never)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(depth % 64) as usize] = depth;
    if depth == u64::MAX { 0 } else { recurse(depth + 1, sink) + sink[3] }
}

impl Guest for Plugin {
    fn configure(members: Vec<Member>, config: Vec<(String, String)>) -> Result<PickInputs, String> {
        MEMBERS.with_borrow_mut(|n| *n = members.len() as u32);
        for (k, v) in config {
            if k == "mode" {
                if v == "refuse" {
                    return Err("mode=refuse: this configuration is refused on purpose".into());
                }
                if v == "sleep-in-configure" {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                MODE.with_borrow_mut(|m| *m = v);
            } else if k == "path" || k == "addr" {
                TARGET.with_borrow_mut(|t| *t = v);
            }
        }
        Ok(PickInputs::empty())
    }

    fn pick(request: PickRequest) -> Option<u32> {
        let members = MEMBERS.with_borrow(|n| *n);
        let words = match &request.eligible {
            MemberSet::Word(word) => vec![*word],
            MemberSet::Words(words) => words.clone(),
        };
        let healthy: Vec<u32> = (0..members).filter(|&i| words[(i / 64) as usize] >> (i % 64) & 1 == 1).collect();
        let mode = MODE.with_borrow(|m| m.clone());
        match mode.as_str() {
            "loop" => {
                let mut x = request.sequence;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            }
            "alloc" => {
                // 4 GiB in 1 MiB pieces, kept so that none can be freed or optimised away.
                let mut held: Vec<Vec<u8>> = Vec::new();
                for _ in 0..4096u32 {
                    held.push(std::hint::black_box(Vec::with_capacity(1 << 20)));
                }
                Some(std::hint::black_box(held).len() as u32)
            }
            "trap" => panic!("hostile plugin traps on purpose"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3));
                healthy.first().copied()
            }
            "burn" => {
                let started = std::time::Instant::now();
                let mut x = request.sequence;
                while started.elapsed() < std::time::Duration::from_millis(9) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                healthy.get((x % healthy.len().max(1) as u64) as usize).copied()
            }
            "leak" => {
                LEAKED.with_borrow_mut(|l| l.push(std::hint::black_box(vec![1u8; 256 << 10])));
                healthy.get((request.sequence % healthy.len().max(1) as u64) as usize).copied()
            }
            "recurse" => Some(recurse(0, &mut [0; 64]) as u32),
            "out-of-range" => Some(members + 1000),
            "none" => None,
            "read-file" => {
                // Succeeding would leak the file's size as the answer; the host gives no preopens.
                let path = TARGET.with_borrow(|t| t.clone());
                let content = std::fs::read(&path).expect("reading a host file");
                Some(content.len() as u32)
            }
            "connect" => {
                let addr = TARGET.with_borrow(|t| t.clone());
                let stream = std::net::TcpStream::connect(addr.as_str()).expect("connecting out");
                drop(stream);
                Some(members + 7)
            }
            _ => {
                if healthy.is_empty() {
                    return None;
                }
                Some(healthy[(request.sequence % healthy.len() as u64) as usize])
            }
        }
    }
}

export!(Plugin);
