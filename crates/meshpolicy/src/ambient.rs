//! Istio ambient mode: who enforces which AuthorizationPolicy, and ztunnel's decision.
//!
//! In ambient mode a pod has no sidecar: the node's ztunnel enforces L4
//! policy for it and, when the destination uses a waypoint (an Envoy attached
//! through a Gateway API `Gateway` of class `istio-waypoint`), that waypoint
//! enforces L7 policy. The rules the plugins and meshsim must agree on live
//! here, as pure functions over labels, Gateways and policies:
//! - the dataplane mode of a pod ([`dataplane_mode`]: `istio.io/dataplane-mode`
//!   on the namespace or the pod, `none` opting a pod out, a sidecar winning);
//! - the waypoint a Service or pod uses ([`resolve_waypoint`]: `istio.io/use-waypoint`
//!   on the pod or Service over the namespace, `istio.io/use-waypoint-namespace`,
//!   the Gateway's `istio.io/waypoint-for`);
//! - where a policy is attached ([`attachment`]: `targetRefs` to a Gateway,
//!   GatewayClass or Service go to waypoints; `selector` or nothing go to ztunnel;
//!   the root namespace reaches every namespace);
//! - what ztunnel does with a policy bound to it ([`ztunnel_view`]), as istiod
//!   translates it: ztunnel knows no HTTP, so an ALLOW rule naming an HTTP
//!   attribute (`hosts`, `methods`, `paths`, their `not` forms,
//!   `requestPrincipals`, `remoteIpBlocks`, a `when` key other than
//!   `source.ip`, `source.namespace`, `source.principal`, `destination.ip`,
//!   `destination.port`) is omitted (never matches), and a DENY rule is kept
//!   without its HTTP attributes (matches more): both more restrictive than
//!   written; CUSTOM and AUDIT policies are not supported by ztunnel and ignored;
//! - ztunnel's decision ([`ztunnel_decide`]), with the reason ztunnel prints
//!   (`explicitly denied by: NS/NAME`, `allow policies exist, but none allowed`);
//! - the path through a waypoint ([`waypoint_in_path`], [`waypoint_policies`],
//!   [`waypoint_service_account`]): which policies its Envoy enforces, and
//!   whose identity the destination's ztunnel then sees;
//! - PeerAuthentication as ztunnel enforces it ([`ztunnel_peer_authentication`]):
//!   STRICT rejects plain text, DISABLE is ignored.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::authz::{
    Action, AuthorizationPolicy, AuthzRequest, CompiledAuthz, Decision, EvalOptions, Rule,
    evaluate_policies_with,
};
use crate::envoy::policy_id::PolicyId;
use crate::envoy::ztunnel::ZtunnelReason;
use crate::netpol::PolicyRef;
use crate::peerauth::{EffectiveMtls, MtlsMode, PeerAuthentication, Scope as PeerAuthScope};
use crate::workload::Pod;

/// Label enrolling a namespace or pod (`ambient`, or `none` to opt a pod out).
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// Label binding a namespace, Service or pod to a waypoint (`none` opts out).
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// Namespace of the waypoint named by `istio.io/use-waypoint` (default: the labelled object's).
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";
/// Label on a waypoint Gateway: which traffic it handles.
pub const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";
/// The GatewayClass of waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// The Gateway API label naming a gateway pod's Gateway.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The Gateway API label naming a gateway pod's class.
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// Istio's label on what its controllers deploy for a Gateway.
pub const GATEWAY_MANAGED_LABEL: &str = "gateway.istio.io/managed";
/// Its value on waypoints (the `istio.io/mesh-controller` controller's).
pub const WAYPOINT_MANAGED_VALUE: &str = "istio.io-mesh-controller";

/// Whether a pod (its labels) is a waypoint's, as istiod deploys it:
/// `gateway.istio.io/managed=istio.io-mesh-controller` and a Gateway name.
pub fn is_waypoint_pod(pod_labels: &BTreeMap<String, String>) -> bool {
    pod_labels.get(GATEWAY_MANAGED_LABEL).map(String::as_str) == Some(WAYPOINT_MANAGED_VALUE)
        && pod_labels.contains_key(GATEWAY_NAME_LABEL)
}
/// ztunnel's label (its DaemonSet's pods in the root namespace).
pub const ZTUNNEL_SELECTOR: &str = "app=ztunnel";
/// The phrase ztunnel's access log line carries when a policy closed the connection.
pub const POLICY_REJECTION: &str = "connection closed due to policy rejection";

/// How a pod's traffic is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataplaneMode {
    /// An Envoy sidecar (injected): the sidecar enforces everything.
    Sidecar,
    /// Ambient: ztunnel (L4) and possibly a waypoint (L7).
    Ambient,
    /// Not in the mesh.
    None,
}

/// The dataplane mode of a pod: a sidecar wins (Istio does not capture a
/// pod with a sidecar in ambient); then the pod's `istio.io/dataplane-mode`
/// (`none` opts out, `ambient` enrols), then the namespace's.
pub fn dataplane_mode(
    pod_labels: &BTreeMap<String, String>,
    has_sidecar: bool,
    namespace_labels: &BTreeMap<String, String>,
) -> DataplaneMode {
    if has_sidecar {
        return DataplaneMode::Sidecar;
    }
    match pod_labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) {
        Some("none") => return DataplaneMode::None,
        Some("ambient") => return DataplaneMode::Ambient,
        _ => {}
    }
    if namespace_labels
        .get(DATAPLANE_MODE_LABEL)
        .map(String::as_str)
        == Some("ambient")
    {
        DataplaneMode::Ambient
    } else {
        DataplaneMode::None
    }
}

/// Which traffic a waypoint handles (`istio.io/waypoint-for`, default `service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaypointFor {
    Service,
    Workload,
    All,
    None,
}

