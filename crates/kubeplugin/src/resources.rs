//! Finding the pods, containers and Services a plugin acts on.
//!
//! Listing pods in a namespace that does not exist returns an empty list, not
//! an error, so plugins would report "no pod matches" for a typo'd namespace;
//! [`ensure_namespace`] checks first. Pod choice is deterministic (Running and
//! Ready first, then by name) so two runs probe from the same pod, and the
//! default container skips Istio's sidecar: traffic from `istio-proxy` (uid
//! 1337) bypasses the sidecar and would hide AuthorizationPolicy results.

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ListParams};

use crate::client::Kube;
use crate::error::{ApiOp, PluginError};
use crate::selector::validate_selector;

/// Annotation naming the container `kubectl exec` uses by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Istio's sidecar container.
pub const ISTIO_PROXY: &str = "istio-proxy";
/// Istio's init container.
pub const ISTIO_INIT: &str = "istio-init";

/// Fails with `namespace "x" not found` when the namespace does not exist.
/// A 403 on namespaces is ignored (many users may not read namespaces).
pub async fn ensure_namespace(kube: &Kube, namespace: &str) -> Result<(), PluginError> {
    let api: Api<Namespace> = Api::all(kube.client.clone());
    match api.get(namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        Err(e) => Err(kube.err(
            e,
            &ApiOp::new("get", "namespaces", namespace).named(namespace),
        )),
    }
}

/// Lists namespaces matching a label selector, sorted by name.
pub async fn namespaces_by_selector(
    kube: &Kube,
    selector: &str,
) -> Result<Vec<String>, PluginError> {
    validate_selector(selector).map_err(|e| PluginError::usage(e.to_string(), None))?;
    let api: Api<Namespace> = Api::all(kube.client.clone());
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| kube.err(e, &ApiOp::new("list", "namespaces", "(cluster)")))?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Deterministic order: Running and Ready, then Running, then the rest; by name within.
pub fn sort_pods(pods: &mut [Pod]) {
    pods.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| pod_name(a).cmp(pod_name(b)))
    });
}

fn rank(p: &Pod) -> u8 {
    match (is_running(p), is_ready(p)) {
        (true, true) => 0,
        (true, false) => 1,
        _ => 2,
    }
}

/// The pod's name ("" if absent).
pub fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

/// The pod's phase ("Unknown" if absent).
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown")
}

/// Phase Running and not being deleted.
pub fn is_running(p: &Pod) -> bool {
    phase(p) == "Running" && p.metadata.deletion_timestamp.is_none()
}

/// The Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Names of the pod's regular containers, in spec order.
pub fn container_names(p: &Pod) -> Vec<String> {
    p.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

/// Whether the pod runs Istio's sidecar (as a container or a native sidecar init container).
pub fn has_sidecar(p: &Pod) -> bool {
    let Some(spec) = &p.spec else { return false };
    spec.containers.iter().any(|c| c.name == ISTIO_PROXY)
        || spec.init_containers.as_ref().is_some_and(|ics| {
            ics.iter()
                .any(|c| c.name == ISTIO_PROXY && c.restart_policy.as_deref() == Some("Always"))
        })
}

/// The container to act in: the annotation `kubectl.kubernetes.io/default-container`
/// if it names an existing container other than istio-proxy, else the first
/// container that is not istio-proxy/istio-init.
pub fn default_container(p: &Pod) -> Option<String> {
    let names = container_names(p);
    let annotated = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION));
    if let Some(a) = annotated
        && a != ISTIO_PROXY
        && names.iter().any(|n| n == a)
    {
        return Some(a.clone());
    }
    names
        .into_iter()
        .find(|n| n != ISTIO_PROXY && n != ISTIO_INIT)
}

