//! The index tool search retrieves from: every tool's name, title, description, parameter names
//! and descriptions and the name of the server (or group) that lists it, tokenized as the ranker
//! tokenizes (`hangar_plugin_algorithms::search`). A query's terms score each tool by BM25F over
//! those fields, counted among the tools the caller may see only, so a tool the caller may not
//! call neither appears nor sways another's score. Built anew when a tool list changes.

pub mod evaluation;

use hangar_plugin_algorithms::search::{Candidate, Term, field, for_each_word, tokenize};
use rustc_hash::FxHashMap;
use serde_json::Value;

/// How much a word counts by the field it is in (BM25F field weights).
pub const FIELD_WEIGHTS: [(u8, f32); 5] = [
    (field::NAME, 3.0),
    (field::TITLE, 2.0),
    (field::DESCRIPTION, 1.0),
    (field::PARAMETERS, 0.5),
    (field::SERVER, 1.0),
];
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// One tool in the index.
#[derive(Debug)]
pub struct Doc {
    /// Its [`key`].
    pub name: String,
    /// The definition as listed, answered with the result.
    pub tool: Value,
    /// Weighted length of the tool's words, for BM25's length normalisation.
    length: f32,
}

/// Tools the index hands the ranker per search.
pub const CANDIDATES: usize = 50;

/// From this many tools, the build tokenizes on two threads.
const PARALLEL_FROM: usize = 2_000;

/// Tools tokenized: their words numbered in order of appearance, and per tool each word's
/// (number, fields, weighted frequency).
#[derive(Default)]
struct Words {
    words: Vec<Box<str>>,
    docs: Vec<Vec<(u32, u8, f32)>>,
}

impl Words {
    fn of(tools: &[(String, Value)], weights: &[(u8, f32)]) -> Self {
        let mut numbers: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let mut out = Words::default();
        // (word, field, weight) of one tool, merged per word after a sort.
        let mut seen: Vec<(u32, u8, f32)> = Vec::new();
        for (server, tool) in tools {
            let text = |key: &str| tool.get(key).and_then(Value::as_str).unwrap_or_default();
            seen.clear();
            let mut add = |bits: u8, text: &str| {
                let weight = weights.iter().find(|(b, _)| *b == bits).map_or(1.0, |(_, w)| *w);
                for_each_word(text, |word| {
                    let number = match numbers.get(word) {
                        Some(n) => *n,
                        None => {
                            let n = out.words.len() as u32;
                            numbers.insert(word.into(), n);
                            out.words.push(word.into());
                            n
                        }
                    };
                    seen.push((number, bits, weight));
                });
            };
            add(field::NAME, text("name"));
            add(field::TITLE, text("title"));
            add(field::DESCRIPTION, text("description"));
            if let Some(properties) = tool.pointer("/inputSchema/properties").and_then(Value::as_object) {
                for (parameter, schema) in properties {
                    add(field::PARAMETERS, parameter);
                    add(field::PARAMETERS, schema.get("description").and_then(Value::as_str).unwrap_or_default());
                }
            }
            add(field::SERVER, server);
            seen.sort_unstable_by_key(|(word, _, _)| *word);
            out.docs.push(
                seen.chunk_by(|a, b| a.0 == b.0)
                    .map(|group| {
                        let fields = group.iter().fold(0, |all, (_, f, _)| all | f);
                        (group[0].0, fields, group.iter().map(|(_, _, w)| w).sum())
                    })
                    .collect(),
            );
        }
        out
    }
}

/// A posting: a word in one tool, with where it is and how often (weighted).
#[derive(Clone, Copy, Debug)]
struct Posting {
    doc: u32,
    fields: u8,
    weighted_tf: f32,
}

#[derive(Debug, Default)]
pub struct Index {
    docs: Vec<Doc>,
    /// Server → its tools' names → their numbers.
    by_name: FxHashMap<Box<str>, FxHashMap<Box<str>, u32>>,
    /// Each word's number, and its postings by that number.
    words: FxHashMap<Box<str>, u32>,
    postings: Vec<Vec<Posting>>,
    average_length: f32,
}

/// What retrieval found for a query, among the tools visible to the caller.
#[derive(Debug, Default)]
pub struct Retrieved {
    /// Each query word's inverse document frequency among the visible tools; 0 when no visible
    /// tool has it or any of its terms.
    pub idf: Vec<f32>,
    /// Candidates (doc index, as the ranker sees it), best BM25F first, at most the limit asked.
    pub candidates: Vec<(u32, Candidate)>,
}

