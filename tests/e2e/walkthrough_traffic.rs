//! The walk-through (tests/fixtures/seed/istio-network-policies-walkthrough.txt)
//! end to end: its exact `kubectl exec ... bash -c "... curl ..."` checks and
//! `kubectl logs ... -c istio-proxy | grep rbac | grep denied`, run with the
//! real kubectl against meshsim serving examples/walkthrough, before and
//! after the AuthorizationPolicy and the NetworkPolicy, plus the propagation
//! delay ("it can take a few seconds"): right after an apply the old decision
//! holds, after the delay the new one does. Waiting for propagation moves the
//! mesh's clock instead of sleeping, so nothing here depends on timing.

use crate::common;

use std::time::Duration;

use common::{Sim, fast_config, repo_root};

const HELLO_1: &str = "Hello world - np-test-nginx-1!";
const HELLO_2: &str = "Hello world - np-test-nginx-2!";
const DENIED_LINE: &str = "enforced denied, matched policy ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]";

async fn walkthrough(propagation_delay: Duration) -> anyhow::Result<Sim> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("examples/walkthrough")];
    c.propagation_delay = propagation_delay;
    let cl = Sim::in_process(c).await?;
    cl.wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    cl.wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    Ok(cl)
}

/// `$(kubectl get pod -n NS -l app=APP -o jsonpath="{.items[0].metadata.name}")`
async fn pod_of(cl: &Sim, ns: &str, app: &str) -> anyhow::Result<String> {
    let label = format!("app={app}");
    cl.ok(&[
        "get",
        "pod",
        "-n",
        ns,
        "-l",
        &label,
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])
    .await
}

/// The walk-through's `kubectl exec -it POD -n NS -- bash -c SCRIPT`; returns stdout.
async fn exec_bash(cl: &Sim, ns: &str, app: &str, script: &str) -> anyhow::Result<String> {
    let pod = pod_of(cl, ns, app).await?;
    let o = cl
        .kubectl(&["exec", "-it", &pod, "-n", ns, "--", "bash", "-c", script])
        .await?;
    anyhow::ensure!(
        o.code == 0,
        "exec failed ({}): {}{}",
        o.code,
        o.stdout,
        o.stderr
    );
    Ok(o.stdout)
}

/// "Confirm Pod 1 can call Pod 2" (and its later form without the suffix).
async fn one_to_two(cl: &Sim, suffix: &str) -> anyhow::Result<String> {
    let script = format!(
        "echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2{suffix}'"
    );
    exec_bash(cl, "np-test-1", "np-test-nginx-1", &script).await
}

/// "Confirm Pod 2 can call Pod 1".
async fn two_to_one(cl: &Sim, suffix: &str) -> anyhow::Result<String> {
    let script = format!(
        "curl -sf --max-time 3 svc-np-test-nginx-1.np-test-1.svc.cluster.local || echo 'Failed calling np-test-nginx-1{suffix}' && echo ''"
    );
    exec_bash(cl, "np-test-2", "np-test-nginx-2", &script).await
}

/// `kubectl logs POD -c istio-proxy -n NS | grep "rbac" | grep "denied"`
async fn rbac_denied_lines(cl: &Sim, ns: &str, app: &str) -> anyhow::Result<Vec<String>> {
    let pod = pod_of(cl, ns, app).await?;
    let out = cl
        .ok(&["logs", &pod, "-c", "istio-proxy", "-n", ns])
        .await?;
    Ok(out
        .lines()
        .filter(|l| l.contains("rbac") && l.contains("denied"))
        .map(str::to_string)
        .collect())
}

async fn apply_policy(cl: &Sim, verb: &str, file: &str) -> anyhow::Result<String> {
    let path = repo_root().join("examples/walkthrough/policies").join(file);
    cl.ok(&[verb, "-f", &path.to_string_lossy(), "-n", "np-test-2"])
        .await
}

