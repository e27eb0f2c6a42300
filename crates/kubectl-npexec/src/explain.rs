//! Naming the policies behind each probe (`--explain`) or predicting the verdict without probing (`--predict`).
//!
//! A probe only says what happened; the point of `--explain` is to say why:
//! which NetworkPolicies select the source (egress) and the destination
//! (ingress) and which rule admitted the connection or that none did, which
//! AuthorizationPolicy decided at the destination sidecar (from meshpolicy's
//! engine and from Envoy's own RBAC log lines), and where the two disagree
//! with what the probe saw. The classic disagreement is a NetworkPolicy that
//! should block while traffic got through: many CNIs do not enforce
//! NetworkPolicy at all, and the walk-through warns about it. `--predict`
//! runs the same engine analysis and turns it into a predicted verdict
//! without any exec. Everything here except [`analyse`] is pure, so the
//! analysis is unit-tested on models built from manifests.

use std::collections::{BTreeMap, BTreeSet};

use kubeplugin::{Kube, PluginError};
use meshpolicy::envoy::PolicyId;
use meshpolicy::{
    Action, AuthzVerdict, Cluster, ClusterOptions, Decision, Endpoint, HttpAttributes, NetVerdict,
    Protocol,
};

use meshpolicy::netpol::SideVerdict;
use meshpolicy::peerauth::{
    Addressed, ClientTransport, MtlsMode, MtlsOutcome, MtlsPrediction, Scope,
};

pub use crate::analysis::{
    Analysis, AnalysisMode, AuthzLayer, Effect, MtlsLayer, NetworkLayer, NoteSource, PolicyKind,
    PolicyNote,
};
use crate::plan::{PlannedProbe, ProbePlan, ServiceTarget};
use crate::probe::Request;
use crate::sidecar::{EnvoyDecision, EnvoyEngine};
use crate::verdict::Verdict;

/// Analysis plus the policy notes of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluated {
    pub analysis: Analysis,
    pub policies: Vec<PolicyNote>,
}

/// What the engine needs to know about one probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInput<'a> {
    /// Source pod (namespace, name); None when no source pod could be used.
    pub source: Option<(&'a str, &'a str)>,
    /// The Service port requested; None for `--url`.
    pub target: Option<&'a ServiceTarget>,
    pub request: &'a Request,
    /// The host curl sends (`svc.ns.svc.cluster.local`).
    pub host: &'a str,
    /// The waypoint the destination Service uses (ambient), resolved by the plan.
    pub waypoint: Option<&'a meshpolicy::ambient::Waypoint>,
}

impl<'a> ProbeInput<'a> {
    /// The input for a planned probe.
    pub fn of(p: &'a PlannedProbe) -> Self {
        ProbeInput {
            source: p
                .source
                .as_ref()
                .ok()
                .map(|s| (s.namespace.as_str(), s.pod.as_str())),
            target: p.target.as_ref(),
            request: &p.request,
            host: &p.ctx.host,
            waypoint: p.ctx.destination_waypoint.as_ref(),
        }
    }
}

/// The HTTP attributes the destination sidecar sees for this request.
pub fn http_attributes(req: &Request, host: &str, port: u16) -> HttpAttributes {
    let path = req
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .unwrap_or("/");
    let path = path.split('#').next().unwrap_or("/").to_string();
    let host = if port == 80 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let headers: BTreeMap<String, String> = req
        .headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpAttributes {
        method: req.method.clone(),
        path,
        host,
        headers,
    }
}

/// The pods a Service selects, in model order (Ready first, then by name).
fn selected_pods<'c>(cluster: &'c Cluster, target: &ServiceTarget) -> Vec<&'c meshpolicy::Pod> {
    let Some(sel) = target.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let Ok(sel) = meshpolicy::Selector::from_labels(sel) else {
        return Vec::new();
    };
    cluster
        .pods()
        .iter()
        .filter(|p| p.namespace == target.namespace && sel.matches(&p.labels))
        .collect()
}

fn target_port(target: &ServiceTarget, pod: &meshpolicy::Pod, notes: &mut Vec<String>) -> u16 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &target.target_port {
        None => target.port,
        Some(IntOrString::Int(n)) => u16::try_from(*n).unwrap_or(target.port),
        Some(IntOrString::String(name)) => match pod.named_port(name, Protocol::Tcp) {
            Some(p) => p,
            None => {
                notes.push(format!(
                    "pod {}/{} declares no port named {name:?} (the Service's targetPort); evaluated port {}",
                    pod.namespace, pod.name, target.port
                ));
                target.port
            }
        },
    }
}

fn network_notes(side: &SideVerdict, port: u16) -> Vec<PolicyNote> {
    let dir = side.direction.to_string();
    let pod = side.pod.as_ref().map(|p| p.to_string()).unwrap_or_default();
    side.selecting
        .iter()
        .map(|p| {
            let rule = side
                .allowed_by
                .iter()
                .find(|r| &r.policy == p)
                .map(|r| r.rule_index);
            let (effect, detail) = match rule {
                Some(i) => (
                    Effect::Allowed,
                    format!("selects pod {pod} for {dir}; its {dir} rule {i} admits TCP {port}"),
                ),
                None if side.allowed => (
                    Effect::NoMatch,
                    format!(
                        "selects pod {pod} for {dir}; none of its rules admits TCP {port} (another policy does)"
                    ),
                ),
                None => (
                    Effect::Denied,
                    format!(
                        "selects pod {pod} for {dir} and no rule of any selecting policy admits TCP {port}: dropped"
                    ),
                ),
            };
            PolicyNote {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some(p.namespace.clone()),
                name: Some(p.name.clone()),
                direction: Some(dir.clone()),
                rule,
                action: None,
                policy_id: None,
                effect,
                detail,
                source: NoteSource::Engine,
            }
        })
        .collect()
}

fn same_policy(id: &PolicyId, ns: &str, name: &str) -> bool {
    id.namespace.as_deref() == Some(ns) && id.name.as_deref() == Some(name)
}

