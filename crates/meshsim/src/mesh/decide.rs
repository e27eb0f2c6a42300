//! The decision for one request: which layer stops it (or lets it through),
//! what the client sees, and what each sidecar on the path writes.
//!
//! The order follows the packet: DNS and kube-proxy ([`super::flow`]), then
//! NetworkPolicy (the CNI drops the SYN: the client, or its sidecar, waits
//! for a connect timeout), then whether anything listens on the port (a
//! refused connect), then the destination sidecar: PeerAuthentication
//! (plain text to a STRICT port is reset; mTLS to a DISABLE port is cut),
//! then every RBAC filter Istio generated for the policies that sidecar has
//! received (CUSTOM, AUDIT, DENY, ALLOW, in that order, each with its shadow
//! rules), and finally the application. Both policy layers are evaluated by
//! crates/meshpolicy, so the simulation and the plugins agree by
//! construction. Nothing here does I/O: the caller renders the returned log
//! events into each container's log.
//!
//! Sidecar behaviour modelled on Istio 1.25 defaults: outbound connect
//! timeout 10 s; local replies carry `server: istio-envoy`; responses through
//! any sidecar get lower-case header names, `server: istio-envoy` and
//! `x-envoy-upstream-service-time`; a CUSTOM (ext_authz) policy whose rule
//! matches is answered 403 `ext_authz_error` (flag `UAEX`), since meshsim runs
//! no authorization provider.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use meshpolicy::envoy::AccessLogEntry;
use meshpolicy::envoy::rbac_log::{Decision as RbacDecision, Engine};
use meshpolicy::workload::ContainerPort;
use meshpolicy::{
    Action, AuthorizationPolicy, AuthzRequest, CompiledAuthz, Decision, Endpoint, HttpAttributes,
    Namespace, Pod, Protocol,
};
use serde_json::Value;

use super::app::{self, AppAnswer};
use super::flow::{Facts, Route, ServiceRef};
use super::peerauth::{self, MtlsMode};
use crate::exec::{NetOutcome, NetRequest};

/// Istio's default outbound connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default root namespace.
pub const ROOT_NAMESPACE: &str = "istio-system";
/// The body of an RBAC denial.
pub const RBAC_DENIED_BODY: &str = "RBAC: access denied";
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

/// Which layer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Dns,
    NoEndpoints,
    /// Dropped on the way (unknown address, undeclared service port).
    Blackhole,
    NetworkPolicy,
    NotListening,
    Mtls,
    Rbac,
    ExtAuthz,
    Application,
    /// Handed to the destination's real Envoy (see [`Forward`]).
    Envoy,
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
}

/// One line the RBAC logger prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacLine {
    /// `checking request: ...` (each filter prints it first).
    Checking(String),
    Decision {
        engine: Engine,
        decision: RbacDecision,
        policy: Option<String>,
    },
}

/// What one sidecar writes for the request.
#[derive(Debug, Clone, Default)]
pub struct SidecarEvents {
    pub namespace: String,
    pub pod: String,
    pub rbac: Vec<RbacLine>,
    /// Details of a local reply (`rbac_access_denied_matched_policy[ID]`).
    pub local_reply: Option<String>,
    pub access: Option<AccessLogEntry>,
    /// When the access log line is written, after the request started.
    pub access_after: Duration,
}

/// The outcome plus everything to log.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: NetOutcome,
    pub layer: Layer,
    /// One-line explanation (tracing, tests).
    pub reason: String,
    pub source: Option<SidecarEvents>,
    pub destination: Option<SidecarEvents>,
    /// (namespace, pod, container, line) for the application's own log.
    pub app_log: Option<(String, String, String, String)>,
    /// Set when the destination's real Envoy is to decide.
    pub forward: Option<Forward>,
}

