//! Ambient waypoints end to end, through the real kubectl on meshsim
//! (examples/ambient plus examples/ambient/waypoint: a Gateway of class
//! `istio-waypoint` as `istioctl waypoint generate` prints it, np-test-2
//! labelled `istio.io/use-waypoint=waypoint`).
//!
//! - the Gateway becomes the waypoint's Deployment, ServiceAccount, Service and
//!   Running pod, with istiod's labels and status; deleting it removes them;
//! - an L7 DENY attached to the waypoint (`targetRefs`) is Envoy's 403
//!   `RBAC: access denied`, in the waypoint's access log (and RBAC debug line
//!   at `rbac:debug`); policies attached to a waypoint the Service does not
//!   use do nothing; `targetRefs` to a Service or (root namespace) to the
//!   GatewayClass reach it;
//! - behind the waypoint the destination's ztunnel sees the waypoint's
//!   identity; traffic the waypoint does not take (pod IP, service waypoint)
//!   is ztunnel's alone (L4 DENY: a reset); NetworkPolicy still drops;
//! - `istio.io/waypoint-for: workload` swaps which traffic goes through it;
//! - STRICT PeerAuthentication resets plain text from outside the mesh,
//!   DISABLE is ignored; a sidecar client goes through the waypoint too;
//! - the istioctl stand-in's `waypoint generate|list|status` and
//!   `ztunnel-config workloads|policies`.

use crate::common;

use common::{Sim, fast_config, repo_root};

fn example(path: &str) -> String {
    repo_root().join(path).display().to_string()
}

async fn ambient_cluster() -> anyhow::Result<(Sim, String)> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("examples/ambient")];
    let cl = Sim::in_process(c).await?;
    cl.wait_ready_pod("istio-system", "app=ztunnel").await?;
    cl.wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    let src = cl
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    Ok((cl, src))
}

const WAYPOINT_POD: &str = "gateway.networking.k8s.io/gateway-name=waypoint";

/// examples/ambient with np-test-2's waypoint applied and Ready.
async fn waypoint_cluster() -> anyhow::Result<(Sim, String, String)> {
    let (cl, src) = ambient_cluster().await?;
    cl.ok(&[
        "apply",
        "-f",
        &example("examples/ambient/waypoint/waypoint.yaml"),
    ])
    .await?;
    let wp = cl.wait_ready_pod("np-test-2", WAYPOINT_POD).await?;
    Ok((cl, src, wp))
}

