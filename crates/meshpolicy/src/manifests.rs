//! Kubernetes and Istio manifests read into the objects the engine models.
//!
//! What-if runs, offline mode and the tests start from YAML or JSON files, not
//! from an API server: multi-document YAML, `List`s, and workloads whose pod
//! template stands for their pods. This module turns such text into
//! [`Objects`] by kind; `Cluster::from_objects` indexes them.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

use crate::authz::{AuthorizationPolicy, AuthzError};
use crate::netpol::NetpolError;
use crate::peerauth::{PeerAuthError, PeerAuthentication};
use crate::workload::{Namespace, Owner, Pod, WorkloadError};

/// Errors while building the model from Kubernetes objects or manifests.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    NetworkPolicy(#[from] NetpolError),
    #[error(transparent)]
    AuthorizationPolicy(#[from] AuthzError),
    #[error(transparent)]
    PeerAuthentication(#[from] PeerAuthError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A manifest document is not valid YAML/JSON or does not fit its kind.
    #[error("manifest document {index}: {reason}")]
    Manifest { index: usize, reason: String },
}

/// Objects read from manifests, by kind. Other kinds are ignored.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub namespaces: Vec<Namespace>,
    /// Pods, both real ones and one representative per workload template.
    pub pods: Vec<Pod>,
    /// Pods created from workload templates (sidecar injection still to decide).
    pub template_pods: Vec<Pod>,
    pub network_policies: Vec<NetworkPolicy>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub peer_authentications: Vec<PeerAuthentication>,
}

/// Parses manifests: multi-document YAML or JSON, `List`/`*List` objects.
/// Kinds read: Namespace, Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet,
/// Job, CronJob, ReplicationController, NetworkPolicy, AuthorizationPolicy,
/// PeerAuthentication.
/// Others (Service, ConfigMap...) are skipped. A namespaced object without a
/// namespace lands in `default`.
pub fn parse_manifests(text: &str) -> Result<Objects, ModelError> {
    let mut out = Objects::default();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc).map_err(|e| ModelError::Manifest {
            index,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        add_value(&mut out, value, None, index)?;
    }
    Ok(out)
}

fn add_value(
    out: &mut Objects,
    mut value: serde_json::Value,
    inherited_kind: Option<&str>,
    index: usize,
) -> Result<(), ModelError> {
    let merr = |reason: String| ModelError::Manifest { index, reason };
    let Some(obj) = value.as_object_mut() else {
        return Err(merr("not an object".into()));
    };
    let kind = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .map(str::to_string)
        .or_else(|| inherited_kind.map(str::to_string))
        .unwrap_or_default();
    if kind == "List" || kind.ends_with("List") {
        let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
        let items = obj
            .remove("items")
            .and_then(|i| match i {
                serde_json::Value::Array(a) => Some(a),
                _ => None,
            })
            .unwrap_or_default();
        for item in items {
            add_value(out, item, item_kind, index)?;
        }
        return Ok(());
    }
    // Normalize apiVersion/kind so that k8s-openapi accepts older group versions
    // (extensions/v1beta1 Deployments) and list items without them.
    let api_version = match kind.as_str() {
        "Namespace" | "Pod" | "ReplicationController" => "v1",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" => "batch/v1",
        "CronJob" => "batch/v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        "AuthorizationPolicy" => {
            let ap: AuthorizationPolicy = serde_json::from_value(value)
                .map_err(|e| merr(format!("AuthorizationPolicy: {e}")))?;
            out.authorization_policies
                .push(ap.with_default_namespace("default"));
            return Ok(());
        }
        "PeerAuthentication" => {
            out.peer_authentications
                .push(PeerAuthentication::from_value(&value, "default")?);
            return Ok(());
        }
        _ => return Ok(()),
    };
    obj.insert("apiVersion".into(), api_version.into());
    obj.insert("kind".into(), kind.clone().into());
    let ns_of = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into())
    };
    let name_of = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.name
            .clone()
            .ok_or_else(|| WorkloadError::MissingField {
                kind: "workload",
                object: format!("{kind} <unnamed>"),
                field: "metadata.name",
            })
    };
    macro_rules! parse {
        ($t:ty) => {
            serde_json::from_value::<$t>(value).map_err(|e| merr(format!("{kind}: {e}")))?
        };
    }
    macro_rules! template {
        ($t:ty, $w:ident => $tmpl:expr) => {{
            let $w = parse!($t);
            let w = &$w;
            let ns = ns_of(&w.metadata);
            let owner = Owner {
                kind: kind.clone(),
                name: name_of(&w.metadata)?,
            };
            let tmpl: Option<&k8s_openapi::api::core::v1::PodTemplateSpec> = $tmpl;
            if let Some(t) = tmpl {
                out.template_pods.push(Pod::from_template(&ns, owner, t)?);
            }
        }};
    }
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::batch::v1 as batch;
    use k8s_openapi::api::core::v1 as core;
    match kind.as_str() {
        "Namespace" => {
            let n = parse!(core::Namespace);
            let name = n.metadata.name.clone().ok_or(WorkloadError::MissingField {
                kind: "namespace",
                object: "<unnamed>".into(),
                field: "metadata.name",
            })?;
            out.namespaces
                .push(Namespace::new(&name, n.metadata.labels.unwrap_or_default()));
        }
        "Pod" => {
            let p = parse!(core::Pod);
            out.pods.push(Pod::from_k8s(&p)?);
        }
        "Deployment" => template!(apps::Deployment, w => w
            .spec
            .as_ref()
            .map(|s| &s.template)),
        "ReplicaSet" => template!(apps::ReplicaSet, w => w
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())),
        "StatefulSet" => template!(apps::StatefulSet, w => w
            .spec
            .as_ref()
            .map(|s| &s.template)),
        "DaemonSet" => template!(apps::DaemonSet, w => w
            .spec
            .as_ref()
            .map(|s| &s.template)),
        "ReplicationController" => {
            template!(core::ReplicationController, w => w
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref()))
        }
        "Job" => template!(batch::Job, w => w.spec.as_ref().map(|s| &s.template)),
        "CronJob" => template!(batch::CronJob, w => w
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .map(|s| &s.template)),
        "NetworkPolicy" => {
            let mut np = parse!(NetworkPolicy);
            if np.metadata.namespace.as_deref().is_none_or(str::is_empty) {
                np.metadata.namespace = Some("default".into());
            }
            out.network_policies.push(np);
        }
        _ => {}
    }
    Ok(())
}
