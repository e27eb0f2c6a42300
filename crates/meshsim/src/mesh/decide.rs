//! The decision for one request up to the destination's sidecar: which
//! layer stops it, or that the destination's real Envoy decides ([`Forward`]).
//!
//! The order follows the packet: DNS and kube-proxy ([`super::flow`]), then
//! NetworkPolicy (evaluated with crates/meshpolicy: the CNI drops the SYN,
//! the client, or its sidecar, waits for a connect timeout), then, for a
//! destination with a sidecar, that sidecar's Envoy (mTLS, RBAC, its router
//! to the application: see [`crate::mesh::sidecar`]); for an ambient destination,
//! its node's ztunnel (L4 AuthorizationPolicy, STRICT PeerAuthentication
//! against plain text) or, when it uses a waypoint and the client is in the
//! mesh, the waypoint's Envoy ([`Forward::waypoint`]); for
//! one without either, whether anything listens on the port and the
//! application's answer. Nothing here does I/O.
//!
//! The source side stays simulated, modelled on Istio 1.25 defaults:
//! outbound connect timeout 10 s; the source sidecar's local replies carry
//! `server: istio-envoy`; its outbound access log line is written by meshsim.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use meshpolicy::envoy::AccessLogEntry;
use meshpolicy::{Endpoint, Namespace, Pod, Protocol};
use serde_json::Value;

use super::app::{self, AppAnswer};
use super::flow::{Facts, Route, ServiceRef};
use crate::store::labels_of;
use crate::traffic::{NetOutcome, NetRequest};

/// Istio's default outbound connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default root namespace.
pub const ROOT_NAMESPACE: &str = meshpolicy::workload::DEFAULT_ROOT_NAMESPACE;
/// Envoy's body when the upstream connect times out.
pub const CONNECT_TIMEOUT_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection timeout";
/// Envoy's body when nothing listens on the upstream port.
pub const CONNECT_FAILURE_BODY: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111";
/// Envoy's body when the upstream closes the connection (mTLS mismatch).
pub const CONNECT_TERMINATION_BODY: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
/// Envoy's body when a cluster has no healthy endpoint.
pub const NO_HEALTHY_UPSTREAM_BODY: &str = "no healthy upstream";

/// Ports of the sidecar itself (excluded from inbound capture by istio-init).
pub const SIDECAR_PORTS: &[u16] = &[15000, 15020, 15021, 15090];

/// What the client speaks on its connection, from its URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    Http,
    /// `https://`: a TLS handshake first (the application speaks TLS).
    Tls,
    /// `gopher://`: a line, then whatever comes back (npexec's TCP probe).
    Tcp,
}

/// The client's [`ClientProtocol`].
pub fn client_protocol(req: &NetRequest) -> ClientProtocol {
    match req.scheme.as_str() {
        "https" => ClientProtocol::Tls,
        "gopher" => ClientProtocol::Tcp,
        _ => ClientProtocol::Http,
    }
}

/// Whether the source sidecar relays the connection as bytes (`tcp_proxy`)
/// rather than as HTTP requests: by the protocol Istio gives the Service
/// port, sniffed from the client's first bytes when it declares none.
/// Failures past a `tcp_proxy` reach the client as a closed connection,
/// not as a 503 local reply.
pub fn relays_tcp(service: Option<&ServiceRef>, req: &NetRequest) -> bool {
    use meshpolicy::protocol::Stack;
    match service.map(|s| s.protocol.stack()) {
        Some(Stack::Http) => false,
        Some(Stack::Tcp) => true,
        Some(Stack::Sniffed) | None => client_protocol(req) != ClientProtocol::Http,
    }
}

/// Which layer of the path decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidingLayer {
    Dns,
    NoEndpoints,
    /// Dropped on the way (unknown address, undeclared service port).
    Blackhole,
    NetworkPolicy,
    NotListening,
    Application,
    /// Handed to the destination's real Envoy (see [`Forward`]).
    Envoy,
    /// The destination is in ambient mode and its node's ztunnel rejected
    /// the connection (L4 AuthorizationPolicy): the client sees a reset.
    Ztunnel,
    /// Handed to the destination's waypoint (a real Envoy, see [`Forward::waypoint`]).
    Waypoint,
}

/// The hop after a waypoint's Envoy: the destination's ztunnel (deciding on
/// the waypoint's identity) and the application. meshsim's relay behind the
/// waypoint plays it when the waypoint's Envoy lets the request through.
#[derive(Debug, Clone)]
pub struct WaypointHop {
    /// The destination pod and the container port.
    pub pod: Value,
    pub port: u16,
    /// The Service the request was addressed to (namespace, name).
    pub service: Option<(String, String)>,
    /// The destination ztunnel's decision on the connection from the waypoint.
    pub ztunnel_allowed: bool,
    /// One line for people (tracing).
    pub ztunnel_reason: String,
    /// (namespace, pod, line) for the destination node's ztunnel log.
    pub ztunnel_log: Option<(String, String, String)>,
    /// ConfigMaps the application reads.
    pub configmaps: Vec<Value>,
    /// The waypoint pod's IP (the application's client).
    pub waypoint_ip: String,
}

