//! End-to-end tests of `kubectl npexec` through the real kubectl against
//! meshsim serving the walk-through scenario (examples/walkthrough).
//!
//! Runs `meshsim serve` as a process (common::sim::Sim: waits for
//! its kubeconfig, kills it on drop) so that the plugin, kubectl and the
//! simulated cluster run as separate processes, as they do for users. The
//! traffic verdicts come from meshsim's mesh simulation (NetworkPolicy,
//! sidecars, AuthorizationPolicy via meshpolicy, application answers).

use crate::common;

use std::path::PathBuf;
use std::process::Output;

use common::sim::{Sim, walkthrough};

fn policy(file: &str) -> String {
    walkthrough()
        .join("policies")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// `meshsim serve` on SCENARIOS with `--time-scale 0.05` and EXTRA flags,
/// once at least `pods` pods are Running.
fn start_with(scenarios: &[PathBuf], extra: &[&str], pods: usize) -> Sim {
    let mut flags = vec!["--time-scale", "0.05"];
    flags.extend_from_slice(extra);
    let mut b = Sim::builder().flags(&flags).pods(pods);
    for s in scenarios {
        b = b.scenario(s.clone());
    }
    b.start()
}

fn npexec(sim: &Sim, args: &[&str]) -> Output {
    let mut v = vec!["npexec"];
    v.extend_from_slice(args);
    sim.run(&v)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_input_against_the_walkthrough() {
    let sim = Sim::walkthrough().start();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["np-test-9", "np-test-2"],
            3,
            "error: namespace \"np-test-9\" not found",
        ),
        (
            &["np-test-1", "np-test-9"],
            3,
            "error: namespace \"np-test-9\" not found",
        ),
        (
            &["np-test-1", "np-test-2", "-l", "app=nope"],
            3,
            "selector app=nope",
        ),
        (
            &["np-test-1", "np-test-2", "--pod", "nope"],
            3,
            "pod \"nope\" not found",
        ),
        (
            &["np-test-1", "np-test-2", "-c", "nope"],
            3,
            "np-test-nginx-1, istio-proxy",
        ),
        (
            &["np-test-1", "np-test-2", "-c", "istio-proxy"],
            2,
            "istio-proxy",
        ),
        (
            &["np-test-1", "np-test-2", "--service", "nope"],
            3,
            "service \"nope\" not found",
        ),
        (&["np-test-1", "np-test-2", "--port", "81"], 2, "port 81"),
    ];
    for (args, code, needle) in cases {
        let out = npexec(&sim, args);
        let e = err(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
        assert_eq!(
            e.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{e}"
        );
    }
}

#[test]
fn json_output_has_the_documented_fields() {
    let sim = Sim::walkthrough().start();
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--both", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", err(&out)));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "one probe each way");
    for p in arr {
        for key in [
            "verdict",
            "http_status",
            "curl_exit",
            "body",
            "duration_ms",
            "expected",
            "met",
            "hint",
        ] {
            assert!(p.get(key).is_some(), "missing {key}: {p}");
        }
        let ns = p["from"]["namespace"].as_str().unwrap();
        let workload = ns.replace("np-test-", "np-test-nginx-");
        assert!(
            p["from"]["pod"].as_str().unwrap().starts_with(&workload),
            "{p}"
        );
        // The default container, never istio-proxy.
        assert_eq!(p["from"]["container"], workload.as_str());
        assert!(
            p["to"]["url"]
                .as_str()
                .unwrap()
                .contains(".svc.cluster.local:80/")
        );
    }
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            err(o)
        )
    })
}

fn apply(sim: &Sim, file: &str) {
    let out = sim.run(&["apply", "-f", file]);
    assert!(out.status.success(), "{}", err(&out));
}

