//! Reading Istio's security CRDs (AuthorizationPolicy, PeerAuthentication)
//! from the API into meshpolicy's types, once for every plugin.
//!
//! npexec (`--explain`/`--predict`) and authzcheck both need the same objects
//! from the same places: a namespace and the mesh root namespace, served as
//! `security.istio.io/v1` or, on older control planes, `v1beta1`, and a
//! cluster without Istio simply serves neither. Keeping the listing, the
//! version fallback and the conversion here means both plugins see the same
//! policies and report the same invalid objects. The Kubernetes side of the
//! model (a namespace's labels, its pods and NetworkPolicies) is read here too,
//! for the same reason.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use meshpolicy::AuthorizationPolicy;
use meshpolicy::peerauth::PeerAuthentication;

use crate::{ApiOp, Kube, PluginError};

/// A namespace's labels, as far as the caller may read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceLabels {
    Found(BTreeMap<String, String>),
    /// `get namespaces` is forbidden (common for namespace-scoped users).
    Forbidden,
    NotFound,
}

/// Reads a namespace's labels (`namespaceSelector` rules match them).
pub async fn namespace_labels(
    kube: &Kube,
    namespace: &str,
) -> Result<NamespaceLabels, PluginError> {
    let api: Api<Namespace> = Api::all(kube.client.clone());
    match api.get(namespace).await {
        Ok(ns) => Ok(NamespaceLabels::Found(
            ns.metadata.labels.unwrap_or_default(),
        )),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(NamespaceLabels::NotFound),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(NamespaceLabels::Forbidden),
        Err(e) => Err(kube.err(
            e,
            &ApiOp::new("get", "namespaces", namespace).named(namespace),
        )),
    }
}

/// Lists a namespace's pods and NetworkPolicies (in parallel).
pub async fn pods_and_network_policies(
    kube: &Kube,
    namespace: &str,
) -> Result<(Vec<Pod>, Vec<NetworkPolicy>), PluginError> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let nps: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), namespace);
    let lp = ListParams::default();
    let (pods, nps) = futures::join!(pods.list(&lp), nps.list(&lp));
    let pods = pods
        .map_err(|e| kube.err(e, &ApiOp::new("list", "pods", namespace)))?
        .items;
    let nps = nps
        .map_err(|e| {
            kube.err(
                e,
                &ApiOp::new("list", "networkpolicies.networking.k8s.io", namespace),
            )
        })?
        .items;
    Ok((pods, nps))
}

/// Versions of `security.istio.io` to try, newest first.
const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

fn resource(version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("security.istio.io", version, kind),
        plural,
    )
}

/// Lists the objects of one `security.istio.io` kind in a namespace (v1, else
/// v1beta1); `Ok(None)` when the cluster serves the kind in neither.
async fn list_kind(
    kube: &Kube,
    namespace: &str,
    kind: &str,
    plural: &str,
    resource_name: &'static str,
) -> Result<Option<Vec<DynamicObject>>, PluginError> {
    for version in VERSIONS {
        let ar = resource(version, kind, plural);
        let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), namespace, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => return Ok(Some(list.items)),
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => {
                return Err(kube.err(e, &ApiOp::new("list", resource_name, namespace)));
            }
        }
    }
    Ok(None)
}

