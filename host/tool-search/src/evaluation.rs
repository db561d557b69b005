//! The evaluation set of `tests/search/` (real servers' tools and queries in other words than
//! theirs) and how a search is judged on it; the quality test and `hangar-bench` share it.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One query and the tools (`server/tool`) that answer it; none for a query no tool serves.
pub struct Query {
    pub text: String,
    pub expect: Vec<String>,
}

pub struct EvaluationSet {
    /// `(server, tool)` as the servers list them.
    pub tools: Vec<(String, Value)>,
    pub queries: Vec<Query>,
}

/// `tests/search/` of this repository.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/search")
}

impl EvaluationSet {
    /// `catalog.json` and `queries.json` of `dir`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read = |name: &str| -> Result<Value, String> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        };
        let catalog = read("catalog.json")?;
        let tools = catalog
            .as_object()
            .ok_or("catalog.json: an object of server → tools")?
            .iter()
            .flat_map(|(server, tools)| {
                tools.as_array().into_iter().flatten().map(move |t| (server.clone(), t.clone()))
            })
            .collect();
        let queries = read("queries.json")?["queries"]
            .as_array()
            .ok_or("queries.json: queries must be a list")?
            .iter()
            .map(|q| Query {
                text: q["query"].as_str().unwrap_or_default().to_string(),
                expect: q["expect"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect(),
            })
            .collect();
        Ok(Self { tools, queries })
    }

    /// How `search` (a query → tool keys, best first) does on the queries.
    pub fn judge(&self, search: impl Fn(&str) -> Vec<String>) -> Quality {
        let mut q = Quality::default();
        for query in &self.queries {
            let found = search(&query.text);
            let shown = &found[..found.len().min(3)];
            if query.expect.is_empty() {
                q.unanswerable += 1;
                if found.is_empty() {
                    q.empty_when_none += 1;
                } else {
                    q.misses.push(format!("{:?}: no tool fits, answered {shown:?}", query.text));
                }
                continue;
            }
            q.answerable += 1;
            let hit = |n: usize| found.iter().take(n).any(|f| query.expect.contains(f));
            q.top1 += hit(1) as usize;
            q.recall5 += hit(5) as usize;
            q.false_empty += found.is_empty() as usize;
            if !hit(1) {
                q.misses.push(format!("{:?}: expected {}, answered {shown:?}", query.text, query.expect[0]));
            }
        }
        q
    }
}

/// Counts of a judged run.
#[derive(Debug, Default)]
pub struct Quality {
    pub answerable: usize,
    pub top1: usize,
    pub recall5: usize,
    pub unanswerable: usize,
    pub empty_when_none: usize,
    pub false_empty: usize,
    pub misses: Vec<String>,
}

impl Quality {
    pub fn top1(&self) -> f64 {
        share(self.top1, self.answerable)
    }
    pub fn recall5(&self) -> f64 {
        share(self.recall5, self.answerable)
    }
    /// Share of the queries no tool serves that were answered with no tool.
    pub fn empty_when_none(&self) -> f64 {
        share(self.empty_when_none, self.unanswerable)
    }
    /// Share of the answerable queries answered with no tool.
    pub fn false_empty(&self) -> f64 {
        share(self.false_empty, self.answerable)
    }
    /// Whether the aims of the tool-search issue are met.
    pub fn meets_aims(&self) -> bool {
        self.top1() >= 0.8 && self.recall5() >= 0.95 && self.empty_when_none() >= 0.8 && self.false_empty() <= 0.05
    }
}

fn share(n: usize, of: usize) -> f64 {
    n as f64 / of.max(1) as f64
}
