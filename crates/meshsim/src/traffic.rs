//! Traffic leaving a container: the container a program runs in, the
//! request a client program (curl, wget) makes, what the network did with it,
//! and the [`Network`] trait that decides. It is the contract between the
//! kubelet side (the programs in `kubelet::exec` use it) and the mesh (`Mesh`
//! implements [`Network`]); it sits below both, so the mesh does not depend on
//! the kubelet side.

use std::time::Duration;

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
/// scaled by the exec services' time scale and reports a timeout when its limit
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