/// A request the destination's real Envoy decides: everything before its
/// sidecar (DNS, routing, NetworkPolicy) let it through.
#[derive(Debug, Clone)]
pub struct Forward {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    pub source_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    /// The source sidecar's identity (namespace, service account) when the
    /// client's traffic leaves through a sidecar (mTLS), None for plain text.
    pub mtls: Option<(String, String)>,
    /// SNI the source sidecar sends.
    pub sni: String,
    /// `meshsim.dev/latency` of the destination.
    pub latency: Duration,
    /// Whether the destination's Envoy writes an access log line.
    pub access_log: bool,
    /// Set when the Envoy is the destination's waypoint (`namespace`/`pod`
    /// are the waypoint pod's): what comes after it.
    pub waypoint: Option<WaypointHop>,
    /// The source sidecar relays bytes ([`relays_tcp`]): a connection the
    /// destination closes reaches the client closed, not as a 503.
    pub relays_tcp: bool,
}

/// What one sidecar writes for the request.
#[derive(Debug, Clone, Default)]
pub struct SidecarEvents {
    pub namespace: String,
    pub pod: String,
    pub access: Option<AccessLogEntry>,
    /// When the access log line is written, after the request started.
    pub access_after: Duration,
}

/// The decision on one request's path: the outcome plus everything to log.
#[derive(Debug, Clone)]
pub struct PathDecision {
    pub outcome: NetOutcome,
    pub layer: DecidingLayer,
    /// One-line explanation (tracing, tests).
    pub reason: String,
    pub source: Option<SidecarEvents>,
    /// (namespace, pod, container, line) for the application's own log.
    pub app_log: Option<(String, String, String, String)>,
    /// Set when the destination's real Envoy is to decide.
    pub forward: Option<Forward>,
    /// (namespace, pod, line) for the destination node's ztunnel log.
    pub ztunnel_log: Option<(String, String, String)>,
    /// The source sidecar's outbound cluster when it relays this connection
    /// with `tcp_proxy` to a Service (one upstream connection per client
    /// connection): whose counters [`super::outbound`] keeps.
    pub tcp_upstream: Option<String>,
    /// Why the source sidecar's upstream connect failed, when it did.
    pub connect_failure: Option<ConnectFailure>,
}

/// How the source sidecar's upstream connect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No endpoint to connect to: no connection is started.
    NoHealthyUpstream,
    /// Refused at once.
    Refused,
    /// Never completes: the connect timeout ends it.
    Timeout,
}

/// The inputs of a decision besides the gathered facts.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub facts: &'a Facts,
    /// The container the client runs in (`istio-proxy` bypasses capture).
    pub container: &'a str,
    pub request: &'a NetRequest,
    /// Whether the simulated CNI enforces NetworkPolicy at all.
    pub enforce_network_policy: bool,
    /// Per-request values that would be random (request id, ports).
    pub ids: Ids,
    /// The AuthorizationPolicies ztunnel has received by now (ambient destinations).
    pub ztunnel_policies: &'a [meshpolicy::AuthorizationPolicy],
    /// The PeerAuthentications ztunnel has received by now (ambient destinations).
    pub ztunnel_peer_authentications: &'a [std::sync::Arc<Value>],
}

/// Values Envoy would pick at random, passed in so decisions are repeatable.
#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: String,
    /// The client's port towards its own sidecar (or the destination).
    pub client_port: u16,
    /// The client sidecar's port towards the destination.
    pub upstream_port: u16,
    pub start_time: String,
}

/// A store pod reduced to what the policy engine reads: meshpolicy's pod
/// model ([`Pod::from_k8s`]); a pod that does not read as one keeps only its
/// name and labels. A ztunnel pod's `istio-proxy` container is no sidecar.
pub fn model_pod(p: &Value) -> Pod {
    let read = serde_json::from_value(p.clone())
        .map_err(|e| e.to_string())
        .and_then(|k| Pod::from_k8s(&k).map_err(|e| e.to_string()));
    let mut pod = read.unwrap_or_else(|e| {
        tracing::debug!("meshsim: reading a pod: {e}");
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
        Pod::new(
            ns,
            p["metadata"]["name"].as_str().unwrap_or(""),
            labels_of(p),
        )
    });
    pod.has_sidecar &= !super::flow::is_ztunnel(p);
    pod
}

/// The pod's declared TCP container ports.
pub fn tcp_ports(p: &Value) -> Vec<u16> {
    model_pod(p)
        .ports
        .iter()
        .filter(|cp| cp.protocol == Protocol::Tcp)
        .map(|cp| cp.port)
        .collect()
}

