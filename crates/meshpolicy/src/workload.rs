//! Workloads (pods, namespaces) as the engine sees them, and the [`Cluster`]
//! model that holds them together with the policies.
//!
//! Both policy layers decide on facts about pods (labels, namespace, named
//! container ports, service account, whether a sidecar runs) and namespaces
//! (labels). This module reduces Kubernetes objects to exactly those facts,
//! loads them from manifests (multi-document YAML, JSON, `List`s, workload
//! templates), and indexes everything by namespace so that evaluating one
//! connection only looks at the policies of the namespaces involved.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

use crate::authz::{AuthorizationPolicy, AuthzError, CompiledAuthz};
use crate::netpol::{CompiledNetworkPolicy, NetpolError};
use crate::peerauth::{
    self, Addressed, Destination, EffectiveMtls, MergedPeerAuthentication, MtlsPrediction,
    PeerAuthError, PeerAuthentication,
};

/// The label every namespace carries with its own name (set by the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Istio's default root namespace: policies there apply mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Istio's default trust domain, the first part of a SPIFFE principal.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Errors while building the model from Kubernetes objects or manifests.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    NetworkPolicy(#[from] NetpolError),
    #[error(transparent)]
    AuthorizationPolicy(#[from] AuthzError),
    #[error(transparent)]
    PeerAuthentication(#[from] PeerAuthError),
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
    /// A manifest document is not valid YAML/JSON or does not fit its kind.
    #[error("manifest document {index}: {reason}")]
    Manifest { index: usize, reason: String },
}

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
    pub fn from_k8s(pod: &k8s_openapi::api::core::v1::Pod) -> Result<Self, ModelError> {
        let meta = &pod.metadata;
        let name = meta.name.clone().ok_or_else(|| ModelError::MissingField {
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
            Some(s) if !s.is_empty() => Some(s.parse().map_err(|_| ModelError::InvalidField {
                kind: "pod",
                object: object.clone(),
                reason: format!("status.podIP {s:?} is not an IP address"),
            })?),
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
    /// choice, or false; [`Cluster::from_objects`] applies namespace injection.
    pub fn from_template(
        namespace: &str,
        owner: Owner,
        template: &PodTemplateSpec,
    ) -> Result<Self, ModelError> {
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
) -> Result<Vec<ContainerPort>, ModelError> {
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
                .ok_or_else(|| ModelError::InvalidField {
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
                    .map_err(|e: UnknownProtocol| ModelError::InvalidField {
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
        meta.name.clone().ok_or_else(|| ModelError::MissingField {
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
            let name = n.metadata.name.clone().ok_or(ModelError::MissingField {
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

/// Options that change how policies apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOptions {
    /// Istio root namespace (mesh-wide AuthorizationPolicies live there).
    pub root_namespace: String,
    /// Istio trust domain used in principals.
    pub trust_domain: String,
    /// `meshConfig.trustDomainAliases`: principals of these trust domains
    /// are treated as the mesh's own.
    pub trust_domain_aliases: Vec<String>,
    /// Whether NetworkPolicy `ipBlock` peers also match pod IPs. Kubernetes
    /// leaves this to the CNI; like netpol-analyzer, the default (false)
    /// applies ipBlocks to addresses outside the cluster only.
    pub ip_block_matches_pods: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            root_namespace: DEFAULT_ROOT_NAMESPACE.into(),
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
            trust_domain_aliases: Vec::new(),
            ip_block_matches_pods: false,
        }
    }
}

/// The model: namespaces, pods and both kinds of policy, indexed by namespace.
///
/// Build it with [`Cluster::new`] and the `add_*` methods, or from manifests
/// with [`Cluster::from_objects`]. Policies are validated and compiled when
/// added, so evaluation itself never fails on policy content.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub(crate) options: ClusterOptions,
    pub(crate) namespaces: HashMap<String, Namespace>,
    pub(crate) pods: Vec<Pod>,
    pub(crate) pod_index: HashMap<String, HashMap<String, usize>>,
    pub(crate) netpols: Vec<CompiledNetworkPolicy>,
    pub(crate) netpols_by_ns: HashMap<String, Vec<usize>>,
    pub(crate) authz: Vec<CompiledAuthz>,
    pub(crate) authz_by_ns: HashMap<String, Vec<usize>>,
    pub(crate) peer_authns: Vec<PeerAuthentication>,
}

impl Cluster {
    /// An empty model with default options.
    pub fn new() -> Self {
        Self::with_options(ClusterOptions::default())
    }

    /// An empty model with the given options.
    pub fn with_options(options: ClusterOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// Builds a model from parsed manifests. Namespaces that pods or policies
    /// use but that no object declares are created with only the name label.
    /// Template pods get a sidecar when their namespace enables injection
    /// (unless the template opts out).
    pub fn from_objects(objects: Objects, options: ClusterOptions) -> Result<Self, ModelError> {
        let mut c = Self::with_options(options);
        for ns in objects.namespaces {
            c.add_namespace(ns);
        }
        for p in objects.pods {
            c.add_pod(p);
        }
        for mut p in objects.template_pods {
            c.ensure_namespace(&p.namespace);
            if !p.has_sidecar
                && c.namespaces
                    .get(&p.namespace)
                    .is_some_and(Namespace::injection_enabled)
                && p.labels.get("sidecar.istio.io/inject").map(String::as_str) != Some("false")
            {
                p.has_sidecar = true;
            }
            c.add_pod(p);
        }
        for np in &objects.network_policies {
            c.add_network_policy(np)?;
        }
        for ap in &objects.authorization_policies {
            c.add_authorization_policy(ap)?;
        }
        for pa in objects.peer_authentications {
            c.add_peer_authentication(pa);
        }
        Ok(c)
    }

    /// Parses manifests and builds the model in one step.
    pub fn from_manifests(text: &str, options: ClusterOptions) -> Result<Self, ModelError> {
        Self::from_objects(parse_manifests(text)?, options)
    }

    /// The options in force.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// Adds or replaces a namespace.
    pub fn add_namespace(&mut self, ns: Namespace) {
        self.namespaces.insert(ns.name.clone(), ns);
    }

    fn ensure_namespace(&mut self, name: &str) {
        if !self.namespaces.contains_key(name) {
            self.add_namespace(Namespace::new(name, BTreeMap::new()));
        }
    }

    /// Adds or replaces a pod (by namespace/name); creates its namespace if unknown.
    pub fn add_pod(&mut self, pod: Pod) {
        self.ensure_namespace(&pod.namespace);
        let by_name = self.pod_index.entry(pod.namespace.clone()).or_default();
        if let Some(&i) = by_name.get(&pod.name) {
            self.pods[i] = pod;
        } else {
            by_name.insert(pod.name.clone(), self.pods.len());
            self.pods.push(pod);
        }
    }

    /// Validates, compiles and adds a NetworkPolicy (replacing one with the same namespace/name).
    pub fn add_network_policy(&mut self, np: &NetworkPolicy) -> Result<(), NetpolError> {
        let compiled = CompiledNetworkPolicy::compile(np)?;
        let ns = compiled.namespace.clone();
        self.ensure_namespace(&ns);
        let list = self.netpols_by_ns.entry(ns).or_default();
        if let Some(&i) = list
            .iter()
            .find(|&&i| self.netpols[i].name == compiled.name)
        {
            self.netpols[i] = compiled;
        } else {
            list.push(self.netpols.len());
            self.netpols.push(compiled);
        }
        Ok(())
    }

    /// Validates, compiles and adds an AuthorizationPolicy (replacing one with the same namespace/name).
    pub fn add_authorization_policy(&mut self, ap: &AuthorizationPolicy) -> Result<(), AuthzError> {
        let compiled = CompiledAuthz::compile(ap)?;
        let ns = compiled.namespace.clone();
        let list = self.authz_by_ns.entry(ns).or_default();
        if let Some(&i) = list.iter().find(|&&i| self.authz[i].name == compiled.name) {
            self.authz[i] = compiled;
        } else {
            list.push(self.authz.len());
            self.authz.push(compiled);
        }
        Ok(())
    }

    /// Adds a PeerAuthentication (replacing one with the same namespace/name).
    pub fn add_peer_authentication(&mut self, pa: PeerAuthentication) {
        self.ensure_namespace(&pa.namespace);
        match self
            .peer_authns
            .iter_mut()
            .find(|p| p.namespace == pa.namespace && p.name == pa.name)
        {
            Some(slot) => *slot = pa,
            None => self.peer_authns.push(pa),
        }
    }

    /// All PeerAuthentications, in insertion order.
    pub fn peer_authentications(&self) -> &[PeerAuthentication] {
        &self.peer_authns
    }

    /// The PeerAuthentications Istio hands this pod's sidecar (its namespace's
    /// and the root namespace's whose selector matches), in insertion order.
    pub fn peer_authentications_for(&self, pod: &Pod) -> Vec<&PeerAuthentication> {
        peerauth::candidates(
            &self.peer_authns,
            &pod.namespace,
            &pod.labels,
            &self.options.root_namespace,
        )
    }

    /// The pod's merged peer authentication: the workload-wide mode and the
    /// port-level overrides (for a PeerAuthentication section).
    pub fn merged_peer_authentication(&self, pod: &Pod) -> MergedPeerAuthentication {
        peerauth::compose(
            &self.peer_authns,
            &pod.namespace,
            &pod.labels,
            &self.options.root_namespace,
        )
    }

    /// The mTLS mode the pod's sidecar enforces on container port `port`, and
    /// the policy that decided it. Meaningful only for pods with a sidecar.
    pub fn mtls_mode(&self, pod: &Pod, port: u16) -> EffectiveMtls {
        peerauth::effective_mode(
            &self.peer_authns,
            &pod.namespace,
            &pod.labels,
            port,
            &self.options.root_namespace,
        )
    }

    /// Whether a connection from `client` (`None`: outside the mesh, no
    /// sidecar) to container port `port` of `destination` passes peer
    /// authentication. DestinationRules are not modelled (see [`peerauth`]).
    pub fn predict_mtls(
        &self,
        client: Option<&Pod>,
        destination: &Pod,
        port: u16,
        addressed: Addressed,
    ) -> MtlsPrediction {
        peerauth::predict(
            &self.peer_authns,
            client.is_some_and(|c| c.has_sidecar),
            Destination {
                namespace: &destination.namespace,
                labels: &destination.labels,
                has_sidecar: destination.has_sidecar,
                port,
            },
            addressed,
            &self.options.root_namespace,
        )
    }

    /// The pod `namespace/name`, if present.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pod_index
            .get(namespace)
            .and_then(|m| m.get(name))
            .map(|&i| &self.pods[i])
    }

    /// All pods, in insertion order.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The namespace of that name, if known.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    /// All namespaces, sorted by name.
    pub fn namespaces(&self) -> Vec<&Namespace> {
        let mut v: Vec<_> = self.namespaces.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The pod whose IP is `ip`, if any.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ip == Some(ip))
    }
}
