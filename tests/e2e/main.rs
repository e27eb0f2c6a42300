//! The end-to-end tests, one test binary (issue 18): the built plugins driven
//! through real `kubectl` against meshsim, real Envoy differential tests, and
//! checks on the tree itself. One binary links once and shares one harness:
//! `common` (meshsim handles, plugin runner, real Envoy) and `reliability`
//! (a meshsim process per case, for fault injection).
//!
//! Run one file's tests with its module name, e.g.
//! `cargo test --test e2e npexec_meshsim::`.

mod common;
mod reliability;

mod ambient;
mod ambient_authzcheck;
mod ambient_waypoint;
mod authzcheck_meshsim;
mod ci_example;
mod completion_kubectl;
mod demo_smoke;
mod envoy_differential;
mod envoy_listener;
mod envoy_whatif;
mod install_script;
mod istioctl_meshsim;
mod krew_manifests;
mod meshsim_faults;
mod meshsim_kube;
mod meshsim_kubectl;
mod meshsim_kubectl_io;
mod npexec_cli;
mod npexec_cni;
mod npexec_meshsim;
mod npexec_protocols;
mod npexec_tcp_sidecar;
mod npexec_trust_expect;
mod npexec_trust_probe;
mod npexec_whatif;
mod output_formats_meshsim;
mod pictures;
mod rbaclog_ambient;
mod rbaclog_custom;
mod rbaclog_meshsim;
mod readme_examples;
mod reliability_credentials;
mod reliability_faults;
mod reliability_hostile;
mod reliability_interrupts;
mod scripting_example;
mod targets_meshsim;
mod walkthrough_outcomes;
mod walkthrough_traffic;
mod whatif_authzcheck;
mod workspace_hygiene;
