//! Which pod and container a probe runs from, chosen so that a user can
//! predict it and a CI job gets the same answer every run.
//!
//! A verdict that depends on which pod happened to be listed first makes
//! `--expect` useless, so the choice is an explicit order: Running and Ready
//! pods first; among them, when the namespace runs sidecars (some pod has
//! one), pods with a sidecar first (their traffic is what the mesh's policies
//! see); then by name. Each candidate's container is looked at (curl, else
//! GNU or busybox wget; [`ToolCache`], once per container) before any probe,
//! and the first one with a client wins. When no pod has one, the first pod
//! is kept and its probes say so (`exec-failed`, with a hint naming `--pod`,
//! `-l` and `--debug-image`). A namespace without pods is an error of its own.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kubeplugin::error::ApiOp;
use kubeplugin::resources::{has_sidecar, is_ready, is_running, pod_name, resolve_container};
use kubeplugin::target::{PodQuery, find_pods};
use kubeplugin::{Kube, PluginError};

use crate::probe::{Client, Source, ToolCache, is_systemic};

/// How many pods are looked at, at most, before giving up on finding a client.
const MAX_LOOKED_AT: usize = 8;

/// Chooses the source in `namespace`. With `look` false (`--predict`, which
/// runs nothing) the first pod in the order above is taken as is.
pub async fn choose(
    kube: &Kube,
    namespace: &str,
    query: &PodQuery,
    container: Option<&str>,
    tools: &ToolCache,
    look: bool,
) -> Result<Source, PluginError> {
    if container == Some(kubeplugin::resources::ISTIO_PROXY) {
        return Err(PluginError::usage(
            "refusing to probe from istio-proxy: its traffic (uid 1337) bypasses the sidecar and would hide AuthorizationPolicy results",
            Some("omit -c to use the application container".to_string()),
        ));
    }
    let pods = match find_pods(kube, namespace, query).await {
        Err(PluginError::NoPodMatches { namespace, .. })
            if query.pod.is_none() && query.selector.is_none() =>
        {
            return Err(PluginError::NoPods { namespace });
        }
        other => other?,
    };
    let candidates = order(pods);
    let Some(first) = candidates.first() else {
        return Err(PluginError::NoPods {
            namespace: namespace.to_string(),
        });
    };
    if !is_running(first) {
        return Err(PluginError::PodNotRunning {
            namespace: namespace.into(),
            pod: pod_name(first).into(),
            phase: kubeplugin::resources::phase(first).into(),
        });
    }
    let source_of = |pod: &Pod, container: String, client: Option<Client>| Source {
        namespace: namespace.to_string(),
        pod: pod_name(pod).to_string(),
        container,
        sidecar: has_sidecar(pod),
        client,
        looked: look,
    };
    if !look {
        let c = resolve_container(first, container)?;
        return Ok(source_of(first, c, None));
    }
    let mut fallback: Option<Source> = None;
    for pod in candidates
        .iter()
        .filter(|p| is_running(p))
        .take(MAX_LOOKED_AT)
    {
        let c = match resolve_container(pod, container) {
            Ok(c) => c,
            // `-c` names a container this pod lacks: only the first pod's error counts.
            Err(e) if fallback.is_none() => return Err(e),
            Err(_) => continue,
        };
        let target = kubeplugin::exec::ExecTarget {
            namespace: namespace.to_string(),
            pod: pod_name(pod).to_string(),
            container: c.clone(),
        };
        let client = match tools.client(kube, &target).await {
            Ok(client) => client,
            Err(e) if is_systemic(&e) => return Err(e),
            Err(e) => {
                // The exec itself fails: the probes will run into it and say so.
                tracing::info!(pod = %pod_name(pod), error = %e, "could not look at the pod's tools");
                return Ok(Source {
                    looked: false,
                    ..source_of(pod, c, None)
                });
            }
        };
        if client.is_some() {
            return Ok(source_of(pod, c, client));
        }
        fallback.get_or_insert_with(|| source_of(pod, c, None));
    }
    match fallback {
        Some(s) => Ok(s),
        None => {
            let c = resolve_container(first, container)?;
            Ok(source_of(first, c, None))
        }
    }
}

/// How long an ephemeral container may take to start.
const DEBUG_START: Duration = Duration::from_secs(60);

