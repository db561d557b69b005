//! The chart's PrometheusRule: every `expr` parses as PromQL (with promql-parser, the parser
//! GreptimeDB uses) and names only metrics the operator exports — its own and those of the
//! plugin runtime it runs discovery parsers in.

use std::{collections::BTreeSet, path::Path};

use hangar_operator::metrics::Metrics;
use hangar_plugin_runtime::PluginMetrics;
use prometheus::{Registry, core::Collector};
use promql_parser::parser::{self, Expr};

fn exported() -> BTreeSet<String> {
    let registry = Registry::new();
    let m = Metrics::new(&registry).unwrap();
    let p = PluginMetrics::new(&registry).unwrap();
    let collectors: [&dyn Collector; 8] = [
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
    assert_eq!(exprs.len(), 4, "the guide's two alerts, reconcile errors and plugin faults");
    let exported = exported();
    for expr in exprs {
        assert!(!expr.contains("{{"), "expr must stay literal (no templating): {expr}");
        let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let mut names = Vec::new();
        selected(&parsed, &mut names);
        assert!(!names.is_empty(), "{expr} selects no metric");
        for name in names {
            assert!(exported.contains(&name), "{expr}: {name} is not exported; exported: {exported:?}");
        }
    }
    assert!(parser::parse("mcp_operator_provider_state{state=\"Dead\"} ==").is_err(), "the parser does reject");
}
