//! The Envoy `/config_dump` of a simulated sidecar.
//!
//! `istioctl x authz check`, `kubectl authzcheck` and people read a sidecar's
//! config dump to see which AuthorizationPolicies Envoy has loaded. meshsim
//! builds one shaped like Istio 1.25's: `configs[]` with Bootstrap, Clusters,
//! Listeners, Routes and Secrets dumps (`@type` URLs as Envoy prints them,
//! snake_case fields), and in the Listeners dump the inbound listener
//! `virtualInbound` (0.0.0.0:15006) with a filter chain per inbound port (TLS
//! and plaintext; HTTP connection manager for HTTP ports, TCP proxy for TCP
//! ports, both for ports whose protocol Istio would sniff), the catch-all
//! chains, and on every chain the RBAC filters of [`super::rbac_config`] for
//! the policies this sidecar has received. Outbound listeners are reduced to
//! `virtualOutbound`: nothing reads them for authorization.

use std::collections::BTreeMap;

use meshpolicy::AuthorizationPolicy;
use serde_json::{Value, json};

use super::rbac_config;

/// Istio's version the dump claims (the injected proxy image's).
pub const ISTIO_VERSION: &str = "1.25.0";

/// How Istio treats an inbound port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortProtocol {
    /// HTTP (Service port named `http*`/`grpc*` or appProtocol http): HTTP chains only.
    Http,
    /// Declared TCP-like protocol: TCP chains only.
    Tcp,
    /// Unknown: Istio sniffs, so both HTTP and TCP chains.
    Auto,
}

/// What the dump is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSpec {
    pub namespace: String,
    pub pod: String,
    pub pod_ip: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    /// Inbound ports (container ports), with the protocol Istio infers.
    pub ports: BTreeMap<u16, PortProtocol>,
}

fn protocol_of_name(name: &str, app_protocol: Option<&str>) -> PortProtocol {
    let p = app_protocol
        .unwrap_or_else(|| name.split('-').next().unwrap_or(name))
        .to_ascii_lowercase();
    match p.as_str() {
        "http" | "http2" | "grpc" | "grpc-web" | "h2c" => PortProtocol::Http,
        "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" => PortProtocol::Tcp,
        _ => PortProtocol::Auto,
    }
}

impl SidecarSpec {
    /// Reads a pod object (and the Services of its namespace) as Istio would
    /// see it: container ports (sidecar excluded), with the protocol of the
    /// Service port that targets each one.
    pub fn from_pod<'a>(pod: &Value, services: impl IntoIterator<Item = &'a Value>) -> Self {
        let labels: BTreeMap<String, String> = pod["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let mut named: BTreeMap<String, u16> = BTreeMap::new();
        let mut ports: BTreeMap<u16, PortProtocol> = BTreeMap::new();
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            if c["name"] == "istio-proxy" {
                continue;
            }
            for p in c["ports"].as_array().into_iter().flatten() {
                let Some(n) = p["containerPort"]
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                else {
                    continue;
                };
                if p["protocol"].as_str().is_some_and(|x| x != "TCP") {
                    continue;
                }
                if let Some(name) = p["name"].as_str() {
                    named.insert(name.to_string(), n);
                }
                ports.insert(n, PortProtocol::Auto);
            }
        }
        for svc in services {
            let selector = svc["spec"]["selector"].as_object();
            let Some(selector) = selector.filter(|s| !s.is_empty()) else {
                continue;
            };
            let selects = selector.iter().all(|(k, v)| {
                v.as_str()
                    .is_some_and(|v| labels.get(k).map(String::as_str) == Some(v))
            });
            if !selects {
                continue;
            }
            for sp in svc["spec"]["ports"].as_array().into_iter().flatten() {
                if sp["protocol"].as_str().is_some_and(|x| x != "TCP") {
                    continue;
                }
                let target = match &sp["targetPort"] {
                    Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                    Value::String(s) => named.get(s).copied().or_else(|| s.parse().ok()),
                    _ => sp["port"].as_u64().and_then(|n| u16::try_from(n).ok()),
                };
                let Some(target) = target else { continue };
                let proto = protocol_of_name(
                    sp["name"].as_str().unwrap_or_default(),
                    sp["appProtocol"].as_str(),
                );
                let slot = ports.entry(target).or_insert(PortProtocol::Auto);
                if *slot == PortProtocol::Auto {
                    *slot = proto;
                }
            }
        }
        SidecarSpec {
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            pod: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod_ip: pod["status"]["podIP"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            service_account: pod["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            labels,
            ports,
        }
    }
}

fn tls_socket() -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}], "set_node_on_first_message_only": true}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}}],
                "combined_validation_context": {
                    "default_validation_context": {},
                    "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}], "set_node_on_first_message_only": true}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}}
                }
            },
            "require_client_certificate": true
        }
    })
}

