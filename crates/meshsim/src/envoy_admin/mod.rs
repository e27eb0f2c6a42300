//! Envoy's admin interface inside simulated sidecars.
//!
//! People and istioctl look into a sidecar through Envoy's admin API on
//! `localhost:15000`, reached with `kubectl exec ... -c istio-proxy --
//! pilot-agent request GET config_dump` or `curl localhost:15000/...`. This
//! module answers those requests from the sidecar's simulated state: the
//! config dump ([`config_dump`], with RBAC filters from [`rbac_config`]) for
//! the AuthorizationPolicies the sidecar has received, and the `/logging`
//! endpoint ([`logging`]) that changes the logger levels the mesh
//! simulation honours when it writes Envoy's log lines. [`programs`]
//! registers `pilot-agent` as a program of the `istio-proxy` container and
//! routes `localhost:15000` traffic of a pod with a sidecar to the admin.
//!
//! The sidecar's state is reached through [`SidecarAdmin`], so the admin has
//! no opinion on propagation delays or logger defaults: the mesh owns them.

pub mod config_dump;
pub mod logging;
pub mod programs;
pub mod rbac_config;

use meshpolicy::AuthorizationPolicy;
use serde_json::Value;

pub use config_dump::{PortProtocol, SidecarSpec, config_dump};
pub use logging::{LevelChange, LoggingError};
pub use programs::{MeshAdmin, PilotAgent, cluster_program, install, program};

/// Envoy's admin port.
pub const ADMIN_PORT: u16 = 15000;

/// What the admin needs to know about, and change in, one sidecar.
pub trait SidecarAdmin: Send + Sync {
    /// The pod object, when it exists and has a sidecar (`istio-proxy`).
    fn sidecar_pod(&self, namespace: &str, pod: &str) -> Option<Value>;
    /// The Services of a namespace (to tell HTTP ports from TCP ones).
    fn services(&self, namespace: &str) -> Vec<Value>;
    /// The AuthorizationPolicies this sidecar has received so far (after
    /// propagation delay) that select it.
    fn sidecar_policies(&self, namespace: &str, pod: &str) -> Vec<AuthorizationPolicy>;
    /// Every logger with its level name, in Envoy's listing order.
    fn loggers(&self, namespace: &str, pod: &str) -> Vec<(String, String)>;
    /// Whether Envoy has a logger of this name.
    fn has_logger(&self, name: &str) -> bool;
    /// Applies a validated change.
    fn set_levels(&self, namespace: &str, pod: &str, change: &LevelChange);
}

/// An admin API answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl AdminResponse {
    fn text(status: u16, body: impl Into<String>) -> Self {
        AdminResponse {
            status,
            content_type: "text/plain; charset=UTF-8",
            body: body.into().into_bytes(),
        }
    }
}

/// Admin endpoints meshsim answers (others get Envoy's 404 listing).
const ENDPOINTS: &[(&str, &str)] = &[
    ("/config_dump", "dump current Envoy configs (experimental)"),
    ("/logging", "query/change logging levels"),
    (
        "/ready",
        "print server state, return 200 if LIVE, otherwise return 503",
    ),
    ("/server_info", "print server version/status information"),
];

/// Answers one admin request (`path` with its query, leading `/` optional)
/// for the sidecar of `namespace/pod`. `None` when that pod has no sidecar
/// (nothing listens on the admin port).
pub fn handle(
    admin: &dyn SidecarAdmin,
    namespace: &str,
    pod: &str,
    method: &str,
    path: &str,
) -> Option<AdminResponse> {
    let pod_obj = admin.sidecar_pod(namespace, pod)?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let (route, query) = path.split_once('?').unwrap_or((&path, ""));
    let mutating = route == "/logging";
    if mutating && !method.eq_ignore_ascii_case("POST") {
        return Some(AdminResponse::text(
            405,
            format!("Method {method} not allowed, POST required."),
        ));
    }
    Some(match route {
        "/config_dump" => {
            let spec = SidecarSpec::from_pod(&pod_obj, admin.services(namespace).iter());
            let policies = admin.sidecar_policies(namespace, pod);
            let updated = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            let version = format!(
                "{}/{}",
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                policies.len() + 1
            );
            let dump = config_dump(&spec, &policies, &version, &updated);
            let mut body = serde_json::to_vec_pretty(&dump).unwrap_or_default();
            body.push(b'\n');
            AdminResponse {
                status: 200,
                content_type: "application/json",
                body,
            }
        }
        "/logging" => {
            let parsed = logging::parse_query(query, |n| admin.has_logger(n));
            let (status, error) = match &parsed {
                Ok(change) => {
                    admin.set_levels(namespace, pod, change);
                    (200, None)
                }
                Err(e) => (400, Some(e)),
            };
            AdminResponse::text(
                status,
                logging::render_listing(error, &admin.loggers(namespace, pod)),
            )
        }
        "/ready" => AdminResponse::text(200, "LIVE\n"),
        "/server_info" => {
            let info = serde_json::json!({
                "version": "meshsim/1.33.0/Clean/RELEASE/BoringSSL",
                "state": "LIVE",
                "command_line_options": {"log_level": "warning", "component_log_level": "misc:error", "concurrency": 2},
                "node": {"id": format!("sidecar~{}~{pod}.{namespace}~{namespace}.svc.cluster.local",
                    pod_obj["status"]["podIP"].as_str().unwrap_or_default())}
            });
            let mut body = serde_json::to_vec_pretty(&info).unwrap_or_default();
            body.push(b'\n');
            AdminResponse {
                status: 200,
                content_type: "application/json",
                body,
            }
        }
        _ => {
            let mut text = String::from("invalid path. admin commands are:\n");
            for (p, help) in ENDPOINTS {
                text.push_str(&format!("  {p}: {help}\n"));
            }
            AdminResponse::text(404, text)
        }
    })
}
