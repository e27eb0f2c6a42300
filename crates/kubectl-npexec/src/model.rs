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

use std::collections::{BTreeMap, BTreeSet};

use futures::future::try_join_all;
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kubeplugin::resources::{is_running, sort_pods};
use kubeplugin::{ApiOp, Kube, PluginError};
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
    /// Read for what-if only ([`load_objects`]).
    peer_authentications: Vec<PeerAuthentication>,
    notes: Vec<String>,
}

/// AuthorizationPolicy versions to try, newest first.
const AUTHZ_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

fn authz_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("security.istio.io", version, "AuthorizationPolicy"),
        "authorizationpolicies",
    )
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Lists the AuthorizationPolicies of a namespace; `Ok(None)` when the CRD is
/// not served at all.
async fn list_authz(
    kube: &Kube,
    namespace: &str,
) -> Result<Option<Vec<AuthorizationPolicy>>, PluginError> {
    for version in AUTHZ_VERSIONS {
        let ar = authz_resource(version);
        let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), namespace, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let mut out = Vec::with_capacity(list.items.len());
                for obj in list.items {
                    out.push(authz_from_dynamic(obj, namespace)?);
                }
                return Ok(Some(out));
            }
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(kube.err(
                    e,
                    &ApiOp::new("list", "authorizationpolicies.security.istio.io", namespace),
                ));
            }
        }
    }
    Ok(None)
}

/// Lists the PeerAuthentications of a namespace (v1, else v1beta1), read
/// by meshpolicy's validation; none when the CRD is not served, and an
/// invalid one is skipped with a note (Istio ignores it too).
async fn list_peer_authns(
    kube: &Kube,
    namespace: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<PeerAuthentication>, PluginError> {
    for version in AUTHZ_VERSIONS {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("security.istio.io", version, "PeerAuthentication"),
            "peerauthentications",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), namespace, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let mut out = Vec::new();
                for obj in list.items {
                    let parsed = serde_json::to_value(&obj)
                        .map_err(|e| e.to_string())
                        .and_then(|v| {
                            PeerAuthentication::from_value(&v, namespace).map_err(|e| e.to_string())
                        });
                    match parsed {
                        Ok(pa) => out.push(pa),
                        Err(e) => notes.push(format!("skipped: {e}")),
                    }
                }
                return Ok(out);
            }
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(kube.err(
                    e,
                    &ApiOp::new("list", "peerauthentications.security.istio.io", namespace),
                ));
            }
        }
    }
    Ok(Vec::new())
}

/// Reads a dynamic AuthorizationPolicy into meshpolicy's type.
pub fn authz_from_dynamic(
    obj: DynamicObject,
    namespace: &str,
) -> Result<AuthorizationPolicy, PluginError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let value = serde_json::to_value(&obj).map_err(|e| PluginError::Api {
        code: None,
        message: format!("authorizationpolicy {namespace}/{name}: {e}"),
    })?;
    let ap: AuthorizationPolicy = serde_json::from_value(value).map_err(|e| PluginError::Api {
        code: None,
        message: format!("authorizationpolicy {namespace}/{name} does not fit the v1 schema: {e}"),
    })?;
    Ok(ap.with_default_namespace(namespace))
}

async fn read_namespace(
    kube: &Kube,
    namespace: &str,
    with_workloads: bool,
) -> Result<NamespaceObjects, PluginError> {
    read_namespace_with(kube, namespace, with_workloads, false).await
}

async fn read_namespace_with(
    kube: &Kube,
    namespace: &str,
    with_workloads: bool,
    with_peer_authns: bool,
) -> Result<NamespaceObjects, PluginError> {
    let mut out = NamespaceObjects::default();
    let ns_api: Api<K8sNamespace> = Api::all(kube.client.clone());
    match ns_api.get(namespace).await {
        Ok(ns) => out.labels = Some(ns.metadata.labels.unwrap_or_default()),
        Err(e) if is_not_found(&e) => return Ok(out),
        // Reading namespaces may be forbidden to many users; the name label
        // (always present) still lets most selectors work.
        Err(kube::Error::Api(s)) if s.code == 403 => {
            out.notes.push(format!(
                "cannot get namespace {namespace}: its labels are unknown, namespaceSelector rules see only kubernetes.io/metadata.name"
            ));
            out.labels = Some(BTreeMap::new());
        }
        Err(e) => {
            return Err(kube.err(
                e,
                &ApiOp::new("get", "namespaces", namespace).named(namespace),
            ));
        }
    }
    if with_workloads {
        let pods: Api<K8sPod> = Api::namespaced(kube.client.clone(), namespace);
        let np: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), namespace);
        let lp = ListParams::default();
        let (pods, nps) = futures::join!(pods.list(&lp), np.list(&lp));
        out.pods = pods
            .map_err(|e| kube.err(e, &ApiOp::new("list", "pods", namespace)))?
            .items;
        out.network_policies = nps
            .map_err(|e| {
                kube.err(
                    e,
                    &ApiOp::new("list", "networkpolicies.networking.k8s.io", namespace),
                )
            })?
            .items;
    }
    if with_peer_authns {
        out.peer_authentications = list_peer_authns(kube, namespace, &mut out.notes).await?;
    }
    match list_authz(kube, namespace).await? {
        Some(aps) => out.authorization_policies = aps,
        None => out.notes.push(
            "the AuthorizationPolicy CRD (security.istio.io) is not installed: no Istio authorization".to_string(),
        ),
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
        .map(|ns| read_namespace_with(kube, ns, true, true))
        .chain(
            (!namespaces.contains(&root)).then(|| read_namespace_with(kube, &root, false, true)),
        );
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
    }
    Model { cluster, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_authorization_policy_reads_into_the_model_type() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-all", "namespace": "np-test-2"},
            "spec": {"action": "DENY", "rules": [{}]}
        }))
        .unwrap();
        let ap = authz_from_dynamic(obj, "np-test-2").unwrap();
        assert_eq!(ap.action(), meshpolicy::Action::Deny);
        assert_eq!(ap.spec.rules.len(), 1);
        assert_eq!(ap.metadata.namespace.as_deref(), Some("np-test-2"));

        // A list item without apiVersion/kind and without namespace.
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "allow-ns"},
            "spec": {"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]}
        }))
        .unwrap();
        let ap = authz_from_dynamic(obj, "b").unwrap();
        assert_eq!(ap.metadata.namespace.as_deref(), Some("b"));
        assert_eq!(ap.action(), meshpolicy::Action::Allow);
    }

    #[test]
    fn spec_that_does_not_fit_is_an_error_naming_the_object() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "odd", "namespace": "x"},
            "spec": {"rules": "not a list"}
        }))
        .unwrap();
        let e = authz_from_dynamic(obj, "x").unwrap_err().to_string();
        assert!(e.contains("authorizationpolicy x/odd"), "{e}");
    }

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
