//! End-to-end test of a live CUSTOM (ext_authz) denial: meshsim reads the mesh
//! config's provider as istiod does, np-test-2's real Envoy calls the ext_authz
//! sample meshsim runs (examples/custom), and `kubectl rbaclog` reads the
//! denial from that Envoy's access log and names the CUSTOM policy and its
//! provider.
//!
//! Needs the binaries built first: `cargo build -p kubectl-rbaclog -p meshsim --bins`.
//! Waits are bounded by attempts, never assertions on durations.

use crate::common;

use std::time::Duration;

use common::sim::built;
use common::{Out, Sim, fast_config, repo_root};

const POLICY: &str = "examples/custom/policies/ext-authz-np-test-2.yaml";
const POLICY_NAME: &str = "ext-authz-np-test-2";
const PROVIDER: &str = "sample-ext-authz-http";
const BAD_POLICY: &str = "ext-authz-unknown-provider";
const BAD_PROVIDER: &str = "no-such-provider";
const GRPC_POLICY: &str = "ext-authz-grpc";
const GRPC_PROVIDER: &str = "sample-ext-authz-grpc";
const DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";

struct Env {
    c: Sim,
}

impl Env {
    async fn start() -> Env {
        let mut config = fast_config();
        config.scenarios = vec![repo_root().join("examples/walkthrough")];
        let mut c = Sim::in_process(config).await.unwrap();
        built(&["kubectl-rbaclog", "meshsim-istioctl"]);
        c.add_istioctl();
        Env { c }
    }

    async fn rbaclog(&self, args: &[&str]) -> Out {
        let mut v = vec!["rbaclog"];
        v.extend_from_slice(args);
        self.c.kubectl(&v).await.unwrap()
    }

