//! How exec'd commands reach the Envoy admin: the `pilot-agent` program of
//! the `istio-proxy` container, and `localhost:15000` traffic.
//!
//! istioctl and people talk to a sidecar's admin API either through
//! `pilot-agent request METHOD PATH` (only in `istio-proxy`) or with curl on
//! `localhost:15000` (from any container of the pod: they share the pod's
//! network namespace, and the admin listens on 127.0.0.1). The first is a
//! cluster-provided program ([`crate::exec::ExecServices::program`]), the
//! second the mesh's [`AdminHandler`] hook for requests to a pod's own
//! ports. [`MeshAdmin`] backs both with the mesh simulation's state.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;

use meshpolicy::AuthorizationPolicy;
use serde_json::Value;

use super::logging::LevelChange;
use super::{ADMIN_PORT, AdminResponse, SidecarAdmin, handle};
use crate::exec::{ExecTarget, NetOutcome, NetRequest, Process, Program};
use crate::mesh::loglevel::ENVOY_LOGGERS;
use crate::mesh::{AdminHandler, Mesh, PROXY_CONTAINER};
use crate::resources;
use crate::server::App;

/// Whether `host` names the pod itself (loopback).
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The program `name` the cluster provides in `target`: `pilot-agent` in
/// `istio-proxy`.
pub fn program(
    admin: Arc<dyn SidecarAdmin>,
    target: &ExecTarget,
    name: &str,
) -> Option<Arc<dyn Program>> {
    (name == "pilot-agent" && target.container == "istio-proxy")
        .then(|| Arc::new(PilotAgent { admin, real: None }) as Arc<dyn Program>)
}

/// `pilot-agent`: only its `request` subcommand is simulated.
pub struct PilotAgent {
    pub admin: Arc<dyn SidecarAdmin>,
    /// The cluster whose sidecars are real Envoys: requests go to the pod's
    /// Envoy admin.
    pub real: Option<Weak<App>>,
}

/// One request to the real Envoy admin of `namespace/pod`; the body.
async fn real_admin(
    app: &Weak<App>,
    namespace: &str,
    pod: &str,
    method: &str,
    path: &str,
) -> Option<Vec<u8>> {
    let app = app.upgrade()?;
    let mesh = app.mesh.get()?.clone();
    let admin = mesh.admin_address(namespace, pod).await?;
    crate::sidecar::admin_request(admin, method, path)
        .await
        .ok()
        .map(|r| r.body)
}

const PILOT_AGENT_USAGE: &str =
    "Istio Pilot agent runs in the sidecar or gateway container and bootstraps Envoy.

Usage:
  pilot-agent [command]

Available Commands:
  request     Makes an HTTP request to the Envoy admin API

Flags:
  -h, --help   help for pilot-agent

(meshsim simulates only `pilot-agent request`.)
";

const REQUEST_USAGE: &str = "Usage:
  pilot-agent request <method> <path> [<body>] [flags]

Flags:
      --debug-port int32   Set the port to make a local request to. The default points to the Envoy admin API. (default 15000)
  -h, --help               help for request
";

fn istio_error_line(msg: &str) -> String {
    let t = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    format!("{t}\terror\t{msg}\n")
}

impl Program for PilotAgent {
    fn run<'a>(&'a self, p: Process<'a>, argv: Vec<String>) -> BoxFuture<'a, i32> {
        Box::pin(async move {
            let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
            match args.first().copied() {
                None | Some("-h" | "--help" | "help") => {
                    let _ = p.out(PILOT_AGENT_USAGE.as_bytes()).await;
                    return 0;
                }
                Some("request") => {}
                Some(other) => {
                    let msg = format!("unknown command \"{other}\" for \"pilot-agent\"");
                    p.err(&format!(
                        "Error: {msg}\nRun 'pilot-agent --help' for usage.\n{}",
                        istio_error_line(&msg)
                    ))
                    .await;
                    return 255;
                }
            }
            let mut port = ADMIN_PORT;
            let mut positional: Vec<&str> = Vec::new();
            let mut i = 1;
            while i < args.len() {
                let a = args[i];
                if a == "-h" || a == "--help" {
                    let _ = p
                        .out(
                            format!(
                                "Makes an HTTP request to the Envoy admin API\n\n{REQUEST_USAGE}"
                            )
                            .as_bytes(),
                        )
                        .await;
                    return 0;
                }
                let value = if let Some(v) = a.strip_prefix("--debug-port=") {
                    Some(v.to_string())
                } else if a == "--debug-port" {
                    i += 1;
                    args.get(i).map(|s| s.to_string())
                } else {
                    positional.push(a);
                    None
                };
                if a.starts_with("--debug-port") {
                    match value.as_deref().map(str::parse::<u16>) {
                        Some(Ok(v)) => port = v,
                        _ => {
                            let msg = format!(
                                "invalid argument {:?} for \"--debug-port\" flag: strconv.ParseInt: parsing {:?}: invalid syntax",
                                value.clone().unwrap_or_default(),
                                value.unwrap_or_default()
                            );
                            p.err(&format!(
                                "Error: {msg}\n{REQUEST_USAGE}\n{}",
                                istio_error_line(&msg)
                            ))
                            .await;
                            return 255;
                        }
                    }
                }
                i += 1;
            }
            if positional.len() < 2 {
                let msg = format!(
                    "requires at least 2 arg(s), only received {}",
                    positional.len()
                );
                p.err(&format!(
                    "Error: {msg}\n{REQUEST_USAGE}\n{}",
                    istio_error_line(&msg)
                ))
                .await;
                return 255;
            }
            let (method, path) = (positional[0], positional[1]);
            if port != ADMIN_PORT {
                let msg = format!(
                    "Get \"http://localhost:{port}/{}\": dial tcp 127.0.0.1:{port}: connect: connection refused",
                    path.trim_start_matches('/')
                );
                p.err(&format!("Error: {msg}\n{}", istio_error_line(&msg)))
                    .await;
                return 255;
            }
            let t = p.target;
            if let Some(real) = &self.real {
                return match real_admin(real, &t.namespace, &t.pod, method, path).await {
                    Some(mut out) => {
                        out.push(b'\n');
                        if p.out(&out).await { 0 } else { 1 }
                    }
                    None => {
                        let msg = format!(
                            "Post \"http://localhost:{port}/{}\": dial tcp 127.0.0.1:{port}: connect: connection refused",
                            path.trim_start_matches('/')
                        );
                        p.err(&format!("Error: {msg}\n{}", istio_error_line(&msg)))
                            .await;
                        255
                    }
                };
            }
            match handle(&*self.admin, &t.namespace, &t.pod, method, path) {
                Some(resp) => {
                    let mut out = resp.body;
                    out.push(b'\n');
                    if p.out(&out).await { 0 } else { 1 }
                }
                None => {
                    let msg = format!(
                        "Post \"http://localhost:{port}/{}\": dial tcp 127.0.0.1:{port}: connect: connection refused",
                        path.trim_start_matches('/')
                    );
                    p.err(&format!("Error: {msg}\n{}", istio_error_line(&msg)))
                        .await;
                    255
                }
            }
        })
    }
}

