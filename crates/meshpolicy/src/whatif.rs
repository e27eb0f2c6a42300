//! What-if: the model after a change, before the change reaches a cluster.
//!
//! A pull request edits manifests; reviewers want to know which connections
//! that opens or cuts, and which policy is responsible. This module builds
//! the AFTER objects from the BEFORE ones plus the manifests of the change
//! (an overlay: an object with the same kind, namespace and name replaces the
//! old one, a new one is added, a deleted one is removed) and turns the
//! connectivity diff of the two models ([`crate::connectivity::diff`]) into
//! change records a CI job can gate on. It is pure: reading files and the
//! live cluster is the plugins' job.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::connectivity::{self, ConnectionDiff, ConnectionSet, DiffKind, Peer, WorkloadRef};
use crate::manifests::Objects;
use crate::netpol::Direction;
use crate::workload::{Owner, Pod, namespaced_name};

/// Appends every object of `from` to `into` (no replacement).
pub fn merge_objects(into: &mut Objects, from: Objects) {
    into.namespaces.extend(from.namespaces);
    into.pods.extend(from.pods);
    into.template_pods.extend(from.template_pods);
    into.network_policies.extend(from.network_policies);
    into.authorization_policies
        .extend(from.authorization_policies);
    into.peer_authentications.extend(from.peer_authentications);
}

/// Whether a running pod belongs to the workload `w` (same namespace): owned
/// by it, or by the ReplicaSet a Deployment makes (`NAME-HASH`), or by the Job
/// a CronJob makes (`NAME-N`).
fn owned_by(pod: &Pod, namespace: &str, w: &Owner) -> bool {
    let Some(o) = &pod.owner else {
        return false;
    };
    if pod.namespace != namespace {
        return false;
    }
    if o.kind == w.kind && o.name == w.name {
        return true;
    }
    let parent = o.name.rsplit_once('-').map(|(p, _)| p);
    matches!(
        (w.kind.as_str(), o.kind.as_str()),
        ("Deployment", "ReplicaSet") | ("CronJob", "Job")
    ) && parent == Some(w.name.as_str())
}

fn policy_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, String)> {
    namespaced_name(meta)
}

/// Removes from `base` every object `gone` names: namespaces by name, pods by
/// namespace/name, workloads (template pods) with the pods they own, policies
/// (NetworkPolicy, AuthorizationPolicy, PeerAuthentication) by namespace/name.
pub fn remove_objects(base: &mut Objects, gone: &Objects) {
    let ns: BTreeSet<&str> = gone.namespaces.iter().map(|n| n.name.as_str()).collect();
    base.namespaces.retain(|n| !ns.contains(n.name.as_str()));
    let pods: BTreeSet<(&str, &str)> = gone
        .pods
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    let workloads: Vec<(&str, &Owner)> = gone
        .template_pods
        .iter()
        .filter_map(|p| p.owner.as_ref().map(|o| (p.namespace.as_str(), o)))
        .collect();
    let keep = |p: &Pod| {
        !pods.contains(&(p.namespace.as_str(), p.name.as_str()))
            && !workloads.iter().any(|(n, w)| owned_by(p, n, w))
    };
    base.pods.retain(|p| keep(p));
    base.template_pods.retain(|p| keep(p));
    let nps: BTreeSet<(String, String)> = gone
        .network_policies
        .iter()
        .filter_map(|p| policy_key(&p.metadata))
        .collect();
    base.network_policies
        .retain(|p| policy_key(&p.metadata).is_none_or(|k| !nps.contains(&k)));
    let aps: BTreeSet<(String, String)> = gone
        .authorization_policies
        .iter()
        .filter_map(|p| policy_key(&p.metadata))
        .collect();
    base.authorization_policies
        .retain(|p| policy_key(&p.metadata).is_none_or(|k| !aps.contains(&k)));
    let pas: BTreeSet<(&str, &str)> = gone
        .peer_authentications
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    base.peer_authentications
        .retain(|p| !pas.contains(&(p.namespace.as_str(), p.name.as_str())));
}