fn authz_notes(v: &AuthzVerdict) -> Vec<PolicyNote> {
    let decided = v.policy_id.as_deref().map(PolicyId::parse);
    v.applicable
        .iter()
        .map(|ap| {
            let (ns, name) = (ap.policy.namespace.as_str(), ap.policy.name.as_str());
            let mine = |id: &str| same_policy(&PolicyId::parse(id), ns, name);
            let mut policy_id = None;
            let mut rule = None;
            let (effect, detail) = if !v.enforced {
                (
                    Effect::NotEnforced,
                    "applies, but the destination pod has no Istio sidecar to enforce it".to_string(),
                )
            } else if ap.dry_run {
                let shadow = v
                    .shadow
                    .iter()
                    .find(|s| s.action == ap.action && (s.policy_id == "none" || mine(&s.policy_id)));
                match shadow {
                    Some(s) => {
                        if s.policy_id != "none" {
                            policy_id = Some(s.policy_id.clone());
                        }
                        (
                            Effect::DryRun,
                            format!("dry-run {}: Envoy would log {} (not enforced)", ap.action, s.outcome),
                        )
                    }
                    None => (Effect::DryRun, format!("dry-run {} (not enforced)", ap.action)),
                }
            } else if ap.action == Action::Custom {
                match v.delegated.iter().find(|d| mine(&d.policy_id)) {
                    Some(d) => {
                        policy_id = Some(d.policy_id.clone());
                        (
                            Effect::Delegated,
                            format!("CUSTOM rule matched: the external authorizer {} decides", d.provider),
                        )
                    }
                    None => (Effect::NoMatch, "CUSTOM policy; no rule matches this request".to_string()),
                }
            } else if ap.action == Action::Audit {
                match v.audited.iter().find(|id| mine(id)) {
                    Some(id) => {
                        policy_id = Some(id.clone());
                        (Effect::Audited, "AUDIT rule matched: logged, not decisive".to_string())
                    }
                    None => (Effect::NoMatch, "AUDIT policy; no rule matches this request".to_string()),
                }
            } else if let Some(id) = decided.as_ref().filter(|id| same_policy(id, ns, name)) {
                policy_id = Some(id.raw.clone());
                rule = id.rule_index().map(|r| r as usize);
                match v.decision {
                    Decision::Deny => (
                        Effect::Denied,
                        format!("{} rule {} matches: denied", ap.action, id.rule.as_deref().unwrap_or("?")),
                    ),
                    _ => (
                        Effect::Allowed,
                        format!("{} rule {} matches: allowed", ap.action, id.rule.as_deref().unwrap_or("?")),
                    ),
                }
            } else if ap.action == Action::Allow && decided.as_ref().is_some_and(|d| d.none) {
                (
                    Effect::Denied,
                    "ALLOW policy with no rule matching this request; since ALLOW policies apply and none matches, the request is denied (Envoy: policy none)".to_string(),
                )
            } else {
                (Effect::NoMatch, format!("{} policy; no rule matches this request", ap.action))
            };
            PolicyNote {
                kind: PolicyKind::AuthorizationPolicy,
                namespace: Some(ns.to_string()),
                name: Some(name.to_string()),
                direction: None,
                rule,
                action: Some(ap.action.to_string()),
                policy_id,
                effect,
                detail,
                source: NoteSource::Engine,
            }
        })
        .collect()
}

/// The verdict the engine expects from the layers, in the order traffic
/// meets them: the CNI (NetworkPolicy), the sidecar's listener
/// (PeerAuthentication), then its RBAC filter (AuthorizationPolicy).
pub fn engine_verdict(net: &NetVerdict, mtls_fails: bool, authz: &AuthzVerdict) -> Verdict {
    if !net.allowed {
        Verdict::BlockedNetwork
    } else if mtls_fails {
        Verdict::MtlsFailure
    } else if !authz.enforced {
        Verdict::Allowed
    } else {
        match authz.decision {
            Decision::Deny => Verdict::DeniedRbac,
            Decision::CannotEvaluate => Verdict::Unknown,
            Decision::Allow if !authz.delegated.is_empty() => Verdict::Unknown,
            Decision::Allow => Verdict::Allowed,
        }
    }
}

