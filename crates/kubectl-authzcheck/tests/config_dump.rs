//! `--config-dump FILE -o json` with no cluster: the rows must be exactly
//! istioctl's for Istio's own test dumps (tests/fixtures/istio/authz-check),
//! and bad input must be a one-line error with exit 2.

use std::path::PathBuf;
use std::process::Command;

use meshpolicy::envoy::parse_authz_check;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/istio/authz-check")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-authzcheck"))
        .args(args)
        // No cluster may be needed: point kubeconfig lookups nowhere.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("ISTIOCTL")
        .output()
        .unwrap()
}

/// (action, policy, namespace, rules) from the JSON output.
fn json_rows(v: &serde_json::Value) -> Vec<(String, String, Option<String>, u64)> {
    v["proxy"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["policy"].as_str().unwrap().to_string(),
                r["namespace"].as_str().map(str::to_string),
                r["rules"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn check_fixture(version: &str) {
    let dump = fixtures().join(format!("configdump-{version}.json"));
    let expected =
        std::fs::read_to_string(fixtures().join(format!("configdump-{version}.expected.txt")))
            .unwrap();
    let out = run(&["--config-dump", dump.to_str().unwrap(), "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["proxy"]["source"], "config-dump");
    assert!(v["pod"].is_null());
    let want: Vec<_> = parse_authz_check(&expected)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.action.as_str().to_string(),
                r.name,
                r.namespace,
                u64::from(r.rules),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(json_rows(&v), want, "{version}");
    // Every anonymous row is explained.
    let anon = v["proxy"]["anonymous"].as_array().unwrap();
    assert!(!anon.is_empty());
    assert!(
        anon.iter()
            .all(|a| !a["explanation"].as_str().unwrap().is_empty())
    );
}

#[test]
fn rows_match_istioctl_1_25() {
    check_fixture("1.25");
}

#[test]
fn rows_match_istioctl_1_19() {
    check_fixture("1.19");
}

#[test]
fn table_output_prints_istioctl_rows() {
    let dump = fixtures().join("configdump-1.25.json");
    let out = run(&["--config-dump", dump.to_str().unwrap(), "--color", "never"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let expected =
        std::fs::read_to_string(fixtures().join("configdump-1.25.expected.txt")).unwrap();
    // Our section uses the same three columns and cells as istioctl, with
    // istioctl's `NAME.NS` written `NS/NAME` as everywhere in the plugins (a
    // namespace has no dot, so istioctl's last dot splits them).
    for line in expected.lines().skip(1) {
        let cells: Vec<String> = line
            .split_whitespace()
            .map(|c| match c.rsplit_once('.') {
                Some((name, ns)) if !name.is_empty() => format!("{ns}/{name}"),
                _ => c.to_string(),
            })
            .collect();
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells),
            "missing row {line:?} in\n{text}"
        );
    }
    // What istioctl hides: the CUSTOM policy's provenance.
    assert!(text.contains("Not shown by istioctl"), "{text}");
}

#[test]
fn bad_dumps_are_one_line_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("x.json");
    std::fs::write(&not_json, "hello").unwrap();
    let no_listeners = dir.path().join("y.json");
    std::fs::write(&no_listeners, r#"{"configs": []}"#).unwrap();
    for (path, needle) in [
        (not_json.to_str().unwrap(), "not valid JSON"),
        (no_listeners.to_str().unwrap(), "has no listeners"),
        ("/nonexistent/dump.json", "cannot read config dump"),
    ] {
        let out = run(&["--config-dump", path]);
        assert_eq!(out.status.code(), Some(2), "{path}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn exit_code_flag_follows_findings() {
    // The 1.25 dump has only informational findings: --exit-code stays 0.
    let dump = fixtures().join("configdump-1.25.json");
    let out = run(&[
        "--config-dump",
        dump.to_str().unwrap(),
        "--exit-code",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Constant expectations (not derived from this run's own findings): four
    // ALLOW-nothing notes and one CUSTOM note, all informational, so exit 0.
    let findings: Vec<(&str, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["code"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    let nothing = ("anonymous-match-nothing", "info");
    assert_eq!(
        findings,
        [nothing, nothing, nothing, nothing, ("custom", "info")],
        "{}",
        v["findings"]
    );
    assert_eq!(out.status.code(), Some(0));
}