/// `base` with `changes` applied: each object of `changes` replaces the one of
/// the same kind, namespace and name (a workload also replaces the pods it
/// owns), and is added when there is none. A changed namespace keeps its
/// pods and policies.
pub fn apply_objects(base: &Objects, changes: &Objects) -> Objects {
    let mut out = base.clone();
    let replaced_ns = Objects {
        namespaces: changes.namespaces.clone(),
        ..Objects::default()
    };
    remove_objects(&mut out, &replaced_ns);
    let rest = Objects {
        namespaces: Vec::new(),
        ..changes.clone()
    };
    remove_objects(&mut out, &rest);
    merge_objects(&mut out, changes.clone());
    out
}

/// Names running pods after their Deployment rather than its ReplicaSet
/// where the ReplicaSet is one a Deployment made (named `DEPLOYMENT-HASH`,
/// with the pods labelled `pod-template-hash: HASH`), so that a live pod and
/// the same workload from a manifest (a Deployment) are one workload in a
/// diff. netpol-analyzer itself names such pods after the ReplicaSet.
pub fn name_pods_after_deployments(objects: &mut Objects) {
    for p in objects.pods.iter_mut() {
        let Some(hash) = p.labels.get("pod-template-hash") else {
            continue;
        };
        let Some(o) = p.owner.as_mut() else {
            continue;
        };
        if o.kind != "ReplicaSet" {
            continue;
        }
        if let Some(deployment) = o
            .name
            .strip_suffix(hash.as_str())
            .and_then(|n| n.strip_suffix('-'))
            && !deployment.is_empty()
        {
            *o = Owner {
                kind: "Deployment".into(),
                name: deployment.to_string(),
            };
        }
    }
}

/// The policy layer a change is seen at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Layer {
    NetworkPolicy,
    PeerAuthentication,
    AuthorizationPolicy,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NetworkPolicy => "NetworkPolicy",
            Self::PeerAuthentication => "PeerAuthentication",
            Self::AuthorizationPolicy => "AuthorizationPolicy",
        })
    }
}

/// The policies that decide a pair in each model, as `namespace/name
/// (egress of SRC)` / `namespace/name (ingress of DST)`; empty when nothing
/// isolates either end (all open).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicySides {
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// One pair whose allowed connections change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: DiffKind,
    pub from: String,
    pub to: String,
    /// CONNECTIONS before, in np-guard's notation.
    pub before: String,
    pub after: String,
    pub layer: Layer,
    pub policies: PolicySides,
    /// Some connection allowed before is denied after.
    pub newly_denied: bool,
    /// Some connection denied before is allowed after.
    pub newly_allowed: bool,
    /// np-guard's `workloads-diff-info`, when a workload exists on one side only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads_diff_info: Option<String>,
    /// AuthorizationPolicy layer: the source's mTLS identity
    /// (`TRUST_DOMAIN/ns/NS/sa/SA`), none without a sidecar on both ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// AuthorizationPolicy layer: the destination port (TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Policies of `cluster` that isolate `w` in `dir`, as `ns/name (DIR of W)`.
fn isolating(cluster: &Cluster, w: &WorkloadRef, dir: Direction) -> Vec<String> {
    let wls = connectivity::workloads(cluster);
    let Some(pod) = wls.get(w) else {
        return Vec::new();
    };
    cluster
        .network_policies_selecting(pod)
        .into_iter()
        .filter(|p| p.directions().contains(&dir))
        .map(|p| format!("{} ({dir} of {w})", p.policy_ref()))
        .collect()
}

/// What decides a pair in one model: when `conns` allows something, the
/// rules that admit its first port (`ns/name ingress rule 0`); otherwise the
/// policies that isolate either end (`ns/name (ingress of W)`), none of whose
/// rules admits the pair.
fn deciding(cluster: &Cluster, src: &Peer, dst: &Peer, conns: &ConnectionSet) -> Vec<String> {
    let wls = connectivity::workloads(cluster);
    let endpoint = |p: &Peer| match p {
        Peer::Workload(w) => wls
            .get(w)
            .map(|pod| crate::workload::Endpoint::pod(&pod.namespace, &pod.name)),
        Peer::External { start, .. } => Some(crate::workload::Endpoint::External {
            ip: std::net::IpAddr::V4(*start),
        }),
    };
    let sample = connectivity::PROTOCOLS
        .iter()
        .find_map(|&p| conns.ports(p).ranges().first().map(|r| (p, r.0)));
    if let (Some((proto, port)), Some(s), Some(d)) = (sample, endpoint(src), endpoint(dst))
        && let Ok(v) = cluster.evaluate_network(&s, &d, port, proto)
    {
        return v
            .egress
            .allowed_by
            .iter()
            .chain(&v.ingress.allowed_by)
            .map(|r| r.to_string())
            .collect();
    }
    let mut out = Vec::new();
    if let Peer::Workload(w) = src {
        out.extend(isolating(cluster, w, Direction::Egress));
    }
    if let Peer::Workload(w) = dst {
        out.extend(isolating(cluster, w, Direction::Ingress));
    }
    out
}

