//! Every way of naming pods (issue 17), for each plugin, through the real
//! kubectl against `meshsim serve` with the walk-through: `POD`, `POD.NS`,
//! `pod/POD`, `deployment/`, `replicaset/`/`rs/`, `service/`/`svc/`, with `-n`
//! or the kubeconfig context's namespace; npexec's `NAMESPACE/SERVICE` TO and
//! its `-n` rule. `sts/` and `ds/` give a one-line not-found error until a
//! StatefulSet and a DaemonSet exist, then resolve through their selectors
//! (meshsim makes one pod per node for a DaemonSet, none for a StatefulSet).

use crate::common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::sim::walkthrough;
use serde_json::Value;

use common::sim::Sim;

impl Sim {
    /// Runs with a kubeconfig whose context namespace is `ns`.
    fn run_in_context_ns(&self, ns: &str, args: &[&str]) -> Output {
        let copy = self.path().join(format!("kubeconfig-{ns}"));
        if !copy.exists() {
            std::fs::copy(self.kubeconfig(), &copy).unwrap();
            let o = self
                .cmd()
                .env("KUBECONFIG", &copy)
                .args(["config", "set-context", "--current", "--namespace", ns])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o.stderr));
        }
        self.cmd()
            .env("KUBECONFIG", &copy)
            .args(args)
            .output()
            .unwrap()
    }

    fn out(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout).trim().to_string()
    }

    fn pod(&self, ns: &str) -> String {
        self.out(&[
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
    }

    fn replicaset(&self, ns: &str) -> String {
        self.out(&[
            "get",
            "rs",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(o: &Output, what: &str) -> Value {
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{what}: exit {:?}: {}",
        o.status.code(),
        text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", text(&o.stdout)))
}

fn one_line_error(o: &Output, code: i32, what: &str) -> String {
    assert_eq!(o.status.code(), Some(code), "{what}: {}", text(&o.stderr));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{what}: {e}");
    assert!(e.starts_with("error: "), "{what}: {e}");
    e
}

#[test]
fn authzcheck_takes_every_target_form() {
    let sim = Sim::walkthrough().istioctl().start();
    let pod = sim.pod("np-test-2");
    let rs = sim.replicaset("np-test-2");
    let dotted = format!("{pod}.np-test-2");
    let pod_slash = format!("pod/{pod}");
    let rs_slash = format!("rs/{rs}");
    let rs_long = format!("replicaset/{rs}");
    let forms: Vec<Vec<&str>> = vec![
        vec!["np-test-2", &pod],
        vec![&dotted],
        vec![&dotted, "-n", "np-test-2"],
        vec![&pod, "-n", "np-test-2"],
        vec!["-n", "np-test-2", &pod_slash],
        vec!["np-test-2", "deployment/np-test-nginx-2"],
        vec!["-n", "np-test-2", "deploy/np-test-nginx-2"],
        vec!["-n", "np-test-2", &rs_slash],
        vec!["np-test-2", &rs_long],
        vec!["-n", "np-test-2", "svc/svc-np-test-nginx-2"],
        vec!["np-test-2", "service/svc-np-test-nginx-2"],
        vec!["svc/svc-np-test-nginx-2.np-test-2"],
    ];
    for args in &forms {
        let mut all = vec!["authzcheck"];
        all.extend(args);
        all.extend(["-o", "json"]);
        let v = json(&sim.run(&all), &format!("{args:?}"));
        assert_eq!(v["pod"]["name"], pod.as_str(), "{args:?}");
        assert_eq!(v["pod"]["namespace"], "np-test-2", "{args:?}");
    }
    // The context's namespace: a bare POD, or a workload, with no namespace given.
    for t in [
        &pod[..],
        "svc/svc-np-test-nginx-2",
        "deployment/np-test-nginx-2",
    ] {
        let o = sim.run_in_context_ns("np-test-2", &["authzcheck", t, "-o", "json"]);
        let v = json(&o, t);
        assert_eq!(v["pod"]["name"], pod.as_str(), "{t}");
    }
    // A bare word naming a namespace still means every pod of it (an array).
    let v = json(
        &sim.run(&["authzcheck", "np-test-2", "-o", "json"]),
        "namespace",
    );
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v:#}");
    // Neither a namespace nor a pod; a Service of another namespace; sts/ds unknown here.
    let e = one_line_error(&sim.run(&["authzcheck", "nope"]), 3, "nope");
    assert!(e.contains("namespace or pod \"nope\" not found"), "{e}");
    let e = one_line_error(
        &sim.run(&["authzcheck", "-n", "np-test-1", "svc/svc-np-test-nginx-2"]),
        3,
        "svc in np-test-1",
    );
    assert!(
        e.contains("service \"svc-np-test-nginx-2\" not found in namespace np-test-1"),
        "{e}"
    );
    for t in ["sts/db", "ds/agent"] {
        one_line_error(&sim.run(&["authzcheck", "-n", "np-test-2", t]), 3, t);
    }
    // Once they exist, sts/ and ds/ resolve through their selectors to the pods
    // they select: meshsim has no StatefulSet controller, so sts/db selects the
    // walk-through's nginx-2 pod; its DaemonSet controller makes agent's pod.
    // np-test-2's only pod until the DaemonSet makes one.
    let nginx2 = sim.pod("np-test-2");
    let mut apply = sim.cmd();
    apply
        .args(["create", "--validate=false", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(SETS.as_bytes())
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut agent = String::new();
    for _ in 0..200 {
        agent = sim.out(&[
            "get",
            "pods",
            "-n",
            "np-test-2",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        if !agent.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        agent.starts_with("agent-"),
        "the DaemonSet made no pod: {agent:?}"
    );
    for t in ["sts/db", "ds/agent", "statefulset/db", "daemonset/agent"] {
        let v = json(
            &sim.run(&["authzcheck", "-n", "np-test-2", t, "-o", "json"]),
            t,
        );
        let want = if t.contains("agent") { &agent } else { &nginx2 };
        // One pod: one report object (several would be an array).
        assert_eq!(v["pod"]["name"], want.as_str(), "{t}: {v:#}");
        assert_eq!(v["pod"]["namespace"], "np-test-2", "{t}");
    }
    // POD.NS contradicting -n: the dotted word is a pod name, which does not exist.
    let e = one_line_error(
        &sim.run(&["authzcheck", &dotted, "-n", "np-test-1"]),
        3,
        "dotted with other -n",
    );
    assert!(e.contains("not found"), "{e}");
    // Unknown kinds are usage errors.
    one_line_error(
        &sim.run(&["authzcheck", "-n", "np-test-2", "job/x"]),
        2,
        "job",
    );
}

#[test]
fn npexec_takes_every_source_form_and_namespace_slash_service() {
    let sim = Sim::walkthrough().istioctl().start();
    let pod = sim.pod("np-test-1");
    let rs = sim.replicaset("np-test-1");
    let dotted = format!("{pod}.np-test-1");
    let pod_slash = format!("pod/{pod}");
    let rs_slash = format!("rs/{rs}");
    for source in [
        &pod[..],
        &dotted,
        &pod_slash,
        "deployment/np-test-nginx-1",
        &rs_slash,
        "svc/svc-np-test-nginx-1",
    ] {
        let v = json(
            &sim.run(&[
                "npexec",
                "np-test-1",
                "np-test-2",
                "--pod",
                source,
                "-o",
                "json",
            ]),
            source,
        );
        let rows = v.as_array().unwrap();
        assert!(!rows.is_empty(), "{source}");
        for r in rows {
            assert_eq!(r["from"]["pod"], pod.as_str(), "{source}: {r:#}");
        }
    }
    // NAMESPACE/SERVICE as a TO: only that Service; the namespace alone: all of them.
    let v = json(
        &sim.run(&[
            "npexec",
            "np-test-2",
            "np-test-1/svc-np-test-nginx-1",
            "-o",
            "json",
        ]),
        "ns/svc",
    );
    let rows = v.as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r["to"]["service"], "svc-np-test-nginx-1", "{r:#}");
        assert_eq!(r["to"]["namespace"], "np-test-1", "{r:#}");
    }
    let o = sim.run(&["npexec", "np-test-2", "np-test-1/nope", "-o", "json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    // -n is FROM: every argument is a TO; FROM repeated as the first TO is refused.
    let v = json(
        &sim.run(&["npexec", "-n", "np-test-1", "np-test-2", "-o", "json"]),
        "-n",
    );
    for r in v.as_array().unwrap() {
        assert_eq!(r["from"]["namespace"], "np-test-1");
        assert_eq!(r["to"]["namespace"], "np-test-2");
    }
    let e = one_line_error(
        &sim.run(&["npexec", "-n", "np-test-1", "np-test-1", "np-test-2"]),
        2,
        "-n repeated",
    );
    assert!(e.contains("both as -n (FROM)"), "{e}");
    // A source target that names nothing in FROM: one line, exit 3.
    let e = one_line_error(
        &sim.run(&[
            "npexec",
            "np-test-1",
            "np-test-2",
            "--pod",
            "svc/svc-np-test-nginx-2",
        ]),
        3,
        "svc of another namespace",
    );
    assert!(e.contains("not found in namespace np-test-1"), "{e}");
}

#[test]
fn rbaclog_pod_takes_every_target_form() {
    let sim = Sim::walkthrough().istioctl().start();
    let pod2 = sim.pod("np-test-2");
    let pod1 = sim.pod("np-test-1");
    let rs = sim.replicaset("np-test-2");
    let policy: PathBuf = walkthrough()
        .join("policies")
        .join("block-istio-ingress-np-test-2.yaml");
    sim.out(&["apply", "-f", policy.to_str().unwrap()]);
    // Probe until one request is denied (the policy reaches the sidecar after a delay).
    let mut denied = false;
    for _ in 0..200 {
        let o = sim.run(&[
            "exec",
            &pod1,
            "-n",
            "np-test-1",
            "--",
            "bash",
            "-c",
            "curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo denied-here",
        ]);
        if text(&o.stdout).contains("denied-here") {
            denied = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(denied, "the probe was never denied");
    let dotted = format!("{pod2}.np-test-2");
    let pod_slash = format!("pod/{pod2}");
    let rs_slash = format!("rs/{rs}");
    for target in [
        &pod2[..],
        &dotted,
        &pod_slash,
        "deployment/np-test-nginx-2",
        &rs_slash,
        "svc/svc-np-test-nginx-2",
    ] {
        let v = json(
            &sim.run(&["rbaclog", "np-test-2", "--pod", target, "-o", "json"]),
            target,
        );
        let rows = v.as_array().unwrap();
        assert!(!rows.is_empty(), "{target}: no decision");
        for r in rows {
            assert_eq!(r["pod"], pod2.as_str(), "{target}: {r:#}");
        }
    }
    let e = one_line_error(
        &sim.run(&["rbaclog", "np-test-1", "--pod", "svc/svc-np-test-nginx-2"]),
        3,
        "svc of another namespace",
    );
    assert!(e.contains("not found in namespace np-test-1"), "{e}");
    one_line_error(
        &sim.run(&["rbaclog", "np-test-2", "--pod", "job/x"]),
        2,
        "job",
    );
}

/// An empty namespace labelled for injection: rbaclog says it has no pod yet,
/// never to label it; an unlabelled one is told to label it.
#[test]
fn rbaclog_advice_follows_the_namespace_label() {
    let sim = Sim::walkthrough().istioctl().start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("ns.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: empty-meshed, labels: {istio-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: empty-plain}\n",
    )
    .unwrap();
    sim.out(&["apply", "-f", yaml.to_str().unwrap()]);
    let e = one_line_error(&sim.run(&["rbaclog", "empty-meshed"]), 3, "meshed");
    assert!(!e.contains("kubectl label"), "{e}");
    assert!(
        e.contains("labelled for injection but has no pod yet"),
        "{e}"
    );
    let e = one_line_error(&sim.run(&["rbaclog", "empty-plain"]), 3, "plain");
    assert!(e.contains("kubectl label namespace empty-plain"), "{e}");
}

/// A StatefulSet selecting the walk-through's nginx-2 pods, and a DaemonSet
/// with pods of its own.
const SETS: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: np-test-2}
spec:
  serviceName: db
  selector: {matchLabels: {app: np-test-nginx-2}}
  template:
    metadata: {labels: {app: np-test-nginx-2}}
    spec: {containers: [{name: db, image: nginx}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: np-test-2}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: nginx}]}
";
