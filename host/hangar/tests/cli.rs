//! The `hangar` command as a user runs it: `crds` and `validate`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn hangar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hangar")).args(args).current_dir(repo()).output().expect("hangar runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const CRD_FILES: [&str; 3] = ["mcpserver.yaml", "mcpservergroup.yaml", "mcpdiscoverysource.yaml"];

#[test]
fn committed_crds_are_exactly_what_hangar_crds_prints() {
    let printed = stdout(&hangar(&["crds"]));
    let committed: String = CRD_FILES
        .iter()
        .map(|f| format!("---\n{}", fs::read_to_string(repo().join("crds").join(f)).unwrap()))
        .collect();
    assert!(
        printed == committed,
        "crds/ has drifted from the API types: run `cargo run -p hangar -- crds --out-dir crds` and commit"
    );
}

#[test]
fn crds_out_dir_writes_one_file_per_crd() {
    let dir = tempfile::tempdir().unwrap();
    let out = hangar(&["crds", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    for file in CRD_FILES {
        assert_eq!(
            fs::read_to_string(dir.path().join(file)).unwrap(),
            fs::read_to_string(repo().join("crds").join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn the_guides_examples_validate() {
    let out = hangar(&["validate", "examples/kubernetes/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("12 Hangar resources valid"), "{text}");
    let all = hangar(&["validate", "examples/"]);
    assert!(all.status.success(), "every example validates, the local demo too: {}", stdout(&all));
    assert!(text.contains("skipped NetworkPolicy"), "other kinds are skipped with a note: {text}");
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_message() {
    let dir = repo().join("tests/manifests/invalid");
    let mut files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 15, "the invalid corpus is there");
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let expect =
            text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("first line says what to expect");
        let out = hangar(&["validate", file.to_str().unwrap()]);
        let printed = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{} must fail:\n{printed}", file.display());
        assert!(printed.contains(expect), "{}: expected {expect:?} in:\n{printed}", file.display());
        // One line per problem, each naming the file and document.
        let first = printed.lines().next().unwrap();
        assert!(first.starts_with(&format!("{}:1: ", file.display())), "{first}");
    }
}

#[test]
fn a_missing_path_is_a_problem_not_a_crash() {
    let out = hangar(&["validate", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no/such/dir:0: no such file or folder"), "{}", stdout(&out));
}

#[test]
fn a_folder_with_one_bad_document_still_reports_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("mixed.yaml"),
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: good}\nspec: {mode: remote, endpoint: 'http://127.0.0.1:1/mcp'}\n---\n\
         apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: bad}\nspec: {mode: remote}\n",
    )
    .unwrap();
    let out = hangar(&["validate", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("mixed.yaml:2: MCPServer bad: spec.endpoint: required when mode is remote"), "{text}");
    assert!(text.contains("1 problem; 1 Hangar resources valid"), "{text}");
}

#[test]
fn a_wrong_log_level_is_refused_naming_the_flag_and_the_choices() {
    let output = hangar(&["operator", "--log-level", "verbose"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--log-level") && stderr.contains("debug"), "{stderr}");
}

#[test]
fn a_folder_that_links_back_to_itself_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("ok.yaml"),
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: ok}\nspec: {mode: remote, endpoint: 'http://x/mcp'}\n",
    )
    .unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub").join("loop")).unwrap();
    let out = hangar(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 Hangar resources valid"), "{}", stdout(&out));
}