/// Evaluates one probe against the model.
pub fn evaluate(cluster: &Cluster, input: &ProbeInput<'_>) -> Evaluated {
    let mut out = Evaluated::default();
    let notes = &mut out.analysis.notes;
    let Some((src_ns, src_pod)) = input.source else {
        notes.push("no source pod: nothing to evaluate".into());
        return out;
    };
    let Some(target) = input.target else {
        notes.push(
            "--url targets are not analysed: only Services in TO namespaces are mapped to pods"
                .into(),
        );
        return out;
    };
    let Some(source) = cluster.pod(src_ns, src_pod) else {
        notes.push(format!(
            "source pod {src_ns}/{src_pod} is not running any more: nothing to evaluate"
        ));
        return out;
    };
    let pods = selected_pods(cluster, target);
    let Some(dst) = pods.first().copied() else {
        let why = if target.selector.as_ref().is_none_or(|s| s.is_empty()) {
            format!(
                "Service {}/{} has no selector: its endpoints are managed by hand and not analysed",
                target.namespace, target.service
            )
        } else {
            format!(
                "Service {}/{} selects no running pod: nothing answers on port {}",
                target.namespace, target.service, target.port
            )
        };
        notes.push(why);
        // Without endpoints the client's sidecar answers 503, plain kube-proxy refuses.
        out.analysis.engine_verdict = Some(if source.has_sidecar {
            Verdict::HttpError
        } else {
            Verdict::Refused
        });
        return out;
    };
    if pods.len() > 1 {
        notes.push(format!(
            "{} pods back Service {}/{}; evaluated {} (policies usually select them alike)",
            pods.len(),
            target.namespace,
            target.service,
            dst.name
        ));
    }
    out.analysis.destination_pod = Some(dst.name.clone());
    let port = target_port(target, dst, notes);
    let src = Endpoint::pod(src_ns, src_pod);
    let dst_ep = Endpoint::pod(&dst.namespace, &dst.name);
    let net = match cluster.evaluate_network(&src, &dst_ep, port, Protocol::Tcp) {
        Ok(n) => n,
        Err(e) => {
            notes.push(format!("NetworkPolicy not evaluated: {e}"));
            return out;
        }
    };
    // A TCP or TLS probe reaches network RBAC: no HTTP attributes.
    let http = (input.request.kind.speaks_http())
        .then(|| http_attributes(input.request, input.host, target.port));
    let authz = cluster
        .authz_request(&src, &dst.namespace, &dst.name, port, http)
        .and_then(|req| {
            let v = cluster.evaluate_authz(&req)?;
            let service = (target.namespace.as_str(), target.service.as_str());
            Ok(ambient_hook(cluster, source, dst, &req, input.waypoint, service).unwrap_or(v))
        });
    let authz = match authz {
        Ok(a) => a,
        Err(e) => {
            notes.push(format!("AuthorizationPolicy not evaluated: {e}"));
            return out;
        }
    };
    out.policies.extend(network_notes(&net.egress, port));
    out.policies.extend(network_notes(&net.ingress, port));
    let mtls = dst.has_sidecar.then(|| {
        let m = cluster.predict_mtls(Some(source), dst, port, Addressed::Service);
        mtls_layer(&m, port, source.has_sidecar)
    });
    let mtls_fails = mtls.as_ref().is_some_and(|(l, _)| l.fails);
    if let Some((_, Some(note))) = &mtls {
        let mut note = note.clone();
        if !net.allowed {
            note.detail
                .push_str(" (not reached: NetworkPolicy drops the connection first)");
        }
        out.policies.push(note);
    }
    let mut authz_policies = authz_notes(&authz);
    let unreached = if !net.allowed {
        Some(" (not reached: NetworkPolicy drops the connection first)")
    } else if mtls_fails {
        Some(" (not reached: the mTLS handshake fails first)")
    } else {
        None
    };
    if let Some(why) = unreached {
        for p in &mut authz_policies {
            p.detail.push_str(why);
        }
    }
    out.policies.extend(authz_policies);
    let notes = &mut out.analysis.notes;
    notes.extend(
        authz
            .cannot_evaluate
            .iter()
            .map(|u| format!("{} cannot be evaluated: {}", u.policy_id, u.reason)),
    );
    notes.extend(authz.notes.iter().cloned());
    if !source.has_sidecar && dst.has_sidecar && !mtls_fails {
        notes.push(format!(
            "source pod {src_ns}/{src_pod} has no sidecar: the request reaches {} in plain text with no identity",
            dst.name
        ));
    }
    out.analysis.engine_verdict = Some(engine_verdict(&net, mtls_fails, &authz));
    out.analysis.mtls = mtls.map(|(l, _)| l);
    out.analysis.network = Some(NetworkLayer {
        allowed: net.allowed,
        port,
        egress: net.egress.reason.clone(),
        ingress: net.ingress.reason.clone(),
    });
    out.analysis.authorization = Some(AuthzLayer {
        decision: authz.decision.to_string(),
        enforced: authz.enforced,
        policy_id: authz.policy_id.clone(),
        reason: authz.reason.clone(),
    });
    out
}

/// The PeerAuthentication layer and, when a PeerAuthentication decided the
/// mode, its policy note.
fn mtls_layer(
    m: &MtlsPrediction,
    port: u16,
    client_has_sidecar: bool,
) -> (MtlsLayer, Option<PolicyNote>) {
    let effective = m.destination_mode.as_ref();
    let mode = effective.map(|e| e.mode).unwrap_or(MtlsMode::Permissive);
    let source = effective.and_then(|e| e.decided_by.as_ref());
    let scope = source.map(|s| match s.scope {
        Scope::Mesh => "mesh",
        Scope::Namespace => "namespace",
        Scope::Workload | Scope::Ignored => "workload",
    });
    let sends = match m.client_sends {
        ClientTransport::Mtls => "mtls",
        ClientTransport::Plaintext => "plaintext",
    };
    let fails = m.outcome.is_failure();
    let layer = MtlsLayer {
        port,
        mode: mode.to_string(),
        decided_by: source.map(|s| s.policy.to_string()),
        scope: scope.map(str::to_string),
        port_level: source.is_some_and(|s| s.port_level),
        client_sends: sends.to_string(),
        fails,
    };
    let note = source.map(|s| {
        let level = match (scope.unwrap_or("workload"), s.port_level) {
            (_, true) => format!("port-level on port {port}"),
            (sc, false) => format!("{sc}-wide"),
        };
        let why = match m.outcome {
            MtlsOutcome::PlaintextIntoStrict if !client_has_sidecar => {
                "the client has no sidecar and sends plain text: the handshake fails"
            }
            MtlsOutcome::PlaintextIntoStrict => {
                "the client sends plain text (auto mTLS off for this destination): the handshake fails"
            }
            MtlsOutcome::MtlsIntoDisable => {
                "the client sidecar sends mTLS to a plain-text port: the handshake fails"
            }
            MtlsOutcome::Ok => "the client's transport is accepted",
        };
        PolicyNote {
            kind: PolicyKind::PeerAuthentication,
            namespace: Some(s.policy.namespace.clone()),
            name: Some(s.policy.name.clone()),
            direction: None,
            rule: None,
            action: Some(mode.to_string()),
            policy_id: None,
            effect: if fails {
                Effect::Denied
            } else {
                Effect::Allowed
            },
            detail: format!("mode {mode} ({level}); {why}"),
            source: NoteSource::Engine,
        }
    });
    (layer, note)
}

