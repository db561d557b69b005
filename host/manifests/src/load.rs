//! Finding manifest files and splitting them into documents.

use std::{
    collections::HashSet,
    fmt, fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::Problem;

/// Where a document came from: file and 1-based position in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    pub doc: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.doc)
    }
}

/// One YAML document, as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub origin: Origin,
    pub value: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("no such file or folder")]
    Missing,
}

/// The `.yaml`/`.yml` files named, and those below the folders named (sorted, hidden ones
/// skipped). A folder reached again through a link (a loop) is read once.
fn manifest_files(path: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<(), LoadError> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !path.is_dir() {
        return Err(LoadError::Missing);
    }
    if !seen.insert(fs::canonicalize(path)?) {
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let p = entry.path();
        let name = entry.file_name();
        // Hidden entries, and folders of installed packages or build outputs, hold no manifests.
        if name.to_string_lossy().starts_with('.')
            || (p.is_dir() && matches!(name.to_str(), Some("node_modules" | "target")))
        {
            continue;
        }
        if p.is_dir() {
            manifest_files(&p, out, seen)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// Splits one file's text into documents; empty documents are skipped.
pub fn parse_documents(file: &Path, text: &str) -> (Vec<Document>, Vec<Problem>) {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for (index, deserializer) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin { file: file.to_path_buf(), doc: index + 1 };
        let parsed = serde_yaml::Value::deserialize(deserializer)
            .map_err(|e| format!("invalid YAML: {e}"))
            .and_then(|yaml| serde_json::to_value(yaml).map_err(|e| format!("not representable as JSON: {e}")));
        match parsed {
            Ok(serde_json::Value::Null) => {}
            Ok(value) => documents.push(Document { origin, value }),
            Err(message) => {
                problems.push(Problem { origin, object: String::new(), message });
                // The YAML stream cannot be trusted past a syntax error.
                break;
            }
        }
    }
    (documents, problems)
}

/// Every document in every manifest under `paths`; unreadable files become problems.
pub fn load_paths(paths: &[impl AsRef<Path>]) -> (Vec<Document>, Vec<Problem>) {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let mut files = Vec::new();
        if let Err(e) = manifest_files(path, &mut files, &mut HashSet::new()) {
            problems.push(Problem {
                origin: Origin { file: path.to_path_buf(), doc: 0 },
                object: String::new(),
                message: e.to_string(),
            });
            continue;
        }
        for file in files {
            match fs::read_to_string(&file) {
                Ok(text) => {
                    let (docs, probs) = parse_documents(&file, &text);
                    documents.extend(docs);
                    problems.extend(probs);
                }
                Err(e) => problems.push(Problem {
                    origin: Origin { file, doc: 0 },
                    object: String::new(),
                    message: LoadError::Io(e).to_string(),
                }),
            }
        }
    }
    (documents, problems)
}
