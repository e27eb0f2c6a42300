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

use crate::connectivity::{self, ConnectionDiff, ConnectionSet, DiffKind, Peer, WorkloadRef};
use crate::netpol::Direction;
use crate::workload::{Cluster, Objects, Owner, Pod, namespaced_name};

/// Appends every object of `from` to `into` (no replacement).
pub fn merge_objects(into: &mut Objects, from: Objects) {
    into.namespaces.extend(from.namespaces);
    into.pods.extend(from.pods);
    into.template_pods.extend(from.template_pods);
    into.network_policies.extend(from.network_policies);
    into.authorization_policies
        .extend(from.authorization_policies);
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
/// by namespace/name.
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

fn deciding(cluster: &Cluster, src: &Peer, dst: &Peer) -> Vec<String> {
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
            before: deciding(before, &d.src, &d.dst),
            after: deciding(after, &d.src, &d.dst),
        },
        workloads_diff_info,
    }
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
    use crate::workload::parse_manifests;

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
        assert_eq!(
            c.policies.after,
            ["shop/web-in (ingress of shop/web[Deployment])"]
        );
        assert!(FailOn::NewlyDenied.trips(c));
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
