//! End-to-end bad-input tests of `kubectl npexec` through the real kubectl,
//! needing no cluster: usage errors exit 2 with one `error:` line, an
//! unreachable API server exits 3 naming its URL, and `--help` works.
//!
//! The plugin binary must be built first (`make test` does; or
//! `cargo build -p kubectl-npexec`). Each test gets its own HOME and
//! kubeconfig, so ~/.kube is never touched.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::sim::{built, path_with};

/// A kubeconfig whose server nothing listens on.
fn unreachable_kubeconfig(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\", insecure-skip-tls-verify: true}\n\
         contexts:\n- name: c\n  context: {cluster: c, user: u, namespace: np-test-1}\n\
         users:\n- name: u\n  user: {token: not-a-secret}\n",
    )
    .unwrap();
    path
}

fn kubectl_npexec(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(tmp.path());
    let path = path_with(&[&built(&["kubectl-npexec"])]);
    Command::new("kubectl")
        .arg("npexec")
        .args(args)
        .env("PATH", path)
        .env("HOME", tmp.path())
        .env("KUBECONFIG", &kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .expect("kubectl on PATH")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["np-test-1"], "missing TO namespace"),
        (&["np-test-1", "np-test-2", "--path", "nope"], "--path"),
        (
            &["np-test-1", "np-test-2", "-l", "app=$(x)"],
            "invalid label selector",
        ),
        (
            &["np-test-1", "np-test-2", "--timeout", "soon"],
            "invalid duration",
        ),
        (&["np-test-1", "np-test-2", "-o", "xml"], "xml"),
        (
            &["np-test-1", "np-test-2", "-o", "name"],
            "-o name does not apply",
        ),
        (&["np-test-1", "np-test-2", "--expect", "maybe"], "maybe"),
        (&["np-test-1", "--url", "ftp://x/"], "http://"),
        (&["np-test-1", "np-test-2", "-H", "bad\r\nX: y"], "--header"),
        (
            &[
                "np-test-1",
                "np-test-2",
                "--predict",
                "--expect",
                "deny",
                "--wait",
                "5s",
            ],
            "--predict does not probe",
        ),
        (
            &["np-test-1", "np-test-2", "--predict", "--explain"],
            "cannot be used with",
        ),
    ];
    for (args, needle) in cases {
        let out = kubectl_npexec(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: data on stdout");
    }
}

#[test]
fn unreachable_api_exits_3_naming_the_server() {
    let out = kubectl_npexec(&["np-test-1", "np-test-2", "--request-timeout", "5s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("https://127.0.0.1:9"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("not-a-secret"), "token leaked: {err}");
}

#[test]
fn help_lists_examples() {
    let out = kubectl_npexec(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kubectl npexec np-test-1 np-test-2"),
        "{text}"
    );
    assert!(text.contains("--expect"), "{text}");
}
