//! End to end: `meshsim-istioctl` (the istioctl test double, run as
//! `istioctl` would be) against an in-process meshsim serving the
//! walk-through, with the real kubectl for everything else. Output and
//! errors are compared byte for byte with istioctl 1.25's.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::Sim;
use common::sim::built;

/// The built `meshsim-istioctl` (`make test` builds every binary first).
fn istioctl_bin() -> PathBuf {
    built(&["meshsim-istioctl"]).join("meshsim-istioctl")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the stand-in with the cluster's kubeconfig in KUBECONFIG (as
/// istioctl reads it) and HOME in the test's directory.
async fn istioctl(c: &Sim, args: &[&str]) -> Run {
    let o = c.run_program(istioctl_bin(), args).await.unwrap();
    Run {
        code: o.code,
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

async fn walkthrough() -> (Sim, String, String) {
    let c = Sim::in_process_walkthrough().await.unwrap();
    let p1 = c
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await
        .unwrap();
    let p2 = c
        .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await
        .unwrap();
    (c, p1, p2)
}

fn deny_policy() -> String {
    common::repo_root()
        .join("examples/walkthrough/policies/block-istio-ingress-np-test-2.yaml")
        .display()
        .to_string()
}

const HEADER_ONLY: &str = "ACTION   AuthorizationPolicy   RULES\n";
const WALKTHROUGH_DENY: &str = "ACTION   AuthorizationPolicy                                    RULES\nDENY     deny-all-ingress-using-authorizationpolicy.np-test-2   1\n";

/// Polls (bounded by attempts) until `check` holds for the stand-in's output.
async fn until(c: &Sim, args: &[&str], check: impl Fn(&Run) -> bool) -> Run {
    let mut last = istioctl(c, args).await;
    for _ in 0..100 {
        if check(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = istioctl(c, args).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_check_of_the_walkthrough() {
    let (c, _, p2) = walkthrough().await;
    let target = format!("{p2}.np-test-2");
    let r = istioctl(&c, &["x", "authz", "check", &target]).await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, HEADER_ONLY, "")
    );

    c.ok(&["apply", "-f", &deny_policy(), "-n", "np-test-2"])
        .await
        .unwrap();
    let r = until(&c, &["x", "authz", "check", &target], |r| {
        r.stdout != HEADER_ONLY
    })
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, WALKTHROUGH_DENY);

    // The namespace from -n, the kubeconfig from --kubeconfig, the long command name.
    let kc = c.kubeconfig().to_str().unwrap().to_string();
    let o = c
        .command_async(
            istioctl_bin(),
            &[
                "experimental",
                "authz",
                "check",
                &p2,
                "-n",
                "np-test-2",
                "--kubeconfig",
                &kc,
            ],
        )
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), WALKTHROUGH_DENY);

    // np-test-1 is not selected by the policy.
    let p1 = c
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await
        .unwrap();
    let r = istioctl(&c, &["x", "authz", "check", &format!("{p1}.np-test-1")]).await;
    assert_eq!(r.stdout, HEADER_ONLY);

    // After deleting it, the sidecar drops it again.
    c.ok(&["delete", "-f", &deny_policy(), "-n", "np-test-2"])
        .await
        .unwrap();
    let r = until(&c, &["x", "authz", "check", &target], |r| {
        r.stdout == HEADER_ONLY
    })
    .await;
    assert_eq!(r.stdout, HEADER_ONLY);
}

#[tokio::test]
async fn authz_check_of_istios_config_dump_files() {
    // No cluster needed with -f; compare with istioctl's own test expectations.
    let dir = tempfile::tempdir().unwrap();
    let fixtures = common::repo_root().join("tests/fixtures/istio/authz-check");
    for v in ["1.25", "1.19"] {
        let dump = fixtures.join(format!("configdump-{v}.json"));
        let expected =
            std::fs::read_to_string(fixtures.join(format!("configdump-{v}.expected.txt"))).unwrap();
        let o = tokio::process::Command::new(istioctl_bin())
            .args(["x", "authz", "check", "-f", dump.to_str().unwrap()])
            .env("HOME", dir.path())
            .env("KUBECONFIG", dir.path().join("none"))
            .output()
            .await
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&o.stdout), expected, "{v}");
    }
    let o = tokio::process::Command::new(istioctl_bin())
        .args(["x", "authz", "check", "-f", "/nonexistent/dump.json"])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error: failed to get config dump from file /nonexistent/dump.json: open /nonexistent/dump.json: no such file or directory\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_as_istioctl_prints_them() {
    let (c, _, _) = walkthrough().await;
    // A pod without a sidecar (namespace without injection).
    c.ok(&["create", "namespace", "plain"]).await.unwrap();
    c.ok(&["run", "solo", "--image=nginx", "-n", "plain"])
        .await
        .unwrap();
    c.wait_ready_pod("plain", "run=solo").await.unwrap();
    let r = istioctl(&c, &["x", "authz", "check", "solo.plain"]).await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (
            1,
            "",
            "Error: failed to get config dump from pod solo in plain\n"
        )
    );
    let r = istioctl(&c, &["x", "authz", "check", "missing", "-n", "np-test-2"]).await;
    assert_eq!(
        r.stderr,
        "Error: failed to get config dump from pod missing in np-test-2\n"
    );
    let r = istioctl(&c, &["x", "authz", "check"]).await;
    assert_eq!(
        r.stderr,
        "Error: expecting pod name or config dump, found: 0\n"
    );
    let r = istioctl(&c, &["frobnicate"]).await;
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "Error: unknown command \"frobnicate\" for \"istioctl\"\nRun 'istioctl --help' for usage.\n"
        )
    );
    let r = istioctl(&c, &["version", "--remote=false"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "client version: 1.25.0\n"));
    let r = istioctl(&c, &["--help"]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .contains("TEST DOUBLE for the external istioctl program"),
        "{}",
        r.stdout
    );
    let r = istioctl(&c, &["pc", "log", "x.np-test-2", "--level", "rbac:loud"]).await;
    assert_eq!(r.stderr, "Error: unrecognized logging level: loud\n");
}

