//! End-to-end tests of npexec's live what-if (`--diff` / `--predict` with
//! `-f` and `--delete-f`) through the real kubectl against meshsim serving the
//! walk-through: the prediction uses the live cluster's objects with the
//! manifests applied on top (or removed), and `--fail-on` sets the exit code.

use crate::common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::sim::{Sim, walkthrough};

fn block_ingress() -> String {
    walkthrough()
        .join("policies/block-ingress-np-test-2.yaml")
        .to_string_lossy()
        .into_owned()
}

/// kubectl (or a plugin) with `stdin` fed to it.
fn kubectl(sim: &Sim, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = sim.cmd();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn npexec(sim: &Sim, args: &[&str]) -> Output {
    let mut v = vec!["npexec"];
    v.extend_from_slice(args);
    sim.run(&v)
}

fn json(o: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// (kind, from, to, before, after) with the ReplicaSet hash cut off workload names.
fn rows(v: &[serde_json::Value]) -> Vec<(String, String, String, String, String)> {
    let short = |s: &str| match s.split_once("-nginx-") {
        Some((head, rest)) => format!("{head}-nginx-{}", &rest[..1]),
        None => s.to_string(),
    };
    let mut out: Vec<_> = v
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_str().unwrap().to_string();
            (
                f("kind"),
                short(&f("from")),
                short(&f("to")),
                f("before"),
                f("after"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn diff_of_a_new_deny_policy_cuts_traffic_and_fails_the_gate() {
    let sim = Sim::walkthrough().start();
    let f = block_ingress();
    let out = npexec(&sim, &["--diff", "-f", &f, "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "newly-denied is the default gate"
    );
    let v = json(&out);
    let want = |kind: &str, before: &str, after: &str| {
        vec![
            (
                kind.to_string(),
                "0.0.0.0-255.255.255.255[External]".to_string(),
                "np-test-2/np-test-nginx-2".to_string(),
                before.to_string(),
                after.to_string(),
            ),
            (
                kind.to_string(),
                "np-test-1/np-test-nginx-1".to_string(),
                "np-test-2/np-test-nginx-2".to_string(),
                before.to_string(),
                after.to_string(),
            ),
        ]
    };
    assert_eq!(
        rows(&v),
        want("removed", "All Connections", "No Connections")
    );
    for c in &v {
        assert!(
            c["to"].as_str().unwrap() == "np-test-2/np-test-nginx-2[Deployment]",
            "running pods are named after their Deployment: {c}"
        );
        assert_eq!(
            c["policies"]["after"][0]
                .as_str()
                .unwrap()
                .split(' ')
                .next(),
            Some("np-test-2/deny-all-ingress-using-networkpolicy")
        );
        assert_eq!(c["policies"]["before"], serde_json::json!([]));
    }
    let out = npexec(&sim, &["--diff", "-f", &f, "--fail-on", "newly-allowed"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 change(s): 2 cut connections"));

    // Once applied, predicting its deletion opens the same pairs again.
    let applied = kubectl(&sim, &["apply", "-f", &f], None);
    assert!(applied.status.success(), "{applied:?}");
    let out = npexec(&sim, &["--diff", "--delete-f", &f, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "nothing newly denied");
    assert_eq!(
        rows(&json(&out)),
        want("added", "No Connections", "All Connections")
    );
    let out = npexec(
        &sim,
        &["--diff", "--delete-f", &f, "--fail-on", "newly-allowed"],
    );
    assert_eq!(out.status.code(), Some(1));
    // The cluster itself is unchanged by a what-if: applying it again changes nothing.
    let out = npexec(&sim, &["--diff", "-f", &f, "--fail-on", "any"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no connectivity changes\n"
    );
}

#[test]
fn predict_with_manifests_from_stdin_overlays_the_live_model() {
    let sim = Sim::walkthrough().start();
    let before = json(&kubectl(
        &sim,
        &["npexec", "--predict", "-f", "/dev/null", "-o", "json"],
        None,
    ));
    let policy = std::fs::read_to_string(block_ingress()).unwrap();
    let out = kubectl(
        &sim,
        &["npexec", "--predict", "-f", "-", "-o", "json"],
        Some(&policy),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = json(&out);
    let into_2 = |v: &[serde_json::Value]| {
        v.iter()
            .filter(|c| c["to"].as_str().unwrap().starts_with("np-test-2/"))
            .count()
    };
    assert_eq!(
        into_2(&before),
        2,
        "open before: from np-test-1 and outside"
    );
    assert_eq!(
        into_2(&after),
        0,
        "the overlay denies all ingress to np-test-2"
    );
    assert_eq!(before.len() - after.len(), 2);
}

#[test]
fn diff_of_an_authorization_policy_names_identity_port_and_policy() {
    let sim = Sim::walkthrough().start();
    let f = walkthrough()
        .join("policies/block-istio-ingress-np-test-2.yaml")
        .to_string_lossy()
        .into_owned();
    let out = npexec(&sim, &["--diff", "-f", &f, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "a DENY policy cuts traffic");
    let v = json(&out);
    assert_eq!(v.len(), 1, "{v:#?}");
    let c = &v[0];
    assert_eq!(c["layer"], "AuthorizationPolicy");
    assert_eq!(c["kind"], "removed");
    assert_eq!(
        (c["before"].as_str(), c["after"].as_str()),
        (Some("allowed"), Some("denied"))
    );
    assert_eq!(c["port"], 80);
    assert_eq!(c["identity"], "cluster.local/ns/np-test-1/sa/default");
    assert_eq!(c["from"], "np-test-1/np-test-nginx-1[Deployment]");
    assert_eq!(c["to"], "np-test-2/np-test-nginx-2[Deployment]");
    assert_eq!(
        c["policies"]["after"],
        serde_json::json!(["np-test-2/deny-all-ingress-using-authorizationpolicy (DENY)"])
    );
}

#[test]
fn a_deployment_from_manifests_is_the_same_workload_as_its_running_pods() {
    let sim = Sim::walkthrough().start();
    let manifests = walkthrough().join("istio-np-2.yaml");
    let out = npexec(
        &sim,
        &[
            "--diff",
            "-f",
            manifests.to_str().unwrap(),
            "--fail-on",
            "any",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no connectivity changes\n"
    );
}

const STRICT_NP_TEST_2: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: strict
  namespace: np-test-2
spec:
  mtls:
    mode: STRICT
"#;

/// The PeerAuthentication change of a diff: plain-text clients from outside
/// the mesh are cut from np-test-nginx-2's port 80; np-test-1's sidecar
/// (mTLS) is not.
fn assert_strict_change(v: &[serde_json::Value]) {
    let pa: Vec<&serde_json::Value> = v
        .iter()
        .filter(|c| c["layer"] == "PeerAuthentication")
        .collect();
    assert_eq!(pa.len(), 1, "{v:#?}");
    let c = pa[0];
    assert_eq!(c["kind"], "removed");
    assert_eq!(c["from"], "0.0.0.0-255.255.255.255[External]");
    assert_eq!(c["to"], "np-test-2/np-test-nginx-2[Deployment]");
    assert_eq!(c["port"], 80);
    assert_eq!(c["before"], "accepted (PERMISSIVE, plain text)");
    assert_eq!(c["after"], "rejected: plain text into STRICT");
    assert_eq!(
        c["policies"]["after"],
        serde_json::json!(["np-test-2/strict (STRICT)"])
    );
    assert_eq!(c["newly_denied"], true);
}

#[test]
fn diff_of_a_peer_authentication_live_and_offline() {
    let sim = Sim::walkthrough().start();
    let out = kubectl(
        &sim,
        &["npexec", "--diff", "-f", "-", "-o", "json"],
        Some(STRICT_NP_TEST_2),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "STRICT cuts plain text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_strict_change(&json(&out));

    // Live, the other way: with the policy applied, deleting it reopens.
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.yaml");
    std::fs::write(&strict, STRICT_NP_TEST_2).unwrap();
    let strict = strict.to_str().unwrap();
    let applied = kubectl(&sim, &["apply", "-f", strict], None);
    assert!(applied.status.success(), "{applied:?}");
    let out = npexec(&sim, &["--diff", "--delete-f", strict, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "nothing is cut");
    let v = json(&out);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(
        (&v[0]["layer"], &v[0]["kind"], &v[0]["newly_allowed"]),
        (
            &serde_json::json!("PeerAuthentication"),
            &serde_json::json!("added"),
            &serde_json::json!(true)
        )
    );

    // Offline: the walk-through's manifests before, plus the policy after.
    let after = dir.path().join("after");
    std::fs::create_dir(&after).unwrap();
    for f in ["00-namespaces.yaml", "istio-np-1.yaml", "istio-np-2.yaml"] {
        std::fs::copy(walkthrough().join(f), after.join(f)).unwrap();
    }
    std::fs::write(after.join("strict.yaml"), STRICT_NP_TEST_2).unwrap();
    let before = dir.path().join("before");
    std::fs::create_dir(&before).unwrap();
    for f in ["00-namespaces.yaml", "istio-np-1.yaml", "istio-np-2.yaml"] {
        std::fs::copy(walkthrough().join(f), before.join(f)).unwrap();
    }
    let out = npexec(
        &sim,
        &[
            "--offline",
            "--before",
            before.to_str().unwrap(),
            "--after",
            after.to_str().unwrap(),
            "--diff",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_strict_change(&v);
    assert_eq!(
        v.len(),
        1,
        "only the PeerAuthentication layer changes: {v:#?}"
    );
}
