//! meshpolicy: the pure model shared by every plugin and by meshsim.
//!
//! It answers "would this traffic be allowed, and by which policy?" for both
//! layers a mesh has (Kubernetes NetworkPolicy, enforced by the CNI, and Istio
//! AuthorizationPolicy, enforced by the Envoy sidecar), and it reads what Envoy
//! and istioctl print. It performs no I/O and depends on no async runtime, so
//! the plugins, the simulated cluster and the tests all agree by construction.

pub mod authz;
pub mod connectivity;
pub mod envoy;
pub mod istio;
pub mod netpol;
pub mod peerauth;
pub mod selector;
pub mod whatif;
pub mod workload;

pub use authz::{
    Action, AuthorizationPolicy, AuthzError, AuthzRequest, AuthzVerdict, CompiledAuthz, Decision,
    HttpAttributes, envoy_policy_id,
};
pub use istio::builder::{
    BuildOptions, EnvoyFilter, RbacAction, RbacFilter, RbacRules, build_filters,
};
pub use netpol::{CompiledNetworkPolicy, Direction, NetVerdict, NetpolError, PolicyRef, RuleRef};
pub use selector::{Selector, SelectorError};
pub use workload::{
    Cluster, ClusterOptions, Endpoint, ModelError, Namespace, Pod, Protocol, parse_manifests,
};
