//! `/metrics` in the OpenMetrics text format (when a scraper asks for it, as Prometheus does),
//! which carries exemplars: the trace of a call that landed in a latency bucket. The
//! `prometheus` crate writes only the older text format, so this writes the same families.

use std::fmt::Write as _;

use prometheus::proto::{MetricFamily, MetricType};

use crate::metrics::GatewayMetrics;

/// What a scraper that accepts OpenMetrics is answered with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the request's Accept header asks for OpenMetrics.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn number(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// `{a="x",b="y"}` of a metric's labels (sorted by name, as the registry keeps them), and `le`.
pub(crate) fn label_set(pairs: impl Iterator<Item = (String, String)>, le: Option<f64>) -> String {
    let mut parts: Vec<String> = pairs.map(|(n, v)| format!("{n}=\"{}\"", escape(&v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{}\"", number(le)));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

/// Ends a bucket's line, with its exemplar when the gateway has one for it.
fn end_bucket(out: &mut String, exemplars: Option<&GatewayMetrics>, name: &str, key: &str) {
    if let Some(e) = exemplars.and_then(|m| m.exemplar(name, key)) {
        let _ = write!(out, " # {{trace_id=\"{}\"}} {} {:.3}", e.trace_id, number(e.value), e.at);
    }
    out.push('\n');
}

/// The families in OpenMetrics text, with the gateway's exemplars on histogram buckets.
pub fn encode(families: &[MetricFamily], exemplars: Option<&GatewayMetrics>) -> String {
    let mut out = String::new();
    for family in families {
        let name = family.name();
        let (kind, base) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# HELP {base} {}", escape(family.help()));
        let _ = writeln!(out, "# TYPE {base} {kind}");
        for metric in family.get_metric() {
            let pairs = || metric.get_label().iter().map(|l| (l.name().to_string(), l.value().to_string()));
            let labels = label_set(pairs(), None);
            match family.get_field_type() {
                MetricType::COUNTER => {
                    let _ = writeln!(out, "{base}_total{labels} {}", number(metric.get_counter().get_value()));
                }
                MetricType::GAUGE => {
                    let _ = writeln!(out, "{name}{labels} {}", number(metric.get_gauge().get_value()));
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let mut infinite = false;
                    for bucket in h.get_bucket() {
                        let le = bucket.upper_bound();
                        infinite |= le == f64::INFINITY;
                        let key = label_set(pairs(), Some(le));
                        let _ = write!(out, "{name}_bucket{key} {}", bucket.cumulative_count());
                        end_bucket(&mut out, exemplars, name, &key);
                    }
                    if !infinite {
                        let key = label_set(pairs(), Some(f64::INFINITY));
                        let _ = write!(out, "{name}_bucket{key} {}", h.get_sample_count());
                        end_bucket(&mut out, exemplars, name, &key);
                    }
                    let _ = writeln!(out, "{name}_sum{labels} {}", number(h.get_sample_sum()));
                    let _ = writeln!(out, "{name}_count{labels} {}", h.get_sample_count());
                }
                MetricType::SUMMARY | MetricType::UNTYPED => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    use super::*;

    #[test]
    fn counters_lose_total_in_their_family_name_and_histograms_end_at_inf() {
        let registry = Registry::new();
        let calls = IntCounterVec::new(Opts::new("x_calls_total", "calls \"quoted\""), &["server"]).unwrap();
        let latency =
            HistogramVec::new(HistogramOpts::new("x_seconds", "time").buckets(vec![0.1, 1.0]), &["server"]).unwrap();
        registry.register(Box::new(calls.clone())).unwrap();
        registry.register(Box::new(latency.clone())).unwrap();
        calls.with_label_values(&["a\"b"]).inc();
        latency.with_label_values(&["a"]).observe(0.5);
        let text = encode(&registry.gather(), None);
        assert!(text.contains("# TYPE x_calls counter\n"), "{text}");
        assert!(text.contains("x_calls_total{server=\"a\\\"b\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{server=\"a\",le=\"0.1\"} 0\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{server=\"a\",le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{server=\"a\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_count{server=\"a\"} 1\n") && text.ends_with("# EOF\n"), "{text}");
    }
}