/// Ports the pod's processes listen on: `meshsim.dev/listen` (comma-separated)
/// when set, else every declared TCP container port.
pub fn listening_ports(p: &Value) -> Vec<u16> {
    match p["metadata"]["annotations"]["meshsim.dev/listen"].as_str() {
        Some(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        None => tcp_ports(p),
    }
}

/// `meshsim.dev/latency` of a pod (e.g. `50ms`), zero when absent or invalid.
pub fn latency(p: &Value) -> Duration {
    p["metadata"]["annotations"]["meshsim.dev/latency"]
        .as_str()
        .and_then(crate::faults::parse_duration)
        .unwrap_or_default()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn header<'a>(req: &'a NetRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers of an application answer after a sidecar's router rewrote them.
fn via_envoy(headers: &[(String, String)], upstream_time: Duration) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("server"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    out.push((
        "x-envoy-upstream-service-time".into(),
        ms(upstream_time).to_string(),
    ));
    out.push(("server".into(), "istio-envoy".into()));
    out
}

/// A failure the source sidecar answers itself with a 503: the body, and the
/// response flags and details of its access log entry.
struct LocalFailure {
    body: &'static str,
    flags: &'static str,
    details: &'static str,
}

const NO_HEALTHY_UPSTREAM: LocalFailure = LocalFailure {
    body: NO_HEALTHY_UPSTREAM_BODY,
    flags: "UH",
    details: "no_healthy_upstream",
};
const CONNECT_TIMED_OUT: LocalFailure = LocalFailure {
    body: CONNECT_TIMEOUT_BODY,
    flags: "UF,URX",
    details: "upstream_reset_before_response_started{connection_timeout}",
};
const CONNECT_REFUSED: LocalFailure = LocalFailure {
    body: CONNECT_FAILURE_BODY,
    flags: "UF,URX",
    details: "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}",
};
const CONNECTION_TERMINATED: LocalFailure = LocalFailure {
    body: CONNECT_TERMINATION_BODY,
    flags: "UC",
    details: "upstream_reset_before_response_started{connection_termination}",
};

/// Where the source sidecar sends a request: the Service it went through,
/// the upstream host it picked (none for a Service without endpoints) and
/// the address the client dialled.
struct Dialled<'a> {
    service: Option<&'a ServiceRef>,
    upstream: Option<String>,
    addr: String,
}

impl<'a> Dialled<'a> {
    /// `dst` on container `port`, through `service` when one was used.
    fn pod(service: Option<&'a ServiceRef>, dst: &Pod, port: u16) -> Self {
        let dst_ip = dst.ip.map(|i| i.to_string()).unwrap_or_default();
        let hostport = format!("{dst_ip}:{port}");
        let addr = match service {
            Some(s) => format!("{}:{}", s.cluster_ip.clone().unwrap_or(dst_ip), s.port),
            None => hostport.clone(),
        };
        Dialled {
            service,
            upstream: Some(hostport),
            addr,
        }
    }

    /// The SNI the source sidecar sends.
    fn sni(&self) -> String {
        self.service.map_or_else(
            || "-".to_string(),
            |s| format!("outbound_.{}_._.{}", s.port, s.fqdn()),
        )
    }
}

struct Ctx<'a> {
    input: &'a DecisionInput<'a>,
    src: Pod,
    src_ip: String,
    captured: bool,
}