#[tokio::test(flavor = "multi_thread")]
async fn waypoint_gateway_becomes_deployment_and_pod_and_delete_removes_them() -> anyhow::Result<()>
{
    let (cl, src, wp) = waypoint_cluster().await?;
    let classes = cl
        .ok(&[
            "get",
            "gatewayclass",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await?;
    assert!(
        classes.split(' ').any(|c| c == "istio-waypoint"),
        "{classes}"
    );
    let pod = cl
        .ok(&[
            "get",
            "pod",
            "-n",
            "np-test-2",
            &wp,
            "-o",
            "jsonpath={.metadata.labels.gateway\\.istio\\.io/managed} {.metadata.labels.istio\\.io/dataplane-mode} {.spec.containers[*].name} {.spec.containers[0].args[1]} {.spec.serviceAccountName} {.status.phase}",
        ])
        .await?;
    assert_eq!(
        pod,
        "istio.io-mesh-controller none istio-proxy waypoint waypoint Running"
    );
    let svc = cl
        .ok(&[
            "get",
            "svc",
            "waypoint",
            "-n",
            "np-test-2",
            "-o",
            "jsonpath={range .spec.ports[*]}{.name}:{.port} {end}",
        ])
        .await?;
    assert_eq!(svc.trim(), "status-port:15021 mesh:15008");
    cl.ok(&[
        "get",
        "deployment,serviceaccount",
        "waypoint",
        "-n",
        "np-test-2",
    ])
    .await?;
    let status = cl
        .ok(&[
            "get",
            "gateway",
            "waypoint",
            "-n",
            "np-test-2",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Programmed\")].status} {.status.addresses[0].value}",
        ])
        .await?;
    let ip = cl
        .ok(&[
            "get",
            "svc",
            "waypoint",
            "-n",
            "np-test-2",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await?;
    assert_eq!(status, format!("True {ip}"));
    // kubectl prints the Gateway API CRDs' columns.
    let table = cl.ok(&["get", "gtw", "-n", "np-test-2"]).await?;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"],
        "{table}"
    );
    assert_eq!(
        lines[1][..4],
        ["waypoint", "istio-waypoint", ip.as_str(), "True"],
        "{table}"
    );

    cl.ok(&["delete", "gateway", "waypoint", "-n", "np-test-2"])
        .await?;
    let left = cl
        .ok(&[
            "get",
            "deployment,service,serviceaccount,pods",
            "-n",
            "np-test-2",
            "-o",
            "name",
        ])
        .await?;
    assert!(!left.contains("waypoint"), "{left}");
    // np-test-2 still names the waypoint, which no longer exists: no waypoint
    // is used and ztunnel alone carries the traffic.
    let ok = curl(&cl, "np-test-1", &src, &format!("{SVC}/")).await?;
    assert!(ok.stdout.ends_with("\n200"), "{ok:?}");
    Ok(())
}

async fn curl(cl: &Sim, ns: &str, pod: &str, url: &str) -> anyhow::Result<common::Out> {
    cl.kubectl(&[
        "exec",
        "-n",
        ns,
        pod,
        "--",
        "curl",
        "-sS",
        "--max-time",
        "3",
        "-w",
        "\n%{http_code}",
        url,
    ])
    .await
}

/// Curls until `done` holds (policies reach the waypoint and ztunnel after
/// the scaled propagation delay).
async fn curl_until(
    cl: &Sim,
    ns: &str,
    pod: &str,
    url: &str,
    done: impl Fn(&common::Out) -> bool,
) -> anyhow::Result<common::Out> {
    let mut last = None;
    for _ in 0..40 {
        let o = curl(cl, ns, pod, url).await?;
        if done(&o) {
            return Ok(o);
        }
        last = Some(o);
    }
    anyhow::bail!("curl never reached the expected outcome; last: {last:?}")
}

async fn logs(cl: &Sim, ns: &str, selector: &str) -> anyhow::Result<String> {
    cl.ok(&["logs", "-n", ns, "-l", selector, "--tail=-1"])
        .await
}

const SVC: &str = "http://svc-np-test-nginx-2.np-test-2";

#[tokio::test(flavor = "multi_thread")]
async fn l7_deny_by_the_waypoint_is_a_403_and_its_envoy_logs_the_policy() -> anyhow::Result<()> {
    let (cl, src, _wp) = waypoint_cluster().await?;
    let ok = curl(&cl, "np-test-1", &src, &format!("{SVC}/private")).await?;
    assert!(ok.stdout.ends_with("\n200"), "{ok:?}");
    assert!(
        ok.stdout.contains("Hello world - np-test-nginx-2!"),
        "{ok:?}"
    );
    // The waypoint's Envoy logged the request; the destination's ztunnel saw the waypoint.
    let wlog = logs(&cl, "np-test-2", WAYPOINT_POD).await?;
    assert!(wlog.contains("\"GET /private HTTP/1.1\" 200"), "{wlog}");
    let zlog = logs(&cl, "istio-system", "app=ztunnel").await?;
    assert!(
        zlog.contains("src.identity=\"spiffe://cluster.local/ns/np-test-2/sa/waypoint\""),
        "{zlog}"
    );
    cl.ok(&[
        "apply",
        "-f",
        &example("examples/ambient/waypoint/deny-l7-waypoint.yaml"),
    ])
    .await?;
    let denied = curl_until(&cl, "np-test-1", &src, &format!("{SVC}/private"), |o| {
        o.stdout.ends_with("\n403")
    })
    .await?;
    assert!(
        denied.stdout.starts_with("RBAC: access denied"),
        "{denied:?}"
    );
    let other = curl(&cl, "np-test-1", &src, &format!("{SVC}/")).await?;
    assert!(other.stdout.ends_with("\n200"), "{other:?}");
    let wlog = logs(&cl, "np-test-2", WAYPOINT_POD).await?;
    assert!(
        wlog.lines().any(|l| l.contains("\"GET /private HTTP/1.1\" 403")
            && l.contains("rbac_access_denied_matched_policy[ns[np-test-2]-policy[deny-private-l7]-rule[0]]")),
        "{wlog}"
    );
    Ok(())
}

async fn apply_yaml(cl: &Sim, yaml: &str) -> anyhow::Result<()> {
    let o = cl
        .kubectl_stdin(&["apply", "-f", "-"], Some(yaml.as_bytes()))
        .await?;
    anyhow::ensure!(o.code == 0, "kubectl apply: {o:?}");
    Ok(())
}

async fn pod_ip(cl: &Sim, ns: &str, selector: &str) -> anyhow::Result<String> {
    cl.ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ])
    .await
}

const DENY_PATH_X: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-x, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  action: DENY
  rules:
  - to:
    - operation: {paths: [\"/x\"]}
";

#[tokio::test(flavor = "multi_thread")]
async fn policy_on_an_unused_waypoint_does_nothing_and_l4_sees_the_waypoint() -> anyhow::Result<()>
{
    let (cl, src, _wp) = waypoint_cluster().await?;
    // A second waypoint nobody uses, and a DENY-all attached to it.
    apply_yaml(
        &cl,
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: unused, namespace: np-test-2}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all-unused, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: unused}
  action: DENY
  rules: [{}]
",
    )
    .await?;
    apply_yaml(&cl, DENY_PATH_X).await?;
    // Once the waypoint in use enforces deny-x, it has seen deny-all-unused too.
    curl_until(&cl, "np-test-1", &src, &format!("{SVC}/x"), |o| {
        o.stdout.ends_with("\n403")
    })
    .await?;
    let ok = curl(&cl, "np-test-1", &src, &format!("{SVC}/")).await?;
    assert!(ok.stdout.ends_with("\n200"), "{ok:?}");

    // L4 (selector) DENY of np-test-1: through the waypoint the destination
    // ztunnel sees the waypoint's identity, so it does not match...
    cl.ok(&[
        "apply",
        "-f",
        &example("examples/ambient/policies/deny-np-test-1-l4.yaml"),
    ])
    .await?;
    // ...while traffic to the pod's IP (a service waypoint does not take it)
    // is ztunnel's to judge: a reset.
    let ip = pod_ip(&cl, "np-test-2", "app=np-test-nginx-2").await?;
    let reset = curl_until(&cl, "np-test-1", &src, &format!("http://{ip}/"), |o| {
        o.code == 56
    })
    .await?;
    assert!(
        reset.stderr.contains("Connection reset by peer"),
        "{reset:?}"
    );
    let via = curl(&cl, "np-test-1", &src, &format!("{SVC}/")).await?;
    assert!(via.stdout.ends_with("\n200"), "{via:?}");
    // Denying the waypoint's identity at L4 stops what the waypoint forwards:
    // its Envoy answers 503.
    apply_yaml(
        &cl,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-waypoint-l4, namespace: np-test-2}
spec:
  selector: {matchLabels: {app: np-test-nginx-2}}
  action: DENY
  rules:
  - from:
    - source: {principals: [cluster.local/ns/np-test-2/sa/waypoint]}
",
    )
    .await?;
    let stopped = curl_until(&cl, "np-test-1", &src, &format!("{SVC}/"), |o| {
        o.stdout.ends_with("\n503")
    })
    .await?;
    assert!(
        stopped.stdout.contains("connection termination"),
        "{stopped:?}"
    );
    let zlog = logs(&cl, "istio-system", "app=ztunnel").await?;
    assert!(
        zlog.contains("explicitly denied by: np-test-2/deny-waypoint-l4"),
        "{zlog}"
    );

    // NetworkPolicy still drops (timeout).
    cl.ok(&[
        "apply",
        "-n",
        "np-test-2",
        "-f",
        &example("examples/ambient/policies/block-ingress-np-test-2.yaml"),
    ])
    .await?;
    let dropped = curl(&cl, "np-test-1", &src, &format!("{SVC}/")).await?;
    assert_eq!(
        dropped.code, 28,
        "NetworkPolicy drop is a timeout: {dropped:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn waypoint_for_workload_takes_pod_traffic_not_service_traffic() -> anyhow::Result<()> {
    let (cl, src, _wp) = waypoint_cluster().await?;
    apply_yaml(&cl, DENY_PATH_X).await?;
    curl_until(&cl, "np-test-1", &src, &format!("{SVC}/x"), |o| {
        o.stdout.ends_with("\n403")
    })
    .await?;
    let ip = pod_ip(&cl, "np-test-2", "app=np-test-nginx-2").await?;
    let direct = curl(&cl, "np-test-1", &src, &format!("http://{ip}/x")).await?;
    assert!(
        direct.stdout.ends_with("\n200"),
        "service waypoint: {direct:?}"
    );
    cl.ok(&[
        "label",
        "--overwrite",
        "gateway",
        "waypoint",
        "-n",
        "np-test-2",
        "istio.io/waypoint-for=workload",
    ])
    .await?;
    let svc = curl(&cl, "np-test-1", &src, &format!("{SVC}/x")).await?;
    assert!(svc.stdout.ends_with("\n200"), "workload waypoint: {svc:?}");
    let pod = curl(&cl, "np-test-1", &src, &format!("http://{ip}/x")).await?;
    assert!(pod.stdout.ends_with("\n403"), "workload waypoint: {pod:?}");
    Ok(())
}

const OUTSIDE: &str = "apiVersion: v1
kind: Namespace
metadata: {name: outside}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: outside, labels: {app: client}}
spec:
  containers:
  - {name: client, image: curlimages/curl:latest}