/// The ambient hook: for a destination in ambient mode (meshpolicy::ambient's
/// rule), traffic to its Service first meets the waypoint the Service uses
/// (if any), which enforces the policies attached to it with `targetRefs`
/// with full L7, then the node's ztunnel, which enforces the L4 view of the
/// policies bound by selector; their decision replaces the sidecar engine's
/// "not enforced".
fn ambient_hook(
    cluster: &Cluster,
    source: &meshpolicy::Pod,
    dst: &meshpolicy::Pod,
    req: &meshpolicy::AuthzRequest,
    waypoint: Option<&meshpolicy::ambient::Waypoint>,
    service: (&str, &str),
) -> Option<meshpolicy::AuthzVerdict> {
    use meshpolicy::ambient::{self, DataplaneMode};
    let labels = |ns: &str| {
        cluster
            .namespace(ns)
            .map(|n| n.labels.clone())
            .unwrap_or_default()
    };
    let mode = |p: &meshpolicy::Pod| {
        ambient::dataplane_mode(&p.labels, p.has_sidecar, &labels(&p.namespace))
    };
    if mode(dst) != DataplaneMode::Ambient {
        return None;
    }
    let root = cluster.options().root_namespace.clone();
    let in_ns_and_root = |ns: &str| {
        cluster
            .authorization_policies_in(ns)
            .into_iter()
            .chain(if ns == root {
                Vec::new()
            } else {
                cluster.authorization_policies_in(&root)
            })
    };
    let mut l4 = req.clone();
    l4.source_principal = (mode(source) != DataplaneMode::None)
        .then(|| source.principal(meshpolicy::workload::DEFAULT_TRUST_DOMAIN));
    let mut notes = Vec::new();
    // Only a client in the mesh is sent through the waypoint.
    let source_in_mesh = mode(source) != DataplaneMode::None;
    let used = waypoint.map(|w| ambient::WaypointUse::Uses {
        waypoint: w.clone(),
        bound_by: String::new(),
    });
    let waypoint = used
        .as_ref()
        .and_then(|u| ambient::waypoint_in_path(source_in_mesh, u));
    if let Some(w) = waypoint {
        let attached: Vec<&meshpolicy::CompiledAuthz> = in_ns_and_root(&w.namespace)
            .filter(|c| ambient::waypoint_applies(c.policy(), w, Some(service), &root))
            .collect();
        let mut l7 = req.clone();
        l7.source_principal = l4.source_principal.clone();
        let v = meshpolicy::authz::evaluate_policies_with(
            &attached,
            &l7,
            true,
            Vec::new(),
            &meshpolicy::authz::EvalOptions::default(),
        );
        let wname = format!("{}/{}", w.namespace, w.name);
        let hint = crate::verdict::waypoint_hint(w);
        let names = attached
            .iter()
            .map(|c| c.policy_ref().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if v.decision == meshpolicy::Decision::Deny {
            let by = v
                .policy_id
                .as_deref()
                .filter(|id| *id != "none")
                .map(|id| format!("DENY policy {}", policy_label(id)))
                .unwrap_or_else(|| format!("ALLOW policies ({names}) apply and none matched"));
            let mut out = v.clone();
            out.reason = format!(
                "waypoint {wname} denied (layer: waypoint, L7, 403 RBAC: access denied): {by}"
            );
            out.notes.push(format!(
                "{}/{} uses waypoint {wname}: it enforces {} with full L7 ({hint})",
                service.0,
                service.1,
                if names.is_empty() {
                    "no policy".to_string()
                } else {
                    names.clone()
                }
            ));
            return Some(out);
        }
        // The destination ztunnel then sees the waypoint's identity, not the client's.
        l4.source_principal = Some(waypoint_principal(cluster, w));
        notes.push(format!(
            "waypoint {wname} allowed (layer: waypoint, L7: {}); then ztunnel's L4 view of the connection from the waypoint ({})",
            if names.is_empty() {
                "no policy attached".to_string()
            } else {
                v.reason.clone()
            },
            l4.source_principal.as_deref().unwrap_or_default()
        ));
    }
    let policies: Vec<meshpolicy::AuthorizationPolicy> = in_ns_and_root(&dst.namespace)
        .map(|c| c.policy().clone())
        .collect();
    let z = ambient::ztunnel_decide(&policies, dst, &l4, &root);
    notes.extend(z.omissions.iter().map(|o| {
        format!(
            "{} rule {}: ztunnel does not support HTTP attributes ({}); the rule is {} (more restrictive than written); bind it to a waypoint with targetRefs",
            o.policy,
            o.rule,
            o.attributes.join(", "),
            if o.effect == "omitted" { "omitted: it never matches" } else { "enforced without them" }
        )
    }));
    notes.push(format!(
        "{}/{} is in ambient mode: ztunnel enforces L4 AuthorizationPolicy (a denial resets the connection; see kubectl rbaclog -n {root} -l app=ztunnel)",
        dst.namespace, dst.name
    ));
    let policy_id = match (&z.reason, &z.policy) {
        (meshpolicy::envoy::ztunnel::ZtunnelReason::NoAllowMatched, _) => Some("none".to_string()),
        (_, Some(p)) => Some(p.to_string()),
        _ => None,
    };
    Some(meshpolicy::AuthzVerdict {
        decision: if z.allowed {
            meshpolicy::Decision::Allow
        } else {
            meshpolicy::Decision::Deny
        },
        enforced: true,
        policy_id,
        reason: z.explanation,
        applicable: Vec::new(),
        delegated: Vec::new(),
        audited: Vec::new(),
        shadow: Vec::new(),
        cannot_evaluate: Vec::new(),
        notes,
    })
}

/// The identity of waypoint `w`'s pods: a running pod of it in the model
/// (label `gateway.networking.k8s.io/gateway-name`), else the ServiceAccount
/// istiod names like the Gateway.
fn waypoint_principal(cluster: &Cluster, w: &meshpolicy::ambient::Waypoint) -> String {
    let td = meshpolicy::workload::DEFAULT_TRUST_DOMAIN;
    cluster
        .pods()
        .iter()
        .find(|p| {
            p.namespace == w.namespace
                && p.labels.get(meshpolicy::ambient::GATEWAY_NAME_LABEL) == Some(&w.name)
        })
        .map(|p| p.principal(td))
        .unwrap_or_else(|| format!("{td}/ns/{}/sa/{}", w.namespace, w.name))
}

/// `NS/NAME` of an Envoy policy id (`ns[NS]-policy[NAME]-rule[N]`), else the id.
fn policy_label(id: &str) -> String {
    let p = PolicyId::parse(id);
    match (p.namespace, p.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => id.to_string(),
    }
}

/// Notes from the destination sidecar's log lines attributed to a probe.
pub fn envoy_notes(decisions: &[EnvoyDecision]) -> Vec<PolicyNote> {
    decisions
        .iter()
        .map(|d| {
            let id = d.policy_id.as_deref().map(PolicyId::parse);
            let (effect, what) = match (d.engine, d.denied) {
                (EnvoyEngine::Shadow, true) => (Effect::DryRun, "shadow denied"),
                (EnvoyEngine::Shadow, false) => (Effect::DryRun, "shadow allowed"),
                (EnvoyEngine::Enforced, true) => (Effect::Denied, "enforced denied"),
                (EnvoyEngine::Enforced, false) => (Effect::Allowed, "enforced allowed"),
            };
            let matched = d.policy_id.as_deref().unwrap_or("(no id)");
            PolicyNote {
                kind: PolicyKind::AuthorizationPolicy,
                namespace: id.as_ref().and_then(|i| i.namespace.clone()),
                name: id.as_ref().and_then(|i| i.name.clone()),
                direction: None,
                rule: id.as_ref().and_then(|i| i.rule_index()).map(|r| r as usize),
                action: None,
                policy_id: d.policy_id.clone(),
                effect,
                detail: format!("Envoy on pod {}: {what}, matched policy {matched}", d.pod),
                source: NoteSource::EnvoyLog,
            }
        })
        .collect()
}

fn reached_destination(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Allowed | Verdict::DeniedRbac | Verdict::HttpError | Verdict::MtlsFailure
    )
}