/// The admin of every sidecar of one cluster, backed by the mesh
/// simulation (policies as received, logger levels) and the API store.
pub struct MeshAdmin {
    pub app: Weak<App>,
}

impl MeshAdmin {
    fn mesh(&self) -> Option<Arc<Mesh>> {
        self.app.upgrade()?.mesh.get().cloned()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SidecarAdmin for MeshAdmin {
    fn sidecar_pod(&self, namespace: &str, pod: &str) -> Option<Value> {
        let app = self.app.upgrade()?;
        let store = lock(&app.store);
        let p = store.get(resources::PODS, namespace, pod)?;
        let has_sidecar = p["spec"]["containers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == PROXY_CONTAINER));
        has_sidecar.then(|| p.clone())
    }

    fn services(&self, namespace: &str) -> Vec<Value> {
        let Some(app) = self.app.upgrade() else {
            return Vec::new();
        };
        let store = lock(&app.store);
        store
            .list(resources::SERVICES, Some(namespace))
            .cloned()
            .collect()
    }

    fn sidecar_policies(&self, namespace: &str, pod: &str) -> Vec<AuthorizationPolicy> {
        self.mesh()
            .map(|m| m.sidecar_policies(namespace, pod))
            .unwrap_or_default()
    }

    fn loggers(&self, namespace: &str, pod: &str) -> Vec<(String, String)> {
        let levels = self
            .mesh()
            .and_then(|m| m.logger_levels(namespace, pod).ok())
            .unwrap_or_default();
        levels
            .list()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().to_string()))
            .collect()
    }

    fn has_logger(&self, name: &str) -> bool {
        ENVOY_LOGGERS.contains(&name)
    }

    fn set_levels(&self, namespace: &str, pod: &str, change: &LevelChange) {
        let Some(mesh) = self.mesh() else { return };
        match change {
            LevelChange::None => {}
            LevelChange::All(l) => {
                let _ = mesh.set_all_logger_levels(namespace, pod, *l);
            }
            LevelChange::Named(list) => {
                for (name, l) in list {
                    let _ = mesh.set_logger_level(namespace, pod, name, *l);
                }
            }
        }
    }
}

fn outcome(resp: AdminResponse) -> NetOutcome {
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    NetOutcome::Http {
        after: Duration::from_millis(1),
        status: resp.status,
        headers: vec![
            ("content-type".into(), resp.content_type.into()),
            ("cache-control".into(), "no-cache, max-age=0".into()),
            ("x-content-type-options".into(), "nosniff".into()),
            ("date".into(), date),
            ("server".into(), "envoy".into()),
            ("content-length".into(), resp.body.len().to_string()),
        ],
        body: resp.body,
    }
}

impl AdminHandler for MeshAdmin {
    fn handle(&self, from: &ExecTarget, request: &NetRequest) -> Option<NetOutcome> {
        if request.port != ADMIN_PORT || request.scheme != "http" || !is_loopback(&request.host) {
            return None;
        }
        handle(
            self,
            &from.namespace,
            &from.pod,
            &request.method,
            &request.path,
        )
        .map(outcome)
    }
}

/// Connects the admin to the cluster: registers the `localhost:15000`
/// handler with the mesh simulation (when the cluster runs one). Call once
/// after the mesh is installed.
pub fn install(app: &Arc<App>) {
    if let Some(mesh) = app.mesh.get() {
        mesh.set_admin_handler(Arc::new(MeshAdmin {
            app: Arc::downgrade(app),
        }));
    }
}

/// The program `name` the cluster provides in `target` (`pilot-agent` in
/// `istio-proxy`), for [`crate::exec::ExecServices::program`].
pub fn cluster_program(
    app: &Arc<App>,
    target: &ExecTarget,
    name: &str,
) -> Option<Arc<dyn Program>> {
    let real = app
        .mesh
        .get()
        .and_then(|m| m.fleet())
        .map(|_| Arc::downgrade(app));
    (name == "pilot-agent" && target.container == "istio-proxy").then(|| {
        Arc::new(PilotAgent {
            admin: Arc::new(MeshAdmin {
                app: Arc::downgrade(app),
            }),
            real,
        }) as Arc<dyn Program>
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "localhost.example", "svc"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
