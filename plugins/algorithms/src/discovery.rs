//! Discovery formats. A ConfigMap key (`providers.yaml`) holds a map of entry name → MCPServer
//! spec (optionally under a top-level `providers:`); an entry may also carry `namespace` and
//! `labels`. Upstream Hangar's entry modes `subprocess` and `docker` map onto `container`.
//! A Service annotated `mcp-hangar.io/mcp-server` becomes a remote server at its cluster URL.

use serde_json::{Map, Value};

/// A server found in a source.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub name: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub spec: Map<String, Value>,
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub origin: String,
    pub message: String,
}

fn error(origin: &str, message: impl Into<String>) -> ParseError {
    ParseError { origin: origin.to_string(), message: message.into() }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Reads a providers document (YAML text) into definitions.
pub fn parse_providers(origin: &str, text: &str) -> Result<Vec<Definition>, ParseError> {
    let value: Value = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(yaml) => serde_json::to_value(yaml).map_err(|e| error(origin, format!("not representable as JSON: {e}")))?,
        Err(e) => return Err(error(origin, format!("invalid YAML: {e}"))),
    };
    let entries = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(mut map) => match map.remove("providers") {
            Some(Value::Object(inner)) if map.is_empty() => inner,
            Some(_) if map.is_empty() => {
                return Err(error(origin, "providers: must be a map of entry name to server spec"));
            }
            Some(other) => {
                map.insert("providers".into(), other);
                map
            }
            None => map,
        },
        _ => return Err(error(origin, "must be a map of entry name to MCPServer spec")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        if !is_dns_label(&name) {
            return Err(error(
                origin,
                format!("{name}: entry names become MCPServer names: use lowercase letters, digits and '-'"),
            ));
        }
        let Value::Object(mut spec) = entry else {
            return Err(error(origin, format!("{name}: must be a map (an MCPServer spec)")));
        };
        let namespace = match spec.remove("namespace") {
            None => String::new(),
            Some(Value::String(ns)) if is_dns_label(&ns) => ns,
            Some(other) => return Err(error(origin, format!("{name}.namespace: {other} is not a namespace name"))),
        };
        let labels = match spec.remove("labels") {
            None => Vec::new(),
            Some(Value::Object(labels)) => labels
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    other => Err(error(origin, format!("{name}.labels.{k}: {other} must be a string"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(error(origin, format!("{name}.labels: must be a map of strings"))),
        };
        upstream_mode(&mut spec);
        out.push(Definition { name, namespace, labels, spec });
    }
    Ok(out)
}

/// Upstream's `subprocess` (a command speaking stdio) and `docker` (an image) are containers here.
fn upstream_mode(spec: &mut Map<String, Value>) {
    match spec.get("mode").and_then(Value::as_str) {
        Some("subprocess") => {
            spec.insert("mode".into(), "container".into());
            spec.entry("transport").or_insert_with(|| "stdio".into());
        }
        Some("docker") => {
            spec.insert("mode".into(), "container".into());
        }
        _ => {}
    }
    // Upstream allows `command: "python -m server"`; a list is what a container takes.
    if let Some(Value::String(cmd)) = spec.get("command").cloned() {
        let parts: Vec<Value> = cmd.split_whitespace().map(|s| Value::String(s.into())).collect();
        spec.insert("command".into(), Value::Array(parts));
    }
}

/// A Service (as the JSON the host passes: name, namespace, annotations, ports) to a remote server.
pub fn parse_service(origin: &str, service: &str) -> Result<Option<Definition>, ParseError> {
    let v: Value = serde_json::from_str(service).map_err(|e| error(origin, format!("invalid service JSON: {e}")))?;
    let text = |pointer: &str| v.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    let (name, namespace) = (text("/name"), text("/namespace"));
    let annotation =
        |key: &str| v.get("annotations").and_then(|a| a.get(key)).and_then(Value::as_str).map(str::to_string);
    match annotation("mcp-hangar.io/mcp-server").as_deref() {
        None | Some("false") => return Ok(None),
        _ => {}
    }
    let ports = v.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let port = match annotation("mcp-hangar.io/port") {
        Some(p) => match p.parse::<u16>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(p.as_str()))
                .and_then(|x| x.get("port").and_then(Value::as_u64))
                .map(|n| n as u16)
                .ok_or_else(|| {
                    error(
                        origin,
                        format!(
                            "annotation mcp-hangar.io/port: {p:?} is neither a number nor a port name of the Service"
                        ),
                    )
                })?,
        },
        None => {
            ports.first().and_then(|x| x.get("port").and_then(Value::as_u64)).map(|n| n as u16).ok_or_else(|| {
                error(origin, "the Service has no ports; add one or the mcp-hangar.io/port annotation")
            })?
        }
    };
    let path = annotation("mcp-hangar.io/path").unwrap_or_else(|| "/mcp".into());
    if !path.starts_with('/') {
        return Err(error(origin, format!("annotation mcp-hangar.io/path: {path:?} must start with '/'")));
    }
    let mut spec = Map::new();
    spec.insert("mode".into(), "remote".into());
    spec.insert("endpoint".into(), format!("http://{name}.{namespace}.svc.cluster.local:{port}{path}").into());
    Ok(Some(Definition { name: format!("{namespace}-{name}"), namespace: String::new(), labels: Vec::new(), spec }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_definitions_with_namespace_and_labels_lifted_out() {
        let defs = parse_providers(
            "cm",
            "math:\n  mode: remote\n  endpoint: http://m/mcp\n  namespace: tools\n  labels: {team: a}\nfetch:\n  mode: container\n  image: x\n",
        )
        .unwrap();
        assert_eq!(defs.len(), 2);
        let math = defs.iter().find(|d| d.name == "math").unwrap();
        assert_eq!(math.namespace, "tools");
        assert_eq!(math.labels, vec![("team".to_string(), "a".to_string())]);
        assert!(math.spec.get("namespace").is_none());
        assert_eq!(math.spec["endpoint"], "http://m/mcp");
    }

    #[test]
    fn upstream_entries_are_translated() {
        let defs =
            parse_providers("cm", "providers:\n  calc:\n    mode: subprocess\n    command: python -m calc\n").unwrap();
        assert_eq!(defs[0].spec["mode"], "container");
        assert_eq!(defs[0].spec["transport"], "stdio");
        assert_eq!(defs[0].spec["command"], serde_json::json!(["python", "-m", "calc"]));
    }

    #[test]
    fn bad_documents_say_where_and_what() {
        assert!(parse_providers("cm", "a: [").unwrap_err().message.starts_with("invalid YAML"));
        assert!(
            parse_providers("cm", "Bad_Name: {mode: remote}").unwrap_err().message.starts_with("Bad_Name: entry names")
        );
        assert!(parse_providers("cm", "- a").unwrap_err().message.contains("must be a map"));
        assert_eq!(parse_providers("cm", "").unwrap(), vec![]);
    }

    #[test]
    fn annotated_services_become_remote_servers() {
        let svc = r#"{"name":"search","namespace":"team-a","annotations":{"mcp-hangar.io/mcp-server":"true","mcp-hangar.io/port":"http"},"ports":[{"name":"grpc","port":9000},{"name":"http","port":8080}]}"#;
        let d = parse_service("svc", svc).unwrap().unwrap();
        assert_eq!(d.name, "team-a-search");
        assert_eq!(d.spec["endpoint"], "http://search.team-a.svc.cluster.local:8080/mcp");
        let plain = r#"{"name":"x","namespace":"n","annotations":{},"ports":[{"port":1}]}"#;
        assert_eq!(parse_service("svc", plain).unwrap(), None);
    }
}

/// The spec as the JSON text the WIT `server-definition` carries.
pub fn spec_json(spec: &Map<String, Value>) -> String {
    Value::Object(spec.clone()).to_string()
}

/// Reads the documents of a source: those with a key are providers documents; those without
/// are Services, accepted only when `services` is true.
pub fn parse_documents<'a>(
    documents: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    services: bool,
) -> Result<Vec<Definition>, ParseError> {
    let mut out = Vec::new();
    for (origin, key, content) in documents {
        if !key.is_empty() {
            out.extend(parse_providers(origin, content)?);
        } else if services {
            out.extend(parse_service(origin, content)?);
        } else {
            return Err(error(
                origin,
                "this parser reads ConfigMap entries only; use the namespace parser for Services",
            ));
        }
    }
    Ok(out)
}

/// The whole `source-parser` export of a discovery plugin, over its generated WIT types.
#[macro_export]
macro_rules! discovery_plugin {
    (services: $services:expr) => {
        use exports::hangar::plugins::source_parser::{Document, Guest, ParseError, ServerDefinition, SourceKind};
        use $crate::discovery;

        struct Plugin;

        impl Guest for Plugin {
            fn parse(_kind: SourceKind, documents: Vec<Document>) -> Result<Vec<ServerDefinition>, ParseError> {
                let docs = documents.iter().map(|d| (d.origin.as_str(), d.key.as_str(), d.content.as_str()));
                match discovery::parse_documents(docs, $services) {
                    Ok(found) => Ok(found
                        .into_iter()
                        .map(|d| ServerDefinition {
                            spec_json: discovery::spec_json(&d.spec),
                            name: d.name,
                            namespace: d.namespace,
                            labels: d.labels,
                        })
                        .collect()),
                    Err(e) => Err(ParseError { origin: e.origin, message: e.message }),
                }
            }
        }

        export!(Plugin);
    };
}