fn names(policies: &[PolicyNote], kind: PolicyKind, effect: Effect) -> String {
    let v: BTreeSet<String> = policies
        .iter()
        .filter(|p| p.kind == kind && p.effect == effect && p.source == NoteSource::Engine)
        .filter_map(|p| Some(format!("{}/{}", p.namespace.as_ref()?, p.name.as_ref()?)))
        .collect();
    v.into_iter().collect::<Vec<_>>().join(", ")
}

/// Where the engine, Envoy's log and the probe disagree, in words.
pub fn contradictions(observed: Verdict, e: &Evaluated, envoy: &[EnvoyDecision]) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(net), Some(authz)) = (&e.analysis.network, &e.analysis.authorization) else {
        return out;
    };
    if !net.allowed && reached_destination(observed) {
        let who = names(&e.policies, PolicyKind::NetworkPolicy, Effect::Denied);
        out.push(format!(
            "NetworkPolicy {who} should block this connection, but the probe got an answer ({observed}): is the CNI enforcing NetworkPolicy? Many clusters' CNIs (e.g. flannel) do not"
        ));
    }
    if net.allowed && observed == Verdict::BlockedNetwork {
        out.push(format!(
            "no NetworkPolicy blocks TCP {} here, yet the connection timed out: look for CNI-specific policies (CiliumNetworkPolicy, Calico), a firewall, or a destination not listening",
            net.port
        ));
    }
    if let Some(m) = &e.analysis.mtls
        && net.allowed
    {
        if m.fails && observed == Verdict::Allowed {
            out.push(format!(
                "PeerAuthentication {} makes port {} {}, so this {} connection should fail, but it was allowed: the policy may not have reached the sidecar yet, or a DestinationRule changes the client's TLS",
                m.decided_by.as_deref().unwrap_or("?"),
                m.port,
                m.mode,
                m.client_sends
            ));
        }
        if !m.fails && observed == Verdict::MtlsFailure {
            out.push(format!(
                "the engine expects port {} to accept this {} connection ({}), but the probe saw an mTLS failure: look for a DestinationRule with trafficPolicy.tls, or a sidecar with other config (kubectl authzcheck)",
                m.port, m.client_sends, m.mode
            ));
        }
    }
    let envoy_enforced: BTreeSet<&str> = envoy
        .iter()
        .filter(|d| d.engine == EnvoyEngine::Enforced)
        .filter_map(|d| d.policy_id.as_deref())
        .collect();
    let envoy_says = if envoy_enforced.is_empty() {
        String::new()
    } else {
        format!(
            " (Envoy logged {})",
            envoy_enforced
                .iter()
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let engine_denies = authz.enforced && authz.decision == "DENY";
    if net.allowed && engine_denies && observed == Verdict::Allowed {
        out.push(format!(
            "AuthorizationPolicy {} should deny this request, but it was allowed{envoy_says}: the policy may not have reached the sidecar yet (re-probe while it propagates: --expect deny --wait 30s), or the sidecar runs other config (see kubectl authzcheck)",
            authz.policy_id.as_deref().unwrap_or("?")
        ));
    }
    if observed == Verdict::DeniedRbac && !engine_denies {
        let why = if authz.enforced {
            "the engine finds no AuthorizationPolicy that denies it"
        } else {
            "the destination pod has no sidecar in the model"
        };
        out.push(format!(
            "Envoy answered RBAC: access denied{envoy_says}, but {why}: the sidecar may hold stale or other config (see kubectl authzcheck)"
        ));
    }
    if let Some(engine_id) = &authz.policy_id {
        let agree_on_outcome = (observed == Verdict::DeniedRbac) == engine_denies;
        if agree_on_outcome
            && !envoy_enforced.is_empty()
            && !envoy_enforced.contains(engine_id.as_str())
        {
            out.push(format!(
                "Envoy's log names {} but the engine names {engine_id}",
                envoy_enforced
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// Every namespace whose objects the analysis of `plan` needs.
pub fn namespaces_of(plan: &ProbePlan) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for p in &plan.probes {
        set.insert(p.from.namespace.clone());
        if let Some(t) = &p.target {
            set.insert(t.namespace.clone());
        }
    }
    set
}

/// Loads the model for `plan` and evaluates every probe (same order).
pub async fn analyse(
    kube: &Kube,
    plan: &ProbePlan,
) -> Result<(Cluster, Vec<Evaluated>), PluginError> {
    let model = crate::model::load(kube, &namespaces_of(plan), ClusterOptions::default()).await?;
    let evaluated = plan
        .probes
        .iter()
        .map(|p| {
            let mut e = evaluate(&model.cluster, &ProbeInput::of(p));
            e.analysis.notes.extend(model.notes.iter().cloned());
            e
        })
        .collect();
    Ok((model.cluster, evaluated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const WALKTHROUGH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: np-test-1, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-test-2, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: np-test-nginx-1-abc, namespace: np-test-1, labels: {app: np-test-nginx-1}}
spec:
  containers:
  - {name: np-test-nginx-1, ports: [{containerPort: 80, name: web}]}
  - {name: istio-proxy}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: np-test-nginx-2-def, namespace: np-test-2, labels: {app: np-test-nginx-2}}
spec:
  containers:
  - {name: np-test-nginx-2, ports: [{containerPort: 80, name: web}]}
  - {name: istio-proxy}
status: {podIP: 10.0.0.2}
"#;

    const NETPOL: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress-using-networkpolicy, namespace: np-test-2}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
"#;

    const AUTHZ: &str = r#"
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all-ingress-using-authorizationpolicy, namespace: np-test-2}
spec:
  action: DENY
  rules:
  - {}
"#;

    fn cluster(extra: &str) -> Cluster {
        Cluster::from_manifests(&format!("{WALKTHROUGH}{extra}"), ClusterOptions::default())
            .unwrap()
    }

    fn target(ns: &str, app: &str) -> ServiceTarget {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        ServiceTarget {
            namespace: ns.into(),
            service: format!("svc-{app}"),
            port: 80,
            workload: app.into(),
            selector: Some(BTreeMap::from([("app".into(), app.into())])),
            target_port: Some(IntOrString::String("web".into())),
            kind: crate::ports::ProbeKind::Http,
        }
    }

    fn request(url: &str) -> Request {
        Request {
            kind: crate::ports::ProbeKind::Http,
            url: url.into(),
            method: "GET".into(),
            headers: vec!["X-Debug: 1".into()],
            timeout: Duration::from_secs(3),
            outbound_cluster: None,
        }
    }

    fn eval_1_to_2(c: &Cluster) -> Evaluated {
        let t = target("np-test-2", "np-test-nginx-2");
        let r = request("http://svc-np-test-nginx-2.np-test-2.svc.cluster.local:80/");
        evaluate(
            c,
            &ProbeInput {
                source: Some(("np-test-1", "np-test-nginx-1-abc")),
                target: Some(&t),
                request: &r,
                waypoint: None,
                host: "svc-np-test-nginx-2.np-test-2.svc.cluster.local",
            },
        )
    }

    /// Ambient np-test-2 whose Service uses a waypoint: the waypoint's L7
    /// policy decides first and is named, then ztunnel's L4 view.
    #[test]
    fn ambient_destination_goes_through_the_waypoint_then_ztunnel() {
        let ambient = WALKTHROUGH
            .replace(
                "{name: np-test-2, labels: {istio-injection: enabled}}",
                "{name: np-test-2, labels: {istio.io/dataplane-mode: ambient}}",
            )
            .replace(
                "  - {name: np-test-nginx-2, ports: [{containerPort: 80, name: web}]}\n  - {name: istio-proxy}",
                "  - {name: np-test-nginx-2, ports: [{containerPort: 80, name: web}]}",
            );
        let policy = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-admin, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Service, group: "", name: svc-np-test-nginx-2}
  rules:
  - to:
    - operation: {paths: [/admin]}
"#;
        let c = Cluster::from_manifests(&format!("{ambient}{policy}"), ClusterOptions::default())
            .unwrap();
        let w = meshpolicy::ambient::Waypoint {
            namespace: "np-test-2".into(),
            name: "waypoint".into(),
            waypoint_for: meshpolicy::ambient::WaypointFor::Service,
        };
        let t = target("np-test-2", "np-test-nginx-2");
        let r = request("http://svc-np-test-nginx-2.np-test-2.svc.cluster.local:80/");
        let input = |wp| ProbeInput {
            source: Some(("np-test-1", "np-test-nginx-1-abc")),
            target: Some(&t),
            request: &r,
            waypoint: wp,
            host: "svc-np-test-nginx-2.np-test-2.svc.cluster.local",
        };
        let e = evaluate(&c, &input(Some(&w)));
        assert_eq!(
            e.analysis.engine_verdict,
            Some(Verdict::DeniedRbac),
            "{e:?}"
        );
        let a = e.analysis.authorization.as_ref().unwrap();
        assert!(
            a.reason.contains("waypoint np-test-2/waypoint denied"),
            "{}",
            a.reason
        );
        assert!(
            e.analysis
                .notes
                .iter()
                .any(|n| n.contains("np-test-2/only-admin")
                    && n.contains("gateway.networking.k8s.io/gateway-name=waypoint")),
            "{:?}",
            e.analysis.notes
        );
        // Without the waypoint the targetRefs policy is enforced by nothing: ztunnel allows.
        let e = evaluate(&c, &input(None));
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::Allowed), "{e:?}");

        // Allowed at the waypoint, then ztunnel sees the waypoint's identity:
        // an L4 ALLOW from np-test-1 only resets it.
        let l4 = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-1, namespace: np-test-2}
spec:
  rules:
  - from:
    - source: {namespaces: [np-test-1]}
"#;
        let c = Cluster::from_manifests(
            &format!("{ambient}{}{l4}", policy.replace("/admin", "/")),
            ClusterOptions::default(),
        )
        .unwrap();
        let e = evaluate(&c, &input(Some(&w)));
        assert_eq!(
            e.analysis.engine_verdict,
            Some(Verdict::DeniedRbac),
            "{e:?}"
        );
        assert!(
            e.analysis
                .notes
                .iter()
                .any(|n| n.contains("from the waypoint (cluster.local/ns/np-test-2/sa/waypoint)")),
            "{:?}",
            e.analysis.notes
        );
        assert!(
            e.analysis
                .authorization
                .as_ref()
                .unwrap()
                .reason
                .contains("ztunnel denied")
        );
    }

    fn eval_2_to_1(c: &Cluster) -> Evaluated {
        let t = target("np-test-1", "np-test-nginx-1");
        let r = request("http://svc-np-test-nginx-1.np-test-1.svc.cluster.local:80/");
        evaluate(
            c,
            &ProbeInput {
                source: Some(("np-test-2", "np-test-nginx-2-def")),
                target: Some(&t),
                request: &r,
                waypoint: None,
                host: "svc-np-test-nginx-1.np-test-1.svc.cluster.local",
            },
        )
    }

    #[test]
    fn open_cluster_predicts_allowed_with_no_policies() {
        let e = eval_1_to_2(&cluster(""));
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::Allowed));
        assert_eq!(
            e.analysis.destination_pod.as_deref(),
            Some("np-test-nginx-2-def")
        );
        assert!(e.policies.is_empty(), "{:?}", e.policies);
        let net = e.analysis.network.unwrap();
        assert!(net.allowed);
        assert_eq!(net.port, 80);
        assert!(net.ingress.contains("open"), "{}", net.ingress);
        assert!(e.analysis.authorization.unwrap().enforced);
    }

    const PLAIN_CLIENT: &str = r#"
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: plain, labels: {app: client}}
spec:
  containers:
  - {name: client}
