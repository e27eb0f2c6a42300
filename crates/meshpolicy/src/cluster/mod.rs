//! The model: namespaces, pods and every kind of policy, indexed by namespace.
//!
//! Evaluation needs all of them at once (a NetworkPolicy peer selects pods by
//! their namespace's labels; an AuthorizationPolicy applies from the root
//! namespace too). The policy modules define and compile each kind on their
//! own; this module holds them together and evaluates: `network` for
//! NetworkPolicy, `authorization` for AuthorizationPolicy, PeerAuthentication
//! here.

mod authorization;
mod network;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

use crate::authz::{AuthorizationPolicy, AuthzError, CompiledAuthz};
use crate::manifests::{ModelError, Objects, parse_manifests};
use crate::netpol::{CompiledNetworkPolicy, NetpolError};
use crate::peerauth::{
    self, Addressed, Destination, EffectiveMtls, MergedPeerAuthentication, MtlsPrediction,
    PeerAuthentication,
};
use crate::workload::{DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, Namespace, Pod};

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