/// "Now if we wait a couple seconds": let the sidecars receive the change.
async fn let_policies_propagate(cl: &Sim) -> anyhow::Result<()> {
    let mesh = cl.handle().cluster.mesh().expect("mesh installed");
    anyhow::ensure!(mesh.settle(4000).await, "mesh did not observe the change");
    mesh.advance_clock(mesh.real_propagation_delay() + Duration::from_millis(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_authorizationpolicy_then_networkpolicy() -> anyhow::Result<()> {
    let cl = walkthrough(Duration::from_secs(2)).await?;

    // Confirm Setup.
    assert_eq!(
        one_to_two(&cl, " from np-test-nginx-1").await?,
        format!("\n{HELLO_2}")
    );
    assert_eq!(
        two_to_one(&cl, " from np-test-nginx-2").await?,
        format!("{HELLO_1}\n")
    );
    assert!(
        rbac_denied_lines(&cl, "np-test-2", "np-test-nginx-2")
            .await?
            .is_empty()
    );

    // Create Istio AuthorizationPolicy.
    let out = apply_policy(&cl, "apply", "block-istio-ingress-np-test-2.yaml").await?;
    assert!(
        out.contains("deny-all-ingress-using-authorizationpolicy created"),
        "{out}"
    );
    let_policies_propagate(&cl).await?;
    assert_eq!(
        one_to_two(&cl, "").await?,
        "\nFailed calling np-test-nginx-2\n"
    );
    assert_eq!(two_to_one(&cl, "").await?, format!("{HELLO_1}\n"));

    // Confirm that Istio is blocking it.
    assert!(
        rbac_denied_lines(&cl, "np-test-1", "np-test-nginx-1")
            .await?
            .is_empty()
    );
    let denied = rbac_denied_lines(&cl, "np-test-2", "np-test-nginx-2").await?;
    let decision = denied
        .iter()
        .find(|l| l.contains(DENIED_LINE))
        .unwrap_or_else(|| panic!("no RBAC denial in {denied:#?}"));
    let fields: Vec<&str> = decision.split('\t').collect();
    assert_eq!(fields.len(), 5, "{decision:?}");
    assert_eq!(fields[1], "debug");
    // Real Envoy 1.40: upstream's source path (Istio's build prints it under
    // `external/envoy/`), line number as that build has it.
    let caller = fields[2]
        .strip_prefix("envoy rbac source/extensions/filters/http/rbac/rbac_filter.cc:")
        .unwrap_or_else(|| panic!("{decision:?}"));
    assert!(caller.parse::<u32>().is_ok(), "{decision:?}");
    assert_eq!(fields[3], DENIED_LINE);
    assert!(fields[4].starts_with("thread="), "{decision:?}");
    assert!(
        denied.iter().any(|l| l.contains("Preparing local reply with details rbac_access_denied_matched_policy[ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]]")
            && l.contains("[Tags: \"ConnectionId\":\"")),
        "{denied:#?}"
    );

    // Setup NetworkPolicy instead.
    let out = apply_policy(&cl, "delete", "block-istio-ingress-np-test-2.yaml").await?;
    assert!(out.contains("deleted"), "{out}");
    let out = apply_policy(&cl, "apply", "block-ingress-np-test-2.yaml").await?;
    assert!(
        out.contains("deny-all-ingress-using-networkpolicy created"),
        "{out}"
    );
    let_policies_propagate(&cl).await?;
    let before = rbac_denied_lines(&cl, "np-test-2", "np-test-nginx-2")
        .await?
        .len();
    assert_eq!(
        one_to_two(&cl, "").await?,
        "\nFailed calling np-test-nginx-2\n"
    );
    assert_eq!(two_to_one(&cl, "").await?, format!("{HELLO_1}\n"));
    // The request never reached np-test-nginx-2's sidecar this time.
    assert_eq!(
        rbac_denied_lines(&cl, "np-test-2", "np-test-nginx-2")
            .await?
            .len(),
        before
    );

    // The client's sidecar gives up on connecting: 503 UF,URX in its access log
    // (written when its 10 s connect timeout, scaled, has passed; bounded polling).
    let pod1 = pod_of(&cl, "np-test-1", "np-test-nginx-1").await?;
    let mut seen = false;
    for _ in 0..200 {
        let log = cl
            .ok(&["logs", &pod1, "-c", "istio-proxy", "-n", "np-test-1"])
            .await?;
        if log.lines().any(|l| {
            l.contains("\" 503 UF,URX upstream_reset_before_response_started{connection_timeout} ")
        }) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen,
        "no 503 UF,URX outbound access log line in np-test-nginx-1's istio-proxy log"
    );

    // Cleanup as the walk-through does: back to the initial answers.
    apply_policy(&cl, "delete", "block-ingress-np-test-2.yaml").await?;
    assert_eq!(one_to_two(&cl, "").await?, format!("\n{HELLO_2}"));
    cl.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_propagation_delay_is_observed() -> anyhow::Result<()> {
    // Ten simulated hours: the sidecars only catch up when the test moves the clock.
    let cl = walkthrough(Duration::from_secs(36_000)).await?;
    apply_policy(&cl, "apply", "block-istio-ingress-np-test-2.yaml").await?;
    let mesh = cl.handle().cluster.mesh().expect("mesh installed").clone();
    assert!(mesh.settle(4000).await);
    let pod2 = pod_of(&cl, "np-test-2", "np-test-nginx-2").await?;
    assert!(mesh.sidecar_policies("np-test-2", &pod2).is_empty());
    // Right after the apply: the old decision.
    assert_eq!(one_to_two(&cl, "").await?, format!("\n{HELLO_2}"));
    // After the delay: the new one.
    let_policies_propagate(&cl).await?;
    assert_eq!(mesh.sidecar_policies("np-test-2", &pod2).len(), 1);
    assert_eq!(
        one_to_two(&cl, "").await?,
        "\nFailed calling np-test-nginx-2\n"
    );
    // Deleting it propagates the same way.
    apply_policy(&cl, "delete", "block-istio-ingress-np-test-2.yaml").await?;
    assert!(mesh.settle(4000).await);
    assert_eq!(
        one_to_two(&cl, "").await?,
        "\nFailed calling np-test-nginx-2\n"
    );
    let_policies_propagate(&cl).await?;
    assert_eq!(one_to_two(&cl, "").await?, format!("\n{HELLO_2}"));
    cl.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_policy_arrives_in_real_time() -> anyhow::Result<()> {
    // The default 2 s delay at --time-scale 0.01: the change arrives by itself.
    let cl = walkthrough(Duration::from_secs(2)).await?;
    apply_policy(&cl, "apply", "block-istio-ingress-np-test-2.yaml").await?;
    let mut last = String::new();
    for _ in 0..100 {
        last = one_to_two(&cl, "").await?;
        if last == "\nFailed calling np-test-nginx-2\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, "\nFailed calling np-test-nginx-2\n");
    cl.shutdown().await;
    Ok(())
}
