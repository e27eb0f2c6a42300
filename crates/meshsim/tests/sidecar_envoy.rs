//! meshsim's sidecars are real Envoy 1.40 processes: verdicts, identities and
//! addresses as Envoy sees them, the process lifecycle (restart with
//! restartCount, stop on delete). Requests are sent through the mesh's data
//! plane ([`meshsim::mesh::Mesh::send_request`]) from a pod's container, as
//! curl in that container would; propagation is observed by moving the
//! mesh's clock.

use std::path::Path;
use std::time::Duration;

use meshsim::mesh::flow::{AUTHORIZATIONPOLICIES, PEERAUTHENTICATIONS};
use meshsim::store::resources::{self, preferred};
use meshsim::traffic::{Container, NetOutcome, NetRequest};
use meshsim::{Config, Handle, Server};
use serde_json::{Value, json};

const SCENARIO: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: sc, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: caller, namespace: sc}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: sc, labels: {app: client}}
spec: {serviceAccountName: caller, containers: [{name: client, image: curlimages/curl:8.5.0}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: sc, labels: {app: other}}
spec: {containers: [{name: other, image: curlimages/curl:8.5.0}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: sc, labels: {app: web}, annotations: {meshsim.dev/response: "web says hi"}}
spec: {containers: [{name: web, image: nginx:latest, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: sc}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: outsider, namespace: plain, labels: {app: outsider}}
spec: {containers: [{name: outsider, image: curlimages/curl:8.5.0}]}
"#;

struct Sim {
    h: Handle,
    _dir: tempfile::TempDir,
}

impl Sim {
    async fn start() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scenario.yaml");
        std::fs::write(&file, SCENARIO).unwrap();
        let h = Server::start(Config {
            scenarios: vec![file],
            ready_delay: Duration::from_millis(10),
            propagation_delay: Duration::from_secs(3600),
            ..Config::default()
        })
        .await
        .expect("server starts (run `make envoy` first)");
        let sim = Sim { h, _dir: dir };
        // Bounded start-up wait: every sidecar's Envoy answers on its admin.
        for (ns, pod) in [("sc", "client"), ("sc", "other"), ("sc", "web")] {
            let mut up = false;
            for _ in 0..500 {
                if sim.mesh().sync_sidecar(ns, pod).await.is_some() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(up, "sidecar of {ns}/{pod} never became ready");
        }
        sim
    }

    fn mesh(&self) -> std::sync::Arc<meshsim::mesh::Mesh> {
        self.h.cluster.mesh().expect("mesh").clone()
    }

    fn pod(&self, ns: &str, name: &str) -> Value {
        self.h
            .cluster
            .with_store(|s| s.get(resources::PODS, ns, name).cloned())
            .expect("pod exists")
    }

    fn target(&self, ns: &str, pod: &str) -> Container {
        self.pod(ns, pod); // panics unless the pod exists
        Container {
            namespace: ns.into(),
            pod: pod.into(),
            container: pod.into(),
            image: "curlimages/curl:8.5.0".into(),
            tools: vec!["curl".into()],
        }
    }

    async fn get(&self, from: (&str, &str), path: &str) -> NetOutcome {
        let req = NetRequest {
            method: "GET".into(),
            scheme: "http".into(),
            host: "web.sc.svc.cluster.local".into(),
            port: 80,
            path: path.into(),
            headers: vec![
                ("Host".into(), "web.sc.svc.cluster.local".into()),
                ("User-Agent".into(), "curl/7.88.1".into()),
                ("Accept".into(), "*/*".into()),
            ],
            body: None,
        };
        self.mesh()
            .send_request(&self.target(from.0, from.1), &req)
            .await
    }

    async fn status(&self, from: (&str, &str), path: &str) -> u16 {
        match self.get(from, path).await {
            NetOutcome::Http { status, .. } => status,
            other => panic!("no HTTP answer for {path} from {from:?}: {other:?}"),
        }
    }

    /// Replaces the store's policies of `key` in `sc` by `obj` and lets the
    /// change reach the sidecars.
    async fn put_policy(&self, key: resources::ResKey, obj: Value) {
        let def = preferred(key);
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.h.cluster.with_store(|s| {
            let _ = s.delete(def, "sc", &name);
            s.create(def, "sc", obj).expect("policy stored");
        });
        let mesh = self.mesh();
        assert!(mesh.settle(4000).await, "mesh did not observe the change");
        mesh.advance_clock(Duration::from_secs(3601));
    }
}

fn authz(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "sc"}, "spec": spec})
}