impl Ctx<'_> {
    fn client(&self) -> String {
        format!("{}:{}", self.src_ip, self.input.ids.client_port)
    }

    /// The source sidecar's outbound entry for an answer that came from the
    /// destination (its sidecar or its application) and was passed on as is.
    fn relayed(&self, to: &Dialled<'_>, status: u16, sent: usize, lat: Duration) -> SidecarEvents {
        self.outbound(to, status, "-", "via_upstream", sent, lat, Some(lat))
    }

    /// The source sidecar's outbound access log entry.
    #[allow(clippy::too_many_arguments)]
    fn outbound(
        &self,
        to: &Dialled<'_>,
        status: u16,
        flags: &str,
        details: &str,
        bytes_sent: usize,
        duration: Duration,
        upstream_time: Option<Duration>,
    ) -> SidecarEvents {
        let input = self.input;
        let req = input.request;
        let e = AccessLogEntry {
            start_time: Some(input.ids.start_time.clone()),
            method: Some(req.method.clone()),
            path: Some(req.path.clone()),
            protocol: Some("HTTP/1.1".into()),
            response_code: Some(status),
            response_flags: flags.to_string(),
            response_code_details: Some(details.to_string()),
            bytes_received: Some(req.body.as_ref().map_or(0, |b| b.len() as u64)),
            bytes_sent: Some(bytes_sent as u64),
            duration: Some(ms(duration)),
            upstream_service_time: upstream_time.map(|d| ms(d).to_string()),
            user_agent: header(req, "user-agent").map(str::to_string),
            request_id: Some(input.ids.request_id.clone()),
            authority: Some(header(req, "host").map_or_else(|| req.host.clone(), str::to_string)),
            upstream_host: to.upstream.clone(),
            upstream_cluster: Some(match to.service {
                Some(s) => s.outbound_cluster(),
                None => "PassthroughCluster".into(),
            }),
            route_name: Some(
                if to.service.is_some() {
                    "default"
                } else {
                    "allow_any"
                }
                .into(),
            ),
            upstream_local_address: to
                .upstream
                .as_ref()
                .map(|_| format!("{}:{}", self.src_ip, input.ids.upstream_port)),
            downstream_local_address: Some(to.addr.clone()),
            downstream_remote_address: Some(self.client()),
            ..AccessLogEntry::default()
        };
        SidecarEvents {
            namespace: self.src.namespace.clone(),
            pod: self.src.name.clone(),
            access: Some(AccessLogEntry {
                verdict: e.classify(),
                ..e
            }),
            access_after: if flags.contains("UF") && details.contains("connection_timeout") {
                duration
            } else {
                Duration::ZERO
            },
        }
    }

    /// The source sidecar's own 503 for `failure`, `after` the request
    /// started, with its outbound access log entry.
    fn local_503(
        &self,
        layer: DecidingLayer,
        reason: String,
        to: &Dialled<'_>,
        failure: &LocalFailure,
        after: Duration,
    ) -> PathDecision {
        let body = failure.body;
        let headers = vec![
            ("content-length".to_string(), body.len().to_string()),
            ("content-type".to_string(), "text/plain".to_string()),
            ("date".to_string(), app::http_date()),
            ("server".to_string(), "istio-envoy".to_string()),
        ];
        let outcome = NetOutcome::Http {
            after,
            status: 503,
            headers,
            body: body.as_bytes().to_vec(),
        };
        let mut v = decision(outcome, layer, reason);
        v.source = Some(self.outbound(
            to,
            503,
            failure.flags,
            failure.details,
            body.len(),
            after,
            None,
        ));
        v
    }

    /// A connection to `to` that fails before any answer: `uncaptured` for
    /// a client without a sidecar; the source sidecar's 503 for `failure`
    /// otherwise, or the client's connection closed when that sidecar relays
    /// bytes (it still logs a connect timeout).
    fn failed(
        &self,
        layer: DecidingLayer,
        reason: String,
        to: &Dialled<'_>,
        failure: &LocalFailure,
        uncaptured: NetOutcome,
    ) -> PathDecision {
        if !self.captured {
            return decision(uncaptured, layer, reason);
        }
        let timeout = matches!(uncaptured, NetOutcome::ConnectTimeout);
        let after = if timeout {
            CONNECT_TIMEOUT
        } else {
            Duration::ZERO
        };
        let mut v = self.local_503(layer, reason, to, failure, after);
        v.connect_failure = Some(if timeout {
            ConnectFailure::Timeout
        } else if failure.flags == NO_HEALTHY_UPSTREAM.flags {
            ConnectFailure::NoHealthyUpstream
        } else {
            ConnectFailure::Refused
        });
        if relays_tcp(to.service, self.input.request) {
            v.outcome = NetOutcome::Closed { after };
            if !timeout {
                v.source = None;
            }
        }
        v
    }
}

/// Completes the source sidecar's entry for a request it relayed
/// with what came back through the destination's Envoy:
/// its answer, or the connection closed before one.
pub fn relayed_answer(e: &mut AccessLogEntry, out: &NetOutcome) {
    if let NetOutcome::Http { status, body, .. } = out {
        e.response_code = Some(*status);
        e.bytes_sent = Some(body.len() as u64);
    } else {
        e.response_code = Some(0);
        e.response_flags = CONNECTION_TERMINATED.flags.into();
        e.response_code_details = Some(CONNECTION_TERMINATED.details.into());
    }
    e.verdict = e.classify();
}

fn decision(outcome: NetOutcome, layer: DecidingLayer, reason: impl Into<String>) -> PathDecision {
    PathDecision {
        outcome,
        layer,
        reason: reason.into(),
        source: None,
        app_log: None,
        forward: None,
        ztunnel_log: None,
        tcp_upstream: None,
        connect_failure: None,
    }
}

/// Decides one request.
pub fn decide(input: &DecisionInput<'_>) -> PathDecision {
    let facts = input.facts;
    let src = model_pod(&facts.source);
    let src_ip = src
        .ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "0.0.0.0".into());
    let captured = src.has_sidecar && input.container != "istio-proxy";
    let ctx = Ctx {
        input,
        src,
        src_ip,
        captured,
    };
    let refused = NetOutcome::Refused {
        after: Duration::ZERO,
    };
    let mut v = match &facts.route {
        Route::Unresolved => decision(
            NetOutcome::DnsFailure,
            DecidingLayer::Dns,
            format!("could not resolve host {}", input.request.host),
        ),
        Route::Loopback { port } => loopback(&ctx, *port),
        Route::NoEndpoints { service } => {
            let reason = format!(
                "service {}/{} has no ready endpoints",
                service.namespace, service.name
            );
            let to = Dialled {
                service: Some(service),
                upstream: None,
                addr: format!(
                    "{}:{}",
                    service.cluster_ip.clone().unwrap_or_default(),
                    service.port
                ),
            };
            let layer = DecidingLayer::NoEndpoints;
            ctx.failed(layer, reason, &to, &NO_HEALTHY_UPSTREAM, refused)
        }
        Route::Blackhole { address } => {
            let reason = format!("nothing answers for {address}: packets are dropped");
            let to = Dialled {
                service: None,
                upstream: Some(address.clone()),
                addr: address.clone(),
            };
            let (layer, timeout) = (DecidingLayer::Blackhole, NetOutcome::ConnectTimeout);
            ctx.failed(layer, reason, &to, &CONNECT_TIMED_OUT, timeout)
        }
        Route::Endpoint { service, pod, port } => endpoint(&ctx, service.as_ref(), pod, *port),
    };
    if let Route::Endpoint {
        service: Some(s), ..
    } = &facts.route
        && captured
        && relays_tcp(Some(s), input.request)
    {
        v.tcp_upstream = Some(s.outbound_cluster());
    }
    v
}