fn subset(a: &ConnectionSet, b: &ConnectionSet) -> bool {
    &a.intersect(b) == a
}

/// The NetworkPolicy changes between two models, with the policies that
/// decide each pair on each side.
pub fn network_changes(before: &Cluster, after: &Cluster) -> Vec<Change> {
    connectivity::diff(before, after)
        .into_iter()
        .map(|d| change_of(before, after, d))
        .collect()
}

fn change_of(before: &Cluster, after: &Cluster, d: ConnectionDiff) -> Change {
    let workloads_diff_info = (!d.new_or_lost.is_empty()).then(|| {
        let names: Vec<String> = d.new_or_lost.iter().map(|w| w.to_string()).collect();
        format!("workload {} {}", names.join(" and "), d.kind)
    });
    Change {
        kind: d.kind,
        from: d.src.to_string(),
        to: d.dst.to_string(),
        newly_denied: !subset(&d.before, &d.after),
        newly_allowed: !subset(&d.after, &d.before),
        before: d.before.to_string(),
        after: d.after.to_string(),
        layer: Layer::NetworkPolicy,
        policies: PolicySides {
            before: deciding(before, &d.src, &d.dst, &d.before),
            after: deciding(after, &d.src, &d.dst, &d.after),
        },
        workloads_diff_info,
        identity: None,
        port: None,
    }
}

/// What AuthorizationPolicy makes of one (source identity, destination port).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthzOutcome {
    Allowed,
    Denied,
    /// The decision depends on the request (HTTP attributes, JWT...) or on
    /// something the model cannot know; the words say which rule.
    Depends(String),
}

impl fmt::Display for AuthzOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed => f.write_str("allowed"),
            Self::Denied => f.write_str("denied"),
            Self::Depends(why) => write!(f, "depends on the request: {why}"),
        }
    }
}

/// A concrete value an Istio match pattern (`*`, `prefix*`, `*suffix`, exact) matches.
fn example_of(pattern: &str) -> String {
    if pattern == "*" {
        "x".into()
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        prefix.into()
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        format!("x{suffix}")
    } else {
        pattern.into()
    }
}

/// A request to try and how to say it.
struct Probe {
    words: String,
    http: Option<crate::authz::HttpAttributes>,
    request_principal: Option<String>,
}

/// Plain TCP, an HTTP `GET /`, and one request shaped after each rule of the
/// policies that apply to `dst` (its first method, path, host and request
/// principal), so that a decision that turns on the request shows.
fn probes(cluster: &Cluster, dst: &Pod) -> Vec<Probe> {
    use crate::authz::HttpAttributes;
    let http = |method: &str, path: &str, host: &str| HttpAttributes {
        method: method.into(),
        path: path.into(),
        host: host.into(),
        headers: Default::default(),
    };
    let mut out = vec![
        Probe {
            words: "plain TCP".into(),
            http: None,
            request_principal: None,
        },
        Probe {
            words: "HTTP GET /".into(),
            http: Some(http("GET", "/", &dst.name)),
            request_principal: None,
        },
    ];
    for p in cluster.authorization_policies_for(dst) {
        for rule in &p.policy().spec.rules {
            let ops = rule.to.iter().filter_map(|t| t.operation.as_ref());
            let rp = rule
                .from
                .iter()
                .filter_map(|f| f.source.as_ref())
                .find_map(|s| s.request_principals.first())
                .map(|v| example_of(v));
            let mut any_op = false;
            for op in ops {
                any_op = true;
                let method = op
                    .methods
                    .first()
                    .map_or("GET".to_string(), |m| example_of(m));
                let path = op.paths.first().map_or("/".to_string(), |m| example_of(m));
                let host = op.hosts.first().map_or(dst.name.clone(), |m| example_of(m));
                out.push(Probe {
                    words: format!("HTTP {method} {path} (host {host})"),
                    http: Some(http(&method, &path, &host)),
                    request_principal: rp.clone(),
                });
            }
            if !any_op && let Some(rp) = rp {
                out.push(Probe {
                    words: format!("HTTP GET / with JWT principal {rp}"),
                    http: Some(http("GET", "/", &dst.name)),
                    request_principal: Some(rp),
                });
            }
        }
    }
    out
}

