//! What can go wrong with a plugin, named so that users can act on it.

use std::fmt;

/// How a plugin call failed at run time; also the `fault` label of the faults metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Ran past its deadline (epoch interruption).
    Timeout,
    /// Tried to grow memory beyond the cap.
    OutOfMemory,
    /// Trapped (panic, unreachable, stack overflow, ...).
    Trap,
    /// Returned an answer the host cannot use (e.g. a member index out of range).
    BadAnswer,
    /// Refused its configuration.
    Config,
    /// Asked the host to block (sleep, poll), which plugins may not.
    HostCall,
    /// Its calls were all busy for longer than a caller may wait.
    Overloaded,
    /// It could not be bound to the resource: not found, another world or WIT version, a
    /// digest other than the pinned one, or its file was refused.
    Load,
    /// It is benched after faults in a row: the call did not reach it.
    Benched,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Timeout => "timeout",
            Fault::OutOfMemory => "out_of_memory",
            Fault::Trap => "trap",
            Fault::BadAnswer => "bad_answer",
            Fault::Config => "config",
            Fault::HostCall => "host_call",
            Fault::Overloaded => "overloaded",
            Fault::Load => "load",
            Fault::Benched => "benched",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PluginError {
    #[error("no plugin named {name:?}; loaded: {available}")]
    NotFound { name: String, available: String },
    #[error("plugin {name:?} is a {found} plugin, but a {expected} plugin is needed here")]
    WrongWorld { name: String, expected: &'static str, found: &'static str },
    #[error(
        "plugin {name:?} implements none of Hangar's worlds (it exports {exports}); build it against wit/ with world strategy, policy or discovery"
    )]
    NoWorld { name: String, exports: String },
    #[error(
        "plugin {name:?} was built for {found}; this Hangar speaks hangar:plugins@{expected} (and still loads 0.1.0): rebuild it against this wit/"
    )]
    IncompatibleVersion { name: String, found: String, expected: &'static str },
    #[error("plugin {name:?} has digest {found}, but the resource pins {pinned}")]
    DigestMismatch { name: String, pinned: String, found: String },
    #[error("plugin {name:?} cannot be loaded: {message}")]
    Load { name: String, message: String },
    #[error("plugin {name:?} failed ({fault}): {message}")]
    Faulted { name: String, fault: Fault, message: String },
}

impl PluginError {
    /// The run-time fault, when the error is one.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            PluginError::Faulted { fault, .. } => Some(*fault),
            _ => None,
        }
    }

    /// A condition reason (CamelCase, as Kubernetes conditions have them) naming what went wrong.
    pub fn reason(&self) -> &'static str {
        match self {
            PluginError::NotFound { .. } => "PluginNotFound",
            PluginError::WrongWorld { .. } | PluginError::NoWorld { .. } => "WrongWorld",
            PluginError::IncompatibleVersion { .. } => "IncompatibleVersion",
            PluginError::DigestMismatch { .. } => "DigestMismatch",
            PluginError::Load { .. } => "LoadFailed",
            PluginError::Faulted { fault: Fault::Config, .. } => "ConfigurationRefused",
            PluginError::Faulted { fault: Fault::Benched, .. } => "PluginBenched",
            PluginError::Faulted { .. } => "PluginFaulted",
        }
    }
}
