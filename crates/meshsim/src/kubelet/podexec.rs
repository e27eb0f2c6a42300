//! The pod subresources that leave plain JSON behind: `pods/exec` (WebSocket
//! upgrade handed to [`crate::kubelet::exec::serve_websocket`]) and `pods/log`
//! (streamed from the container log store). This module validates the pod
//! and container like the kubelet would and decides which tools a container
//! image provides.
//!
//! Tools per image (override with the pod annotation `meshsim.dev/tools`,
//! comma-separated, or `meshsim.dev/tools.CONTAINER` for one container):
//! every image has `sh` and the basic utilities (cat, echo, env, hostname,
//! sleep, true, false, ls); `nginx` images add bash and curl; Istio's
//! `proxyv2` adds bash, curl and pilot-agent; `busybox` adds wget; `curl`
//! images (e.g. curlimages/curl) add curl; `distroless` images have nothing
//! at all; anything else has only the basics. A tool an image has but
//! meshsim does not emulate (env, hostname, sleep, ls) says so and exits 126
//! (see [`crate::kubelet::exec`] for what is emulated and what deliberately is not).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::app::{App, EXEC_LOG_LIMIT, ExecRecord};
use crate::error::ApiError;
use crate::kubelet::exec::ExecServices;
use crate::kubelet::exec::{ExecOptions, negotiate_protocol, serve_websocket};
use crate::path::{Query, ResourcePath as Target, q1, qbool};
use crate::store::controllers::StartedPod;
use crate::traffic::Container;
use crate::traffic::Network;

const BASE_TOOLS: &[&str] = &[
    "sh", "cat", "echo", "env", "hostname", "sleep", "true", "false", "ls",
];

/// Executables an image provides by default.
pub fn default_tools(image: &str) -> Vec<String> {
    if image.contains("distroless") {
        // Distroless images have no shell and no utilities at all.
        return Vec::new();
    }
    let mut t: Vec<&str> = BASE_TOOLS.to_vec();
    let repo = image.rsplit('/').next().unwrap_or(image);
    let repo = repo.split([':', '@']).next().unwrap_or(repo);
    match repo {
        "nginx" => t.extend(["bash", "curl"]),
        "proxyv2" => t.extend(["bash", "curl", "pilot-agent"]),
        "busybox" => t.extend(["wget"]),
        "curl" => t.extend(["curl"]),
        _ => {}
    }
    t.into_iter().map(str::to_string).collect()
}

fn tools_for(pod: &Value, container: &str, image: &str) -> Vec<String> {
    let ann = &pod["metadata"]["annotations"];
    let specific = ann[format!("meshsim.dev/tools.{container}").as_str()].as_str();
    match specific.or_else(|| ann["meshsim.dev/tools"].as_str()) {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => default_tools(image),
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Resolve the container a request names (or the only one).
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> Result<Value, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let inits = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ephemeral = pod["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => containers
            .iter()
            .chain(inits.iter())
            .chain(ephemeral.iter())
            .find(|x| x["name"].as_str() == Some(c))
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(format!("container {c} is not valid for pod {pod_name}"))
            }),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names(&pod["spec"]["containers"]).join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    names(&pod["spec"]["initContainers"]).join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

fn find_pod(app: &App, t: &Target) -> Result<Value, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let st = app.lock_store()?;
    st.get_raw(crate::store::resources::PODS, &ns, &name)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| ApiError::not_found("pods", "", &name))
}

/// `GET|POST .../pods/NAME/exec`.
pub async fn exec(
    app: Arc<App>,
    t: Target,
    q: Query,
    req: Request,
    cut_after: Option<usize>,
) -> Result<Response, ApiError> {
    let pod = find_pod(&app, &t)?;
    let argv: Vec<String> = q.get("command").cloned().unwrap_or_default();
    if argv.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let container = resolve_container(&pod, q1(&q, "container"))?;
    let cname = container["name"].as_str().unwrap_or_default().to_string();
    let running = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(pod["status"]["ephemeralContainerStatuses"].as_array())
        .flatten()
        .any(|c| c["name"].as_str() == Some(cname.as_str()) && c["state"].get("running").is_some());
    if !running {
        return Err(ApiError::bad_request(format!(
            "container not found (\"{cname}\")"
        )));
    }
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let target = Container {
        namespace: t.namespace.clone().unwrap_or_default(),
        pod: t.name.clone().unwrap_or_default(),
        container: cname.clone(),
        tools: tools_for(&pod, &cname, &image),
        image,
    };
    let opts = ExecOptions {
        stdin: qbool(&q, "stdin"),
        stdout: q1(&q, "stdout").is_none() || qbool(&q, "stdout"),
        stderr: q1(&q, "stderr").is_none() || qbool(&q, "stderr"),
        tty: qbool(&q, "tty"),
        cut_after_bytes: cut_after,
    };
    let (mut parts, _body) = req.into_parts();
    let offered: Vec<String> = parts
        .headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let offered_refs: Vec<&str> = offered.iter().map(String::as_str).collect();
    let Ok(ws) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await else {
        // SPDY (POST with Upgrade: SPDY/3.1) or plain requests: not supported.
        return Err(ApiError::bad_request(
            "Upgrade request required: meshsim serves exec over WebSocket only (v5.channel.k8s.io, v4.channel.k8s.io)",
        ));
    };
    let Some(protocol) = negotiate_protocol(&offered_refs) else {
        return Err(ApiError::bad_request(
            "unable to upgrade connection: no supported subprotocol (offer v5.channel.k8s.io or v4.channel.k8s.io)",
        ));
    };
    let services: Arc<dyn crate::kubelet::exec::ExecServices> =
        Arc::new(Services { app: app.clone() });
    Ok(ws
        .protocols([protocol.as_str()])
        .on_upgrade(move |socket| serve_websocket(socket, protocol, target, argv, opts, services))
        .into_response())
}