    /// curl from np-test-1 to np-test-2's nginx (with `extra` curl args):
    /// (status, body).
    async fn curl(&self, client: &str, extra: &[&str]) -> (u16, String) {
        let mut args = vec![
            "exec",
            client,
            "-n",
            "np-test-1",
            "--",
            "curl",
            "-s",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push("http://svc-np-test-nginx-2.np-test-2.svc.cluster.local/");
        let o = self.c.kubectl(&args).await.unwrap();
        assert_eq!(o.code, 0, "{o:?}");
        let (body, code) = o.stdout.rsplit_once('\n').unwrap_or(("", &o.stdout));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

fn json(out: &Out) -> Vec<serde_json::Value> {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_denial_names_policy_and_provider() {
    let env = Env::start().await;
    let client = env
        .c
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await
        .unwrap();
    env.c
        .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await
        .unwrap();
    // The provider in the mesh config and the ext_authz sample, then the policy.
    for f in [
        "examples/custom/mesh-config.yaml",
        "examples/custom/ext-authz.yaml",
    ] {
        env.c
            .ok(&["apply", "-f", &repo_root().join(f).display().to_string()])
            .await
            .unwrap();
    }
    env.c
        .wait_ready_pod("np-test-2", "app=ext-authz")
        .await
        .unwrap();
    assert_eq!(env.curl(&client, &[]).await.0, 200, "before the policy");
    env.c
        .ok(&[
            "apply",
            "-f",
            &repo_root().join(POLICY).display().to_string(),
        ])
        .await
        .unwrap();

    // The policy reaches the sidecar after meshsim's propagation delay.
    let mut denied = None;
    for _ in 0..200 {
        let (code, body) = env.curl(&client, &[]).await;
        if code != 200 {
            denied = Some((code, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The ext_authz sample's own denial: a bad (unknown) provider would give
    // Envoy's `RBAC: access denied` instead.
    assert_eq!(
        denied,
        Some((403, DENY_BODY.to_string())),
        "no ext_authz denial"
    );
    let allowed = env.curl(&client, &["-H", "x-ext-authz: allow"]).await;
    assert_eq!(
        allowed,
        (200, "Hello world - np-test-nginx-2!".to_string()),
        "with the sample's header"
    );
    // The sample logged both checks.
    let logs = env
        .c
        .ok(&[
            "logs",
            "-n",
            "np-test-2",
            "-l",
            "app=ext-authz",
            "-c",
            "ext-authz",
        ])
        .await
        .unwrap();
    assert!(logs.contains("[HTTP][denied]: GET "), "{logs}");
    assert!(logs.contains("[HTTP][allowed]: GET "), "{logs}");

    // rbaclog reads the denial from the real Envoy's access log.
    let v = json(&env.rbaclog(&["np-test-2", "-o", "json"]).await);
    let custom: Vec<&serde_json::Value> = v
        .iter()
        .filter(|d| d["action"] == "CUSTOM" && d["engine"] == "enforced")
        .collect();
    assert_eq!(custom.len(), 1, "{v:#?}");
    let d = custom[0];
    assert_eq!(d["decision"], "denied", "{d:#}");
    assert_eq!(d["filter"], "ext-authz", "{d:#}");
    assert_eq!(d["namespace"], "np-test-2", "{d:#}");
    assert_eq!(d["policy"]["name"], POLICY_NAME, "{d:#}");
    assert_eq!(d["policy"]["namespace"], "np-test-2", "{d:#}");
    assert_eq!(d["policy"]["provider"], PROVIDER, "{d:#}");
    assert_eq!(d["details"], "ext_authz_denied", "{d:#}");
    assert_eq!(d["request"]["response_code"], 403, "{d:#}");
    // The allowed request still matched the CUSTOM rule: a trigger (Istio's
    // `shadow denied` on the istio-ext-authz id), not a dry-run denial.
    assert!(
        v.iter().any(|t| t["action"] == "CUSTOM"
            && t["engine"] == "shadow"
            && t["policy"]["provider"] == PROVIDER
            && t["request_id"] != d["request_id"]),
        "{v:#?}"
    );

    let table = env.rbaclog(&["np-test-2"]).await;
    assert_eq!(table.code, 0, "{table:?}");
    assert!(
        table
            .stdout
            .contains(&format!("np-test-2/{POLICY_NAME} (ext_authz {PROVIDER})")),
        "{}",
        table.stdout
    );

    let by_policy = json(
        &env.rbaclog(&["np-test-2", "--policy", POLICY_NAME, "-o", "json"])
            .await,
    );
    assert!(
        by_policy
            .iter()
            .any(|d| d["action"] == "CUSTOM" && d["decision"] == "denied"),
        "{by_policy:#?}"
    );
    let other = json(
        &env.rbaclog(&["np-test-2", "--policy", "some-other-policy", "-o", "json"])
            .await,
    );
    assert!(other.iter().all(|d| d["action"] != "CUSTOM"), "{other:#?}");

    // A provider the mesh config does not name: istiod builds DENY rules
    // (`-deny-due-to-bad-CUSTOM-action`) instead of ext_authz, so CUSTOM
    // fails closed with Envoy's RBAC denial, even with the sample's header.
    env.c
        .ok(&[
            "delete",
            "authorizationpolicy",
            "-n",
            "np-test-2",
            POLICY_NAME,
        ])
        .await
        .unwrap();
    let bad = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {BAD_POLICY}, namespace: np-test-2}}\nspec:\n  selector: {{matchLabels: {{app: np-test-nginx-2}}}}\n  action: CUSTOM\n  provider: {{name: {BAD_PROVIDER}}}\n  rules: [{{}}]\n"
    );
    let o = env
        .c
        .kubectl_stdin(&["apply", "-f", "-"], Some(bad.as_bytes()))
        .await
        .unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    let mut rbac_denied = None;
    for _ in 0..200 {
        let (code, body) = env.curl(&client, &["-H", "x-ext-authz: allow"]).await;
        if code != 200 {
            rbac_denied = Some((code, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rbac_denied,
        Some((403, "RBAC: access denied".to_string())),
        "an unknown provider must fail closed"
    );
    let v = json(
        &env.rbaclog(&["np-test-2", "--policy", BAD_POLICY, "-o", "json"])
            .await,
    );
    let d = v
        .iter()
        .find(|d| d["engine"] == "enforced" && d["decision"] == "denied")
        .unwrap_or_else(|| panic!("{v:#?}"));
    assert_eq!(d["policy"]["name"], BAD_POLICY, "{d:#}");
    assert_eq!(d["policy"]["provider"], BAD_PROVIDER, "{d:#}");
    assert_eq!(d["filter"], "http-rbac", "{d:#}");

    // The gRPC provider: Envoy's gRPC ext_authz asks the sample on port 9000.
    env.c
        .ok(&[
            "delete",
            "authorizationpolicy",
            "-n",
            "np-test-2",
            BAD_POLICY,
        ])
        .await
        .unwrap();
    let grpc = bad
        .replace(BAD_POLICY, GRPC_POLICY)
        .replace(BAD_PROVIDER, GRPC_PROVIDER);
    let o = env
        .c
        .kubectl_stdin(&["apply", "-f", "-"], Some(grpc.as_bytes()))
        .await
        .unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    let mut grpc_denied = None;
    for _ in 0..200 {
        let (code, body) = env.curl(&client, &[]).await;
        if body == DENY_BODY {
            grpc_denied = Some(code);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(grpc_denied, Some(403), "no gRPC ext_authz denial");
    assert_eq!(
        env.curl(&client, &["-H", "x-ext-authz: allow"]).await,
        (200, "Hello world - np-test-nginx-2!".to_string()),
        "gRPC check with the sample's header"
    );
    let logs = env
        .c
        .ok(&[
            "logs",
            "-n",
            "np-test-2",
            "-l",
            "app=ext-authz",
            "-c",
            "ext-authz",
        ])
        .await
        .unwrap();
    assert!(logs.contains("[gRPCv3][denied]: "), "{logs}");
    assert!(logs.contains("[gRPCv3][allowed]: "), "{logs}");
    let v = json(
        &env.rbaclog(&["np-test-2", "--policy", GRPC_POLICY, "-o", "json"])
            .await,
    );
    assert!(
        v.iter().any(|d| d["engine"] == "enforced"
            && d["action"] == "CUSTOM"
            && d["decision"] == "denied"
            && d["details"] == "ext_authz_denied"
            && d["policy"]["provider"] == GRPC_PROVIDER),
        "{v:#?}"
    );

    // No Ready ext_authz pod behind the provider's Service: the check fails
    // and CUSTOM fails closed (403, `ext_authz_error`), header or not.
    env.c
        .ok(&[
            "scale",
            "deployment",
            "ext-authz",
            "-n",
            "np-test-2",
            "--replicas=0",
        ])
        .await
        .unwrap();
    let mut failed = None;
    for _ in 0..200 {
        let (code, body) = env.curl(&client, &["-H", "x-ext-authz: allow"]).await;
        if code != 200 {
            failed = Some((code, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failed, Some((403, String::new())), "must fail closed");
    let v = json(
        &env.rbaclog(&["np-test-2", "--policy", GRPC_POLICY, "-o", "json"])
            .await,
    );
    assert!(
        v.iter()
            .any(|d| d["engine"] == "enforced" && d["details"] == "ext_authz_error"),
        "{v:#?}"
    );
}
