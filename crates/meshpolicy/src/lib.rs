//! meshpolicy: the pure model shared by every plugin and by meshsim.
//!
//! It answers "would this traffic be allowed, and by which policy?" for both
//! layers a mesh has (Kubernetes NetworkPolicy, enforced by the CNI, and Istio
//! AuthorizationPolicy, enforced by the Envoy sidecar), and it reads what Envoy
//! and istioctl print. It performs no I/O and depends on no async runtime, so
//! the plugins, the simulated cluster and the tests all agree by construction.

pub mod ambient;
pub mod ambient_audit;
pub mod authz;
pub mod cluster;
pub mod connectivity;
pub mod envoy;
pub mod istio;
pub mod manifests;
pub mod names;
pub mod netpol;
pub mod peerauth;
pub mod protocol;
pub mod selector;
pub mod whatif;
pub mod workload;

pub use authz::{
    Action, AuthorizationPolicy, AuthzError, AuthzRequest, AuthzVerdict, CompiledAuthz, Decision,
    HttpAttributes, envoy_policy_id,
};
pub use cluster::{Cluster, ClusterOptions};
pub use istio::builder::{
    BuildOptions, EnvoyFilter, RbacAction, RbacFilter, RbacRules, build_filters,
};
pub use manifests::{ModelError, Objects, parse_manifests};
pub use netpol::{CompiledNetworkPolicy, Direction, NetVerdict, NetpolError, PolicyRef, RuleRef};
pub use selector::{Selector, SelectorError};
pub use workload::{Endpoint, Namespace, Pod, Protocol, WorkloadError};
