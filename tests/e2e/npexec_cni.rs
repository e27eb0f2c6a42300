//! `kubectl npexec --explain` on a cluster whose CNI ignores NetworkPolicy.
//!
//! The walk-through warns that many CNIs do not enforce NetworkPolicy. meshsim can
//! simulate such a CNI (`cni_enforces_network_policy: false`, `meshsim serve
//! --cni-ignores-network-policy`): the policy is stored but traffic still flows.
//! The probe must report what it saw (allowed) and `--explain` must flag the
//! contradiction with what the policy says, rather than trusting the policy.

use crate::common;

use common::sim::built;
use common::{Sim, fast_config, repo_root};

async fn npexec(cluster: &Sim, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    built(&["kubectl-npexec"]);
    let o = cluster.kubectl(&[&["npexec"], args].concat()).await?;
    Ok((o.code, o.stdout, o.stderr))
}

async fn walkthrough_with_network_policy(enforced: bool) -> anyhow::Result<Sim> {
    let mut config = fast_config();
    config.scenarios = vec![repo_root().join("examples/walkthrough")];
    config.cni_enforces_network_policy = enforced;
    let cluster = Sim::in_process(config).await?;
    cluster
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    cluster
        .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    let policy = repo_root().join("examples/walkthrough/policies/block-ingress-np-test-2.yaml");
    cluster
        .ok(&["apply", "-n", "np-test-2", "-f", policy.to_str().unwrap()])
        .await?;
    Ok(cluster)
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_flags_a_cni_that_does_not_enforce_network_policy() -> anyhow::Result<()> {
    let cluster = walkthrough_with_network_policy(false).await?;
    let (code, stdout, stderr) = npexec(
        &cluster,
        &["np-test-1", "np-test-2", "--explain", "-o", "json"],
    )
    .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let probes: serde_json::Value = serde_json::from_str(&stdout)?;
    let probe = &probes[0];
    assert_eq!(probe["verdict"], "allowed", "{probe:#}");
    let contradictions = probe["analysis"]["contradictions"].to_string();
    assert!(
        contradictions.contains("is the CNI enforcing NetworkPolicy?"),
        "{probe:#}"
    );
    assert!(
        contradictions.contains("deny-all-ingress-using-networkpolicy"),
        "the policy that should have blocked is named: {probe:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_enforcing_cni_blocks_and_raises_no_contradiction() -> anyhow::Result<()> {
    let cluster = walkthrough_with_network_policy(true).await?;
    let (code, stdout, stderr) = npexec(
        &cluster,
        &["np-test-1", "np-test-2", "--explain", "-o", "json"],
    )
    .await?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let probes: serde_json::Value = serde_json::from_str(&stdout)?;
    let probe = &probes[0];
    assert_eq!(probe["verdict"], "blocked-network", "{probe:#}");
    assert_eq!(
        probe["analysis"]["contradictions"],
        serde_json::json!([]),
        "{probe:#}"
    );
    Ok(())
}
