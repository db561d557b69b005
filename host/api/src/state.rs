//! The lifecycle states the guide names, shared by servers and groups.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an MCP server (or a group, by its health policy) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum State {
    /// `replicas: 0` and nothing runs; starts on the first request.
    Cold,
    /// Starting, or running but not yet answering MCP.
    Initializing,
    /// Answers MCP and passes health checks.
    Ready,
    /// Some replicas or health checks fail; still serving.
    Degraded,
    /// Failed `failureThreshold` checks in a row, or could not start.
    Dead,
}

impl State {
    pub const ALL: [State; 5] = [State::Cold, State::Initializing, State::Ready, State::Degraded, State::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Cold => "Cold",
            State::Initializing => "Initializing",
            State::Ready => "Ready",
            State::Degraded => "Degraded",
            State::Dead => "Dead",
        }
    }

    /// Whether calls may be routed to something in this state.
    pub fn serves(self) -> bool {
        matches!(self, State::Ready | State::Degraded)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
