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
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served (`pods/exec`, `pods/log`, `*/status`).
    pub subresources: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key: versions of one group/plural share storage.
    pub fn key(&self) -> ResKey {
        ResKey {
            group: self.group,
            plural: self.plural,
        }
    }
}

/// Storage key of a resource type (group + plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResKey {
    pub group: &'static str,
    pub plural: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        subresources,
    }
}

/// Every served resource type.
pub const RESOURCES: &[ResourceDef] = &[
    def(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &["status", "finalize"],
    ),
    def(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["status", "exec", "log", "ephemeralcontainers"],
    ),
    def(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["status"],
    ),
    def(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
    ),
    def(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        &[],
    ),
    def(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
    ),
    def(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
    ),
    def(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["status", "scale"],
    ),
    def(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["status", "scale"],
    ),
    // Stored and served (kubectl and the plugins' target forms `sts/`, `ds/`
    // resolve them through their selectors); no controller makes their pods.
    def(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        &["status", "scale"],
    ),
    def(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        &["status"],
    ),
    def(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        &[],
    ),
    def(
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        "authorizationpolicy",
        true,
        &["ap"],
        &["status"],
    ),
    def(
        "security.istio.io",
        "v1beta1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        "authorizationpolicy",
        true,
        &["ap"],
        &["status"],
    ),
    def(
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        "peerauthentication",
        true,
        &["pa"],
        &["status"],
    ),
    def(
        "security.istio.io",
        "v1beta1",
        "PeerAuthentication",
        "peerauthentications",
        "peerauthentication",
        true,
        &["pa"],
        &["status"],
    ),
    // Gateway API: a Gateway of class `istio-waypoint` is an ambient-mode
    // waypoint (the controllers make its Deployment, Service and pod).
    def(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        "gateway",
        true,
        &["gtw"],
        &["status"],
    ),
    def(
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
        "gatewayclasses",
        "gatewayclass",
        false,
        &["gc"],
        &["status"],
    ),
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

pub const NAMESPACES: ResKey = ResKey {
    group: "",
    plural: "namespaces",
};
pub const PODS: ResKey = ResKey {
    group: "",
    plural: "pods",
};
pub const SERVICES: ResKey = ResKey {
    group: "",
    plural: "services",
};
pub const ENDPOINTS: ResKey = ResKey {
    group: "",
    plural: "endpoints",
};
pub const ENDPOINTSLICES: ResKey = ResKey {
    group: "discovery.k8s.io",
    plural: "endpointslices",
};
pub const CONFIGMAPS: ResKey = ResKey {
    group: "",
    plural: "configmaps",
};
pub const SERVICEACCOUNTS: ResKey = ResKey {
    group: "",
    plural: "serviceaccounts",
};
pub const DEPLOYMENTS: ResKey = ResKey {
    group: "apps",
    plural: "deployments",
};
pub const DAEMONSETS: ResKey = ResKey {
    group: "apps",
    plural: "daemonsets",
};
pub const REPLICASETS: ResKey = ResKey {
    group: "apps",
    plural: "replicasets",
};
pub const GATEWAYS: ResKey = ResKey {
    group: "gateway.networking.k8s.io",
    plural: "gateways",
};
pub const GATEWAYCLASSES: ResKey = ResKey {
    group: "gateway.networking.k8s.io",
    plural: "gatewayclasses",
};

/// The GatewayClasses istiod creates at install (`istio`, `istio-waypoint`).
pub fn default_gateway_classes() -> Vec<serde_json::Value> {
    let class = |name: &str, controller: &str, description: &str| {
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"controllerName": controller, "description": description},
            "status": {"conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted",
                "message": "Handled by Istio controller", "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
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
