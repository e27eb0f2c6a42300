//! The Envoy admin of the sidecars (real Envoy 1.40), reached the way people and istioctl
//! reach it: `pilot-agent request ...` in `istio-proxy` and `curl
//! localhost:15000/...` from the pod, over the API server's WebSocket exec.
//! The config dump is read back with crates/meshpolicy's analysis (as
//! `istioctl x authz check` reads it); propagation is observed by moving the
//! mesh's clock, never by timing.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use meshpolicy::envoy::{AuthzAction, analyze_config_dump};
use meshsim::{Config, Handle, Server};

fn walkthrough() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/walkthrough")
}

/// A cluster whose policy changes reach sidecars only when the test moves
/// the mesh's clock (an hour of propagation delay).
async fn start() -> (Handle, kube::Client) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let h = Server::start(Config {
        scenarios: vec![walkthrough()],
        time_scale: 1.0,
        ready_delay: Duration::from_millis(50),
        propagation_delay: Duration::from_secs(3600),
        kubeconfig_out: Some(kubeconfig.clone()),
        ..Config::default()
    })
    .await
    .expect("server starts");
    for _ in 0..400 {
        let ready = h.cluster.with_store(|s| {
            let pods: Vec<_> = s.list(meshsim::store::resources::PODS, None).collect();
            pods.len() >= 2
                && pods.iter().all(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
        });
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (h, kube::Client::try_from(cfg).unwrap())
}

async fn pod_name(client: &kube::Client, ns: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.unwrap();
    list.items[0].metadata.name.clone().unwrap()
}

/// Runs argv in a container; returns (stdout, stderr, success).
async fn exec(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: &str,
    argv: &[&str],
) -> (String, String, bool) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true);
    let mut proc = api.exec(pod, argv.to_vec(), &params).await.unwrap();
    let read = |r: Option<_>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let status = proc.take_status();
    let (out, err, status) = futures::join!(read(proc.stdout()), read(proc.stderr()), async {
        match status {
            Some(s) => s.await,
            None => None,
        }
    });
    let ok = status.is_some_and(|s| s.status.as_deref() == Some("Success"));
    (out, err, ok)
}

async fn apply_deny_all(client: &kube::Client) {
    let ar = ApiResource {
        group: "security.istio.io".into(),
        version: "v1".into(),
        api_version: "security.istio.io/v1".into(),
        kind: "AuthorizationPolicy".into(),
        plural: "authorizationpolicies".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "np-test-2", &ar);
    let text =
        std::fs::read_to_string(walkthrough().join("policies/block-istio-ingress-np-test-2.yaml"))
            .unwrap();
    let mut obj: DynamicObject = serde_yaml_ng::from_str(&text).unwrap();
    obj.types = Some(kube::api::TypeMeta {
        api_version: "security.istio.io/v1".into(),
        kind: "AuthorizationPolicy".into(),
    });
    api.create(&PostParams::default(), &obj).await.unwrap();
}