impl Index {
    /// Indexes `(server, tool)` pairs, each tool as its server lists it; it is known by
    /// [`key`]`(server, tool name)`.
    pub fn build(tools: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self::build_weighted(tools, &FIELD_WEIGHTS)
    }

    /// As [`Self::build`], with other field weights (all 1.0: plain BM25 over the whole text).
    pub fn build_weighted(tools: impl IntoIterator<Item = (String, Value)>, weights: &[(u8, f32)]) -> Self {
        let tools: Vec<(String, Value)> =
            tools.into_iter().filter(|(_, t)| t.get("name").is_some_and(Value::is_string)).collect();
        // Tokenizing is most of the work: a large catalogue is split in two, one half per core.
        let (first, second) = if tools.len() >= PARALLEL_FROM {
            let (a, b) = tools.split_at(tools.len() / 2);
            std::thread::scope(|scope| {
                let second = scope.spawn(|| Words::of(b, weights));
                (Words::of(a, weights), second.join().expect("tokenizing does not panic"))
            })
        } else {
            (Words::of(&tools, weights), Words::default())
        };
        let mut index = Index::default();
        index.docs.reserve(tools.len());
        let mut docs = tools.into_iter();
        let mut total = 0.0;
        for part in [first, second] {
            let numbers: Vec<u32> = part.words.iter().map(|w| index.word_id(w)).collect();
            for entries in part.docs {
                let (server, tool) = docs.next().expect("a tool per tokenized one");
                let own_name = tool["name"].as_str().unwrap_or_default();
                let doc = index.docs.len() as u32;
                let mut length = 0.0;
                for (word, fields, weighted_tf) in entries {
                    length += weighted_tf;
                    index.postings[numbers[word as usize] as usize].push(Posting { doc, fields, weighted_tf });
                }
                total += length;
                index.by_name.entry(server.as_str().into()).or_default().insert(own_name.into(), doc);
                index.docs.push(Doc { name: key(&server, own_name), tool, length });
            }
        }
        index.average_length = if index.docs.is_empty() { 1.0 } else { total / index.docs.len() as f32 };
        index
    }

    /// The word's number, numbering it if new.
    fn word_id(&mut self, word: &str) -> u32 {
        if let Some(id) = self.words.get(word) {
            return *id;
        }
        let id = self.postings.len() as u32;
        self.words.insert(word.into(), id);
        self.postings.push(Vec::new());
        id
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn doc(&self, id: u32) -> &Doc {
        &self.docs[id as usize]
    }

    /// The number of `server`'s tool `tool`.
    pub fn id_of(&self, server: &str, tool: &str) -> Option<u32> {
        self.by_name.get(server)?.get(tool).copied()
    }

    /// Approximate heap bytes the index holds (for the bench's size table).
    pub fn heap_bytes(&self) -> usize {
        let docs: usize = self.docs.iter().map(|d| d.name.len() + d.tool.to_string().len() + 64).sum();
        let words: usize = self.words.keys().map(|w| w.len() + 24).sum();
        let postings: usize =
            self.postings.iter().map(|p| 24 + p.capacity() * size_of::<Posting>()).sum::<usize>() + words;
        docs + postings + self.docs.len() * 48
    }

    /// A search as Hangar makes one, with the ranker's two steps given: the query's words, the
    /// terms `expand` makes of them, the best [`CANDIDATES`] among the visible tools, the order
    /// `rank` gives them (`rank(words, idf, candidates)`, not asked when there are none). The
    /// [`key`]s of the answer, best first.
    pub fn search<E>(
        &self,
        text: &str,
        visible: &[bool],
        expand: impl FnOnce(&[String]) -> Result<Vec<Term>, E>,
        rank: impl FnOnce(Vec<String>, Vec<f32>, &[Candidate]) -> Result<Vec<(u32, f32)>, E>,
    ) -> Result<Vec<String>, E> {
        let words = tokenize(text);
        let terms = expand(&words)?;
        let found = self.retrieve(words.len(), &terms, visible, CANDIDATES);
        if found.candidates.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, candidates): (Vec<u32>, Vec<Candidate>) = found.candidates.into_iter().unzip();
        let ranked = rank(words, found.idf, &candidates)?;
        Ok(ranked.iter().map(|(c, _)| self.doc(ids[*c as usize]).name.clone()).collect())
    }

