//! The cluster's state every layer reads and writes: the object store,
//! container logs, the traffic decider, the shutdown token and the time scale.
//! It is the bottom of meshsim's layers: the mesh, the kubelet side and the API
//! server all reach it, and it reaches none of them.

use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::traffic::Network;

/// The cluster's shared state.
pub struct Shared {
    pub store: Mutex<Store>,
    pub cancel: CancellationToken,
    pub network: RwLock<Arc<dyn Network>>,
    pub time_scale: f64,
    /// Container logs (kubectl logs).
    pub logs: crate::logs::LogStore,
}

impl Shared {
    /// The store, locked for one request (a poisoned lock is a 500).
    pub fn lock_store(&self) -> Result<std::sync::MutexGuard<'_, Store>, crate::error::ApiError> {
        self.store
            .lock()
            .map_err(|_| crate::error::ApiError::internal("store poisoned"))
    }

    /// Drop the logs of pods the store removed since the last call (the
    /// kubelet deletes a pod's log files with the pod).
    pub fn forget_removed_pods(&self) {
        let removed = match self.store.lock() {
            Ok(mut s) => s.take_removed_pods(),
            Err(_) => return,
        };
        for (ns, pod) in removed {
            self.logs.remove_pod(&ns, &pod);
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("time_scale", &self.time_scale)
            .finish_non_exhaustive()
    }
}

/// Placeholder network until the mesh simulation (issue 5) replaces it:
/// every request fails name resolution.
#[derive(Debug, Default)]
pub struct NoNetwork;

impl Network for NoNetwork {
    fn decide(
        &self,
        _from: &crate::traffic::Container,
        _request: &crate::traffic::NetRequest,
    ) -> crate::traffic::NetOutcome {
        crate::traffic::NetOutcome::DnsFailure
    }
}