fn loopback(ctx: &Ctx<'_>, port: u16) -> PathDecision {
    let pod = &ctx.input.facts.source;
    let mut ports = listening_ports(pod);
    if ctx.src.has_sidecar {
        ports.extend_from_slice(SIDECAR_PORTS);
    }
    if !ports.contains(&port) {
        return decision(
            NetOutcome::Refused {
                after: Duration::ZERO,
            },
            DecidingLayer::NotListening,
            format!("nothing listens on localhost:{port}"),
        );
    }
    let req = ctx.input.request;
    if client_protocol(req) == ClientProtocol::Tcp {
        return decision(
            NetOutcome::Silent,
            DecidingLayer::Application,
            format!("localhost:{port} accepted the connection"),
        );
    }
    let a = if ctx.src.has_sidecar && SIDECAR_PORTS.contains(&port) {
        // pilot-agent's health and stats ports answer with an empty 200.
        AppAnswer {
            status: 200,
            headers: vec![
                ("date".into(), app::http_date()),
                ("content-length".into(), "0".into()),
            ],
            body: Vec::new(),
            nginx: false,
        }
    } else {
        let cms = &ctx.input.facts.configmaps;
        app::answer(pod, cms, &req.method, &req.path, port, &req.headers)
    };
    decision(
        NetOutcome::Http {
            after: latency(pod),
            status: a.status,
            headers: a.headers,
            body: a.body,
        },
        DecidingLayer::Application,
        format!("localhost:{port} answered by the pod itself"),
    )
}

/// A connection that reached the destination pod's address, through each
/// layer in the order a packet meets them: the CNI's NetworkPolicy, the
/// node's ztunnel (ambient) or the waypoint, the destination's sidecar, and
/// finally the application (or nothing listening). Each layer's function
/// returns a decision when it ends the request.
fn endpoint(
    ctx: &Ctx<'_>,
    service: Option<&ServiceRef>,
    dst_json: &Value,
    port: u16,
) -> PathDecision {
    let dst = model_pod(dst_json);
    let to = Dialled::pod(service, &dst, port);
    let same_pod = ctx.src.namespace == dst.namespace && ctx.src.name == dst.name;
    if !same_pod
        && ctx.input.enforce_network_policy
        && let Some(v) = network_policy_layer(ctx, &dst, &to, port)
    {
        return v;
    }
    let lat = latency(dst_json);
    let facts = ctx.input.facts;
    let ambient = ambient_mode(facts, &dst) == meshpolicy::ambient::DataplaneMode::Ambient;
    let mut ztunnel_line = None;
    if ambient && !same_pod {
        match ztunnel_layer(ctx, service, dst_json, &dst, &to, port, lat) {
            ControlFlow::Continue(line) => ztunnel_line = line,
            ControlFlow::Break(v) => return v,
        }
    }
    if dst.has_sidecar && !SIDECAR_PORTS.contains(&port) {
        return sidecar_handoff(ctx, service, &dst, &to, port, lat);
    }
    application_layer(ctx, dst_json, &dst, &to, port, lat, ztunnel_line)
}

/// The CNI: NetworkPolicy evaluated on the two pods and their namespaces; a
/// denied connection is dropped (the client's connect times out).
fn network_policy_layer(ctx: &Ctx<'_>, dst: &Pod, to: &Dialled, port: u16) -> Option<PathDecision> {
    let facts = ctx.input.facts;
    let mut model = meshpolicy::Cluster::new();
    for ns in &facts.namespaces {
        let name = ns["metadata"]["name"].as_str().unwrap_or("");
        model.add_namespace(Namespace::new(name, labels_of(ns)));
    }
    model.add_pod(ctx.src.clone());
    model.add_pod(dst.clone());
    for np in &facts.network_policies {
        match serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(np.clone())
        {
            Ok(p) => {
                if let Err(e) = model.add_network_policy(&p) {
                    tracing::warn!("meshsim: ignoring NetworkPolicy: {e}");
                }
            }
            Err(e) => tracing::warn!("meshsim: ignoring unreadable NetworkPolicy: {e}"),
        }
    }
    let net = model.evaluate_network(
        &Endpoint::pod(&ctx.src.namespace, &ctx.src.name),
        &Endpoint::pod(&dst.namespace, &dst.name),
        port,
        Protocol::Tcp,
    );
    let n = net.ok().filter(|n| !n.allowed)?;
    let reason = format!("NetworkPolicy: {}", n.explanation);
    let (layer, timeout) = (DecidingLayer::NetworkPolicy, NetOutcome::ConnectTimeout);
    Some(ctx.failed(layer, reason, to, &CONNECT_TIMED_OUT, timeout))
}

