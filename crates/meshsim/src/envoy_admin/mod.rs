//! How people and istioctl reach a sidecar's Envoy admin.
//!
//! Envoy's admin API listens on `localhost:15000` in a pod; it is reached
//! with `kubectl exec ... -c istio-proxy -- pilot-agent request GET
//! config_dump` or `curl localhost:15000/...`. The sidecars are real Envoys
//! ([`crate::sidecar`]), so both go to that pod's Envoy admin over loopback:
//! [`programs`] provides `pilot-agent` in the `istio-proxy` container (curl
//! on port 15000 is routed by [`crate::mesh::Mesh`]).

pub mod programs;

pub use programs::{PilotAgent, cluster_program};

pub use crate::sidecar::ADMIN_PORT;
