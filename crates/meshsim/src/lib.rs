//! meshsim: a simulated Kubernetes API server and mesh.
//!
//! It exists so that real `kubectl` and kube-rs can be driven end to end on
//! machines where no real cluster can run. [`Server::start`] runs it
//! in-process (tests); the `meshsim` binary runs it standalone.
//!
//! Layers, roughly bottom up (the workspace hygiene test checks that no two
//! modules depend on each other, directly or in a circle):
//! - state: `error`, `faults`, `store` (objects, type registry, controllers),
//!   `logs` (container logs), `shared` (what every layer holds, including the
//!   network the kubelet's programs connect through), `app` (the server's
//!   state with the mesh handle);
//! - kubelet side: `exec` (the programs a container runs), `podexec` and
//!   `logstream` (the exec/attach and log endpoints);
//! - mesh: `mesh` (traffic decisions, the app model), `sidecar` (the real
//!   Envoys), `envoy_admin` (pilot-agent and admin answers);
//! - API server: `api` (routing, discovery, patch, tables, watch), `path`,
//!   `protobuf`; then `server` (listeners, TLS, wiring) and `scenario`.
//!
//! These stay top-level modules rather than one folder per layer: the
//! kubelet's exec endpoint provides the mesh's `pilot-agent` and the mesh
//! uses the kubelet's `Network` and `Container`, so one folder each would make
//! the folders depend on each other in a circle.

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
