//! From a request in a container to the facts that decide it.
//!
//! A request names a host; the cluster's DNS and kube-proxy turn that into a
//! pod and a port. This module does that against the object store: service
//! names in every form the pod's resolv.conf search path accepts (`svc`,
//! `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`), service cluster IPs,
//! pod IPs and `localhost`; then it picks the endpoint (the first Ready pod
//! by name, so runs are repeatable) and maps the service port to the
//! container port. It also copies out what the decision needs (the two
//! pods, their namespaces, the NetworkPolicies of both namespaces and the
//! destination's ConfigMaps), so the store lock is held only here.

use std::net::IpAddr;
use std::sync::Weak;

use serde_json::Value;

use crate::shared::Shared;
use crate::store::resources::{self, ResKey};
use crate::store::{Store, labels_of};
use meshpolicy::Selector;
use meshpolicy::workload::DEFAULT_ROOT_NAMESPACE as ROOT_NAMESPACE;

/// NetworkPolicies in the store.
pub const NETWORKPOLICIES: ResKey = ResKey {
    group: "networking.k8s.io",
    plural: "networkpolicies",
};
/// Istio AuthorizationPolicies in the store (v1 and v1beta1 share it).
pub const AUTHORIZATIONPOLICIES: ResKey = ResKey {
    group: "security.istio.io",
    plural: "authorizationpolicies",
};
/// Istio PeerAuthentications in the store.
pub const PEERAUTHENTICATIONS: ResKey = ResKey {
    group: "security.istio.io",
    plural: "peerauthentications",
};

/// The cluster's DNS domain (meshsim serves `cluster.local` only).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The Kubernetes Service a request went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    /// Cluster IP (None for headless services).
    pub cluster_ip: Option<String>,
    /// The service port the client used.
    pub port: u16,
    /// The protocol Istio gives that port (meshpolicy's protocol selection):
    /// whether the source sidecar relays it with HTTP or `tcp_proxy`.
    pub protocol: meshpolicy::protocol::PortProtocol,
}

impl ServiceRef {
    /// `name.namespace.svc.cluster.local`.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.{CLUSTER_DOMAIN}", self.name, self.namespace)
    }

    /// The source sidecar's outbound cluster for this port (Istio's name,
    /// from meshpolicy).
    pub fn outbound_cluster(&self) -> String {
        meshpolicy::envoy::stats::outbound_cluster_name(
            &self.name,
            &self.namespace,
            CLUSTER_DOMAIN,
            self.port,
        )
    }
}

/// Where a request goes, after DNS and kube-proxy.
#[derive(Debug, Clone)]
pub enum Route {
    /// The name does not resolve.
    Unresolved,
    /// `localhost` / `127.0.0.1`: the source pod itself, bypassing every policy.
    Loopback { port: u16 },
    /// A service without Ready endpoints.
    NoEndpoints { service: ServiceRef },
    /// An address nothing answers for (a service port the service does not
    /// declare, an IP outside the cluster): packets are dropped.
    Blackhole { address: String },
    /// A pod, on a container port.
    Endpoint {
        service: Option<ServiceRef>,
        pod: Value,
        port: u16,
    },
}

/// Everything the decision needs, copied out of the store.
#[derive(Debug, Clone)]
pub struct Facts {
    pub source: Value,
    pub route: Route,
    /// The address the host resolved to (for curl's `Trying` line).
    pub resolved_ip: Option<String>,
    /// Namespace objects of the source and destination.
    pub namespaces: Vec<Value>,
    /// NetworkPolicies of the source's and destination's namespaces.
    pub network_policies: Vec<Value>,
    /// ConfigMaps of the destination's namespace that its volumes name.
    pub configmaps: Vec<Value>,
    /// Whether the mesh config leaves access logging on.
    pub access_log: bool,
    /// The ztunnel pod (namespace, name) on the destination's node, when
    /// ambient mode runs one (`app=ztunnel` in the root namespace).
    pub ztunnel: Option<(String, String)>,
    /// The waypoint bound to the destination for this traffic
    /// (meshpolicy::ambient::resolve_waypoint), when one is.
    pub waypoint: Option<WaypointFacts>,
}

