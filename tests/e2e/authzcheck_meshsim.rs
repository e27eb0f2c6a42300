//! End-to-end tests of `kubectl authzcheck` through the real kubectl (plugin
//! discovery on PATH) against `meshsim serve` with the walk-through scenario,
//! and meshsim's istioctl stand-in linked as `istioctl` in a PATH directory
//! of the test's own.
//!
//! Needs the binaries built in the same target directory:
//! `cargo build -p kubectl-authzcheck -p meshsim` (meshsim also builds
//! `meshsim-istioctl`). Waits are bounded by attempts, never asserted on time.

use crate::common;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::sim::{built, link, path_without_istioctl, walkthrough};
use serde_json::Value;

/// `meshsim serve` plus two PATH directories of the test's own holding the
/// plugin, one also holding meshsim's istioctl stand-in as `istioctl`.
/// The common handle with this file's helpers: a PATH with or without istioctl.
struct Sim(common::sim::Sim);

impl Deref for Sim {
    type Target = common::sim::Sim;
    fn deref(&self) -> &common::sim::Sim {
        &self.0
    }
}

/// Which istioctl the plugin finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Istio {
    /// meshsim's stand-in linked as `istioctl`.
    StandIn,
    /// No istioctl on PATH at all.
    Absent,
}

impl Sim {
    /// Starts meshsim with the walk-through; `extra` are more `serve` flags.
    fn start(extra: &[&str]) -> Sim {
        let bins = built(&["kubectl-authzcheck", "meshsim", "meshsim-istioctl"]);
        let sim = Sim(common::sim::Sim::walkthrough().flags(extra).start());
        for sub in ["with-istioctl", "without-istioctl"] {
            let d = sim.path().join(sub);
            std::fs::create_dir(&d).unwrap();
            link(
                &bins.join("kubectl-authzcheck"),
                &d.join("kubectl-authzcheck"),
            );
        }
        link(
            &bins.join("meshsim-istioctl"),
            &sim.path().join("with-istioctl/istioctl"),
        );
        sim
    }

    fn command(&self, istio: Istio) -> Command {
        let sub = match istio {
            Istio::StandIn => "with-istioctl",
            Istio::Absent => "without-istioctl",
        };
        let mut paths = vec![self.path().join(sub)];
        paths.extend(path_without_istioctl());
        self.0.kubectl_cmd(&std::env::join_paths(paths).unwrap())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.command(Istio::StandIn).args(args).output().unwrap()
    }

    fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn apply_file(&self, path: &Path) {
        let out = self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl authzcheck ARGS`.
    fn authzcheck(&self, istio: Istio, args: &[&str]) -> Output {
        self.command(istio)
            .arg("authzcheck")
            .args(args)
            .output()
            .unwrap()
    }

    /// `kubectl authzcheck ARGS -o json`, which must succeed (exit 0 or 1).
    fn json(&self, istio: Istio, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.authzcheck(istio, &all);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "authzcheck {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Re-runs `json` until `done` holds (bounded by attempts).
    fn json_until(&self, istio: Istio, args: &[&str], done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..150 {
            last = self.json(istio, args);
            if done(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("condition never held; last output: {last:#}");
    }
}

fn policy(file: &str) -> PathBuf {
    walkthrough().join("policies").join(file)
}

const POD2: &[&str] = &["np-test-2", "deployment/np-test-nginx-2"];

/// (action, policy, namespace, rules) of the proxy section.
fn rows(v: &Value) -> Vec<(String, String, Option<String>, u64)> {
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

fn has_row(v: &Value, action: &str, policy: &str) -> bool {
    rows(v).iter().any(|r| r.0 == action && r.1 == policy)
}

fn codes(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn authz<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["authorization_policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v:#}"))
}

fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn pod_without_sidecar_and_namespace_without_injection() {
    let sim = Sim::start(&["--time-scale", "0.05"]);
    sim.apply(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: plain}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: plain}
spec: {}
"#,
    );
    let v = sim.json_until(Istio::StandIn, &["plain", "-l", "app=web"], |v| {
        v[0]["pod"]["phase"] == "Running"
    });
    let v = &v[0];
    assert_eq!(v["pod"]["sidecar"], false);
    assert_eq!(v["proxy"]["source"], "unavailable");
    assert_eq!(authz(v, "allow-nothing")["loaded"], false);
    let c = codes(v);
    assert!(c.contains(&"no-sidecar".to_string()), "{c:?}");
    assert!(c.contains(&"no-injection".to_string()), "{c:?}");
    // A warning exists: --exit-code makes it exit 1; without, 0.
    let out = sim.authzcheck(Istio::StandIn, &["plain", "-l", "app=web", "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    let out = sim.authzcheck(Istio::StandIn, &["plain", "-l", "app=web"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sidecar: no"), "{text}");
}

#[test]
fn bad_input_is_one_line_with_documented_exit_codes() {
    let sim = Sim::start(&["--time-scale", "0.05"]);
    // Namespace, pod and deployment not found: exit 3.
    for (args, needle) in [
        (&["np-test-9", "p"][..], "namespace \"np-test-9\" not found"),
        (&["np-test-2", "nope"], "pod \"nope\" not found"),
        (
            &["np-test-2", "deployment/nope"],
            "deployment \"nope\" not found",
        ),
        (
            &["np-test-2", "-l", "app=nope"],
            "no pod in namespace np-test-2",
        ),
    ] {
        let out = sim.authzcheck(Istio::StandIn, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = one_line_error(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Usage errors: exit 2.
    let out = sim.authzcheck(Istio::StandIn, &["NP", "x"]);
    assert_eq!(out.status.code(), Some(2));
    one_line_error(&out);

    // Several pods where one was asked: the names are listed.
    let out = sim.kubectl(&[
        "scale",
        "deployment/np-test-nginx-2",
        "-n",
        "np-test-2",
        "--replicas=2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut err = String::new();
    for _ in 0..150 {
        let out = sim.authzcheck(Istio::StandIn, POD2);
        if out.status.code() == Some(2) {
            err = one_line_error(&out);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(err.contains("matches 2 pods"), "{err}");
    let pods = sim.kubectl(&["get", "pods", "-n", "np-test-2", "-o", "name"]);
    for name in String::from_utf8_lossy(&pods.stdout).lines() {
        let name = name.trim_start_matches("pod/");
        assert!(err.contains(name), "{name} missing from {err}");
    }
}

/// An istioctl replaced by a script (argv checked, stderr and exit code chosen).
fn fake_istioctl(sim: &Sim, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = sim.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The finding of `code` in a report, which must exist.
fn finding<'a>(v: &'a Value, code: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} finding: {v:#}"))
}

/// An istioctl that fails (exit with a message, killed by a signal, printing
/// garbage, too old, absent) costs no section: the report is made from the
/// config dump through exec, one warning names istioctl's failure and what
/// was used instead, and the exit code is 0 (1 with --exit-code).
#[test]
fn istioctl_failing_in_any_way_falls_back_to_the_config_dump() {
    let sim = Sim::start(&["--time-scale", "0.05"]);
    sim.apply_file(&policy("block-ingress-np-test-2.yaml"));
    sim.apply(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: np-test-2}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}]
"#,
    );
    let reference = sim.json_until(Istio::StandIn, POD2, |v| has_row(v, "DENY", "deny-evil"));
    assert_eq!(reference["proxy"]["source"], "istioctl");
    let pod = reference["pod"]["name"].as_str().unwrap().to_string();
    // The pod is passed as POD.NS, as in the walk-through; a wrong argv fails differently.
    let argv_check = format!(
        "[ \"$1 $2 $3 $4\" = \"x authz check {pod}.np-test-2\" ] || {{ echo \"unexpected argv: $*\" >&2; exit 9; }}"
    );
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "istioctl-failing",
            format!("{argv_check}\necho 'Error: istiod version 1.20 incompatible' >&2\nexit 1"),
            &["exit 1", "istiod version 1.20 incompatible"],
        ),
        (
            "istioctl-killed",
            format!("{argv_check}\nkill -9 $$"),
            &["killed by signal 9"],
        ),
        (
            "istioctl-garbage",
            format!("{argv_check}\nprintf 'Segmentation fault? \\377\\376 nonsense\\nmore\\n'"),
            &["something else than its table"],
        ),
        (
            "istioctl-silent",
            "exit 1".to_string(),
            &["exit 1", "no message"],
        ),
        (
            "istioctl-old",
            "echo 'Error: unknown command \"authz\" for \"istioctl experimental\"' >&2\nexit 1"
                .to_string(),
            &["too old", "1.7.1"],
        ),
    ];
    let mut runs: Vec<(String, PathBuf, &[&str])> = cases
        .into_iter()
        .map(|(name, script, needles)| {
            (
                name.to_string(),
                fake_istioctl(&sim, name, &script),
                needles,
            )
        })
        .collect();
    runs.push((
        "absent".into(),
        sim.dir.path().join("no-such-istioctl"),
        &["not found", "no-such-istioctl"],
    ));
    for (name, tool, needles) in runs {
        let tool = tool.to_str().unwrap();
        let mut args = POD2.to_vec();
        args.extend(["--istioctl", tool]);
        let v = sim.json(Istio::Absent, &args);
        // Every section is there: the API ones and Envoy's, from the config dump.
        assert_eq!(v["proxy"]["source"], "config-dump", "{name}: {v:#}");
        assert_eq!(rows(&v), rows(&reference), "{name}");
        assert_eq!(v["network_isolation"]["ingress"], true, "{name}");
        assert_eq!(authz(&v, "deny-evil")["loaded"], true, "{name}");
        let f = finding(&v, "istioctl-failed");
        assert_eq!(f["severity"], "warning", "{name}");
        let msg = f["message"].as_str().unwrap();
        assert!(msg.starts_with("istioctl failed: "), "{name}: {msg}");
        assert!(
            msg.ends_with("; used the config dump through exec instead"),
            "{name}: {msg}"
        );
        for n in needles {
            assert!(msg.contains(n), "{name}: {n:?} not in {msg}");
        }
        // Text: the sections print, the warning among the findings, exit 0; 1 with --exit-code.
        let out = sim.authzcheck(Istio::Absent, &args);
        assert_eq!(out.status.code(), Some(0), "{name}");
        let text = String::from_utf8_lossy(&out.stdout);
        for title in [
            "Kubernetes NetworkPolicy",
            "Istio AuthorizationPolicy from the API",
            "What Envoy loaded (config-dump",
            "istioctl failed: ",
        ] {
            assert!(text.contains(title), "{name}: {title:?} missing: {text}");
        }
        assert!(
            out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        args.push("--exit-code");
        assert_eq!(sim.authzcheck(Istio::Absent, &args).status.code(), Some(1));
    }
}

/// The config dump through exec failing (no pods/exec permission) costs only
/// the Envoy section: the API sections print, a warning names the cause.
#[test]
fn a_failing_config_dump_keeps_the_api_sections() {
    let sim = Sim::start(&["--time-scale", "0.05", "--fault", "verb=exec,status=403"]);
    let v = sim.json(
        Istio::StandIn,
        &["np-test-2", "deployment/np-test-nginx-2", "--native"],
    );
    assert_eq!(v["proxy"]["source"], "unavailable");
    assert_eq!(v["pod"]["namespace"], "np-test-2");
    assert!(v["network_isolation"].is_object());
    let f = finding(&v, "proxy-unavailable");
    assert_eq!(f["severity"], "warning");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("cannot create pods/exec in namespace np-test-2"),
        "{msg}"
    );
    // Both sources failing: istioctl's failure and the dump's are both named.
    let failing = fake_istioctl(&sim, "istioctl-failing", "echo 'Error: boom' >&2\nexit 1");
    let args = [
        "np-test-2",
        "deployment/np-test-nginx-2",
        "--istioctl",
        failing.to_str().unwrap(),
    ];
    let v = sim.json(Istio::Absent, &args);
    assert_eq!(v["proxy"]["source"], "unavailable");
    let msg = finding(&v, "istioctl-failed")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("boom") && msg.contains("pods/exec"), "{msg}");
    let out = sim.authzcheck(Istio::Absent, &args);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Kubernetes NetworkPolicy"), "{text}");
    assert!(text.contains("(nothing to show)"), "{text}");
}

#[test]
fn walkthrough_pod_before_and_after_each_policy() {
    let sim = Sim::start(&["--time-scale", "0.05"]);
    // Before: nothing isolates the pod, no AuthorizationPolicy, Envoy holds no named policy.
    let v = sim.json(Istio::StandIn, POD2);
    assert_eq!(v["pod"]["namespace"], "np-test-2");
    assert_eq!(v["pod"]["sidecar"], true);
    assert_eq!(v["network_isolation"]["ingress"], false);
    assert!(v["network_policies"].as_array().unwrap().is_empty());
    assert!(v["authorization_policies"].as_array().unwrap().is_empty());
    assert_eq!(v["proxy"]["source"], "istioctl");
    assert!(rows(&v).iter().all(|r| r.2.is_none()), "{:?}", rows(&v));

    // NetworkPolicy: ingress isolated at once, rules in words, the probe reminder.
    sim.apply_file(&policy("block-ingress-np-test-2.yaml"));
    let v = sim.json(Istio::StandIn, POD2);
    assert_eq!(v["network_isolation"]["ingress"], true);
    assert_eq!(v["network_isolation"]["egress"], false);
    let np = &v["network_policies"][0];
    assert_eq!(np["name"], "deny-all-ingress-using-networkpolicy");
    assert_eq!(np["ingress"][0], "ingress: denies all (no rules)");
    assert!(codes(&v).contains(&"probe-netpol".to_string()));

    // AuthorizationPolicy DENY everything: in the API at once, loaded after propagation.
    sim.apply_file(&policy("block-istio-ingress-np-test-2.yaml"));
    let name = "deny-all-ingress-using-authorizationpolicy";
    let v = sim.json_until(Istio::StandIn, POD2, |v| {
        has_row(v, "DENY", name) && authz(v, name)["loaded"] == true
    });
    let a = authz(&v, name);
    assert_eq!(a["action"], "DENY");
    assert_eq!(a["scope"], "namespace");
    assert_eq!(
        a["meaning"],
        "DENY matching every request: denies every request"
    );
    assert_eq!(
        a["envoy_names"][0],
        format!("ns[np-test-2]-policy[{name}]-rule[0]")
    );
    assert!(!codes(&v).contains(&"not-loaded".to_string()));

    // Deleting both: gone from the API, then from Envoy.
    for kind in [
        "networkpolicy/deny-all-ingress-using-networkpolicy",
        &format!("authorizationpolicy/{name}"),
    ] {
        let out = sim.kubectl(&["delete", "-n", "np-test-2", kind]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v = sim.json_until(Istio::StandIn, POD2, |v| !has_row(v, "DENY", name));
    assert!(v["authorization_policies"].as_array().unwrap().is_empty());
    assert_eq!(v["network_isolation"]["ingress"], false);
}

#[test]
fn policy_within_propagation_delay_is_flagged_then_loaded() {
    // Real time (scale 1) with a 15 s delay: the first check runs well within it.
    let sim = Sim::start(&["--time-scale", "1", "--propagation-delay", "15s"]);
    sim.apply(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: np-test-2}
spec: {}
"#,
    );
    let v = sim.json(Istio::StandIn, POD2);
    let a = authz(&v, "allow-nothing");
    assert_eq!(a["loaded"], false);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "not-loaded")
        .unwrap_or_else(|| panic!("no not-loaded finding: {v:#}"));
    assert_eq!(f["severity"], "warning");
    assert!(f["message"].as_str().unwrap().contains("allow-nothing"));
    let out = sim.authzcheck(
        Istio::StandIn,
        &["np-test-2", "deployment/np-test-nginx-2", "--exit-code"],
    );
    assert_eq!(out.status.code(), Some(1));

    // After the delay: loaded, explained, no warning left.
    let v = sim.json_until(Istio::StandIn, POD2, |v| {
        authz(v, "allow-nothing")["loaded"] == true
    });
    assert!(has_row(&v, "ALLOW", "allow-nothing"));
    assert!(!codes(&v).contains(&"not-loaded".to_string()));
    let a = authz(&v, "allow-nothing");
    assert_eq!(
        a["meaning"],
        "ALLOW with no rules: allows nothing, so every request is denied"
    );
    assert!(codes(&v).contains(&"allow-nothing".to_string()));
    // What is left is the outage itself: an error, so --exit-code still fails.
    let bad: Vec<(&str, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| (f["code"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(bad, [("denies-everything", "error")], "{v:#}");
    let out = sim.authzcheck(
        Istio::StandIn,
        &["np-test-2", "deployment/np-test-nginx-2", "--exit-code"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn without_istioctl_the_native_path_gives_the_same_rows() {
    let sim = Sim::start(&["--time-scale", "0.05"]);
    sim.apply(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: np-test-2}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: np-test-2}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}, {to: [{operation: {paths: [/admin]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: try-deny
  namespace: np-test-2
  annotations: {istio.io/dry-run: "true"}
spec: {action: DENY, rules: [{}]}
"#,
    );
    let with = sim.json_until(Istio::StandIn, POD2, |v| {
        has_row(v, "ALLOW", "allow-nothing") && has_row(v, "DENY", "deny-evil")
    });
    assert_eq!(with["proxy"]["source"], "istioctl");
    let without = sim.json(Istio::Absent, POD2);
    assert_eq!(without["proxy"]["source"], "config-dump");
    assert_eq!(rows(&without), rows(&with));
    let forced = sim.json(
        Istio::StandIn,
        &["np-test-2", "deployment/np-test-nginx-2", "--native"],
    );
    assert_eq!(forced["proxy"]["source"], "config-dump");
    assert_eq!(rows(&forced), rows(&with));
    // The dry-run policy istioctl hides is shown from the dump, and counts as loaded.
    let hidden = without["proxy"]["hidden"].as_array().unwrap();
    assert!(
        hidden
            .iter()
            .any(|h| h["policy"] == "try-deny" && h["kind"] == "dry-run"),
        "{hidden:?}"
    );
    assert_eq!(authz(&without, "try-deny")["loaded"], true);
    assert_eq!(authz(&without, "deny-evil")["rules"], 2);
}

/// An ALLOW policy of HTTP methods on a workload whose only port is TCP:
/// nothing can reach it. That is an error (so `--exit-code` fails), read from
/// what Envoy loaded for the port, with istioctl and without.
#[test]
fn allow_of_http_fields_on_a_tcp_only_workload_is_an_error() {
    let sim = Sim::start(&["--time-scale", "0.05"]);
    sim.apply(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: data, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: mysql, ports: [{containerPort: 3306}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec:
  selector: {app: db}
  ports: [{name: tcp-mysql, port: 3306, targetPort: 3306}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
"#,
    );
    let args = ["-n", "data", "svc/db"];
    for istio in [Istio::StandIn, Istio::Absent] {
        let v = sim.json_until(istio, &args, |v| has_row(v, "ALLOW", "allow-get"));
        let f = finding(&v, "denies-everything");
        assert_eq!(f["severity"], "error", "{v:#}");
        assert!(f["message"].as_str().unwrap().contains("3306"), "{f}");
        let mut with = args.to_vec();
        with.push("--exit-code");
        assert_eq!(sim.authzcheck(istio, &with).status.code(), Some(1));
    }
}
