//! Tool search, a method family of its own: `tools/list` as the search mode shapes it, and
//! Hangar's two tools: `search_tools` (the best tools for a task, with their full definitions)
//! and `call_tool` (a found tool by name, for clients that call only listed tools). Results are
//! exactly the tools `tools/call` would allow this caller: the index is searched among the
//! caller's visible tools only. Nothing is kept per session, so a search and the call after it
//! work without one and on any replica.

use std::{collections::HashMap, sync::Arc, time::Instant};

use hangar_plugin_algorithms::{glob, search::tokenize};
use hangar_plugin_runtime::RankQuery;
use hangar_tool_search::{CANDIDATES, Index};
use serde_json::{Value, json};

use crate::{
    gateway::{
        CallContext, CallError, Gateway,
        tool_search::{CALL_TOOL, Mode, SEARCH_TOOL, VisibleTools},
    },
    protocol::{RpcError, code},
};

/// Results of one search at most, and by default.
const MOST_RESULTS: u64 = 50;
const DEFAULT_RESULTS: u64 = 5;

/// `tools/list`: every visible tool, or (search on, or auto with more than `max_tools`) the
/// search tools and the pinned ones, a surface that stays the same as servers come and go.
pub async fn list_tools(gateway: &Gateway, ctx: &CallContext) -> Vec<Value> {
    let settings = gateway.tool_search.settings();
    if settings.mode == Mode::Off {
        return gateway.list_tools(ctx).await;
    }
    let visible = visible(gateway, ctx).await;
    if settings.mode == Mode::Auto && visible.names.len() <= settings.max_tools {
        return gateway.list_tools(ctx).await;
    }
    let pinned = (0..visible.names.len())
        .filter(|&i| settings.pinned.iter().any(|p| glob::matches(p, &visible.names[i])))
        .filter_map(|i| visible.definition(i));
    [search_tool_definition(), call_tool_definition()].into_iter().chain(pinned).collect()
}

/// The tools the caller may see, as [`VisibleTools`]: decided again only when the catalogue or a
/// plugin changed since this caller last asked (names only are gathered; the definitions are the
/// index's, copied only for what is answered).
async fn visible(gateway: &Gateway, ctx: &CallContext) -> Arc<VisibleTools> {
    let caller = &ctx.caller;
    let fingerprint =
        format!("{}|{}|{}|{:?}|{:?}", caller.verified, caller.subject, caller.client_id, caller.scopes, caller.groups);
    let installs = gateway.plugins.installs();
    if let Some(kept) = gateway.tool_search.visible_of(&fingerprint, installs) {
        return kept;
    }
    let generation = gateway.tool_search.generation();
    let listings = gateway.visible_names(ctx).await;
    let index = gateway.tool_search.index(|| Index::build(gateway.catalogue()));
    let ids: Vec<Option<u32>> =
        listings.iter().flat_map(|(target, names)| names.iter().map(|n| index.id_of(target.name(), n))).collect();
    let named: Vec<(&_, Vec<&str>)> =
        listings.iter().map(|(t, names)| (t, names.iter().map(String::as_str).collect())).collect();
    let names = gateway.expose_names("tool", &named);
    let mut seen = vec![false; index.len()];
    let mut position = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = *id {
            seen[id as usize] = true;
            position.insert(id, i);
        }
    }
    let visible = Arc::new(VisibleTools { index, names, ids, seen, position });
    gateway.tool_search.keep_visible(fingerprint, generation, installs, visible.clone());
    visible
}

/// `tools/call`: Hangar's search tools while search is on, else the named tool through routing.
pub async fn call_tool(gateway: &Gateway, name: &str, arguments: Value, ctx: &CallContext) -> Result<Value, RpcError> {
    if gateway.tool_search.enabled() {
        match name {
            SEARCH_TOOL => return Ok(search(gateway, &arguments, ctx).await.unwrap_or_else(|why| tool_error(&why))),
            CALL_TOOL => return call_found(gateway, arguments, ctx).await,
            // Only while search is on can a call follow a search (and the recall metric asks).
            _ => gateway.tool_search.called(&caller_key(ctx), name),
        }
    }
    gateway.call_tool(name, arguments, ctx).await.map_err(|e| e.to_rpc())
}

/// `call_tool`: the tool named in its arguments; a name that is not a tool this caller may call
/// is a tool error naming the argument.
async fn call_found(gateway: &Gateway, mut arguments: Value, ctx: &CallContext) -> Result<Value, RpcError> {
    let Some(name) = arguments.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string) else {
        return Ok(tool_error("arguments.name: required, the name of a tool as search_tools answered it"));
    };
    if name == SEARCH_TOOL || name == CALL_TOOL {
        return Ok(tool_error(&format!("arguments.name: {name:?} is Hangar's own tool; call it directly")));
    }
    let inner = match arguments.get_mut("arguments").map(Value::take) {
        None | Some(Value::Null) => json!({}),
        Some(object @ Value::Object(_)) => object,
        Some(_) => return Ok(tool_error("arguments.arguments: must be an object, the found tool's arguments")),
    };
    gateway.tool_search.called(&caller_key(ctx), &name);
    // The client's Mcp-Param headers belong to call_tool's own arguments, not the found tool's.
    let ctx = &CallContext { param_headers: None, ..ctx.clone() };
    match gateway.call_tool(&name, inner, ctx).await {
        Err(CallError::Refused(e)) if e.code == code::INVALID_PARAMS => {
            Ok(tool_error(&format!("arguments.name: {}", e.message)))
        }
        other => other.map_err(|e| e.to_rpc()),
    }
}

