//! meshsim: a simulated Kubernetes API server and mesh.
//!
//! It exists so that real `kubectl` and kube-rs can be driven end to end on
//! machines where no real cluster can run. [`Server::start`] runs it
//! in-process (tests); the `meshsim` binary runs it standalone.

pub mod api;
pub mod app;
pub mod envoy_admin;
pub mod error;
pub mod exec;
pub mod faults;
pub mod logs;
mod logstream;
pub mod mesh;
mod path;
pub mod podexec;
mod protobuf;
pub mod scenario;
pub mod server;
pub mod shared;
pub mod sidecar;
pub mod store;

pub use server::{Config, Handle, Server, ServerError, SimState};
