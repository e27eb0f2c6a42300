//! Reading the cluster's policy state into meshpolicy's model (`--explain`, `--predict`).
//!
//! The engine answers "which policy decides this connection?" from plain
//! objects; this module is the only place that fetches them: the namespaces
//! a run touches (their labels feed `namespaceSelector`), their pods (running
//! ones, Ready first, so the representative destination pod is the one a
//! Service would pick), their NetworkPolicies, and the Istio
//! AuthorizationPolicies there and in the mesh root namespace. The
//! AuthorizationPolicy CRD is read as a `DynamicObject` (security.istio.io/v1,
//! falling back to v1beta1) and deserialised into meshpolicy's own types, so a
//! cluster without Istio simply has no AuthorizationPolicies (with a note).
//! PeerAuthentications come the same way (they decide `mtls-failure`); both
//! are listed by `kubeplugin::policy_model`, which authzcheck shares.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Pod as K8sPod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kubeplugin::policy_model::{
    NamespaceLabels, list_authorization_policies, list_peer_authentications, namespace_labels,
    pods_and_network_policies,
};
use kubeplugin::resources::{is_running, sort_pods};
use kubeplugin::{Kube, PluginError};
use meshpolicy::manifests::Objects;
use meshpolicy::peerauth::PeerAuthentication;
use meshpolicy::{AuthorizationPolicy, Cluster, ClusterOptions, Namespace, Pod};

/// The engine's model plus what could not be read into it.
#[derive(Debug)]
pub struct Model {
    pub cluster: Cluster,
    /// Objects skipped and layers not analysed, in words.
    pub notes: Vec<String>,
}

/// What one namespace contributed.
#[derive(Debug, Default)]
struct NamespaceObjects {
    labels: Option<BTreeMap<String, String>>,
    pods: Vec<K8sPod>,
    network_policies: Vec<NetworkPolicy>,
    authorization_policies: Vec<AuthorizationPolicy>,
    peer_authentications: Vec<PeerAuthentication>,
    notes: Vec<String>,
}

async fn read_namespace(
    kube: &Kube,
    namespace: &str,
    with_workloads: bool,
) -> Result<NamespaceObjects, PluginError> {
    let mut out = NamespaceObjects::default();
    match namespace_labels(kube, namespace).await? {
        NamespaceLabels::Found(labels) => out.labels = Some(labels),
        NamespaceLabels::NotFound => return Ok(out),
        // Reading namespaces may be forbidden to many users; the name label
        // (always present) still lets most selectors work.
        NamespaceLabels::Forbidden => {
            out.notes.push(format!(
                "cannot get namespace {namespace}: its labels are unknown, namespaceSelector rules see only kubernetes.io/metadata.name"
            ));
            out.labels = Some(BTreeMap::new());
        }
    }
    if with_workloads {
        (out.pods, out.network_policies) = pods_and_network_policies(kube, namespace).await?;
    }
    let (aps, pas) = futures::join!(
        list_authorization_policies(kube, namespace),
        list_peer_authentications(kube, namespace)
    );
    match aps? {
        Some(aps) => out.authorization_policies = aps,
        None => out.notes.push(
            "the AuthorizationPolicy CRD (security.istio.io) is not installed: no Istio authorization".to_string(),
        ),
    }
    if let Some(pas) = pas? {
        out.peer_authentications = pas.policies;
        out.notes.extend(
            pas.invalid
                .into_iter()
                .map(|e| format!("peerauthentication skipped (Istio ignores it): {e}")),
        );
    }
    Ok(out)
}

/// Fetches what the engine needs about `namespaces` (pods, NetworkPolicies,
/// AuthorizationPolicies) and the AuthorizationPolicies of the mesh root
/// namespace, and builds the model.
pub async fn load(
    kube: &Kube,
    namespaces: &BTreeSet<String>,
    options: ClusterOptions,
) -> Result<Model, PluginError> {
    let root = options.root_namespace.clone();
    let reads = namespaces
        .iter()
        .map(|ns| read_namespace(kube, ns, true))
        .chain((!namespaces.contains(&root)).then(|| read_namespace(kube, &root, false)));
    let read: Vec<NamespaceObjects> = try_join_all(reads).await?;
    let names: Vec<&String> = namespaces
        .iter()
        .chain((!namespaces.contains(&root)).then_some(&root))
        .collect();
    Ok(build(names.into_iter().zip(read), options))
}

