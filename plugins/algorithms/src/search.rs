//! Tool search: the tokenizer the host's index and the ranker share, and the built-in ranker
//! (the `ranker` plugin; the host runs it natively only as the fallback when a ranker plugin
//! faults, and the bench as the baseline). Lexical: domain words widen a query, the share of
//! its weighted words a tool covers decides whether it fits at all, and where they matched (the
//! name counts most) orders what fits.

/// Words that carry no meaning in a request for a tool (a `match`, which the compiler turns
/// into a decision on length and bytes: the index's build asks once per word).
fn is_stop_word(word: &str) -> bool {
    matches!(
        word,
        "a" | "about"
            | "all"
            | "am"
            | "an"
            | "and"
            | "any"
            | "are"
            | "as"
            | "at"
            | "be"
            | "by"
            | "can"
            | "could"
            | "do"
            | "does"
            | "for"
            | "from"
            | "given"
            | "have"
            | "how"
            | "i"
            | "in"
            | "into"
            | "is"
            | "it"
            | "its"
            | "let"
            | "me"
            | "my"
            | "need"
            | "of"
            | "on"
            | "or"
            | "our"
            | "please"
            | "should"
            | "so"
            | "some"
            | "that"
            | "the"
            | "their"
            | "them"
            | "then"
            | "there"
            | "these"
            | "this"
            | "through"
            | "to"
            | "tool"
            | "us"
            | "use"
            | "using"
            | "want"
            | "was"
            | "we"
            | "what"
            | "when"
            | "where"
            | "which"
            | "will"
            | "with"
            | "would"
            | "you"
            | "your"
    )
}

/// The words of a text as the index keeps them: split at anything but letters and digits and
/// at camelCase humps, lowercase, stop words left out, stemmed.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for_each_word(text, |w| words.push(w.to_string()));
    words
}

/// [`tokenize`] without collecting: `f` sees each word in a buffer reused for the next (the
/// index's build tokenizes megabytes of descriptions).
pub fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    let mut word = String::with_capacity(32);
    let mut previous_lower = false;
    let mut done = |word: &mut String| {
        if !word.is_empty() && !is_stop_word(word) {
            stem_in_place(word);
            f(word);
        }
        word.clear();
    };
    if text.is_ascii() {
        // Most tool text: byte by byte, no decoding.
        for &b in text.as_bytes() {
            if b.is_ascii_alphanumeric() {
                if b.is_ascii_uppercase() && previous_lower {
                    done(&mut word);
                }
                previous_lower = !b.is_ascii_uppercase();
                word.push(b.to_ascii_lowercase() as char);
            } else if !word.is_empty() {
                previous_lower = false;
                done(&mut word);
            }
        }
        done(&mut word);
        return;
    }
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && previous_lower {
                done(&mut word);
            }
            previous_lower = c.is_lowercase() || c.is_numeric();
            word.extend(c.to_lowercase());
        } else {
            previous_lower = false;
            done(&mut word);
        }
    }
    done(&mut word);
}

/// A light suffix stemmer: plural and verb endings, and a final `e`, so that `create`,
/// `created`, `creates` and `creating` are one word, as are `directory` and `directories`.
pub fn stem(word: &str) -> String {
    let mut w = word.to_string();
    stem_in_place(&mut w);
    w
}

