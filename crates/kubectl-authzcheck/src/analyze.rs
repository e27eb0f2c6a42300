//! Joining the layers: from the policy model (crates/meshpolicy) and what
//! Envoy loaded, build one pod's [`Report`] and its findings.
//!
//! This is the part of authzcheck that explains rather than lists: which
//! NetworkPolicies isolate the pod, what each AuthorizationPolicy means in one
//! line, whether the sidecar has loaded what the API holds (a policy applied
//! seconds ago is still propagating; one Envoy holds that the API no longer
//! has was deleted recently), policies on a pod without a sidecar, selectors
//! that match nothing, namespaces without injection, and where each
//! `_anonymous_match_nothing_` comes from. It is pure (no I/O), so every
//! finding is tested on hand-built models.

use std::collections::{BTreeMap, HashMap};

use meshpolicy::authz::Action;
use meshpolicy::{Cluster, CompiledAuthz, CompiledNetworkPolicy, Pod};

use crate::peerauth::ISTIO_PORTS;
use crate::report::{
    AmbientSection, AuthzEntry, Finding, Isolation, NetpolEntry, PodInfo, ProxySource, ProxyView,
    Report, Severity, WaypointEntry, WaypointPolicyEntry,
};
use meshpolicy::ambient::{DataplaneMode, WaypointUse, dataplane_mode};
use meshpolicy::ambient_audit::{AuditInput, AuditSeverity, GatewayInfo, ServiceInfo};

/// Policies younger than this that Envoy has not loaded are "still propagating".
pub const PROPAGATION_GRACE_SECONDS: i64 = 60;

/// What the analysis needs besides the proxy view.
#[derive(Debug, Clone)]
pub struct PodContext<'a> {
    /// The model: the pod's namespace (pods, policies) and the root namespace's policies.
    pub cluster: &'a Cluster,
    pub pod: &'a Pod,
    pub phase: String,
    /// Labels of the pod's namespace, when they could be read.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// Age in seconds of AuthorizationPolicies, by (namespace, name).
    pub ages: &'a HashMap<(String, String), i64>,
    /// Policies the model rejected (one message each).
    pub invalid: &'a [String],
    /// What ambient pods need besides the model (empty for sidecar pods).
    pub ambient: AmbientInputs<'a>,
}

/// The objects deciding ambient enforcement: Services, Gateways, and the
/// policies of waypoint namespaces outside the model.
#[derive(Debug, Clone, Copy, Default)]
pub struct AmbientInputs<'a> {
    pub services: &'a [ServiceInfo],
    pub gateways: &'a [GatewayInfo],
    pub extra_policies: &'a [meshpolicy::AuthorizationPolicy],
    /// Where ztunnel's configuration came from, or why it was not read.
    pub ztunnel_config: &'a str,
}

/// The word Envoy/istioctl uses for an AuthorizationPolicy action.
pub fn envoy_action(a: Action) -> &'static str {
    match a {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "LOG",
        Action::Custom => "CUSTOM",
    }
}

fn netpol_entry(np: &CompiledNetworkPolicy) -> NetpolEntry {
    let r = np.policy_ref();
    let d = np.describe();
    NetpolEntry {
        namespace: r.namespace,
        name: r.name,
        directions: d.directions.iter().map(|d| d.to_string()).collect(),
        selects: d.selects,
        ingress: d.ingress.unwrap_or_default(),
        egress: d.egress.unwrap_or_default(),
        change: None,
    }
}