/// A destination's waypoint, as the store shows it.
#[derive(Debug, Clone)]
pub struct WaypointFacts {
    pub waypoint: meshpolicy::ambient::Waypoint,
    /// Its ServiceAccount (the identity the destination's ztunnel sees).
    pub service_account: String,
    /// Its first Ready pod by name (None: no waypoint pod is ready).
    pub pod: Option<Value>,
}

/// Whether `p` is a ztunnel pod (meshpolicy's ztunnel selector, in the root
/// namespace): its container is named `istio-proxy` as in Istio's chart, yet
/// it is no sidecar.
pub fn is_ztunnel(p: &Value) -> bool {
    let selector = Selector::parse(meshpolicy::ambient::ZTUNNEL_SELECTOR);
    p["metadata"]["namespace"] == ROOT_NAMESPACE
        && selector.is_ok_and(|s| s.matches_json(labels(p)))
}

/// The Running ztunnel pod on `node` (the first by name).
fn ztunnel_on(store: &Store, node: &str) -> Option<(String, String)> {
    let mut found: Vec<&Value> = store
        .list(resources::PODS, Some(ROOT_NAMESPACE))
        .filter(|p| is_ztunnel(p) && pod_running(p) && p["spec"]["nodeName"] == node)
        .collect();
    found.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or(""));
    found.first().map(|p| {
        (
            ROOT_NAMESPACE.to_string(),
            p["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    })
}

fn labels(v: &Value) -> Option<&Value> {
    v["metadata"].get("labels")
}

pub(crate) fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn pod_running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
}

/// Ready pods selected by a service, sorted by name.
fn endpoints<'a>(store: &'a Store, svc: &Value) -> Vec<&'a Value> {
    let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
    let Some(sel) = svc["spec"]["selector"]
        .as_object()
        .filter(|m| !m.is_empty())
    else {
        return Vec::new();
    };
    let Ok(selector) = Selector::from_json_labels(sel) else {
        return Vec::new();
    };
    let mut pods: Vec<&Value> = store
        .list(resources::PODS, Some(ns))
        .filter(|p| {
            selector.matches_json(labels(p)) && pod_ready(p) && p["status"]["podIP"].is_string()
        })
        .collect();
    pods.sort_by_key(|p| p["metadata"]["name"].as_str());
    pods
}

/// The container port a service port targets on `pod`.
fn target_port(svc_port: &Value, pod: &Value) -> Option<u16> {
    match &svc_port["targetPort"] {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => match s.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"].as_str() == Some(s.as_str()))
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok()),
        },
        _ => svc_port["port"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok()),
    }
}

fn via_service(store: &Store, svc: &Value, port: u16) -> Route {
    let declared = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)));
    let sref = ServiceRef {
        protocol: meshpolicy::protocol::PortProtocol::of_service_port(
            declared.and_then(|p| p["name"].as_str()),
            declared.and_then(|p| p["appProtocol"].as_str()),
        ),
        namespace: svc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        name: svc["metadata"]["name"].as_str().unwrap_or("").to_string(),
        cluster_ip: svc["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| *ip != "None" && !ip.is_empty())
            .map(str::to_string),
        port,
    };
    let eps = endpoints(store, svc);
    if sref.cluster_ip.is_none() {
        // Headless: DNS answers pod IPs; the client connects to the pod directly.
        return match eps.first() {
            Some(p) => Route::Endpoint {
                service: Some(sref),
                pod: (*p).clone(),
                port,
            },
            None => Route::Unresolved,
        };
    }
    let Some(sp) = declared else {
        return Route::Blackhole {
            address: format!("{}:{port}", sref.cluster_ip.clone().unwrap_or_default()),
        };
    };
    let Some(pod) = eps.first() else {
        return Route::NoEndpoints { service: sref };
    };
    match target_port(sp, pod) {
        Some(tp) => Route::Endpoint {
            service: Some(sref),
            pod: (*pod).clone(),
            port: tp,
        },
        None => Route::NoEndpoints { service: sref },
    }
}

