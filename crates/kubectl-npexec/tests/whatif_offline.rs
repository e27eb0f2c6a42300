//! `kubectl npexec --offline` through the real binary: for each of
//! np-guard/netpol-analyzer's five before/after pairs
//! (`tests/fixtures/netpol-analyzer-diff/`), the JSON changes must be exactly
//! np-guard's diff lines, and `--fail-on` must set the exit code from them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/netpol-analyzer-diff")
}

fn npexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-npexec"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/offline-needs-no-cluster")
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubectl-npexec")
}

/// (BEFORE, AFTER, expected file) for the five pairs.
fn pairs() -> Vec<(String, String, PathBuf)> {
    let root = fixtures();
    let cases: Vec<String> = std::fs::read_dir(root.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("expected")).unwrap() {
        let f = e.unwrap().path();
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let rest = stem.strip_prefix("diff_between_").unwrap().to_string();
        let (after, before) = cases
            .iter()
            .find_map(|a| {
                let b = rest.strip_prefix(a.as_str())?.strip_prefix("_and_")?;
                cases
                    .iter()
                    .any(|c| c == b)
                    .then(|| (a.clone(), b.to_string()))
            })
            .unwrap();
        out.push((before, after, f));
    }
    out.sort();
    assert_eq!(out.len(), 5);
    out
}

fn line_of(c: &serde_json::Value) -> String {
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let mut l = format!(
        "diff-type: {}, source: {}, destination: {}, ref1: {}, ref2: {}",
        s("kind"),
        s("from"),
        s("to"),
        s("before"),
        s("after")
    );
    if let Some(info) = c.get("workloads_diff_info").and_then(|v| v.as_str()) {
        l.push_str(&format!(", workloads-diff-info: {info}"));
    }
    l
}

fn case(name: &str) -> String {
    fixtures()
        .join("cases")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn offline_diff_json_is_np_guards_diff_and_gates_the_exit_code() {
    for (before, after, expected) in pairs() {
        let (b, a) = (case(&before), case(&after));
        let out = npexec(&[
            "--offline",
            "--before",
            &b,
            "--after",
            &a,
            "--diff",
            "-o",
            "json",
            "--fail-on",
            "any",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let changes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{before} -> {after}: {e}; stderr {stderr}"));
        let got: Vec<String> = changes.iter().map(line_of).collect();
        let want: Vec<String> = std::fs::read_to_string(&expected)
            .unwrap()
            .lines()
            .skip(1) // "Connectivity diff:"
            .map(str::to_string)
            .collect();
        assert_eq!(got, want, "{before} -> {after}");
        assert_eq!(out.status.code(), Some(1), "--fail-on any with changes");
        for c in &changes {
            assert_eq!(c["layer"], "NetworkPolicy");
            assert!(c["policies"]["before"].is_array() && c["policies"]["after"].is_array());
        }

        let denied = changes.iter().any(|c| c["newly_denied"] == true);
        let allowed = changes.iter().any(|c| c["newly_allowed"] == true);
        for (gate, trips) in [("newly-denied", denied), ("newly-allowed", allowed)] {
            let out = npexec(&[
                "--offline",
                "--before",
                &b,
                "--after",
                &a,
                "--diff",
                "--fail-on",
                gate,
            ]);
            assert_eq!(
                out.status.code(),
                Some(if trips { 1 } else { 0 }),
                "{before} -> {after} --fail-on {gate}"
            );
        }
        // The reverse change cuts what the change opened: the default gate
        // (newly-denied) fails exactly when the change opened something.
        let out = npexec(&[
            "--offline",
            "--before",
            &a,
            "--after",
            &b,
            "--diff",
            "-o",
            "json",
        ]);
        let rev: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rev.len(), changes.len(), "{after} -> {before}");
        assert_eq!(out.status.code(), Some(if allowed { 1 } else { 0 }));
    }
}

#[test]
fn no_change_exits_zero_and_says_so() {
    let (before, _, _) = &pairs()[0];
    let b = case(before);
    let out = npexec(&[
        "--offline",
        "--before",
        &b,
        "--after",
        &b,
        "--diff",
        "--fail-on",
        "any",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no connectivity changes\n"
    );
}

#[test]
fn offline_predict_lists_allowed_connections() {
    let dir = case("netpol-analysis-example-minimal");
    let out = npexec(&["--offline", "-f", &dir, "--predict", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<String> = v
        .iter()
        .map(|c| {
            format!(
                "{} => {} : {}",
                c["from"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
                c["connections"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "0.0.0.0-255.255.255.255[External] => default/frontend[Deployment] : TCP 8080",
            "default/frontend[Deployment] => 0.0.0.0-255.255.255.255[External] : UDP 53",
            "default/frontend[Deployment] => default/backend[Deployment] : TCP 9090",
        ]
    );
}

#[test]
fn bad_what_if_command_lines_are_usage_errors() {
    for args in [
        &["--offline"][..],
        &["--offline", "--diff", "-f", "x"],
        &["--before", "a", "--after", "b", "--diff"],
        &["--offline", "-f", "/nonexistent/dir", "--predict"],
    ] {
        let out = npexec(args);
        let code = out.status.code();
        assert!(
            code == Some(2) || code == Some(3),
            "{args:?}: exit {code:?}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