status: {podIP: 10.0.0.9}
"#;

    fn eval_plain_to_2(c: &Cluster) -> Evaluated {
        let t = target("np-test-2", "np-test-nginx-2");
        let r = request("http://svc-np-test-nginx-2.np-test-2.svc.cluster.local:80/");
        evaluate(
            c,
            &ProbeInput {
                source: Some(("plain", "client")),
                target: Some(&t),
                request: &r,
                waypoint: None,
                host: "svc-np-test-nginx-2.np-test-2.svc.cluster.local",
            },
        )
    }

    fn peer_auth(ns: &str, name: &str, spec: &str) -> String {
        format!(
            "\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn strict_peer_authentication_predicts_mtls_failure_for_a_plain_client() {
        let mesh = peer_auth("istio-system", "default", "{mtls: {mode: STRICT}}");
        let c = cluster(&format!("{PLAIN_CLIENT}{mesh}"));
        let e = eval_plain_to_2(&c);
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::MtlsFailure));
        let m = e.analysis.mtls.as_ref().expect("mTLS layer");
        assert!(m.fails);
        assert_eq!(m.decided_by.as_deref(), Some("istio-system/default"));
        assert_eq!(m.scope.as_deref(), Some("mesh"));
        let pa = e
            .policies
            .iter()
            .find(|p| p.kind == PolicyKind::PeerAuthentication)
            .expect("the PeerAuthentication is named");
        assert_eq!(pa.effect, Effect::Denied);
        assert!(pa.detail.contains("STRICT"), "{}", pa.detail);
        // A sidecar client sends mTLS: fine.
        assert_eq!(
            eval_1_to_2(&c).analysis.engine_verdict,
            Some(Verdict::Allowed)
        );

        // A port-level PERMISSIVE on the workload's port 80 wins over the mesh.
        let port = peer_auth(
            "np-test-2",
            "port80",
            "{selector: {matchLabels: {app: np-test-nginx-2}}, portLevelMtls: {'80': {mode: PERMISSIVE}}}",
        );
        let c = cluster(&format!("{PLAIN_CLIENT}{mesh}{port}"));
        let e = eval_plain_to_2(&c);
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::Allowed));
        let m = e.analysis.mtls.unwrap();
        assert!(m.port_level && !m.fails, "{m:?}");
        assert_eq!(m.decided_by.as_deref(), Some("np-test-2/port80"));
    }

    #[test]
    fn workload_disable_breaks_auto_mtls_from_a_sidecar() {
        let wl = peer_auth(
            "np-test-2",
            "off",
            "{selector: {matchLabels: {app: np-test-nginx-2}}, mtls: {mode: DISABLE}}",
        );
        let e = eval_1_to_2(&cluster(&wl));
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::MtlsFailure));
        assert_eq!(e.analysis.mtls.unwrap().client_sends, "mtls");
    }

    #[test]
    fn authorization_policy_denies_one_way_only() {
        let c = cluster(AUTHZ);
        let e = eval_1_to_2(&c);
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::DeniedRbac));
        let ap = e
            .policies
            .iter()
            .find(|p| p.kind == PolicyKind::AuthorizationPolicy)
            .expect("the AuthorizationPolicy is named");
        assert_eq!(
            ap.name.as_deref(),
            Some("deny-all-ingress-using-authorizationpolicy")
        );
        assert_eq!(ap.effect, Effect::Denied);
        assert_eq!(ap.action.as_deref(), Some("DENY"));
        assert_eq!(
            ap.policy_id.as_deref(),
            Some("ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]")
        );
        assert_eq!(ap.rule, Some(0));
        // The other direction: nothing applies in np-test-1.
        let back = eval_2_to_1(&c);
        assert_eq!(back.analysis.engine_verdict, Some(Verdict::Allowed));
        assert!(back.policies.is_empty());
    }

    #[test]
    fn network_policy_names_the_isolating_policy_and_no_rule() {
        let c = cluster(NETPOL);
        let e = eval_1_to_2(&c);
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::BlockedNetwork));
        let np: Vec<&PolicyNote> = e
            .policies
            .iter()
            .filter(|p| p.kind == PolicyKind::NetworkPolicy)
            .collect();
        assert_eq!(np.len(), 1, "{np:?}");
        assert_eq!(np[0].direction.as_deref(), Some("ingress"));
        assert_eq!(np[0].effect, Effect::Denied);
        assert_eq!(np[0].rule, None);
        assert!(np[0].detail.contains("no rule"), "{}", np[0].detail);
        assert!(!e.analysis.network.unwrap().allowed);
        // With both layers, the AuthorizationPolicy is said not to be reached.
        let both = eval_1_to_2(&cluster(&format!("{NETPOL}{AUTHZ}")));
        assert_eq!(both.analysis.engine_verdict, Some(Verdict::BlockedNetwork));
        let ap = both
            .policies
            .iter()
            .find(|p| p.kind == PolicyKind::AuthorizationPolicy)
            .unwrap();
        assert!(ap.detail.contains("not reached"), "{}", ap.detail);
        // Egress of np-test-2 is open, and np-test-1 has no policy.
        assert_eq!(
            eval_2_to_1(&c).analysis.engine_verdict,
            Some(Verdict::Allowed)
        );
    }

    #[test]
    fn allowing_rule_is_named_with_its_index() {
        let c = cluster(&format!(
            "{NETPOL}{}",
            r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-np-test-1, namespace: np-test-2}
spec:
  podSelector: {matchLabels: {app: np-test-nginx-2}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}]
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: np-test-1}}}]
    ports: [{port: web}]