/// Evaluates the [`probes`]: the same allow or deny for every one is the
/// outcome; anything else depends on the request, said in words.
fn authz_outcome(
    cluster: &Cluster,
    src: &Pod,
    dst: &Pod,
    port: u16,
) -> Option<(AuthzOutcome, Vec<String>)> {
    use crate::authz::Decision;
    let src_ep = crate::workload::Endpoint::pod(&src.namespace, &src.name);
    let mut verdicts = Vec::new();
    for probe in probes(cluster, dst) {
        let mut req = cluster
            .authz_request(&src_ep, &dst.namespace, &dst.name, port, probe.http)
            .ok()?;
        req.request_principal = probe.request_principal;
        verdicts.push((probe.words, cluster.evaluate_authz(&req).ok()?));
    }
    let policies: Vec<String> = verdicts[0]
        .1
        .applicable
        .iter()
        .map(|a| {
            let dry = if a.dry_run { ", dry-run" } else { "" };
            format!("{} ({}{dry})", a.policy, a.action)
        })
        .collect();
    let first = verdicts[0].1.decision;
    let outcome = if let Some((words, v)) = verdicts
        .iter()
        .find(|(_, v)| v.decision == Decision::CannotEvaluate)
    {
        let why = v.cannot_evaluate.first().map_or(v.reason.clone(), |u| {
            format!("{} ({})", u.reason, u.policy_id)
        });
        AuthzOutcome::Depends(format!("{words}: {why}"))
    } else if let Some((words, v)) = verdicts.iter().find(|(_, v)| v.decision != first) {
        AuthzOutcome::Depends(format!(
            "{} is {first}, {words} is {} ({})",
            verdicts[0].0, v.decision, v.reason
        ))
    } else if first == Decision::Allow {
        AuthzOutcome::Allowed
    } else {
        AuthzOutcome::Denied
    };
    Some((outcome, policies))
}

/// Ports the Istio sidecar itself listens on (Istio's "ports used by Istio"):
/// the sidecar answers them, AuthorizationPolicy does not apply.
const ISTIO_PORTS: [u16; 9] = [
    15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090,
];

/// The AuthorizationPolicy changes between two models: per (source
/// workload identity, destination workload, TCP port the destination
/// declares), `allowed`, `denied` or `depends on the request`, wherever
/// that differs. Destinations without a sidecar enforce nothing (allowed).
pub fn authz_changes(before: &Cluster, after: &Cluster) -> Vec<Change> {
    let wb = connectivity::workloads(before);
    let wa = connectivity::workloads(after);
    let all: BTreeSet<&WorkloadRef> = wb.keys().chain(wa.keys()).collect();
    let mut out = Vec::new();
    for d in &all {
        let ports: BTreeSet<u16> = [wb.get(*d), wa.get(*d)]
            .into_iter()
            .flatten()
            .flat_map(|p| p.ports.iter())
            .filter(|cp| {
                cp.protocol == crate::workload::Protocol::Tcp && !ISTIO_PORTS.contains(&cp.port)
            })
            .map(|cp| cp.port)
            .collect();
        for s in &all {
            if s == d {
                continue;
            }
            for &port in &ports {
                let eval = |m: &std::collections::BTreeMap<WorkloadRef, &Pod>, c: &Cluster| {
                    let (sp, dp) = (m.get(*s)?, m.get(*d)?);
                    let (o, pol) = authz_outcome(c, sp, dp, port)?;
                    let identity = (sp.has_sidecar && dp.has_sidecar)
                        .then(|| sp.principal(&c.options().trust_domain));
                    Some((o, pol, identity))
                };
                let (b, a) = (eval(&wb, before), eval(&wa, after));
                let (Some(b), Some(a)) = (b, a) else {
                    continue; // a workload exists on one side only: the NetworkPolicy diff says so
                };
                if b.0 == a.0 {
                    continue;
                }
                use AuthzOutcome::{Allowed, Denied, Depends};
                let kind = match (&b.0, &a.0) {
                    (Denied, Allowed) => DiffKind::Added,
                    (Allowed, Denied) => DiffKind::Removed,
                    _ => DiffKind::Changed,
                };
                let newly_denied = matches!(
                    (&b.0, &a.0),
                    (Allowed, Denied | Depends(_)) | (Depends(_), Denied)
                );
                let newly_allowed = matches!(
                    (&b.0, &a.0),
                    (Denied, Allowed | Depends(_)) | (Depends(_), Allowed)
                );
                out.push(Change {
                    kind,
                    from: s.to_string(),
                    to: d.to_string(),
                    before: b.0.to_string(),
                    after: a.0.to_string(),
                    layer: Layer::AuthorizationPolicy,
                    policies: PolicySides {
                        before: b.1,
                        after: a.1,
                    },
                    newly_denied,
                    newly_allowed,
                    workloads_diff_info: None,
                    identity: a.2.or(b.2),
                    port: Some(port),
                });
            }
        }
    }
    out
}