/// `--debug-image`: adds an ephemeral container running `image` to the
/// source pod through the `pods/ephemeralcontainers` subresource (as `kubectl
/// debug` does; it shares the pod's network namespace, so its traffic goes
/// through the pod's sidecar), waits until it runs, and probes from it. The
/// container sleeps for an hour and is then gone (ephemeral containers cannot
/// be removed; they end with their command).
pub async fn debug_container(
    kube: &Kube,
    s: &Source,
    image: &str,
    tools: &ToolCache,
) -> Result<Source, PluginError> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &s.namespace);
    let suffix: String = format!("{:08x}", rand_suffix());
    let name = format!("npexec-debug-{suffix}");
    let patch = serde_json::json!({
        "spec": {"ephemeralContainers": [{
            "name": name,
            "image": image,
            "command": ["sleep", "3600"],
            "stdin": false,
            "tty": false,
        }]}
    });
    let op = || ApiOp::new("patch", "pods/ephemeralcontainers", &s.namespace).named(&s.pod);
    api.patch_ephemeral_containers(&s.pod, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(|e| kube.err(e, &op()))?;
    let started = std::time::Instant::now();
    loop {
        let pod = api
            .get(&s.pod)
            .await
            .map_err(|e| kube.err(e, &ApiOp::new("get", "pods", &s.namespace).named(&s.pod)))?;
        let running = pod
            .status
            .as_ref()
            .and_then(|st| st.ephemeral_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.name == name && c.state.as_ref().is_some_and(|st| st.running.is_some()));
        if running {
            break;
        }
        if started.elapsed() > DEBUG_START {
            return Err(PluginError::Exec {
                namespace: s.namespace.clone(),
                pod: s.pod.clone(),
                container: name,
                message: format!(
                    "the ephemeral container did not start within {}s (image {image})",
                    DEBUG_START.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let target = kubeplugin::exec::ExecTarget {
        namespace: s.namespace.clone(),
        pod: s.pod.clone(),
        container: name.clone(),
    };
    let client = tools.client(kube, &target).await?;
    Ok(Source {
        container: name,
        client,
        looked: true,
        ..s.clone()
    })
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Running and Ready first, then (when any pod has one) sidecar pods first,
/// then by name: [`kubeplugin::resources::sort_pods`] refined by the sidecar.
fn order(mut pods: Vec<Pod>) -> Vec<Pod> {
    kubeplugin::resources::sort_pods(&mut pods);
    let injected = pods.iter().any(has_sidecar);
    let rank = |p: &Pod| {
        let readiness = match (is_running(p), is_ready(p)) {
            (true, true) => 0,
            (true, false) => 1,
            _ => 2,
        };
        let sidecar = u8::from(injected && !has_sidecar(p));
        (readiness, sidecar)
    };
    // A stable sort keeps the name order within a rank.
    pods.sort_by_key(rank);
    pods
}

/// `probing from NS/POD (container C, tool T, with sidecar)`: the stderr line
/// that says where the probes of a run come from.
pub fn describe(s: &Source) -> String {
    let tool = match (s.client, s.looked) {
        (Some(c), _) => c.label(),
        (None, true) => "none: no curl or wget",
        (None, false) => "not looked at",
    };
    let sidecar = if s.sidecar {
        "with sidecar"
    } else {
        "without sidecar"
    };
    format!(
        "probing from {}/{} (container {}, tool {tool}, {sidecar})",
        s.namespace, s.pod, s.container
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, sidecar: bool) -> Pod {
        let mut containers = vec![serde_json::json!({"name": "app", "image": "x"})];
        if sidecar {
            containers.push(serde_json::json!({"name": "istio-proxy", "image": "proxyv2"}));
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": containers},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ready_then_sidecar_then_name() {
        let pods = vec![
            pod("a-plain", true, false),
            pod("b-unready", false, true),
            pod("c-mesh", true, true),
            pod("d-mesh", true, true),
        ];
        let names: Vec<String> = order(pods)
            .iter()
            .map(|p| pod_name(p).to_string())
            .collect();
        assert_eq!(names, ["c-mesh", "d-mesh", "a-plain", "b-unready"]);
    }

    #[test]
    fn the_line_names_pod_container_tool_and_sidecar() {
        let s = Source {
            namespace: "tp-mixed".into(),
            pod: "b-curl-1".into(),
            container: "curl".into(),
            sidecar: true,
            client: Some(Client::Curl),
            looked: true,
        };
        assert_eq!(
            describe(&s),
            "probing from tp-mixed/b-curl-1 (container curl, tool curl, with sidecar)"
        );
    }
}
