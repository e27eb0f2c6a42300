//! The README's scripting example, run for real.
//!
//! `examples/scripting/assert-walkthrough.sh` composes the three plugins into a
//! script that asserts the walk-through's expectations and exits non-zero when one
//! fails. Here it runs against meshsim through real kubectl, once on the
//! walk-through as deployed (every expectation holds) and once on a cluster where
//! a NetworkPolicy is already in place (the first expectation must fail).

use crate::common;

use common::sim::target_bin_dir;
use common::{Sim, repo_root};

async fn run_script(cluster: &Sim) -> anyhow::Result<(i32, String)> {
    for p in ["kubectl-npexec", "kubectl-rbaclog", "kubectl-authzcheck"] {
        anyhow::ensure!(
            target_bin_dir().join(p).exists(),
            "{p} is not built: run `cargo build --workspace --bins` first (make test does)"
        );
    }
    let script = repo_root().join("examples/scripting/assert-walkthrough.sh");
    let out = cluster
        .run_program("bash", &[script.to_str().expect("UTF-8 path")])
        .await?;
    Ok((out.code, format!("{}{}", out.stdout, out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn script_passes_on_the_walkthrough() -> anyhow::Result<()> {
    let cluster = Sim::in_process_walkthrough().await?;
    cluster
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    cluster
        .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    let (code, text) = run_script(&cluster).await?;
    assert_eq!(code, 0, "script failed:\n{text}");
    assert!(!text.contains("FAILED"), "{text}");
    assert_eq!(text.matches("ok: ").count(), 8, "every check ran:\n{text}");
    // The script removed both policies again.
    let left = cluster
        .ok(&[
            "get",
            "authorizationpolicies,networkpolicies",
            "-A",
            "-o",
            "name",
        ])
        .await?;
    assert!(left.trim().is_empty(), "policies left behind: {left}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn script_fails_when_an_expectation_does_not_hold() -> anyhow::Result<()> {
    let cluster = Sim::in_process_walkthrough().await?;
    cluster
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;
    cluster
        .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    // A NetworkPolicy already blocks ingress to np-test-2: "np-test-1 reaches np-test-2" must fail.
    let policy = repo_root().join("examples/walkthrough/policies/block-ingress-np-test-2.yaml");
    cluster
        .ok(&["apply", "-n", "np-test-2", "-f", policy.to_str().unwrap()])
        .await?;
    let (code, text) = run_script(&cluster).await?;
    assert_eq!(code, 1, "an unmet expectation exits 1:\n{text}");
    assert!(
        text.contains("FAILED: np-test-1 reaches np-test-2"),
        "the failing check is named:\n{text}"
    );
    Ok(())
}