impl WaypointFor {
    fn parse(v: Option<&str>) -> Self {
        match v {
            Some("workload") => Self::Workload,
            Some("all") => Self::All,
            Some("none") => Self::None,
            _ => Self::Service,
        }
    }

    fn serves(self, addressed: Addressed) -> bool {
        matches!(
            (self, addressed),
            (Self::All, _)
                | (Self::Service, Addressed::Service)
                | (Self::Workload, Addressed::Workload)
        )
    }
}

/// A waypoint: a Gateway of class `istio-waypoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waypoint {
    pub namespace: String,
    pub name: String,
    pub waypoint_for: WaypointFor,
}

/// The waypoint a `gateway.networking.k8s.io` Gateway object is, when its class is `istio-waypoint`.
pub fn waypoint_of_gateway(gateway: &serde_json::Value) -> Option<Waypoint> {
    if gateway["spec"]["gatewayClassName"].as_str() != Some(WAYPOINT_CLASS) {
        return None;
    }
    Some(Waypoint {
        namespace: gateway["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        name: gateway["metadata"]["name"].as_str()?.to_string(),
        waypoint_for: WaypointFor::parse(
            gateway["metadata"]["labels"][WAYPOINT_FOR_LABEL].as_str(),
        ),
    })
}

/// How the client addressed the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressed {
    /// Through a Service (its name or cluster IP).
    Service,
    /// The pod's own IP.
    Workload,
}

/// The waypoint in a destination's path, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WaypointUse {
    /// Nothing names a waypoint (or `istio.io/use-waypoint: none`).
    None,
    /// Traffic goes through this waypoint.
    Uses {
        waypoint: Waypoint,
        /// Which object's label bound it (`namespace`, `service` or `pod`).
        bound_by: String,
    },
    /// A label names a waypoint that does not exist (or is not of class `istio-waypoint`):
    /// istiod marks the Service so; no waypoint is used.
    Missing {
        namespace: String,
        name: String,
        bound_by: String,
    },
    /// The waypoint exists but its `istio.io/waypoint-for` excludes this traffic.
    NotFor {
        waypoint: Waypoint,
        bound_by: String,
    },
}

/// The labels of one object that may bind a waypoint, with the object's namespace.
#[derive(Debug, Clone, Copy)]
pub struct Binder<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The waypoint for traffic to a destination: the most specific binding
/// label wins (the pod's for workload-addressed traffic, the Service's for
/// service-addressed traffic, then the namespace's); `none` opts out.
pub fn resolve_waypoint(
    namespace: Binder<'_>,
    service: Option<Binder<'_>>,
    pod: Option<Binder<'_>>,
    addressed: Addressed,
    waypoints: &[Waypoint],
) -> WaypointUse {
    let specific = match addressed {
        Addressed::Service => service,
        Addressed::Workload => pod,
    };
    let binder = [specific, Some(namespace)]
        .into_iter()
        .flatten()
        .find(|b| b.labels.contains_key(USE_WAYPOINT_LABEL));
    let Some(b) = binder else {
        return WaypointUse::None;
    };
    let name = &b.labels[USE_WAYPOINT_LABEL];
    if name == "none" || name.is_empty() {
        return WaypointUse::None;
    }
    let ns = b
        .labels
        .get(USE_WAYPOINT_NAMESPACE_LABEL)
        .map_or(b.namespace, String::as_str);
    let bound_by = b.kind.to_string();
    match waypoints
        .iter()
        .find(|w| w.namespace == ns && &w.name == name)
    {
        None => WaypointUse::Missing {
            namespace: ns.to_string(),
            name: name.clone(),
            bound_by,
        },
        Some(w) if !w.waypoint_for.serves(addressed) => WaypointUse::NotFor {
            waypoint: w.clone(),
            bound_by,
        },
        Some(w) => WaypointUse::Uses {
            waypoint: w.clone(),
            bound_by,
        },
    }
}

/// One `targetRefs` entry (or the older `targetRef`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// Where an AuthorizationPolicy is enforced in ambient mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Attachment {
    /// `selector` or no target: ztunnel of the selected (or every) workload
    /// of the namespace, every namespace from the root namespace.
    Ztunnel,
    /// `targetRefs`: the waypoints these name (Gateway, GatewayClass, or the waypoint a Service uses).
    Waypoint { targets: Vec<TargetRef> },
}