/// Names of the policies of this kind and source in a probe's `policies`.
fn policy_names(probe: &serde_json::Value, kind: &str, source: &str) -> Vec<String> {
    probe["policies"]
        .as_array()
        .unwrap_or_else(|| panic!("no policies: {probe}"))
        .iter()
        .filter(|p| p["kind"] == kind && p["source"] == source)
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

const AUTHZ_NAME: &str = "deny-all-ingress-using-authorizationpolicy";
const AUTHZ_ID: &str = "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]";
const NETPOL_NAME: &str = "deny-all-ingress-using-networkpolicy";

#[test]
fn walkthrough_allowed_then_denied_rbac() {
    let sim = Sim::walkthrough().start();
    let out = npexec(&sim, &["np-test-1", "np-test-2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(
        text.contains("allowed")
            && text.contains("200")
            && text.contains("Hello world - np-test-nginx-2!"),
        "{text}"
    );
    apply(&sim, &policy("block-istio-ingress-np-test-2.yaml"));
    let out = npexec(
        &sim,
        &[
            "np-test-1",
            "np-test-2",
            "--both",
            "--expect",
            "deny",
            "--wait",
            "10s",
            "-o",
            "json",
        ],
    );
    let v = json(&out);
    assert_eq!(v[0]["verdict"], "denied-rbac", "{v}");
    assert_eq!(v[0]["met"], true);
    assert_eq!(v[1]["verdict"], "allowed", "{v}");
    assert_eq!(v[1]["met"], false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the reverse direction is allowed, so --expect deny is not met"
    );
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--expect", "allow"]);
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--expect", "denied-rbac"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
}

#[test]
fn explain_and_predict_name_the_walkthrough_policies() {
    let sim = Sim::walkthrough().start();
    // Nothing applies yet.
    let v = json(&npexec(
        &sim,
        &["np-test-1", "np-test-2", "--explain", "-o", "json"],
    ));
    assert_eq!(v[0]["verdict"], "allowed");
    assert_eq!(v[0]["policies"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v[0]["analysis"]["engine_verdict"], "allowed");

    apply(&sim, &policy("block-istio-ingress-np-test-2.yaml"));
    // Predicted without exec: denied one way, allowed the other.
    let out = npexec(
        &sim,
        &[
            "np-test-1",
            "np-test-2",
            "--both",
            "--predict",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let v = json(&out);
    assert_eq!(v[0]["verdict"], "denied-rbac", "{v}");
    assert_eq!(v[0]["predicted"], true);
    assert_eq!(v[0]["http_status"], serde_json::Value::Null);
    assert_eq!(
        policy_names(&v[0], "authorization-policy", "engine"),
        [AUTHZ_NAME]
    );
    assert_eq!(v[0]["analysis"]["authorization"]["policy_id"], AUTHZ_ID);
    assert_eq!(v[1]["verdict"], "allowed", "{v}");

    // Explained after probing (waiting out propagation): the engine and the
    // destination's Envoy log name the same policy, and nothing contradicts.
    let out = npexec(
        &sim,
        &[
            "np-test-1",
            "np-test-2",
            "--both",
            "--explain",
            "--expect",
            "deny",
            "--wait",
            "10s",
            "-o",
            "json",
        ],
    );
    let v = json(&out);
    assert_eq!(v[0]["verdict"], "denied-rbac", "{v}");
    assert_eq!(
        policy_names(&v[0], "authorization-policy", "engine"),
        [AUTHZ_NAME]
    );
    assert_eq!(
        policy_names(&v[0], "authorization-policy", "envoy-log"),
        [AUTHZ_NAME],
        "{v}"
    );
    assert_eq!(v[0]["analysis"]["envoy_policy_ids"][0], AUTHZ_ID);
    assert_eq!(
        v[0]["analysis"]["contradictions"].as_array().map(Vec::len),
        Some(0),
        "{v}"
    );
    assert_eq!(v[1]["verdict"], "allowed");
    assert_eq!(v[1]["policies"].as_array().map(Vec::len), Some(0), "{v}");

    // The NetworkPolicy: named on the ingress side, and it decides first.
    apply(&sim, &policy("block-ingress-np-test-2.yaml"));
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("blocked-network"), "{text}");
    assert!(
        text.contains(&format!(
            "networkpolicy np-test-2/{NETPOL_NAME} (ingress): denied"
        )),
        "{text}"
    );
    assert!(text.contains("not reached"), "{text}");
    assert!(!text.contains("  ! "), "no contradiction expected: {text}");
    let v = json(&npexec(
        &sim,
        &["np-test-1", "np-test-2", "--predict", "-o", "json"],
    ));
    assert_eq!(v[0]["verdict"], "blocked-network");
    let np: Vec<&serde_json::Value> = v[0]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "network-policy")
        .collect();
    assert_eq!(np.len(), 1, "{v}");
    assert_eq!(np[0]["name"], NETPOL_NAME);
    assert_eq!(np[0]["direction"], "ingress");
    assert_eq!(np[0]["effect"], "denied");
}

#[test]
fn explain_flags_a_policy_that_has_not_reached_the_sidecar() {
    // 1000 s of simulated propagation at time scale 0.05: 50 s of real time,
    // far longer than this test's probe takes.
    let sim = start_with(&[walkthrough()], &["--propagation-delay", "1000s"], 2);
    apply(&sim, &policy("block-istio-ingress-np-test-2.yaml"));
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--explain", "-o", "json"]);
    let v = json(&out);
    assert_eq!(v[0]["verdict"], "allowed", "{v}");
    assert_eq!(v[0]["analysis"]["engine_verdict"], "denied-rbac", "{v}");
    let c = v[0]["analysis"]["contradictions"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        c.contains("should deny this request, but it was allowed"),
        "{v}"
    );
    assert!(c.contains(AUTHZ_ID), "{c}");
}

#[test]
fn walkthrough_network_policy_blocks() {
    let sim = Sim::walkthrough().start();
    apply(&sim, &policy("block-ingress-np-test-2.yaml"));
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--both", "-o", "json"]);
    let v = json(&out);
    assert_eq!(v[0]["verdict"], "blocked-network", "{v}");
    assert_eq!(v[1]["verdict"], "allowed", "{v}");
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--expect", "deny"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
}

#[test]
fn expect_deny_with_wait_rides_out_propagation() {
    // 40 s of simulated propagation at time scale 0.05: about 2 s of real time.
    let sim = start_with(&[walkthrough()], &["--propagation-delay", "40s"], 2);
    apply(&sim, &policy("block-istio-ingress-np-test-2.yaml"));
    let out = npexec(
        &sim,
        &[
            "np-test-1",
            "np-test-2",
            "--expect",
            "deny",
            "--wait",
            "10s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("denied-rbac"));
    let out = npexec(&sim, &["np-test-1", "np-test-2", "--expect", "allow"]);
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
}

const CLASSES: &str = include_str!("npexec_classes.yaml");

#[test]
fn every_verdict_class_is_produced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("classes.yaml");
    std::fs::write(&file, CLASSES).unwrap();
    let sim = start_with(&[file], &[], 8);
    let mut seen = std::collections::BTreeMap::new();
    let runs: &[&[&str]] = &[
        &["vc-src", "vc-dst"],
        &["vc-plain", "vc-dst", "--service", "ok"],
        &["vc-src", "--url", "http://nope.vc-dst.svc.cluster.local/"],
        &["vc-nocurl", "vc-dst", "--service", "ok"],
    ];
    for args in runs {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let v = json(&npexec(&sim, &a));
        for p in v.as_array().unwrap() {
            let to = p["to"]["service"].as_str().unwrap_or("url").to_string();
            seen.insert(
                format!("{}->{to}", p["from"]["namespace"].as_str().unwrap()),
                p["verdict"].as_str().unwrap().to_string(),
            );
        }
    }
    let want = [
        ("vc-src->ok", "allowed"),
        ("vc-src->rbac", "denied-rbac"),
        ("vc-src->walled", "blocked-network"),
        ("vc-src->closed", "refused"),
        ("vc-src->url", "dns-failure"),
        ("vc-plain->ok", "mtls-failure"),
        ("vc-src->broken", "http-error"),
        ("vc-nocurl->ok", "exec-failed"),
    ];
    for (k, verdict) in want {
        assert_eq!(
            seen.get(k).map(String::as_str),
            Some(verdict),
            "{k}: {seen:?}"
        );
    }
}

fn matrix_scenario(n: usize) -> String {
    let mut docs = Vec::new();
    for i in 0..n {
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: mx-{i}, labels: {{istio-injection: enabled, matrix: \"yes\"}}}}\n"
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: mx-{i}, labels: {{app: web}}, annotations: {{meshsim.dev/response: \"web {i}\"}}}}\nspec:\n  containers: [{{name: web, image: nginx:latest, ports: [{{containerPort: 80}}]}}]\n"
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: mx-{i}}}\nspec: {{selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: 80}}]}}\n"
        ));
    }
    // mx-3 denies mx-5 (AuthorizationPolicy); mx-7 takes ingress only from mx-0 (NetworkPolicy).
    docs.push("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-5, namespace: mx-3}\nspec:\n  action: DENY\n  rules: [{from: [{source: {namespaces: [mx-5]}}]}]\n".to_string());
    docs.push("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-0, namespace: mx-7}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mx-0}}}]}]\n".to_string());
    docs.join("---\n")
}

#[test]
fn matrix_over_ten_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("matrix.yaml");
    std::fs::write(&file, matrix_scenario(10)).unwrap();
    let sim = start_with(&[file], &[], 10);
    let names: Vec<String> = (0..10).map(|i| format!("mx-{i}")).collect();
    let mut args: Vec<&str> = vec!["--matrix"];
    args.extend(names.iter().map(String::as_str));
    let out = npexec(&sim, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("mx-")).collect();
    assert_eq!(rows.len(), 10, "{text}");
    assert!(text.contains("legend:"), "{text}");
    // Row mx-5, column mx-3: R; rows other than mx-0, column mx-7: N.
    let cells = |row: &str| -> Vec<String> {
        rows.iter()
            .find(|l| l.split_whitespace().next() == Some(row))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(cells("mx-5")[3], "R", "{text}");
    assert_eq!(cells("mx-5")[7], "N", "{text}");
    assert_eq!(cells("mx-0")[7], "A", "{text}");
    assert_eq!(cells("mx-1")[2], "A", "{text}");
    // Same-namespace pairs are probed too (--no-same-namespace leaves them out).
    assert_eq!(cells("mx-4")[4], "A", "{text}");
    assert_eq!(cells("mx-7")[7], "A", "loopback: {text}");

    let mut jargs = args.clone();
    jargs.extend(["-o", "json"]);
    let v = json(&npexec(&sim, &jargs));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 100);
    for p in arr {
        let from = p["from"]["namespace"].as_str().unwrap();
        let to = p["to"]["namespace"].as_str().unwrap();
        let want = match (from, to) {
            // A pod reaching its own Service is loopback: no NetworkPolicy applies.
            ("mx-7", "mx-7") => "allowed",
            ("mx-5", "mx-3") => "denied-rbac",
            (f, "mx-7") if f != "mx-0" => "blocked-network",
            _ => "allowed",
        };
        assert_eq!(p["verdict"], want, "{from} -> {to}: {p}");
    }
    // --predict agrees with the probes on every pair.
    let mut pargs = jargs.clone();
    pargs.push("--predict");
    let pv = json(&npexec(&sim, &pargs));
    for (a, b) in arr.iter().zip(pv.as_array().unwrap()) {
        assert_eq!(a["verdict"], b["verdict"], "{a} vs {b}");
    }
}

