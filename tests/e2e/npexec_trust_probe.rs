//! End-to-end tests of what `kubectl npexec`'s probe does, through the real
//! kubectl against meshsim with the walk-through plus examples/trust-probe:
//! the verdict does not depend on the client tool the source pod has (curl,
//! GNU wget, BusyBox wget), the source pod is chosen predictably (a pod with
//! a tool over one without), and a namespace without any tool says so.

use crate::common;

use std::process::Output;

use common::repo_root;
use common::sim::{built, walkthrough};

struct Sim(common::sim::Sim);

impl Sim {
    fn start() -> Sim {
        built(&["kubectl-npexec", "meshsim"]);
        let scenarios = [walkthrough(), repo_root().join("examples/trust-probe")];
        // 2 walk-through pods + 6 trust-probe pods.
        let [w, t] = scenarios;
        Sim(common::sim::Sim::builder()
            .scenario(w)
            .scenario(t)
            .pods(8)
            .start())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.0.run(args)
    }

    fn npexec(&self, args: &[&str]) -> Output {
        let mut v = vec!["npexec"];
        v.extend_from_slice(args);
        self.kubectl(&v)
    }

    /// `npexec ARGS -o json`: the probes.
    fn probes(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut v = args.to_vec();
        v.extend(["-o", "json"]);
        let out = self.npexec(&v);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", err(&out)));
        json.as_array().cloned().unwrap_or_default()
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CLIENTS: [(&str, &str); 3] = [
    ("tp-busybox", "wget"),
    ("tp-gnu", "wget"),
    ("tp-curl", "curl"),
];

#[test]
fn every_client_tool_gives_the_walkthroughs_verdicts() {
    let sim = Sim::start();
    for (ns, tool) in CLIENTS {
        let p = sim.probes(&[ns, "np-test-2"]);
        assert_eq!(p.len(), 1, "{ns}: {p:?}");
        assert_eq!(p[0]["verdict"], "allowed", "{ns}: {}", p[0]);
        assert_eq!(p[0]["tool"], tool, "{ns}: {}", p[0]);
    }
    let deny = walkthrough().join("policies/block-istio-ingress-np-test-2.yaml");
    let out = sim.kubectl(&["apply", "-f", deny.to_str().unwrap()]);
    assert!(out.status.success(), "{}", err(&out));
    // Wait (observably) until the sidecar enforces it.
    let out = sim.npexec(&[
        "tp-curl",
        "np-test-2",
        "--expect",
        "denied-rbac",
        "--wait",
        "20s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    for (ns, tool) in CLIENTS {
        let p = sim.probes(&[ns, "np-test-2"]);
        assert_eq!(p[0]["verdict"], "denied-rbac", "{ns}: {}", p[0]);
        assert_eq!(p[0]["tool"], tool, "{ns}: {}", p[0]);
        assert_eq!(p[0]["http_status"], 403, "{ns}: {}", p[0]);
        let out = sim.npexec(&[ns, "np-test-2", "--expect", "denied-rbac"]);
        assert_eq!(out.status.code(), Some(0), "{ns}: {}", err(&out));
    }

    // tp-notool's only pod has no tool: --debug-image adds an ephemeral
    // container (pods/ephemeralcontainers) in that pod and probes from it.
    let out = sim.npexec(&[
        "tp-notool",
        "np-test-2",
        "--debug-image",
        "curlimages/curl:8.5.0",
        "-o",
        "json",
    ]);
    let e = err(&out);
    assert_eq!(out.status.code(), Some(0), "{e}");
    let p: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p[0]["verdict"], "denied-rbac", "{}", p[0]);
    let container = p[0]["from"]["container"].as_str().unwrap();
    assert!(container.starts_with("npexec-debug-"), "{}", p[0]);
    assert_eq!(p[0]["from"]["tool"], "curl", "{}", p[0]);
    assert!(
        e.contains(&format!("(container {container}, tool curl, with sidecar)")),
        "{e}"
    );
    let pod = p[0]["from"]["pod"].as_str().unwrap();
    let out = sim.kubectl(&[
        "get",
        "pod",
        pod,
        "-n",
        "tp-notool",
        "-o",
        "jsonpath={.status.ephemeralContainerStatuses[*].name}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        container,
        "{}",
        err(&out)
    );
}

#[test]
fn the_source_pod_is_one_with_a_client_and_the_run_says_which() {
    let sim = Sim::start();
    // tp-mixed: a-distroless sorts first but has no tool; b-curl is chosen.
    let out = sim.npexec(&["tp-mixed", "np-test-2", "-o", "json"]);
    let e = err(&out);
    assert_eq!(out.status.code(), Some(0), "{e}");
    let line = e
        .lines()
        .find(|l| l.starts_with("probing from "))
        .unwrap_or_else(|| panic!("no source line: {e}"));
    assert!(line.starts_with("probing from tp-mixed/b-curl-"), "{line}");
    assert!(
        line.ends_with("(container curl, tool curl, with sidecar)"),
        "{line}"
    );
    let p: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p[0]["verdict"], "allowed", "{}", p[0]);
    assert_eq!(p[0]["from"]["tool"], "curl", "{}", p[0]);
    assert_eq!(p[0]["from"]["sidecar"], true, "{}", p[0]);
    assert!(
        p[0]["from"]["pod"].as_str().unwrap().starts_with("b-curl-"),
        "{}",
        p[0]
    );

    // tp-notool: nothing to probe with; say so and what to do instead.
    let out = sim.npexec(&["tp-notool", "np-test-2"]);
    let e = err(&out);
    assert_eq!(out.status.code(), Some(3), "{e}");
    assert!(e.contains("tool none: no curl or wget"), "{e}");
    let text = format!("{}{e}", String::from_utf8_lossy(&out.stdout));
    for flag in ["--pod", "-l", "--debug-image"] {
        assert!(text.contains(flag), "{flag}: {text}");
    }

    // A namespace without pods.
    let out = sim.kubectl(&["create", "namespace", "tp-empty"]);
    assert!(out.status.success(), "{}", err(&out));
    let out = sim.npexec(&["tp-empty", "np-test-2"]);
    let e = err(&out);
    assert_eq!(out.status.code(), Some(3), "{e}");
    assert!(
        e.starts_with("error: namespace tp-empty has no pods; hint: "),
        "{e}"
    );
}

#[test]
fn ports_by_name_and_services_without_endpoints() {
    let sim = Sim::start();
    // --port takes the Service port's name.
    let p = sim.probes(&["tp-curl", "np-test-2", "--port", "http-web"]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["to"]["port"], 80, "{}", p[0]);
    assert_eq!(p[0]["verdict"], "allowed", "{}", p[0]);
    let out = sim.npexec(&["tp-curl", "np-test-2", "--port", "grpc"]);
    assert_eq!(out.status.code(), Some(2), "{}", err(&out));
    assert!(err(&out).contains("has TCP port grpc"), "{}", err(&out));
    let out = sim.npexec(&["tp-curl", "np-test-2", "--port", "Not_A_Port"]);
    assert_eq!(out.status.code(), Some(2), "{}", err(&out));

    // A headless Service without ports: --port N probes its pods on N.
    let p = sim.probes(&["tp-curl", "np-test-2/np-test-2-headless", "--port", "80"]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["verdict"], "allowed", "{}", p[0]);
    assert_eq!(p[0]["to"]["service"], "np-test-2-headless", "{}", p[0]);

    // meshsim serves EndpointSlices in step with the pods, through kubectl.
    let slices = |ns: &str, svc: &str| {
        let sel = format!("kubernetes.io/service-name={svc}");
        let out = sim.kubectl(&[
            "get",
            "endpointslices.discovery.k8s.io",
            "-n",
            ns,
            "-l",
            &sel,
            "-o",
            "json",
        ]);
        assert!(out.status.success(), "{}", err(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    };
    let s = slices("np-test-2", "svc-np-test-nginx-2");
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0]["endpoints"][0]["conditions"]["ready"], true,
        "{}",
        s[0]
    );
    let s = slices("tp-noready", "nobody");
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        s[0]["endpoints"].as_array().map(Vec::len),
        Some(0),
        "{}",
        s[0]
    );

    // A Service with no ready endpoint, whichever client asks.
    for (ns, _) in CLIENTS {
        let p = sim.probes(&[ns, "tp-noready/nobody"]);
        assert_eq!(p.len(), 1, "{ns}: {p:?}");
        assert_eq!(p[0]["verdict"], "no-endpoints", "{ns}: {}", p[0]);
    }
    let out = sim.npexec(&["tp-curl", "tp-noready", "--expect", "no-endpoints"]);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
}
