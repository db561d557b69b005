//! Checking one document against the generated CRDs, in the API server's order: object shape,
//! schema, unknown fields, CEL rules; then typing it.

use hangar_api::{DURATION_PATTERN, Duration, MCPDiscoverySource, MCPServer, MCPServerGroup, labels};
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

use crate::{Document, Problem, Report};

/// A valid Hangar resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Server(Box<MCPServer>),
    Group(Box<MCPServerGroup>),
    Source(Box<MCPDiscoverySource>),
}

/// The compiled schemas of the three CRDs; build once, check many documents.
pub struct Checker {
    kinds: Vec<KindSchema>,
    cel: kube_cel::Validator,
}

struct KindSchema {
    kind: String,
    schema: Value,
    validator: jsonschema::Validator,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        let kinds = hangar_api::crds()
            .into_iter()
            .map(|(_, crd)| {
                let version = &crd.spec.versions[0];
                let schema = serde_json::to_value(
                    version
                        .schema
                        .as_ref()
                        .and_then(|s| s.open_api_v3_schema.as_ref())
                        .expect("generated CRDs have a schema"),
                )
                .expect("schema serializes");
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .build(&schema)
                    .expect("generated CRD schemas compile");
                KindSchema { kind: crd.spec.names.kind.clone(), schema, validator }
            })
            .collect();
        Self { kinds, cel: kube_cel::Validator::new() }
    }

    /// Checks one document and files it under resources, others or problems.
    pub fn check_into(&self, document: Document, report: &mut Report) {
        match self.check(&document) {
            Checked::Resource(resource) => report.resources.push((document.origin, resource)),
            Checked::Other => report.others.push(document),
            Checked::Problems(object, messages) => {
                report.problems.extend(messages.into_iter().map(|message| Problem {
                    origin: document.origin.clone(),
                    object: object.clone(),
                    message,
                }))
            }
        }
    }

    fn check(&self, document: &Document) -> Checked {
        let Some(object) = document.value.as_object() else {
            return Checked::Problems(
                String::new(),
                vec!["not a Kubernetes object: expected a mapping with apiVersion and kind".into()],
            );
        };
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let name = object_name(object);
        let described = if name.is_empty() { kind.to_string() } else { format!("{kind} {name}") };
        if kind.is_empty() || api_version.is_empty() {
            return Checked::Problems(described, vec!["apiVersion and kind are required".into()]);
        }
        if group != labels::GROUP {
            return Checked::Other;
        }
        let Some(schema) = self.kinds.iter().find(|k| k.kind == kind) else {
            let known: Vec<_> = self.kinds.iter().map(|k| k.kind.as_str()).collect();
            return Checked::Problems(
                described,
                vec![format!("kind: {kind} is not a Hangar kind; use one of {}", known.join(", "))],
            );
        };
        if api_version != labels::API_VERSION {
            return Checked::Problems(
                described,
                vec![format!("apiVersion: {api_version} is not served; use {}", labels::API_VERSION)],
            );
        }

        let value = without_nulls(&document.value);
        let mut problems = metadata_problems(object);
        problems.extend(schema_problems(&schema.validator, &value));
        unknown_fields(&schema.schema, &value, "", &mut problems);
        if problems.is_empty()
            && let Err(errors) = self.cel.validate(&schema.schema, &value, None)
        {
            problems.extend(errors.into_vec().into_iter().map(|e| e.to_string()));
        }
        if !problems.is_empty() {
            return Checked::Problems(described, problems);
        }
        let typed = match kind {
            "MCPServer" => serde_json::from_value(value).map(|r| Resource::Server(Box::new(r))),
            "MCPServerGroup" => serde_json::from_value(value).map(|r| Resource::Group(Box::new(r))),
            _ => serde_json::from_value(value).map(|r| Resource::Source(Box::new(r))),
        };
        match typed {
            Ok(resource) => Checked::Resource(resource),
            Err(e) => Checked::Problems(described, vec![format!("spec: {e}")]),
        }
    }
}

enum Checked {
    Resource(Resource),
    Other,
    Problems(String, Vec<String>),
}

/// `namespace/name` or `name`, as users write them.
fn object_name(object: &Map<String, Value>) -> String {
    let meta = object.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    match meta.and_then(|m| m.get("namespace")).and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The API server's checks of `metadata.name` and `metadata.namespace`.
fn metadata_problems(object: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    let meta = object.get("metadata").and_then(Value::as_object);
    match meta.and_then(|m| m.get("name")).and_then(Value::as_str) {
        None | Some("") => problems.push("metadata.name: required; give the resource a name".into()),
        // Services and Deployments are named after servers, so the name must be a DNS label.
        Some(name) if !hangar_api::labels::is_dns_label(name) => problems.push(format!(
            "metadata.name: {name:?} must be lowercase letters, digits and '-', start and end with a letter or digit, at most 63 characters"
        )),
        _ => {}
    }
    if let Some(ns) = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str)
        && !hangar_api::labels::is_dns_label(ns)
    {
        problems.push(format!(
            "metadata.namespace: {ns:?} is not a valid namespace name (lowercase letters, digits and '-')"
        ));
    }
    problems
}

/// Schema violations as `field.path: message`.
fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|error| {
            let path = dotted_path(error.instance_path().as_str());
            let message = match error.kind() {
                ValidationErrorKind::Pattern { pattern } if pattern == DURATION_PATTERN => {
                    let text = error.instance().as_str().unwrap_or_default();
                    match text.parse::<Duration>() {
                        Err(e) => e.to_string(),
                        Ok(_) => format!("invalid duration {text:?}"),
                    }
                }
                ValidationErrorKind::Required { property } => {
                    let field = property.as_str().unwrap_or_default();
                    return format!("{}: required", join(&path, field));
                }
                ValidationErrorKind::Enum { options } => {
                    format!("{} is not one of {}", error.instance(), options)
                }
                _ => error.to_string(),
            };
            if path.is_empty() { message } else { format!("{path}: {message}") }
        })
        .collect()
}

/// Fields the schema does not know, as `kubectl --validate=strict` reports them.
fn unknown_fields(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if properties.is_none() && additional.is_none() {
                return; // e.g. metadata: checked by the API server itself
            }
            for (key, field) in fields {
                // The API server knows these on every object; CRD schemas leave them out.
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = properties.and_then(|p| p.get(key)).or(additional);
                match sub {
                    Some(sub) => unknown_fields(sub, field, &join(path, key), problems),
                    None => {
                        let hint = properties
                            .and_then(|p| p.keys().find(|k| k.eq_ignore_ascii_case(key)))
                            .map(|k| format!("; did you mean {k}?"))
                            .unwrap_or_default();
                        problems.push(format!("{}: unknown field{hint}", join(path, key)));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// The API server prunes nulls of fields that are not nullable and keeps nullable ones as absent.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// `/spec/env/0/name` → `spec.env[0].name`.
fn dotted_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            out = join(&out, &segment);
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}