/// [`stem`] on the word's own buffer.
pub fn stem_in_place(w: &mut String) {
    let n = w.len();
    if n <= 3 || !w.is_ascii() {
        return;
    }
    if w.ends_with("ies") && n > 4 {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with("sses") || w.ends_with("xes") || w.ends_with("ches") || w.ends_with("shes") {
        w.truncate(w.len() - 2);
    } else if w.ends_with("ing") && n > 5 {
        w.truncate(w.len() - 3);
        undouble(w);
    } else if w.ends_with("ed") && n > 4 {
        w.truncate(w.len() - 2);
        undouble(w);
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.truncate(w.len() - 1);
    }
    if w.ends_with('e') && w.len() > 3 {
        w.truncate(w.len() - 1);
    }
}

/// `running` → `runn` → `run`; `pulled` stays `pull`.
fn undouble(w: &mut String) {
    let b = w.as_bytes();
    let n = b.len();
    if n >= 3 && b[n - 1] == b[n - 2] && !matches!(b[n - 1], b'l' | b's' | b'z') {
        w.truncate(n - 1);
    }
}

/// Words of one meaning in tool requests; each word of a set stands for the others. Written
/// plainly, stemmed when used. Users add their own with the ranker's `synonyms` configuration.
const DOMAIN_WORDS: &[&[&str]] = &[
    &["search", "find", "lookup", "query", "look"],
    &["list", "enumerate", "show", "browse"],
    &["get", "fetch", "retrieve", "obtain", "read", "show"],
    &["read", "open", "view", "load", "content"],
    &["write", "save", "store", "put"],
    &["create", "make", "new", "add", "open"],
    &["delete", "remove", "erase", "drop", "destroy", "forget"],
    &["update", "edit", "modify", "change", "patch", "amend"],
    &["move", "rename", "relocate"],
    &["directory", "folder", "dir"],
    &["file", "document"],
    &["repository", "repo", "project"],
    &["issue", "ticket", "bug"],
    &["pull", "pr", "merge"],
    &["message", "post", "chat", "send", "reply"],
    &["channel", "room", "conversation"],
    &["user", "member", "person", "people", "profile", "account", "who"],
    &["whoami", "identity", "logged"],
    &["review", "approve", "approval"],
    &["current", "now", "today", "present"],
    &["multiple", "several", "many", "batch"],
    &["page", "web", "website", "url", "site", "link", "webpage", "browser"],
    &["navigate", "go", "visit", "goto"],
    &["screenshot", "capture", "snapshot", "picture"],
    &["image", "picture", "photo", "png"],
    &["click", "press", "tap"],
    &["fill", "type", "enter", "input"],
    &["time", "clock", "hour", "date"],
    &["timezone", "zone", "tz"],
    &["convert", "transform"],
    &["fetch", "download", "retrieve", "grab", "scrape"],
    &["diff", "difference", "compare", "change"],
    &["log", "history"],
    &["commit", "check", "record"],
    &["entity", "node", "thing"],
    &["relation", "relationship", "link", "connection", "edge"],
    &["observation", "fact", "note", "remember", "memory"],
    &["graph", "knowledge", "memory"],
    &["place", "location", "address", "spot", "venue"],
    &["geocode", "coordinate", "latitude", "longitude"],
    &["direction", "route", "navigate", "travel"],
    &["distance", "far", "matrix"],
    &["nearby", "around", "near", "close"],
    &["elevation", "altitude", "height"],
    &["pod", "container", "workload"],
    &["kubernetes", "k8s", "kubectl", "cluster"],
    &["deployment", "deploy", "rollout"],
    &["scale", "replica", "resize"],
    &["sql", "database", "db", "table", "query"],
    &["key", "value", "cache", "redis"],
    &["think", "reason", "thought", "plan", "step"],
    &["generate", "produce", "make", "art", "draw"],
    &["sum", "add", "total", "plus", "calculate"],
    &["echo", "repeat", "back"],
    &["sleep", "wait", "delay", "long", "running"],
    &["environment", "env", "variable"],
    &["allow", "permit", "permission", "access"],
    &["upload", "attach", "put"],
    &["status", "state", "health"],
    &["reaction", "react", "emoji"],
    &["thread", "reply"],
    &["comment", "remark", "reply"],
    &["branch", "fork"],
    &["tag", "label"],
    &["stage", "add", "index"],
    &["reset", "unstage", "undo"],
    &["checkout", "switch"],
    &["evaluate", "execute", "run", "script", "javascript"],
    &["hover", "mouse"],
    &["select", "choose", "option", "dropdown"],
    &["console", "log", "output"],
    &["network", "request", "http", "traffic"],
    &["tab", "window"],
    &["resize", "size", "viewport"],
    &["pdf", "print"],
    &["wait", "until", "appear"],
    &["close", "quit", "exit"],
    &["back", "previous", "forward"],
    &["drag", "drop"],
    &["dialog", "alert", "popup", "prompt"],
    &["knowledge", "base", "kb", "retrieval", "rag"],
];

/// A word to look up for one of the query's words.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub word: String,
    /// Index of the query word it stands for.
    pub stands_for: u32,
    pub weight: f32,
}

/// How much a domain word counts beside the query's own word.
const SYNONYM_WEIGHT: f32 = 0.6;

/// The built-in ranker's domain words: the defaults and the user's (`synonyms` configuration:
/// `word=other,words;word2=...`, each entry a set like the defaults).
#[derive(Clone, Debug)]
pub struct DomainWords {
    sets: Vec<Vec<String>>,
}

impl Default for DomainWords {
    fn default() -> Self {
        Self { sets: DOMAIN_WORDS.iter().map(|set| set.iter().map(|w| stem(w)).collect()).collect() }
    }
}

