//! The state the API server's handlers share ([`App`]): the cluster's
//! [`Shared`] state plus what only the server needs (its address,
//! authentication, injected faults, the mesh, the exec log). It sits above the
//! mesh and below the API server and the kubelet side, which all take it from
//! here rather than from `server`, so no module cycle runs through the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::faults::Fault;
use crate::shared::Shared;

/// Authentication settings.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub token: Option<String>,
    pub client_cert: bool,
}

/// Per-connection facts injected into each request.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client presented a certificate our CA signed.
    pub client_cert: bool,
}

/// What the API server's handlers share: the cluster's [`Shared`] state
/// (reached through `Deref`, so `app.store` reads as before), the server's own
/// settings, the mesh and the exec log.
pub struct App {
    pub shared: Arc<Shared>,
    pub addr: SocketAddr,
    pub auth: Auth,
    pub faults: Vec<Fault>,
    /// The mesh simulation, when it decides traffic (set once at start).
    pub mesh: std::sync::OnceLock<Arc<crate::mesh::Mesh>>,
    /// The last [`EXEC_LOG_LIMIT`] exec requests, argv exactly as received.
    pub exec_log: Mutex<std::collections::VecDeque<ExecRecord>>,
}

/// How many exec requests [`App::exec_log`] keeps (oldest dropped first).
pub const EXEC_LOG_LIMIT: usize = 1000;

/// One exec request as the container runtime received it, so tests can check
/// that clients pass argv verbatim (no shell in between).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub argv: Vec<String>,
}

impl std::ops::Deref for App {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