fn selector_text(p: &CompiledAuthz) -> Option<String> {
    p.policy().spec.selector.as_ref().map(|s| {
        s.match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn matches_everything(r: &meshpolicy::authz::Rule) -> bool {
    r.from.is_empty() && r.to.is_empty() && r.when.is_empty()
}

/// What a policy means, in one line.
pub fn meaning(p: &CompiledAuthz) -> String {
    let rules = &p.policy().spec.rules;
    let n = rules.len();
    let plural = if n == 1 { "rule" } else { "rules" };
    let all = rules.iter().any(matches_everything);
    let base = match p.action() {
        Action::Allow if n == 0 => {
            "ALLOW with no rules: allows nothing, so every request is denied".to_string()
        }
        Action::Allow if all => "ALLOW matching every request: allows every request".into(),
        Action::Allow => format!(
            "allows only requests matching its {n} {plural}; requests no ALLOW policy matches are denied"
        ),
        Action::Deny if n == 0 => {
            "DENY with no rules: matches nothing, so it denies nothing".to_string()
        }
        Action::Deny if all => "DENY matching every request: denies every request".into(),
        Action::Deny => format!("denies requests matching its {n} {plural}"),
        Action::Audit => "AUDIT: logs matching requests, never allows or denies".into(),
        Action::Custom => match p.provider() {
            Some(pr) if n > 0 => {
                format!("delegates requests matching its {n} {plural} to ext-authz provider {pr}")
            }
            _ => "CUSTOM with no rules: delegates nothing".into(),
        },
    };
    if p.is_dry_run() {
        format!("dry-run (only logged, never enforced): {base}")
    } else {
        base
    }
}

/// The Envoy RBAC policy names a policy becomes.
pub fn envoy_names(p: &CompiledAuthz) -> Vec<String> {
    let r = p.policy_ref();
    let n = p.policy().spec.rules.len().max(1);
    (0..n)
        .map(|i| {
            let provider = (p.action() == Action::Custom).then(|| p.provider().unwrap_or_default());
            meshpolicy::authz::envoy_rule_name(&r.namespace, &r.name, i, provider)
        })
        .collect()
}

/// Rules Envoy holds for a policy (a policy with no rules becomes a never-matching rule[0]).
fn expected_envoy_rules(p: &CompiledAuthz) -> u32 {
    u32::try_from(p.policy().spec.rules.len().max(1)).unwrap_or(u32::MAX)
}

/// Whether the proxy holds the policy: `Some(rules)` if loaded.
fn loaded_rules(proxy: &ProxyView, p: &CompiledAuthz) -> Option<Option<u32>> {
    let r = p.policy_ref();
    let action = envoy_action(p.action());
    if p.is_dry_run() {
        let hidden = proxy.hidden.as_ref()?;
        return Some(
            hidden
                .iter()
                .find(|h| {
                    h.kind == "dry-run"
                        && h.policy == r.name
                        && h.namespace.as_deref() == Some(&r.namespace)
                })
                .map(|h| h.rules),
        );
    }
    if proxy.source == ProxySource::Unavailable {
        return None;
    }
    Some(
        proxy
            .rows
            .iter()
            .find(|row| {
                row.action == action
                    && row.policy == r.name
                    && row.namespace.as_deref() == Some(&r.namespace)
            })
            .map(|row| row.rules),
    )
}

fn age_text(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The NetworkPolicy section and its finding (the same for every dataplane mode).
fn network_section(
    cluster: &Cluster,
    pod: &Pod,
    findings: &mut Vec<Finding>,
) -> (Vec<NetpolEntry>, Isolation) {
    let netpols = cluster.network_policies_selecting(pod);
    let network_policies: Vec<NetpolEntry> = netpols.iter().map(|np| netpol_entry(np)).collect();
    let isolation = Isolation {
        ingress: network_policies
            .iter()
            .any(|e| e.directions.iter().any(|d| d == "ingress")),
        egress: network_policies
            .iter()
            .any(|e| e.directions.iter().any(|d| d == "egress")),
    };
    if network_policies.is_empty() {
        findings.push(Finding::new(
            Severity::Info,
            "not-isolated",
            "no NetworkPolicy selects this pod: Kubernetes allows all traffic in and out of it",
        ));
    } else {
        findings.push(Finding::new(
            Severity::Info,
            "probe-netpol",
            format!(
                "NetworkPolicy is enforced by the CNI plugin, which may ignore it: only a probe (`kubectl npexec FROM {}`) shows whether it is enforced here",
                pod.namespace
            ),
        ));
    }
    (network_policies, isolation)
}

/// Builds the report for one pod.
pub fn analyze(ctx: &PodContext<'_>, proxy: ProxyView) -> Report {
    let pod = ctx.pod;
    let cluster = ctx.cluster;
    let root = cluster.options().root_namespace.clone();
    let mut findings = Vec::new();

    for msg in ctx.invalid {
        findings.push(Finding::new(
            Severity::Error,
            "invalid-policy",
            format!("{msg} (Istio or Kubernetes would reject or ignore it; it is left out here)"),
        ));
    }

    if ctx.mode() == DataplaneMode::Ambient {
        return analyze_ambient(ctx, proxy, findings);
    }
    let (network_policies, isolation) = network_section(cluster, pod, &mut findings);

    // Istio AuthorizationPolicy from the API (for a waypoint's own pod: the
    // policies attached to that waypoint).
    let waypoint = ctx.waypoint_of_pod();
    let applying = match &waypoint {
        Some(w) => attached_to(ctx, w),
        None => cluster.authorization_policies_for(pod),
    };
    let mut authorization_policies = Vec::new();
    for p in &applying {
        let r = p.policy_ref();
        let selector = selector_text(p);
        let scope = if waypoint.is_some() {
            "waypoint"
        } else if r.namespace == root {
            "mesh"
        } else if selector.is_some() {
            "selector"
        } else {
            "namespace"
        };
        let loaded = loaded_rules(&proxy, p);
        let age = ctx
            .ages
            .get(&(r.namespace.clone(), r.name.clone()))
            .copied();
        let label = format!("{}/{}", r.namespace, r.name);
        match loaded {
            Some(None) if pod.has_sidecar => {
                let why = match age {
                    Some(a) if a < PROPAGATION_GRACE_SECONDS => format!(
                        "created {} ago: Istio is probably still pushing it to the sidecar; re-run in a few seconds",
                        age_text(a)
                    ),
                    Some(a) => format!(
                        "created {} ago, so this is not propagation delay: check istiod and `istioctl proxy-status`",
                        age_text(a)
                    ),
                    None => "it may still be propagating; re-run in a few seconds".into(),
                };
                findings.push(Finding::new(
                    Severity::Warning,
                    "not-loaded",
                    format!(
                        "AuthorizationPolicy {label} applies to this pod but its sidecar has not loaded it yet ({why})"
                    ),
                ));
            }
            Some(Some(n)) if n != expected_envoy_rules(p) && p.action() != Action::Custom => {
                findings.push(Finding::new(
                    Severity::Warning,
                    "rules-differ",
                    format!(
                        "AuthorizationPolicy {label} has {} rule(s) in the API but the sidecar holds {n}: an update has not reached the sidecar yet",
                        expected_envoy_rules(p)
                    ),
                ));
            }
            _ => {}
        }
        let rules = p.policy().spec.rules.len();
        if p.action() == Action::Allow && rules == 0 && !p.is_dry_run() {
            findings.push(Finding::new(
                Severity::Info,
                "allow-nothing",
                format!(
                    "AuthorizationPolicy {label} is ALLOW with no rules: it allows nothing, so every request to this pod is denied (istioctl shows it as `ALLOW {}.{} 1`; DENY with `rules: [{{}}]` says the same explicitly)",
                    r.name, r.namespace
                ),
            ));
        }
        if p.is_dry_run() {
            findings.push(Finding::new(
                Severity::Info,
                "dry-run",
                format!(
                    "AuthorizationPolicy {label} is dry-run: Envoy only logs what it would do (shadow rules) and istioctl's table does not show it"
                ),
            ));
        }
        if let Some(provider) = p.provider() {
            findings.push(Finding::new(
                Severity::Info,
                "custom",
                format!(
                    "AuthorizationPolicy {label} delegates to ext-authz provider {provider}: that service decides, outside Envoy's RBAC"
                ),
            ));
        }
        let summary = p.summary(&root);
        authorization_policies.push(AuthzEntry {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            action: p.action().to_string(),
            rules,
            scope: scope.to_string(),
            selector,
            dry_run: p.is_dry_run(),
            provider: p.provider().map(str::to_string),
            envoy_names: envoy_names(p),
            meaning: meaning(p),
            details: summary.into_iter().skip(1).collect(),
            loaded: if pod.has_sidecar {
                loaded.map(|l| l.is_some())
            } else {
                Some(false)
            },
            age_seconds: age,
            change: None,
        });
    }

    if !pod.has_sidecar && !applying.is_empty() {
        findings.push(Finding::new(
            Severity::Warning,
            "no-sidecar",
            format!(
                "{} to this pod but it has no istio-proxy sidecar: none is enforced (inject a sidecar and restart the pod)",
                if applying.len() == 1 {
                    "1 AuthorizationPolicy applies".to_string()
                } else {
                    format!("{} AuthorizationPolicies apply", applying.len())
                }
            ),
        ));
    }

    if pod.has_sidecar {
        findings.extend(denies_everything(pod, &applying, &proxy));
    }

    // Loaded by Envoy but not in the API (or no longer applying).
    let mut stale: Vec<(String, String, String)> = proxy
        .rows
        .iter()
        .filter_map(|row| {
            Some((
                row.action.clone(),
                row.policy.clone(),
                row.namespace.clone()?,
            ))
        })
        .collect();
    if let Some(hidden) = &proxy.hidden {
        stale.extend(
            hidden
                .iter()
                .filter(|h| h.kind == "dry-run")
                .filter_map(|h| Some((h.action.clone(), h.policy.clone(), h.namespace.clone()?))),
        );
    }
    for (action, name, ns) in stale {
        let applies = applying.iter().any(|p| {
            let r = p.policy_ref();
            r.name == name && r.namespace == ns
        });
        if applies {
            continue;
        }
        let in_api = cluster
            .authorization_policies_in(&ns)
            .into_iter()
            .find(|p| p.policy_ref().name == name);
        let msg = match in_api {
            Some(p) => format!(
                "the sidecar still enforces {action} {ns}/{name}, which no longer applies to this pod ({}): the change has not reached the sidecar yet",
                p.summary(&root).first().cloned().unwrap_or_default()
            ),
            None if ns != pod.namespace && ns != root => format!(
                "the sidecar enforces {action} {ns}/{name}, from a namespace that is neither the pod's nor the root namespace {root}: is --root-namespace right?"
            ),
            None => format!(
                "the sidecar still enforces {action} {ns}/{name}, which is not in the API: it was deleted recently and the sidecar has not caught up yet"
            ),
        };
        findings.push(Finding::new(Severity::Warning, "not-in-api", msg));
    }

    // Selectors in the pod's namespace: missing this pod, or matching nothing (IST0127).
    let ns_pods: Vec<&Pod> = cluster
        .pods()
        .iter()
        .filter(|p| p.namespace == pod.namespace)
        .collect();
    let ns_policies = cluster.authorization_policies_in(&pod.namespace);
    for p in &ns_policies {
        let Some(sel) = selector_text(p) else {
            continue;
        };
        let r = p.policy_ref();
        let matches_any = ns_pods.iter().any(|q| p.applies_to(q, &root));
        if !matches_any {
            findings.push(Finding::new(
                Severity::Warning,
                "selector-matches-nothing",
                format!(
                    "AuthorizationPolicy {}/{} selects {sel}, which matches no pod in namespace {} (like istioctl analyze IST0127)",
                    r.namespace, r.name, r.namespace
                ),
            ));
        } else if !p.applies_to(pod, &root) {
            findings.push(Finding::new(
                Severity::Info,
                "selector-misses",
                format!(
                    "AuthorizationPolicy {}/{} selects {sel}, which does not match this pod: it does not apply here",
                    r.namespace, r.name
                ),
            ));
        }
    }

    // Namespace injection.
    let injection = ctx.namespace_labels.as_ref().and_then(|l| {
        meshpolicy::injection::namespace_injection_label(l).map(|(k, v)| format!("{k}={v}"))
    });
    if let Some(labels) = &ctx.namespace_labels {
        let ns = meshpolicy::Namespace::new(&pod.namespace, labels.clone());
        let ambient_ns = labels
            .get(meshpolicy::ambient::DATAPLANE_MODE_LABEL)
            .is_some_and(|v| v == "ambient");
        if !ns.injection_enabled() && !ns_policies.is_empty() && !ambient_ns && waypoint.is_none() {
            findings.push(Finding::new(
                if pod.has_sidecar {
                    Severity::Info
                } else {
                    Severity::Warning
                },
                "no-injection",
                format!(
                    "namespace {} is not labelled istio-injection=enabled (nor istio.io/rev) while {} AuthorizationPolic{} target it: its pods get no sidecar, so nothing enforces them",
                    pod.namespace,
                    ns_policies.len(),
                    if ns_policies.len() == 1 { "y" } else { "ies" }
                ),
            ));
        }
    }

    let (peer_authentication, pa_findings) = crate::peerauth::section(cluster, pod);
    findings.extend(
        pa_findings
            .into_iter()
            .map(|f| Finding::new(Severity::Warning, f.code, f.message)),
    );

    findings.extend(proxy_findings(&proxy));
    if proxy.source == ProxySource::Unavailable && pod.has_sidecar {
        findings.push(Finding::new(
            Severity::Warning,
            "proxy-unavailable",
            format!("what the sidecar loaded is unknown: {}", proxy.detail),
        ));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));

    Report {
        pod: Some(PodInfo {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            sidecar: pod.has_sidecar,
            phase: ctx.phase.clone(),
            labels: pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            namespace_injection: injection,
        }),
        network_isolation: Some(isolation),
        network_policies,
        authorization_policies,
        peer_authentication: Some(peer_authentication),
        proxy,
        findings,
        what_if: None,
        ambient: None,
    }
}

impl<'a> PodContext<'a> {
    /// The waypoint this pod runs, when it is a waypoint's own pod (label
    /// `gateway.networking.k8s.io/gateway-name` naming a Gateway of class
    /// `istio-waypoint` in its namespace).
    pub fn waypoint_of_pod(&self) -> Option<meshpolicy::ambient::Waypoint> {
        if !meshpolicy::ambient::is_waypoint_pod(&self.pod.labels) {
            return None;
        }
        let name = self.pod.labels.get(WAYPOINT_POD_LABEL)?;
        self.ambient
            .gateways
            .iter()
            .find(|g| g.namespace == self.pod.namespace && &g.name == name)
            .and_then(GatewayInfo::waypoint)
    }

    /// The pod's dataplane mode (meshpolicy::ambient's rule).
    pub fn mode(&self) -> DataplaneMode {
        let empty = BTreeMap::new();
        dataplane_mode(
            &self.pod.labels,
            self.pod.has_sidecar,
            self.namespace_labels.as_ref().unwrap_or(&empty),
        )
    }
}

/// The label a waypoint's pods carry (the Gateway API's).
pub const WAYPOINT_POD_LABEL: &str = meshpolicy::ambient::GATEWAY_NAME_LABEL;

/// The policies waypoint `w` enforces: attached to its Gateway, to the
/// istio-waypoint class from the root namespace, or to a Service using it
/// (meshpolicy::ambient's attachment rule).
fn attached_to<'c>(
    ctx: &PodContext<'c>,
    w: &meshpolicy::ambient::Waypoint,
) -> Vec<&'c CompiledAuthz> {
    let root = ctx.cluster.options().root_namespace.clone();
    let empty = BTreeMap::new();
    let ns_labels = ctx.namespace_labels.as_ref().unwrap_or(&empty);
    let services: Vec<(&str, &str)> = ctx
        .ambient
        .services
        .iter()
        .filter(|s| {
            matches!(
                meshpolicy::ambient_audit::service_waypoint(s, ns_labels, ctx.ambient.gateways),
                WaypointUse::Uses { ref waypoint, .. } if waypoint == w
            )
        })
        .map(|s| (s.namespace.as_str(), s.name.as_str()))
        .collect();
    let mut out: Vec<&CompiledAuthz> = ctx.cluster.authorization_policies_in(&w.namespace);
    if w.namespace != root {
        out.extend(ctx.cluster.authorization_policies_in(&root));
    }
    out.retain(|c| {
        meshpolicy::ambient::waypoint_applies(c.policy(), w, None, &root)
            || services
                .iter()
                .any(|s| meshpolicy::ambient::waypoint_applies(c.policy(), w, Some(*s), &root))
    });
    out
}

fn severity_of(s: AuditSeverity) -> Severity {
    match s {
        AuditSeverity::Info => Severity::Info,
        AuditSeverity::Warning => Severity::Warning,
        AuditSeverity::Error => Severity::Error,
    }
}

/// The report for a pod in ambient mode: no sidecar section or advice;
/// ztunnel's L4 view of the policies bound to it, the waypoint each of its
/// Services uses with the policies attached there, and the ambient findings
/// (meshpolicy::ambient_audit). `proxy` is the waypoint's Envoy, if read.
fn analyze_ambient(ctx: &PodContext<'_>, proxy: ProxyView, mut findings: Vec<Finding>) -> Report {
    let pod = ctx.pod;
    let cluster = ctx.cluster;
    let root = cluster.options().root_namespace.clone();
    let (network_policies, isolation) = network_section(cluster, pod, &mut findings);
    let mut policies: Vec<meshpolicy::AuthorizationPolicy> = cluster
        .authorization_policies_in(&pod.namespace)
        .into_iter()
        .chain(if pod.namespace == root {
            Vec::new()
        } else {
            cluster.authorization_policies_in(&root)
        })
        .map(|c| c.policy().clone())
        .collect();
    policies.extend(ctx.ambient.extra_policies.iter().cloned());
    let empty = BTreeMap::new();
    let ns_labels = ctx.namespace_labels.as_ref().unwrap_or(&empty);
    let audit = meshpolicy::ambient_audit::audit(&AuditInput {
        pod,
        namespace_labels: ns_labels,
        services: ctx.ambient.services,
        gateways: ctx.ambient.gateways,
        policies: &policies,
        root_namespace: &root,
    });
    findings.extend(
        audit
            .findings
            .iter()
            .map(|f| Finding::new(severity_of(f.severity), &f.code, f.message.clone())),
    );
    let read = proxy.source != ProxySource::Unavailable;
    let mut waypoints = Vec::new();
    for sw in &audit.services {
        let (waypoint, state, bound_by) = match &sw.waypoint {
            WaypointUse::None => (None, "none", None),
            WaypointUse::Uses { waypoint, bound_by } => (
                Some(format!("{}/{}", waypoint.namespace, waypoint.name)),
                "uses",
                Some(bound_by.clone()),
            ),
            WaypointUse::Missing {
                namespace,
                name,
                bound_by,
            } => (
                Some(format!("{namespace}/{name}")),
                "missing",
                Some(bound_by.clone()),
            ),
            WaypointUse::NotFor { waypoint, bound_by } => (
                Some(format!("{}/{}", waypoint.namespace, waypoint.name)),
                "not-for-services",
                Some(bound_by.clone()),
            ),
        };
        let mut entries = Vec::new();
        for wp in &sw.policies {
            let compiled = policies
                .iter()
                .find(|ap| {
                    ap.metadata.namespace.as_deref() == Some(wp.policy.namespace.as_str())
                        && ap.metadata.name.as_deref() == Some(wp.policy.name.as_str())
                })
                .and_then(|ap| CompiledAuthz::compile(ap).ok());
            let loaded = read.then(|| {
                proxy.rows.iter().any(|row| {
                    row.policy == wp.policy.name
                        && row.namespace.as_deref() == Some(wp.policy.namespace.as_str())
                }) || proxy.hidden.iter().flatten().any(|h| {
                    h.policy == wp.policy.name
                        && h.namespace.as_deref() == Some(wp.policy.namespace.as_str())
                })
            });
            if loaded == Some(false) && !wp.dry_run {
                findings.push(Finding::new(
                    Severity::Warning,
                    "not-loaded",
                    format!(
                        "AuthorizationPolicy {} is attached to waypoint {} but its Envoy has not loaded it yet (it may still be propagating; re-run in a few seconds)",
                        wp.policy,
                        waypoint.as_deref().unwrap_or("?")
                    ),
                ));
            }
            entries.push(WaypointPolicyEntry {
                namespace: wp.policy.namespace.clone(),
                name: wp.policy.name.clone(),
                action: wp.action.clone(),
                rules: wp.rules,
                via: wp.via.clone(),
                dry_run: wp.dry_run,
                meaning: compiled.as_ref().map(meaning).unwrap_or_default(),
                loaded,
            });
        }
        waypoints.push(WaypointEntry {
            service: sw.service.clone(),
            waypoint,
            state: state.to_string(),
            bound_by,
            policies: entries,
        });
    }
    let uses_waypoint = waypoints.iter().any(|w| w.state == "uses");
    findings.push(Finding::new(
        Severity::Info,
        "ambient",
        format!(
            "pod {}/{} is in Istio ambient mode (no sidecar): its node's ztunnel enforces L4 AuthorizationPolicy (a denial resets the connection: kubectl rbaclog -n {root} -l app=ztunnel){}",
            pod.namespace,
            pod.name,
            if uses_waypoint {
                "; the waypoint of its Services enforces the policies attached with targetRefs (a denial is a 403)"
            } else {
                "; no waypoint serves its Services, so no L7 policy is enforced for it"
            }
        ),
    ));
    let (mut peer_authentication, pa_findings) = crate::peerauth::section(cluster, pod);
    // ztunnel enforces PeerAuthentication for ambient pods.
    peer_authentication.enforced = true;
    findings.extend(
        pa_findings
            .into_iter()
            .filter(|f| f.code != "peerauth-not-enforced")
            .map(|f| Finding::new(Severity::Warning, f.code, f.message)),
    );
    findings.extend(proxy_findings(&proxy));
    if !read && uses_waypoint {
        findings.push(Finding::new(
            Severity::Warning,
            "proxy-unavailable",
            format!("what the waypoint loaded is unknown: {}", proxy.detail),
        ));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Report {
        pod: Some(PodInfo {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            sidecar: false,
            phase: ctx.phase.clone(),
            labels: pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            namespace_injection: Some(
                ns_labels
                    .get(meshpolicy::ambient::DATAPLANE_MODE_LABEL)
                    .map(|v| format!("{}={v}", meshpolicy::ambient::DATAPLANE_MODE_LABEL))
                    .unwrap_or_else(|| "pod enrolled in ambient".into()),
            ),
        }),
        network_isolation: Some(isolation),
        network_policies,
        authorization_policies: Vec::new(),
        peer_authentication: Some(peer_authentication),
        ambient: Some(AmbientSection {
            ztunnel: audit.ztunnel,
            ztunnel_config: ctx.ambient.ztunnel_config.to_string(),
            waypoints,
        }),
        proxy,
        findings,
        what_if: None,
    }
}

/// The `denies-everything` error: nothing can reach the pod, on any port,
/// because of AuthorizationPolicy. From the API: an enforced DENY policy
/// matching every request, or enforced ALLOW policies none of which has a
/// rule. From the config dump: the inbound filter chain of every TCP port the
/// pod declares holds an empty ALLOW rule set (Istio builds one when no ALLOW
/// rule translates for a chain, e.g. only HTTP fields on a TCP port); when
/// only some ports are so, it is the warning `port-denies-everything`. A
/// script relies on `error` here, so `--exit-code` fails for a real outage.
pub fn denies_everything(
    pod: &Pod,
    applying: &[&CompiledAuthz],
    proxy: &ProxyView,
) -> Option<Finding> {
    let label = |p: &CompiledAuthz| {
        let r = p.policy_ref();
        format!("{}/{}", r.namespace, r.name)
    };
    let enforced: Vec<&CompiledAuthz> = applying
        .iter()
        .copied()
        .filter(|p| !p.is_dry_run())
        .collect();
    let deny_all: Vec<String> = enforced
        .iter()
        .filter(|p| {
            p.action() == Action::Deny && p.policy().spec.rules.iter().any(matches_everything)
        })
        .map(|p| label(p))
        .collect();
    if !deny_all.is_empty() {
        return Some(Finding::new(
            Severity::Error,
            "denies-everything",
            format!(
                "every request to this pod is denied, on every port: DENY {} matches every request",
                deny_all.join(", ")
            ),
        ));
    }
    let allows: Vec<&CompiledAuthz> = enforced
        .iter()
        .copied()
        .filter(|p| p.action() == Action::Allow)
        .collect();
    if !allows.is_empty() && allows.iter().all(|p| p.policy().spec.rules.is_empty()) {
        return Some(Finding::new(
            Severity::Error,
            "denies-everything",
            format!(
                "every request to this pod is denied, on every port: ALLOW {} applies but has no rule, so nothing is allowed",
                allows
                    .iter()
                    .map(|p| label(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    // The config dump: per declared port, whether its inbound filter chain
    // (Istio names it `ADDRESS_PORT`) holds an ALLOW rule set with no policy.
    let denied_chain = |port: u16| {
        proxy.anonymous.iter().find(|a| {
            a.action == "ALLOW"
                && a.origin == "empty_rule_set"
                && a.location.as_deref().is_some_and(|l| {
                    l.rsplit_once(" chain ")
                        .is_some_and(|(_, chain)| chain.ends_with(&format!("_{port}")))
                })
        })
    };
    let mut ports: Vec<u16> = pod
        .ports
        .iter()
        .filter(|p| p.protocol == meshpolicy::Protocol::Tcp && !ISTIO_PORTS.contains(&p.port))
        .map(|p| p.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let denied: Vec<String> = ports
        .iter()
        .filter_map(|&p| denied_chain(p).map(|a| a.location.clone().unwrap_or_default()))
        .collect();
    if denied.is_empty() {
        return None;
    }
    let ports_text = ports
        .iter()
        .filter(|&&p| denied_chain(p).is_some())
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let why = "the ALLOW policies have no rule that applies there (e.g. only HTTP fields such as paths or methods on a TCP port)";
    Some(if denied.len() == ports.len() {
        Finding::new(
            Severity::Error,
            "denies-everything",
            format!(
                "every request to this pod is denied, on every port it declares ({ports_text}): Envoy's ALLOW rule set there holds no policy ({}); {why}",
                denied.join("; ")
            ),
        )
    } else {
        Finding::new(
            Severity::Warning,
            "port-denies-everything",
            format!(
                "every request to port {ports_text} of this pod is denied: Envoy's ALLOW rule set there holds no policy ({}); {why}",
                denied.join("; ")
            ),
        )
    })
}

/// Findings that only need the proxy view: anonymous entries explained.
pub fn proxy_findings(proxy: &ProxyView) -> Vec<Finding> {
    proxy
        .anonymous
        .iter()
        .map(|a| {
            let at = a
                .location
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            // Expected Envoy behaviour, not a fault: explained, never a warning.
            Finding::new(
                Severity::Info,
                "anonymous-match-nothing",
                format!(
                    "{} _anonymous_match_nothing_{at}: {}",
                    a.action, a.explanation
                ),
            )
        })
        .collect()
}

/// The report for a config dump with no cluster.
pub fn offline(proxy: ProxyView) -> Report {
    let mut findings = proxy_findings(&proxy);
    for h in proxy.hidden.iter().flatten() {
        let name = match &h.namespace {
            Some(ns) => format!("{ns}/{}", h.policy),
            None => h.policy.clone(),
        };
        let msg = if h.kind == "dry-run" {
            format!(
                "{} {name} is dry-run: Envoy only logs what it would do (shadow rules) and istioctl's table does not show it",
                h.action
            )
        } else {
            format!(
                "CUSTOM {name} delegates to ext-authz provider {}",
                h.provider
                    .as_deref()
                    .unwrap_or("(not named in the dump; Istio before 1.30)")
            )
        };
        findings.push(Finding::new(Severity::Info, &h.kind, msg));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Report {
        pod: None,
        network_isolation: None,
        network_policies: Vec::new(),
        authorization_policies: Vec::new(),
        peer_authentication: None,
        proxy,
        findings,
        what_if: None,
        ambient: None,
    }
}

#[cfg(test)]
mod tests;
