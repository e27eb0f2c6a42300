//! What one sidecar's Envoy is configured with: bootstrap, listeners (LDS)
//! and clusters, from the pod and the policies it has received.
//!
//! Listeners come through LDS from a file (`path_config_source`, replaced
//! when policies change); clusters are static in the bootstrap, since they
//! never change while the pod lives and every file-based xDS source costs an
//! inotify instance (128 per user on most systems, shared by all Envoys).
//!
//! Everything is built by ONE function, [`envoy_config`], so that Istio's
//! own translation (meshpolicy's inbound listener and RBAC builders) can
//! replace its body when it exists. Until then the listener is a small
//! stand-in for Istio's `virtualInbound`: one listener on loopback (its port
//! chosen by the kernel) with the PROXY protocol listener filter (which
//! gives Envoy the source pod's IP and the destination pod IP and port, as
//! iptables' redirect would) and TLS inspection; per inbound port a TLS
//! chain (mTLS with this workload's certificate, client certificate
//! required) unless the port's PeerAuthentication is DISABLE and a plain
//! text chain unless it is STRICT; on each chain, for HTTP ports, an HTTP
//! connection manager (Istio's path normalization, `set_filter_state` of
//! `io.istio.peer_principal` from the peer certificate's URI SAN in place of
//! Istio's `istio_authn`, the RBAC filters of meshpolicy's Istio translation
//! (`meshpolicy::istio::rbac`, the same the differential test checks against
//! real Envoy), router), for TCP ports the network equivalents and `tcp_proxy`; Istio's
//! TEXT access log to Envoy's stdout. Clusters `inbound|PORT||` lead to the
//! application's loopback listener of that port, bound from 127.0.0.6 as
//! Istio's inbound clusters are.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use meshpolicy::AuthorizationPolicy;
use meshpolicy::istio::rbac::{
    ExtAuthzGrpcProvider, MeshExtensionProvider, ServiceHost, TranslateOptions, http_filters,
    network_filters,
};
use meshpolicy::peerauth::{self, MtlsMode, PeerAuthentication};
use serde_json::{Value, json};

use super::certs::Identity;
use super::spec::{PortProtocol, SidecarSpec};

/// Istio's default root namespace.
const ROOT_NAMESPACE: &str = "istio-system";

/// Istio's default TEXT access log format (`accessLogFormat` unset).
pub const ISTIO_TEXT_ACCESS_LOG: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// The name of the inbound listener.
pub const INBOUND_LISTENER: &str = "virtualInbound";

/// What one sidecar's configuration is made from.
#[derive(Debug, Clone)]
pub struct SidecarInput<'a> {
    /// The pod object.
    pub pod: &'a Value,
    /// The Services of the pod's namespace (port protocols).
    pub services: &'a [Value],
    /// AuthorizationPolicies the sidecar has received that select it.
    pub policies: &'a [AuthorizationPolicy],
    /// PeerAuthentications the sidecar has received.
    pub peer_authentications: &'a [Arc<Value>],
    /// Inbound port -> the application's loopback port (None: nothing listens).
    pub app_ports: &'a BTreeMap<u16, Option<u16>>,
    /// The workload's certificate.
    pub identity: &'a Identity,
    /// The mesh CA (PEM).
    pub ca_pem: &'a str,
    /// Whether access logging is on (mesh config `accessLogFile`).
    pub access_log: bool,
    /// Where the LDS file is.
    pub lds_path: &'a Path,
}

/// The three documents Envoy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyConfig {
    pub bootstrap: Value,
    /// The listener resources (without the file's `version_info`).
    pub listeners: Vec<Value>,
    /// The cluster resources (also in the bootstrap's static resources).
    pub clusters: Vec<Value>,
}

fn inline(s: &str) -> Value {
    json!({"inline_string": s})
}

fn stdout_log() -> Value {
    json!({"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": inline(ISTIO_TEXT_ACCESS_LOG)}
    }})
}

fn peer_principal_state(tcp: bool) -> Value {
    let value = json!({
        "object_key": "io.istio.peer_principal",
        "factory_key": "envoy.string",
        "format_string": {"text_format_source": inline("%DOWNSTREAM_PEER_URI_SAN%"), "omit_empty_values": true},
        "skip_if_empty": true
    });
    if tcp {
        json!({"name": "envoy.filters.network.set_filter_state", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config",
            "on_new_connection": [value]}})
    } else {
        json!({"name": "envoy.filters.http.set_filter_state", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [value]}})
    }
}

