//! Workloads (pods, namespaces) as the engine sees them.
//!
//! Both policy layers decide on facts about pods (labels, namespace, named
//! container ports, service account, whether a sidecar runs) and namespaces
//! (labels). This module reduces Kubernetes objects to exactly those facts and
//! nothing else: it knows no policy, so every policy module can build on it.
//! Reading manifests is the `manifests` module's job; the indexed model holding
//! pods and policies together is the `cluster` module's.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use serde::{Deserialize, Serialize};

/// The label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Istio's default root namespace: policies there apply mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Istio's default trust domain, the first part of a SPIFFE principal.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// L4 protocol of a port. Kubernetes defaults to TCP.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// A protocol name that is not TCP, UDP or SCTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TCP" | "tcp" => Ok(Self::Tcp),
            "UDP" | "udp" => Ok(Self::Udp),
            "SCTP" | "sctp" => Ok(Self::Sctp),
            other => Err(UnknownProtocol(other.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// A port a container declares (`containerPort`, optional `name`, protocol).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

/// The workload that owns a pod (`Deployment`, `ReplicaSet`, `DaemonSet`...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// A pod reduced to what policies look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Option<IpAddr>,
    pub ports: Vec<ContainerPort>,
    pub service_account: String,
    /// An Istio sidecar (istio-proxy) runs in the pod, so AuthorizationPolicy is enforced.
    pub has_sidecar: bool,
    pub owner: Option<Owner>,
}

impl Pod {
    /// A pod with the given labels, no ports, service account `default`, no sidecar.
    pub fn new(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels,
            ip: None,
            ports: Vec::new(),
            service_account: "default".to_string(),
            has_sidecar: false,
            owner: None,
        }
    }

    /// The Istio principal of this pod's identity: `TRUST_DOMAIN/ns/NS/sa/SA`.
    pub fn principal(&self, trust_domain: &str) -> String {
        format!(
            "{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// The container port of this pod with that name (and protocol), used to
    /// resolve named ports in NetworkPolicy.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)
            .map(|p| p.port)
    }

    /// Reads a Kubernetes Pod. The sidecar flag is set when a container (or a
    /// native-sidecar init container) is named `istio-proxy`.
    pub fn from_k8s(pod: &k8s_openapi::api::core::v1::Pod) -> Result<Self, WorkloadError> {
        let meta = &pod.metadata;
        let name = meta
            .name
            .clone()
            .ok_or_else(|| WorkloadError::MissingField {
                kind: "pod",
                object: "<unnamed>".into(),
                field: "metadata.name",
            })?;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let object = format!("{namespace}/{name}");
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .or_else(|| meta.owner_references.iter().flatten().next())
            .map(|o| Owner {
                kind: o.kind.clone(),
                name: o.name.clone(),
            });
        let spec = pod.spec.clone().unwrap_or_default();
        let ip = match pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
            Some(s) if !s.is_empty() => {
                Some(s.parse().map_err(|_| WorkloadError::InvalidField {
                    kind: "pod",
                    object: object.clone(),
                    reason: format!("status.podIP {s:?} is not an IP address"),
                })?)
            }
            _ => None,
        };
        let has_sidecar = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == "istio-proxy");
        Ok(Self {
            ports: container_ports(&spec, "pod", &object)?,
            service_account: service_account(&spec),
            namespace,
            name,
            labels: meta.labels.clone().unwrap_or_default(),
            ip,
            has_sidecar,
            owner,
        })
    }

    /// A representative pod of a workload template (Deployment, ReplicaSet,
    /// StatefulSet, DaemonSet, Job...): named `WORKLOAD-0`, owned by the workload.
    /// `has_sidecar` is the template's explicit `sidecar.istio.io/inject`
    /// choice, or false; `Cluster::from_objects` applies namespace injection.
    pub fn from_template(
        namespace: &str,
        owner: Owner,
        template: &PodTemplateSpec,
    ) -> Result<Self, WorkloadError> {
        let object = format!("{namespace}/{}", owner.name);
        let kind = "workload";
        let spec = template.spec.clone().unwrap_or_default();
        let meta = template.metadata.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        Ok(Self {
            namespace: namespace.to_string(),
            name: format!("{}-0", owner.name),
            ports: container_ports(&spec, kind, &object)?,
            service_account: service_account(&spec),
            has_sidecar: explicit_injection(&meta).unwrap_or(false),
            labels,
            ip: None,
            owner: Some(owner),
        })
    }
}

fn explicit_injection(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<bool> {
    let key = "sidecar.istio.io/inject";
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .or_else(|| meta.annotations.as_ref().and_then(|a| a.get(key)))
        .map(|v| v == "true")
}

fn service_account(spec: &PodSpec) -> String {
    spec.service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn container_ports(
    spec: &PodSpec,
    kind: &'static str,
    object: &str,
) -> Result<Vec<ContainerPort>, WorkloadError> {
    let mut out = Vec::new();
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    for c in containers {
        for p in c.ports.iter().flatten() {
            let port = u16::try_from(p.container_port)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| WorkloadError::InvalidField {
                    kind,
                    object: object.to_string(),
                    reason: format!(
                        "container {:?}: containerPort {} is not in 1-65535",
                        c.name, p.container_port
                    ),
                })?;
            let protocol = match p.protocol.as_deref() {
                None | Some("") => Protocol::Tcp,
                Some(s) => s
                    .parse()
                    .map_err(|e: UnknownProtocol| WorkloadError::InvalidField {
                        kind,
                        object: object.to_string(),
                        reason: format!("container {:?}: {e}", c.name),
                    })?,
            };
            out.push(ContainerPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol,
            });
        }
    }
    Ok(out)
}

/// A namespace reduced to its name and labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    /// Always includes `kubernetes.io/metadata.name: NAME`, as the API server sets it.
    pub labels: BTreeMap<String, String>,
}

impl Namespace {
    /// A namespace with the given labels plus the automatic name label.
    pub fn new(name: &str, mut labels: BTreeMap<String, String>) -> Self {
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        Self {
            name: name.to_string(),
            labels,
        }
    }

    /// Whether Istio injects sidecars into pods of this namespace by default.
    pub fn injection_enabled(&self) -> bool {
        self.labels.get("istio-injection").map(String::as_str) == Some("enabled")
            || self.labels.contains_key("istio.io/rev")
    }
}

/// Either end of a connection: a pod in the model or an address outside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Endpoint {
    Pod { namespace: String, name: String },
    External { ip: IpAddr },
}

impl Endpoint {
    /// The pod `namespace/name`.
    pub fn pod(namespace: &str, name: &str) -> Self {
        Self::Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
            Self::External { ip } => write!(f, "external {ip}"),
        }
    }
}

/// A pod or workload object lacks a field the engine needs, or has one it cannot use.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// An object lacks a field the engine needs.
    #[error("{kind} {object}: missing required field {field}")]
    MissingField {
        kind: &'static str,
        object: String,
        field: &'static str,
    },
    /// A container port is out of range or names an unknown protocol.
    #[error("{kind} {object}: {reason}")]
    InvalidField {
        kind: &'static str,
        object: String,
        reason: String,
    },
}

/// `(namespace, name)` of a policy as the API server would place it: a missing or
/// empty namespace is `default`; `None` when the name is missing or empty.
pub(crate) fn namespaced_name(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, String)> {
    let name = meta.name.clone().filter(|n| !n.is_empty())?;
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    Some((namespace, name))
}