/// The policy's `targetRefs` (and `targetRef`).
pub fn target_refs(ap: &AuthorizationPolicy) -> Vec<TargetRef> {
    ap.spec
        .target_ref
        .iter()
        .chain(ap.spec.target_refs.iter())
        .map(|t| TargetRef {
            group: t["group"].as_str().unwrap_or("").to_string(),
            kind: t["kind"].as_str().unwrap_or("").to_string(),
            name: t["name"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// Where `ap` is enforced in ambient mode.
pub fn attachment(ap: &AuthorizationPolicy) -> Attachment {
    let targets = target_refs(ap);
    if targets.is_empty() {
        Attachment::Ztunnel
    } else {
        Attachment::Waypoint { targets }
    }
}

/// Whether policy `ap` (with `targetRefs`) applies at `waypoint` for traffic
/// to `service` (`namespace`, `name`) when that traffic goes through it.
pub fn waypoint_applies(
    ap: &AuthorizationPolicy,
    waypoint: &Waypoint,
    service: Option<(&str, &str)>,
    root_namespace: &str,
) -> bool {
    let ns = ap.metadata.namespace.as_deref().unwrap_or("default");
    target_refs(ap).iter().any(|t| match t.kind.as_str() {
        "Gateway" => ns == waypoint.namespace && t.name == waypoint.name,
        "GatewayClass" => ns == root_namespace && t.name == WAYPOINT_CLASS,
        "Service" => service.is_some_and(|(sns, sname)| ns == sns && t.name == sname),
        _ => false,
    })
}

/// What ztunnel does with one HTTP attribute it found in a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L7Omission {
    pub policy: PolicyRef,
    /// Index of the rule.
    pub rule: usize,
    /// The HTTP attributes found (`methods`, `paths`, `request.headers[x]`...).
    pub attributes: Vec<String>,
    /// `omitted` (ALLOW: the rule never matches) or `stripped` (DENY: the
    /// rule matches without them).
    pub effect: String,
}

/// A policy as ztunnel enforces it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZtunnelPolicy {
    /// The policy with ztunnel's view of its rules.
    pub l4: AuthorizationPolicy,
    /// What was dropped from it.
    pub omissions: Vec<L7Omission>,
}

const L4_WHEN_KEYS: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

fn http_attributes(rule: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |present: bool, name: &str| {
        if present && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    };
    for t in &rule.to {
        if let Some(o) = &t.operation {
            add(!o.hosts.is_empty(), "hosts");
            add(!o.not_hosts.is_empty(), "notHosts");
            add(!o.methods.is_empty(), "methods");
            add(!o.not_methods.is_empty(), "notMethods");
            add(!o.paths.is_empty(), "paths");
            add(!o.not_paths.is_empty(), "notPaths");
        }
    }
    for f in &rule.from {
        if let Some(s) = &f.source {
            add(!s.remote_ip_blocks.is_empty(), "remoteIpBlocks");
            add(!s.not_remote_ip_blocks.is_empty(), "notRemoteIpBlocks");
            add(!s.request_principals.is_empty(), "requestPrincipals");
            add(!s.not_request_principals.is_empty(), "notRequestPrincipals");
        }
    }
    for w in &rule.when {
        add(!L4_WHEN_KEYS.contains(&w.key.as_str()), &w.key);
    }
    out
}

fn strip_http(rule: &Rule) -> Rule {
    let mut r = rule.clone();
    for t in &mut r.to {
        if let Some(o) = &mut t.operation {
            o.hosts.clear();
            o.not_hosts.clear();
            o.methods.clear();
            o.not_methods.clear();
            o.paths.clear();
            o.not_paths.clear();
        }
    }
    for f in &mut r.from {
        if let Some(s) = &mut f.source {
            s.remote_ip_blocks.clear();
            s.not_remote_ip_blocks.clear();
            s.request_principals.clear();
            s.not_request_principals.clear();
        }
    }
    r.when.retain(|w| L4_WHEN_KEYS.contains(&w.key.as_str()));
    // An entry left without any field matches every connection (istiod sends
    // ztunnel an empty match), so the list it is in (OR) matches everything.
    if r.to.iter().any(|t| {
        t.operation
            .as_ref()
            .is_none_or(|o| *o == Default::default())
    }) {
        r.to.clear();
    }
    if r.from
        .iter()
        .any(|f| f.source.as_ref().is_none_or(|s| *s == Default::default()))
    {
        r.from.clear();
    }
    r
}

/// The policy as ztunnel enforces it, or None when ztunnel does not enforce
/// it at all (`targetRefs`: waypoints; CUSTOM and AUDIT: not supported by ztunnel).
pub fn ztunnel_view(ap: &AuthorizationPolicy) -> Option<ZtunnelPolicy> {
    if matches!(attachment(ap), Attachment::Waypoint { .. }) {
        return None;
    }
    let action = ap.action();
    if !matches!(action, Action::Allow | Action::Deny) {
        return None;
    }
    let policy = PolicyRef {
        namespace: ap
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: ap.metadata.name.clone().unwrap_or_default(),
    };
    let mut l4 = ap.clone();
    let mut omissions = Vec::new();
    let mut rules = Vec::new();
    for (i, rule) in ap.spec.rules.iter().enumerate() {
        let attrs = http_attributes(rule);
        if attrs.is_empty() {
            rules.push(rule.clone());
            continue;
        }
        let allow = action == Action::Allow;
        omissions.push(L7Omission {
            policy: policy.clone(),
            rule: i,
            attributes: attrs,
            effect: if allow { "omitted" } else { "stripped" }.into(),
        });
        if !allow {
            rules.push(strip_http(rule));
        }
    }
    // An ALLOW policy whose every rule was omitted keeps no rule: it allows
    // nothing (ztunnel: "allow policies exist, but none allowed"). A rule that
    // was omitted must not turn `rules: [x]` into "no rules" silently for
    // DENY: DENY keeps every rule.
    l4.spec.rules = rules;
    Some(ZtunnelPolicy { l4, omissions })
}

/// The policies ztunnel enforces for `pod` (its namespace's and the root
/// namespace's, selector matching), in ztunnel's view.
pub fn ztunnel_policies(
    policies: &[AuthorizationPolicy],
    pod: &Pod,
    root_namespace: &str,
) -> Vec<ZtunnelPolicy> {
    let mut out: Vec<ZtunnelPolicy> = policies
        .iter()
        .filter(|ap| !ap.is_dry_run())
        .filter(|ap| CompiledAuthz::compile(ap).is_ok_and(|c| c.applies_to(pod, root_namespace)))
        .filter_map(ztunnel_view)
        .collect();
    out.sort_by(|a, b| {
        (&a.l4.metadata.namespace, &a.l4.metadata.name)
            .cmp(&(&b.l4.metadata.namespace, &b.l4.metadata.name))
    });
    out
}

/// ztunnel's decision on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZtunnelVerdict {
    pub allowed: bool,
    /// Why ztunnel rejected it (`Unspecified` when allowed).
    pub reason: ZtunnelReason,
    /// The policy that decided (the DENY that matched, or the ALLOW that allowed).
    pub policy: Option<PolicyRef>,
    /// The policies ztunnel enforced for the destination.
    pub applicable: Vec<PolicyRef>,
    /// HTTP attributes ztunnel dropped from those policies.
    pub omissions: Vec<L7Omission>,
    /// One line for people.
    pub explanation: String,
}

impl ZtunnelVerdict {
    /// The `error=` text of ztunnel's access log line for a rejection.
    pub fn rejection_error(&self) -> Option<String> {
        match &self.reason {
            _ if self.allowed => None,
            ZtunnelReason::DeniedBy { policy } => Some(format!(
                "{POLICY_REJECTION}: explicitly denied by: {policy}"
            )),
            ZtunnelReason::NoAllowMatched => Some(format!(
                "{POLICY_REJECTION}: allow policies exist, but none allowed"
            )),
            ZtunnelReason::Unspecified => Some(POLICY_REJECTION.to_string()),
        }
    }
}

fn policy_of(id: &str) -> Option<PolicyRef> {
    let p = PolicyId::parse(id);
    Some(PolicyRef {
        namespace: p.namespace?,
        name: p.name?,
    })
}

/// ztunnel's decision for a connection to `pod` (`req.http` is ignored:
/// ztunnel sees TCP). `req.source_principal` is the peer's identity (None
/// for a client outside the mesh, whose plain text ztunnel accepts unless a
/// policy needs an identity).
pub fn ztunnel_decide(
    policies: &[AuthorizationPolicy],
    pod: &Pod,
    req: &AuthzRequest,
    root_namespace: &str,
) -> ZtunnelVerdict {
    let views = ztunnel_policies(policies, pod, root_namespace);
    let compiled: Vec<CompiledAuthz> = views
        .iter()
        .filter_map(|v| CompiledAuthz::compile(&v.l4).ok())
        .collect();
    let refs: Vec<&CompiledAuthz> = compiled.iter().collect();
    let mut tcp = req.clone();
    tcp.http = None;
    let v = evaluate_policies_with(&refs, &tcp, true, Vec::new(), &EvalOptions::default());
    let applicable: Vec<PolicyRef> = compiled.iter().map(CompiledAuthz::policy_ref).collect();
    let omissions: Vec<L7Omission> = views.into_iter().flat_map(|v| v.omissions).collect();
    let dst = format!("{}/{}", pod.namespace, pod.name);
    let id = v.policy_id.clone().unwrap_or_default();
    let (allowed, reason, policy, explanation) = match v.decision {
        Decision::Deny if id == "none" => (
            false,
            ZtunnelReason::NoAllowMatched,
            None,
            format!(
                "ztunnel denied: ALLOW policies apply to {dst} ({}) and none allowed this connection",
                applicable
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Decision::Deny => {
            let p = policy_of(&id);
            let name = p.as_ref().map_or(id.clone(), ToString::to_string);
            (
                false,
                ZtunnelReason::DeniedBy {
                    policy: name.clone(),
                },
                p,
                format!("ztunnel denied: DENY policy {name} matched ({id})"),
            )
        }
        // ztunnel knows every L4 attribute it enforces; what the model cannot
        // evaluate here was already dropped from the L4 view.
        Decision::Allow | Decision::CannotEvaluate => {
            let p = v.policy_id.as_deref().and_then(policy_of);
            let why = match &p {
                Some(p) => format!("ztunnel allowed: ALLOW policy {p} matched"),
                None if applicable.is_empty() => {
                    format!("ztunnel allowed: no L4 AuthorizationPolicy applies to {dst}")
                }
                None => format!(
                    "ztunnel allowed: no DENY policy matched and no ALLOW policy applies to {dst}"
                ),
            };
            (true, ZtunnelReason::Unspecified, p, why)
        }
    };
    ZtunnelVerdict {
        allowed,
        reason,
        policy,
        applicable,
        omissions,
        explanation,
    }
}

/// The ServiceAccount of a waypoint's pods: istiod's deployment controller
/// names it like the Gateway unless the Gateway's
/// `gateway.istio.io/service-account` annotation names another.
pub fn waypoint_service_account(gateway: &serde_json::Value) -> String {
    gateway["metadata"]["annotations"]["gateway.istio.io/service-account"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| gateway["metadata"]["name"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The waypoint a connection goes through, if any. Only a client in the mesh
/// is sent to a waypoint: its node's ztunnel (or its sidecar) looks the
/// destination up and tunnels to the waypoint; a client outside the mesh
/// connects to the destination directly and only the destination's ztunnel
/// sees it (Istio docs, "Ambient mode > Use Layer 7 features": traffic from
/// outside the mesh does not traverse the waypoint).
pub fn waypoint_in_path(source_in_mesh: bool, used: &WaypointUse) -> Option<&Waypoint> {
    match used {
        WaypointUse::Uses { waypoint, .. } if source_in_mesh => Some(waypoint),
        _ => None,
    }
}

/// The AuthorizationPolicies the Envoy of `waypoint` enforces for traffic to
/// `service` (namespace, name): the ones whose `targetRefs` name its Gateway,
/// the `istio-waypoint` GatewayClass (root namespace only) or that Service
/// ([`waypoint_applies`]), sorted by namespace and name. Selector-bound
/// policies never reach a waypoint (ztunnel enforces them).
pub fn waypoint_policies(
    policies: &[AuthorizationPolicy],
    waypoint: &Waypoint,
    service: Option<(&str, &str)>,
    root_namespace: &str,
) -> Vec<AuthorizationPolicy> {
    let mut out: Vec<AuthorizationPolicy> = policies
        .iter()
        .filter(|ap| waypoint_applies(ap, waypoint, service, root_namespace))
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    out
}

/// The name istiod gives the policy it makes for ztunnel out of a STRICT
/// PeerAuthentication (a DENY of connections without an identity).
pub const STATIC_STRICT_POLICY: &str = "istio_converted_static_strict";

/// What ztunnel does with the PeerAuthentication in force for a destination port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZtunnelPeerAuth {
    /// The mode ztunnel enforces: DISABLE is ignored in ambient mode (treated
    /// as PERMISSIVE: ztunnel always speaks mTLS to mesh peers and still
    /// accepts plain text), STRICT and PERMISSIVE as written.
    pub mode: MtlsMode,
    /// The mode the PeerAuthentications say (before ambient's reading).
    pub written: MtlsMode,
    /// Whether a plain-text connection (a client outside the mesh) is accepted.
    pub accepts_plaintext: bool,
    /// For a rejection: the policy ztunnel names (`NS/NAME`): istiod converts
    /// STRICT into a DENY policy, `ROOT/istio_converted_static_strict` for a
    /// whole workload, `NS/converted_peer_authentication_NAME` for a
    /// port-level setting.
    pub rejected_by: Option<String>,
}

/// PeerAuthentication in ambient mode, as ztunnel enforces it (Istio docs,
/// "Ambient mode > Layer 4 security policy": PeerAuthentication STRICT and
/// PERMISSIVE are enforced by ztunnel; DISABLE is not supported in ambient
/// mode and is ignored).
pub fn ztunnel_peer_authentication(
    effective: &EffectiveMtls,
    root_namespace: &str,
) -> ZtunnelPeerAuth {
    let written = effective.mode;
    let mode = match written {
        MtlsMode::Disable => MtlsMode::Permissive,
        m => m,
    };
    let strict = mode == MtlsMode::Strict;
    let rejected_by = strict.then(|| match &effective.decided_by {
        Some(s) if s.port_level => format!(
            "{}/{CONVERTED_PEER_AUTHENTICATION_PREFIX}{}",
            s.policy.namespace, s.policy.name
        ),
        _ => format!("{root_namespace}/{STATIC_STRICT_POLICY}"),
    });
    ZtunnelPeerAuth {
        mode,
        written,
        accepts_plaintext: !strict,
        rejected_by,
    }
}

impl ZtunnelPeerAuth {
    /// ztunnel's verdict on a plain-text connection this PeerAuthentication
    /// rejects (None when it accepts plain text).
    pub fn plaintext_rejection(&self, pod: &Pod) -> Option<ZtunnelVerdict> {
        let policy = self.rejected_by.clone()?;
        let (namespace, name) = policy.split_once('/').unwrap_or(("", &policy));
        Some(ZtunnelVerdict {
            allowed: false,
            reason: ZtunnelReason::DeniedBy {
                policy: policy.clone(),
            },
            policy: Some(PolicyRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            applicable: Vec::new(),
            omissions: Vec::new(),
            explanation: format!(
                "ztunnel denied: PeerAuthentication STRICT for {}/{} rejects plain text from a client outside the mesh ({policy})",
                pod.namespace, pod.name
            ),
        })
    }
}

/// An `Authorization` scope as ztunnel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ZtunnelScope {
    /// A policy without selector in the root namespace.
    Global,
    /// A policy without selector elsewhere.
    Namespace,
    /// A policy with a selector, and every policy istiod derives from
    /// PeerAuthentication.
    WorkloadSelector,
}

impl ZtunnelScope {
    /// ztunnel's spelling (`Global`, `Namespace`, `WorkloadSelector`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "Global",
            Self::Namespace => "Namespace",
            Self::WorkloadSelector => "WorkloadSelector",
        }
    }
}

/// One `Authorization` istiod sends ztunnel (what `istioctl ztunnel-config
/// policies` lists).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ZtunnelAuthorization {
    pub namespace: String,
    pub name: String,
    /// ALLOW or DENY (ztunnel supports no other action).
    pub deny: bool,
    pub scope: ZtunnelScope,
}

/// Every `Authorization` istiod sends ztunnel for these policies, sorted by
/// namespace and name. From AuthorizationPolicies: those ztunnel enforces
/// ([`ztunnel_view`]; dry-run ones left out), scoped by their selector and
/// namespace. From PeerAuthentications, as istiod's ambient index converts
/// them: the static STRICT policy in the root namespace as soon as any
/// PeerAuthentication exists (workloads reference it when their effective
/// mode is STRICT), and `converted_peer_authentication_NAME` for a workload
/// policy whose port-level modes differ from what it inherits.
pub fn ztunnel_authorizations(
    policies: &[AuthorizationPolicy],
    peer_authentications: &[PeerAuthentication],
    root_namespace: &str,
) -> Vec<ZtunnelAuthorization> {
    let mut out = Vec::new();
    for ap in policies.iter().filter(|ap| !ap.is_dry_run()) {
        let Some(z) = ztunnel_view(ap) else { continue };
        let namespace = ap
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let scope = match (ap.spec.selector.is_some(), namespace == root_namespace) {
            (true, _) => ZtunnelScope::WorkloadSelector,
            (false, true) => ZtunnelScope::Global,
            (false, false) => ZtunnelScope::Namespace,
        };
        out.push(ZtunnelAuthorization {
            namespace,
            name: ap.metadata.name.clone().unwrap_or_default(),
            deny: z.l4.action() == Action::Deny,
            scope,
        });
    }
    if !peer_authentications.is_empty() {
        out.push(ZtunnelAuthorization {
            namespace: root_namespace.to_string(),
            name: STATIC_STRICT_POLICY.to_string(),
            deny: true,
            scope: ZtunnelScope::WorkloadSelector,
        });
    }
    for pa in peer_authentications {
        if converts_to_ztunnel_policy(pa, peer_authentications, root_namespace) {
            out.push(ZtunnelAuthorization {
                namespace: pa.namespace.clone(),
                name: format!("{CONVERTED_PEER_AUTHENTICATION_PREFIX}{}", pa.name),
                deny: true,
                scope: ZtunnelScope::WorkloadSelector,
            });
        }
    }
    out.sort();
    out
}

/// The prefix istiod puts before a PeerAuthentication's name when it converts
/// it into a ztunnel DENY policy.
pub const CONVERTED_PEER_AUTHENTICATION_PREFIX: &str = "converted_peer_authentication_";

/// Whether istiod converts this PeerAuthentication into a ztunnel policy of
/// its own: only a workload policy (a selector, outside the root namespace)
/// with `portLevelMtls`, and only when some port-level mode changes what the
/// port would otherwise get: a STRICT port under a non-STRICT parent, or a
/// PERMISSIVE/DISABLE port under a STRICT workload, namespace or mesh mode.
fn converts_to_ztunnel_policy(
    pa: &PeerAuthentication,
    all: &[PeerAuthentication],
    root_namespace: &str,
) -> bool {
    if pa.scope(root_namespace) != PeerAuthScope::Workload || pa.port_level.is_empty() {
        return false;
    }
    let oldest_level =
        |namespace: &str| crate::peerauth::oldest_namespace_wide(all, namespace).map(|p| p.mode);
    // Outer None: no such policy; inner None: the policy leaves the mode UNSET.
    let ns = oldest_level(&pa.namespace);
    let root = oldest_level(root_namespace);
    let strict = |m: Option<MtlsMode>| m == Some(MtlsMode::Strict);
    let ns_strict = ns.is_some_and(strict);
    let root_strict = root.is_some_and(strict);
    let ns_unset_or_absent = ns.is_none_or(|m| m.is_none());
    let mut non_strict_port = false;
    let mut strict_port_rule = false;
    for mode in pa.port_level.values() {
        match mode {
            Some(MtlsMode::Strict) => {
                let parent_strict = strict(pa.mode)
                    || (pa.mode.is_none() && ns_strict)
                    || (ns_unset_or_absent && root_strict);
                strict_port_rule |= !parent_strict;
            }
            Some(MtlsMode::Permissive | MtlsMode::Disable) => {
                if pa.mode.is_some_and(|m| m != MtlsMode::Strict) {
                    continue;
                }
                let inherited_not_strict = match ns {
                    Some(m) => !strict(m),
                    None => !root_strict,
                };
                if pa.mode.is_none() && inherited_not_strict {
                    continue;
                }
                non_strict_port = true;
            }
            None => {}
        }
    }
    if strict(pa.mode) {
        non_strict_port
    } else {
        strict_port_rule || non_strict_port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(yaml: &str) -> AuthorizationPolicy {
        serde_yaml_ng::from_str(yaml).expect("policy")
    }

    fn pod() -> Pod {
        let mut p = Pod::new("np-test-2", "nginx-2", labels(&[("app", "nginx-2")]));
        p.service_account = "default".into();
        p
    }

    fn req(from_ns: &str) -> AuthzRequest {
        AuthzRequest {
            source_principal: Some(format!("cluster.local/ns/{from_ns}/sa/default")),
            destination_namespace: "np-test-2".into(),
            destination_pod: "nginx-2".into(),
            destination_port: 80,
            ..AuthzRequest::default()
        }
    }

    #[test]
    fn dataplane_mode_follows_labels_and_sidecar_wins() {
        let amb = labels(&[(DATAPLANE_MODE_LABEL, "ambient")]);
        let none = BTreeMap::new();
        assert_eq!(dataplane_mode(&none, false, &amb), DataplaneMode::Ambient);
        assert_eq!(dataplane_mode(&none, true, &amb), DataplaneMode::Sidecar);
        let opt_out = labels(&[(DATAPLANE_MODE_LABEL, "none")]);
        assert_eq!(dataplane_mode(&opt_out, false, &amb), DataplaneMode::None);
        assert_eq!(dataplane_mode(&amb, false, &none), DataplaneMode::Ambient);
        assert_eq!(dataplane_mode(&none, false, &none), DataplaneMode::None);
    }

    #[test]
    fn waypoint_binding_most_specific_label_wins() {
        let gw: serde_json::Value = serde_json::json!({
            "metadata": {"name": "waypoint", "namespace": "np-test-2"},
            "spec": {"gatewayClassName": "istio-waypoint"}
        });
        let w = waypoint_of_gateway(&gw).expect("waypoint");
        assert_eq!(w.waypoint_for, WaypointFor::Service);
        let not_wp =
            serde_json::json!({"metadata": {"name": "gw"}, "spec": {"gatewayClassName": "istio"}});
        assert!(waypoint_of_gateway(&not_wp).is_none());
        let nsl = labels(&[(USE_WAYPOINT_LABEL, "waypoint")]);
        let ns = Binder {
            kind: "namespace",
            namespace: "np-test-2",
            labels: &nsl,
        };
        let waypoints = [w.clone()];
        let r = resolve_waypoint(ns, None, None, Addressed::Service, &waypoints);
        assert!(matches!(r, WaypointUse::Uses { ref bound_by, .. } if bound_by == "namespace"));
        // service-only waypoint: traffic to the pod IP does not use it
        let r = resolve_waypoint(ns, None, None, Addressed::Workload, &waypoints);
        assert!(matches!(r, WaypointUse::NotFor { .. }));
        // a Service opting out
        let svcl = labels(&[(USE_WAYPOINT_LABEL, "none")]);
        let svc = Binder {
            kind: "service",
            namespace: "np-test-2",
            labels: &svcl,
        };
        assert_eq!(
            resolve_waypoint(ns, Some(svc), None, Addressed::Service, &waypoints),
            WaypointUse::None
        );
        // a label naming a waypoint that does not exist
        let badl = labels(&[(USE_WAYPOINT_LABEL, "nope")]);
        let bad = Binder {
            kind: "service",
            namespace: "np-test-2",
            labels: &badl,
        };
        assert!(matches!(
            resolve_waypoint(ns, Some(bad), None, Addressed::Service, &waypoints),
            WaypointUse::Missing { .. }
        ));
    }

    #[test]
    fn target_refs_go_to_waypoints_selector_to_ztunnel() {
        let p = policy(
            "metadata: {name: p, namespace: np-test-2}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}\n",
        );
        assert!(matches!(attachment(&p), Attachment::Waypoint { .. }));
        assert!(ztunnel_view(&p).is_none());
        let w = Waypoint {
            namespace: "np-test-2".into(),
            name: "waypoint".into(),
            waypoint_for: WaypointFor::Service,
        };
        assert!(waypoint_applies(&p, &w, None, "istio-system"));
        let s = policy(
            "metadata: {name: s, namespace: np-test-2}\nspec:\n  targetRefs:\n  - {kind: Service, group: '', name: web}\n",
        );
        assert!(waypoint_applies(
            &s,
            &w,
            Some(("np-test-2", "web")),
            "istio-system"
        ));
        assert!(!waypoint_applies(
            &s,
            &w,
            Some(("np-test-2", "other")),
            "istio-system"
        ));
        let sel = policy(
            "metadata: {name: x, namespace: np-test-2}\nspec: {selector: {matchLabels: {app: nginx-2}}}\n",
        );
        assert_eq!(attachment(&sel), Attachment::Ztunnel);
    }

    #[test]
    fn deny_names_the_policy_as_ztunnel_does() {
        let p = policy(
            "metadata: {name: deny-np-test-1, namespace: np-test-2}\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source: {namespaces: [np-test-1]}\n",
        );
        let v = ztunnel_decide(
            std::slice::from_ref(&p),
            &pod(),
            &req("np-test-1"),
            "istio-system",
        );
        assert!(!v.allowed);
        assert_eq!(
            v.rejection_error().as_deref(),
            Some(
                "connection closed due to policy rejection: explicitly denied by: np-test-2/deny-np-test-1"
            )
        );
        let ok = ztunnel_decide(&[p], &pod(), &req("other"), "istio-system");
        assert!(ok.allowed);
    }

    #[test]
    fn allow_none_matched_and_no_policy() {
        let p = policy(
            "metadata: {name: only-3, namespace: np-test-2}\nspec:\n  rules:\n  - from:\n    - source: {namespaces: [np-test-3]}\n",
        );
        let v = ztunnel_decide(
            std::slice::from_ref(&p),
            &pod(),
            &req("np-test-1"),
            "istio-system",
        );
        assert_eq!(v.reason, ZtunnelReason::NoAllowMatched);
        assert_eq!(
            v.rejection_error().as_deref(),
            Some(
                "connection closed due to policy rejection: allow policies exist, but none allowed"
            )
        );
        assert!(ztunnel_decide(&[], &pod(), &req("np-test-1"), "istio-system").allowed);
        // root-namespace policies reach every namespace
        let root = policy(
            "metadata: {name: mesh, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {ports: ['80']}\n",
        );
        assert!(!ztunnel_decide(&[root], &pod(), &req("x"), "istio-system").allowed);
    }

    #[test]
    fn l7_allow_rules_are_omitted_and_l7_deny_rules_stripped() {
        // ALLOW GET from np-test-1: ztunnel omits the rule, so nothing is allowed.
        let allow = policy(
            "metadata: {name: get-only, namespace: np-test-2}\nspec:\n  rules:\n  - from:\n    - source: {namespaces: [np-test-1]}\n    to:\n    - operation: {methods: [GET]}\n",
        );
        let v = ztunnel_decide(
            std::slice::from_ref(&allow),
            &pod(),
            &req("np-test-1"),
            "istio-system",
        );
        assert!(!v.allowed);
        assert_eq!(v.reason, ZtunnelReason::NoAllowMatched);
        assert_eq!(v.omissions[0].attributes, vec!["methods".to_string()]);
        assert_eq!(v.omissions[0].effect, "omitted");
        // DENY POST from np-test-1: ztunnel denies every connection from np-test-1.
        let deny = policy(
            "metadata: {name: no-post, namespace: np-test-2}\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source: {namespaces: [np-test-1]}\n    to:\n    - operation: {methods: [POST]}\n    when:\n    - {key: 'request.headers[x-a]', values: [b]}\n",
        );
        let v = ztunnel_decide(
            std::slice::from_ref(&deny),
            &pod(),
            &req("np-test-1"),
            "istio-system",
        );
        assert!(!v.allowed, "{v:?}");
        assert_eq!(v.omissions[0].effect, "stripped");
        assert_eq!(
            v.omissions[0].attributes,
            vec!["methods".to_string(), "request.headers[x-a]".to_string()]
        );
        assert!(ztunnel_decide(&[deny], &pod(), &req("other"), "istio-system").allowed);
    }

    #[test]
    fn custom_audit_dry_run_and_waypoint_policies_are_not_ztunnels() {
        let audit = policy(
            "metadata: {name: a, namespace: np-test-2}\nspec: {action: AUDIT, rules: [{}]}\n",
        );
        let dry = policy(
            "metadata: {name: d, namespace: np-test-2, annotations: {istio.io/dry-run: 'true'}}\nspec: {action: DENY, rules: [{}]}\n",
        );
        let v = ztunnel_decide(&[audit, dry], &pod(), &req("x"), "istio-system");
        assert!(v.allowed);
        assert!(v.applicable.is_empty());
    }

    #[test]
    fn waypoint_policies_and_path() {
        let w = Waypoint {
            namespace: "np-test-2".into(),
            name: "waypoint".into(),
            waypoint_for: WaypointFor::Service,
        };
        let gw = policy(
            "metadata: {name: b, namespace: np-test-2}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}\n",
        );
        let other = policy(
            "metadata: {name: c, namespace: np-test-2}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: other}\n",
        );
        let class = policy(
            "metadata: {name: a, namespace: istio-system}\nspec:\n  targetRefs:\n  - {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}\n",
        );
        let sel = policy(
            "metadata: {name: d, namespace: np-test-2}\nspec: {selector: {matchLabels: {app: nginx-2}}}\n",
        );
        let got = waypoint_policies(
            &[gw, other, class, sel],
            &w,
            Some(("np-test-2", "web")),
            "istio-system",
        );
        let names: Vec<_> = got
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        let used = WaypointUse::Uses {
            waypoint: w.clone(),
            bound_by: "namespace".into(),
        };
        assert_eq!(waypoint_in_path(true, &used), Some(&w));
        assert_eq!(waypoint_in_path(false, &used), None);
        assert_eq!(waypoint_in_path(true, &WaypointUse::None), None);
        let g = serde_json::json!({"metadata": {"name": "waypoint"}});
        assert_eq!(waypoint_service_account(&g), "waypoint");
        let g = serde_json::json!({"metadata": {"name": "waypoint", "annotations": {"gateway.istio.io/service-account": "wp-sa"}}});
        assert_eq!(waypoint_service_account(&g), "wp-sa");
    }

    #[test]
    fn peer_authentication_in_ambient() {
        use crate::peerauth::{ModeSource, PeerAuthRef, Scope};
        let strict = EffectiveMtls {
            mode: MtlsMode::Strict,
            decided_by: Some(ModeSource {
                policy: PeerAuthRef {
                    namespace: "np-test-2".into(),
                    name: "default".into(),
                },
                scope: Scope::Namespace,
                port_level: false,
            }),
        };
        let z = ztunnel_peer_authentication(&strict, "istio-system");
        assert!(!z.accepts_plaintext);
        let v = z.plaintext_rejection(&pod()).expect("rejected");
        assert_eq!(
            v.rejection_error().as_deref(),
            Some(
                "connection closed due to policy rejection: explicitly denied by: istio-system/istio_converted_static_strict"
            )
        );
        let disable = EffectiveMtls {
            mode: MtlsMode::Disable,
            decided_by: None,
        };
        let z = ztunnel_peer_authentication(&disable, "istio-system");
        assert_eq!(z.mode, MtlsMode::Permissive);
        assert_eq!(z.written, MtlsMode::Disable);
        assert!(z.accepts_plaintext && z.plaintext_rejection(&pod()).is_none());
    }
}

#[cfg(test)]
mod ztunnel_authorization_tests {
    use serde_json::json;

    use super::*;

    const ROOT: &str = "istio-system";

    fn pa(ns: &str, name: &str, spec: serde_json::Value) -> PeerAuthentication {
        PeerAuthentication::from_value(
            &json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
            "default",
        )
        .unwrap()
    }

    fn ap(yaml: &str) -> AuthorizationPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn names(pas: &[PeerAuthentication]) -> Vec<String> {
        ztunnel_authorizations(&[], pas, ROOT)
            .into_iter()
            .map(|z| format!("{}/{}", z.namespace, z.name))
            .collect()
    }

    #[test]
    fn any_peer_authentication_brings_the_static_strict_policy() {
        assert!(names(&[]).is_empty());
        let permissive = pa("shop", "p", json!({"mtls": {"mode": "PERMISSIVE"}}));
        assert_eq!(
            names(&[permissive]),
            ["istio-system/istio_converted_static_strict"]
        );
        let strict = pa(ROOT, "default", json!({"mtls": {"mode": "STRICT"}}));
        let z = ztunnel_authorizations(&[], &[strict], ROOT);
        assert_eq!(z.len(), 1);
        assert_eq!(
            (z[0].deny, z[0].scope),
            (true, ZtunnelScope::WorkloadSelector)
        );
    }

    #[test]
    fn workload_port_level_exceptions_are_converted() {
        let sel = json!({"matchLabels": {"app": "a"}});
        // Istio's architecture doc example: STRICT with a PERMISSIVE port.
        let exception = pa(
            "shop",
            "strict-and-permissive-mtls",
            json!({"selector": sel, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}}}),
        );
        assert_eq!(
            names(std::slice::from_ref(&exception)),
            [
                "istio-system/istio_converted_static_strict",
                "shop/converted_peer_authentication_strict-and-permissive-mtls"
            ]
        );
        // A STRICT port under a PERMISSIVE workload mode.
        let strict_port = pa(
            "shop",
            "sp",
            json!({"selector": sel, "mtls": {"mode": "PERMISSIVE"}, "portLevelMtls": {"8080": {"mode": "STRICT"}}}),
        );
        assert_eq!(names(&[strict_port]).len(), 2);
        // Nothing differs from the parent: no converted policy.
        let same = pa(
            "shop",
            "same",
            json!({"selector": sel, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "STRICT"}}}),
        );
        assert_eq!(names(&[same]).len(), 1);
        let ns_permissive = pa("shop", "ns", json!({"mtls": {"mode": "PERMISSIVE"}}));
        let unset_permissive_port = pa(
            "shop",
            "u",
            json!({"selector": sel, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}),
        );
        assert_eq!(
            names(&[ns_permissive.clone(), unset_permissive_port.clone()]).len(),
            1
        );
        // The same port exception under a STRICT mesh-wide mode is converted.
        let mesh_strict = pa(ROOT, "default", json!({"mtls": {"mode": "STRICT"}}));
        assert_eq!(names(&[mesh_strict, unset_permissive_port]).len(), 2);
    }

    #[test]
    fn authorization_policy_scopes() {
        let aps = [
            ap(
                "metadata: {name: sel, namespace: shop}\nspec: {selector: {matchLabels: {app: a}}, action: DENY, rules: [{}]}",
            ),
            ap("metadata: {name: ns-wide, namespace: shop}\nspec: {rules: [{}]}"),
            ap(
                "metadata: {name: mesh, namespace: istio-system}\nspec: {action: DENY, rules: [{}]}",
            ),
            ap(
                "metadata: {name: wp, namespace: shop}\nspec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}], rules: [{}]}",
            ),
        ];
        let z = ztunnel_authorizations(&aps, &[], ROOT);
        let got: Vec<(&str, bool, ZtunnelScope)> = z
            .iter()
            .map(|z| (z.name.as_str(), z.deny, z.scope))
            .collect();
        assert_eq!(
            got,
            [
                ("mesh", true, ZtunnelScope::Global),
                ("ns-wide", false, ZtunnelScope::Namespace),
                ("sel", true, ZtunnelScope::WorkloadSelector),
            ]
        );
    }
}