fn tls_socket(id: &Identity, ca_pem: &str) -> Value {
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
            "tls_certificates": [{"certificate_chain": inline(&id.cert_pem), "private_key": inline(&id.key_pem)}],
            "validation_context": {"trusted_ca": inline(ca_pem)}
        },
        "require_client_certificate": true
    }})
}

fn cluster_name(port: Option<u16>) -> String {
    port.map_or_else(
        || "InboundPassthroughCluster".to_string(),
        |p| format!("inbound|{p}||"),
    )
}

fn hcm(port: Option<u16>, rbac: &[Value], access_log: bool) -> Value {
    let cluster = cluster_name(port);
    let mut http_filters = vec![peer_principal_state(false)];
    http_filters.extend(rbac.iter().cloned());
    http_filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": port.map_or_else(|| "InboundPassthroughCluster".into(), |p| format!("inbound_0.0.0.0_{p}")),
        "route_config": {"name": cluster, "validate_clusters": false, "virtual_hosts": [{
            "name": format!("inbound|http|{}", port.unwrap_or(0)), "domains": ["*"],
            "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}]
        }]},
        "http_filters": http_filters,
        "server_name": "istio-envoy",
        "use_remote_address": false,
        "normalize_path": true,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"subject": true, "dns": true, "uri": true}
    });
    if access_log {
        typed["access_log"] = json!([stdout_log()]);
    }
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": typed})
}

fn tcp_filters(port: Option<u16>, rbac: &[Value], access_log: bool) -> Vec<Value> {
    let cluster = cluster_name(port);
    let mut out = vec![peer_principal_state(true)];
    out.extend(rbac.iter().cloned());
    let mut proxy = json!({"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": cluster, "cluster": cluster});
    if access_log {
        proxy["access_log"] = json!([stdout_log()]);
    }
    out.push(json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}));
    out
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name, "type": "STATIC", "connect_timeout": "10s",
        "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
    })
}

/// Istio matches `ipBlocks` (and `source.ip`) on `direct_remote_ip`: the
/// address of the socket's peer, which in a cluster is the source pod. Here
/// every connection comes from loopback and the source pod's address arrives
/// in the PROXY protocol header, which Envoy applies to the connection's
/// remote address (`source_ip` in RBAC) but not to its direct remote address.
/// So on this listener the same matchers read `source_ip`; `remote_ip`
/// (`remoteIpBlocks`, which also follows X-Forwarded-For) is left alone.
fn peer_from_proxy_protocol(filters: Vec<Value>) -> Vec<Value> {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(x) = map.remove("direct_remote_ip") {
                    map.insert("source_ip".into(), x);
                }
                if let Some(x) = map.remove("directRemoteIp") {
                    map.insert("sourceIp".into(), x);
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut filters = filters;
    filters.iter_mut().for_each(walk);
    filters
}

/// The mTLS mode of a pod's `port` under the PeerAuthentications its sidecar
/// has received, by meshpolicy's rules (Istio's precedence; one that Istio's
/// validation would refuse is left out, as the API server would not hold it).
fn mtls_mode(
    policies: &[Arc<Value>],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
    root_namespace: &str,
) -> MtlsMode {
    let parsed: Vec<PeerAuthentication> = policies
        .iter()
        .filter_map(|p| {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or(namespace);
            PeerAuthentication::from_value(p, ns).ok()
        })
        .collect();
    peerauth::effective_mode(&parsed, namespace, labels, port, root_namespace).mode
}

/// The RBAC and ext_authz filters Istio generates for these policies, from
/// meshpolicy's translation. meshsim runs no ext_authz server: each provider a
/// CUSTOM policy names is configured as a gRPC provider at
/// `NAME.istio-system.svc.cluster.local:9191`, a cluster this Envoy does not
/// have, so a request sent to it fails closed (403 `UAEX`), as with an
/// unreachable provider.
fn rbac_filters(policies: &[AuthorizationPolicy], tcp: bool) -> Vec<Value> {
    let providers: std::collections::BTreeSet<&str> = policies
        .iter()
        .filter(|p| p.action() == meshpolicy::Action::Custom)
        .filter_map(|p| p.spec.provider.as_ref().map(|x| x.name.as_str()))
        .collect();
    let host = |p: &str| format!("{p}.{ROOT_NAMESPACE}.svc.cluster.local");
    let opts = TranslateOptions {
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
                namespace: ROOT_NAMESPACE.to_string(),
                hostname: host(p),
            })
            .collect(),
        ..TranslateOptions::default()
    };
    if tcp {
        network_filters(policies, &opts)
    } else {
        http_filters(policies, &opts)
    }
}

/// Port 9 (discard) on loopback: nothing listens there, so a connect is refused.
const CLOSED_PORT: u16 = 9;

