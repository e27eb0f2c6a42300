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
