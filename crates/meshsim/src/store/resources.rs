//! The resource types meshsim serves: group, version, kind, plural and
//! scope. Discovery, routing, tables and scenario loading all read this one
//! registry so a type is added in one place.

/// One served resource type (one group/version/plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served (`pods/exec`, `pods/log`, `*/status`).
    pub subresources: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// The singular name discovery shows: the kind in lower case, as for
    /// every type meshsim serves.
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }

    /// Storage key: versions of one group/plural share storage.
    pub fn key(&self) -> ResKey {
        ResKey {
            group: self.group,
            plural: self.plural,
        }
    }
}

/// `v1` for the core group, else `GROUP/VERSION`.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Storage key of a resource type (group + plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResKey {
    pub group: &'static str,
    pub plural: &'static str,
}

/// A namespaced type.
const fn ns(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        namespaced: true,
        short_names,
        subresources,
    }
}

/// The same type, cluster-scoped.
const fn cluster(def: ResourceDef) -> ResourceDef {
    ResourceDef {
        namespaced: false,
        ..def
    }
}

const STATUS: &[&str] = &["status"];
const SCALE: &[&str] = &["status", "scale"];
const ISTIO: &str = "security.istio.io";
const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// Every served resource type.
#[rustfmt::skip]
pub const RESOURCES: &[ResourceDef] = &[
    cluster(ns("", "v1", "Namespace", "namespaces", &["ns"], &["status", "finalize"])),
    ns("", "v1", "Pod", "pods", &["po"], &["status", "exec", "log", "ephemeralcontainers"]),
    ns("", "v1", "Service", "services", &["svc"], STATUS),
    ns("", "v1", "Endpoints", "endpoints", &["ep"], &[]),
    ns("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", &[], &[]),
    ns("", "v1", "ConfigMap", "configmaps", &["cm"], &[]),
    ns("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], &[]),
    ns("apps", "v1", "Deployment", "deployments", &["deploy"], SCALE),
    ns("apps", "v1", "ReplicaSet", "replicasets", &["rs"], SCALE),
    // Stored and served (kubectl and the plugins' target forms `sts/`, `ds/`
    // resolve them through their selectors); no controller makes their pods.
    ns("apps", "v1", "StatefulSet", "statefulsets", &["sts"], SCALE),
    ns("apps", "v1", "DaemonSet", "daemonsets", &["ds"], STATUS),
    ns("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", &["netpol"], &[]),
    ns(ISTIO, "v1", "AuthorizationPolicy", "authorizationpolicies", &["ap"], STATUS),
    ns(ISTIO, "v1beta1", "AuthorizationPolicy", "authorizationpolicies", &["ap"], STATUS),
    ns(ISTIO, "v1", "PeerAuthentication", "peerauthentications", &["pa"], STATUS),
    ns(ISTIO, "v1beta1", "PeerAuthentication", "peerauthentications", &["pa"], STATUS),
    // Gateway API: a Gateway of class `istio-waypoint` is an ambient-mode
    // waypoint (the controllers make its Deployment, Service and pod).
    ns(GATEWAY_API, "v1", "Gateway", "gateways", &["gtw"], STATUS),
    cluster(ns(GATEWAY_API, "v1", "GatewayClass", "gatewayclasses", &["gc"], STATUS)),
];

/// Groups in discovery order with their versions (preferred first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an `apiVersion` + `kind` pair (as in manifests).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Whether a group/version is served.
pub fn has_group_version(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
}

/// The preferred (first listed) definition for a storage key.
pub fn preferred(key: ResKey) -> &'static ResourceDef {
    RESOURCES
        .iter()
        .find(|r| r.key() == key)
        .unwrap_or(&RESOURCES[0])
}

const fn key(group: &'static str, plural: &'static str) -> ResKey {
    ResKey { group, plural }
}

pub const NAMESPACES: ResKey = key("", "namespaces");
pub const PODS: ResKey = key("", "pods");
pub const SERVICES: ResKey = key("", "services");
pub const ENDPOINTS: ResKey = key("", "endpoints");
pub const ENDPOINTSLICES: ResKey = key("discovery.k8s.io", "endpointslices");
pub const CONFIGMAPS: ResKey = key("", "configmaps");
pub const SERVICEACCOUNTS: ResKey = key("", "serviceaccounts");
pub const DEPLOYMENTS: ResKey = key("apps", "deployments");
pub const DAEMONSETS: ResKey = key("apps", "daemonsets");
pub const REPLICASETS: ResKey = key("apps", "replicasets");
pub const GATEWAYS: ResKey = key(GATEWAY_API, "gateways");
pub const GATEWAYCLASSES: ResKey = key(GATEWAY_API, "gatewayclasses");

/// The GatewayClasses istiod creates at install (`istio`, `istio-waypoint`).
pub fn default_gateway_classes() -> Vec<serde_json::Value> {
    let class = |name: &str, controller: &str, description: &str| {
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"controllerName": controller, "description": description},
            "status": {"conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted",
                "message": "Handled by Istio controller", "lastTransitionTime": super::now_ts(),
                "observedGeneration": 1,
            }]},
        })
    };
    vec![
        class(
            "istio",
            "istio.io/gateway-controller",
            "The default Istio GatewayClass",
        ),
        class(
            meshpolicy::ambient::WAYPOINT_CLASS,
            "istio.io/mesh-controller",
            "The default Istio waypoint GatewayClass",
        ),
    ]
}
