//! `kubectl authzcheck` and `kubectl npexec --predict` on ambient pods,
//! through the real kubectl against meshsim (examples/ambient).
//!
//! - every ambient finding of meshpolicy::ambient_audit comes out of one
//!   scenario: an ALLOW with `methods` bound by selector (ztunnel omits it,
//!   and it is a sidecar policy left behind in an ambient namespace), a
//!   policy on a waypoint no Service uses, `targetRefs` to a missing Gateway
//!   and to a Gateway that is not a waypoint, a Service whose waypoint
//!   allows nothing; `--exit-code` fails;
//! - a mixed cluster (np-test-1 back to sidecars, np-test-2 ambient): the
//!   sidecar pod's report has no ambient part, the ambient pod's has no
//!   sidecar part; npexec's prediction names the waypoint and its policy.

use crate::common;

use common::sim::built;
use common::{Sim, fast_config, repo_root};
use serde_json::Value;

const NS: &str = "np-test-2";

async fn ambient_cluster() -> anyhow::Result<(Sim, String)> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("examples/ambient")];
    let cl = Sim::in_process(c).await?;
    let dst = cl.wait_ready_pod(NS, "app=np-test-nginx-2").await?;
    Ok((cl, dst))
}

async fn plugin(cl: &Sim, name: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    built(&[&format!("kubectl-{name}")]);
    let o = cl.kubectl(&[&[name], args].concat()).await?;
    Ok((o.code, o.stdout, o.stderr))
}

async fn apply(cl: &Sim, yaml: &str) -> anyhow::Result<()> {
    let path = cl.path().join(format!("apply-{}.yaml", yaml.len()));
    std::fs::write(&path, yaml)?;
    cl.ok(&["apply", "-f", &path.display().to_string()]).await?;
    Ok(())
}

fn codes(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["code"].as_str().map(str::to_string))
        .collect()
}

fn message<'a>(report: &'a Value, code: &str) -> Vec<&'a str> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["code"] == code)
        .filter_map(|f| f["message"].as_str())
        .collect()
}

