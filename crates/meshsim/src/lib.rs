//! meshsim: a simulated Kubernetes API server and mesh.
//!
//! It exists so that real `kubectl` and kube-rs can be driven end to end on
//! machines where no real cluster can run. [`Server::start`] runs it
//! in-process (tests); the `meshsim` binary runs it standalone.
//!
//! Layers, bottom up; each uses only layers below it (the workspace hygiene
//! test checks that no two modules depend on each other, directly or in a
//! circle):
//! - state: `error`, `faults`, `store` (objects, type registry, controllers),
//!   `logs` (container logs), `traffic` (what a container's program sends and
//!   the `Network` that decides it), `shared` (what every layer holds),
//!   `path` (resource paths) and `protobuf` (the wire encoding);
//! - `mesh`: traffic decisions, the applications, and `mesh::sidecar` (the
//!   real Envoys);
//! - `app`: the server's state, holding the mesh handle;
//! - `kubelet`: the programs containers run (`kubelet::exec`, and
//!   `pilot-agent` in `istio-proxy`) and the exec, attach and log endpoints;
//! - `api`: the API server (routing, discovery, patch, tables, watch);
//! - `server` (listeners, TLS, wiring) and `scenario` on top.

pub mod api;
pub mod app;
pub mod error;
pub mod faults;
pub mod kubelet;
pub mod logs;
pub mod mesh;
mod path;
mod protobuf;
pub mod scenario;
pub mod server;
pub mod shared;
pub mod store;
pub mod traffic;

pub use server::{Config, Handle, Server, ServerError, SimState};