/// The peer that stands for every client outside the mesh (no sidecar, plain
/// text), in np-guard's notation for the whole IPv4 space.
pub const OUTSIDE_THE_MESH: &str = "0.0.0.0-255.255.255.255[External]";

/// A peer-authentication outcome in words: `accepted (MODE, TRANSPORT)` or
/// `rejected: WHY (MODE)`.
fn mtls_words(p: &crate::peerauth::MtlsPrediction) -> String {
    use crate::peerauth::{ClientTransport, MtlsOutcome};
    let mode = p
        .destination_mode
        .as_ref()
        .map_or("no sidecar".to_string(), |m| m.mode.to_string());
    let sends = match p.client_sends {
        ClientTransport::Mtls => "mTLS",
        ClientTransport::Plaintext => "plain text",
    };
    match p.outcome {
        MtlsOutcome::Ok => format!("accepted ({mode}, {sends})"),
        MtlsOutcome::PlaintextIntoStrict => format!("rejected: plain text into {mode}"),
        MtlsOutcome::MtlsIntoDisable => format!("rejected: mTLS into {mode}"),
    }
}

/// The PeerAuthentication that decided a mode, or none (the default).
fn mode_policy(m: &crate::peerauth::EffectiveMtls) -> Vec<String> {
    m.decided_by
        .iter()
        .map(|s| {
            let port = if s.port_level { ", port-level" } else { "" };
            format!("{} ({}{port})", s.policy, m.mode)
        })
        .collect()
}