    /// The best `limit` tools for `terms` (standing for `words` query words) among the visible
    /// ones, by BM25F; each with where it matched each query word. A query word counts once per
    /// tool: by its best term there (a word and its synonyms do not add up).
    pub fn retrieve(&self, words: usize, terms: &[Term], visible: &[bool], limit: usize) -> Retrieved {
        let n = visible.iter().filter(|v| **v).count() as f32;
        let idf_of = |df: f32| ((n - df + 0.5) / (df + 0.5)).ln_1p();
        // Per visible tool and query word: the best contribution and where it matched.
        let mut best = vec![0f32; self.docs.len() * words];
        let mut fields = vec![0u8; self.docs.len() * words];
        let mut touched: Vec<u32> = Vec::new();
        let mut idf = vec![0f32; words];
        let mut own = vec![false; words];
        for term in terms {
            let i = term.stands_for as usize;
            if i >= words {
                continue;
            }
            // A phrase a ranker gave looks up each of its words.
            for word in tokenize(&term.word) {
                let Some(postings) = self.words.get(word.as_str()).map(|id| &self.postings[*id as usize]) else {
                    continue;
                };
                let df = postings.iter().filter(|p| visible.get(p.doc as usize) == Some(&true)).count();
                if df == 0 {
                    continue;
                }
                let term_idf = idf_of(df as f32);
                // A word's rarity is its own, or, when no visible tool has it, its rarest term's.
                if term.weight >= 1.0 && !own[i] {
                    idf[i] = term_idf;
                    own[i] = true;
                } else if !own[i] {
                    idf[i] = idf[i].max(term_idf);
                }
                for p in postings.iter().filter(|p| visible.get(p.doc as usize) == Some(&true)) {
                    let doc = &self.docs[p.doc as usize];
                    let norm = 1.0 - B + B * doc.length / self.average_length;
                    let tf = p.weighted_tf / norm;
                    let score = term.weight * term_idf * tf * (K1 + 1.0) / (tf + K1);
                    let at = p.doc as usize * words + i;
                    if fields[at] == 0 && !(0..words).any(|w| fields[p.doc as usize * words + w] != 0) {
                        touched.push(p.doc);
                    }
                    best[at] = best[at].max(score);
                    fields[at] |= p.fields;
                }
            }
        }
        let mut ranked: Vec<(u32, f32)> =
            touched.into_iter().map(|doc| (doc, best[doc as usize * words..][..words].iter().sum())).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        let candidates = ranked
            .into_iter()
            .map(|(doc, score)| {
                let matched = fields[doc as usize * words..][..words].to_vec();
                (doc, Candidate { name: self.docs[doc as usize].name.clone(), lexical_score: score, matched })
            })
            .collect();
        Retrieved { idf, candidates }
    }
}

/// How the index knows a tool: its server's (or group's) name and its own, as the server lists it.
pub fn key(server: &str, tool: &str) -> String {
    format!("{server}/{tool}")
}

#[cfg(test)]
mod tests {
    use hangar_plugin_algorithms::search::DomainWords;
    use serde_json::json;

    use super::*;

    fn index() -> Index {
        Index::build([
            ("files".to_string(), json!({"name": "read_file", "description": "Read a file's contents"})),
            ("files".to_string(), json!({"name": "list_directory", "description": "List a directory"})),
            (
                "git".to_string(),
                json!({"name": "git_log", "description": "Show the commit history",
                "inputSchema": {"properties": {"max_count": {"description": "How many commits"}}}}),
            ),
        ])
    }

    fn search(index: &Index, query: &str, visible: &[bool]) -> Retrieved {
        let words = tokenize(query);
        let terms = DomainWords::default().expand(&words);
        index.retrieve(words.len(), &terms, visible, 10)
    }

    #[test]
    fn a_query_finds_tools_by_name_and_by_synonym() {
        let index = index();
        let all = [true; 3];
        let found = search(&index, "read file", &all);
        assert_eq!(index.doc(found.candidates[0].0).name, "files/read_file");
        assert_eq!(
            found.candidates[0].1.matched,
            [field::NAME | field::DESCRIPTION, field::NAME | field::DESCRIPTION | field::SERVER]
        );
        let found = search(&index, "folder", &all);
        assert_eq!(index.doc(found.candidates[0].0).name, "files/list_directory");
    }

    #[test]
    fn tools_the_caller_cannot_see_are_neither_found_nor_counted() {
        let index = index();
        let found = search(&index, "read file", &[false, true, true]);
        assert!(found.candidates.iter().all(|(d, _)| *d != 0));
        let missing = search(&index, "zebra", &[true; 3]);
        assert!(missing.candidates.is_empty());
        assert_eq!(missing.idf, [0.0]);
    }
}