/// Resolves `host` as seen from a pod in `namespace`: (route, resolved IP).
pub fn resolve(store: &Store, namespace: &str, host: &str, port: u16) -> (Route, Option<String>) {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" || host == "::1" || host.starts_with("127.") {
        let ip = if host == "::1" { "::1" } else { "127.0.0.1" };
        return (Route::Loopback { port }, Some(ip.to_string()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        let ip_s = ip.to_string();
        if let Some(svc) = store
            .list(resources::SERVICES, None)
            .find(|s| s["spec"]["clusterIP"].as_str() == Some(ip_s.as_str()))
        {
            return (via_service(store, svc, port), Some(ip_s));
        }
        if let Some(pod) = store
            .list(resources::PODS, None)
            .find(|p| p["status"]["podIP"].as_str() == Some(ip_s.as_str()) && pod_running(p))
        {
            return (
                Route::Endpoint {
                    service: None,
                    pod: pod.clone(),
                    port,
                },
                Some(ip_s),
            );
        }
        return (
            Route::Blackhole {
                address: format!("{ip_s}:{port}"),
            },
            Some(ip_s),
        );
    }
    let parts: Vec<&str> = host.split('.').collect();
    let (svc, ns) = match parts.as_slice() {
        [svc] => (*svc, namespace),
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => (*svc, *ns),
        _ => return (Route::Unresolved, None),
    };
    match store.get(resources::SERVICES, ns, svc) {
        Some(s) => {
            let route = via_service(store, s, port);
            let ip = match &route {
                Route::Endpoint {
                    service: Some(r),
                    pod,
                    ..
                } if r.cluster_ip.is_none() => pod["status"]["podIP"].as_str().map(str::to_string),
                Route::Unresolved => None,
                _ => s["spec"]["clusterIP"].as_str().map(str::to_string),
            };
            (route, ip)
        }
        None => (Route::Unresolved, None),
    }
}

/// The pod (and its container port) a request to `host:port` reaches,
/// routed as any request is.
pub fn pod_behind(app: &Weak<Shared>, host: &str, port: u16) -> Option<(Value, u16)> {
    let app = app.upgrade()?;
    let store = crate::mesh::sidecar::lock(&app.store);
    match resolve(&store, "", host, port).0 {
        Route::Endpoint { pod, port, .. } => Some((pod, port)),
        _ => None,
    }
}

/// Whether access logging is on (the scenario switch). Default on, as with
/// Istio's demo profile; off when the mesh config (ConfigMap `istio` in
/// `istio-system`, key `mesh`) sets `accessLogFile: ""`, or when that
/// ConfigMap carries the annotation `meshsim.dev/access-log: "off"`.
pub(crate) fn access_log_enabled(store: &Store) -> bool {
    let Some(cm) = store.get(resources::CONFIGMAPS, "istio-system", "istio") else {
        return true;
    };
    if cm["metadata"]["annotations"]["meshsim.dev/access-log"].as_str() == Some("off") {
        return false;
    }
    let Some(mesh) = cm["data"]["mesh"].as_str() else {
        return true;
    };
    match serde_yaml_ng::from_str::<Value>(mesh) {
        Ok(v) => match v.get("accessLogFile") {
            Some(Value::String(f)) => !f.is_empty(),
            Some(Value::Null) => false,
            _ => true,
        },
        Err(_) => true,
    }
}

/// Gathers the facts for a request from pod `namespace/pod` to `host:port`.
/// None when the source pod no longer exists.
pub fn gather(store: &Store, namespace: &str, pod: &str, host: &str, port: u16) -> Option<Facts> {
    let source = store.get(resources::PODS, namespace, pod)?.clone();
    let (route, resolved_ip) = resolve(store, namespace, host, port);
    let mut ns_names = vec![namespace.to_string()];
    let answering = match &route {
        Route::Endpoint { pod: dst, .. } => Some(dst),
        Route::Loopback { .. } => Some(&source),
        _ => None,
    };
    let mut configmaps = Vec::new();
    if let Some(dst) = answering {
        let dns = dst["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        for v in dst["spec"]["volumes"].as_array().into_iter().flatten() {
            if let Some(name) = v["configMap"]["name"].as_str()
                && let Some(cm) = store.get(resources::CONFIGMAPS, &dns, name)
            {
                configmaps.push(cm.clone());
            }
        }
        if dns != namespace {
            ns_names.push(dns);
        }
    }
    let namespaces = ns_names
        .iter()
        .filter_map(|n| store.get(resources::NAMESPACES, "", n).cloned())
        .collect();
    let network_policies = ns_names
        .iter()
        .flat_map(|n| store.list(NETWORKPOLICIES, Some(n)).cloned())
        .collect();
    let (ztunnel, waypoint) = match &route {
        Route::Endpoint { service, pod, .. } => (
            ztunnel_on(store, pod["spec"]["nodeName"].as_str().unwrap_or("")),
            waypoint_of(store, service.as_ref(), pod),
        ),
        _ => (None, None),
    };
    Some(Facts {
        ztunnel,
        waypoint,
        source,
        route,
        resolved_ip,
        namespaces,
        network_policies,
        configmaps,
        access_log: access_log_enabled(store),
    })
}

/// The waypoint traffic to `dst` (through `service`, or to the pod's IP)
/// is bound to, by meshpolicy::ambient's rules, with its pod.
fn waypoint_of(store: &Store, service: Option<&ServiceRef>, dst: &Value) -> Option<WaypointFacts> {
    use meshpolicy::ambient::{
        Addressed, Binder, WaypointUse, resolve_waypoint, waypoint_of_gateway,
    };
    let gateways: Vec<&Value> = store
        .list(resources::GATEWAYS, None)
        .filter(|g| waypoint_of_gateway(g).is_some())
        .collect();
    if gateways.is_empty() {
        return None;
    }
    let dns = dst["metadata"]["namespace"].as_str().unwrap_or("");
    let ns_labels = store
        .get(resources::NAMESPACES, "", dns)
        .map(labels_of)
        .unwrap_or_default();
    let svc = service.and_then(|s| store.get(resources::SERVICES, &s.namespace, &s.name));
    let svc_labels = svc.map(labels_of).unwrap_or_default();
    let pod_labels = labels_of(dst);
    let addressed = if service.is_some_and(|s| s.cluster_ip.is_some()) {
        Addressed::Service
    } else {
        Addressed::Workload
    };
    let svc_ns = service.map_or(dns, |s| s.namespace.as_str());
    let waypoints: Vec<_> = gateways
        .iter()
        .filter_map(|g| waypoint_of_gateway(g))
        .collect();
    let used = resolve_waypoint(
        Binder {
            kind: "namespace",
            namespace: dns,
            labels: &ns_labels,
        },
        svc.map(|_| Binder {
            kind: "service",
            namespace: svc_ns,
            labels: &svc_labels,
        }),
        Some(Binder {
            kind: "pod",
            namespace: dns,
            labels: &pod_labels,
        }),
        addressed,
        &waypoints,
    );
    let WaypointUse::Uses { waypoint, .. } = used else {
        return None;
    };
    let gateway = gateways.iter().find(|g| {
        g["metadata"]["namespace"].as_str() == Some(waypoint.namespace.as_str())
            && g["metadata"]["name"].as_str() == Some(waypoint.name.as_str())
    })?;
    let mut pods: Vec<&Value> = store
        .list(resources::PODS, Some(&waypoint.namespace))
        .filter(|p| {
            crate::store::controllers::is_waypoint_pod(p)
                && p["metadata"]["labels"][meshpolicy::ambient::GATEWAY_NAME_LABEL]
                    == waypoint.name.as_str()
                && pod_ready(p)
                && p["status"]["podIP"].is_string()
        })
        .collect();
    pods.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or(""));
    Some(WaypointFacts {
        service_account: meshpolicy::ambient::waypoint_service_account(gateway),
        pod: pods.first().map(|p| (*p).clone()),
        waypoint,
    })
}
