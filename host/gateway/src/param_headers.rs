//! Custom headers from tool parameters (SEP-2243, the 2026-07-28 revision): a tool's input
//! schema may mark a primitive property with `x-mcp-header: Name`, and a `tools/call` then
//! carries that argument in an `Mcp-Param-Name` header too, so that what sits in front of a
//! server can route on it without reading the body. Hangar checks the headers its clients send
//! (the server's rule) and sends them to its servers (the client's rule).

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;

/// The header prefix; the rest of the name is the property's `x-mcp-header`.
pub const PREFIX: &str = "mcp-param-";

/// One property a tool mirrors into a header.
#[derive(Clone, Debug, PartialEq)]
pub struct Designation {
    pub property: String,
    /// `x-mcp-header`, as declared (headers compare case-insensitively).
    pub header: String,
}

/// The properties a tool's input schema mirrors into headers; an invalid declaration (empty,
/// not a header token, declared twice, on a non-primitive property) is an error naming it —
/// clients must not call such a tool.
pub fn designations(input_schema: &Value) -> Result<Vec<Designation>, String> {
    let Some(properties) = input_schema.get("properties").and_then(Value::as_object) else { return Ok(Vec::new()) };
    let mut out: Vec<Designation> = Vec::new();
    for (property, schema) in properties {
        let Some(header) = schema.get("x-mcp-header") else { continue };
        let Some(header) = header.as_str().filter(|h| !h.is_empty()) else {
            return Err(format!("properties.{property}.x-mcp-header: must be a non-empty string"));
        };
        if !header.bytes().all(is_token_byte) {
            return Err(format!(
                "properties.{property}.x-mcp-header: {header:?} is not a header name (visible ASCII, no spaces or ':')"
            ));
        }
        if out.iter().any(|d| d.header.eq_ignore_ascii_case(header)) {
            return Err(format!("properties.{property}.x-mcp-header: {header:?} is declared twice"));
        }
        let primitive =
            matches!(schema.get("type").and_then(Value::as_str), Some("string" | "number" | "integer" | "boolean"));
        if !primitive {
            return Err(format!(
                "properties.{property}.x-mcp-header: only string, number, integer or boolean properties"
            ));
        }
        out.push(Designation { property: property.clone(), header: header.to_string() });
    }
    Ok(out)
}

/// HTTP's token characters (RFC 9110): what a header name may be made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How an argument travels in its header: as it is, or `=?base64?…?=` when it is not printable
/// ASCII or has whitespace at either end; None for null (the header is left out).
pub fn encode(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        _ => return None,
    };
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b)) && text.trim() == text;
    Some(if plain { text } else { format!("=?base64?{}?=", STANDARD.encode(text.as_bytes())) })
}

/// A header value as sent: the text it stands for, or why it is not one (bad base64).
fn decode(raw: &str) -> Result<String, String> {
    let raw = raw.trim_matches([' ', '\t']);
    let Some(encoded) = raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) else {
        return Ok(raw.to_string());
    };
    let bytes = STANDARD.decode(encoded).map_err(|e| format!("not valid base64 ({e})"))?;
    String::from_utf8(bytes).map_err(|_| "base64 of something that is not UTF-8".to_string())
}

/// Whether a header's text stands for the body's value (numbers compared as numbers).
fn agrees(text: &str, value: &Value) -> bool {
    match value {
        Value::String(s) => text == s,
        Value::Number(n) => text.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(h, b)| (h - b).abs() <= 1e-9),
        Value::Bool(b) => text == if *b { "true" } else { "false" },
        _ => false,
    }
}

/// Checks a call's `Mcp-Param-*` headers (`sent`: lowercase name → value) against its arguments:
/// each designated argument that is not null needs its header, which must say the same.
pub fn check(designations: &[Designation], arguments: &Value, sent: &[(String, String)]) -> Result<(), String> {
    for d in designations {
        let Some(value) = arguments.get(&d.property).filter(|v| !v.is_null()) else { continue };
        let name = format!("{PREFIX}{}", d.header.to_ascii_lowercase());
        let Some((_, raw)) = sent.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "the body carries {}={value} but the Mcp-Param-{} header is absent",
                d.property, d.header
            ));
        };
        let text = decode(raw).map_err(|why| format!("Mcp-Param-{}: {why}", d.header))?;
        if !agrees(&text, value) {
            return Err(format!("Mcp-Param-{} says {text:?} but the body carries {}={value}", d.header, d.property));
        }
    }
    Ok(())
}

/// The headers a call to a tool with these designations carries.
pub fn headers(designations: &[Designation], arguments: &Value) -> Vec<(String, String)> {
    designations
        .iter()
        .filter_map(|d| Some((format!("Mcp-Param-{}", d.header), encode(arguments.get(&d.property)?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(region: Value) -> Value {
        json!({"type": "object", "properties": {"region": region, "n": {"type": "integer", "x-mcp-header": "N"}}})
    }

    #[test]
    fn declarations_are_checked_as_the_revision_says() {
        let ok = designations(&schema(json!({"type": "string", "x-mcp-header": "Region"}))).unwrap();
        assert_eq!(ok.iter().map(|d| d.header.as_str()).collect::<Vec<_>>(), ["N", "Region"]);
        for bad in [
            json!({"type": "string", "x-mcp-header": ""}),
            json!({"type": "string", "x-mcp-header": "has space"}),
            json!({"type": "string", "x-mcp-header": "a:b"}),
            json!({"type": "string", "x-mcp-header": "Région"}),
            json!({"type": "string", "x-mcp-header": "n"}),
            json!({"type": "object", "x-mcp-header": "Region"}),
        ] {
            assert!(designations(&schema(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_travel_plain_or_in_base64_and_are_read_back() {
        assert_eq!(encode(&json!("us-west1")).as_deref(), Some("us-west1"));
        assert_eq!(encode(&json!(" padded ")).as_deref(), Some("=?base64?IHBhZGRlZCA=?="));
        assert_eq!(encode(&json!("Hello, 世界")).map(|e| decode(&e).unwrap()).as_deref(), Some("Hello, 世界"));
        assert_eq!(encode(&json!(42)).as_deref(), Some("42"));
        assert_eq!(encode(&json!(false)).as_deref(), Some("false"));
        assert_eq!(encode(&Value::Null), None);
        assert!(decode("=?base64?SGVsbG8?=").is_err(), "padding is required");
        assert!(decode("=?base64?SGVs!!!bG8=?=").is_err());
        assert_eq!(decode("=?base64?SGVsbG8=").unwrap(), "=?base64?SGVsbG8=", "no suffix: literal");
    }

    #[test]
    fn a_call_needs_each_designated_header_saying_what_the_body_says() {
        let d = designations(&schema(json!({"type": "string", "x-mcp-header": "Region"}))).unwrap();
        let args = json!({"region": "Hello", "n": 3});
        let sent =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        assert!(
            check(&d, &args, &sent(&[("mcp-param-region", "=?base64?SGVsbG8=?="), ("mcp-param-n", "3.0")])).is_ok()
        );
        assert!(check(&d, &args, &sent(&[("mcp-param-n", "3")])).is_err(), "a missing header");
        assert!(check(&d, &args, &sent(&[("mcp-param-region", "Bye"), ("mcp-param-n", "3")])).is_err());
        assert!(check(&d, &json!({"n": null}), &[]).is_ok(), "null and absent arguments need no header");
        let out = headers(&d, &args);
        assert_eq!(out, [("Mcp-Param-N".to_string(), "3".to_string()), ("Mcp-Param-Region".into(), "Hello".into())]);
    }
}