/// The whole configuration of one sidecar's Envoy.
pub fn envoy_config(input: &SidecarInput<'_>) -> EnvoyConfig {
    let pod = input.pod;
    let spec = SidecarSpec::from_pod(pod, input.services.iter());
    let labels = &spec.labels;
    let workload = labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| spec.pod.clone());
    let bootstrap = json!({
        "node": {
            "id": format!("sidecar~{}~{}.{}~{}.svc.cluster.local", spec.pod_ip, spec.pod, spec.namespace, spec.namespace),
            "cluster": format!("{workload}.{}", spec.namespace),
            "metadata": {"NAME": spec.pod, "NAMESPACE": spec.namespace, "SERVICE_ACCOUNT": spec.service_account,
                "INSTANCE_IPS": spec.pod_ip, "LABELS": labels, "WORKLOAD_NAME": workload, "MESH_ID": "cluster.local"}
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "lds_config": {"path_config_source": {"path": input.lds_path.to_string_lossy()}, "resource_api_version": "V3"}
        },
        "overload_manager": {"resource_monitors": [{"name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 100000}}]}
    });

    let http_rbac = peer_from_proxy_protocol(rbac_filters(input.policies, false));
    let tcp_rbac = peer_from_proxy_protocol(rbac_filters(input.policies, true));
    let mut ports: BTreeMap<u16, PortProtocol> = spec.ports.clone();
    for p in input.app_ports.keys() {
        ports.entry(*p).or_insert(PortProtocol::Auto);
    }
    let tls = tls_socket(input.identity, input.ca_pem);
    let mut chains = Vec::new();
    let mut clusters = Vec::new();
    for (&port, &proto) in &ports {
        let mode = mtls_mode(
            input.peer_authentications,
            &spec.namespace,
            labels,
            port,
            ROOT_NAMESPACE,
        );
        let filters = if proto == PortProtocol::Tcp {
            tcp_filters(Some(port), &tcp_rbac, input.access_log)
        } else {
            vec![hcm(Some(port), &http_rbac, input.access_log)]
        };
        let name = format!("0.0.0.0_{port}");
        if mode != MtlsMode::Disable {
            chains.push(json!({"name": name, "filter_chain_match": {"destination_port": port, "transport_protocol": "tls"},
                "filters": filters, "transport_socket": tls}));
        }
        if mode != MtlsMode::Strict {
            chains.push(json!({"name": name, "filter_chain_match": {"destination_port": port, "transport_protocol": "raw_buffer"},
                "filters": filters}));
        }
        let target = input
            .app_ports
            .get(&port)
            .copied()
            .flatten()
            .unwrap_or(CLOSED_PORT);
        clusters.push(static_cluster(&cluster_name(Some(port)), target));
    }
    // Ports nothing declares: Istio's passthrough chains, to the same port
    // of the pod, where nothing listens (a refused connect, 503 UF).
    let mode = mtls_mode(
        input.peer_authentications,
        &spec.namespace,
        labels,
        0,
        ROOT_NAMESPACE,
    );
    let filters = vec![hcm(None, &http_rbac, input.access_log)];
    if mode != MtlsMode::Disable {
        chains.push(json!({"name": "virtualInbound-catchall-http", "filter_chain_match": {"transport_protocol": "tls"},
            "filters": filters, "transport_socket": tls}));
    }
    if mode != MtlsMode::Strict {
        chains.push(json!({"name": "virtualInbound-catchall-http", "filter_chain_match": {"transport_protocol": "raw_buffer"},
            "filters": filters}));
    }
    clusters.push(static_cluster(&cluster_name(None), CLOSED_PORT));
    let mut listener = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": INBOUND_LISTENER,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "listener_filters": [
            {"name": "envoy.filters.listener.proxy_protocol", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"}},
            {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}
        ],
        "filter_chains": chains,
        "traffic_direction": "INBOUND"
    });
    if input.access_log {
        listener["access_log"] = json!([stdout_log()]);
    }
    // The clusters never change while the pod lives (its ports are fixed),
    // so they are static: a file-based CDS would cost each Envoy a second
    // inotify instance, of which a user has 128 on most Linux systems.
    let mut bootstrap = bootstrap;
    let statics: Vec<Value> = clusters
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if let Some(o) = c.as_object_mut() {
                o.remove("@type");
            }
            c
        })
        .collect();
    bootstrap["static_resources"] = json!({"clusters": statics});
    EnvoyConfig {
        bootstrap,
        listeners: vec![listener],
        clusters,
    }
}

/// A resource file for `path_config_source`.
pub fn resource_file(version: u64, resources: &[Value]) -> Value {
    json!({"version_info": version.to_string(), "resources": resources})
}