/// The PeerAuthentication changes between two models, by Istio's rules
/// ([`crate::peerauth`]): per destination workload with a sidecar and TCP port
/// it declares, each client (every workload, and
/// [`OUTSIDE_THE_MESH`] for plain-text clients without a sidecar) whose
/// connection through a Service is accepted on one side and rejected on the
/// other (`added`: newly accepted, `removed`: newly rejected). A port whose
/// mode changes without any client's fate changing (PERMISSIVE to DISABLE
/// namespace-wide: auto mTLS follows) is one `changed` record from
/// `*`, so that no PeerAuthentication change goes unseen.
pub fn peer_auth_changes(before: &Cluster, after: &Cluster) -> Vec<Change> {
    use crate::peerauth::Addressed;
    let wb = connectivity::workloads(before);
    let wa = connectivity::workloads(after);
    let mut out = Vec::new();
    for (d, db) in &wb {
        let Some(da) = wa.get(d) else {
            continue; // a workload on one side only: the NetworkPolicy diff says so
        };
        if !db.has_sidecar && !da.has_sidecar {
            continue;
        }
        let ports: BTreeSet<u16> = [db, da]
            .into_iter()
            .flat_map(|p| p.ports.iter())
            .filter(|cp| {
                cp.protocol == crate::workload::Protocol::Tcp && !ISTIO_PORTS.contains(&cp.port)
            })
            .map(|cp| cp.port)
            .collect();
        for port in ports {
            let (mb, ma) = (before.mtls_mode(db, port), after.mtls_mode(da, port));
            let mut flipped = false;
            let clients = wb
                .iter()
                .filter(|(s, _)| *s != d)
                .filter_map(|(s, sb)| wa.get(s).map(|sa| (s.to_string(), Some((*sb, *sa)))))
                .chain([(OUTSIDE_THE_MESH.to_string(), None)]);
            for (from, pods) in clients {
                let pb = before.predict_mtls(pods.map(|p| p.0), db, port, Addressed::Service);
                let pa = after.predict_mtls(pods.map(|p| p.1), da, port, Addressed::Service);
                if pb.outcome.is_failure() == pa.outcome.is_failure() {
                    continue;
                }
                flipped = true;
                let newly_denied = pa.outcome.is_failure();
                out.push(Change {
                    kind: if newly_denied {
                        DiffKind::Removed
                    } else {
                        DiffKind::Added
                    },
                    from,
                    to: d.to_string(),
                    before: mtls_words(&pb),
                    after: mtls_words(&pa),
                    layer: Layer::PeerAuthentication,
                    policies: PolicySides {
                        before: pb
                            .destination_mode
                            .as_ref()
                            .map(mode_policy)
                            .unwrap_or_default(),
                        after: pa
                            .destination_mode
                            .as_ref()
                            .map(mode_policy)
                            .unwrap_or_default(),
                    },
                    newly_denied,
                    newly_allowed: !newly_denied,
                    workloads_diff_info: None,
                    identity: None,
                    port: Some(port),
                });
            }
            if !flipped && da.has_sidecar && db.has_sidecar && mb.mode != ma.mode {
                out.push(Change {
                    kind: DiffKind::Changed,
                    from: "*".into(),
                    to: d.to_string(),
                    before: mb.to_string(),
                    after: ma.to_string(),
                    layer: Layer::PeerAuthentication,
                    policies: PolicySides {
                        before: mode_policy(&mb),
                        after: mode_policy(&ma),
                    },
                    newly_denied: false,
                    newly_allowed: false,
                    workloads_diff_info: None,
                    identity: None,
                    port: Some(port),
                });
            }
        }
    }
    out
}

/// Every change between two models: NetworkPolicy first (np-guard's
/// order), then PeerAuthentication, then AuthorizationPolicy (the order a
/// connection meets them).
pub fn changes(before: &Cluster, after: &Cluster) -> Vec<Change> {
    let mut out = network_changes(before, after);
    out.extend(peer_auth_changes(before, after));
    out.extend(authz_changes(before, after));
    out
}

/// Which changes make a CI gate fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// A connection allowed before is denied after (traffic would be cut).
    #[default]
    NewlyDenied,
    /// A connection denied before is allowed after (exposure grows).
    NewlyAllowed,
    /// Any change.
    Any,
}

impl FailOn {
    /// Whether this change trips the gate.
    pub fn trips(self, c: &Change) -> bool {
        match self {
            Self::NewlyDenied => c.newly_denied,
            Self::NewlyAllowed => c.newly_allowed,
            Self::Any => true,
        }
    }
}

/// A prediction line: what the model allows from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allowed {
    pub from: String,
    pub to: String,
    pub connections: String,
    pub layer: Layer,
}

/// The model's allowed NetworkPolicy connectivity, np-guard's connlist.
pub fn predict(cluster: &Cluster) -> Vec<Allowed> {
    connectivity::connlist(cluster)
        .into_iter()
        .map(|c| Allowed {
            from: c.src.to_string(),
            to: c.dst.to_string(),
            connections: c.conns.to_string(),
            layer: Layer::NetworkPolicy,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterOptions;
    use crate::manifests::parse_manifests;

    const BASE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 8080}]}]
"#;

    fn cluster(o: &Objects) -> Cluster {
        Cluster::from_objects(o.clone(), ClusterOptions::default()).unwrap()
    }

    #[test]
    fn replacing_a_policy_cuts_traffic_and_names_it() {
        let base = parse_manifests(BASE).unwrap();
        let change = parse_manifests(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 9090}]}]