/// The same reads as [`load`], as plain objects (namespaces, running pods,
/// policies) for what-if overlays, with notes on what was skipped.
pub async fn load_objects(
    kube: &Kube,
    namespaces: &BTreeSet<String>,
    options: &ClusterOptions,
) -> Result<(Objects, Vec<String>), PluginError> {
    let root = options.root_namespace.clone();
    let reads = namespaces
        .iter()
        .map(|ns| read_namespace(kube, ns, true))
        .chain((!namespaces.contains(&root)).then(|| read_namespace(kube, &root, false)));
    let read: Vec<NamespaceObjects> = try_join_all(reads).await?;
    let names = namespaces
        .iter()
        .chain((!namespaces.contains(&root)).then_some(&root));
    let mut out = Objects::default();
    let mut notes: Vec<String> = Vec::new();
    for (name, mut objs) in names.zip(read) {
        notes.append(&mut objs.notes);
        if let Some(labels) = objs.labels.take() {
            out.namespaces.push(Namespace::new(name, labels));
        }
        sort_pods(&mut objs.pods);
        for p in objs.pods.iter().filter(|p| is_running(p)) {
            match Pod::from_k8s(p) {
                Ok(pod) => out.pods.push(pod),
                Err(e) => notes.push(format!("pod skipped: {e}")),
            }
        }
        out.network_policies.append(&mut objs.network_policies);
        out.authorization_policies
            .append(&mut objs.authorization_policies);
        out.peer_authentications
            .append(&mut objs.peer_authentications);
    }
    notes.dedup();
    Ok((out, notes))
}

fn build<'a>(
    read: impl Iterator<Item = (&'a String, NamespaceObjects)>,
    options: ClusterOptions,
) -> Model {
    let mut cluster = Cluster::with_options(options);
    let mut notes: Vec<String> = Vec::new();
    let mut note = |n: String| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for (name, mut objs) in read {
        for n in objs.notes.drain(..) {
            note(n);
        }
        if let Some(labels) = objs.labels.take() {
            cluster.add_namespace(Namespace::new(name, labels));
        }
        sort_pods(&mut objs.pods);
        for p in objs.pods.iter().filter(|p| is_running(p)) {
            match Pod::from_k8s(p) {
                Ok(pod) => cluster.add_pod(pod),
                Err(e) => note(format!("pod skipped: {e}")),
            }
        }
        for np in &objs.network_policies {
            if let Err(e) = cluster.add_network_policy(np) {
                note(format!("networkpolicy skipped: {e}"));
            }
        }
        for ap in &objs.authorization_policies {
            if let Err(e) = cluster.add_authorization_policy(ap) {
                note(format!("authorizationpolicy skipped: {e}"));
            }
        }
        for pa in objs.peer_authentications.drain(..) {
            cluster.add_peer_authentication(pa);
        }
    }
    Model { cluster, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_keeps_running_pods_and_notes_bad_policies() {
        let pod = |name: &str, phase: &str| -> K8sPod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "a", "labels": {"app": "x"}},
                "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
                "status": {"phase": phase, "podIP": "10.0.0.1"}
            }))
            .unwrap()
        };
        let bad_np: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bad", "namespace": "a"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "nope"}}]}]}
        }))
        .unwrap();
        let ns = "a".to_string();
        let objs = NamespaceObjects {
            labels: Some(BTreeMap::from([("team".into(), "x".into())])),
            pods: vec![pod("done", "Succeeded"), pod("web", "Running")],
            network_policies: vec![bad_np],
            authorization_policies: Vec::new(),
            peer_authentications: Vec::new(),
            notes: vec!["n".into(), "n".into()],
        };
        let m = build(std::iter::once((&ns, objs)), ClusterOptions::default());
        assert!(m.cluster.pod("a", "web").is_some_and(|p| p.has_sidecar));
        assert!(m.cluster.pod("a", "done").is_none());
        assert_eq!(
            m.cluster
                .namespace("a")
                .and_then(|n| n.labels.get("team"))
                .map(String::as_str),
            Some("x")
        );
        assert_eq!(m.notes.iter().filter(|n| *n == "n").count(), 1);
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("networkpolicy skipped") && n.contains("a/bad")),
            "{:?}",
            m.notes
        );
    }
}
