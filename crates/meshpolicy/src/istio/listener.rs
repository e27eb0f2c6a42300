//! The inbound listener Istio builds around a sidecar's RBAC filters, as the
//! JSON that upstream Envoy 1.40 loads.
//!
//! RBAC decisions depend on the listener around them: whether the peer
//! presented a certificate (PeerAuthentication), how the HTTP connection
//! manager normalized the path before RBAC saw it, which filter runs first.
//! Running real Envoy with a listener shaped like istiod's makes those effects
//! real instead of imitated. The shape follows istiod's sidecar inbound path
//! (`pilot/pkg/networking/core/listener_inbound.go`, `filterchain_options.go`,
//! `listener_builder.go`, `security/authn/utils`):
//! - listener filters: the TLS inspector, enabled only on the ports that have a
//!   TLS filter chain (Istio's `filter_disabled` port predicate);
//! - per application port, filter chains matched on destination port and
//!   transport protocol by mTLS mode: STRICT one TLS chain (client certificate
//!   required and verified against the mesh CA); PERMISSIVE a TLS chain
//!   selected by Istio's ALPN values (`istio`, `istio-http/1.1`...) plus a
//!   `raw_buffer` chain (and for TCP ports a non-terminating chain for one-way
//!   TLS from the app); DISABLE one `raw_buffer` chain;
//! - HTTP ports: the HTTP connection manager with Istio's inbound settings
//!   (path normalization, `APPEND_FORWARD` client cert details, server name
//!   `istio-envoy`, websocket upgrade, no stream idle timeout), the given
//!   RBAC/ext_authz HTTP filters in the order given, then the router to
//!   `inbound|PORT||`; TCP ports: the given network RBAC filters, then
//!   `tcp_proxy` to `inbound|PORT||`;
//! - access logs (listener, HTTP connection manager, tcp_proxy) in Istio's
//!   default TEXT format, to a file or to Envoy's own stdout ([`AccessLog`]);
//!   the listener's own only for connections no chain took (flag `NR`).
//!
//! Differences from istiod's listener, all chosen so upstream Envoy can run it:
//! - no `istio_authn` filter: a network `set_filter_state` filter sets
//!   `io.istio.peer_principal` from `%DOWNSTREAM_PEER_URI_SAN%` once the TLS
//!   handshake is done, which is what Istio's principal/namespace matchers read;
//!   RBAC's `authenticated` matchers read the certificate directly as in Istio;
//! - no metadata exchange (`istio.metadata_exchange`, peer metadata), no stats
//!   (`istio.stats`), no `grpc_stats`/fault/CORS filters, no tracing;
//! - no blackhole chains; the passthrough chains (`virtualInbound-catchall-http`
//!   to `InboundPassthroughCluster`) only when asked for ([`Passthrough`]),
//!   always with the HTTP stack (Istio sniffs); otherwise a port without a
//!   chain is closed;
//! - the listener binds an address (optionally every application port too, via
//!   `additional_addresses`) instead of capturing with iptables and
//!   `original_dst`; a PROXY protocol header can carry the original source and
//!   destination instead (`proxy_protocol`);
//!   and with [`InboundSpec::source_ip_from_proxy_protocol`] the RBAC
//!   `direct_remote_ip` matchers read that header's source instead;
//! - certificates come from files or inline PEM instead of SDS, validated
//!   against one CA (no trust-domain aliases); inbound clusters are STATIC to
//!   the app's address instead of ORIGINAL_DST (optionally bound from
//!   Istio's 127.0.0.6, [`InboundSpec::upstream_bind`]);
//! - CUSTOM providers come from the mesh config as with istiod
//!   ([`super::meshconfig`]); the clusters their ext_authz filters name
//!   (`outbound|PORT||HOST`, [`ext_authz_upstreams`]) are the caller's to
//!   provide. Or they can be pointed at a server that does not exist
//!   ([`unreachable_ext_authz`]), so CUSTOM fails closed as with a provider
//!   that cannot be reached.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use serde_json::{Value, json};

use super::rbac::hcm_path_settings;
use super::rbac::{ExtAuthzGrpcProvider, MeshExtensionProvider, ServiceHost, TranslateOptions};
use crate::peerauth::MtlsMode;
use crate::{Action, AuthorizationPolicy};

/// Name istiod gives the sidecar's inbound listener.
pub const VIRTUAL_INBOUND: &str = "virtualInbound";

/// The filter state key Istio's principal and namespace matchers read.
pub const PEER_PRINCIPAL_KEY: &str = "io.istio.peer_principal";