/// `PATCH|PUT .../pods/NAME/ephemeralcontainers` (as `kubectl debug` and
/// kube-rs's `patch_ephemeral_containers` send it): `pod` is the pod as the
/// request would leave it; only `spec.ephemeralContainers` is taken, new
/// entries only (existing ones cannot change, as the kubelet enforces), and
/// each new container starts at once (`ephemeralContainerStatuses`, running)
/// in the pod's network namespace: its traffic is the pod's.
pub fn add_ephemeral(
    st: &mut crate::store::Store,
    def: &crate::store::resources::ResourceDef,
    ns: &str,
    name: &str,
    pod: &Value,
) -> Result<Value, ApiError> {
    let existing = st
        .get(def.key(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("pods", "", name))?;
    let old: Vec<Value> = existing["spec"]["ephemeralContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut all = old.clone();
    let taken: Vec<String> = names(&existing["spec"]["containers"])
        .into_iter()
        .chain(names(&existing["spec"]["initContainers"]))
        .chain(names(&existing["spec"]["ephemeralContainers"]))
        .collect();
    for c in pod["spec"]["ephemeralContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(cname) = c["name"].as_str() else {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "Pod \"{name}\" is invalid: spec.ephemeralContainers[0].name: Required value"
                ),
            ));
        };
        if old.iter().any(|o| o["name"].as_str() == Some(cname)) {
            continue;
        }
        if taken.iter().any(|t| t == cname) {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "Pod \"{name}\" is invalid: spec.ephemeralContainers[0].name: Duplicate value: \"{cname}\""
                ),
            ));
        }
        all.push(c.clone());
    }
    let mut next = existing.clone();
    next["spec"]["ephemeralContainers"] = Value::Array(all.clone());
    let out = st.update(def, ns, name, next, false)?;
    let now = crate::store::now_ts();
    let statuses: Vec<Value> = all
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c["name"].clone(),
                "image": c["image"].clone(),
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let mut with_status = out.clone();
    with_status["status"]["ephemeralContainerStatuses"] = Value::Array(statuses);
    st.update(def, ns, name, with_status, true)
}

/// `GET .../pods/NAME/log`.
pub fn logs(
    app: Arc<App>,
    t: Target,
    q: Query,
    cut_after: Option<usize>,
) -> Result<Response, ApiError> {
    let pod = find_pod(&app, &t)?;
    let pod_name = t.name.clone().unwrap_or_default();
    let container = resolve_container(&pod, q1(&q, "container"))?;
    let cname = container["name"].as_str().unwrap_or_default().to_string();
    if qbool(&q, "previous") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{cname}\" in pod \"{pod_name}\" not found"
        )));
    }
    let started = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(pod["status"]["initContainerStatuses"].as_array())
        .chain(pod["status"]["ephemeralContainerStatuses"].as_array())
        .flatten()
        .any(|c| c["name"].as_str() == Some(cname.as_str()) && c["state"].get("waiting").is_none());
    if !started {
        return Err(ApiError::bad_request(format!(
            "container \"{cname}\" in pod \"{pod_name}\" is waiting to start: ContainerCreating"
        )));
    }
    crate::kubelet::logstream::respond(&app, &t, &cname, &q, cut_after)
}

/// Startup lines of a freshly started container (istio-proxy, nginx), plus
/// log files named by `meshsim.dev/log.CONTAINER` annotations.
pub fn seed_logs(app: &App, pod: &StartedPod) {
    crate::kubelet::logstream::seed(app, pod);
}

/// What exec'd commands get from the cluster.
pub struct Services {
    pub app: Arc<App>,
}

impl ExecServices for Services {
    fn network(&self) -> Arc<dyn Network> {
        self.app
            .network
            .read()
            .map(|n| n.clone())
            .unwrap_or_else(|_| Arc::new(crate::shared::NoNetwork))
    }
    fn time_scale(&self) -> f64 {
        self.app.time_scale
    }
    fn program(
        &self,
        target: &Container,
        name: &str,
    ) -> Option<Arc<dyn crate::kubelet::exec::Program>> {
        crate::kubelet::pilot_agent::cluster_program(&self.app, target, name)
    }
    fn record_exec(&self, target: &Container, argv: &[String]) {
        let mut log = match self.app.exec_log.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if log.len() >= EXEC_LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(ExecRecord {
            namespace: target.namespace.clone(),
            pod: target.pod.clone(),
            container: target.container.clone(),
            argv: argv.to_vec(),
        });
    }
}