"#,
        )
        .unwrap();
        let after = apply_objects(&base, &change);
        assert_eq!(after.network_policies.len(), 1, "replaced, not added");
        let changes = network_changes(&cluster(&base), &cluster(&after));
        let c = changes
            .iter()
            .find(|c| c.from == "shop/client[Pod]" && c.to == "shop/web[Deployment]")
            .expect("client -> web changes");
        assert_eq!(
            (c.before.as_str(), c.after.as_str()),
            ("TCP 8080", "TCP 9090")
        );
        assert_eq!(c.kind, DiffKind::Changed);
        assert!(c.newly_denied && c.newly_allowed);
        // The rule that admits each side's connections.
        assert_eq!(c.policies.before, ["shop/web-in ingress rule 0"]);
        assert_eq!(c.policies.after, ["shop/web-in ingress rule 0"]);
        assert!(FailOn::NewlyDenied.trips(c));
        // A pair cut off names the policy isolating it.
        let gone = parse_manifests(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
"#,
        )
        .unwrap();
        let changes = network_changes(&cluster(&base), &cluster(&apply_objects(&base, &gone)));
        let c = changes
            .iter()
            .find(|c| c.from == "shop/client[Pod]")
            .unwrap();
        assert_eq!(c.kind, DiffKind::Removed);
        assert_eq!(
            c.policies.after,
            ["shop/web-in (ingress of shop/web[Deployment])"]
        );
    }

    #[test]
    fn deleting_a_policy_only_opens() {
        let base = parse_manifests(BASE).unwrap();
        let mut after = base.clone();
        let gone = parse_manifests(
            "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: web-in, namespace: shop}\nspec: {}\n",
        )
        .unwrap();
        remove_objects(&mut after, &gone);
        assert!(after.network_policies.is_empty());
        let changes = network_changes(&cluster(&base), &cluster(&after));
        assert!(!changes.is_empty());
        assert!(changes.iter().all(|c| c.newly_allowed && !c.newly_denied));
        assert!(!changes.iter().any(|c| FailOn::NewlyDenied.trips(c)));
        assert!(changes.iter().any(|c| FailOn::NewlyAllowed.trips(c)));
    }

    const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec: {serviceAccountName: client, containers: [{name: c, image: x}]}
"#;

    fn authz_change(policy: &str) -> Vec<Change> {
        let base = parse_manifests(MESH).unwrap();
        let after = apply_objects(&base, &parse_manifests(policy).unwrap());
        authz_changes(&cluster(&base), &cluster(&after))
    }

    #[test]
    fn authorization_policy_changes_per_identity_and_port() {
        let deny = authz_change(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]}]
"#,
        );
        assert_eq!(deny.len(), 1, "{deny:#?}");
        let c = &deny[0];
        assert_eq!(
            (c.from.as_str(), c.to.as_str(), c.port),
            (
                "shop/client[Deployment]",
                "shop/web[Deployment]",
                Some(8080)
            )
        );
        assert_eq!((c.before.as_str(), c.after.as_str()), ("allowed", "denied"));
        assert_eq!(c.kind, DiffKind::Removed);
        assert_eq!(c.layer, Layer::AuthorizationPolicy);
        assert_eq!(
            c.identity.as_deref(),
            Some("cluster.local/ns/shop/sa/client")
        );
        assert_eq!(c.policies.after, ["shop/deny-client (DENY)"]);
        assert!(c.newly_denied && !c.newly_allowed);

        let by_path = authz_change(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"#,
        );
        assert_eq!(by_path.len(), 1, "{by_path:#?}");
        let c = &by_path[0];
        assert_eq!(c.before, "allowed");
        assert!(
            c.after
                .starts_with("depends on the request: plain TCP is DENY, HTTP GET /admin")
                && c.after.contains(" is ALLOW"),
            "{:?}",
            c.after
        );
        assert_eq!(c.kind, DiffKind::Changed);
        assert!(c.newly_denied && !c.newly_allowed);
    }

    const STRICT_WEB: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web-strict, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