/// Istio's default TEXT access log format (Istio 1.9+, `EnvoyTextLogFormat`
/// in `pilot/pkg/model/telemetry_logging.go`). Current Istio prints the
/// cluster with `%UPSTREAM_CLUSTER_RAW%`; the layout (and what
/// [`crate::envoy::access_log`] parses) is the same as with
/// `%UPSTREAM_CLUSTER%`.
pub const ISTIO_TEXT_ACCESS_LOG_FORMAT: &str = concat!(
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" ",
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ",
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ",
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" ",
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% ",
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% ",
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
);

/// ALPN values that select the mTLS chain of a PERMISSIVE port (Istio's
/// `allIstioMtlsALPNs`).
pub const ISTIO_MTLS_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// What a client sidecar offers for an HTTP/1.1 request over mTLS (Istio's
/// ALPN override for HTTP/1.1 upstreams).
pub const SIDECAR_HTTP11_ALPNS: [&str; 3] = ["istio-http/1.1", "istio", "http/1.1"];

/// What a client sidecar offers for TCP over mTLS (`ALPNInMeshWithMxc`).
pub const SIDECAR_TCP_ALPNS: [&str; 2] = ["istio-peer-exchange", "istio"];

/// Istio's server-side cipher suites for mesh mTLS (`SupportedCiphers`).
pub const SERVER_CIPHERS: [&str; 6] = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
];

/// Path handling of the HTTP connection manager: one definition, shared with
/// the engine, which predicts what RBAC sees after it ([`crate::authz::rbac_path`]).
pub use crate::authz::PathNormalization;

/// Istio's defaults for sidecars (`meshConfig.pathNormalization` unset).
pub const ISTIO_PATH_NORMALIZATION: PathNormalization = PathNormalization::ISTIO_DEFAULT;

/// How the application port speaks (Istio's protocol selection, reduced to
/// the two filter stacks it leads to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AppProtocol {
    /// HTTP/1.1 or HTTP/2: the HTTP connection manager and HTTP RBAC.
    Http,
    /// Anything else: network RBAC and `tcp_proxy`.
    Tcp,
}

/// One application port behind the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundPort {
    /// The container (target) port clients connect to.
    pub port: u16,
    pub protocol: AppProtocol,
    /// The effective PeerAuthentication mode of this port.
    pub mtls: MtlsMode,
    /// Where the application listens.
    pub upstream: SocketAddr,
}

/// The workload's certificate, key and the mesh CA, as files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    pub cert_chain: String,
    pub private_key: String,
    pub ca: String,
}

/// The same three, as PEM text placed in the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsPem {
    pub cert_chain: String,
    pub private_key: String,
    pub ca: String,
}

/// Where Envoy takes the workload's TLS material from (istiod: SDS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMaterial {
    Files(TlsFiles),
    Pem(TlsPem),
}

impl From<TlsFiles> for TlsMaterial {
    fn from(f: TlsFiles) -> Self {
        Self::Files(f)
    }
}

impl From<TlsPem> for TlsMaterial {
    fn from(p: TlsPem) -> Self {
        Self::Pem(p)
    }
}

impl TlsMaterial {
    /// Envoy `DataSource`s: certificate chain, private key, CA.
    fn data_sources(&self) -> [Value; 3] {
        match self {
            Self::Files(f) => {
                [&f.cert_chain, &f.private_key, &f.ca].map(|x| json!({"filename": x}))
            }
            Self::Pem(p) => {
                [&p.cert_chain, &p.private_key, &p.ca].map(|x| json!({"inline_string": x}))
            }
        }
    }
}

/// Where the access log lines go (istiod: `meshConfig.accessLogFile`, empty
/// for none, `/dev/stdout` usually).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    Off,
    /// Envoy opens and appends to this file.
    File(String),
    /// Envoy's own standard output (its stream logger), for a process whose
    /// stdout is a pipe: a file logger opening `/dev/stdout` would write at
    /// its own offset and overwrite interleaved lines.
    Stdout,
}

/// Istio's passthrough filter chains for ports no chain names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Passthrough {
    /// The workload-level PeerAuthentication mode.
    pub mtls: MtlsMode,
    /// Where `InboundPassthroughCluster` leads (istiod: the original destination).
    pub upstream: SocketAddr,
}

/// Name of the passthrough chains.
pub const PASSTHROUGH_CHAIN: &str = "virtualInbound-catchall-http";

/// Istio's passthrough cluster name.
pub const PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";