/// Ambient mode: a source with a mesh identity goes through the waypoint
/// when one is in the path; otherwise the destination node's ztunnel decides
/// (L4 AuthorizationPolicy, STRICT PeerAuthentication for plaintext).
/// `Continue` carries ztunnel's access log line when it let the connection
/// through.
fn ztunnel_layer(
    ctx: &Ctx<'_>,
    service: Option<&ServiceRef>,
    dst_json: &Value,
    dst: &Pod,
    to: &Dialled,
    port: u16,
    lat: Duration,
) -> ControlFlow<PathDecision, Option<(String, String, String)>> {
    let facts = ctx.input.facts;
    let src_identity = source_identity(ctx);
    let wp = facts.waypoint.as_ref().filter(|w| {
        meshpolicy::ambient::waypoint_in_path(src_identity.is_some(), &used(w)).is_some()
    });
    if let Some(w) = wp
        && src_identity.is_some()
    {
        return ControlFlow::Break(via_waypoint(ctx, w, to, dst_json, dst, port, lat));
    }
    let z = match &src_identity {
        None => ztunnel_peer_auth(ctx, dst, port)
            .plaintext_rejection(dst)
            .unwrap_or_else(|| ztunnel(ctx, dst, None, ctx.src.ip, port)),
        Some(id) => ztunnel(ctx, dst, Some(id.clone()), ctx.src.ip, port),
    };
    let peer = Peer {
        addr: ctx.client(),
        workload: ctx.src.name.clone(),
        namespace: ctx.src.namespace.clone(),
        identity: src_identity,
    };
    let line = ztunnel_log(facts, &peer, dst, service, port, &z);
    if z.allowed {
        return ControlFlow::Continue(line);
    }
    // The source sidecar sees its upstream connection closed.
    let layer = DecidingLayer::Ztunnel;
    let mut v = if ctx.captured {
        ctx.local_503(
            layer,
            z.explanation.clone(),
            to,
            &CONNECTION_TERMINATED,
            lat,
        )
    } else {
        decision(
            NetOutcome::Reset { after: lat },
            layer,
            z.explanation.clone(),
        )
    };
    v.ztunnel_log = line;
    ControlFlow::Break(v)
}

/// The destination's sidecar: the request is handed to that pod's real
/// Envoy (the caller forwards it and fills in the answer).
fn sidecar_handoff(
    ctx: &Ctx<'_>,
    service: Option<&ServiceRef>,
    dst: &Pod,
    to: &Dialled,
    port: u16,
    lat: Duration,
) -> PathDecision {
    let who = format!("{}/{}", dst.namespace, dst.name);
    let mut v = decision(
        NetOutcome::Reset { after: lat },
        DecidingLayer::Envoy,
        format!("{who} port {port}: handed to its sidecar's Envoy"),
    );
    v.forward = Some(Forward {
        namespace: dst.namespace.clone(),
        pod: dst.name.clone(),
        port,
        source_ip: ctx.src.ip,
        destination_ip: dst.ip,
        mtls: ctx
            .captured
            .then(|| (ctx.src.namespace.clone(), ctx.src.service_account.clone())),
        sni: to.sni(),
        latency: lat,
        access_log: ctx.input.facts.access_log,
        waypoint: None,
        relays_tcp: ctx.captured && relays_tcp(service, ctx.input.request),
    });
    // The source sidecar (simulated) logs what it relays; the caller
    // fills in the answer once Envoy has given it.
    if ctx.captured {
        v.source = Some(ctx.relayed(to, 0, 0, lat));
    }
    v
}