"#;

    #[test]
    fn peer_authentication_changes_cut_plain_text_clients() {
        let base = parse_manifests(MESH).unwrap();
        let change = parse_manifests(STRICT_WEB).unwrap();
        let after = apply_objects(&base, &change);
        assert_eq!(after.peer_authentications.len(), 1, "the overlay keeps it");
        let (b, a) = (cluster(&base), cluster(&after));
        let pa = peer_auth_changes(&b, &a);
        // The client has a sidecar (mTLS): unaffected. Outside the mesh: cut.
        assert_eq!(pa.len(), 1, "{pa:#?}");
        let c = &pa[0];
        assert_eq!(
            (c.from.as_str(), c.to.as_str(), c.port),
            (OUTSIDE_THE_MESH, "shop/web[Deployment]", Some(8080))
        );
        assert_eq!(c.layer, Layer::PeerAuthentication);
        assert_eq!(c.kind, DiffKind::Removed);
        assert_eq!(c.before, "accepted (PERMISSIVE, plain text)");
        assert_eq!(c.after, "rejected: plain text into STRICT");
        assert_eq!(c.policies.after, ["shop/web-strict (STRICT)"]);
        assert!(c.policies.before.is_empty());
        assert!(c.newly_denied && FailOn::NewlyDenied.trips(c));
        // In the whole diff, and gone again when the policy is deleted.
        assert!(changes(&b, &a).contains(c));
        let mut undone = after.clone();
        remove_objects(&mut undone, &change);
        assert!(undone.peer_authentications.is_empty());
        let back = peer_auth_changes(&a, &cluster(&undone));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].kind, DiffKind::Added);
        assert!(back[0].newly_allowed);

        // A workload-level DISABLE is not seen by clients' auto mTLS: the
        // client's sidecar still sends mTLS and is cut.
        let disable = apply_objects(
            &base,
            &parse_manifests(&STRICT_WEB.replace("STRICT", "DISABLE")).unwrap(),
        );
        let d = peer_auth_changes(&b, &cluster(&disable));
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].from, "shop/client[Deployment]");
        assert_eq!(d[0].after, "rejected: mTLS into DISABLE");

        // Namespace-wide DISABLE: auto mTLS follows, nobody is cut, the mode
        // change still shows.
        let ns_disable = apply_objects(
            &base,
            &parse_manifests(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: off, namespace: shop}\nspec: {mtls: {mode: DISABLE}}\n",
            )
            .unwrap(),
        );
        let n = peer_auth_changes(&b, &cluster(&ns_disable));
        assert_eq!(n.len(), 1, "{n:#?}");
        assert_eq!((n[0].from.as_str(), n[0].kind), ("*", DiffKind::Changed));
        assert!(
            n[0].after
                .starts_with("DISABLE (PeerAuthentication shop/off")
        );
        assert!(!n[0].newly_denied && !n[0].newly_allowed);
    }

    #[test]
    fn replica_set_pods_are_named_after_their_deployment() {
        let mut o = Objects::default();
        let mut p = Pod::new(
            "shop",
            "web-7d4f-abcde",
            [("pod-template-hash".to_string(), "7d4f".to_string())].into(),
        );
        p.owner = Some(Owner {
            kind: "ReplicaSet".into(),
            name: "web-7d4f".into(),
        });
        let mut other = p.clone();
        other.name = "x".into();
        other.labels.clear();
        o.pods = vec![p, other];
        name_pods_after_deployments(&mut o);
        assert_eq!(
            connectivity::WorkloadRef::of(&o.pods[0]).to_string(),
            "shop/web[Deployment]"
        );
        assert_eq!(
            connectivity::WorkloadRef::of(&o.pods[1]).to_string(),
            "shop/web-7d4f[ReplicaSet]",
            "without the hash label it stays a ReplicaSet"
        );
    }

    #[test]
    fn a_workload_replaces_the_pods_it_owns() {
        let mut base = parse_manifests(BASE).unwrap();
        let mut running = base.template_pods[0].clone();
        running.name = "web-7d4f-abcde".into();
        running.owner = Some(Owner {
            kind: "ReplicaSet".into(),
            name: "web-7d4f".into(),
        });
        base.template_pods.clear();
        base.pods.push(running);
        let change =
            parse_manifests(&BASE.replace("app: web}}\n    spec", "app: web2}}\n    spec"))
                .unwrap();
        let after = apply_objects(&base, &change);
        assert!(!after.pods.iter().any(|p| p.name == "web-7d4f-abcde"));
        assert_eq!(after.template_pods.len(), 1);
    }
}