/// Everything the inbound listener is built from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundSpec {
    /// Listener name (`virtualInbound` by default).
    pub name: String,
    /// Address and port the listener binds (istiod: 0.0.0.0:15006).
    pub address: IpAddr,
    pub port: u16,
    /// Also bind every application port on `address`, so a client can connect
    /// to the port number it means without iptables or a PROXY header.
    pub bind_app_ports: bool,
    /// Expect a PROXY protocol header (v1 or v2) first on every connection: its
    /// source and destination become the downstream addresses that filter
    /// chain matching, RBAC `source.ip` and the access log see.
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: RBAC's `direct_remote_ip` matchers (Istio's
    /// `source.ip`, `ipBlocks`) read the PROXY header's source (Envoy's
    /// `source_ip`) instead of the socket's peer, for a listener every client
    /// reaches over loopback; `remote_ip` (`remoteIpBlocks`) is left alone.
    pub source_ip_from_proxy_protocol: bool,
    pub ports: Vec<InboundPort>,
    /// Istio's passthrough chains for undeclared ports; `None`: closed.
    pub passthrough: Option<Passthrough>,
    /// HTTP filters placed before the router (RBAC, ext_authz), in order.
    pub http_filters: Vec<Value>,
    /// Network filters placed before `tcp_proxy` on TCP ports, in order.
    pub network_filters: Vec<Value>,
    pub tls: TlsMaterial,
    pub access_log: AccessLog,
    pub path_normalization: PathNormalization,
    /// Local address inbound clusters connect from (istiod: 127.0.0.6).
    pub upstream_bind: Option<IpAddr>,
}

impl InboundSpec {
    /// A spec with no ports or filters, Istio's defaults otherwise.
    pub fn new(address: IpAddr, port: u16, tls: impl Into<TlsMaterial>) -> Self {
        Self {
            name: VIRTUAL_INBOUND.to_string(),
            address,
            port,
            bind_app_ports: false,
            proxy_protocol: false,
            source_ip_from_proxy_protocol: false,
            ports: Vec::new(),
            passthrough: None,
            http_filters: Vec::new(),
            network_filters: Vec::new(),
            tls: tls.into(),
            access_log: AccessLog::Off,
            path_normalization: ISTIO_PATH_NORMALIZATION,
            upstream_bind: None,
        }
    }
}

/// A spec Envoy would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenerError {
    #[error("application port {0} is listed more than once")]
    DuplicatePort(u16),
    #[error("application port 0 is not a port")]
    ZeroPort,
    #[error("application port {0} is the listener's own port")]
    ListenerPort(u16),
}

/// Istio's inbound cluster name for a container port.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

fn socket_address(ip: IpAddr, port: u16) -> Value {
    json!({"socket_address": {"address": ip.to_string(), "port_value": port}})
}

fn file_access_log(path: &str) -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"text_format_source": {"inline_string": ISTIO_TEXT_ACCESS_LOG_FORMAT}}
        }
    })
}

fn stdout_access_log() -> Value {
    json!({
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"text_format_source": {"inline_string": ISTIO_TEXT_ACCESS_LOG_FORMAT}}
        }
    })
}

fn access_logs(spec: &InboundSpec) -> Vec<Value> {
    match &spec.access_log {
        AccessLog::Off => Vec::new(),
        AccessLog::File(path) => vec![file_access_log(path)],
        AccessLog::Stdout => vec![stdout_access_log()],
    }
}

/// The listener's own access log: Istio logs there only connections no
/// filter chain took (response flag `NR`); the HTTP connection manager and
/// `tcp_proxy` log everything else.
fn listener_access_logs(spec: &InboundSpec) -> Vec<Value> {
    let mut logs = access_logs(spec);
    for l in &mut logs {
        l["filter"] = json!({"response_flag_filter": {"flags": ["NR"]}});
    }
    logs
}

