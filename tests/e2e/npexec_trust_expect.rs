//! npexec you can trust in CI, the expectation side (issue 15 B), through the
//! real kubectl against `meshsim serve` running
//! tests/fixtures/trust-expect/scenario.yaml: PeerAuthentication at mesh,
//! namespace, workload and port level with `--predict` agreeing with the
//! probe and `--explain` naming the policy, authzcheck's PeerAuthentication
//! section, `--expect reachable` on a 404 with the unmet-summary line, and a
//! 3x3 `--matrix` against `--expect-matrix` truth tables.
//!
//! Two tests, one meshsim each (they run in parallel): the PeerAuthentication
//! one changes mesh-wide policy, which would disturb the matrix.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::sim::{Sim, built};
use serde_json::Value;

/// `meshsim serve` on tests/fixtures/trust-expect/scenario.yaml (4 pods).
fn start() -> Sim {
    let scenario = common::repo_root().join("tests/fixtures/trust-expect/scenario.yaml");
    Sim::builder().scenario(scenario).pods(4).start()
}

fn npexec(sim: &Sim, args: &[&str]) -> Output {
    let mut v = vec!["npexec"];
    v.extend_from_slice(args);
    sim.run(&v)
}

fn apply(sim: &Sim, yaml: &str) {
    let file = sim.path().join("apply.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = sim.run(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", err(&out));
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", out(o), err(o)))
}

