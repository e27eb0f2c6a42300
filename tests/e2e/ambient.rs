//! Istio ambient mode end to end, through the real kubectl on meshsim
//! (examples/ambient: the walk-through's two namespaces, enrolled in ambient,
//! and a ztunnel DaemonSet in istio-system).
//!
//! - ambient pods get no sidecar; one ztunnel pod runs on the node;
//! - an L4 DENY bound by selector is enforced by ztunnel: the client's
//!   connection is reset (curl exit 56) and ztunnel logs the rejection with
//!   the policy, in the lines rbaclog reads (meshpolicy::envoy::ztunnel);
//! - an ALLOW rule with an HTTP attribute bound to ztunnel allows nothing;
//! - NetworkPolicy still drops (timeout);
//! - a sidecar namespace calling an ambient one: the source sidecar answers 503;
//! - npexec names ztunnel as the layer that decided, and the next command.

use crate::common;

use common::sim::built;
use common::{Sim, fast_config, repo_root};
use meshpolicy::envoy::ztunnel::{self, ZtunnelReason};

const URL: &str = "http://svc-np-test-nginx-2.np-test-2";

async fn ambient_cluster(extra: &[&str]) -> anyhow::Result<(Sim, String)> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("examples/ambient")];
    c.scenarios
        .extend(extra.iter().map(|p| repo_root().join(p)));
    let cl = Sim::in_process(c).await?;
    cl.wait_ready_pod("istio-system", "app=ztunnel").await?;
    cl.wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    let src = cl
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    Ok((cl, src))
}

async fn curl(cl: &Sim, ns: &str, pod: &str) -> anyhow::Result<common::Out> {
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
        URL,
    ])
    .await
}

/// Curls until `done` holds (policies reach ztunnel after the scaled propagation delay).
async fn curl_until(
    cl: &Sim,
    ns: &str,
    pod: &str,
    done: impl Fn(&common::Out) -> bool,
) -> anyhow::Result<common::Out> {
    let mut last = None;
    for _ in 0..40 {
        let o = curl(cl, ns, pod).await?;
        if done(&o) {
            return Ok(o);
        }
        last = Some(o);
    }
    anyhow::bail!("curl never reached the expected outcome; last: {last:?}")
}

async fn ztunnel_log(cl: &Sim) -> anyhow::Result<String> {
    cl.ok(&[
        "logs",
        "-n",
        "istio-system",
        "-l",
        "app=ztunnel",
        "--tail=-1",
    ])
    .await
}

