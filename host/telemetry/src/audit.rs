//! The audit log: one JSON object a line for each decision Hangar makes — a tool call allowed,
//! denied, rate limited or failed; an admin API write; a plugin loaded, refused or faulting; a
//! discovered server created or deleted. It goes to its own stream (stdout or a file, never the
//! log's stderr) and every line says `"log":"hangar.audit"`, so collectors route it apart.
//! Never argument values, results or tokens: on request, a SHA-256 of the arguments.

use std::{
    io::Write,
    sync::{Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// Who asked: a verified token's identity, or what an unverified client called itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Caller {
    /// The token's `sub`, or the client's self-given name.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub sub: String,
    /// The OAuth client the token was issued to.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub client: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub verified: bool,
}

/// One decision. `event` and `decision` are always there; the rest where they apply.
#[derive(Debug, Default, Serialize)]
pub struct Record {
    /// `tools/call`, `admin`, `plugin` or `discovery`.
    pub event: &'static str,
    /// tools/call: `allowed`, `denied`, `rate_limited`, `unavailable`; admin: `accepted`,
    /// `refused`; plugin: `loaded`, `refused`, `fault`; discovery: `created`, `deleted`.
    pub decision: &'static str,
    /// Why, in words (a denial's policy message, a refusal's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A call that went out: `ok`, `tool_error` or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    /// An admin API write: the first 12 hex digits of the SHA-256 of the key used (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<String>,
    /// An admin API write: `METHOD path`; a discovery: the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// A plugin: its name, and the world it was loaded for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Only with `--audit-hash-arguments`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    log: &'static str,
    #[serde(flatten)]
    record: &'a Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    hash_arguments: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Where the audit log goes: `stdout`, or a file (appended to, created if missing).
pub fn open(destination: &str, hash_arguments: bool) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match destination {
        "stdout" | "-" => Box::new(std::io::stdout()),
        path => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
    };
    let _ = SINK.set(Sink { out: Mutex::new(out), hash_arguments });
    Ok(())
}

/// Whether records are written (callers skip building them otherwise).
pub fn enabled() -> bool {
    SINK.get().is_some()
}

/// The arguments' digest, when the operator asked for it.
pub fn arguments_digest(arguments: &serde_json::Value) -> Option<String> {
    use sha2::Digest;
    SINK.get().filter(|s| s.hash_arguments)?;
    Some(hex(&sha2::Sha256::digest(arguments.to_string().as_bytes())))
}

/// A key's fingerprint: enough to tell keys apart, useless to guess one.
pub fn key_fingerprint(key: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(key.as_bytes()))[..12].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes one record, with the time and the current trace's id. A write that fails is logged,
/// not retried: the call it records has happened either way.
pub fn log(record: Record) {
    let Some(sink) = SINK.get() else { return };
    let line = Line {
        time: rfc3339(SystemTime::now()),
        log: "hangar.audit",
        record: &record,
        trace_id: crate::trace_context::trace_id(),
    };
    let mut text = serde_json::to_vec(&line).expect("an audit record serializes");
    text.push(b'\n');
    let mut out = sink.out.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = out.write_all(&text).and_then(|()| out.flush()) {
        tracing::error!(error = %e, "writing the audit log failed");
    }
}

/// UTC time with milliseconds, e.g. `2026-12-07T09:41:02.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (days, secs) = ((since.as_secs() / 86_400) as i64, since.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.250Z: a leap day.
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_709_251_199_250)), "2024-02-29T23:59:59.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_601_600)), "2026-12-07T00:00:00.000Z");
    }

    #[test]
    fn a_record_says_what_applies_and_nothing_else() {
        let record = Record {
            event: "tools/call",
            decision: "denied",
            reason: Some("not in spec.tools.allowList".into()),
            caller: Some(Caller { sub: "alice".into(), verified: true, ..Default::default() }),
            server: Some("fs".into()),
            tool: Some("write_file".into()),
            ..Default::default()
        };
        let line = Line { time: "t".into(), log: "hangar.audit", record: &record, trace_id: None };
        let value = serde_json::to_value(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"time": "t", "log": "hangar.audit", "event": "tools/call", "decision": "denied",
                "reason": "not in spec.tools.allowList", "caller": {"sub": "alice", "verified": true},
                "server": "fs", "tool": "write_file"})
        );
        assert_eq!(key_fingerprint("secret").len(), 12);
    }
}