/// The inputs of a decision besides the gathered facts.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub facts: &'a Facts,
    /// The container the client runs in (`istio-proxy` bypasses capture).
    pub container: &'a str,
    pub request: &'a NetRequest,
    /// AuthorizationPolicies the destination sidecar has received.
    pub dst_authz: &'a [AuthorizationPolicy],
    /// PeerAuthentications the destination sidecar has received.
    pub dst_peerauth: &'a [Arc<Value>],
    /// Whether the simulated CNI enforces NetworkPolicy at all.
    pub enforce_network_policy: bool,
    /// Per-request values that would be random (request id, ports).
    pub ids: Ids,
    /// Whether destination sidecars are real Envoys ([`Forward`]).
    pub real_sidecars: bool,
}

/// Values Envoy would pick at random, passed in so decisions are repeatable.
#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: String,
    /// The client's port towards its own sidecar (or the destination).
    pub client_port: u16,
    /// The client sidecar's port towards the destination.
    pub upstream_port: u16,
    /// The destination sidecar's port towards the application (from 127.0.0.6).
    pub inbound_port: u16,
    pub start_time: String,
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// A store pod reduced to what the policy engine reads.
pub fn model_pod(p: &Value) -> Pod {
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = p["metadata"]["name"].as_str().unwrap_or("");
    let mut pod = Pod::new(ns, name, str_map(&p["metadata"]["labels"]));
    pod.ip = p["status"]["podIP"].as_str().and_then(|s| s.parse().ok());
    pod.service_account = p["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    let containers = p["spec"]["containers"].as_array().into_iter().flatten();
    let inits = p["spec"]["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(inits) {
        if c["name"] == "istio-proxy" {
            pod.has_sidecar = true;
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            let Some(n) = port["containerPort"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
            else {
                continue;
            };
            pod.ports.push(ContainerPort {
                name: port["name"].as_str().map(str::to_string),
                port: n,
                protocol: port["protocol"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default(),
            });
        }
    }
    pod
}

/// Ports the pod's processes listen on: `meshsim.dev/listen` (comma-separated)
/// when set, else every declared TCP container port.
pub fn listening_ports(p: &Value) -> Vec<u16> {
    if let Some(list) = p["metadata"]["annotations"]["meshsim.dev/listen"].as_str() {
        return list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
    }
    model_pod(p)
        .ports
        .iter()
        .filter(|cp| cp.protocol == Protocol::Tcp)
        .map(|cp| cp.port)
        .collect()
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

fn authority(req: &NetRequest) -> String {
    header(req, "host").map_or_else(|| req.host.clone(), str::to_string)
}

fn local_reply(
    status: u16,
    body: &str,
    upstream_time: Option<Duration>,
) -> (Vec<(String, String)>, Vec<u8>) {
    let mut h = vec![
        ("content-length".to_string(), body.len().to_string()),
        ("content-type".to_string(), "text/plain".to_string()),
        ("date".to_string(), app::http_date()),
        ("server".to_string(), "istio-envoy".to_string()),
    ];
    if let Some(t) = upstream_time {
        h.push(("x-envoy-upstream-service-time".into(), ms(t).to_string()));
    }
    let _ = status;
    (h, body.as_bytes().to_vec())
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

/// The RBAC filters of a sidecar, run on one request: lines logged and the
/// denial, if any (`Err(Some(id))` RBAC, `Err(None)` ext_authz).
fn run_rbac(
    policies: &[CompiledAuthz],
    req: &AuthzRequest,
    checking: &str,
) -> (Vec<RbacLine>, Result<(), Option<String>>) {
    let mut lines = Vec::new();
    let of = |a: Action| -> Vec<&CompiledAuthz> {
        policies.iter().filter(|p| p.action() == a).collect()
    };
    let dec = |engine, decision, policy: Option<String>| RbacLine::Decision {
        engine,
        decision,
        policy,
    };
    let no_engine = || dec(Engine::None, RbacDecision::AllowedByDefault, None);

    // CUSTOM: one filter per provider (shadow rules, then ext_authz).
    let custom = of(Action::Custom);
    let mut providers: Vec<&str> = custom.iter().filter_map(|p| p.provider()).collect();
    providers.sort_unstable();
    providers.dedup();
    for prov in providers {
        let ps: Vec<&CompiledAuthz> = custom
            .iter()
            .copied()
            .filter(|p| p.provider() == Some(prov))
            .collect();
        let v = meshpolicy::authz::evaluate_policies(&ps, req, true, Vec::new());
        lines.push(RbacLine::Checking(checking.to_string()));
        match v.delegated.first() {
            Some(d) => {
                lines.push(dec(
                    Engine::Shadow,
                    RbacDecision::Denied,
                    Some(d.policy_id.clone()),
                ));
                lines.push(no_engine());
                return (lines, Err(None));
            }
            None => {
                lines.push(dec(
                    Engine::Shadow,
                    RbacDecision::Allowed,
                    Some("none".into()),
                ));
                lines.push(no_engine());
            }
        }
    }

    for action in [Action::Audit, Action::Deny, Action::Allow] {
        let group = of(action);
        if group.is_empty() {
            continue;
        }
        lines.push(RbacLine::Checking(checking.to_string()));
        let dry: Vec<&CompiledAuthz> = group.iter().copied().filter(|p| p.is_dry_run()).collect();
        let live: Vec<&CompiledAuthz> = group.iter().copied().filter(|p| !p.is_dry_run()).collect();
        if !dry.is_empty() {
            let v = meshpolicy::authz::evaluate_policies(&dry, req, true, Vec::new());
            if let Some(s) = v.shadow.iter().find(|s| s.action == action) {
                let d = if s.outcome.ends_with("denied") {
                    RbacDecision::Denied
                } else {
                    RbacDecision::Allowed
                };
                lines.push(dec(Engine::Shadow, d, Some(s.policy_id.clone())));
            }
        }
        if live.is_empty() {
            lines.push(no_engine());
            continue;
        }
        let v = meshpolicy::authz::evaluate_policies(&live, req, true, Vec::new());
        match action {
            Action::Audit => {
                let id = v.audited.first().cloned().unwrap_or_else(|| "none".into());
                lines.push(dec(Engine::Enforced, RbacDecision::Allowed, Some(id)));
            }
            Action::Deny => match (v.decision, v.policy_id) {
                (Decision::Deny, Some(id)) => {
                    lines.push(dec(
                        Engine::Enforced,
                        RbacDecision::Denied,
                        Some(id.clone()),
                    ));
                    return (lines, Err(Some(id)));
                }
                _ => lines.push(dec(
                    Engine::Enforced,
                    RbacDecision::Allowed,
                    Some("none".into()),
                )),
            },
            _ => match (v.decision, v.policy_id) {
                (Decision::Allow, Some(id)) => {
                    lines.push(dec(Engine::Enforced, RbacDecision::Allowed, Some(id)));
                }
                _ => {
                    lines.push(dec(
                        Engine::Enforced,
                        RbacDecision::Denied,
                        Some("none".into()),
                    ));
                    return (lines, Err(Some("none".into())));
                }
            },
        }
    }
    (lines, Ok(()))
}

/// A blank access log entry for this request.
fn entry(input: &Input<'_>, status: u16, flags: &str, details: &str) -> AccessLogEntry {
    let req = input.request;
    AccessLogEntry {
        start_time: Some(input.ids.start_time.clone()),
        method: Some(req.method.clone()),
        path: Some(req.path.clone()),
        protocol: Some("HTTP/1.1".into()),
        response_code: Some(status),
        response_flags: flags.to_string(),
        response_code_details: Some(details.to_string()),
        bytes_received: Some(req.body.as_ref().map_or(0, |b| b.len() as u64)),
        x_forwarded_for: None,
        user_agent: header(req, "user-agent").map(str::to_string),
        request_id: Some(input.ids.request_id.clone()),
        authority: Some(authority(req)),
        route_name: Some("default".into()),
        ..AccessLogEntry::default()
    }
}

fn finish(
    mut e: AccessLogEntry,
    bytes_sent: usize,
    duration: Duration,
    upstream: Option<Duration>,
) -> AccessLogEntry {
    e.bytes_sent = Some(bytes_sent as u64);
    e.duration = Some(ms(duration));
    e.upstream_service_time = upstream.map(|d| ms(d).to_string());
    e.verdict = e.classify();
    e
}

struct Ctx<'a> {
    input: &'a Input<'a>,
    src: Pod,
    src_ip: String,
    captured: bool,
}

impl Ctx<'_> {
    fn client(&self) -> String {
        format!("{}:{}", self.src_ip, self.input.ids.client_port)
    }

    /// The address the destination sees the connection come from: the
    /// client's sidecar when it has one, else the client itself.
    fn peer(&self) -> String {
        if self.captured {
            format!("{}:{}", self.src_ip, self.input.ids.upstream_port)
        } else {
            self.client()
        }
    }

    /// The source sidecar's outbound entry for an answer that came from the
    /// destination (its sidecar or its application) and was passed on as is.
    fn relayed(
        &self,
        service: Option<&ServiceRef>,
        dst_hostport: &str,
        dst_address: &str,
        status: u16,
        bytes_sent: usize,
        lat: Duration,
    ) -> SidecarEvents {
        self.outbound(
            service,
            Some(dst_hostport.to_string()),
            dst_address,
            status,
            "-",
            "via_upstream",
            bytes_sent,
            lat,
            Some(lat),
        )
    }

    /// The source sidecar's outbound access log entry.
    #[allow(clippy::too_many_arguments)]
    fn outbound(
        &self,
        service: Option<&ServiceRef>,
        upstream_host: Option<String>,
        dst_address: &str,
        status: u16,
        flags: &str,
        details: &str,
        bytes_sent: usize,
        duration: Duration,
        upstream_time: Option<Duration>,
    ) -> SidecarEvents {
        let mut e = entry(self.input, status, flags, details);
        e.upstream_host = upstream_host.clone();
        e.upstream_cluster = Some(match service {
            Some(s) => format!("outbound|{}||{}", s.port, s.fqdn()),
            None => "PassthroughCluster".into(),
        });
        if service.is_none() {
            e.route_name = Some("allow_any".into());
        }
        e.upstream_local_address = upstream_host
            .as_ref()
            .map(|_| format!("{}:{}", self.src_ip, self.input.ids.upstream_port));
        e.downstream_local_address = Some(dst_address.to_string());
        e.downstream_remote_address = Some(self.client());
        let after = if flags.contains("UF") && details.contains("connection_timeout") {
            duration
        } else {
            Duration::ZERO
        };
        SidecarEvents {
            namespace: self.src.namespace.clone(),
            pod: self.src.name.clone(),
            access: Some(finish(e, bytes_sent, duration, upstream_time)),
            access_after: after,
            ..SidecarEvents::default()
        }
    }
}

fn verdict(outcome: NetOutcome, layer: Layer, reason: impl Into<String>) -> Verdict {
    Verdict {
        outcome,
        layer,
        reason: reason.into(),
        source: None,
        destination: None,
        app_log: None,
        forward: None,
    }
}

/// Decides one request.
pub fn decide(input: &Input<'_>) -> Verdict {
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
    match &facts.route {
        Route::Unresolved => verdict(
            NetOutcome::DnsFailure,
            Layer::Dns,
            format!("could not resolve host {}", input.request.host),
        ),
        Route::Loopback { port } => loopback(&ctx, *port),
        Route::NoEndpoints { service } => {
            let reason = format!(
                "service {}/{} has no ready endpoints",
                service.namespace, service.name
            );
            if ctx.captured {
                let (headers, body) = local_reply(503, NO_HEALTHY_UPSTREAM_BODY, None);
                let dst_addr = format!(
                    "{}:{}",
                    service.cluster_ip.clone().unwrap_or_default(),
                    service.port
                );
                let mut v = verdict(
                    NetOutcome::Http {
                        after: Duration::ZERO,
                        status: 503,
                        headers,
                        body: body.clone(),
                    },
                    Layer::NoEndpoints,
                    reason,
                );
                v.source = Some(ctx.outbound(
                    Some(service),
                    None,
                    &dst_addr,
                    503,
                    "UH",
                    "no_healthy_upstream",
                    body.len(),
                    Duration::ZERO,
                    None,
                ));
                v
            } else {
                verdict(
                    NetOutcome::Refused {
                        after: Duration::ZERO,
                    },
                    Layer::NoEndpoints,
                    reason,
                )
            }
        }
        Route::Blackhole { address } => {
            let reason = format!("nothing answers for {address}: packets are dropped");
            if ctx.captured {
                timeout_503(
                    &ctx,
                    None,
                    Some(address.clone()),
                    address,
                    Layer::Blackhole,
                    reason,
                )
            } else {
                verdict(NetOutcome::ConnectTimeout, Layer::Blackhole, reason)
            }
        }
        Route::Endpoint { service, pod, port } => endpoint(&ctx, service.as_ref(), pod, *port),
    }
}

fn timeout_503(
    ctx: &Ctx<'_>,
    service: Option<&ServiceRef>,
    upstream: Option<String>,
    dst_addr: &str,
    layer: Layer,
    reason: String,
) -> Verdict {
    let (headers, body) = local_reply(503, CONNECT_TIMEOUT_BODY, None);
    let mut v = verdict(
        NetOutcome::Http {
            after: CONNECT_TIMEOUT,
            status: 503,
            headers,
            body: body.clone(),
        },
        layer,
        reason,
    );
    v.source = Some(ctx.outbound(
        service,
        upstream,
        dst_addr,
        503,
        "UF,URX",
        "upstream_reset_before_response_started{connection_timeout}",
        body.len(),
        CONNECT_TIMEOUT,
        None,
    ));
    v
}

fn loopback(ctx: &Ctx<'_>, port: u16) -> Verdict {
    let pod = &ctx.input.facts.source;
    let mut ports = listening_ports(pod);
    if ctx.src.has_sidecar {
        ports.extend_from_slice(SIDECAR_PORTS);
    }
    if !ports.contains(&port) {
        return verdict(
            NetOutcome::Refused {
                after: Duration::ZERO,
            },
            Layer::NotListening,
            format!("nothing listens on localhost:{port}"),
        );
    }
    let req = ctx.input.request;
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
        let lookup = |name: &str| {
            cms.iter()
                .find(|c| c["metadata"]["name"].as_str() == Some(name))
                .cloned()
        };
        app::answer(pod, &lookup, &req.method, &req.path, port)
    };
    verdict(
        NetOutcome::Http {
            after: latency(pod),
            status: a.status,
            headers: a.headers,
            body: a.body,
        },
        Layer::Application,
        format!("localhost:{port} answered by the pod itself"),
    )
}

fn endpoint(ctx: &Ctx<'_>, service: Option<&ServiceRef>, dst_json: &Value, port: u16) -> Verdict {
    let input = ctx.input;
    let facts = input.facts;
    let req = input.request;
    let dst = model_pod(dst_json);
    let dst_ip = dst.ip.map(|i| i.to_string()).unwrap_or_default();
    let dst_hostport = format!("{dst_ip}:{port}");
    let dst_addr = match service {
        Some(s) => format!(
            "{}:{}",
            s.cluster_ip.clone().unwrap_or_else(|| dst_ip.clone()),
            s.port
        ),
        None => dst_hostport.clone(),
    };
    let who = format!("{}/{}", dst.namespace, dst.name);

    // NetworkPolicy, evaluated on the two pods and their namespaces.
    let mut model = meshpolicy::Cluster::new();
    for ns in &facts.namespaces {
        let name = ns["metadata"]["name"].as_str().unwrap_or("");
        model.add_namespace(Namespace::new(name, str_map(&ns["metadata"]["labels"])));
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
    let same_pod = ctx.src.namespace == dst.namespace && ctx.src.name == dst.name;
    if !same_pod && input.enforce_network_policy {
        let net = model.evaluate_network(
            &Endpoint::pod(&ctx.src.namespace, &ctx.src.name),
            &Endpoint::pod(&dst.namespace, &dst.name),
            port,
            Protocol::Tcp,
        );
        if let Ok(n) = net
            && !n.allowed
        {
            let reason = format!("NetworkPolicy: {}", n.explanation);
            return if ctx.captured {
                timeout_503(
                    ctx,
                    service,
                    Some(dst_hostport.clone()),
                    &dst_addr,
                    Layer::NetworkPolicy,
                    reason,
                )
            } else {
                verdict(NetOutcome::ConnectTimeout, Layer::NetworkPolicy, reason)
            };
        }
    }

    let listening = listening_ports(dst_json).contains(&port);
    let lat = latency(dst_json);
    let dst_sidecar = dst.has_sidecar && !SIDECAR_PORTS.contains(&port);
    let mode = if dst_sidecar {
        peerauth::mtls_mode(
            input.dst_peerauth,
            &dst.namespace,
            &dst.labels,
            port,
            ROOT_NAMESPACE,
        )
    } else {
        MtlsMode::Permissive
    };
    let sni = service.map_or_else(
        || "-".to_string(),
        |s| format!("outbound_.{}_._.{}", s.port, s.fqdn()),
    );

    if dst_sidecar && input.real_sidecars {
        let mut v = verdict(
            NetOutcome::Reset { after: lat },
            Layer::Envoy,
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
            sni,
            latency: lat,
            access_log: facts.access_log,
        });
        return v;
    }
    if dst_sidecar {
        if !ctx.captured && mode == MtlsMode::Strict {
            let mut v = verdict(
                NetOutcome::Reset { after: lat },
                Layer::Mtls,
                format!(
                    "PeerAuthentication STRICT on {who} port {port} and the client has no sidecar: plain text is reset"
                ),
            );
            let mut e = entry(input, 0, "NR", "filter_chain_not_found");
            e.method = None;
            e.path = None;
            e.protocol = None;
            e.user_agent = None;
            e.request_id = None;
            e.authority = None;
            e.route_name = None;
            e.response_code_details = Some("filter_chain_not_found".into());
            e.downstream_local_address = Some(dst_hostport.clone());
            e.downstream_remote_address = Some(ctx.peer());
            v.destination = Some(SidecarEvents {
                namespace: dst.namespace.clone(),
                pod: dst.name.clone(),
                access: Some(finish(e, 0, Duration::ZERO, None)),
                ..SidecarEvents::default()
            });
            return v;
        }
        if ctx.captured && mode == MtlsMode::Disable {
            let (headers, body) = local_reply(503, CONNECT_TERMINATION_BODY, None);
            let mut v = verdict(
                NetOutcome::Http {
                    after: lat,
                    status: 503,
                    headers,
                    body: body.clone(),
                },
                Layer::Mtls,
                format!(
                    "PeerAuthentication DISABLE on {who} port {port}: the client sidecar's mTLS handshake is cut"
                ),
            );
            v.source = Some(ctx.outbound(
                service,
                Some(dst_hostport.clone()),
                &dst_addr,
                503,
                "UC",
                "upstream_reset_before_response_started{connection_termination}",
                body.len(),
                lat,
                None,
            ));
            return v;
        }
    } else if !listening {
        let reason = format!("nothing listens on {who} port {port}");
        if ctx.captured {
            let (headers, body) = local_reply(503, CONNECT_FAILURE_BODY, None);
            let mut v = verdict(
                NetOutcome::Http {
                    after: Duration::ZERO,
                    status: 503,
                    headers,
                    body: body.clone(),
                },
                Layer::NotListening,
                reason,
            );
            v.source = Some(ctx.outbound(
                service,
                Some(dst_hostport.clone()),
                &dst_addr,
                503,
                "UF,URX",
                "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}",
                body.len(),
                Duration::ZERO,
                None,
            ));
            return v;
        }
        return verdict(
            NetOutcome::Refused {
                after: Duration::ZERO,
            },
            Layer::NotListening,
            reason,
        );
    }

    let mtls = dst_sidecar && ctx.captured && mode != MtlsMode::Disable;
    let mut dst_events = dst_sidecar.then(|| SidecarEvents {
        namespace: dst.namespace.clone(),
        pod: dst.name.clone(),
        ..SidecarEvents::default()
    });
    let inbound = |status: u16,
                   flags: &str,
                   details: &str,
                   upstream: Option<String>,
                   sent: usize,
                   dur: Duration,
                   up: Option<Duration>| {
        let mut e = entry(input, status, flags, details);
        e.upstream_host = upstream.clone();
        e.upstream_cluster = Some(format!("inbound|{port}||"));
        e.upstream_local_address =
            upstream.map(|_| format!("127.0.0.6:{}", input.ids.inbound_port));
        e.downstream_local_address = Some(dst_hostport.clone());
        e.downstream_remote_address = Some(ctx.peer());
        e.requested_server_name = mtls.then(|| sni.clone());
        if !mtls {
            e.route_name = Some("default".into());
        }
        finish(e, sent, dur, up)
    };

    // The destination sidecar's RBAC filters.
    if let Some(ev) = dst_events.as_mut() {
        let compiled: Vec<CompiledAuthz> = input
            .dst_authz
            .iter()
            .filter_map(|p| CompiledAuthz::compile(p).ok())
            .filter(|p| p.applies_to(&dst, ROOT_NAMESPACE))
            .collect();
        let mut headers: BTreeMap<String, String> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        headers.insert(":authority".into(), authority(req));
        headers.insert(":method".into(), req.method.clone());
        headers.insert(":path".into(), req.path.clone());
        let areq = AuthzRequest {
            source_principal: mtls.then(|| {
                ctx.src
                    .principal(meshpolicy::workload::DEFAULT_TRUST_DOMAIN)
            }),
            source_namespace: None,
            source_ip: ctx.src.ip,
            remote_ip: None,
            request_principal: None,
            destination_namespace: dst.namespace.clone(),
            destination_pod: dst.name.clone(),
            destination_ip: dst.ip,
            destination_port: port,
            http: Some(HttpAttributes {
                method: req.method.clone(),
                path: req.path.clone(),
                host: authority(req),
                headers: headers.clone(),
            }),
        };
        let checking = checking_line(ctx, &areq, &dst_hostport, mtls, &sni, &headers);
        let (lines, result) = run_rbac(&compiled, &areq, &checking);
        ev.rbac = lines;
        if let Err(denied) = result {
            let (status_body, details, flags) = match &denied {
                Some(id) => (
                    RBAC_DENIED_BODY,
                    meshpolicy::envoy::format_rbac_denied_details(Some(id)),
                    "-",
                ),
                None => ("", "ext_authz_error".to_string(), "UAEX"),
            };
            let layer = if denied.is_some() {
                Layer::Rbac
            } else {
                Layer::ExtAuthz
            };
            ev.local_reply = Some(details.clone());
            ev.access = Some(inbound(
                403,
                flags,
                &details,
                None,
                status_body.len(),
                lat,
                None,
            ));
            let (headers, body) = local_reply(403, status_body, ctx.captured.then_some(lat));
            let reason = match &denied {
                Some(id) => format!("AuthorizationPolicy at {who}: denied, matched policy {id}"),
                None => format!(
                    "CUSTOM AuthorizationPolicy at {who}: no ext_authz provider answers in meshsim"
                ),
            };
            let mut v = verdict(
                NetOutcome::Http {
                    after: lat,
                    status: 403,
                    headers,
                    body: body.clone(),
                },
                layer,
                reason,
            );
            if ctx.captured {
                v.source =
                    Some(ctx.relayed(service, &dst_hostport, &dst_addr, 403, body.len(), lat));
            }
            v.destination = dst_events;
            return v;
        }
        if !listening {
            let (headers, body) = local_reply(503, CONNECT_FAILURE_BODY, None);
            ev.access = Some(inbound(
                503,
                "UF",
                "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}",
                Some(dst_hostport.clone()),
                body.len(),
                lat,
                None,
            ));
            let mut v = verdict(
                NetOutcome::Http {
                    after: lat,
                    status: 503,
                    headers,
                    body: body.clone(),
                },
                Layer::NotListening,
                format!("nothing listens on {who} port {port} (the destination sidecar answers)"),
            );
            if ctx.captured {
                v.source =
                    Some(ctx.relayed(service, &dst_hostport, &dst_addr, 503, body.len(), lat));
            }
            v.destination = dst_events;
            return v;
        }
    }

    // The application answers.
    let cms = &facts.configmaps;
    let lookup = |name: &str| {
        cms.iter()
            .find(|c| c["metadata"]["name"].as_str() == Some(name))
            .cloned()
    };
    let a = app::answer(dst_json, &lookup, &req.method, &req.path, port);
    let sent = a.body.len();
    let through_envoy = ctx.captured || dst_events.is_some();
    let headers = if through_envoy {
        via_envoy(&a.headers, lat)
    } else {
        a.headers.clone()
    };
    let mut v = verdict(
        NetOutcome::Http {
            after: lat,
            status: a.status,
            headers,
            body: a.body,
        },
        Layer::Application,
        format!("{who} answered {}", a.status),
    );
    if let Some(mut ev) = dst_events {
        ev.access = Some(inbound(
            a.status,
            "-",
            "via_upstream",
            Some(dst_hostport.clone()),
            sent,
            lat,
            Some(lat),
        ));
        v.destination = Some(ev);
    }
    if ctx.captured {
        v.source = Some(ctx.relayed(service, &dst_hostport, &dst_addr, a.status, sent, lat));
    }
    if a.nginx
        && let Some(c) = dst_json["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                c["image"]
                    .as_str()
                    .is_some_and(|i| i.rsplit('/').next().unwrap_or(i).starts_with("nginx"))
            })
            .and_then(|c| c["name"].as_str())
    {
        let client = if dst.has_sidecar {
            "127.0.0.6".to_string()
        } else {
            ctx.src_ip.clone()
        };
        let t = jiff::Timestamp::now().strftime("%d/%b/%Y:%H:%M:%S +0000");
        let line = format!(
            "{client} - - [{t}] \"{} {} HTTP/1.1\" {} {sent} \"-\" \"{}\" \"-\"",
            req.method,
            req.path,
            a.status,
            header(req, "user-agent").unwrap_or("-")
        );
        v.app_log = Some((dst.namespace.clone(), dst.name.clone(), c.to_string(), line));
    }
    v
}

fn checking_line(
    ctx: &Ctx<'_>,
    req: &AuthzRequest,
    local: &str,
    mtls: bool,
    sni: &str,
    headers: &BTreeMap<String, String>,
) -> String {
    let peer = ctx.peer();
    let ssl = if mtls {
        format!(
            "uriSanPeerCertificate: spiffe://{}, dnsSanPeerCertificate: , subjectPeerCertificate: ",
            req.source_principal.clone().unwrap_or_default()
        )
    } else {
        "none".into()
    };
    let hs: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("'{k}', '{v}'"))
        .collect();
    format!(
        "checking request: requestedServerName: {}, sourceIP: {peer}, directRemoteIP: {peer}, remoteIP: {peer},localAddress: {local}, ssl: {ssl}, headers: {}, dynamicMetadata: ",
        if mtls { sni } else { "" },
        hs.join("; ")
    )
}

/// The pod IP as an address, when it has one.
pub fn pod_ip(p: &Value) -> Option<IpAddr> {
    p["status"]["podIP"].as_str().and_then(|s| s.parse().ok())
}
