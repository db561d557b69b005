//! The chart's PrometheusRule and Grafana dashboard: every `expr` parses as PromQL (with
//! promql-parser, the parser GreptimeDB uses) and names only metrics Hangar exports — the
//! operator's, core's, and those of the plugin runtime both run.

use std::{collections::BTreeSet, path::Path};

use hangar_gateway::metrics::GatewayMetrics;
use hangar_operator::metrics::Metrics;
use hangar_plugin_runtime::PluginMetrics;
use prometheus::{Registry, core::Collector};
use promql_parser::parser::{self, Expr};

fn exported() -> BTreeSet<String> {
    let registry = Registry::new();
    let m = Metrics::new(&registry).unwrap();
    let p = PluginMetrics::new(&registry).unwrap();
    let g = GatewayMetrics::new(&registry).unwrap();
    let [latency, server_operation, client_operation] = g.histograms();
    let collectors: [&dyn Collector; 20] = [
        &g.calls,
        latency,
        &g.denied,
        &g.rate_limited,
        &g.server_state,
        &g.breaker_state,
        &g.starts,
        &g.picks,
        &g.backend_sessions,
        &g.cold_starts,
        server_operation,
        client_operation,
        &m.reconciles,
        &m.reconcile_duration,
        &m.provider_state,
        &m.tools_count,
        &m.health_check_failures,
        &p.faults,
        &p.compilations,
        &p.reloads,
    ];
    let mut names = BTreeSet::new();
    for c in collectors {
        for d in c.desc() {
            names.insert(d.fq_name.clone());
            if d.fq_name.ends_with("_seconds") {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{}{suffix}", d.fq_name));
                }
            }
        }
    }
    names
}

/// The metric names an expression selects.
fn selected(expr: &Expr, into: &mut Vec<String>) {
    match expr {
        Expr::VectorSelector(v) => into.extend(v.name.clone()),
        Expr::MatrixSelector(m) => into.extend(m.vs.name.clone()),
        Expr::Aggregate(a) => selected(&a.expr, into),
        Expr::Unary(u) => selected(&u.expr, into),
        Expr::Binary(b) => {
            selected(&b.lhs, into);
            selected(&b.rhs, into);
        }
        Expr::Paren(p) => selected(&p.expr, into),
        Expr::Subquery(s) => selected(&s.expr, into),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selected(a, into)),
        _ => {}
    }
}

#[test]
fn alert_expressions_parse_and_name_exported_metrics() {
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/mcp-hangar-operator/templates/prometheusrule.yaml");
    let text = std::fs::read_to_string(template).unwrap();
    let exprs: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).collect();
    assert_eq!(exprs.len(), 5, "the guide's two alerts, reconcile errors, plugin faults, open breakers");
    assert!(exprs.iter().all(|e| !e.contains("{{")), "expr must stay literal (no templating): {exprs:?}");
    check(exprs.iter().map(|e| e.to_string()));
    assert!(parser::parse("mcp_operator_provider_state{state=\"Dead\"} ==").is_err(), "the parser does reject");
}

#[test]
fn dashboard_queries_parse_and_name_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/mcp-hangar-operator/dashboards/hangar.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().replace("$__rate_interval", "1m").replace("$__range", "10m"))
        .collect();
    assert!(exprs.len() >= 12, "{exprs:?}");
    check(exprs.into_iter());
}

fn check(exprs: impl Iterator<Item = String>) {
    let exported = exported();
    for expr in exprs {
        let expr = expr.as_str();
        let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let mut names = Vec::new();
        selected(&parsed, &mut names);
        assert!(!names.is_empty(), "{expr} selects no metric");
        for name in names {
            assert!(exported.contains(&name), "{expr}: {name} is not exported; exported: {exported:?}");
        }
    }
}
