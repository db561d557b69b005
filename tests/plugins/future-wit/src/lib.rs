//! The load-balancer interface as a future `hangar:plugins@1.0.0` might have it (a pick over
//! lists of numbers only). A 0.2.0 host must refuse it, naming both versions.

wit_bindgen::generate!({
    inline: r#"
        package hangar:plugins@1.0.0;

        interface load-balancer {
            configure: func(config: list<tuple<string, string>>) -> result<_, string>;
            pick: func(sequence: u64, healthy: list<bool>, in-flight: list<u32>) -> option<u32>;
        }

        world strategy {
            export load-balancer;
        }
    "#,
});

use exports::hangar::plugins::load_balancer::Guest;

struct Plugin;

impl Guest for Plugin {
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn pick(sequence: u64, healthy: Vec<bool>, _in_flight: Vec<u32>) -> Option<u32> {
        let up: Vec<u32> = (0..healthy.len() as u32).filter(|&i| healthy[i as usize]).collect();
        (!up.is_empty()).then(|| up[(sequence % up.len() as u64) as usize])
    }
}

export!(Plugin);
