//! The pure algorithms behind Hangar's built-in plugins. The plugin crates wrap them in the WIT
//! exports; the host uses them natively only as the benchmark baseline and as the last-resort
//! fallback when a strategy plugin faults; and the circuit breaker the host keeps per server and
//! per plugin; and the tool-search tokenizer and ranking.

pub mod breaker;
pub mod discovery;
pub mod glob;
pub mod policy;
pub mod search;
pub mod strategy;