impl DomainWords {
    /// The defaults and the sets of a `synonyms` configuration value.
    pub fn configured(synonyms: &str) -> Result<Self, String> {
        let mut words = Self::default();
        for entry in synonyms.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((word, others)) = entry.split_once('=') else {
                return Err(format!("synonyms: {entry:?} is not word=other,words (entries are separated by ';')"));
            };
            let set: Vec<String> = std::iter::once(word).chain(others.split(',')).flat_map(tokenize).collect();
            if set.len() < 2 {
                return Err(format!("synonyms: {entry:?} names no other word for {word:?}"));
            }
            words.sets.push(set);
        }
        Ok(words)
    }

    /// Each query word itself, and the words of every set it belongs to.
    pub fn expand(&self, words: &[String]) -> Vec<Term> {
        let mut terms: Vec<Term> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let i = i as u32;
            terms.push(Term { word: word.clone(), stands_for: i, weight: 1.0 });
            for set in self.sets.iter().filter(|s| s.contains(word)) {
                for other in set.iter().filter(|o| *o != word) {
                    if !terms.iter().any(|t| t.stands_for == i && &t.word == other) {
                        terms.push(Term { word: other.clone(), stands_for: i, weight: SYNONYM_WEIGHT });
                    }
                }
            }
        }
        terms.truncate(MAX_TERMS);
        terms
    }
}

/// Most terms one query may look up.
pub const MAX_TERMS: usize = 256;

/// Where a query word matched a tool, as bits: the WIT `fields` flags in their order.
pub mod field {
    pub const NAME: u8 = 1;
    pub const TITLE: u8 = 2;
    pub const DESCRIPTION: u8 = 4;
    pub const PARAMETERS: u8 = 8;
    pub const SERVER: u8 = 16;
}

/// The [`field`] bits as a WIT `fields` flags type (each side's generated type: the plugin's, the
/// host's); [`impl_field_bits!`](crate::impl_field_bits) writes the impl.
pub trait FieldBits: Sized {
    fn from_field_bits(bits: u8) -> Self;
    fn field_bits(&self) -> u8;
}

/// Implements [`FieldBits`] for a type with the WIT `fields` flags.
#[macro_export]
macro_rules! impl_field_bits {
    ($fields:ty) => {
        impl $crate::search::FieldBits for $fields {
            fn from_field_bits(bits: u8) -> Self {
                Self::table()
                    .into_iter()
                    .filter(|(bit, _)| bits & bit != 0)
                    .fold(<$fields>::empty(), |all, (_, flag)| all | flag)
            }
            fn field_bits(&self) -> u8 {
                Self::table().into_iter().filter(|(_, flag)| self.contains(*flag)).fold(0, |all, (bit, _)| all | bit)
            }
        }

        impl $fields {
            fn table() -> [(u8, $fields); 5] {
                use $crate::search::field;
                [
                    (field::NAME, <$fields>::NAME),
                    (field::TITLE, <$fields>::TITLE),
                    (field::DESCRIPTION, <$fields>::DESCRIPTION),
                    (field::PARAMETERS, <$fields>::PARAMETERS),
                    (field::SERVER, <$fields>::SERVER),
                ]
            }
        }
    };
}

/// A tool the index found, as the ranker sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The tool's name as the caller sees it.
    pub name: String,
    pub lexical_score: f32,
    /// Per query word: the [`field`] bits where it matched.
    pub matched: Vec<u8>,
}

/// Tunables of the built-in ranking (the defaults were chosen on the evaluation set of
/// `tests/search/`; see docs/tool-search.md).
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// How much a query word no tool has weighs, as a share of the query's mean known word
    /// (such words are often values: a city, a name).
    pub unknown_weight: f32,
    /// Below this share of the query's weight covered, a tool does not fit.
    pub min_coverage: f32,
    /// A tool that matched none of the query's words in its name, title or server name fits only
    /// when it covers this share of the query.
    pub headless_coverage: f32,
    /// Candidates scoring under this share of the best one are left out.
    pub min_share_of_best: f32,
    /// How much the share of a tool's own name words the query asked for counts.
    pub name_precision: f32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            unknown_weight: 0.75,
            min_coverage: 0.45,
            headless_coverage: 0.75,
            min_share_of_best: 0.2,
            name_precision: 0.5,
        }
    }
}