/// RBAC filters reading the PROXY header's source where Istio reads the
/// socket's peer ([`InboundSpec::source_ip_from_proxy_protocol`]).
fn source_ip_matchers(filters: &[Value]) -> Vec<Value> {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (from, to) in [
                    ("direct_remote_ip", "source_ip"),
                    ("directRemoteIp", "sourceIp"),
                ] {
                    if let Some(x) = map.remove(from) {
                        map.insert(to.into(), x);
                    }
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut filters = filters.to_vec();
    filters.iter_mut().for_each(walk);
    filters
}

fn rbac_filters(spec: &InboundSpec, filters: &[Value]) -> Vec<Value> {
    if spec.proxy_protocol && spec.source_ip_from_proxy_protocol {
        source_ip_matchers(filters)
    } else {
        filters.to_vec()
    }
}

/// Translation options that give every CUSTOM provider the policies name a
/// gRPC ext_authz server at `NAME.ROOT_NAMESPACE.svc.cluster.local:9191`, a
/// cluster the sidecar does not have: a request sent to it fails closed
/// (403, `UAEX`), as with a provider that cannot be reached. For a sidecar
/// that runs no ext_authz server.
pub fn unreachable_ext_authz(
    policies: &[AuthorizationPolicy],
    root_namespace: &str,
) -> TranslateOptions {
    let providers: BTreeSet<&str> = policies
        .iter()
        .filter(|p| p.action() == Action::Custom)
        .filter_map(|p| p.spec.provider.as_ref().map(|x| x.name.as_str()))
        .collect();
    let host = |p: &str| format!("{p}.{root_namespace}.svc.cluster.local");
    TranslateOptions {
        extension_providers: providers
            .iter()
            .map(|p| MeshExtensionProvider {
                name: (*p).to_string(),
                envoy_ext_authz_grpc: Some(ExtAuthzGrpcProvider {
                    service: host(p),
                    port: 9191,
                    ..ExtAuthzGrpcProvider::default()
                }),
                envoy_ext_authz_http: None,
            })
            .collect(),
        services: providers
            .iter()
            .map(|p| ServiceHost {
                namespace: root_namespace.to_string(),
                hostname: host(p),
            })
            .collect(),
        ..TranslateOptions::default()
    }
}

/// A cluster an ext_authz filter sends its checks to: Istio's outbound
/// cluster of the provider's service (`outbound|PORT||HOST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtAuthzUpstream {
    /// The cluster name the filter refers to.
    pub cluster: String,
    /// The provider service's hostname (`NAME.NS.svc.cluster.local`).
    pub host: String,
    /// The provider service's port.
    pub port: u16,
    /// Whether the filter speaks gRPC (`envoyExtAuthzGrpc`) rather than HTTP.
    pub grpc: bool,
}

/// The clusters the ext_authz filters among `filters` (HTTP or network, as
/// [`super::rbac`] builds them) send their checks to, each once.
pub fn ext_authz_upstreams(filters: &[Value]) -> Vec<ExtAuthzUpstream> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for f in filters {
        let name = f["name"].as_str().unwrap_or("");
        if name != super::rbac::HTTP_EXT_AUTHZ && name != super::rbac::NETWORK_EXT_AUTHZ {
            continue;
        }
        let t = &f["typedConfig"];
        let (cluster, grpc) = match (
            t["httpService"]["serverUri"]["cluster"].as_str(),
            t["grpcService"]["envoyGrpc"]["clusterName"].as_str(),
        ) {
            (Some(c), _) => (c, false),
            (None, Some(c)) => (c, true),
            (None, None) => continue,
        };
        // `outbound|PORT|SUBSET|HOST`
        let parts: Vec<&str> = cluster.split('|').collect();
        let (Some(port), Some(host)) = (
            parts.get(1).and_then(|p| p.parse::<u16>().ok()),
            parts.get(3),
        ) else {
            continue;
        };
        if seen.insert(cluster.to_string()) {
            out.push(ExtAuthzUpstream {
                cluster: cluster.to_string(),
                host: (*host).to_string(),
                port,
                grpc,
            });
        }
    }
    out
}

/// The `set_filter_state` network filter standing in for `istio_authn`.
fn peer_principal_filter() -> Value {
    json!({
        "name": "envoy.filters.network.set_filter_state",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config",
            "on_downstream_tls_handshake": [{
                "object_key": PEER_PRINCIPAL_KEY,
                "factory_key": "envoy.string",
                "format_string": {"text_format_source": {"inline_string": "%DOWNSTREAM_PEER_URI_SAN%"}},
                "skip_if_empty": true
            }]
        }
    })
}

fn downstream_tls(spec: &InboundSpec, protocol: AppProtocol) -> Value {
    // HTTP chains advertise only h2/http1.1 (never "istio", which would break
    // ALPN negotiation); TCP chains also advertise istio-peer-exchange.
    let alpn: &[&str] = match protocol {
        AppProtocol::Http => &["h2", "http/1.1"],
        AppProtocol::Tcp => &["istio-peer-exchange", "h2", "http/1.1"],
    };
    let [cert_chain, private_key, ca] = spec.tls.data_sources();
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                    "cipher_suites": SERVER_CIPHERS
                },
                "alpn_protocols": alpn,
                "tls_certificates": [{
                    "certificate_chain": cert_chain,
                    "private_key": private_key
                }],
                "validation_context": {"trusted_ca": ca}
            },
            "require_client_certificate": true
        }
    })
}

/// What a filter chain leads to: one application port, or (`None`) Istio's
/// passthrough for the ports no chain names.
fn cluster_for(port: Option<u16>) -> String {
    port.map_or_else(|| PASSTHROUGH_CLUSTER.to_string(), inbound_cluster_name)
}

