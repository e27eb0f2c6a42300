//! The Envoy configuration Istio generates for a workload, as data.
//!
//! Real Envoy runs in meshsim's sidecars and in the differential tests, and it
//! must be configured the way istiod configures a sidecar, or our predictions
//! describe a proxy nobody runs. [`rbac`] translates AuthorizationPolicies into
//! the HTTP and network RBAC (and ext_authz) filters Istio's builder emits;
//! [`listener`] builds the inbound listener around them (TLS by
//! PeerAuthentication, the HTTP connection manager, the access log). Both are
//! pure functions from policies to Envoy's JSON. [`builder`] is the
//! names-only view of the translation (policy ids per filter) the log and
//! config-dump readers use. [`meshconfig`] reads the mesh config's ext_authz
//! providers the translation needs for CUSTOM policies.

pub mod builder;
pub mod listener;
pub mod meshconfig;
pub mod rbac;
