//! The built-in `ranker` (`hangar:plugins@0.3.0`): widens a query with domain words (the
//! defaults and the `synonyms` configuration) and keeps, best first, the tools that cover enough
//! of it. An unconfigured ranker uses the default domain words.

wit_bindgen::generate!({ path: "../../wit/v0.3.0", world: "ranker" });

use std::cell::RefCell;

use exports::hangar::plugins::tool_ranker::{Candidate, Guest, Query, Ranked, Term};
use hangar::plugins::search_types::Fields;
use hangar_plugin_algorithms::search::{self, DomainWords, FieldBits, Tuning};

thread_local! {
    static WORDS: RefCell<DomainWords> = RefCell::new(DomainWords::default());
}

struct Plugin;

impl Guest for Plugin {
    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let synonyms = config.iter().find(|(k, _)| k == "synonyms").map_or("", |(_, v)| v.as_str());
        if let Some((key, _)) = config.iter().find(|(k, _)| k != "synonyms") {
            return Err(format!("unknown key {key:?}: the built-in ranker reads only `synonyms`"));
        }
        let words = DomainWords::configured(synonyms)?;
        WORDS.with_borrow_mut(|w| *w = words);
        Ok(())
    }

    fn expand(words: Vec<String>) -> Vec<Term> {
        WORDS
            .with_borrow(|w| w.expand(&words))
            .into_iter()
            .map(|t| Term { word: t.word, stands_for: t.stands_for, weight: t.weight })
            .collect()
    }

    fn rank(query: Query, candidates: Vec<Candidate>) -> Vec<Ranked> {
        let candidates: Vec<search::Candidate> = candidates
            .into_iter()
            .map(|c| search::Candidate {
                name: c.name,
                lexical_score: c.lexical_score,
                matched: c.matched.iter().map(FieldBits::field_bits).collect(),
            })
            .collect();
        WORDS
            .with_borrow(|w| w.rank(&query.words, &query.idf, &candidates, &Tuning::default()))
            .into_iter()
            .map(|(candidate, score)| Ranked { candidate, score })
            .collect()
    }
}

hangar_plugin_algorithms::impl_field_bits!(Fields);

export!(Plugin);
