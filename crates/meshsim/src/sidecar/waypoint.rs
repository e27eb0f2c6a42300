//! What a waypoint's Envoy is configured with: the same Istio inbound
//! listener as a sidecar's ([`meshpolicy::istio::listener`]), with the RBAC
//! filters of the AuthorizationPolicies attached to the waypoint
//! (meshpolicy::ambient::waypoint_policies), full L7.
//!
//! A waypoint only receives HBONE, always mTLS from the client's ztunnel (or
//! sidecar): its listener is one STRICT passthrough chain with the HTTP stack
//! (every destination port), whose upstream is meshsim's relay (the mesh's
//! `relay` module) playing the destination's ztunnel and application.
//! Like a sidecar's, the listener is fed through the PROXY protocol (the
//! client pod's IP, the Service's address and port) and comes through LDS
//! from a file; the one cluster (the relay) is static.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use meshpolicy::AuthorizationPolicy;
use meshpolicy::istio::listener::{
    AccessLog, InboundSpec, Passthrough, TlsPem, inbound_clusters, inbound_listener,
    unreachable_ext_authz,
};
use meshpolicy::istio::rbac::{http_filters, network_filters};
use meshpolicy::peerauth::MtlsMode;
use serde_json::{Value, json};

use super::certs::Identity;
use super::config::EnvoyConfig;

/// Istio's default root namespace.
const ROOT_NAMESPACE: &str = "istio-system";

/// What one waypoint's configuration is made from.
#[derive(Debug, Clone)]
pub struct WaypointInput<'a> {
    /// The waypoint's pod object.
    pub pod: &'a Value,
    /// The AuthorizationPolicies attached to the waypoint for the traffic at hand.
    pub policies: &'a [AuthorizationPolicy],
    /// The waypoint's certificate (its ServiceAccount's identity).
    pub identity: &'a Identity,
    /// The mesh CA (PEM).
    pub ca_pem: &'a str,
    /// Whether access logging is on (mesh config `accessLogFile`).
    pub access_log: bool,
    /// Where the LDS file is.
    pub lds_path: &'a Path,
    /// The relay behind the waypoint (loopback).
    pub relay: SocketAddr,
}

fn spec(input: &WaypointInput<'_>) -> InboundSpec {
    let tls = TlsPem {
        cert_chain: input.identity.cert_pem.clone(),
        private_key: input.identity.key_pem.clone(),
        ca: input.ca_pem.to_string(),
    };
    let mut inbound = InboundSpec::new(Ipv4Addr::LOCALHOST.into(), 0, tls);
    inbound.proxy_protocol = true;
    inbound.source_ip_from_proxy_protocol = true;
    if input.access_log {
        inbound.access_log = AccessLog::Stdout;
    }
    let opts = unreachable_ext_authz(input.policies, ROOT_NAMESPACE);
    inbound.http_filters = http_filters(input.policies, &opts);
    inbound.network_filters = network_filters(input.policies, &opts);
    inbound.passthrough = Some(Passthrough {
        mtls: MtlsMode::Strict,
        upstream: input.relay,
    });
    inbound
}

/// The whole configuration of one waypoint's Envoy.
pub fn waypoint_config(input: &WaypointInput<'_>) -> EnvoyConfig {
    let pod = input.pod;
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let ip = pod["status"]["podIP"].as_str().unwrap_or("");
    let gateway = pod["metadata"]["labels"][meshpolicy::ambient::GATEWAY_NAME_LABEL]
        .as_str()
        .unwrap_or(name);
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or(gateway);
    let inbound = spec(input);
    // No application ports: the builder's checks cannot fail.
    let listener = inbound_listener(&inbound).map_or(Value::Null, |mut l| {
        l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
        l
    });
    let bootstrap = json!({
        "node": {
            "id": format!("waypoint~{ip}~{name}.{ns}~{ns}.svc.cluster.local"),
            "cluster": format!("{sa}.{ns}"),
            "metadata": {"NAME": name, "NAMESPACE": ns, "SERVICE_ACCOUNT": sa,
                "INSTANCE_IPS": ip, "LABELS": pod["metadata"]["labels"], "WORKLOAD_NAME": gateway,
                "MESH_ID": "cluster.local"}
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "lds_config": {"path_config_source": {"path": input.lds_path.to_string_lossy()}, "resource_api_version": "V3"}
        },
        "static_resources": {"clusters": inbound_clusters(&inbound)},
        "overload_manager": {"resource_monitors": [{"name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 100000}}]}
    });
    EnvoyConfig {
        bootstrap,
        listeners: vec![listener],
        // CUSTOM providers are served to sidecars only: a waypoint's CUSTOM
        // policy fails closed (the unreachable ext_authz above).
        ext_authz: Vec::new(),
    }
}
