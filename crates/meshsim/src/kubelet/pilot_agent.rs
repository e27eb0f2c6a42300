//! `pilot-agent` in the `istio-proxy` container: how people and istioctl
//! reach a sidecar's Envoy admin (`kubectl exec ... -c istio-proxy --
//! pilot-agent request GET config_dump`). Its `request` subcommand sends one
//! request to the pod's Envoy admin (the real Envoy of
//! [`crate::mesh::sidecar`], over loopback) and prints the answer's body, as
//! pilot-agent does; a `stats` answer also carries the simulated outbound
//! clusters' counters ([`crate::mesh::outbound`]). `curl localhost:15000/...`
//! from the container is routed by [`crate::mesh::Mesh`] instead.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;

use crate::app::App;
use crate::kubelet::exec::{Process, Program};
use crate::mesh::sidecar::ADMIN_PORT;
use crate::traffic::Container;

/// `pilot-agent`: only its `request` subcommand is provided.
pub struct PilotAgent {
    /// The cluster whose sidecars' admins requests go to.
    pub app: Weak<App>,
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
    let body = crate::mesh::sidecar::admin_request(admin, method, path)
        .await
        .ok()
        .map(|r| r.body)?;
    // The real Envoy is the inbound side only: `/stats` also gets the
    // simulated outbound side's cluster counters.
    match meshpolicy::envoy::stats::stats_path_filter(path) {
        Some(filter) if method.eq_ignore_ascii_case("GET") => {
            let real = String::from_utf8_lossy(&body);
            Some(
                mesh.stats_with_outbound(namespace, pod, &filter, &real)
                    .into_bytes(),
            )
        }
        _ => Some(body),
    }
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
    let t = crate::logs::istio_log_time();
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
            match real_admin(&self.app, &t.namespace, &t.pod, method, path).await {
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
            }
        })
    }
}

/// The pod annotation that lists the executables of one container; for
/// `istio-proxy` it can leave `pilot-agent` out (an image without it).
const PROXY_TOOLS_ANNOTATION: &str = "meshsim.dev/tools.istio-proxy";

/// The program `name` the cluster provides in `target` (`pilot-agent` in
/// `istio-proxy`, unless the pod's `meshsim.dev/tools.istio-proxy` lists
/// the proxy's executables without it), for [`crate::kubelet::exec::ExecServices::program`].
pub fn cluster_program(app: &Arc<App>, target: &Container, name: &str) -> Option<Arc<dyn Program>> {
    let declared_without = || {
        let store = crate::mesh::sidecar::lock(&app.shared.store);
        store
            .get(
                crate::store::resources::PODS,
                &target.namespace,
                &target.pod,
            )
            .is_some_and(|p| {
                p["metadata"]["annotations"][PROXY_TOOLS_ANNOTATION]
                    .as_str()
                    .is_some_and(|list| !list.split(',').any(|t| t.trim() == name))
            })
    };
    (name == "pilot-agent"
        && target.container == crate::mesh::PROXY_CONTAINER
        && !declared_without())
    .then(|| {
        Arc::new(PilotAgent {
            app: Arc::downgrade(app),
        }) as Arc<dyn Program>
    })
}