/// The destination's application: nothing listening (refused), a TCP server
/// waiting for its client, or an HTTP answer (with nginx's access log line).
/// A connection that reached the application carries `ztunnel_line`.
fn application_layer(
    ctx: &Ctx<'_>,
    dst_json: &Value,
    dst: &Pod,
    to: &Dialled,
    port: u16,
    lat: Duration,
    ztunnel_line: Option<(String, String, String)>,
) -> PathDecision {
    let req = ctx.input.request;
    let who = format!("{}/{}", dst.namespace, dst.name);
    if !listening_ports(dst_json).contains(&port) {
        let reason = format!("nothing listens on {who} port {port}");
        let refused = NetOutcome::Refused {
            after: Duration::ZERO,
        };
        let layer = DecidingLayer::NotListening;
        return ctx.failed(layer, reason, to, &CONNECT_REFUSED, refused);
    }
    // A TCP server waits for its client.
    if client_protocol(req) == ClientProtocol::Tcp {
        let mut v = decision(
            NetOutcome::Silent,
            DecidingLayer::Application,
            format!("{who} port {port} accepted the connection"),
        );
        v.ztunnel_log = ztunnel_line;
        return v;
    }
    let cms = &ctx.input.facts.configmaps;
    let a = app::answer(dst_json, cms, &req.method, &req.path, port, &req.headers);
    let sent = a.body.len();
    let headers = if ctx.captured {
        via_envoy(&a.headers, lat)
    } else {
        a.headers.clone()
    };
    let mut v = decision(
        NetOutcome::Http {
            after: lat,
            status: a.status,
            headers,
            body: a.body,
        },
        DecidingLayer::Application,
        format!("{who} answered {}", a.status),
    );
    if ctx.captured {
        v.source = Some(ctx.relayed(to, a.status, sent, lat));
    }
    if a.nginx
        && let Some(c) = app::nginx_container(dst_json)
    {
        let client = if dst.has_sidecar {
            "127.0.0.6"
        } else {
            &ctx.src_ip
        };
        let ua = header(req, "user-agent");
        let line = app::nginx_log_line(client, &req.method, &req.path, a.status, sent, ua);
        v.app_log = Some((dst.namespace.clone(), dst.name.clone(), c.to_string(), line));
    }
    v.ztunnel_log = ztunnel_line;
    v
}

/// The dataplane mode of the destination (meshpolicy::ambient's rule).
fn ambient_mode(facts: &Facts, dst: &Pod) -> meshpolicy::ambient::DataplaneMode {
    let ns_labels = facts
        .namespaces
        .iter()
        .find(|n| n["metadata"]["name"].as_str() == Some(dst.namespace.as_str()))
        .map(labels_of)
        .unwrap_or_default();
    meshpolicy::ambient::dataplane_mode(&dst.labels, dst.has_sidecar, &ns_labels)
}

/// Whether the source's traffic leaves with a mesh identity (a sidecar, or
/// the source node's ztunnel for an ambient source).
fn source_identity(ctx: &Ctx<'_>) -> Option<String> {
    let in_mesh = ctx.captured
        || ambient_mode(ctx.input.facts, &ctx.src) == meshpolicy::ambient::DataplaneMode::Ambient;
    in_mesh.then(|| {
        ctx.src
            .principal(meshpolicy::workload::DEFAULT_TRUST_DOMAIN)
    })
}

/// The destination ztunnel's decision (meshpolicy::ambient) on a connection
/// from `source_ip` with that identity.
fn ztunnel(
    ctx: &Ctx<'_>,
    dst: &Pod,
    source_principal: Option<String>,
    source_ip: Option<IpAddr>,
    port: u16,
) -> meshpolicy::ambient::ZtunnelVerdict {
    let req = meshpolicy::AuthzRequest {
        source_principal,
        source_ip,
        destination_namespace: dst.namespace.clone(),
        destination_pod: dst.name.clone(),
        destination_ip: dst.ip,
        destination_port: port,
        ..meshpolicy::AuthzRequest::default()
    };
    meshpolicy::ambient::ztunnel_decide(ctx.input.ztunnel_policies, dst, &req, ROOT_NAMESPACE)
}

/// The client end of a connection as the destination's ztunnel sees it.
struct Peer {
    addr: String,
    workload: String,
    namespace: String,
    identity: Option<String>,
}

fn used(w: &super::flow::WaypointFacts) -> meshpolicy::ambient::WaypointUse {
    meshpolicy::ambient::WaypointUse::Uses {
        waypoint: w.waypoint.clone(),
        bound_by: String::new(),
    }
}

/// PeerAuthentication for `dst`'s `port` as its ztunnel enforces it (meshpolicy).
fn ztunnel_peer_auth(ctx: &Ctx<'_>, dst: &Pod, port: u16) -> meshpolicy::ambient::ZtunnelPeerAuth {
    let parsed =
        crate::mesh::sidecar::config::peer_authentications(ctx.input.ztunnel_peer_authentications);
    let eff = meshpolicy::peerauth::effective_mode(
        &parsed,
        &dst.namespace,
        &dst.labels,
        port,
        ROOT_NAMESPACE,
    );
    meshpolicy::ambient::ztunnel_peer_authentication(&eff, ROOT_NAMESPACE)
}

