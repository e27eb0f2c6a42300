//! Auditing one ambient pod's AuthorizationPolicies: who enforces each (ztunnel
//! or a waypoint) and the classic ambient mistakes, as data.
//!
//! In ambient mode the same policy text means different things depending on
//! how it is bound: `selector` (or nothing) hands it to ztunnel, which knows
//! no HTTP and drops HTTP attributes (an ALLOW rule naming one never matches,
//! a DENY rule matches without them); `targetRefs` hands it to a waypoint,
//! and only when the destination's Service actually uses that waypoint. Those
//! rules live in [`crate::ambient`]; this module applies them to one pod and
//! its Services and says what is wrong, so authzcheck (which renders the
//! result) and any other reader agree on every finding. It is pure: the
//! caller passes the objects it read (Services, Gateways, policies).
//!
//! Findings (each with a stable code and a severity):
//! - `ztunnel-ignores-l7` (a): HTTP attributes in a policy ztunnel enforces
//!   for this pod, with what ztunnel does instead;
//! - `waypoint-not-used` (b): a `targetRefs` policy whose waypoint (or Service)
//!   no traffic goes through, so nothing enforces it;
//! - `target-not-waypoint` (c): `targetRefs` to a Gateway that does not
//!   exist or is not of class `istio-waypoint`;
//! - `waypoint-allows-nothing` (d): a Service of the pod uses a waypoint
//!   whose policies deny every request;
//! - `sidecar-policy-left-behind` (e): a selector-bound policy with HTTP
//!   attributes in a namespace enrolled in ambient, with the `targetRefs`
//!   that would give it its L7 meaning back;
//! - `waypoint-missing`: a Service or namespace labelled to use a waypoint
//!   that does not exist;
//! - `ztunnel-denies-everything`: in ztunnel's view of the policies, no
//!   connection to the pod is allowed;
//! - `ztunnel-rejects-waypoint`: traffic through a waypoint reaches the pod
//!   with the waypoint's identity, and ztunnel's L4 policies reject it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ambient::{
    Addressed, Binder, L7Omission, TargetRef, WAYPOINT_CLASS, Waypoint, WaypointUse,
    resolve_waypoint, target_refs, ztunnel_policies,
};
use crate::authz::{Action, AuthorizationPolicy, Rule};
use crate::netpol::PolicyRef;
use crate::workload::Pod;

/// A Service as the audit needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.selector` (empty: endpoints managed by hand, selects no pod here).
    pub selector: BTreeMap<String, String>,
}

impl ServiceInfo {
    /// Whether the Service selects `pod`.
    pub fn selects(&self, pod: &Pod) -> bool {
        self.namespace == pod.namespace
            && !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    }
}

/// A `gateway.networking.k8s.io` Gateway as the audit needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.gatewayClassName`.
    pub class: String,
    pub labels: BTreeMap<String, String>,
    /// The ServiceAccount of its pods (empty: named like the Gateway).
    pub service_account: String,
}

impl GatewayInfo {
    /// Reads a Gateway object (JSON as the API serves it).
    pub fn from_value(v: &serde_json::Value) -> Option<Self> {
        Some(GatewayInfo {
            namespace: v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            name: v["metadata"]["name"].as_str()?.to_string(),
            class: v["spec"]["gatewayClassName"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            labels: serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default(),
            service_account: crate::ambient::waypoint_service_account(v),
        })
    }

    /// The identity its pods present (`cluster.local/ns/NS/sa/SA`): the
    /// destination ztunnel sees this, not the client's, for traffic through it.
    pub fn principal(&self) -> String {
        let sa = if self.service_account.is_empty() {
            &self.name
        } else {
            &self.service_account
        };
        format!(
            "{}/ns/{}/sa/{sa}",
            crate::workload::DEFAULT_TRUST_DOMAIN,
            self.namespace
        )
    }

    fn as_value(&self) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"namespace": self.namespace, "name": self.name, "labels": self.labels},
            "spec": {"gatewayClassName": self.class},
        })
    }

    /// The waypoint this Gateway is, when its class is `istio-waypoint`.
    pub fn waypoint(&self) -> Option<Waypoint> {
        crate::ambient::waypoint_of_gateway(&self.as_value())
    }
}

