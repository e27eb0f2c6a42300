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
use std::time::Duration;

pub use channel::{ChannelProtocol, negotiate_protocol, serve_websocket};
pub use io::{ExecIo, InStream, OutStream};
pub use programs::{ExecOutcome, Process, Program, run_command};

/// The container a command runs in, as the API server resolved it.
#[derive(Debug, Clone)]
pub struct Container {
    pub namespace: String,
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// Container image, e.g. `nginx:latest` or `docker.io/istio/proxyv2:1.25.0`.
    pub image: String,
    /// Executables the image provides (names, e.g. "sh", "bash", "curl").
    /// Built-ins of the shell (echo, exit, true, false) work wherever a
    /// shell exists; a command whose executable is absent fails like the real
    /// runtime: `exec: "x": executable file not found in $PATH`.
    pub tools: Vec<String>,
}

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

/// An HTTP request a client tool (curl, wget) makes from inside a container.
#[derive(Debug, Clone)]
pub struct NetRequest {
    pub method: String,
    /// Scheme as given: `http`, `https` (a TLS handshake first), or
    /// `gopher` (curl's way to open a TCP connection, send a line and read
    /// what comes back: npexec's TCP probe).
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// What the network did with a request. Durations are simulated time (before
/// the time scale is applied); the client tool waits `min(after, its own limit)`
/// scaled by [`ExecServices::time_scale`] and reports a timeout when its limit
/// comes first.
#[derive(Debug, Clone)]
pub enum NetOutcome {
    /// Name resolution failed (curl exit 6).
    DnsFailure,
    /// TCP connect never completes (dropped by a NetworkPolicy, no sidecar):
    /// the client waits until its own timeout (curl exit 28).
    ConnectTimeout,
    /// Connection refused after `after` (nothing listening; curl exit 7).
    Refused { after: Duration },
    /// Connection reset after `after` (e.g. mTLS STRICT without a sidecar; curl exit 56).
    Reset { after: Duration },
    /// The connection was accepted, then closed by the peer after `after`
    /// without an answer: Envoy's network RBAC filter closing a denied
    /// connection on its first bytes, or the source sidecar's `tcp_proxy`
    /// giving up on its upstream (curl: `(52) Empty reply from server` for
    /// HTTP, `(35) ... SSL_ERROR_SYSCALL` for HTTPS, exit 0 for gopher).
    Closed { after: Duration },
    /// The connection was accepted and stays open with nothing coming back
    /// (a TCP server that waits for its client): the client gives up at its
    /// own limit.
    Silent,
    /// An HTTP response arrived after `after`.
    Http {
        after: Duration,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
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

/// Decides traffic. The default cluster (no mesh logic yet) may answer every
/// request with a fixed response; the mesh simulation replaces it.
pub trait Network: Send + Sync + 'static {
    fn decide(&self, from: &Container, request: &NetRequest) -> NetOutcome;
    /// What the client gets for `request`, when getting it takes real I/O
    /// (meshsim's sidecars are real Envoys); by default [`Network::decide`].
    fn send<'a>(
        &'a self,
        from: &'a Container,
        request: &'a NetRequest,
    ) -> futures::future::BoxFuture<'a, NetOutcome> {
        Box::pin(std::future::ready(self.decide(from, request)))
    }
    /// The address `host` resolves to from `from`, for messages such as curl's
    /// `*   Trying 10.96.0.12:80...` and wget's `Connecting to host (ip:port)`.
    /// `None` means "unknown": the tools then print the host itself.
    fn resolve(&self, from: &Container, host: &str) -> Option<String> {
        let _ = (from, host);
        None
    }
}
