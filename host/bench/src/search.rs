//! Tool search: quality on the evaluation set (`tests/search/`: 243 tools of 24 real MCP servers
//! as their packages list them, and queries written in other words than the tools' own), beside
//! plain BM25 on the same set; and speed and size over 10,000 tools.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use std::sync::Arc;

use hangar_gateway::{
    Gateway,
    client::{self, session::SessionKeys},
    gateway::tool_search::{Mode, Settings},
    servers::BackendSpec,
};
use hangar_plugin_algorithms::search::{Term, tokenize};
use hangar_plugin_runtime::{PluginRuntime, RankQuery, RankerPlugin, RuntimeConfig};
use hangar_tool_search::{
    Index,
    evaluation::{EvaluationSet, default_dir},
};
use serde_json::{Value, json};

use crate::{Scale, format_duration, percentiles};

/// A search as Hangar makes it: the ranker's terms, the index's candidates, the ranker's order.
fn search(index: &Index, ranker: &RankerPlugin, visible: &[bool], text: &str) -> Vec<String> {
    let rank =
        |words, idf, candidates: &[_]| ranker.try_rank(&RankQuery { text: text.to_string(), words, idf }, candidates);
    index.search(text, visible, |words| ranker.try_expand(words), rank).expect("the built-in ranker answers")
}

/// Plain BM25: the query's own words over each tool's whole text, best score first; no answer
/// only when no tool has any of the words.
fn plain(index: &Index, visible: &[bool], text: &str) -> Vec<String> {
    let words = tokenize(text);
    let terms: Vec<Term> =
        words.iter().enumerate().map(|(i, w)| Term { word: w.clone(), stands_for: i as u32, weight: 1.0 }).collect();
    let found = index.retrieve(words.len(), &terms, visible, 50);
    found.candidates.into_iter().map(|(id, _)| index.doc(id).name.clone()).collect()
}

/// The 243 tools copied under other server names up to `n` tools.
fn scaled(tools: &[(String, Value)], n: usize) -> Vec<(String, Value)> {
    (0..).flat_map(|k| tools.iter().map(move |(s, t)| (format!("{s}-{k}"), t.clone()))).take(n).collect()
}

/// A Streamable HTTP MCP server (2026-07-28, JSON answers) listing `tools`.
fn catalogue_server(tools: Arc<Vec<Value>>) -> axum::Router {
    use axum::{Json, routing::post};
    axum::Router::new().route(
        "/mcp",
        post(move |Json(request): Json<Value>| {
            let tools = tools.clone();
            async move {
                let result = match request["method"].as_str().unwrap_or_default() {
                    "server/discover" => {
                        json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "resultType": "complete"})
                    }
                    "tools/list" => json!({"tools": *tools, "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}),
                    _ => return Json(json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "not found"}})),
                };
                Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            }
        }),
    )
}

/// `search_tools` over HTTP through the gateway (`--tool-search on`): `servers` servers each
/// listing every tool of the set, so what a search costs there beside the index and the ranker
/// is measured too (each server's policy says which tools the caller may see, as for
/// `tools/list`). p50, p99, searches, tools.
async fn through_gateway(
    set: &EvaluationSet,
    servers: usize,
    searches: usize,
) -> anyhow::Result<(Duration, Duration, usize, usize)> {
    let tools: Vec<Value> = set
        .tools
        .iter()
        .map(|(server, tool)| {
            let mut tool = tool.clone();
            tool["name"] = json!(format!("{server}_{}", tool["name"].as_str().unwrap_or_default()));
            tool
        })
        .collect();
    let endpoint = hangar_tests::serve_mcp(catalogue_server(Arc::new(tools.clone()))).await;
    let registry = prometheus::Registry::new();
    let cache = std::env::temp_dir().join("hangar-bench-cache");
    let plugins = PluginRuntime::new(RuntimeConfig { cache_dir: Some(cache), ..Default::default() }, &registry)?;
    let gateway = Gateway::new(plugins, &registry)?;
    gateway.configure_tool_search(Settings { mode: Mode::On, ..Default::default() });
    for i in 0..servers {
        let spec =
            serde_json::from_value(json!({"mode": "remote", "endpoint": endpoint, "healthCheck": {"enabled": false}}))?;
        let backend = BackendSpec::Http { endpoint: endpoint.clone(), headers: Default::default() };
        gateway.upsert_server_at("default", &format!("s{i}"), spec, backend).map_err(anyhow::Error::msg)?;
    }
    let want = servers * tools.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while gateway.list_tools(&Default::default()).await.len() < want {
        anyhow::ensure!(Instant::now() < deadline, "the servers' tools were not all listed within 2 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = Arc::new(client::AppState::new(gateway, SessionKeys::with_key(b"bench"), registry, None));
    let url = hangar_tests::serve_mcp(client::router(state)).await;
    let http = reqwest::Client::new();
    let mut times = Vec::with_capacity(searches);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..searches + 20 {
        let query = &set.queries[i % set.queries.len()].text;
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
            "name": "search_tools", "arguments": {"query": query},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
        }});
        let started = Instant::now();
        let answer: Value = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "search_tools")
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(answer["result"]["structuredContent"]["tools"].is_array(), "{answer}");
        // The first searches build the index and bind the ranker: warm-up.
        if i >= 20 {
            times.push(started.elapsed());
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let n = times.len();
    let (p50, p99) = percentiles(times);
    Ok((p50, p99, n, want))
}