/// The walk-through's own check, exactly as the seed types it (minus `-it`).
fn pipeline(sim: &Sim, from: u8, to: u8) -> String {
    let pod = sim.run(&[
        "get",
        "pod",
        "-n",
        &format!("np-test-{from}"),
        "-l",
        &format!("app=np-test-nginx-{from}"),
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let pod = String::from_utf8_lossy(&pod.stdout).into_owned();
    let script = format!(
        "curl -sf --max-time 3 svc-np-test-nginx-{to}.np-test-{to}.svc.cluster.local || echo 'Failed calling np-test-nginx-{to}'"
    );
    let out = sim.run(&[
        "exec",
        &pod,
        "-n",
        &format!("np-test-{from}"),
        "--",
        "bash",
        "-c",
        &script,
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn walkthrough_pipeline_and_plugin_agree() {
    let sim = Sim::walkthrough().start();
    let steps = [
        None,
        Some("block-istio-ingress-np-test-2.yaml"),
        Some("block-ingress-np-test-2.yaml"),
    ];
    let mut verdicts = Vec::new();
    for step in steps {
        if let Some(f) = step {
            apply(&sim, &policy(f));
        }
        // Let the AuthorizationPolicy reach the sidecar before comparing.
        let _ = npexec(
            &sim,
            &["np-test-1", "np-test-2", "--expect", "deny", "--wait", "3s"],
        );
        let v = json(&npexec(
            &sim,
            &["np-test-1", "np-test-2", "--both", "-o", "json"],
        ));
        for (i, (from, to)) in [(1u8, 2u8), (2, 1)].into_iter().enumerate() {
            let shell = pipeline(&sim, from, to);
            let verdict = v[i]["verdict"].as_str().unwrap().to_string();
            let shell_ok = shell.contains(&format!("Hello world - np-test-nginx-{to}!"));
            let shell_failed = shell.contains(&format!("Failed calling np-test-nginx-{to}"));
            assert!(shell_ok != shell_failed, "{shell}");
            assert_eq!(
                shell_ok,
                verdict == "allowed",
                "{step:?} {from}->{to}: shell said {shell:?}, plugin {verdict}"
            );
            verdicts.push(verdict);
        }
    }
    assert_eq!(
        verdicts,
        [
            "allowed",
            "allowed",
            "denied-rbac",
            "allowed",
            "blocked-network",
            "allowed"
        ]
    );
}
