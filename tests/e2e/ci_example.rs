//! The README's CI example, run for real: `examples/ci/policy-diff.sh` in a
//! throw-away git repository whose base branch holds one of np-guard's
//! topologies and whose working tree holds the changed one. The script must
//! print the changes, write np-guard's diff as its JSON report, and exit 1
//! exactly when the change has the kind `FAIL_ON` names.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::repo_root;
use common::sim::built;

fn case(name: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/netpol-analyzer-diff/cases")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("HOME", repo)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A repository whose `main` has `base` under deploy/ (if any) and whose
/// working tree has `head` there instead.
fn repo(base: Option<&str>, head: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("README"), "x\n").unwrap();
    if let Some(b) = base {
        copy_dir(&case(b), &r.join("deploy"));
    }
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "base"]);
    let _ = std::fs::remove_dir_all(r.join("deploy"));
    copy_dir(&case(head), &r.join("deploy"));
    dir
}

/// Whether the table has a row of this change kind starting at this source.
fn has_row(table: &str, kind: &str, from: &str) -> bool {
    table.lines().any(|l| {
        let mut cells = l.split_whitespace();
        cells.next() == Some(kind) && cells.next() == Some(from)
    })
}

fn run(repo: &Path, fail_on: Option<&str>, report: Option<&Path>) -> Output {
    let bins = built(&["kubectl-npexec"]);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("examples/ci/policy-diff.sh"))
        .args(["main", "deploy"])
        .current_dir(repo)
        .env("HOME", repo)
        .env("NPEXEC", bins.join("kubectl-npexec"))
        .env("NO_COLOR", "1")
        .env_remove("FAIL_ON")
        .env_remove("REPORT");
    if let Some(f) = fail_on {
        cmd.env("FAIL_ON", f);
    }
    if let Some(r) = report {
        cmd.env("REPORT", r);
    }
    cmd.output().unwrap()
}

#[test]
fn a_pull_request_that_cuts_traffic_fails_with_np_guards_diff_as_report() {
    let r = repo(
        Some("onlineboutique_workloads"),
        "onlineboutique_workloads_changed_netpols",
    );
    let report = r.path().join("changes.json");
    let out = run(r.path(), None, Some(&report));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        has_row(&stdout, "removed", "default/frontend[Deployment]"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("newly-denied changes against main"));
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let got: Vec<String> = v
        .iter()
        .map(|c| {
            format!(
                "diff-type: {}, source: {}, destination: {}, ref1: {}, ref2: {}",
                c["kind"].as_str().unwrap(),
                c["from"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
                c["before"].as_str().unwrap(),
                c["after"].as_str().unwrap()
            )
        })
        .collect();
    let want = std::fs::read_to_string(repo_root().join(
        "tests/fixtures/netpol-analyzer-diff/expected/diff_between_onlineboutique_workloads_changed_netpols_and_onlineboutique_workloads.txt",
    ))
    .unwrap();
    let want: Vec<&str> = want.lines().skip(1).collect();
    assert_eq!(got, want);
    assert_eq!(run(r.path(), Some("any"), None).status.code(), Some(1));
}

#[test]
fn a_pull_request_that_only_opens_traffic_passes_the_default_gate() {
    let r = repo(
        Some("deny_all_to_from_a_deployment"),
        "deny_all_to_from_a_deployment_changed_netpol",
    );
    let out = run(r.path(), None, None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        has_row(&stdout, "added", "default/deployment2[Deployment]"),
        "{stdout}"
    );
    assert!(stdout.contains("policy-diff: no newly-denied change against main"));
    assert_eq!(
        run(r.path(), Some("newly-allowed"), None).status.code(),
        Some(1)
    );
    // Unchanged manifests: nothing to report under any gate.
    let same = repo(
        Some("deny_all_to_from_a_deployment"),
        "deny_all_to_from_a_deployment",
    );
    let out = run(same.path(), Some("any"), None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no connectivity changes"));
}

#[test]
fn manifests_new_in_the_pull_request_compare_against_nothing() {
    let r = repo(None, "netpol-analysis-example-minimal");
    let out = run(r.path(), None, None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        has_row(&stdout, "added", "default/frontend[Deployment]"),
        "{stdout}"
    );
    assert_eq!(
        run(r.path(), Some("newly-allowed"), None).status.code(),
        Some(1)
    );
}