fn apply(path: &str) -> String {
    repo_root().join(path).display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ztunnel_resets_l4_denial_and_logs_the_policy() -> anyhow::Result<()> {
    let (cl, src) = ambient_cluster(&[]).await?;
    // No sidecar in ambient pods; istio-cni's mark instead.
    let containers = cl
        .ok(&[
            "get",
            "pod",
            "-n",
            "np-test-1",
            &src,
            "-o",
            "jsonpath={.spec.containers[*].name} {.metadata.annotations}",
        ])
        .await?;
    assert!(!containers.contains("istio-proxy"), "{containers}");
    assert!(
        containers.contains("ambient.istio.io/redirection"),
        "{containers}"
    );

    // One ztunnel per node, kept by the DaemonSet controller.
    let ds = cl
        .ok(&[
            "get",
            "daemonset",
            "ztunnel",
            "-n",
            "istio-system",
            "-o",
            "jsonpath={.status.desiredNumberScheduled}/{.status.numberReady}",
        ])
        .await?;
    assert_eq!(ds, "1/1");
    let ok = curl(&cl, "np-test-1", &src).await?;
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout.contains("Hello world - np-test-nginx-2!"),
        "{ok:?}"
    );
    let log = ztunnel_log(&cl).await?;
    assert!(
        log.lines()
            .any(|l| l.contains("\tinfo\taccess\tconnection complete")
                && l.contains("src.workload=\"np-test-nginx-1-")
                && !l.contains("error=")),
        "{log}"
    );

    cl.ok(&[
        "apply",
        "-f",
        &apply("examples/ambient/policies/deny-np-test-1-l4.yaml"),
    ])
    .await?;
    let denied = curl_until(&cl, "np-test-1", &src, |o| o.code != 0).await?;
    assert_eq!(denied.code, 56, "{denied:?}");
    assert!(
        denied
            .stderr
            .contains("Recv failure: Connection reset by peer"),
        "{denied:?}"
    );
    let log = ztunnel_log(&cl).await?;
    let rejection = log
        .lines()
        .rev()
        .find_map(|l| ztunnel::parse(l.as_bytes()))
        .ok_or_else(|| anyhow::anyhow!("no rejection line in {log}"))?;
    assert_eq!(
        rejection.reason,
        ZtunnelReason::DeniedBy {
            policy: "np-test-2/deny-np-test-1-l4".into()
        }
    );
    assert_eq!(rejection.level.as_deref(), Some("error"));
    assert_eq!(rejection.src_namespace.as_deref(), Some("np-test-1"));
    assert_eq!(rejection.dst_namespace.as_deref(), Some("np-test-2"));
    assert!(
        rejection
            .src_identity
            .as_deref()
            .is_some_and(|i| i == "spiffe://cluster.local/ns/np-test-1/sa/default")
    );
    // rbaclog reads what meshsim's ztunnel wrote.
    let file = cl.path().join("ztunnel.log");
    std::fs::write(&file, &log)?;
    built(&["kubectl-rbaclog"]);
    // A file needs no cluster: no kubeconfig at all.
    let out = cl
        .kubectl_async(&[
            "rbaclog",
            "--file",
            file.to_str().expect("UTF-8 path"),
            "-o",
            "json",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .await?;
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains("deny-np-test-1-l4") && json.contains("np-test-nginx-2-"),
        "rbaclog --file: {json} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rejection
            .dst_workload
            .as_deref()
            .is_some_and(|w| w.starts_with("np-test-nginx-2-"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_rules_bound_to_ztunnel_allow_nothing_and_netpol_still_drops() -> anyhow::Result<()> {
    let (cl, src) = ambient_cluster(&[]).await?;
    cl.ok(&[
        "apply",
        "-f",
        &apply("examples/ambient/policies/allow-get-on-ztunnel.yaml"),
    ])
    .await?;
    // A GET from np-test-1, which the policy means to allow, is reset:
    // ztunnel omitted the rule with `methods`.
    let denied = curl_until(&cl, "np-test-1", &src, |o| o.code != 0).await?;
    assert_eq!(denied.code, 56, "{denied:?}");
    let log = ztunnel_log(&cl).await?;
    assert!(
        log.contains("error=\"connection closed due to policy rejection: allow policies exist, but none allowed\""),
        "{log}"
    );
    cl.ok(&[
        "delete",
        "-f",
        &apply("examples/ambient/policies/allow-get-on-ztunnel.yaml"),
    ])
    .await?;
    curl_until(&cl, "np-test-1", &src, |o| o.code == 0).await?;
    cl.ok(&[
        "apply",
        "-n",
        "np-test-2",
        "-f",
        &apply("examples/ambient/policies/block-ingress-np-test-2.yaml"),
    ])
    .await?;
    let dropped = curl(&cl, "np-test-1", &src).await?;
    assert_eq!(
        dropped.code, 28,
        "NetworkPolicy drop is a timeout: {dropped:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_namespace_calling_ambient_namespace() -> anyhow::Result<()> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("examples/ambient")];
    let cl = Sim::in_process(c).await?;
    // np-test-1 back to sidecars: its pod is recreated with one.
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
    cl.wait_ready_pod("istio-system", "app=ztunnel").await?;
    cl.wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    let src = cl
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    let containers = cl
        .ok(&[
            "get",
            "pod",
            "-n",
            "np-test-1",
            &src,
            "-o",
            "jsonpath={.spec.containers[*].name}",
        ])
        .await?;
    assert!(containers.contains("istio-proxy"), "{containers}");
    let ok = curl(&cl, "np-test-1", &src).await?;
    assert_eq!(ok.code, 0, "{ok:?}");
    cl.ok(&[
        "apply",
        "-f",
        &apply("examples/ambient/policies/deny-np-test-1-l4.yaml"),
    ])
    .await?;
    // The client's own sidecar sees its upstream connection closed by ztunnel.
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
            URL,
        ])
        .await?;
    let mut last = o;
    for _ in 0..40 {
        if last.stdout.ends_with("\n503") {
            break;
        }
        last = cl
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
                URL,
            ])
            .await?;
    }
    assert!(last.stdout.ends_with("\n503"), "{last:?}");
    assert!(last.stdout.contains("connection termination"), "{last:?}");
    let log = ztunnel_log(&cl).await?;
    assert!(
        log.contains("src.identity=\"spiffe://cluster.local/ns/np-test-1/sa/default\"")
            && log.contains("explicitly denied by: np-test-2/deny-np-test-1-l4"),
        "{log}"
    );
    Ok(())
}

async fn npexec(cl: &Sim, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    built(&["kubectl-npexec"]);
    let o = cl.kubectl(&[&["npexec"], args].concat()).await?;
    Ok((o.code, o.stdout, o.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn npexec_predict_uses_ztunnels_rules_for_ambient_destinations() -> anyhow::Result<()> {
    let (cl, _src) = ambient_cluster(&[]).await?;
    let (code, out, err) =
        npexec(&cl, &["np-test-1", "np-test-2", "--predict", "-o", "json"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"verdict\": \"allowed\""), "{out}");
    cl.ok(&[
        "apply",
        "-f",
        &apply("examples/ambient/policies/allow-get-on-ztunnel.yaml"),
    ])
    .await?;
    // The sidecar engine would allow the GET; ztunnel omits the HTTP rule and allows nothing.
    let (_, out, err) = npexec(&cl, &["np-test-1", "np-test-2", "--predict", "-o", "json"]).await?;
    assert!(out.contains("\"verdict\": \"denied-rbac\""), "{out}{err}");
    assert!(
        out.contains("ztunnel does not support HTTP attributes (methods)"),
        "{out}"
    );
    assert!(
        out.contains("kubectl rbaclog -n istio-system -l app=ztunnel"),
        "{out}"
    );
    // Live, once the policy reached ztunnel: the reset is ztunnel's L4 denial,
    // not an mTLS failure, and the hint names ztunnel's log.
    let (code, out, err) = npexec(
        &cl,
        &[
            "np-test-1",
            "np-test-2",
            "--expect",
            "denied-rbac",
            "--wait",
            "30s",
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("connection reset by ztunnel"), "{out}");
    assert!(
        out.contains("kubectl rbaclog -n istio-system -l app=ztunnel"),
        "{out}"
    );
    Ok(())
}