/// The AuthorizationPolicies of a namespace as dynamic objects (authzcheck
/// keeps their metadata for ages); `None` when the CRD is not served.
pub async fn list_authorization_objects(
    kube: &Kube,
    namespace: &str,
) -> Result<Option<Vec<DynamicObject>>, PluginError> {
    list_kind(
        kube,
        namespace,
        "AuthorizationPolicy",
        "authorizationpolicies",
        "authorizationpolicies.security.istio.io",
    )
    .await
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

/// The AuthorizationPolicies of a namespace; `None` when the CRD is not served.
pub async fn list_authorization_policies(
    kube: &Kube,
    namespace: &str,
) -> Result<Option<Vec<AuthorizationPolicy>>, PluginError> {
    let Some(objs) = list_authorization_objects(kube, namespace).await? else {
        return Ok(None);
    };
    objs.into_iter()
        .map(|o| authz_from_dynamic(o, namespace))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The Gateway API Gateways (`gateway.networking.k8s.io/v1`) of every
/// namespace, or of `namespace` when listing across namespaces is forbidden;
/// `None` when the cluster does not serve Gateways. Ambient waypoints are
/// Gateways of class `istio-waypoint`, so both plugins resolve them from this.
pub async fn list_gateways(
    kube: &Kube,
    namespace: &str,
) -> Result<Option<Vec<serde_json::Value>>, PluginError> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
        "gateways",
    );
    let all: Api<DynamicObject> = Api::all_with(kube.client.clone(), &ar);
    let listed = match all.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let ns: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), namespace, &ar);
            ns.list(&ListParams::default()).await
        }
        other => other,
    };
    match listed {
        Ok(list) => Ok(Some(
            list.items
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect(),
        )),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(kube.err(
            e,
            &ApiOp::new("list", "gateways.gateway.networking.k8s.io", namespace),
        )),
    }
}

/// The PeerAuthentications of a namespace, validated as Istio validates them.
#[derive(Debug, Default, Clone)]
pub struct PeerAuthentications {
    /// The valid ones.
    pub policies: Vec<PeerAuthentication>,
    /// One line per object Istio's validation would reject (and ignores).
    pub invalid: Vec<String>,
}

/// The PeerAuthentications of a namespace; `None` when the CRD is not served.
pub async fn list_peer_authentications(
    kube: &Kube,
    namespace: &str,
) -> Result<Option<PeerAuthentications>, PluginError> {
    let Some(objs) = list_kind(
        kube,
        namespace,
        "PeerAuthentication",
        "peerauthentications",
        "peerauthentications.security.istio.io",
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(peer_authentications_from(&objs, namespace)))
}

/// Converts listed PeerAuthentication objects, keeping the invalid ones as notes.
pub fn peer_authentications_from(objs: &[DynamicObject], namespace: &str) -> PeerAuthentications {
    let mut out = PeerAuthentications::default();
    for obj in objs {
        let value = match serde_json::to_value(obj) {
            Ok(v) => v,
            Err(e) => {
                out.invalid.push(format!("peerauthentication: {e}"));
                continue;
            }
        };
        match PeerAuthentication::from_value(&value, namespace) {
            Ok(pa) => out.policies.push(pa),
            Err(e) => out.invalid.push(e.to_string()),
        }
    }
    out
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
        assert_eq!(ap.metadata.namespace.as_deref(), Some("np-test-2"));

        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "allow-ns"},
            "spec": {"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]}
        }))
        .unwrap();
        let ap = authz_from_dynamic(obj, "b").unwrap();
        assert_eq!(ap.metadata.namespace.as_deref(), Some("b"));
    }

    #[test]
    fn authorization_spec_that_does_not_fit_names_the_object() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "odd", "namespace": "x"},
            "spec": {"rules": "not a list"}
        }))
        .unwrap();
        let e = authz_from_dynamic(obj, "x").unwrap_err().to_string();
        assert!(e.contains("authorizationpolicy x/odd"), "{e}");
    }

    #[test]
    fn peer_authentications_keep_valid_and_note_invalid() {
        let objs: Vec<DynamicObject> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "strict"}, "spec": {"mtls": {"mode": "STRICT"}}},
            {"metadata": {"name": "bad", "namespace": "a"}, "spec": {"mtls": {"mode": "ON"}}},
            {"metadata": {"name": "ports", "namespace": "a"},
             "spec": {"selector": {"matchLabels": {"app": "x"}},
                      "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}
        ]))
        .unwrap();
        let got = peer_authentications_from(&objs, "a");
        assert_eq!(got.policies.len(), 2);
        assert_eq!(got.policies[0].namespace, "a");
        assert_eq!(
            got.policies[1].port_level.get(&8080).copied().flatten(),
            Some(meshpolicy::peerauth::MtlsMode::Disable)
        );
        assert_eq!(got.invalid.len(), 1);
        assert!(got.invalid[0].contains("a/bad"), "{:?}", got.invalid);
    }
}
