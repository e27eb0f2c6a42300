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
//! - access logs (listener, HTTP connection manager, tcp_proxy) to a file in
//!   Istio's default TEXT format.
//!
//! Differences from istiod's listener, all chosen so upstream Envoy can run it:
//! - no `istio_authn` filter: a network `set_filter_state` filter sets
//!   `io.istio.peer_principal` from `%DOWNSTREAM_PEER_URI_SAN%` once the TLS
//!   handshake is done, which is what Istio's principal/namespace matchers read;
//!   RBAC's `authenticated` matchers read the certificate directly as in Istio;
//! - no metadata exchange (`istio.metadata_exchange`, peer metadata), no stats
//!   (`istio.stats`), no `grpc_stats`/fault/CORS filters, no tracing;
//! - no passthrough or blackhole chains: a port without a chain is closed;
//! - the listener binds an address (optionally every application port too, via
//!   `additional_addresses`) instead of capturing with iptables and
//!   `original_dst`; a PROXY protocol header can carry the original source and
//!   destination instead (`proxy_protocol`);
//! - certificates come from files instead of SDS, validated against one CA
//!   (no trust-domain aliases); inbound clusters are STATIC to the app's
//!   address instead of ORIGINAL_DST with a 127.0.0.6 upstream bind.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use serde_json::{Value, json};

use super::rbac::hcm_path_settings;
use crate::peerauth::MtlsMode;

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
    pub ports: Vec<InboundPort>,
    /// HTTP filters placed before the router (RBAC, ext_authz), in order.
    pub http_filters: Vec<Value>,
    /// Network filters placed before `tcp_proxy` on TCP ports, in order.
    pub network_filters: Vec<Value>,
    pub tls: TlsFiles,
    /// File the access log lines go to; `None`: no access log.
    pub access_log_path: Option<String>,
    pub path_normalization: PathNormalization,
}

impl InboundSpec {
    /// A spec with no ports or filters, Istio's defaults otherwise.
    pub fn new(address: IpAddr, port: u16, tls: TlsFiles) -> Self {
        Self {
            name: VIRTUAL_INBOUND.to_string(),
            address,
            port,
            bind_app_ports: false,
            proxy_protocol: false,
            ports: Vec::new(),
            http_filters: Vec::new(),
            network_filters: Vec::new(),
            tls,
            access_log_path: None,
            path_normalization: ISTIO_PATH_NORMALIZATION,
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

fn access_logs(spec: &InboundSpec) -> Vec<Value> {
    spec.access_log_path
        .as_deref()
        .map(file_access_log)
        .into_iter()
        .collect()
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
                    "certificate_chain": {"filename": spec.tls.cert_chain},
                    "private_key": {"filename": spec.tls.private_key}
                }],
                "validation_context": {"trusted_ca": {"filename": spec.tls.ca}}
            },
            "require_client_certificate": true
        }
    })
}

fn http_connection_manager(spec: &InboundSpec, p: &InboundPort, tls: bool) -> Value {
    let cluster = inbound_cluster_name(p.port);
    let mut http_filters = spec.http_filters.clone();
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    let norm = spec.path_normalization;
    let mut filters = Vec::new();
    if tls {
        filters.push(peer_principal_filter());
    }
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": format!("inbound_0.0.0.0_{}", p.port),
        "codec_type": "AUTO",
        "route_config": {
            "name": cluster,
            "validate_clusters": false,
            "virtual_hosts": [{
                "name": format!("inbound|http|{}", p.port),
                "domains": ["*"],
                "routes": [{
                    "name": "default",
                    "match": {"prefix": "/"},
                    "route": {
                        "cluster": cluster,
                        "timeout": "0s",
                        "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}
                    },
                    "decorator": {"operation": format!(":{}/*", p.port)}
                }]
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

fn tcp_filters(spec: &InboundSpec, p: &InboundPort, tls: bool) -> Value {
    let cluster = inbound_cluster_name(p.port);
    let mut filters = Vec::new();
    if tls {
        filters.push(peer_principal_filter());
    }
    filters.extend(spec.network_filters.iter().cloned());
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

fn filter_chains(spec: &InboundSpec, p: &InboundPort) -> Vec<Value> {
    chain_options(p.mtls, p.protocol)
        .into_iter()
        .map(|o| {
            let mut m = json!({
                "destination_port": p.port,
                "transport_protocol": o.transport
            });
            if !o.alpns.is_empty() {
                m["application_protocols"] = json!(o.alpns);
            }
            let filters = match p.protocol {
                AppProtocol::Http => http_connection_manager(spec, p, o.terminate_tls),
                AppProtocol::Tcp => tcp_filters(spec, p, o.terminate_tls),
            };
            let mut chain = json!({
                "name": format!("0.0.0.0_{}", p.port),
                "filter_chain_match": m,
                "filters": filters
            });
            if o.terminate_tls {
                chain["transport_socket"] = downstream_tls(spec, p.protocol);
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
    if !tls_ports.is_empty() {
        listener_filters.push(json!({
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
            "filter_disabled": {"not_match": port_predicate(&tls_ports)}
        }));
    }
    let mut listener = json!({
        "name": spec.name,
        "address": socket_address(spec.address, spec.port),
        "traffic_direction": "INBOUND",
        "continue_on_listener_filters_timeout": true,
        "listener_filters_timeout": "0s",
        "listener_filters": listener_filters,
        "filter_chains": spec.ports.iter().flat_map(|p| filter_chains(spec, p)).collect::<Vec<_>>(),
        "access_log": access_logs(spec)
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
/// application port, STATIC to the application's address.
pub fn inbound_clusters(spec: &InboundSpec) -> Vec<Value> {
    spec.ports
        .iter()
        .map(|p| {
            let name = inbound_cluster_name(p.port);
            json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "10s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(p.upstream.ip(), p.upstream.port())}}]}]
                }
            })
        })
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
        s.access_log_path = Some("/tmp/access.log".into());
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
}