fn http_connection_manager(spec: &InboundSpec, port: Option<u16>, tls: bool) -> Value {
    let cluster = cluster_for(port);
    let mut http_filters = rbac_filters(spec, &spec.http_filters);
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    let norm = spec.path_normalization;
    let mut filters = Vec::new();
    if tls {
        filters.push(peer_principal_filter());
    }
    let mut route = json!({
        "name": "default",
        "match": {"prefix": "/"},
        "route": {
            "cluster": cluster,
            "timeout": "0s",
            "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}
        }
    });
    if let Some(p) = port {
        route["decorator"] = json!({"operation": format!(":{p}/*")});
    }
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": port.map_or_else(|| PASSTHROUGH_CLUSTER.to_string(), |p| format!("inbound_0.0.0.0_{p}")),
        "codec_type": "AUTO",
        "route_config": {
            "name": cluster,
            "validate_clusters": false,
            "virtual_hosts": [{
                "name": format!("inbound|http|{}", port.unwrap_or(0)),
                "domains": ["*"],
                "routes": [route]
            }]
        },
        "http_filters": http_filters,
        "access_log": access_logs(spec),
        "use_remote_address": false,
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"subject": true, "uri": true, "dns": true},
        "server_name": "istio-envoy",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s"
    });
    if let (Some(h), Value::Object(n)) = (hcm.as_object_mut(), hcm_path_settings(&norm)) {
        h.extend(n);
    }
    filters.push(json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": hcm
    }));
    json!(filters)
}

fn tcp_filters(spec: &InboundSpec, port: Option<u16>, tls: bool) -> Value {
    let cluster = cluster_for(port);
    let mut filters = Vec::new();
    if tls {
        filters.push(peer_principal_filter());
    }
    filters.extend(rbac_filters(spec, &spec.network_filters));
    filters.push(json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": cluster,
            "cluster": cluster,
            "access_log": access_logs(spec)
        }
    }));
    json!(filters)
}

/// One filter chain option: which transport it matches, whether it
/// terminates mTLS, which ALPN values select it.
struct ChainOption {
    transport: &'static str,
    alpns: &'static [&'static str],
    terminate_tls: bool,
}

fn chain_options(mode: MtlsMode, protocol: AppProtocol) -> Vec<ChainOption> {
    let tls = |alpns, terminate_tls| ChainOption {
        transport: "tls",
        alpns,
        terminate_tls,
    };
    let raw = ChainOption {
        transport: "raw_buffer",
        alpns: &[],
        terminate_tls: false,
    };
    match (mode, protocol) {
        (MtlsMode::Strict, _) => vec![tls(&[], true)],
        (MtlsMode::Permissive, AppProtocol::Http) => vec![tls(&ISTIO_MTLS_ALPNS, true), raw],
        (MtlsMode::Permissive, AppProtocol::Tcp) => {
            vec![tls(&ISTIO_MTLS_ALPNS, true), tls(&[], false), raw]
        }
        (MtlsMode::Disable, _) => vec![raw],
    }
}

/// The chains of one application port (`Some`) or of the passthrough (`None`).
fn filter_chains(
    spec: &InboundSpec,
    port: Option<u16>,
    protocol: AppProtocol,
    mode: MtlsMode,
) -> Vec<Value> {
    chain_options(mode, protocol)
        .into_iter()
        .map(|o| {
            let mut m = json!({"transport_protocol": o.transport});
            if let Some(p) = port {
                m["destination_port"] = json!(p);
            }
            if !o.alpns.is_empty() {
                m["application_protocols"] = json!(o.alpns);
            }
            let filters = match protocol {
                AppProtocol::Http => http_connection_manager(spec, port, o.terminate_tls),
                AppProtocol::Tcp => tcp_filters(spec, port, o.terminate_tls),
            };
            let mut chain = json!({
                "name": port.map_or_else(|| PASSTHROUGH_CHAIN.to_string(), |p| format!("0.0.0.0_{p}")),
                "filter_chain_match": m,
                "filters": filters
            });
            if o.terminate_tls {
                chain["transport_socket"] = downstream_tls(spec, protocol);
            }
            chain
        })
        .collect()
}

fn port_predicate(ports: &[u16]) -> Value {
    let one = |p: u16| json!({"destination_port_range": {"start": p, "end": u32::from(p) + 1}});
    match ports {
        [p] => one(*p),
        _ => json!({"or_match": {"rules": ports.iter().map(|&p| one(p)).collect::<Vec<_>>()}}),
    }
}