async fn call(c: &Sim, p1: &str) -> String {
    c.ok(&[
        "exec",
        p1,
        "-n",
        "np-test-1",
        "--",
        "bash",
        "-c",
        "curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2'",
    ])
    .await
    .unwrap()
}

async fn logs(c: &Sim, p2: &str) -> String {
    c.ok(&["logs", p2, "-c", "istio-proxy", "-n", "np-test-2"])
        .await
        .unwrap()
}

fn denied_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("enforced denied, matched policy ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_config_log_sets_and_resets_the_rbac_level() {
    let (c, p1, p2) = walkthrough().await;
    let target = format!("{p2}.np-test-2");
    c.ok(&["apply", "-f", &deny_policy(), "-n", "np-test-2"])
        .await
        .unwrap();
    until(&c, &["x", "authz", "check", &target], |r| {
        r.stdout == WALKTHROUGH_DENY
    })
    .await;

    // Reset: every logger back to warning, so denials leave no debug line.
    let r = istioctl(&c, &["proxy-config", "log", &target, "-r"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("{target}:\nactive loggers:\n")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\n  admin: warning\n"), "{}", r.stdout);
    assert!(r.stdout.contains("\n  rbac: warning\n"));
    assert!(
        r.stderr
            .contains("unable to get logLevel from ConfigMap istio-sidecar-injector")
    );
    let before = denied_lines(&logs(&c, &p2).await);
    assert_eq!(call(&c, &p1).await.trim(), "Failed calling np-test-nginx-2");
    assert_eq!(
        denied_lines(&logs(&c, &p2).await),
        before,
        "rbac at warning must not log decisions"
    );

    // --level rbac:debug: the next denial is logged.
    let r = istioctl(
        &c,
        &["proxy-config", "log", &target, "--level", "rbac:debug"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("{target}:\nactive loggers:\n"))
    );
    assert!(r.stdout.contains("\n  rbac: debug\n"));
    assert!(r.stdout.contains("\n  http: warning\n"));
    assert_eq!(call(&c, &p1).await.trim(), "Failed calling np-test-nginx-2");
    assert_eq!(denied_lines(&logs(&c, &p2).await), before + 1);

    // Reset again: no more lines.
    istioctl(&c, &["pc", "log", &target, "--reset"]).await;
    call(&c, &p1).await;
    assert_eq!(denied_lines(&logs(&c, &p2).await), before + 1);
}