fn peer_auth(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// The probe (re-probing while the policy propagates) and the prediction
/// agree on `want`; returns the prediction's mTLS layer.
fn agree(sim: &Sim, from: &str, to: &str, want: &str) -> Value {
    let probe = npexec(
        sim,
        &[from, to, "--expect", want, "--wait", "30s", "-o", "json"],
    );
    let v = json(&probe);
    assert_eq!(
        probe.status.code(),
        Some(0),
        "probe {from} -> {to}: want {want}: {v}\n{}",
        err(&probe)
    );
    assert_eq!(v[0]["verdict"], want, "{v}");
    let predicted = json(&npexec(sim, &[from, to, "--predict", "-o", "json"]));
    assert_eq!(
        predicted[0]["verdict"], want,
        "predict {from} -> {to}: {predicted}"
    );
    predicted[0]["analysis"]["mtls"].clone()
}

#[test]
fn peer_authentication_levels_predict_explain_and_authzcheck() {
    let sim = start();

    // No PeerAuthentication: PERMISSIVE by default, plain text gets through.
    let m = agree(&sim, "te-plain", "te-a", "allowed");
    assert_eq!(m["mode"], "PERMISSIVE", "{m}");
    assert_eq!(m["decided_by"], Value::Null, "{m}");

    // Mesh-wide STRICT: the client without sidecar fails, a sidecar client does not.
    apply(
        &sim,
        &peer_auth("istio-system", "default", "{mtls: {mode: STRICT}}"),
    );
    let m = agree(&sim, "te-plain", "te-a", "mtls-failure");
    assert_eq!(
        (&m["decided_by"], &m["scope"], &m["client_sends"]),
        (
            &Value::from("istio-system/default"),
            &Value::from("mesh"),
            &Value::from("plaintext")
        ),
        "{m}"
    );
    agree(&sim, "te-b", "te-a", "allowed");
    let explained = npexec(&sim, &["te-plain", "te-a", "--explain"]);
    let text = out(&explained);
    assert!(
        text.contains("PeerAuthentication: FAILS: port 80 is STRICT"),
        "{text}"
    );
    assert_eq!(
        text.matches("istio-system/default").count(),
        1,
        "the deciding policy is named once: {text}"
    );
    assert!(
        text.contains("peerauthentication istio-system/default: denied: mode STRICT (mesh-wide)"),
        "{text}"
    );

    // Namespace PERMISSIVE in te-a overrides the mesh there, not in te-c.
    apply(
        &sim,
        &peer_auth("te-a", "open", "{mtls: {mode: PERMISSIVE}}"),
    );
    let m = agree(&sim, "te-plain", "te-a", "allowed");
    assert_eq!(m["scope"], "namespace", "{m}");
    agree(&sim, "te-plain", "te-c", "mtls-failure");

    // Workload DISABLE in te-c: plain text is fine, a sidecar client still
    // sends mTLS (auto mTLS follows the namespace) and fails.
    apply(
        &sim,
        &peer_auth(
            "te-c",
            "plain-only",
            "{selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}",
        ),
    );
    let m = agree(&sim, "te-plain", "te-c", "allowed");
    assert_eq!(
        (&m["decided_by"], &m["scope"]),
        (&Value::from("te-c/plain-only"), &Value::from("workload")),
        "{m}"
    );
    let m = agree(&sim, "te-b", "te-c", "mtls-failure");
    assert_eq!(m["client_sends"], "mtls", "{m}");

    // Port level: te-b's workload is STRICT but port 80 PERMISSIVE.
    apply(
        &sim,
        &peer_auth(
            "te-b",
            "ports",
            "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, portLevelMtls: {'80': {mode: PERMISSIVE}, '9090': {mode: DISABLE}}}",
        ),
    );
    let m = agree(&sim, "te-plain", "te-b", "allowed");
    assert_eq!(
        (&m["decided_by"], &m["port_level"], &m["mode"]),
        (
            &Value::from("te-b/ports"),
            &Value::Bool(true),
            &Value::from("PERMISSIVE")
        ),
        "{m}"
    );

    // authzcheck: the section, in the table and in JSON, with findings.
    let o = sim.run(&["authzcheck", "te-b", "deployment/web", "-o", "json"]);
    let v = json(&o);
    let rep = if v.is_array() { v[0].clone() } else { v };
    let pa = &rep["peer_authentication"];
    assert_eq!(pa["enforced"], true, "{pa}");
    assert_eq!(pa["mode"], "STRICT", "{pa}");
    assert_eq!(pa["decided_by"], "te-b/ports", "{pa}");
    let names: Vec<&str> = pa["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["scope"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"mesh") && names.contains(&"workload"),
        "{pa}"
    );
    let port = |n: u64| {
        pa["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("port {n} in {pa}"))
    };
    assert_eq!(port(80)["mode"], "PERMISSIVE");
    assert_eq!(port(80)["port_level"], true);
    assert_eq!(port(9090)["declared"], false);
    let codes: Vec<&str> = rep["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"peerauth-unknown-port"), "{codes:?}");
    assert!(codes.contains(&"mtls-disabled-in-strict"), "{codes:?}");

    let table = out(&sim.run(&["authzcheck", "te-c", "deployment/web"]));
    assert!(
        table.contains("Istio PeerAuthentication (mTLS, enforced by the sidecar)"),
        "{table}"
    );
    assert!(table.contains("te-c/plain-only"), "{table}");
    assert!(
        table.contains("sets DISABLE on all ports although PeerAuthentication istio-system/default makes the namespace STRICT"),
        "{table}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn matrix_truth_tables_and_expect_reachable() {
    let sim = start();
    let dir = sim.path().to_path_buf();
    let ok = write(
        &dir,
        "ok.txt",
        "# te-c denies te-a (AuthorizationPolicy deny-te-a)\nFROM\\TO te-a te-b te-c\nte-a    .    .    X\nte-b    .    .    .\nte-c    .    .    .\n",
    );
    let one_off = write(
        &dir,
        "one-off.txt",
        "     te-a te-b te-c\nte-a  .    .    X\nte-b  .    .    X   # wrong on purpose\nte-c  .    .    .\n",
    );
    let matrix = ["--matrix", "te-a", "te-b", "te-c"];
    let with = |extra: &[&str]| -> Output {
        let mut a: Vec<&str> = matrix.to_vec();
        a.extend_from_slice(extra);
        npexec(&sim, &a)
    };

    // A matching table (--wait re-probes while te-c's policy reaches its
    // sidecar): exit 0, same-namespace pairs probed (diagonal A).
    let o = with(&["--expect-matrix", &ok, "--wait", "30s"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", err(&o));
    assert!(text.contains("every cell matches"), "{text}");
    let row = |text: &str, ns: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(ns))
            .unwrap_or_else(|| panic!("row {ns} in {text}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row(&text, "te-a"), ["A", "A", "R"], "{text}");
    assert_eq!(row(&text, "te-b"), ["A", "A", "A"], "{text}");

    // One cell differs: exit 1, that cell and only it.
    let o = with(&["--expect-matrix", &one_off]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}{}", err(&o));
    assert!(text.contains("1 cell differs"), "{text}");
    assert!(
        text.contains("te-b -> te-c: expected X (deny), got A (allowed)"),
        "{text}"
    );
    assert_eq!(text.matches(" -> ").count(), 1, "{text}");
    // JSON carries the cell's expectation on each record.
    let v = json(&with(&["--expect-matrix", &one_off, "-o", "json"]));
    let unmet: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["met"] == false)
        .collect();
    assert_eq!(unmet.len(), 1, "{v}");
    assert_eq!(unmet[0]["expected"], "deny");

    // A bad table is a one-line usage error before anything runs.
    let bad = write(&dir, "bad.txt", "te-a te-b\nte-a . Q\n");
    let o = with(&["--expect-matrix", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(err(&o).trim_end().lines().count(), 1, "{}", err(&o));
    assert!(
        err(&o).contains("line 2: unknown symbol 'Q'"),
        "{}",
        err(&o)
    );

    // --predict in matrix mode: one line per distinct explanation.
    let o = with(&["--predict"]);
    let text = out(&o);
    let explained: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("A ") || l.starts_with("R "))
        .collect();
    assert_eq!(explained.len(), 2, "{text}");
    assert!(
        explained
            .iter()
            .any(|l| l.contains("authorizationpolicy te-c/deny-te-a")
                && l.contains("[te-a -> te-c]")),
        "{text}"
    );

    // --no-same-namespace leaves the diagonal out.
    let text = out(&with(&["--no-same-namespace"]));
    assert_eq!(row(&text, "te-a"), ["-", "A", "R"], "{text}");

    // -l selects source pods everywhere; no match is a usage error.
    let o = with(&["-l", "app=nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("-l app=nope selects no pod"),
        "{}",
        err(&o)
    );

    // --expect reachable: an application 404 is reachable, not allowed.
    let o = npexec(
        &sim,
        &[
            "te-b",
            "te-c",
            "--path",
            "/missing",
            "--expect",
            "reachable",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("404"), "{}", out(&o));
    let o = npexec(
        &sim,
        &["te-b", "te-c", "--path", "/missing", "--expect", "allow"],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let unmet: Vec<String> = err(&o)
        .lines()
        .filter(|l| l.starts_with("expectation not met: "))
        .map(str::to_string)
        .collect();
    assert_eq!(unmet.len(), 1, "{}", err(&o));
    assert!(
        unmet[0].contains("expected allow, got http-error 404") && unmet[0].contains("reachable"),
        "{unmet:?}"
    );

    // --wait when piped: no progress line, and the summary at the end.
    let o = npexec(&sim, &["te-a", "te-c", "--expect", "allow", "--wait", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(!err(&o).contains("waiting:"), "{}", err(&o));
    assert!(
        err(&o).contains("expected allow, got denied-rbac 403"),
        "{}",
        err(&o)
    );

    // On a terminal (util-linux `script` gives the command a pty), --wait
    // shows its attempts.
    let has_script = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("script").is_file());
    if has_script {
        built(&["kubectl-npexec"]);
        let o = sim
            .command("script")
            .args([
                "-qec",
                "kubectl npexec te-a te-c --expect allow --wait 2s",
                "/dev/null",
            ])
            .output()
            .unwrap();
        let tty = out(&o);
        assert!(
            tty.contains("waiting: attempt 1, 1 of 1 expectations unmet"),
            "{tty}"
        );
        assert!(tty.contains("expectation not met: "), "{tty}");
    } else {
        eprintln!("skipped the terminal check: util-linux script is not installed");
    }
}
