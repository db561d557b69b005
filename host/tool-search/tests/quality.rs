//! The built-in ranking (the same code the `ranker` plugin runs, here natively) on the evaluation
//! set of `tests/search/`: it must meet the aims of the tool-search issue — top-1 ≥ 0.8,
//! recall@5 ≥ 0.95, at least 80 % of the queries no tool serves answered with no tool, at most
//! 5 % of the others answered with none. `hangar-bench` reports the same figures through the
//! plugin, beside plain BM25.

use hangar_plugin_algorithms::search::{DomainWords, Tuning};
use hangar_tool_search::{
    Index,
    evaluation::{EvaluationSet, default_dir},
};

#[test]
fn the_built_in_ranking_meets_the_aims_on_the_evaluation_set() {
    let set = EvaluationSet::load(&default_dir()).unwrap();
    let index = Index::build(set.tools.clone());
    let domain = DomainWords::default();
    let visible = vec![true; index.len()];
    let quality = set.judge(|text| {
        let found = index.search(
            text,
            &visible,
            |words| Ok::<_, ()>(domain.expand(words)),
            |words, idf, candidates| Ok(domain.rank(&words, &idf, candidates, &Tuning::default())),
        );
        found.unwrap()
    });
    let report = format!(
        "top-1 {:.2}, recall@5 {:.2}, no-answer empty {:.2}, false empties {:.2}\n{}",
        quality.top1(),
        quality.recall5(),
        quality.empty_when_none(),
        quality.false_empty(),
        quality.misses.join("\n")
    );
    println!("{report}");
    assert!(quality.answerable >= 80 && quality.unanswerable >= 20, "{report}");
    assert!(quality.meets_aims(), "{report}");
}
