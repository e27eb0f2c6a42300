//! End-to-end harness: one meshsim handle ([`Sim`], a `meshsim serve`
//! process or meshsim in this process) with its own temporary directory
//! (kubeconfig, HOME, kubectl's cache; never ~/.kube) and one way to run the
//! real `kubectl` and the built plugins against it; real Envoy helpers; the
//! policy generator and RBAC comparison of the differential tests.

#![allow(dead_code)]

pub mod envoy;
pub mod policygen;
pub mod rbacdiff;
pub mod sim;

pub use sim::Sim;

use std::path::PathBuf;
use std::time::Duration;

use meshsim::Config;

/// Root of the repository (for examples/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Output of one kubectl run, stdout as raw bytes.
#[derive(Debug)]
pub struct BytesOut {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Fast defaults for in-process meshsim: pods are ready almost at once.
pub fn fast_config() -> Config {
    Config {
        time_scale: 0.01,
        ready_delay: Duration::from_secs(1),
        ..Config::default()
    }
}

impl BytesOut {
    /// With stdout as text.
    pub fn text(self) -> Out {
        Out {
            code: self.code,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: self.stderr,
        }
    }
}