/// The Envoy processes among the children of `pid` (the watchdog also has
/// its own subshell).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|c| {
            std::fs::read_link(format!("/proc/{c}/exe"))
                .is_ok_and(|e| e.file_name().is_some_and(|n| n == "envoy"))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_come_from_envoy() {
    let sim = Sim::start().await;
    let client = ("sc", "client");
    let other = ("sc", "other");
    let outsider = ("plain", "outsider");

    match sim.get(client, "/").await {
        NetOutcome::Http {
            status,
            headers,
            body,
            ..
        } => {
            assert_eq!((status, body.as_slice()), (200, b"web says hi".as_slice()));
            assert!(
                headers
                    .iter()
                    .any(|(k, v)| k == "server" && v == "istio-envoy"),
                "{headers:?}"
            );
        }
        o => panic!("{o:?}"),
    }

    // Paths as Envoy sees them: query stripped, dot segments and %2e resolved.
    sim.put_policy(
        AUTHORIZATIONPOLICIES,
        authz(
            "deny-panel",
            json!({"selector": {"matchLabels": {"app": "web"}}, "action": "DENY",
                "rules": [{"to": [{"operation": {"paths": ["/admin/panel"]}}]}]}),
        ),
    )
    .await;
    for path in [
        "/admin/panel",
        "/admin/panel?a=b",
        "/admin/./panel",
        "/x/../admin/panel",
        "/x/%2e%2e/admin/panel",
    ] {
        assert_eq!(sim.status(client, path).await, 403, "{path}");
    }
    match sim.get(client, "/admin/panel").await {
        NetOutcome::Http { body, .. } => assert_eq!(body, b"RBAC: access denied"),
        o => panic!("{o:?}"),
    }
    assert_eq!(sim.status(client, "/admin/other").await, 200);
    let def = preferred(AUTHORIZATIONPOLICIES);
    sim.h
        .cluster
        .with_store(|s| s.delete(def, "sc", "deny-panel").unwrap());

    // Identities from the mTLS certificates meshsim minted per service account.
    sim.put_policy(
        AUTHORIZATIONPOLICIES,
        authz(
            "allow-caller",
            json!({"selector": {"matchLabels": {"app": "web"}}, "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/sc/sa/caller"]}}]}]}),
        ),
    )
    .await;
    assert_eq!(sim.status(client, "/").await, 200);
    assert_eq!(sim.status(other, "/").await, 403);
    // No sidecar, plain text: no principal at all.
    assert_eq!(sim.status(outsider, "/").await, 403);
    sim.h
        .cluster
        .with_store(|s| s.delete(def, "sc", "allow-caller").unwrap());

    // Source addresses: the pod IP as the API shows it, through the PROXY protocol.
    let other_ip = sim.pod("sc", "other")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    sim.put_policy(
        AUTHORIZATIONPOLICIES,
        authz(
            "deny-other-ip",
            json!({"selector": {"matchLabels": {"app": "web"}}, "action": "DENY",
                "rules": [{"from": [{"source": {"ipBlocks": [format!("{other_ip}/32")]}}]}]}),
        ),
    )
    .await;
    assert_eq!(sim.status(other, "/").await, 403);
    assert_eq!(sim.status(client, "/").await, 200);
    sim.h
        .cluster
        .with_store(|s| s.delete(def, "sc", "deny-other-ip").unwrap());

    // STRICT mTLS: a client without sidecar is cut off, one with a sidecar is not.
    sim.put_policy(
        PEERAUTHENTICATIONS,
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "strict", "namespace": "sc"}, "spec": {"mtls": {"mode": "STRICT"}}}),
    )
    .await;
    assert!(
        matches!(sim.get(outsider, "/").await, NetOutcome::Reset { .. }),
        "plain text to a STRICT sidecar must be reset"
    );
    assert_eq!(sim.status(client, "/").await, 200);

    // What Envoy wrote is the istio-proxy log: Istio's access log format,
    // with the source pod's address as Envoy saw it.
    // Envoy writes it on its own threads: wait for the lines (bounded).
    let admin_line = |l: &String| l.contains("\"GET /admin/panel?a=b HTTP/1.1\" 403 ");
    let from_other = |l: &String| l.contains(" 403 ") && l.contains(&format!(" {other_ip}:"));
    let mut log = Vec::new();
    for _ in 0..1000 {
        log = sim.h.cluster.logs().lines("sc", "web", "istio-proxy");
        if log.iter().any(admin_line) && log.iter().any(from_other) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(log.iter().any(admin_line), "{log:#?}");
    assert!(log.iter().any(from_other), "{log:#?}");
    sim.h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_envoy_restarts_and_a_deleted_pod_stops_its_envoy() {
    let sim = Sim::start().await;
    let mesh = sim.mesh();
    let fleet = mesh.fleet().clone();
    let watchdog = fleet.proxy("sc", "web").unwrap().pid().unwrap();
    let envoy = children(watchdog);
    assert_eq!(envoy.len(), 1, "the watchdog runs exactly Envoy");
    let envoy = envoy[0];

    // Killing Envoy: the kubelet's answer is a restart, counted.
    let k = std::process::Command::new("kill")
        .args(["-KILL", &envoy.to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let restarts = || {
        sim.pod("sc", "web")["status"]["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "istio-proxy")
            .unwrap()["restartCount"]
            .as_u64()
            .unwrap()
    };
    let mut restarted = false;
    for _ in 0..500 {
        if restarts() == 1 {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted, "restartCount never went to 1");
    assert!(!alive(envoy));
    assert_eq!(sim.status(("sc", "client"), "/").await, 200);
    let new_watchdog = fleet.proxy("sc", "web").unwrap().pid().unwrap();
    let new_envoy = children(new_watchdog);
    assert_eq!(new_envoy.len(), 1);

    // Deleting the pod stops its Envoy.
    sim.h.cluster.with_store(|s| {
        s.delete(preferred(resources::PODS), "sc", "web").unwrap();
    });
    let mut stopped = false;
    for _ in 0..500 {
        if !alive(new_envoy[0]) && !alive(new_watchdog) {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "Envoy of a deleted pod still runs");

    // Shutting meshsim down stops every other Envoy.
    let others: Vec<u32> = fleet
        .proxies()
        .iter()
        .filter_map(|p| p.pid())
        .flat_map(children)
        .collect();
    assert!(!others.is_empty());
    sim.h.shutdown().await;
    assert!(others.iter().all(|p| !alive(*p)), "{others:?} still run");
}