"#
        ));
        let e = eval_1_to_2(&c);
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::Allowed));
        let allow = e
            .policies
            .iter()
            .find(|p| p.name.as_deref() == Some("allow-from-np-test-1"))
            .unwrap();
        assert_eq!(allow.effect, Effect::Allowed);
        assert_eq!(allow.rule, Some(1));
        let deny = e
            .policies
            .iter()
            .find(|p| p.name.as_deref() == Some("deny-all-ingress-using-networkpolicy"))
            .unwrap();
        assert_eq!(deny.effect, Effect::NoMatch);
    }

    #[test]
    fn allow_policies_that_do_not_match_deny_with_policy_none() {
        let c = cluster(
            r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-from-np-test-3, namespace: np-test-2}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [np-test-3]}}]
"#,
        );
        let e = eval_1_to_2(&c);
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::DeniedRbac));
        assert_eq!(
            e.analysis
                .authorization
                .as_ref()
                .unwrap()
                .policy_id
                .as_deref(),
            Some("none")
        );
        let p = &e.policies[0];
        assert_eq!(p.effect, Effect::Denied);
        assert!(p.detail.contains("none"), "{}", p.detail);
    }

    #[test]
    fn missing_source_url_and_empty_service_are_notes_not_panics() {
        let c = cluster("");
        let r = request("http://example:8080/");
        let e = evaluate(
            &c,
            &ProbeInput {
                source: Some(("np-test-1", "np-test-nginx-1-abc")),
                target: None,
                request: &r,
                waypoint: None,
                host: "example",
            },
        );
        assert_eq!(e.analysis.engine_verdict, None);
        assert!(e.analysis.notes[0].contains("--url"));
        let e = evaluate(
            &c,
            &ProbeInput {
                source: None,
                target: None,
                request: &r,
                waypoint: None,
                host: "example",
            },
        );
        assert!(e.analysis.notes[0].contains("no source pod"));
        let t = target("np-test-2", "nothing-here");
        let e = evaluate(
            &c,
            &ProbeInput {
                source: Some(("np-test-1", "np-test-nginx-1-abc")),
                target: Some(&t),
                request: &r,
                waypoint: None,
                host: "x",
            },
        );
        assert_eq!(e.analysis.engine_verdict, Some(Verdict::HttpError));
        assert!(e.analysis.notes[0].contains("selects no running pod"));
    }

    #[test]
    fn contradiction_when_the_cni_does_not_enforce() {
        let c = cluster(NETPOL);
        let e = eval_1_to_2(&c);
        let found = contradictions(Verdict::Allowed, &e, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("is the CNI enforcing NetworkPolicy?"));
        assert!(found[0].contains("np-test-2/deny-all-ingress-using-networkpolicy"));
        // Blocked as the engine says: no contradiction.
        assert!(contradictions(Verdict::BlockedNetwork, &e, &[]).is_empty());
        // Blocked while the engine sees nothing: the other way round.
        let open = eval_1_to_2(&cluster(""));
        let found = contradictions(Verdict::BlockedNetwork, &open, &[]);
        assert!(found[0].contains("no NetworkPolicy blocks"), "{found:?}");
    }

    fn decision(denied: bool, id: &str) -> EnvoyDecision {
        EnvoyDecision {
            pod: "np-test-nginx-2-def".into(),
            engine: EnvoyEngine::Enforced,
            denied,
            policy_id: Some(id.into()),
        }
    }

    #[test]
    fn contradictions_between_engine_envoy_and_probe() {
        let c = cluster(AUTHZ);
        let e = eval_1_to_2(&c);
        let id = "ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]";
        // Agreement everywhere.
        assert!(contradictions(Verdict::DeniedRbac, &e, &[decision(true, id)]).is_empty());
        // Allowed although the engine denies (propagation).
        let found = contradictions(Verdict::Allowed, &e, &[]);
        assert!(found[0].contains("should deny"), "{found:?}");
        // Envoy names another policy.
        let found = contradictions(
            Verdict::DeniedRbac,
            &e,
            &[decision(true, "ns[np-test-2]-policy[other]-rule[3]")],
        );
        assert!(
            found[0].contains("Envoy's log names ns[np-test-2]-policy[other]-rule[3]"),
            "{found:?}"
        );
        // Denied although the engine allows.
        let open = eval_1_to_2(&cluster(""));
        let found = contradictions(Verdict::DeniedRbac, &open, &[decision(true, id)]);
        assert!(
            found[0].contains("no AuthorizationPolicy that denies"),
            "{found:?}"
        );
        assert!(found[0].contains(id), "{found:?}");
    }

    #[test]
    fn envoy_notes_carry_ids_and_effects() {
        let notes = envoy_notes(&[
            decision(true, "ns[np-test-2]-policy[deny]-rule[2]"),
            EnvoyDecision {
                pod: "p".into(),
                engine: EnvoyEngine::Shadow,
                denied: false,
                policy_id: Some("none".into()),
            },
        ]);
        assert_eq!(notes[0].effect, Effect::Denied);
        assert_eq!(notes[0].name.as_deref(), Some("deny"));
        assert_eq!(notes[0].rule, Some(2));
        assert_eq!(notes[0].source, NoteSource::EnvoyLog);
        assert_eq!(notes[1].effect, Effect::DryRun);
        assert_eq!(notes[1].name, None);
        assert!(notes[1].label().contains("none"));
    }

    #[test]
    fn http_attributes_follow_curl() {
        let r = request("http://svc.ns.svc.cluster.local:8080/a/b?x=1");
        let h = http_attributes(&r, "svc.ns.svc.cluster.local", 8080);
        assert_eq!(h.path, "/a/b?x=1");
        assert_eq!(h.host, "svc.ns.svc.cluster.local:8080");
        assert_eq!(h.headers.get("x-debug").map(String::as_str), Some("1"));
        let h = http_attributes(
            &request("http://svc.ns.svc.cluster.local:80/"),
            "svc.ns.svc.cluster.local",
            80,
        );
        assert_eq!(h.host, "svc.ns.svc.cluster.local");
        assert_eq!(h.path, "/");
    }
}