/// `search_tools`: the best tools for the query among those the caller may call, or a reason
/// (a tool error) when the arguments are wrong.
async fn search(gateway: &Gateway, arguments: &Value, ctx: &CallContext) -> Result<Value, String> {
    let started = Instant::now();
    let counted = |outcome: &str| gateway.tool_search.metrics.queries.with_label_values(&[outcome]).inc();
    let query = match arguments.get("query").and_then(Value::as_str).map(str::trim) {
        Some(q) if !q.is_empty() => q,
        _ => {
            counted("invalid");
            return Err(
                "arguments.query: required, a non-empty string saying what the tool should do (e.g. \"read a file\")"
                    .into(),
            );
        }
    };
    let limit = match arguments.get("limit") {
        None | Some(Value::Null) => DEFAULT_RESULTS,
        Some(v) => match v.as_u64().filter(|n| (1..=MOST_RESULTS).contains(n)) {
            Some(n) => n,
            None => {
                counted("invalid");
                return Err(format!(
                    "arguments.limit: an integer from 1 to {MOST_RESULTS} (default {DEFAULT_RESULTS}), not {v}"
                ));
            }
        },
    };

    let visible = visible(gateway, ctx).await;
    let words = tokenize(query);
    let ranker = gateway.tool_search.ranker(&gateway.plugins);
    let (terms, _) = ranker.expand(words.clone()).await;
    let retrieved = visible.index.retrieve(words.len(), &terms, &visible.seen, CANDIDATES);
    let (ids, candidates): (Vec<u32>, Vec<_>) = retrieved
        .candidates
        .into_iter()
        .map(|(id, mut c)| {
            c.name = visible.names[visible.position[&id]].clone();
            (id, c)
        })
        .unzip();
    let query = RankQuery { text: query.to_string(), words, idf: retrieved.idf };
    let (ranked, _) = if candidates.is_empty() { (Vec::new(), None) } else { ranker.rank(query, candidates).await };

    let found: Vec<Value> = ranked
        .into_iter()
        .take(limit as usize)
        .map(|(candidate, score)| {
            let id = ids[candidate as usize];
            let tool = &visible.index.doc(id).tool;
            let mut answer = json!({
                "name": visible.names[visible.position[&id]],
                "description": tool.get("description").cloned().unwrap_or(json!("")),
                "inputSchema": tool.get("inputSchema").cloned().unwrap_or(json!({"type": "object"})),
                "score": score,
            });
            if let Some(title) = tool.get("title") {
                answer["title"] = title.clone();
            }
            answer
        })
        .collect();
    counted(if found.is_empty() { "empty" } else { "found" });
    gateway.tool_search.metrics.duration.observe(started.elapsed().as_secs_f64());
    gateway
        .tool_search
        .remember(caller_key(ctx), found.iter().filter_map(|t| t["name"].as_str().map(str::to_string)).collect());
    tracing::debug!(results = found.len(), took = ?started.elapsed(), "tool search");
    let structured = json!({"tools": found});
    let text = if found.is_empty() {
        "No tool fits this query. Try other words, or fewer.".to_string()
    } else {
        structured.to_string()
    };
    Ok(json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": false}))
}

/// Who searched and then called, for the recall metric: the verified subject (and client), else
/// the session, else everyone unnamed together.
fn caller_key(ctx: &CallContext) -> String {
    let caller = &ctx.caller;
    match (caller.verified, &ctx.session) {
        (true, _) => format!("sub:{}/{}", caller.subject, caller.client_id),
        (false, Some(session)) => format!("session:{session}"),
        (false, None) => format!("name:{}", caller.subject),
    }
}

fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

fn search_tool_definition() -> Value {
    json!({
        "name": SEARCH_TOOL,
        "title": "Search tools",
        "description": "Find the tools that can do a task among all the tools this endpoint offers you. Describe the task in a few words (e.g. \"read a file\", \"open an issue in a GitHub repository\"). The answer lists the best matching tools with their full definitions, best first, or none when no tool fits. Call a found tool by its name, directly or through call_tool.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What the tool should do, in a few words."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MOST_RESULTS, "default": DEFAULT_RESULTS,
                    "description": "Most tools to answer."}
            },
            "required": ["query"]
        },
        "outputSchema": {
            "type": "object",
            "properties": {"tools": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                "inputSchema": {"type": "object"}, "score": {"type": "number"}
            }, "required": ["name", "description", "inputSchema", "score"]}}},
            "required": ["tools"]
        },
        "annotations": {"readOnlyHint": true, "openWorldHint": false}
    })
}

fn call_tool_definition() -> Value {
    json!({
        "name": CALL_TOOL,
        "title": "Call a found tool",
        "description": "Call a tool that search_tools found, by its name, with its arguments (for tools your tool list does not show).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The tool's name, as search_tools answered it."},
                "arguments": {"type": "object", "description": "The tool's arguments, as its inputSchema says."}
            },
            "required": ["name"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tools_are_described_for_clients_that_validate() {
        for definition in [search_tool_definition(), call_tool_definition()] {
            assert_eq!(definition["inputSchema"]["type"], "object");
            assert!(definition["description"].as_str().unwrap().len() > 40);
        }
        assert_eq!(search_tool_definition()["inputSchema"]["required"], json!(["query"]));
    }
}