/// A connection from an in-mesh client to a destination that uses a
/// waypoint: the client's ztunnel (or sidecar) tunnels it to the waypoint,
/// whose real Envoy enforces the policies attached to it (full L7), then
/// opens its own connection to the destination. The destination's ztunnel
/// then sees the waypoint's identity, not the client's (Istio docs, "Ambient
/// mode > Use Layer 4 security policy", on policies with a waypoint: the
/// destination must allow the waypoint's identity), so L4 policies bound by
/// selector are evaluated for the waypoint's ServiceAccount.
fn via_waypoint(
    ctx: &Ctx<'_>,
    w: &super::flow::WaypointFacts,
    to: &Dialled<'_>,
    dst_json: &Value,
    dst: &Pod,
    port: u16,
    lat: Duration,
) -> PathDecision {
    let facts = ctx.input.facts;
    let service = to.service;
    let wname = format!("{}/{}", w.waypoint.namespace, w.waypoint.name);
    let layer = DecidingLayer::Waypoint;
    let Some(wpod) = w.pod.as_ref() else {
        // ztunnel cannot reach the waypoint: the connection is closed.
        let reason = format!("waypoint {wname} has no ready pod");
        return if ctx.captured {
            ctx.local_503(layer, reason, to, &CONNECTION_TERMINATED, lat)
        } else {
            decision(NetOutcome::Reset { after: lat }, layer, reason)
        };
    };
    let mut wmodel = model_pod(wpod);
    wmodel.service_account = w.service_account.clone();
    let wip = wmodel.ip.map(|i| i.to_string()).unwrap_or_default();
    let identity = wmodel.principal(meshpolicy::workload::DEFAULT_TRUST_DOMAIN);
    let z = ztunnel(ctx, dst, Some(identity.clone()), wmodel.ip, port);
    let peer = Peer {
        addr: format!("{wip}:{}", ctx.input.ids.upstream_port),
        workload: wmodel.name.clone(),
        namespace: wmodel.namespace.clone(),
        identity: Some(identity),
    };
    let (fw_ip, fw_port) = match service {
        Some(s) => (
            s.cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .or(dst.ip),
            s.port,
        ),
        None => (dst.ip, port),
    };
    let mut v = decision(
        NetOutcome::Reset { after: lat },
        layer,
        format!(
            "{}/{} port {port}: through waypoint {wname} ({})",
            dst.namespace, dst.name, z.explanation
        ),
    );
    v.forward = Some(Forward {
        namespace: wmodel.namespace.clone(),
        pod: wmodel.name.clone(),
        port: fw_port,
        source_ip: ctx.src.ip,
        destination_ip: fw_ip,
        // HBONE from the client's ztunnel (or sidecar): mTLS with the client's identity.
        mtls: Some((ctx.src.namespace.clone(), ctx.src.service_account.clone())),
        sni: to.sni(),
        latency: lat,
        access_log: facts.access_log,
        // meshsim's waypoint path carries HTTP only (see sidecar::waypoint).
        relays_tcp: false,
        waypoint: Some(WaypointHop {
            pod: dst_json.clone(),
            port,
            service: service.map(|s| (s.namespace.clone(), s.name.clone())),
            ztunnel_allowed: z.allowed,
            ztunnel_log: ztunnel_log(facts, &peer, dst, service, port, &z),
            ztunnel_reason: z.explanation,
            configmaps: facts.configmaps.clone(),
            waypoint_ip: wip,
        }),
    });
    if ctx.captured {
        v.source = Some(ctx.relayed(to, 0, 0, lat));
    }
    v
}

/// ztunnel's inbound access log line (Rust `tracing` layout, TAB-separated
/// `TIME LEVEL TARGET MESSAGE`, then `key=value` fields): `info` for a
/// completed connection, `error` with `error="connection closed due to policy
/// rejection: ..."` for a rejected one; (namespace, pod, line) for the
/// destination node's ztunnel, when one runs.
fn ztunnel_log(
    facts: &Facts,
    src: &Peer,
    dst: &Pod,
    service: Option<&ServiceRef>,
    port: u16,
    z: &meshpolicy::ambient::ZtunnelVerdict,
) -> Option<(String, String, String)> {
    let (zns, zpod) = facts.ztunnel.clone()?;
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ");
    let level = if z.allowed { "info" } else { "error" };
    let dst_ip = dst.ip.map(|i| i.to_string()).unwrap_or_default();
    let mut f = vec![
        format!("src.addr={}", src.addr),
        format!("src.workload={:?}", src.workload),
        format!("src.namespace={:?}", src.namespace),
    ];
    if let Some(id) = &src.identity {
        f.push(format!("src.identity=\"spiffe://{id}\""));
    }
    f.push(format!("dst.addr={dst_ip}:15008"));
    f.push(format!("dst.hbone_addr={dst_ip}:{port}"));
    if let Some(s) = service {
        f.push(format!("dst.service={:?}", s.fqdn()));
    }
    f.push(format!("dst.workload={:?}", dst.name));
    f.push(format!("dst.namespace={:?}", dst.namespace));
    f.push(format!(
        "dst.identity=\"spiffe://{}\"",
        dst.principal(meshpolicy::workload::DEFAULT_TRUST_DOMAIN)
    ));
    f.push("direction=\"inbound\"".into());
    f.push("bytes_sent=0 bytes_recv=0 duration=\"0ms\"".into());
    if let Some(e) = z.rejection_error() {
        f.push(format!("error={e:?}"));
    }
    let line = format!("{t}\t{level}\taccess\tconnection complete\t{}", f.join(" "));
    Some((zns, zpod, line))
}