/// What the audit reads.
#[derive(Debug, Clone, Copy)]
pub struct AuditInput<'a> {
    pub pod: &'a Pod,
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The Services of the pod's namespace.
    pub services: &'a [ServiceInfo],
    /// Every Gateway read (any namespace).
    pub gateways: &'a [GatewayInfo],
    /// The AuthorizationPolicies of the pod's namespace, the root namespace
    /// and the namespaces of the waypoints its Services use.
    pub policies: &'a [AuthorizationPolicy],
    pub root_namespace: &'a str,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSeverity {
    Info,
    Warning,
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditFinding {
    pub severity: AuditSeverity,
    pub code: String,
    pub message: String,
}

fn finding(severity: AuditSeverity, code: &str, message: String) -> AuditFinding {
    AuditFinding {
        severity,
        code: code.to_string(),
        message,
    }
}

/// A policy ztunnel enforces for the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZtunnelBinding {
    pub policy: PolicyRef,
    /// ALLOW or DENY (ztunnel enforces no other action).
    pub action: String,
    /// `mesh` (root namespace), `namespace` or `selector`.
    pub scope: String,
    /// `k=v,...` for scope `selector`.
    pub selector: Option<String>,
    /// Rules written.
    pub rules: usize,
    /// Rules ztunnel keeps (DENY rules stripped of HTTP attributes count).
    pub l4_rules: usize,
    /// HTTP attributes ztunnel dropped, per rule.
    pub omissions: Vec<L7Omission>,
    /// What ztunnel does with it, in one line.
    pub effect: String,
}

/// A policy attached to a waypoint a Service of the pod uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaypointPolicy {
    pub policy: PolicyRef,
    pub action: String,
    pub rules: usize,
    /// Which targetRef attaches it (`Gateway NAME`, `Service NAME`, `GatewayClass istio-waypoint`).
    pub via: String,
    pub dry_run: bool,
}

/// One Service of the pod and the waypoint its traffic goes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceWaypoint {
    pub service: String,
    pub waypoint: WaypointUse,
    /// Policies the waypoint enforces for this Service (empty without a waypoint).
    pub policies: Vec<WaypointPolicy>,
}

/// The audit of one ambient pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmbientAudit {
    pub ztunnel: Vec<ZtunnelBinding>,
    pub services: Vec<ServiceWaypoint>,
    pub findings: Vec<AuditFinding>,
}

fn policy_ref(ap: &AuthorizationPolicy) -> PolicyRef {
    PolicyRef {
        namespace: ap
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: ap.metadata.name.clone().unwrap_or_default(),
    }
}