pub fn run(scale: &Scale, runtime: &tokio::runtime::Runtime) -> anyhow::Result<String> {
    let set = EvaluationSet::load(&default_dir()).map_err(anyhow::Error::msg)?;
    let (tools, queries) = (&set.tools, &set.queries);
    let plugins = PluginRuntime::new(RuntimeConfig::default(), &prometheus::Registry::new())?;
    let ranker = RankerPlugin::new(&plugins, hangar_builtin_plugins::DEFAULT_RANKER, Vec::new())?;
    let index = Index::build(tools.clone());
    let flat: Vec<(u8, f32)> = hangar_tool_search::FIELD_WEIGHTS.iter().map(|(f, _)| (*f, 1.0)).collect();
    let plain_index = Index::build_weighted(tools.clone(), &flat);
    let all = vec![true; index.len()];
    let ours = set.judge(|q| search(&index, &ranker, &all, q));
    let bm25 = set.judge(|q| plain(&plain_index, &all, q));

    let mut md = String::new();
    let servers = tools.iter().map(|(s, _)| s.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    let _ = writeln!(
        md,
        "Evaluation set `tests/search/`: {} tools of {servers} real MCP servers (their `tools/list`, read by \
         `tests/search/collect.py` from the packages on npm and PyPI), {} queries written in other words than the \
         tools' own: {} that tools answer (similar tools on several servers count alike) and {} that no tool serves.\n",
        tools.len(),
        queries.len(),
        ours.answerable,
        ours.unanswerable
    );
    let _ = writeln!(md, "| quality | built-in ranker | plain BM25 | aim |\n| --- | --- | --- | --- |");
    for (what, a, b, aim) in [
        ("top-1 (answerable queries)", ours.top1(), bm25.top1(), "≥ 0.80"),
        ("recall@5 (answerable queries)", ours.recall5(), bm25.recall5(), "≥ 0.95"),
        ("no-answer queries answered with no tool", ours.empty_when_none(), bm25.empty_when_none(), "≥ 0.80"),
        ("answerable queries wrongly answered with none", ours.false_empty(), bm25.false_empty(), "≤ 0.05"),
    ] {
        let _ = writeln!(md, "| {what} | {a:.2} | {b:.2} | {aim} |");
    }
    md.push('\n');
    if !ours.misses.is_empty() {
        let _ = writeln!(md, "<details><summary>The built-in ranker's misses ({})</summary>\n", ours.misses.len());
        for m in &ours.misses {
            let _ = writeln!(md, "- {m}");
        }
        md.push_str("\n</details>\n\n");
    }

    // Speed and size over 10,000 tools.
    let big = scaled(tools, 10_000);
    let mut builds = Vec::new();
    let mut big_index = Index::default();
    for _ in 0..scale.repeats.max(3) {
        let tools = big.clone();
        drop(std::mem::take(&mut big_index));
        let started = Instant::now();
        big_index = Index::build(tools);
        builds.push(started.elapsed());
    }
    let (build_p50, _) = percentiles(builds);
    let visible = vec![true; big_index.len()];
    let rounds = (scale.plugin_calls / 50).clamp(200, 2_000);
    let mut whole = Vec::with_capacity(rounds);
    let mut lexical = Vec::with_capacity(rounds);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..rounds {
        let text = &queries[i % queries.len()].text;
        let started = Instant::now();
        let _ = search(&big_index, &ranker, &visible, text);
        whole.push(started.elapsed());
        let started = Instant::now();
        let _ = plain(&big_index, &visible, text);
        lexical.push(started.elapsed());
        if Instant::now() > deadline {
            break;
        }
    }
    let searches = whole.len();
    let (whole_p50, whole_p99) = percentiles(whole);
    let (lex_p50, lex_p99) = percentiles(lexical);
    let _ = writeln!(
        md,
        "| over {} tools | measured | aim |\n| --- | --- | --- |\n\
         | search p50 / p99 (ranker's terms, index, ranker's order; {searches} searches) | {} / {} | p99 ≤ 2 ms |\n\
         | the index's retrieval alone, p50 / p99 | {} / {} | |\n\
         | index build | {} | ≤ 100 ms |\n\
         | index size (heap, approximate) | {:.1} MB | ≤ 50 MB |\n",
        big_index.len(),
        format_duration(whole_p50),
        format_duration(whole_p99),
        format_duration(lex_p50),
        format_duration(lex_p99),
        format_duration(build_p50),
        big_index.heap_bytes() as f64 / 1e6,
    );
    let (p50, p99, n, count) =
        runtime.block_on(through_gateway(&set, 40, (scale.plugin_calls / 100).clamp(100, 500)))?;
    let _ = writeln!(
        md,
        "Through the endpoint (`search_tools` over loopback HTTP to an in-process gateway, {count} tools on 40 servers, \
         each server's policy asked which tools the caller may see, as for `tools/list`): p50 {} / p99 {} over {n} \
         searches.\n",
        format_duration(p50),
        format_duration(p99),
    );
    md.push_str(
        "Lexical only: no embedding model ships with Hangar (one would be a download or tens of MB in the image, and \
         a forward pass per query on 2 cores); domain words in the ranker do what synonyms can.\n",
    );
    Ok(md)
}