fn authn_filters() -> Vec<Value> {
    vec![
        json!({"name": "istio_authn", "typed_config": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct", "type_url": "type.googleapis.com/io.istio.network.authn.Config"}}),
        json!({"name": "istio.metadata_exchange", "typed_config": {"@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange", "protocol": "istio-peer-exchange"}}),
    ]
}

fn hcm(spec: &SidecarSpec, port: Option<u16>, rbac: &[Value]) -> Value {
    let (stat_prefix, route_name, cluster, vhost) = match port {
        Some(p) => (
            format!("inbound_0.0.0.0_{p}"),
            format!("inbound|{p}||"),
            format!("inbound|{p}||"),
            format!("inbound|http|{p}"),
        ),
        None => (
            "InboundPassthroughCluster".to_string(),
            "InboundPassthroughCluster".to_string(),
            "InboundPassthroughCluster".to_string(),
            "inbound|http|0".to_string(),
        ),
    };
    let mut http_filters = vec![json!({
        "name": "istio.metadata_exchange",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"vm_config": {"runtime": "envoy.wasm.runtime.null", "code": {"local": {"inline_string": "envoy.wasm.metadata_exchange"}}},
                "configuration": {"@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange"}}}
    })];
    http_filters.extend(rbac.iter().cloned());
    http_filters.extend([
        json!({"name": "envoy.filters.http.grpc_stats", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig", "emit_filter_state": true, "stats_for_all_methods": false}}),
        json!({"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}}),
        json!({"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}),
        json!({"name": "istio.stats", "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig", "disable_host_header_fallback": true}}),
        json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    ]);
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "route_config": {
                "name": route_name,
                "virtual_hosts": [{
                    "name": vhost,
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "route": {"cluster": cluster, "timeout": "0s", "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}},
                        "decorator": {"operation": format!(":{}/*", port.unwrap_or(0))},
                        "name": "default"
                    }]
                }],
                "validate_clusters": false
            },
            "http_filters": http_filters,
            "tracing": {"client_sampling": {"value": 100}, "random_sampling": {"value": 1}, "overall_sampling": {"value": 100},
                "custom_tags": [{"tag": "istio.canonical_service", "literal": {"value": spec.labels.get("app").cloned().unwrap_or_else(|| spec.pod.clone())}},
                    {"tag": "istio.mesh_id", "literal": {"value": "cluster.local"}},
                    {"tag": "istio.namespace", "literal": {"value": spec.namespace}}]},
            "server_name": "istio-envoy",
            "use_remote_address": false,
            "forward_client_cert_details": "APPEND_FORWARD",
            "set_current_client_cert_details": {"subject": true, "dns": true, "uri": true},
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "stream_idle_timeout": "0s",
            "normalize_path": true,
            "request_id_extension": {"typed_config": {"@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig", "use_request_id_for_trace_sampling": true}},
            "path_with_escaped_slashes_action": "KEEP_UNCHANGED"
        }
    })
}

fn tcp_filters(port: Option<u16>, rbac: &[Value]) -> Vec<Value> {
    let cluster = match port {
        Some(p) => format!("inbound|{p}||"),
        None => "InboundPassthroughCluster".to_string(),
    };
    let mut out = authn_filters();
    out.extend(rbac.iter().cloned());
    out.push(json!({"name": "istio.stats", "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig", "disable_host_header_fallback": true}}));
    out.push(json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": cluster, "cluster": cluster}}));
    out
}

fn chain(name: &str, chain_match: Value, filters: Vec<Value>, tls: bool) -> Value {
    let mut c = json!({"filter_chain_match": chain_match, "filters": filters});
    if let Some(obj) = c.as_object_mut() {
        if tls {
            obj.insert("transport_socket".into(), tls_socket());
        }
        obj.insert("name".into(), json!(name));
    }
    c
}

fn inbound_chains(spec: &SidecarSpec, http_rbac: &[Value], tcp_rbac: &[Value]) -> Vec<Value> {
    let any_prefix = json!([{"address_prefix": "0.0.0.0", "prefix_len": 0}]);
    let http = |port: Option<u16>| {
        let mut f = authn_filters();
        f.push(hcm(spec, port, http_rbac));
        f
    };
    let mut chains = vec![chain(
        "virtualInbound-blackhole",
        json!({"destination_port": 15006}),
        vec![
            json!({"name": "istio.metadata_exchange", "typed_config": {"@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange", "protocol": "istio-peer-exchange"}}),
            json!({"name": "istio.stats", "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig", "disable_host_header_fallback": true}}),
            json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "BlackHoleCluster", "cluster": "BlackHoleCluster"}}),
        ],
        false,
    )];
    // Catch-all chains for ports without a declared listener.
    chains.push(chain(
        "virtualInbound-catchall-http",
        json!({"prefix_ranges": any_prefix, "transport_protocol": "tls", "application_protocols": ["istio-http/1.0", "istio-http/1.1", "istio-h2"]}),
        http(None),
        true,
    ));
    chains.push(chain(
        "virtualInbound-catchall-http",
        json!({"prefix_ranges": any_prefix, "transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]}),
        http(None),
        false,
    ));
    chains.push(chain(
        "virtualInbound",
        json!({"prefix_ranges": any_prefix, "transport_protocol": "tls", "application_protocols": ["istio-peer-exchange", "istio"]}),
        tcp_filters(None, tcp_rbac),
        true,
    ));
    chains.push(chain(
        "virtualInbound",
        json!({"prefix_ranges": any_prefix, "transport_protocol": "raw_buffer"}),
        tcp_filters(None, tcp_rbac),
        false,
    ));
    chains.push(chain(
        "virtualInbound",
        json!({"prefix_ranges": any_prefix, "transport_protocol": "tls"}),
        tcp_filters(None, tcp_rbac),
        false,
    ));
    for (&port, &proto) in &spec.ports {
        let name = format!("0.0.0.0_{port}");
        if proto != PortProtocol::Tcp {
            let (tls_alpn, raw) = if proto == PortProtocol::Http {
                (
                    json!([
                        "istio",
                        "istio-peer-exchange",
                        "istio-http/1.0",
                        "istio-http/1.1",
                        "istio-h2"
                    ]),
                    json!({"destination_port": port, "transport_protocol": "raw_buffer"}),
                )
            } else {
                (
                    json!(["istio-http/1.0", "istio-http/1.1", "istio-h2"]),
                    json!({"destination_port": port, "transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]}),
                )
            };
            chains.push(chain(
                &name,
                json!({"destination_port": port, "transport_protocol": "tls", "application_protocols": tls_alpn}),
                http(Some(port)),
                true,
            ));
            chains.push(chain(&name, raw, http(Some(port)), false));
        }
        if proto != PortProtocol::Http {
            let tls_match = if proto == PortProtocol::Tcp {
                json!({"destination_port": port, "transport_protocol": "tls"})
            } else {
                json!({"destination_port": port, "transport_protocol": "tls", "application_protocols": ["istio-peer-exchange", "istio"]})
            };
            chains.push(chain(
                &name,
                tls_match,
                tcp_filters(Some(port), tcp_rbac),
                true,
            ));
            chains.push(chain(
                &name,
                json!({"destination_port": port, "transport_protocol": "raw_buffer"}),
                tcp_filters(Some(port), tcp_rbac),
                false,
            ));
        }
    }
    chains
}

fn listener_entry(name: &str, version: &str, updated: &str, listener: Value) -> Value {
    json!({"name": name, "active_state": {"version_info": version, "listener": listener, "last_updated": updated}})
}

/// The whole `/config_dump` for a sidecar that has received `policies` (those
/// that select it). `version` is the xDS version string Envoy shows
/// (`TIME/N`), `updated` the RFC 3339 time of the last update.
pub fn config_dump(
    spec: &SidecarSpec,
    policies: &[AuthorizationPolicy],
    version: &str,
    updated: &str,
) -> Value {
    let http_rbac = rbac_config::filters(policies, false);
    let tcp_rbac = rbac_config::filters(policies, true);
    let node_id = format!(
        "sidecar~{}~{}.{}~{}.svc.cluster.local",
        spec.pod_ip, spec.pod, spec.namespace, spec.namespace
    );
    let workload = spec
        .labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| spec.pod.clone());
    let bootstrap = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": {
            "node": {
                "id": node_id,
                "cluster": format!("{workload}.{}", spec.namespace),
                "metadata": {
                    "ISTIO_VERSION": ISTIO_VERSION,
                    "NAME": spec.pod,
                    "NAMESPACE": spec.namespace,
                    "SERVICE_ACCOUNT": spec.service_account,
                    "INSTANCE_IPS": spec.pod_ip,
                    "LABELS": spec.labels,
                    "CLUSTER_ID": "Kubernetes",
                    "MESH_ID": "cluster.local",
                    "WORKLOAD_NAME": workload,
                    "PROXY_CONFIG": {"binaryPath": "/usr/local/bin/envoy", "configPath": "./etc/istio/proxy", "discoveryAddress": "istiod.istio-system.svc:15012", "statusPort": 15020, "terminationDrainDuration": "5s"}
                },
                "user_agent_name": "envoy",
                "user_agent_build_version": {"version": {"major_number": 1, "minor_number": 33}, "metadata": {"build.type": "RELEASE", "revision.sha": "meshsim", "revision.status": "Clean", "ssl.version": "BoringSSL"}}
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}, "profile_path": "/var/lib/istio/data/envoy.prof"},
            "dynamic_resources": {"lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}, "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}, "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}], "set_node_on_first_message_only": true}}
        },
        "last_updated": updated
    });
    let mut inbound_clusters: Vec<Value> = spec
        .ports
        .keys()
        .map(|p| {
            json!({"version_info": version, "cluster": {
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": format!("inbound|{p}||"),
                "type": "ORIGINAL_DST",
                "connect_timeout": "10s",
                "lb_policy": "CLUSTER_PROVIDED",
                "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}
            }, "last_updated": updated})
        })
        .collect();
    for name in [
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "PassthroughCluster",
    ] {
        inbound_clusters.push(json!({"version_info": version, "cluster": {
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": name,
            "type": if name == "BlackHoleCluster" { "STATIC" } else { "ORIGINAL_DST" },
            "connect_timeout": "10s",
            "lb_policy": if name == "BlackHoleCluster" { "ROUND_ROBIN" } else { "CLUSTER_PROVIDED" }
        }, "last_updated": updated}));
    }
    let clusters = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        "version_info": version,
        "static_clusters": [
            {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "prometheus_stats", "type": "STATIC", "connect_timeout": "0.250s", "load_assignment": {"cluster_name": "prometheus_stats", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}}}]}]}}, "last_updated": updated},
            {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": "./etc/istio/proxy/XDS"}}}}]}]}}, "last_updated": updated}
        ],
        "dynamic_active_clusters": inbound_clusters
    });
    let virtual_inbound = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "virtualInbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
        "filter_chains": inbound_chains(spec, &http_rbac, &tcp_rbac),
        "listener_filters": [
            {"name": "envoy.filters.listener.original_dst", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}},
            {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}},
            {"name": "envoy.filters.listener.http_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}
        ],
        "listener_filters_timeout": "0s",
        "traffic_direction": "INBOUND",
        "continue_on_listener_filters_timeout": true
    });
    let virtual_outbound = json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "virtualOutbound",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
        "filter_chains": [
            {"filter_chain_match": {"destination_port": 15001}, "filters": [
                {"name": "istio.stats", "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig"}},
                {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "BlackHoleCluster", "cluster": "BlackHoleCluster"}}
            ], "name": "virtualOutbound-blackhole"},
            {"filters": [
                {"name": "istio.stats", "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig"}},
                {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "PassthroughCluster", "cluster": "PassthroughCluster"}}
            ], "name": "virtualOutbound-catchall-tcp"}
        ],
        "use_original_dst": true,
        "traffic_direction": "OUTBOUND"
    });
    let static_listener = |port: u16, name: &str, route: &str| {
        json!({"listener": {
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": route}, "route": {"cluster": name}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
            }}]}]
        }, "last_updated": updated})
    };
    let listeners = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
        "version_info": version,
        "static_listeners": [
            static_listener(15090, "prometheus_stats", "/stats/prometheus"),
            static_listener(15021, "agent", "/healthz/ready")
        ],
        "dynamic_listeners": [
            listener_entry("virtualOutbound", version, updated, virtual_outbound),
            listener_entry("virtualInbound", version, updated, virtual_inbound)
        ]
    });
    let routes = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        "static_route_configs": [],
        "dynamic_route_configs": []
    });
    let secrets = json!({
        "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        "dynamic_active_secrets": [
            {"name": "default", "version_info": updated, "last_updated": updated, "secret": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "name": "default", "tls_certificate": {"certificate_chain": {"inline_bytes": ""}, "private_key": {"inline_bytes": "W3JlZGFjdGVkXQ=="}}}},
            {"name": "ROOTCA", "version_info": updated, "last_updated": updated, "secret": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_bytes": ""}}}}
        ]
    });
    json!({"configs": [bootstrap, clusters, listeners, routes, secrets]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walkthrough_pod() -> (Value, Value) {
        let pod = json!({
            "metadata": {"name": "np-test-nginx-2-abc", "namespace": "np-test-2", "labels": {"app": "np-test-nginx-2"}},
            "spec": {"containers": [
                {"name": "np-test-nginx-2", "ports": [{"containerPort": 80, "name": "web"}]},
                {"name": "istio-proxy", "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}]}
            ]},
            "status": {"podIP": "10.244.0.7"}
        });
        let svc = json!({"spec": {"selector": {"app": "np-test-nginx-2"},
            "ports": [{"name": "http-web", "port": 80, "targetPort": 80}]}});
        (pod, svc)
    }

    #[test]
    fn ports_from_services() {
        let (pod, svc) = walkthrough_pod();
        let spec = SidecarSpec::from_pod(&pod, [&svc]);
        assert_eq!(spec.ports, BTreeMap::from([(80, PortProtocol::Http)]));
        let spec = SidecarSpec::from_pod(&pod, []);
        assert_eq!(spec.ports, BTreeMap::from([(80, PortProtocol::Auto)]));
        let other =
            json!({"spec": {"selector": {"app": "x"}, "ports": [{"name": "tcp-db", "port": 80}]}});
        let spec = SidecarSpec::from_pod(&pod, [&other]);
        assert_eq!(spec.ports[&80], PortProtocol::Auto);
    }

    #[test]
    fn walkthrough_dump_reads_as_istioctl_does() {
        let (pod, svc) = walkthrough_pod();
        let spec = SidecarSpec::from_pod(&pod, [&svc]);
        let empty = config_dump(&spec, &[], "2025-07-06T19:33:00Z/3", "2025-07-06T19:33:00Z");
        let report = meshpolicy::envoy::analyze_config_dump(empty.to_string().as_bytes()).unwrap();
        assert!(report.rows.is_empty());
        assert_eq!(report.rbac_filters, 0);

        let p: AuthorizationPolicy = serde_yaml_ng::from_str(
            "metadata: {name: deny-all-ingress-using-authorizationpolicy, namespace: np-test-2}\nspec: {action: DENY, rules: [{}]}",
        )
        .unwrap();
        let dump = config_dump(&spec, &[p], "v/4", "t");
        let report = meshpolicy::envoy::analyze_config_dump(dump.to_string().as_bytes()).unwrap();
        assert_eq!(
            report.render(),
            "ACTION   AuthorizationPolicy                                    RULES\nDENY     deny-all-ingress-using-authorizationpolicy.np-test-2   1\n"
        );
        // HTTP chains (2 catch-all + 2 for port 80) and TCP catch-alls (3) carry one filter each.
        assert_eq!(report.rbac_filters, 7);
    }
}