/// Resolves `-c` (checked against the pod) or the default container.
pub fn resolve_container(p: &Pod, requested: Option<&str>) -> Result<String, PluginError> {
    let names = container_names(p);
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    match requested {
        Some(c) if names.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(PluginError::ContainerNotFound {
            namespace: ns,
            pod: pod_name(p).into(),
            container: c.into(),
            containers: names,
        }),
        None => default_container(p).ok_or_else(|| PluginError::ContainerNotFound {
            namespace: ns,
            pod: pod_name(p).into(),
            container: "(default: a container other than istio-proxy)".into(),
            containers: names,
        }),
    }
}

/// Services of a namespace, sorted by name; with `names`, exactly those (404 => not found).
/// An empty result is [`PluginError::NoServices`] (after checking the namespace exists).
pub async fn find_services(
    kube: &Kube,
    namespace: &str,
    names: &[String],
) -> Result<Vec<Service>, PluginError> {
    let api: Api<Service> = Api::namespaced(kube.client.clone(), namespace);
    let mut services = Vec::new();
    if names.is_empty() {
        services = api
            .list(&ListParams::default())
            .await
            .map_err(|e| kube.err(e, &ApiOp::new("list", "services", namespace)))?
            .items;
    } else {
        for name in names {
            match api.get(name).await {
                Ok(s) => services.push(s),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    ensure_namespace(kube, namespace).await?;
                    return Err(PluginError::NotFound {
                        kind: "service".into(),
                        name: name.clone(),
                        namespace: namespace.into(),
                    });
                }
                Err(e) => {
                    return Err(kube.err(e, &ApiOp::new("get", "services", namespace).named(name)));
                }
            }
        }
    }
    if services.is_empty() {
        ensure_namespace(kube, namespace).await?;
        return Err(PluginError::NoServices {
            namespace: namespace.into(),
        });
    }
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: bool, containers: &[&str], ann: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "ns",
                "annotations": ann.map(|a| serde_json::json!({DEFAULT_CONTAINER_ANNOTATION: a})),
            },
            "spec": {"containers": containers.iter().map(|c| serde_json::json!({"name": c})).collect::<Vec<_>>()},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn running_ready_pods_first_then_by_name() {
        let mut pods = vec![
            pod("a", "Pending", false, &["c"], None),
            pod("d", "Running", false, &["c"], None),
            pod("c", "Running", true, &["c"], None),
            pod("b", "Running", true, &["c"], None),
        ];
        sort_pods(&mut pods);
        let names: Vec<_> = pods.iter().map(pod_name).collect();
        assert_eq!(names, ["b", "c", "d", "a"]);
    }

    #[test]
    fn default_container_skips_istio() {
        let p = pod(
            "p",
            "Running",
            true,
            &["istio-init", "istio-proxy", "app"],
            None,
        );
        assert_eq!(default_container(&p).as_deref(), Some("app"));
        let p = pod("p", "Running", true, &["app", "other"], Some("other"));
        assert_eq!(default_container(&p).as_deref(), Some("other"));
        // The annotation never selects istio-proxy.
        let p = pod(
            "p",
            "Running",
            true,
            &["istio-proxy", "app"],
            Some("istio-proxy"),
        );
        assert_eq!(default_container(&p).as_deref(), Some("app"));
        let p = pod("p", "Running", true, &["istio-proxy"], None);
        assert!(resolve_container(&p, None).is_err());
    }

    #[test]
    fn unknown_container_lists_the_containers() {
        let p = pod("p", "Running", true, &["istio-proxy", "app"], None);
        let e = resolve_container(&p, Some("nope")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"nope\"") && msg.contains("istio-proxy, app"),
            "{msg}"
        );
        assert_eq!(resolve_container(&p, Some("app")).unwrap(), "app");
    }

    #[test]
    fn sidecar_detection() {
        assert!(has_sidecar(&pod(
            "p",
            "Running",
            true,
            &["app", "istio-proxy"],
            None
        )));
        assert!(!has_sidecar(&pod("p", "Running", true, &["app"], None)));
    }
}
