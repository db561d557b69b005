//! Reads multi-document YAML manifests from files and folders and checks each Hangar resource as
//! the Kubernetes API server would: the CRD's schema (types, enums, required fields, duration
//! syntax), unknown fields (as `kubectl`'s strict field validation), and the CEL rules
//! (`x-kubernetes-validations`) generated into the CRDs.

mod check;
mod load;

pub use check::{Checker, Resource};
pub use load::{Document, LoadError, Origin, load_paths, parse_documents};

use std::fmt;

/// One thing wrong with one document, printed as
/// `file:doc: MCPServer mcp-servers/github-tools: spec.endpoint: required when mode is remote`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// `Kind namespace/name`, or empty when the document is not an object.
    pub object: String,
    /// `field.path: what is wrong and how to fix it`.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.object, self.message)
        }
    }
}

/// What checking a set of documents found.
#[derive(Debug, Default)]
pub struct Report {
    /// Valid Hangar resources, typed, with where each came from.
    pub resources: Vec<(Origin, Resource)>,
    /// Documents of other kinds, kept as they are (e.g. ConfigMaps `hangar run` reads).
    pub others: Vec<Document>,
    pub problems: Vec<Problem>,
}

/// Loads every manifest under `paths` and checks it; files that cannot be read are problems too.
pub fn check_paths(paths: &[impl AsRef<std::path::Path>]) -> Report {
    let checker = Checker::new();
    let mut report = Report::default();
    let (documents, load_problems) = load_paths(paths);
    report.problems.extend(load_problems);
    for document in documents {
        checker.check_into(document, &mut report);
    }
    report
}

#[cfg(test)]
mod tests;
