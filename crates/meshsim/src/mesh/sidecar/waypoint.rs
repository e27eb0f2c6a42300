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

use std::net::SocketAddr;
use std::path::Path;

use meshpolicy::AuthorizationPolicy;
use meshpolicy::istio::listener::{
    InboundSpec, Passthrough, inbound_clusters, unreachable_ext_authz,
};
use meshpolicy::istio::rbac::{http_filters, network_filters};
use meshpolicy::peerauth::MtlsMode;
use serde_json::{Value, json};

use super::certs::Identity;
use super::config::{EnvoyConfig, base_inbound, bootstrap, listener_resource};
use meshpolicy::workload::DEFAULT_ROOT_NAMESPACE as ROOT_NAMESPACE;

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
    let mut inbound = base_inbound(input.identity, input.ca_pem, input.access_log);
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
    let node = json!({
        "id": format!("waypoint~{ip}~{name}.{ns}~{ns}.svc.cluster.local"),
        "cluster": format!("{sa}.{ns}"),
        "metadata": {"NAME": name, "NAMESPACE": ns, "SERVICE_ACCOUNT": sa,
            "INSTANCE_IPS": ip, "LABELS": pod["metadata"]["labels"], "WORKLOAD_NAME": gateway,
            "MESH_ID": "cluster.local"}
    });
    EnvoyConfig {
        bootstrap: bootstrap(node, input.lds_path, inbound_clusters(&inbound), None),
        listeners: vec![listener_resource(&inbound)],
        // CUSTOM providers are served to sidecars only: a waypoint's CUSTOM
        // policy fails closed (the unreachable ext_authz above).
        ext_authz: Vec::new(),
    }
}