fn validate(spec: &InboundSpec) -> Result<(), ListenerError> {
    let mut seen = BTreeSet::new();
    for p in &spec.ports {
        if p.port == 0 {
            return Err(ListenerError::ZeroPort);
        }
        if spec.bind_app_ports && p.port == spec.port {
            return Err(ListenerError::ListenerPort(p.port));
        }
        if !seen.insert(p.port) {
            return Err(ListenerError::DuplicatePort(p.port));
        }
    }
    Ok(())
}

/// The inbound listener (an Envoy `Listener` as JSON, for static resources or
/// an LDS file).
pub fn inbound_listener(spec: &InboundSpec) -> Result<Value, ListenerError> {
    validate(spec)?;
    let mut listener_filters = Vec::new();
    if spec.proxy_protocol {
        listener_filters.push(json!({
            "name": "envoy.filters.listener.proxy_protocol",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"}
        }));
    }
    let tls_ports: Vec<u16> = spec
        .ports
        .iter()
        .filter(|p| p.mtls != MtlsMode::Disable)
        .map(|p| p.port)
        .collect();
    let tls_passthrough = spec
        .passthrough
        .is_some_and(|p| p.mtls != MtlsMode::Disable);
    if tls_passthrough {
        // Any port may be the passthrough's: inspect every connection.
        listener_filters.push(json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }));
    } else if !tls_ports.is_empty() {
        listener_filters.push(json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
            "filter_disabled": {"not_match": port_predicate(&tls_ports)}
        }));
    }
    let mut chains: Vec<Value> = spec
        .ports
        .iter()
        .flat_map(|p| filter_chains(spec, Some(p.port), p.protocol, p.mtls))
        .collect();
    if let Some(pt) = spec.passthrough {
        chains.extend(filter_chains(spec, None, AppProtocol::Http, pt.mtls));
    }
    let mut listener = json!({
        "name": spec.name,
        "address": socket_address(spec.address, spec.port),
        "traffic_direction": "INBOUND",
        "continue_on_listener_filters_timeout": true,
        "listener_filters_timeout": "0s",
        "listener_filters": listener_filters,
        "filter_chains": chains,
        "access_log": listener_access_logs(spec)
    });
    if spec.bind_app_ports && !spec.ports.is_empty() {
        listener["additional_addresses"] = spec
            .ports
            .iter()
            .map(|p| json!({"address": socket_address(spec.address, p.port)}))
            .collect();
    }
    Ok(listener)
}