impl DomainWords {
    /// The built-in ranking: `(candidate index, score)`, best first, only tools that fit.
    ///
    /// A tool fits when it covers enough of the query's meaning (the query words it matched,
    /// weighted by their rarity, over all of them), more if it matched none of them in its name,
    /// title or server name. What fits is ordered by where the words matched (the name or title most),
    /// the BM25F score, and how much of the tool's own name the query asked for.
    pub fn rank(&self, words: &[String], idf: &[f32], candidates: &[Candidate], tuning: &Tuning) -> Vec<(u32, f32)> {
        let known: Vec<f32> = idf.iter().copied().filter(|w| *w > 0.0).collect();
        if known.is_empty() {
            return Vec::new();
        }
        let mean_known = known.iter().sum::<f32>() / known.len() as f32;
        let weight = |w: f32| if w > 0.0 { w } else { tuning.unknown_weight * mean_known };
        let total: f32 = idf.iter().map(|w| weight(*w)).sum();
        let asked: Vec<String> = self.expand(words).into_iter().map(|t| t.word).collect();
        let best_lexical = candidates.iter().map(|c| c.lexical_score).fold(0.0f32, f32::max).max(f32::EPSILON);
        let mut scored: Vec<(u32, f32)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let (mut covered, mut placed, mut head) = (0.0, 0.0, false);
                for (w, bits) in idf.iter().zip(&c.matched) {
                    if *bits != 0 {
                        covered += weight(*w);
                        placed += weight(*w) * place_weight(*bits);
                        head |= bits & (field::NAME | field::TITLE | field::SERVER) != 0;
                    }
                }
                let coverage = covered / total;
                if coverage < tuning.min_coverage || (!head && coverage < tuning.headless_coverage) {
                    return None;
                }
                let own = tokenize(c.name.rsplit("__").next().unwrap_or(&c.name));
                let precision = if own.is_empty() {
                    1.0
                } else {
                    own.iter().filter(|w| asked.contains(w)).count() as f32 / own.len() as f32
                };
                let score = coverage
                    * (placed / total + c.lexical_score / best_lexical)
                    * (1.0 - tuning.name_precision + tuning.name_precision * precision);
                Some((i as u32, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(&(_, best)) = scored.first() {
            scored.retain(|&(_, s)| s >= best * tuning.min_share_of_best);
        }
        scored
    }
}

/// How much a match counts by where it is: the best of its places.
fn place_weight(bits: u8) -> f32 {
    if bits & field::NAME != 0 {
        1.0
    } else if bits & field::TITLE != 0 {
        0.8
    } else if bits & field::DESCRIPTION != 0 {
        0.5
    } else if bits & field::SERVER != 0 {
        0.4
    } else {
        0.3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_case_and_separators_and_stem() {
        assert_eq!(tokenize("readFile"), ["read", "fil"]);
        assert_eq!(tokenize("list_directories in a Folder"), ["list", "directory", "folder"]);
        assert_eq!(tokenize("Creating created creates create"), ["creat"; 4]);
        assert_eq!(tokenize("get-pull-request"), ["get", "pull", "request"]);
        assert_eq!(tokenize("running"), ["run"]);
    }

    #[test]
    fn domain_words_widen_a_query_once_per_word() {
        let words = DomainWords::default();
        let terms = words.expand(&tokenize("folder"));
        assert_eq!(terms[0], Term { word: "folder".into(), stands_for: 0, weight: 1.0 });
        assert!(terms.iter().any(|t| t.word == "directory" && t.weight < 1.0));
        let custom = DomainWords::configured("invoice=bill, receipt").unwrap();
        assert!(custom.expand(&tokenize("bill")).iter().any(|t| t.word == "invoic"));
        assert!(DomainWords::configured("invoice").unwrap_err().contains("word=other,words"));
    }

    #[test]
    fn a_tool_that_covers_too_little_of_the_query_does_not_fit() {
        let idf = [2.0, 1.0];
        let both =
            Candidate { name: "both".into(), lexical_score: 3.0, matched: vec![field::NAME, field::DESCRIPTION] };
        let rare_only = Candidate { name: "rare".into(), lexical_score: 2.0, matched: vec![field::DESCRIPTION, 0] };
        let common_only = Candidate { name: "common".into(), lexical_score: 1.0, matched: vec![0, field::NAME] };
        let words = DomainWords::default();
        let query = ["rare".to_string(), "common".to_string()];
        let ranked = words.rank(&query, &idf, &[common_only, rare_only, both], &Tuning::default());
        assert_eq!(ranked.iter().map(|r| r.0).collect::<Vec<_>>(), [2]);
        assert!(words.rank(&query[..1], &[0.0], &[], &Tuning::default()).is_empty());
    }
}
