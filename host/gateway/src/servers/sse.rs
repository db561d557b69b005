//! Server-Sent Events as servers send them: split at blank lines (LF or CRLF), each with its
//! id, retry hint and JSON message.

use serde_json::Value;

use crate::parse_budget;

/// Where the first complete event in `buffer` ends, and the length of the blank line after it.
pub(super) fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One Server-Sent Event: its id, its retry hint and its data as a JSON message.
#[derive(Debug, Default, PartialEq)]
pub(super) struct SseEvent {
    pub(super) id: Option<String>,
    pub(super) retry_ms: Option<u64>,
    pub(super) message: Option<Value>,
}

pub(super) fn parse_event(event: &str) -> SseEvent {
    let mut parsed = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in event.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => data.push(value),
            "id" => parsed.id = Some(value.to_string()),
            "retry" => parsed.retry_ms = value.parse().ok(),
            _ => {}
        }
    }
    if !data.is_empty() {
        parsed.message = match parse_budget::answer(&data.join("\n")) {
            Ok(message) => Some(message),
            Err(why) => {
                tracing::warn!("skipping a server's event: {why}");
                None
            }
        };
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_split_and_parsed_with_their_ids_and_retry_hints() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\nid: s::2\r\nretry: 5000\r\ndata:\r\n\r\n";
        let (end, skip) = event_end(body).unwrap();
        let first = parse_event(std::str::from_utf8(&body[..end]).unwrap());
        assert_eq!(first.message, Some(json!({"jsonrpc":"2.0","id":1,"result":{}})));
        let rest = &body[end + skip..];
        let (end, skip) = event_end(rest).unwrap();
        assert_eq!(end + skip, rest.len(), "a CRLF blank line ends the priming event");
        let priming = parse_event(std::str::from_utf8(&rest[..end]).unwrap());
        assert_eq!(priming, SseEvent { id: Some("s::2".into()), retry_ms: Some(5000), message: None });
    }
}