/// The inbound clusters the listener routes to: `inbound|PORT||`, one per
/// application port, and `InboundPassthroughCluster` with the passthrough,
/// STATIC to the application's address.
pub fn inbound_clusters(spec: &InboundSpec) -> Vec<Value> {
    let cluster = |name: String, upstream: SocketAddr| {
        let mut c = json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(upstream.ip(), upstream.port())}}]}]
            }
        });
        if let Some(ip) = spec.upstream_bind {
            c["upstream_bind_config"] =
                json!({"source_address": {"address": ip.to_string(), "port_value": 0}});
        }
        c
    };
    spec.ports
        .iter()
        .map(|p| cluster(inbound_cluster_name(p.port), p.upstream))
        .chain(
            spec.passthrough
                .map(|pt| cluster(PASSTHROUGH_CLUSTER.to_string(), pt.upstream)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ports: &[(u16, AppProtocol, MtlsMode)]) -> InboundSpec {
        let mut s = InboundSpec::new(
            "127.0.0.1".parse().unwrap(),
            15006,
            TlsFiles {
                cert_chain: "/c.pem".into(),
                private_key: "/k.pem".into(),
                ca: "/ca.pem".into(),
            },
        );
        s.ports = ports
            .iter()
            .map(|&(port, protocol, mtls)| InboundPort {
                port,
                protocol,
                mtls,
                upstream: SocketAddr::from(([127, 0, 0, 1], port + 1000)),
            })
            .collect();
        s
    }

    fn chains(l: &Value) -> &Vec<Value> {
        l["filter_chains"].as_array().unwrap()
    }

    #[test]
    fn strict_has_one_tls_chain_requiring_a_client_certificate() {
        let l = inbound_listener(&spec(&[(8080, AppProtocol::Http, MtlsMode::Strict)])).unwrap();
        let c = chains(&l);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["filter_chain_match"]["transport_protocol"], "tls");
        assert_eq!(c[0]["filter_chain_match"]["destination_port"], 8080);
        let tls = &c[0]["transport_socket"]["typed_config"];
        assert_eq!(tls["require_client_certificate"], true);
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            "/ca.pem"
        );
        let names: Vec<&str> = c[0]["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.network.set_filter_state",
                "envoy.filters.network.http_connection_manager"
            ]
        );
    }

    #[test]
    fn permissive_and_disable_chains() {
        let l = inbound_listener(&spec(&[
            (80, AppProtocol::Http, MtlsMode::Permissive),
            (81, AppProtocol::Tcp, MtlsMode::Permissive),
            (82, AppProtocol::Http, MtlsMode::Disable),
        ]))
        .unwrap();
        let c = chains(&l);
        let shape: Vec<(u64, &str, bool, bool)> = c
            .iter()
            .map(|c| {
                let m = &c["filter_chain_match"];
                (
                    m["destination_port"].as_u64().unwrap(),
                    m["transport_protocol"].as_str().unwrap(),
                    m.get("application_protocols").is_some(),
                    c.get("transport_socket").is_some(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (80, "tls", true, true),
                (80, "raw_buffer", false, false),
                (81, "tls", true, true),
                (81, "tls", false, false),
                (81, "raw_buffer", false, false),
                (82, "raw_buffer", false, false),
            ]
        );
        // The TLS inspector runs on the ports with TLS chains only.
        let lf = &l["listener_filters"][0];
        assert_eq!(lf["name"], "envoy.filters.listener.tls_inspector");
        assert_eq!(
            lf["filter_disabled"]["not_match"]["or_match"]["rules"][1]["destination_port_range"],
            json!({"start": 81, "end": 82})
        );
    }

    #[test]
    fn filters_are_placed_in_istio_order() {
        let mut s = spec(&[
            (80, AppProtocol::Http, MtlsMode::Disable),
            (81, AppProtocol::Tcp, MtlsMode::Disable),
        ]);
        s.http_filters = vec![json!({"name": "deny"}), json!({"name": "allow"})];
        s.network_filters = vec![json!({"name": "tcp-deny"})];
        s.access_log = AccessLog::File("/tmp/access.log".into());
        s.proxy_protocol = true;
        let l = inbound_listener(&s).unwrap();
        let c = chains(&l);
        let hcm = &c[0]["filters"][0]["typed_config"];
        let http: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(http, ["deny", "allow", "envoy.filters.http.router"]);
        assert_eq!(hcm["normalizePath"], true);
        assert_eq!(hcm["pathWithEscapedSlashesAction"], "KEEP_UNCHANGED");
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
            "inbound|80||"
        );
        let tcp: Vec<&str> = c[1]["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(tcp, ["tcp-deny", "envoy.filters.network.tcp_proxy"]);
        let fmt = &hcm["access_log"][0]["typed_config"]["log_format"]["text_format_source"]["inline_string"];
        assert_eq!(fmt, ISTIO_TEXT_ACCESS_LOG_FORMAT);
        // PROXY protocol first; no TLS inspector without TLS ports.
        let lf = l["listener_filters"].as_array().unwrap();
        assert_eq!(lf.len(), 1);
        assert_eq!(lf[0]["name"], "envoy.filters.listener.proxy_protocol");
    }

    #[test]
    fn clusters_and_errors() {
        let s = spec(&[(80, AppProtocol::Http, MtlsMode::Strict)]);
        let cl = inbound_clusters(&s);
        assert_eq!(cl[0]["name"], "inbound|80||");
        assert_eq!(
            cl[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            1080
        );
        let dup = spec(&[
            (80, AppProtocol::Http, MtlsMode::Strict),
            (80, AppProtocol::Tcp, MtlsMode::Strict),
        ]);
        assert_eq!(
            inbound_listener(&dup),
            Err(ListenerError::DuplicatePort(80))
        );
        let mut bind = spec(&[(15006, AppProtocol::Http, MtlsMode::Strict)]);
        bind.bind_app_ports = true;
        assert_eq!(
            inbound_listener(&bind),
            Err(ListenerError::ListenerPort(15006))
        );
    }

    #[test]
    fn meshsim_options_passthrough_stdout_pem_source_ip_bind() {
        let mut s = spec(&[(80, AppProtocol::Http, MtlsMode::Disable)]);
        s.tls = TlsMaterial::Pem(TlsPem {
            cert_chain: "CERT".into(),
            private_key: "KEY".into(),
            ca: "CA".into(),
        });
        s.passthrough = Some(Passthrough {
            mtls: MtlsMode::Permissive,
            upstream: SocketAddr::from(([127, 0, 0, 1], 9)),
        });
        s.access_log = AccessLog::Stdout;
        s.proxy_protocol = true;
        s.source_ip_from_proxy_protocol = true;
        s.upstream_bind = Some("127.0.0.6".parse().unwrap());
        s.http_filters = vec![
            json!({"rules": {"principals": [{"direct_remote_ip": {"address_prefix": "10.0.0.1"}}]}}),
        ];
        let l = inbound_listener(&s).unwrap();
        let c = chains(&l);
        let names: Vec<(&str, bool)> = c
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap(),
                    c["filter_chain_match"].get("destination_port").is_some(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("0.0.0.0_80", true),
                (PASSTHROUGH_CHAIN, false),
                (PASSTHROUGH_CHAIN, false)
            ]
        );
        // The TLS passthrough chain needs the inspector on every port.
        let lf = l["listener_filters"].as_array().unwrap();
        assert_eq!(lf[1]["name"], "envoy.filters.listener.tls_inspector");
        assert!(lf[1].get("filter_disabled").is_none());
        let tls = &c[1]["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            tls["tls_certificates"][0]["certificate_chain"]["inline_string"],
            "CERT"
        );
        assert_eq!(
            tls["validation_context"]["trusted_ca"]["inline_string"],
            "CA"
        );
        let hcm = &c[2]["filters"][0]["typed_config"];
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
            PASSTHROUGH_CLUSTER
        );
        assert_eq!(
            hcm["http_filters"][0]["rules"]["principals"][0],
            json!({"source_ip": {"address_prefix": "10.0.0.1"}})
        );
        assert_eq!(hcm["access_log"][0]["name"], "envoy.access_loggers.stdout");
        assert!(hcm["access_log"][0].get("filter").is_none());
        assert_eq!(
            l["access_log"][0]["filter"]["response_flag_filter"]["flags"],
            json!(["NR"])
        );
        let cl = inbound_clusters(&s);
        assert_eq!(cl[1]["name"], PASSTHROUGH_CLUSTER);
        assert_eq!(
            cl[0]["upstream_bind_config"]["source_address"]["address"],
            "127.0.0.6"
        );
        // Without the PROXY header the socket's peer is the source: unchanged.
        s.proxy_protocol = false;
        let l = inbound_listener(&s).unwrap();
        assert!(
            chains(&l)[0]["filters"][0]["typed_config"]["http_filters"][0]["rules"]["principals"]
                [0]
            .get("direct_remote_ip")
            .is_some()
        );
    }

    #[test]
    fn mesh_config_providers_give_ext_authz_upstreams() {
        use crate::istio::meshconfig::{extension_providers, translate_options};
        use crate::istio::rbac::http_filters;
        let p: AuthorizationPolicy = serde_yaml_ng::from_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c, namespace: ns}\nspec:\n  action: CUSTOM\n  provider: {name: sample}\n  rules: [{}]\n",
        )
        .unwrap();
        let mesh = "extensionProviders:\n- name: sample\n  envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: \"8000\"}\n";
        let opts = translate_options(extension_providers(mesh).unwrap(), [("foo", "ext-authz")]);
        let filters = http_filters([&p], &opts);
        let names: Vec<&str> = filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["envoy.filters.http.rbac", "envoy.filters.http.ext_authz"]
        );
        assert_eq!(
            ext_authz_upstreams(&filters),
            [ExtAuthzUpstream {
                cluster: "outbound|8000||ext-authz.foo.svc.cluster.local".into(),
                host: "ext-authz.foo.svc.cluster.local".into(),
                port: 8000,
                grpc: false,
            }]
        );
        // A provider the mesh config does not name: Istio's DENY rules, no upstream.
        let opts = translate_options(Vec::new(), [("foo", "ext-authz")]);
        let filters = http_filters([&p], &opts);
        assert!(ext_authz_upstreams(&filters).is_empty());
        assert_eq!(
            filters[0]["typedConfig"]["rules"]["action"], "DENY",
            "{filters:?}"
        );
        let ids: Vec<&String> = filters[0]["typedConfig"]["rules"]["policies"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            ids,
            ["istio-ext-authz-sample-ns[ns]-policy[c]-rule[0]-deny-due-to-bad-CUSTOM-action"]
        );
    }

    #[test]
    fn unreachable_ext_authz_names_each_custom_provider() {
        let p: AuthorizationPolicy = serde_yaml_ng::from_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c, namespace: ns}\nspec:\n  action: CUSTOM\n  provider: {name: opa}\n  rules: [{}]\n",
        )
        .unwrap();
        let opts = unreachable_ext_authz(&[p], "istio-system");
        assert_eq!(opts.extension_providers.len(), 1);
        assert_eq!(opts.extension_providers[0].name, "opa");
        assert_eq!(
            opts.services[0].hostname,
            "opa.istio-system.svc.cluster.local"
        );
    }
}