";

#[tokio::test(flavor = "multi_thread")]
async fn strict_peer_authentication_resets_plain_text_and_disable_is_ignored() -> anyhow::Result<()>
{
    let (cl, src) = ambient_cluster().await?;
    apply_yaml(&cl, OUTSIDE).await?;
    let client = cl.wait_ready_pod("outside", "app=client").await?;
    let plain = curl(&cl, "outside", &client, &format!("{SVC}/")).await?;
    assert!(plain.stdout.ends_with("\n200"), "{plain:?}");
    let pa = |mode: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: np-test-2}}
spec: {{mtls: {{mode: {mode}}}}}
"
        )
    };
    apply_yaml(&cl, &pa("STRICT")).await?;
    let reset = curl_until(&cl, "outside", &client, &format!("{SVC}/"), |o| {
        o.code == 56
    })
    .await?;
    assert!(
        reset.stderr.contains("Connection reset by peer"),
        "{reset:?}"
    );
    let zlog = logs(&cl, "istio-system", "app=ztunnel").await?;
    assert!(
        zlog.lines().any(|l| l.contains("src.workload=\"client\"")
            && l.contains("explicitly denied by: istio-system/istio_converted_static_strict")),
        "{zlog}"
    );
    // Mesh clients speak mTLS through ztunnel: unaffected.
    let mesh = curl(&cl, "np-test-1", &src, &format!("{SVC}/")).await?;
    assert!(mesh.stdout.ends_with("\n200"), "{mesh:?}");
    // DISABLE is not supported in ambient mode (ignored: PERMISSIVE): plain
    // text is accepted again.
    apply_yaml(&cl, &pa("DISABLE")).await?;
    curl_until(&cl, "outside", &client, &format!("{SVC}/"), |o| {
        o.stdout.ends_with("\n200")
    })
    .await?;
    Ok(())
}