/// Two waypoints (one used by the Service, one by nothing), a non-waypoint
/// Gateway, and a policy for each mistake.
const MISTAKES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: np-test-2, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: spare, namespace: np-test-2}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: np-test-2}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing-at-waypoint, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-spare, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: spare}
  rules:
  - to:
    - operation: {methods: [GET]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-missing, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: no-such-gateway}
  rules:
  - to:
    - operation: {paths: [/admin]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-ingress, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: ingress}
  rules:
  - to:
    - operation: {methods: [GET]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_ambient_finding_from_one_scenario() -> anyhow::Result<()> {
    let (cl, dst) = ambient_cluster().await?;
    // Clean ambient pod: no sidecar advice, ztunnel enforces nothing, exit 0.
    let (code, out, err) =
        plugin(&cl, "authzcheck", &[NS, &dst, "-o", "json", "--exit-code"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(&out)?;
    assert!(r["ambient"].is_object(), "{out}");
    assert!(codes(&r).contains(&"ambient".to_string()), "{out}");
    for sidecar_only in ["no-sidecar", "no-injection", "proxy-unavailable"] {
        assert!(!codes(&r).contains(&sidecar_only.to_string()), "{out}");
    }

    // (a) + (e): the walk-through's ALLOW GET bound by selector.
    cl.ok(&[
        "apply",
        "-f",
        &repo_root()
            .join("examples/ambient/policies/allow-get-on-ztunnel.yaml")
            .display()
            .to_string(),
    ])
    .await?;
    // (b), (c) twice, (d): waypoints, a plain Gateway, their policies; the
    // Service uses `waypoint`, nothing uses `spare`.
    apply(&cl, MISTAKES).await?;
    cl.ok(&[
        "label",
        "service",
        "-n",
        NS,
        "svc-np-test-nginx-2",
        "istio.io/use-waypoint=waypoint",
    ])
    .await?;
    let (code, out, err) =
        plugin(&cl, "authzcheck", &[NS, &dst, "-o", "json", "--exit-code"]).await?;
    assert_eq!(code, 1, "--exit-code fails on the errors: {out}{err}");
    let r: Value = serde_json::from_str(&out)?;
    let got = codes(&r);
    for want in [
        "ztunnel-ignores-l7",
        "sidecar-policy-left-behind",
        "ztunnel-denies-everything",
        "waypoint-not-used",
        "target-not-waypoint",
        "waypoint-allows-nothing",
    ] {
        assert!(
            got.contains(&want.to_string()),
            "{want} missing: {got:?}\n{out}"
        );
    }
    assert!(
        message(&r, "ztunnel-ignores-l7")[0].contains("never matches"),
        "{out}"
    );
    assert!(
        message(&r, "sidecar-policy-left-behind")[0].contains("name: svc-np-test-nginx-2"),
        "the fix names the Service whose waypoint would enforce it: {out}"
    );
    assert!(
        message(&r, "waypoint-not-used")[0].contains("np-test-2/spare"),
        "{out}"
    );
    let not_wp = message(&r, "target-not-waypoint");
    assert!(
        not_wp.iter().any(|m| m.contains("does not exist"))
            && not_wp.iter().any(|m| m.contains("class istio,")),
        "{not_wp:?}"
    );
    assert!(
        message(&r, "waypoint-allows-nothing")[0].contains("np-test-2/allow-nothing-at-waypoint"),
        "{out}"
    );
    // The sections: ztunnel's view, the waypoint with what it enforces.
    let amb = &r["ambient"];
    assert_eq!(amb["ztunnel"][0]["policy"]["name"], "allow-get-on-ztunnel");
    assert_eq!(amb["ztunnel"][0]["l4_rules"], 0);
    assert_eq!(amb["waypoints"][0]["service"], "svc-np-test-nginx-2");
    assert_eq!(amb["waypoints"][0]["state"], "uses");
    assert_eq!(amb["waypoints"][0]["waypoint"], "np-test-2/waypoint");
    assert_eq!(
        amb["waypoints"][0]["policies"][0]["name"],
        "allow-nothing-at-waypoint"
    );
    assert_eq!(
        r["authorization_policies"].as_array().map(Vec::len),
        Some(0)
    );

    // What if the selector-bound policy were deleted: its findings go away.
    let get_on_ztunnel = repo_root()
        .join("examples/ambient/policies/allow-get-on-ztunnel.yaml")
        .display()
        .to_string();
    let (_, out, err) = plugin(
        &cl,
        "authzcheck",
        &[NS, &dst, "--delete-f", &get_on_ztunnel, "-o", "json"],
    )
    .await?;
    let r2: Value = serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("{e}: {out}{err}"))?;
    let gone: Vec<&str> = r2["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["change"] == "gone")
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert!(
        gone.contains(&"ztunnel-ignores-l7") && gone.contains(&"sidecar-policy-left-behind"),
        "{gone:?}\n{out}"
    );

    // The table says who enforces what, and nothing about a sidecar.
    let (_, table, err) = plugin(&cl, "authzcheck", &[NS, &dst]).await?;
    assert!(
        table.contains("Istio AuthorizationPolicy enforced by ztunnel"),
        "{table}{err}"
    );
    assert!(table.contains("Waypoints of the pod's Services"), "{table}");
    assert!(table.contains("np-test-2/waypoint"), "{table}");
    assert!(!table.contains("enforced by the sidecar"), "{table}");
    // yaml and html are the same data.
    let (code, yaml, err) = plugin(&cl, "authzcheck", &[NS, &dst, "-o", "yaml"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(yaml.contains("waypoint-allows-nothing"), "{yaml}");
    let (code, html, err) = plugin(&cl, "authzcheck", &[NS, &dst, "-o", "html"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(html.contains("allow-nothing-at-waypoint"), "{html}");
    assert!(html.contains("enforced by ztunnel (L4 only"), "{html}");
    assert!(!html.contains("enforced by the sidecar"), "{html}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_cluster_sidecar_report_unchanged_ambient_report_and_prediction() -> anyhow::Result<()>
{
    let (cl, dst) = ambient_cluster().await?;
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
    // A waypoint for np-test-2 with an L7 policy: only GET /allowed from np-test-1.
    apply(
        &cl,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: np-test-2}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-allowed-path, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Service, group: "", name: svc-np-test-nginx-2}
  rules:
  - to:
    - operation: {paths: [/allowed]}
"#,
    )
    .await?;
    cl.ok(&["label", "namespace", NS, "istio.io/use-waypoint=waypoint"])
        .await?;
    let src = cl
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;

    // The sidecar pod: today's report, no ambient part.
    let (code, out, err) = plugin(&cl, "authzcheck", &["np-test-1", &src, "-o", "json"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(&out)?;
    assert_eq!(r["pod"]["sidecar"], true, "{out}");
    assert!(r.get("ambient").is_none(), "{out}");
    assert!(!codes(&r).contains(&"ambient".to_string()), "{out}");

    // The ambient pod: the waypoint bound by the namespace, the policy by Service.
    let (code, out, err) = plugin(&cl, "authzcheck", &[NS, &dst, "-o", "json"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(&out)?;
    let w = &r["ambient"]["waypoints"][0];
    assert_eq!(w["state"], "uses", "{out}");
    assert_eq!(w["bound_by"], "namespace", "{out}");
    assert_eq!(w["policies"][0]["name"], "only-allowed-path", "{out}");
    assert_eq!(
        w["policies"][0]["via"], "Service svc-np-test-nginx-2",
        "{out}"
    );

    // npexec predicts the waypoint's L7 denial and names it.
    let (_, out, err) =
        plugin(&cl, "npexec", &["np-test-1", NS, "--predict", "-o", "json"]).await?;
    assert!(out.contains("\"verdict\": \"denied-rbac\""), "{out}{err}");
    assert!(out.contains("waypoint np-test-2/waypoint"), "{out}");
    assert!(out.contains("np-test-2/only-allowed-path"), "{out}");
    assert!(
        out.contains(
            "kubectl rbaclog -n np-test-2 -l gateway.networking.k8s.io/gateway-name=waypoint"
        ),
        "{out}"
    );
    Ok(())
}

/// With meshsim's real waypoint: npexec's live 403 is the waypoint's, named
/// with its rbaclog hint, and agrees with --predict.
#[tokio::test(flavor = "multi_thread")]
async fn npexec_live_waypoint_denial_agrees_with_predict() -> anyhow::Result<()> {
    let (cl, _dst) = ambient_cluster().await?;
    for f in [
        "examples/ambient/waypoint/waypoint.yaml",
        "examples/ambient/waypoint/deny-l7-waypoint.yaml",
    ] {
        cl.ok(&["apply", "-f", &repo_root().join(f).display().to_string()])
            .await?;
    }
    cl.wait_ready_pod(NS, "gateway.networking.k8s.io/gateway-name=waypoint")
        .await?;
    cl.wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    let args = [
        "np-test-1",
        NS,
        "--service",
        "svc-np-test-nginx-2",
        "--path",
        "/private",
        "-o",
        "json",
    ];
    let (_, out, err) = plugin(&cl, "npexec", &[&args[..], &["--predict"]].concat()).await?;
    assert!(out.contains("\"verdict\": \"denied-rbac\""), "{out}{err}");
    assert!(out.contains("waypoint np-test-2/waypoint"), "{out}");
    let live = [&args[..], &["--expect", "denied-rbac", "--wait", "30s"]].concat();
    let (code, out, err) = plugin(&cl, "npexec", &live).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("access denied by waypoint np-test-2/waypoint"),
        "{out}"
    );
    assert!(
        out.contains(
            "kubectl rbaclog -n np-test-2 -l gateway.networking.k8s.io/gateway-name=waypoint"
        ),
        "{out}"
    );
    Ok(())
}
