//! meshsim: a simulated Kubernetes API server and mesh.
//!
//! It exists so that real `kubectl` and kube-rs can be driven end to end on
//! machines where no real cluster can run.

pub mod exec;
pub mod logs;