fn selector_text(ap: &AuthorizationPolicy) -> Option<String> {
    ap.spec.selector.as_ref().map(|s| {
        s.match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn matches_everything(r: &Rule) -> bool {
    r.from.is_empty() && r.to.is_empty() && r.when.is_empty()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The waypoint traffic to `svc` goes through (service-addressed).
pub fn service_waypoint(
    svc: &ServiceInfo,
    namespace_labels: &BTreeMap<String, String>,
    gateways: &[GatewayInfo],
) -> WaypointUse {
    let waypoints: Vec<Waypoint> = gateways.iter().filter_map(GatewayInfo::waypoint).collect();
    resolve_waypoint(
        Binder {
            kind: "namespace",
            namespace: &svc.namespace,
            labels: namespace_labels,
        },
        Some(Binder {
            kind: "service",
            namespace: &svc.namespace,
            labels: &svc.labels,
        }),
        None,
        Addressed::Service,
        &waypoints,
    )
}

/// The policies `waypoint` enforces for traffic to `svc` (`targetRefs` to the
/// Gateway, to the Service, or to the class from the root namespace).
pub fn waypoint_policies(
    policies: &[AuthorizationPolicy],
    waypoint: &Waypoint,
    svc: (&str, &str),
    root_namespace: &str,
) -> Vec<WaypointPolicy> {
    crate::ambient::waypoint_policies(policies, waypoint, Some(svc), root_namespace)
        .iter()
        .map(|ap| {
            let via = target_refs(ap)
                .into_iter()
                .find(|t| {
                    matches!(t.kind.as_str(), "Gateway" | "GatewayClass" | "Service")
                        && (t.kind != "Gateway" || t.name == waypoint.name)
                        && (t.kind != "Service" || t.name == svc.1)
                })
                .map(|t| format!("{} {}", t.kind, t.name))
                .unwrap_or_default();
            WaypointPolicy {
                policy: policy_ref(ap),
                action: ap.action().to_string(),
                rules: ap.spec.rules.len(),
                via,
                dry_run: ap.is_dry_run(),
            }
        })
        .collect()
}

/// Whether a waypoint with these policies denies every request: an enforced
/// DENY matching everything, or enforced ALLOW policies none of which has a rule.
/// Returns the policies that make it so.
pub fn allows_nothing(
    policies: &[AuthorizationPolicy],
    attached: &[WaypointPolicy],
) -> Option<Vec<PolicyRef>> {
    let enforced: Vec<&AuthorizationPolicy> = attached
        .iter()
        .filter(|w| !w.dry_run)
        .filter_map(|w| policies.iter().find(|ap| policy_ref(ap) == w.policy))
        .collect();
    let deny_all: Vec<PolicyRef> = enforced
        .iter()
        .filter(|ap| ap.action() == Action::Deny && ap.spec.rules.iter().any(matches_everything))
        .map(|ap| policy_ref(ap))
        .collect();
    if !deny_all.is_empty() {
        return Some(deny_all);
    }
    let allows: Vec<&&AuthorizationPolicy> = enforced
        .iter()
        .filter(|ap| ap.action() == Action::Allow)
        .collect();
    (!allows.is_empty() && allows.iter().all(|ap| ap.spec.rules.is_empty()))
        .then(|| allows.iter().map(|ap| policy_ref(ap)).collect())
}

fn ztunnel_binding(
    view: &crate::ambient::ZtunnelPolicy,
    original: &AuthorizationPolicy,
    root: &str,
) -> ZtunnelBinding {
    let policy = policy_ref(original);
    let selector = selector_text(original);
    let scope = if policy.namespace == root {
        "mesh"
    } else if selector.is_some() {
        "selector"
    } else {
        "namespace"
    };
    let rules = original.spec.rules.len();
    let l4_rules = view.l4.spec.rules.len();
    let action = original.action();
    let effect = match (action, view.omissions.is_empty()) {
        (_, true) => format!("enforced as written ({})", plural(rules, "rule", "rules")),
        (Action::Allow, false) if l4_rules == 0 => format!(
            "ztunnel omits every rule (HTTP attributes): it allows nothing ({} of {} kept)",
            l4_rules, rules
        ),
        (Action::Allow, false) => format!(
            "ztunnel omits {} with HTTP attributes: they never match ({l4_rules} of {rules} kept)",
            plural(view.omissions.len(), "rule", "rules")
        ),
        (_, false) => format!(
            "ztunnel enforces {} without their HTTP attributes: they match more connections",
            plural(view.omissions.len(), "rule", "rules")
        ),
    };
    ZtunnelBinding {
        policy,
        action: action.to_string(),
        scope: scope.to_string(),
        selector,
        rules,
        l4_rules,
        omissions: view.omissions.clone(),
        effect,
    }
}

fn waypoint_name(w: &Waypoint) -> String {
    format!("{}/{}", w.namespace, w.name)
}

/// The audit of an ambient pod.
pub fn audit(input: &AuditInput<'_>) -> AmbientAudit {
    let pod = input.pod;
    let root = input.root_namespace;
    let mut findings = Vec::new();

    // ztunnel: the L4 view of the policies bound to the pod by selector,
    // namespace-wide or from the root namespace.
    let views = ztunnel_policies(input.policies, pod, root);
    let mut ztunnel = Vec::new();
    for v in &views {
        let Some(original) = input
            .policies
            .iter()
            .find(|ap| policy_ref(ap) == policy_ref(&v.l4))
        else {
            continue;
        };
        let b = ztunnel_binding(v, original, root);
        for o in &b.omissions {
            let what = if o.effect == "omitted" {
                "ztunnel omits the rule, so it never matches: ztunnel denies connections the policy means to allow"
            } else {
                "ztunnel enforces the rule without them, so it matches more: ztunnel denies connections the policy means to let through"
            };
            let bound = match &b.selector {
                Some(s) => format!("bound by selector {s}"),
                None if b.scope == "mesh" => "mesh-wide (root namespace)".into(),
                None => "namespace-wide".into(),
            };
            findings.push(finding(
                AuditSeverity::Warning,
                "ztunnel-ignores-l7",
                format!(
                    "{} {} is {bound}, so ztunnel enforces it for this ambient pod, and ztunnel knows no HTTP: rule {} names {}: {what}; attach the policy to a waypoint with targetRefs for L7 rules",
                    b.action,
                    b.policy,
                    o.rule,
                    o.attributes.join(", ")
                ),
            ));
        }
        ztunnel.push(b);
    }
    if let Some(f) = ztunnel_denies_everything(&views) {
        findings.push(f);
    }

    // Waypoints: the pod's Services and the waypoint each uses.
    let mut services = Vec::new();
    for svc in input.services.iter().filter(|s| s.selects(pod)) {
        let use_ = service_waypoint(svc, input.namespace_labels, input.gateways);
        let policies = match &use_ {
            WaypointUse::Uses { waypoint, .. } => {
                waypoint_policies(input.policies, waypoint, (&svc.namespace, &svc.name), root)
            }
            _ => Vec::new(),
        };
        match &use_ {
            WaypointUse::Missing {
                namespace,
                name,
                bound_by,
            } => findings.push(finding(
                AuditSeverity::Warning,
                "waypoint-missing",
                format!(
                    "Service {}/{} is bound (by its {bound_by}'s istio.io/use-waypoint) to waypoint {namespace}/{name}, which does not exist (no Gateway of class {WAYPOINT_CLASS}): no waypoint enforces L7 policy for it; create it with `istioctl waypoint apply -n {namespace} --name {name}`",
                    svc.namespace, svc.name
                ),
            )),
            WaypointUse::NotFor { waypoint, bound_by } => findings.push(finding(
                AuditSeverity::Warning,
                "waypoint-missing",
                format!(
                    "Service {}/{} is bound (by its {bound_by}'s label) to waypoint {}, whose istio.io/waypoint-for excludes Service traffic: no waypoint enforces L7 policy for it",
                    svc.namespace,
                    svc.name,
                    waypoint_name(waypoint)
                ),
            )),
            WaypointUse::Uses { waypoint, .. } => {
                let gw = input
                    .gateways
                    .iter()
                    .find(|g| g.namespace == waypoint.namespace && g.name == waypoint.name);
                if let Some(f) = gw.and_then(|g| rejects_waypoint(input, svc, g)) {
                    findings.push(f);
                }
                if let Some(by) = allows_nothing(input.policies, &policies) {
                    let names = by
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    findings.push(finding(
                        AuditSeverity::Error,
                        "waypoint-allows-nothing",
                        format!(
                            "Service {}/{} uses waypoint {}, whose policies allow nothing ({names}): every request to the Service through the waypoint is denied (403 RBAC: access denied)",
                            svc.namespace,
                            svc.name,
                            waypoint_name(waypoint)
                        ),
                    ));
                }
            }
            WaypointUse::None => {}
        }
        services.push(ServiceWaypoint {
            service: svc.name.clone(),
            waypoint: use_,
            policies,
        });
    }

    findings.extend(target_findings(input));
    findings.extend(left_behind(input, &views, &services));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    AmbientAudit {
        ztunnel,
        services,
        findings,
    }
}

/// `ztunnel-rejects-waypoint`: traffic to `svc` goes through waypoint `gw`,
/// so the destination ztunnel sees the waypoint's identity, not the
/// client's; when ztunnel's L4 policies for the pod reject that identity on
/// the pod's ports, every request through the waypoint is reset.
pub fn rejects_waypoint(
    input: &AuditInput<'_>,
    svc: &ServiceInfo,
    gw: &GatewayInfo,
) -> Option<AuditFinding> {
    let pod = input.pod;
    let principal = gw.principal();
    let mut ports: Vec<u16> = pod.ports.iter().map(|p| p.port).collect();
    if ports.is_empty() {
        ports.push(80);
    }
    ports.sort_unstable();
    ports.dedup();
    let mut denied = Vec::new();
    let mut why = String::new();
    for port in ports {
        let req = crate::authz::AuthzRequest {
            source_principal: Some(principal.clone()),
            destination_namespace: pod.namespace.clone(),
            destination_pod: pod.name.clone(),
            destination_port: port,
            ..Default::default()
        };
        let v = crate::ambient::ztunnel_decide(input.policies, pod, &req, input.root_namespace);
        if !v.allowed {
            denied.push(port.to_string());
            why = v.explanation;
        }
    }
    (!denied.is_empty()).then(|| {
        finding(
            AuditSeverity::Error,
            "ztunnel-rejects-waypoint",
            format!(
                "Service {}/{} uses waypoint {}/{}, so requests reach this pod from the waypoint's identity {principal}, not the client's, and ztunnel rejects it on port {} ({why}): every request through the waypoint is reset; allow that principal in the L4 policy, or attach the rule to the waypoint with targetRefs",
                svc.namespace,
                svc.name,
                gw.namespace,
                gw.name,
                denied.join(", ")
            ),
        )
    })
}

/// `ztunnel-denies-everything`: in ztunnel's view, a DENY rule matching every
/// connection, or ALLOW policies none of which kept a rule.
pub fn ztunnel_denies_everything(views: &[crate::ambient::ZtunnelPolicy]) -> Option<AuditFinding> {
    let deny_all: Vec<String> = views
        .iter()
        .filter(|v| v.l4.action() == Action::Deny && v.l4.spec.rules.iter().any(matches_everything))
        .map(|v| policy_ref(&v.l4).to_string())
        .collect();
    if !deny_all.is_empty() {
        return Some(finding(
            AuditSeverity::Error,
            "ztunnel-denies-everything",
            format!(
                "ztunnel resets every connection to this pod: DENY {} matches every connection in ztunnel's view",
                deny_all.join(", ")
            ),
        ));
    }
    let allows: Vec<&crate::ambient::ZtunnelPolicy> = views
        .iter()
        .filter(|v| v.l4.action() == Action::Allow)
        .collect();
    if !allows.is_empty() && allows.iter().all(|v| v.l4.spec.rules.is_empty()) {
        let names = allows
            .iter()
            .map(|v| policy_ref(&v.l4).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let why = if allows.iter().any(|v| !v.omissions.is_empty()) {
            "ztunnel omitted their rules with HTTP attributes"
        } else {
            "they have no rule"
        };
        return Some(finding(
            AuditSeverity::Error,
            "ztunnel-denies-everything",
            format!(
                "ztunnel resets every connection to this pod: ALLOW {names} apply and keep no rule ({why}), so nothing is allowed"
            ),
        ));
    }
    None
}

/// Findings about `targetRefs` of the policies in the pod's namespace:
/// (b) a waypoint or Service no traffic goes through, (c) a Gateway that does
/// not exist or is not a waypoint.
pub fn target_findings(input: &AuditInput<'_>) -> Vec<AuditFinding> {
    let ns = &input.pod.namespace;
    let mut out = Vec::new();
    for ap in input
        .policies
        .iter()
        .filter(|ap| ap.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        let label = policy_ref(ap);
        for t in target_refs(ap) {
            if let Some(f) = target_finding(input, &label, &t) {
                out.push(f);
            }
        }
    }
    out
}

fn target_finding(
    input: &AuditInput<'_>,
    label: &PolicyRef,
    t: &TargetRef,
) -> Option<AuditFinding> {
    let ns = &label.namespace;
    match t.kind.as_str() {
        "Gateway" => {
            let Some(gw) = input
                .gateways
                .iter()
                .find(|g| &g.namespace == ns && g.name == t.name)
            else {
                return Some(finding(
                    AuditSeverity::Warning,
                    "target-not-waypoint",
                    format!(
                        "AuthorizationPolicy {label} targets Gateway {ns}/{}, which does not exist: nothing enforces it (create the waypoint with `istioctl waypoint apply -n {ns} --name {}` or fix targetRefs)",
                        t.name, t.name
                    ),
                ));
            };
            let Some(w) = gw.waypoint() else {
                return Some(finding(
                    AuditSeverity::Warning,
                    "target-not-waypoint",
                    format!(
                        "AuthorizationPolicy {label} targets Gateway {ns}/{} of class {}, not {WAYPOINT_CLASS}: it applies to that gateway's own traffic only, never to traffic between pods",
                        t.name,
                        if gw.class.is_empty() {
                            "(none)"
                        } else {
                            &gw.class
                        }
                    ),
                ));
            };
            let used = input.services.iter().any(|s| {
                s.namespace == *ns
                    && matches!(service_waypoint(s, input.namespace_labels, input.gateways),
                        WaypointUse::Uses { ref waypoint, .. } if *waypoint == w)
            });
            (!used).then(|| {
                finding(
                    AuditSeverity::Warning,
                    "waypoint-not-used",
                    format!(
                        "AuthorizationPolicy {label} targets waypoint {}, but no Service in {ns} uses it (no istio.io/use-waypoint={} on the namespace or a Service): nothing enforces the policy",
                        waypoint_name(&w),
                        w.name
                    ),
                )
            })
        }
        "GatewayClass" if t.name != WAYPOINT_CLASS => Some(finding(
            AuditSeverity::Warning,
            "target-not-waypoint",
            format!(
                "AuthorizationPolicy {label} targets GatewayClass {}, not {WAYPOINT_CLASS}: no waypoint enforces it",
                t.name
            ),
        )),
        "Service" => {
            let svc = input
                .services
                .iter()
                .find(|s| &s.namespace == ns && s.name == t.name);
            let Some(svc) = svc else {
                return Some(finding(
                    AuditSeverity::Warning,
                    "waypoint-not-used",
                    format!(
                        "AuthorizationPolicy {label} targets Service {ns}/{}, which does not exist: nothing enforces it",
                        t.name
                    ),
                ));
            };
            match service_waypoint(svc, input.namespace_labels, input.gateways) {
                WaypointUse::Uses { .. } => None,
                _ => Some(finding(
                    AuditSeverity::Warning,
                    "waypoint-not-used",
                    format!(
                        "AuthorizationPolicy {label} targets Service {ns}/{}, which uses no waypoint: nothing enforces it (ztunnel ignores targetRefs policies; label the Service istio.io/use-waypoint=NAME)",
                        t.name
                    ),
                )),
            }
        }
        _ => None,
    }
}

/// (e): selector-bound policies with HTTP attributes in a namespace enrolled
/// in ambient, and the `targetRefs` that would restore their L7 meaning.
fn left_behind(
    input: &AuditInput<'_>,
    views: &[crate::ambient::ZtunnelPolicy],
    services: &[ServiceWaypoint],
) -> Vec<AuditFinding> {
    let ns = &input.pod.namespace;
    let ambient_ns = input
        .namespace_labels
        .get(crate::ambient::DATAPLANE_MODE_LABEL)
        .is_some_and(|v| v == "ambient");
    if !ambient_ns {
        return Vec::new();
    }
    let target = services.iter().find_map(|s| match &s.waypoint {
        WaypointUse::Uses { .. } => Some(format!(
            "`targetRefs: [{{kind: Service, group: \"\", name: {}}}]` (its waypoint enforces L7)",
            s.service
        )),
        _ => None,
    });
    let target = target.unwrap_or_else(|| {
        format!(
            "`targetRefs` to a waypoint (none serves this pod's Services yet: `istioctl waypoint apply -n {ns} --enroll-namespace`)"
        )
    });
    views
        .iter()
        .filter(|v| !v.omissions.is_empty())
        .filter_map(|v| {
            let original = input
                .policies
                .iter()
                .find(|ap| policy_ref(ap) == policy_ref(&v.l4))?;
            let sel = selector_text(original)?;
            (original.metadata.namespace.as_deref() == Some(ns.as_str())).then(|| {
                let attrs: Vec<String> = {
                    let mut a: Vec<String> = v
                        .omissions
                        .iter()
                        .flat_map(|o| o.attributes.clone())
                        .collect();
                    a.sort();
                    a.dedup();
                    a
                };
                finding(
                    AuditSeverity::Warning,
                    "sidecar-policy-left-behind",
                    format!(
                        "AuthorizationPolicy {} selects {sel} and names HTTP attributes ({}): written for a sidecar, but namespace {ns} is in ambient mode, where only a waypoint enforces them; replace `selector` with {target}",
                        policy_ref(original),
                        attrs.join(", ")
                    ),
                )
            })
        })
        .collect()
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
        Pod::new("app", "web-1", labels(&[("app", "web")]))
    }

    fn service(svc_labels: &[(&str, &str)]) -> ServiceInfo {
        ServiceInfo {
            namespace: "app".into(),
            name: "web".into(),
            labels: labels(svc_labels),
            selector: labels(&[("app", "web")]),
        }
    }

    fn waypoint_gw(name: &str, class: &str) -> GatewayInfo {
        GatewayInfo {
            namespace: "app".into(),
            name: name.into(),
            class: class.into(),
            ..Default::default()
        }
    }

    fn run(
        ns_labels: &[(&str, &str)],
        services: &[ServiceInfo],
        gateways: &[GatewayInfo],
        policies: &[AuthorizationPolicy],
    ) -> AmbientAudit {
        let nsl = labels(ns_labels);
        let p = pod();
        audit(&AuditInput {
            pod: &p,
            namespace_labels: &nsl,
            services,
            gateways,
            policies,
            root_namespace: "istio-system",
        })
    }

    fn codes(a: &AmbientAudit) -> Vec<&str> {
        a.findings.iter().map(|f| f.code.as_str()).collect()
    }

    const AMBIENT: (&str, &str) = ("istio.io/dataplane-mode", "ambient");

    #[test]
    fn l7_in_selector_policy_a_and_left_behind_e() {
        let p = policy(
            "metadata: {name: get-only, namespace: app}\nspec:\n  selector: {matchLabels: {app: web}}\n  rules:\n  - to:\n    - operation: {methods: [GET]}\n",
        );
        let a = run(&[AMBIENT], &[service(&[])], &[], &[p]);
        assert_eq!(a.ztunnel.len(), 1);
        assert_eq!(a.ztunnel[0].scope, "selector");
        assert_eq!(a.ztunnel[0].l4_rules, 0);
        assert!(a.ztunnel[0].effect.contains("allows nothing"));
        let c = codes(&a);
        assert!(c.contains(&"ztunnel-ignores-l7"), "{c:?}");
        assert!(c.contains(&"sidecar-policy-left-behind"), "{c:?}");
        assert!(c.contains(&"ztunnel-denies-everything"), "{c:?}");
        let a7 = a
            .findings
            .iter()
            .find(|f| f.code == "ztunnel-ignores-l7")
            .unwrap();
        assert!(a7.message.contains("never matches"), "{}", a7.message);
        // DENY: stripped, matches more; pod-level enrolment only: no (e).
        let d = policy(
            "metadata: {name: no-post, namespace: app}\nspec:\n  action: DENY\n  selector: {matchLabels: {app: web}}\n  rules:\n  - to:\n    - operation: {methods: [POST], ports: ['80']}\n",
        );
        let a = run(&[], &[service(&[])], &[], &[d]);
        let c = codes(&a);
        assert_eq!(c, vec!["ztunnel-ignores-l7"], "{c:?}");
        assert!(a.findings[0].message.contains("matches more"));
        assert!(a.ztunnel[0].effect.contains("without their HTTP"));
    }

    #[test]
    fn left_behind_suggests_the_service_when_a_waypoint_serves_it() {
        let p = policy(
            "metadata: {name: get-only, namespace: app}\nspec:\n  selector: {matchLabels: {app: web}}\n  rules:\n  - to:\n    - operation: {paths: [/x]}\n  - from:\n    - source: {namespaces: [a]}\n",
        );
        let a = run(
            &[AMBIENT, ("istio.io/use-waypoint", "waypoint")],
            &[service(&[])],
            &[waypoint_gw("waypoint", WAYPOINT_CLASS)],
            &[p],
        );
        let e = a
            .findings
            .iter()
            .find(|f| f.code == "sidecar-policy-left-behind")
            .unwrap();
        assert!(e.message.contains("name: web"), "{}", e.message);
        assert!(!codes(&a).contains(&"ztunnel-denies-everything"));
    }

    #[test]
    fn waypoint_not_used_b() {
        let p = policy(
            "metadata: {name: l7, namespace: app}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}\n  rules:\n  - to:\n    - operation: {methods: [GET]}\n",
        );
        let gws = [waypoint_gw("waypoint", WAYPOINT_CLASS)];
        let a = run(&[AMBIENT], &[service(&[])], &gws, std::slice::from_ref(&p));
        assert_eq!(codes(&a), vec!["waypoint-not-used"]);
        assert!(a.ztunnel.is_empty());
        // Bound by the Service: used, and the policy is listed for it.
        let a = run(
            &[AMBIENT],
            &[service(&[("istio.io/use-waypoint", "waypoint")])],
            &gws,
            std::slice::from_ref(&p),
        );
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!(a.services[0].policies.len(), 1);
        assert_eq!(a.services[0].policies[0].via, "Gateway waypoint");
        // A Service target whose Service uses no waypoint.
        let s = policy(
            "metadata: {name: s, namespace: app}\nspec:\n  targetRefs:\n  - {kind: Service, group: '', name: web}\n",
        );
        let a = run(&[AMBIENT], &[service(&[])], &gws, &[s]);
        assert_eq!(codes(&a), vec!["waypoint-not-used"]);
    }

    #[test]
    fn target_not_waypoint_c() {
        let p = policy(
            "metadata: {name: l7, namespace: app}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: nope}\n",
        );
        let a = run(&[AMBIENT], &[service(&[])], &[], std::slice::from_ref(&p));
        assert_eq!(codes(&a), vec!["target-not-waypoint"]);
        assert!(a.findings[0].message.contains("does not exist"));
        let a = run(
            &[AMBIENT],
            &[service(&[])],
            &[waypoint_gw("nope", "istio")],
            &[p],
        );
        assert_eq!(codes(&a), vec!["target-not-waypoint"]);
        assert!(a.findings[0].message.contains("class istio,"));
    }

    #[test]
    fn waypoint_allows_nothing_d_and_missing_waypoint() {
        let gws = [waypoint_gw("waypoint", WAYPOINT_CLASS)];
        let svcs = [service(&[("istio.io/use-waypoint", "waypoint")])];
        let nothing = policy(
            "metadata: {name: allow-nothing, namespace: app}\nspec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}\n",
        );
        let a = run(&[AMBIENT], &svcs, &gws, &[nothing]);
        assert_eq!(codes(&a), vec!["waypoint-allows-nothing"]);
        assert_eq!(a.findings[0].severity, AuditSeverity::Error);
        let deny_all = policy(
            "metadata: {name: deny-all, namespace: app}\nspec:\n  action: DENY\n  targetRefs:\n  - {kind: Service, group: '', name: web}\n  rules: [{}]\n",
        );
        let a = run(&[AMBIENT], &svcs, &gws, &[deny_all]);
        assert_eq!(codes(&a), vec!["waypoint-allows-nothing"]);
        // A dry-run deny-all denies nothing.
        let dry = policy(
            "metadata: {name: dry, namespace: app, annotations: {istio.io/dry-run: 'true'}}\nspec:\n  action: DENY\n  targetRefs:\n  - {kind: Service, group: '', name: web}\n  rules: [{}]\n",
        );
        assert!(run(&[AMBIENT], &svcs, &gws, &[dry]).findings.is_empty());
        // The label names a waypoint that does not exist.
        let a = run(&[AMBIENT], &svcs, &[], &[]);
        assert_eq!(codes(&a), vec!["waypoint-missing"]);
    }

    #[test]
    fn ztunnel_sees_the_waypoints_identity() {
        let gws = [waypoint_gw("waypoint", WAYPOINT_CLASS)];
        let svcs = [service(&[("istio.io/use-waypoint", "waypoint")])];
        let from_a = policy(
            "metadata: {name: from-a, namespace: app}\nspec:\n  rules:\n  - from:\n    - source: {namespaces: [a]}\n",
        );
        let a = run(&[AMBIENT], &svcs, &gws, std::slice::from_ref(&from_a));
        assert_eq!(codes(&a), vec!["ztunnel-rejects-waypoint"]);
        assert!(
            a.findings[0]
                .message
                .contains("cluster.local/ns/app/sa/waypoint"),
            "{}",
            a.findings[0].message
        );
        let with_wp = policy(
            "metadata: {name: from-a, namespace: app}\nspec:\n  rules:\n  - from:\n    - source: {namespaces: [a]}\n    - source: {principals: [cluster.local/ns/app/sa/waypoint]}\n",
        );
        assert!(run(&[AMBIENT], &svcs, &gws, &[with_wp]).findings.is_empty());
        // Without a waypoint the client's own identity reaches ztunnel.
        assert!(
            run(&[AMBIENT], &[service(&[])], &gws, &[from_a])
                .findings
                .is_empty()
        );
    }

    #[test]
    fn plain_l4_policies_raise_nothing() {
        let p = policy(
            "metadata: {name: from-a, namespace: app}\nspec:\n  rules:\n  - from:\n    - source: {namespaces: [a]}\n",
        );
        let a = run(&[AMBIENT], &[service(&[])], &[], &[p]);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!(a.ztunnel[0].scope, "namespace");
        assert!(a.ztunnel[0].effect.starts_with("enforced as written"));
    }
}