fn rows(dump: &str) -> Vec<(AuthzAction, String, u32)> {
    analyze_config_dump(dump.as_bytes())
        .expect("a config dump meshpolicy can read")
        .rows
        .into_iter()
        .map(|r| (r.action, r.policy, r.rules))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_config_dump_after_the_deny_policy() {
    let (h, client) = start().await;
    let pod = pod_name(&client, "np-test-2").await;
    let get = ["pilot-agent", "request", "GET", "config_dump"];

    let (before, err, ok) = exec(&client, "np-test-2", &pod, "istio-proxy", &get).await;
    assert!(ok, "pilot-agent failed: {err}");
    assert!(rows(&before).is_empty(), "no policy yet");

    apply_deny_all(&client).await;
    // Written, but not yet pushed to the sidecar: the dump still has no RBAC filter.
    let (pending, _, _) = exec(&client, "np-test-2", &pod, "istio-proxy", &get).await;
    assert!(
        rows(&pending).is_empty(),
        "policy arrived before the propagation delay"
    );

    h.cluster
        .mesh()
        .unwrap()
        .advance_clock(Duration::from_secs(3601));
    let (after, _, ok) = exec(&client, "np-test-2", &pod, "istio-proxy", &get).await;
    assert!(ok);
    let expected = vec![(
        AuthzAction::Deny,
        "deny-all-ingress-using-authorizationpolicy.np-test-2".to_string(),
        1,
    )];
    assert_eq!(rows(&after), expected);
    let report = analyze_config_dump(after.as_bytes()).unwrap();
    let table = report.render();
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "DENY",
                    "deny-all-ingress-using-authorizationpolicy.np-test-2",
                    "1"
                ]),
        "{table}"
    );
    // Every RBAC filter is on the inbound listener (meshsim's Envoy binds it
    // on loopback with a kernel-chosen port, not Istio's 0.0.0.0:15006).
    assert!(
        report
            .occurrences
            .iter()
            .all(|o| o.listener.as_deref() == Some("virtualInbound"))
    );

    // The same dump through curl on the admin port, from the app container
    // (the pod's containers share its network namespace).
    let (curl, err, ok) = exec(
        &client,
        "np-test-2",
        &pod,
        "np-test-nginx-2",
        &["curl", "-s", "localhost:15000/config_dump"],
    )
    .await;
    assert!(ok, "curl failed: {err}");
    assert_eq!(rows(&curl), expected);

    // np-test-1's sidecar is not selected by the policy.
    let other = pod_name(&client, "np-test-1").await;
    let (dump1, _, _) = exec(&client, "np-test-1", &other, "istio-proxy", &get).await;
    assert!(rows(&dump1).is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_endpoint_changes_levels() {
    let (h, client) = start().await;
    let pod = pod_name(&client, "np-test-2").await;
    let post = |q: &'static str| ["pilot-agent", "request", "POST", q];

    let (out, _, ok) = exec(
        &client,
        "np-test-2",
        &pod,
        "istio-proxy",
        &post("logging?level=warning"),
    )
    .await;
    assert!(ok);
    assert!(out.starts_with("active loggers:\n"), "{out}");
    assert!(out.contains("\n  admin: warning\n"), "{out}");
    assert!(out.contains("\n  rbac: warning\n"));
    // The level as Envoy reports it afterwards (POST without a change lists them).
    let level_of = |logger: &'static str| {
        let client = client.clone();
        let pod = pod.clone();
        async move {
            let (out, _, _) = exec(
                &client,
                "np-test-2",
                &pod,
                "istio-proxy",
                &["pilot-agent", "request", "POST", "logging"],
            )
            .await;
            out.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{logger}: "))
                    .map(str::to_string)
            })
        }
    };
    assert_eq!(level_of("rbac").await.as_deref(), Some("warning"));

    let (out, _, _) = exec(
        &client,
        "np-test-2",
        &pod,
        "istio-proxy",
        &[
            "curl",
            "-s",
            "-X",
            "POST",
            "http://127.0.0.1:15000/logging?rbac=debug",
        ],
    )
    .await;
    assert!(out.contains("\n  rbac: debug\n"), "{out}");
    assert!(out.contains("\n  http: warning\n"));
    assert_eq!(level_of("rbac").await.as_deref(), Some("debug"));

    // Envoy's refusals: unknown level (400 with usage), GET on a mutating endpoint.
    let (out, _, _) = exec(
        &client,
        "np-test-2",
        &pod,
        "istio-proxy",
        &[
            "curl",
            "-s",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "localhost:15000/logging?rbac=loud",
        ],
    )
    .await;
    assert!(
        out.starts_with("error: unknown logger level\n\nusage: /logging?<name>=<level>"),
        "{out}"
    );
    assert!(out.ends_with("400"), "{out}");
    assert_eq!(level_of("rbac").await.as_deref(), Some("debug"));
    let (out, _, _) = exec(
        &client,
        "np-test-2",
        &pod,
        "istio-proxy",
        &[
            "curl",
            "-s",
            "-w",
            " %{http_code}",
            "localhost:15000/logging",
        ],
    )
    .await;
    assert_eq!(out, "Method GET not allowed, POST required. 405");

    // pilot-agent exists only in istio-proxy.
    let (out, _, ok) = exec(
        &client,
        "np-test-2",
        &pod,
        "np-test-nginx-2",
        &post("logging"),
    )
    .await;
    assert!(!ok);
    assert!(out.is_empty());
    h.shutdown().await;
}
