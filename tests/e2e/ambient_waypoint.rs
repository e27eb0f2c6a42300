//! Ambient waypoints end to end, through the real kubectl on meshsim
//! (examples/ambient plus examples/ambient/waypoint: a Gateway of class
//! `istio-waypoint` as `istioctl waypoint generate` prints it, np-test-2
//! labelled `istio.io/use-waypoint=waypoint`).
//!
//! - the Gateway becomes the waypoint's Deployment, ServiceAccount, Service and
//!   Running pod, with istiod's labels and status; deleting it removes them;

use crate::common;

use common::{Cluster, fast_config, repo_root};

fn example(path: &str) -> String {
    repo_root().join(path).display().to_string()
}

async fn ambient_cluster() -> anyhow::Result<(Cluster, String)> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("examples/ambient")];
    let cl = Cluster::start(c).await?;
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
async fn waypoint_cluster() -> anyhow::Result<(Cluster, String, String)> {
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
    let (cl, _src, wp) = waypoint_cluster().await?;
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
    Ok(())
}

async fn curl(cl: &Cluster, ns: &str, pod: &str, url: &str) -> anyhow::Result<common::Out> {
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
    cl: &Cluster,
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

async fn logs(cl: &Cluster, ns: &str, selector: &str) -> anyhow::Result<String> {
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