/// Runs the istioctl stand-in against the cluster; (exit code, stdout, stderr).
async fn istioctl(cl: &Sim, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let bin = common::sim::built(&["meshsim-istioctl"]).join("meshsim-istioctl");
    let o = cl.run_program(bin, args).await?;
    Ok((o.code, o.stdout, o.stderr))
}

/// The words of a tabwriter table's lines.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn istioctl_stand_in_lists_waypoints_and_ztunnel_config() -> anyhow::Result<()> {
    let (cl, _src, wp) = waypoint_cluster().await?;
    cl.ok(&[
        "apply",
        "-f",
        &example("examples/ambient/policies/deny-np-test-1-l4.yaml"),
    ])
    .await?;
    let (code, out, err) = istioctl(&cl, &["waypoint", "list", "-n", "np-test-2"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "NAME         REVISION     TRAFFIC TYPE     PROGRAMMED\nwaypoint     default      service          True\n"
    );
    let (_, out, _) = istioctl(&cl, &["waypoint", "list", "-A"]).await?;
    assert_eq!(
        table(&out),
        vec![
            vec![
                "NAMESPACE",
                "NAME",
                "REVISION",
                "TRAFFIC",
                "TYPE",
                "PROGRAMMED"
            ],
            vec!["np-test-2", "waypoint", "default", "service", "True"],
        ]
    );
    let (_, out, _) = istioctl(&cl, &["waypoint", "status", "-n", "np-test-2"]).await?;
    let t = table(&out);
    assert_eq!(t[0], vec!["NAME", "STATUS", "TYPE", "REASON", "MESSAGE"]);
    assert_eq!(t[1][..4], ["waypoint", "True", "Programmed", "Programmed"]);
    let (_, out, _) = istioctl(&cl, &["waypoint", "list", "-n", "np-test-1"]).await?;
    assert_eq!(out, "No waypoints found.\n");
    // What `waypoint generate` prints is what the example applies.
    let (code, out, err) = istioctl(
        &cl,
        &[
            "waypoint",
            "generate",
            "-n",
            "np-test-2",
            "--for",
            "service",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let example_yaml =
        std::fs::read_to_string(repo_root().join("examples/ambient/waypoint/waypoint.yaml"))?;
    let body: String = example_yaml
        .split("---")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(out, body);

    let (code, out, err) = istioctl(&cl, &["zc", "workloads"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let t = table(&out);
    assert_eq!(
        t[0],
        vec![
            "NAMESPACE",
            "NAME",
            "NETWORK",
            "IP",
            "NODE",
            "WAYPOINT",
            "PROTOCOL"
        ]
    );
    // NETWORK is empty: rows have 6 words.
    let nginx2 = t
        .iter()
        .find(|r| r[0] == "np-test-2" && r[1].starts_with("np-test-nginx-2-"))
        .expect("nginx-2 row");
    assert_eq!(nginx2[4..], ["None", "HBONE"], "{out}");
    let waypoint = t.iter().find(|r| r[1] == wp).expect("waypoint row");
    assert_eq!(waypoint[5], "HBONE", "{out}");
    let (_, out, _) = istioctl(
        &cl,
        &[
            "ztunnel-config",
            "workload",
            "--workload-namespace",
            "np-test-1",
        ],
    )
    .await?;
    assert!(
        table(&out)[1..].iter().all(|r| r[0] == "np-test-1"),
        "{out}"
    );

    let (code, out, err) = istioctl(&cl, &["ztunnel-config", "policies"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "NAMESPACE NAME              ACTION SCOPE\nnp-test-2 deny-np-test-1-l4 Deny   WorkloadSelector\n"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_debug_level_on_the_gateway_reaches_the_waypoint_envoy() -> anyhow::Result<()> {
    let (cl, src, old) = waypoint_cluster().await?;
    // istiod renders the Gateway's log annotations into the waypoint's pod.
    cl.ok(&[
        "annotate",
        "gateway",
        "waypoint",
        "-n",
        "np-test-2",
        "sidecar.istio.io/componentLogLevel=rbac:debug",
    ])
    .await?;
    let mut wp = old.clone();
    for _ in 0..200 {
        wp = cl.wait_ready_pod("np-test-2", WAYPOINT_POD).await?;
        if wp != old {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_ne!(wp, old, "the waypoint pod was not replaced");
    cl.ok(&[
        "apply",
        "-f",
        &example("examples/ambient/waypoint/deny-l7-waypoint.yaml"),
    ])
    .await?;
    curl_until(&cl, "np-test-1", &src, &format!("{SVC}/private"), |o| {
        o.stdout.ends_with("\n403")
    })
    .await?;
    let log = cl
        .ok(&["logs", "-n", "np-test-2", &wp, "-c", "istio-proxy"])
        .await?;
    assert!(
        log.contains(
            "enforced denied, matched policy ns[np-test-2]-policy[deny-private-l7]-rule[0]"
        ),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn service_and_gateway_class_target_refs_reach_the_waypoint() -> anyhow::Result<()> {
    let (cl, src, _wp) = waypoint_cluster().await?;
    // A second Service for the same pod, also through the waypoint.
    apply_yaml(
        &cl,
        "apiVersion: v1
kind: Service
metadata: {name: other, namespace: np-test-2}
spec:
  selector: {app: np-test-nginx-2}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-svc-2, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Service, group: \"\", name: svc-np-test-nginx-2}
  action: DENY
  rules:
  - to:
    - operation: {paths: [\"/svc\"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-class, namespace: istio-system}
spec:
  targetRefs:
  - {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}
  action: DENY
  rules:
  - to:
    - operation: {paths: [\"/class\"]}
",
    )
    .await?;
    // The policy on the Service applies to that Service's traffic only.
    curl_until(&cl, "np-test-1", &src, &format!("{SVC}/svc"), |o| {
        o.stdout.ends_with("\n403")
    })
    .await?;
    let other = "http://other.np-test-2";
    let o = curl(&cl, "np-test-1", &src, &format!("{other}/svc")).await?;
    assert!(o.stdout.ends_with("\n200"), "{o:?}");
    // The root namespace's policy on the class reaches every waypoint
    // (written after deny-svc-2: wait for it too).
    curl_until(&cl, "np-test-1", &src, &format!("{other}/class"), |o| {
        o.stdout.ends_with("\n403")
    })
    .await?;
    let o = curl(&cl, "np-test-1", &src, &format!("{SVC}/svc")).await?;
    assert!(o.stdout.ends_with("\n403"), "{o:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_client_goes_through_the_waypoint_too() -> anyhow::Result<()> {
    let (cl, _src, _wp) = waypoint_cluster().await?;
    cl.ok(&[
        "label",
        "namespace",
        "np-test-1",
        "istio.io/dataplane-mode-",
        "istio-injection=enabled",
    ])
    .await?;
    cl.ok(&[
        "delete",
        "pods",
        "-n",
        "np-test-1",
        "-l",
        "app=np-test-nginx-1",
    ])
    .await?;
    let mut src = String::new();
    for _ in 0..200 {
        src = cl
            .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
            .await?;
        let c = cl
            .ok(&[
                "get",
                "pod",
                "-n",
                "np-test-1",
                &src,
                "-o",
                "jsonpath={.spec.containers[*].name}",
            ])
            .await;
        if c.is_ok_and(|c| c.contains("istio-proxy")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cl.ok(&[
        "apply",
        "-f",
        &example("examples/ambient/waypoint/deny-l7-waypoint.yaml"),
    ])
    .await?;
    let url = format!("{SVC}/private");
    let mut last = None;
    for _ in 0..40 {
        let o = cl
            .kubectl(&[
                "exec",
                "-n",
                "np-test-1",
                &src,
                "-c",
                "np-test-nginx-1",
                "--",
                "curl",
                "-sS",
                "--max-time",
                "3",
                "-w",
                "\n%{http_code}",
                &url,
            ])
            .await?;
        if o.stdout.ends_with("\n403") {
            last = None;
            break;
        }
        last = Some(o);
    }
    assert!(last.is_none(), "never denied by the waypoint: {last:?}");
    let wlog = logs(&cl, "np-test-2", WAYPOINT_POD).await?;
    assert!(
        wlog.lines()
            .any(|l| l.contains("\"GET /private HTTP/1.1\" 403")
                && l.contains(" outbound_.80_._.svc-np-test-nginx-2.np-test-2.svc.cluster.local ")),
        "{wlog}"
    );
    Ok(())
}
