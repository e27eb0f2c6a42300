//! Exec: what happens inside a simulated container when a client runs
//! `kubectl exec`. The API server (outside this module) finds the pod and
//! container, then hands the upgraded WebSocket to [`serve_websocket`]. This
//! module speaks the channel protocol (v4/v5.channel.k8s.io) and runs the
//! command from a small command table. Traffic leaving the container is
//! decided by a [`Network`] implementation supplied by the cluster, so this
//! module has no policy logic.
//!
//! The emulation is cut to what its users run (issue 18): the argv npexec
//! builds (`curl -sS --globoff --max-time T [-k|--http2-prior-knowledge]
//! [-X M] [-H h]... -w FMT URL`, `wget -nv -S ... -O - -T N -t 1 URL`,
//! `curl --version`, `wget --version`), authzcheck's and rbaclog's
//! `pilot-agent request ...` (provided by the cluster, see
//! [`ExecServices::program`]), the walk-through's `bash -c "curl -sf
//! --max-time 3 URL || echo Failed ..."`, `curl -s -o /dev/null -w
//! '%{http_code}'`, and the tests' `sh -c`, `echo` and `cat`. What each
//! program deliberately does NOT emulate is listed in its module; anything
//! outside the emulated set fails with one line saying meshsim does not
//! emulate it, never silently.
//!
//! Layout: [`channel`] speaks the WebSocket channel protocol, [`shell`]
//! runs `sh -c` / `bash -c` scripts, [`programs`] holds the command table
//! (echo, cat, true, false), [`curl`], [`wget`] (busybox) and [`gnu_wget`]
//! imitate the HTTP clients (which wget a container has depends on its image),
//! [`io`] has the stream handles every program writes to.

pub mod channel;
pub mod curl;
pub mod gnu_wget;
mod http;
pub mod io;
pub mod programs;
pub mod shell;
pub mod wget;

use std::sync::Arc;

pub use channel::{ChannelProtocol, negotiate_protocol, serve_websocket};
pub use io::{ExecIo, InStream, OutStream};
pub use programs::{ExecOutcome, Process, Program, run_command};

use crate::traffic::{Container, Network};

/// Stream options from the exec request's query string.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Fault injection: close the stream abruptly after this many output bytes.
    pub cut_after_bytes: Option<usize>,
}

/// What the cluster provides to commands running in containers.
pub trait ExecServices: Send + Sync + 'static {
    /// Decide a request from `from` (the container's pod). Implementations may
    /// record side effects (e.g. append Envoy log lines) here.
    fn network(&self) -> Arc<dyn Network>;
    /// Multiplier applied to simulated waits (1.0 = real time, 0.01 = fast tests).
    fn time_scale(&self) -> f64;
    /// A program the cluster provides in this container (e.g. `pilot-agent` in
    /// `istio-proxy`), looked up by executable basename before the built-in
    /// table. A program returned here runs even when `target.tools` does not
    /// list it.
    fn program(&self, target: &Container, name: &str) -> Option<Arc<dyn Program>> {
        let _ = (target, name);
        None
    }
    /// Called once per exec request with the argv exactly as received.
    fn record_exec(&self, target: &Container, argv: &[String]) {
        let _ = (target, argv);
    }
}
