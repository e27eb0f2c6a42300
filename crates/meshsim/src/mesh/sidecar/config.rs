//! What one sidecar's Envoy is configured with: bootstrap, listeners (LDS)
//! and clusters, from the pod and the policies it has received.
//!
//! Everything that is Istio's rule (filter chains and TLS inspection, mTLS by
//! PeerAuthentication, the HTTP connection manager and its path
//! normalization, the RBAC filters in Istio's order, router, TCP ports with
//! network RBAC and `tcp_proxy`, the access log format) comes from
//! meshpolicy's translation ([`meshpolicy::istio::listener`] around
//! [`meshpolicy::istio::rbac`], the same the differential test checks against
//! real Envoy). This module only fills in meshsim's plumbing: the listener
//! on loopback (its port chosen by the kernel) fed through the PROXY protocol
//! (which gives Envoy the source pod's IP and the destination pod IP and port,
//! as iptables' redirect would), certificates inline, the application's
//! loopback ports, the access log to Envoy's stdout, the admin and the files.
//!
//! Listeners come through LDS from a file (`path_config_source`, replaced
//! when policies change); inbound clusters are static in the bootstrap, since
//! they never change while the pod lives and every file-based xDS source
//! costs an inotify instance (128 per user on most systems, shared by all
//! Envoys). The clusters of CUSTOM providers (which the mesh config and the
//! policies decide while the pod runs) come by REST CDS from meshsim
//! ([`super::cds`]), to where meshsim answers for the provider's service.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use meshpolicy::istio::listener::{
    AccessLog, AppProtocol, ExtAuthzUpstream, InboundPort, InboundSpec, Passthrough, TlsPem,
    ext_authz_upstreams, inbound_clusters, inbound_listener,
};
use meshpolicy::istio::rbac::{TranslateOptions, http_filters, network_filters};
use meshpolicy::peerauth::{self, PeerAuthentication};
use meshpolicy::{AuthorizationPolicy, Pod};
use serde_json::{Value, json};

use super::certs::Identity;
use super::spec::inbound_ports;
use meshpolicy::protocol::Stack;

use meshpolicy::workload::DEFAULT_ROOT_NAMESPACE as ROOT_NAMESPACE;

/// The name of the inbound listener.
pub use meshpolicy::istio::listener::VIRTUAL_INBOUND as INBOUND_LISTENER;

/// What one sidecar's configuration is made from.
#[derive(Debug, Clone)]
pub struct SidecarInput<'a> {
    /// The pod object.
    pub pod: &'a Value,
    /// The pod as the policy engine reads it (meshpolicy's model).
    pub model: &'a Pod,
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
    /// The mesh config's ext_authz providers and the registry's services
    /// (what CUSTOM policies' filters are built from).
    pub ext_authz: &'a TranslateOptions,
    /// The loopback port of meshsim's CDS server ([`super::cds`]); None: no
    /// dynamic clusters.
    pub xds_port: Option<u16>,
}

/// The documents Envoy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyConfig {
    pub bootstrap: Value,
    /// The listener resources (without the file's `version_info`).
    pub listeners: Vec<Value>,
    /// The clusters the listener's ext_authz filters call (to be served
    /// through CDS, see [`provider_cluster`]).
    pub ext_authz: Vec<ExtAuthzUpstream>,
}

/// The cluster `up` names, leading to `addr` (where meshsim answers for
/// the provider's service), HTTP/2 for a gRPC provider.
pub fn provider_cluster(up: &ExtAuthzUpstream, addr: SocketAddr) -> Value {
    let mut c = json!({
        "name": up.cluster,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": up.cluster,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": addr.ip().to_string(), "port_value": addr.port()}}}}]}]
        }
    });
    if up.grpc {
        c["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    c
}

/// The PeerAuthentications among store objects; one that Istio's validation
/// would refuse is left out, as the API server would not hold it.
pub fn peer_authentications(values: &[Arc<Value>]) -> Vec<PeerAuthentication> {
    values
        .iter()
        .filter_map(|p| {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
            PeerAuthentication::from_value(p, ns).ok()
        })
        .collect()
}

/// The CUSTOM providers of the mesh config istiod would read (ConfigMap
/// `istio` in `istio-system`, key `mesh`) with every Service of the store as
/// the registry. A mesh config that cannot be read gives no providers (istiod
/// would keep its last good one; a CUSTOM policy then fails closed).
pub fn ext_authz_options(store: &crate::store::Store) -> TranslateOptions {
    use meshpolicy::istio::meshconfig;
    let providers = store
        .get(
            crate::store::resources::CONFIGMAPS,
            meshconfig::MESH_CONFIGMAP_NAMESPACE,
            meshconfig::MESH_CONFIGMAP_NAME,
        )
        .and_then(|cm| cm["data"][meshconfig::MESH_CONFIGMAP_KEY].as_str())
        .map(|yaml| {
            meshconfig::extension_providers(yaml).unwrap_or_else(|e| {
                tracing::warn!("meshsim: {e}");
                Vec::new()
            })
        })
        .unwrap_or_default();
    let services: Vec<(&str, &str)> = store
        .list(crate::store::resources::SERVICES, None)
        .filter_map(|s| {
            Some((
                s["metadata"]["namespace"].as_str()?,
                s["metadata"]["name"].as_str()?,
            ))
        })
        .collect();
    meshconfig::translate_options(providers, services)
}

/// Port 9 (discard) on loopback: nothing listens there, so a connect is
/// refused (503 `UF`), as for a port of the pod nothing listens on.
const CLOSED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9);

/// The inbound listener's spec every proxy (a sidecar's, a waypoint's)
/// starts from: meshpolicy's Istio listener on loopback (its port chosen by
/// the kernel), fed through the PROXY protocol, with the workload's
/// certificate and the access log (when on) to Envoy's stdout.
pub(super) fn base_inbound(identity: &Identity, ca_pem: &str, access_log: bool) -> InboundSpec {
    let tls = TlsPem {
        cert_chain: identity.cert_pem.clone(),
        private_key: identity.key_pem.clone(),
        ca: ca_pem.to_string(),
    };
    let mut inbound = InboundSpec::new(Ipv4Addr::LOCALHOST.into(), 0, tls);
    inbound.proxy_protocol = true;
    inbound.source_ip_from_proxy_protocol = true;
    if access_log {
        inbound.access_log = AccessLog::Stdout;
    }
    inbound
}

/// The listener resource for `inbound` (its builder's checks cannot fail
/// for meshsim's specs: ports distinct and non-zero, nothing bound).
pub(super) fn listener_resource(inbound: &InboundSpec) -> Value {
    inbound_listener(inbound).map_or(Value::Null, |mut l| {
        l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
        l
    })
}

/// A proxy's bootstrap: its `node`, the admin on loopback, listeners through
/// LDS from `lds_path`, `clusters` static, and `cds` (the `cds_config`) when set.
pub(super) fn bootstrap(
    node: Value,
    lds_path: &Path,
    clusters: Vec<Value>,
    cds: Option<Value>,
) -> Value {
    let mut dynamic = json!({
        "lds_config": {"path_config_source": {"path": lds_path.to_string_lossy()}, "resource_api_version": "V3"}
    });
    if let Some(cds) = cds {
        dynamic["cds_config"] = cds;
    }
    json!({
        "node": node,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": dynamic,
        "static_resources": {"clusters": clusters},
        "overload_manager": {"resource_monitors": [{"name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 100000}}]}
    })
}

/// The inbound listener's spec for this sidecar, with meshsim's plumbing:
/// the application's loopback ports, reached from 127.0.0.6.
fn inbound_spec(input: &SidecarInput<'_>) -> InboundSpec {
    let mut inbound = base_inbound(input.identity, input.ca_pem, input.access_log);
    inbound.upstream_bind = Some(std::net::Ipv4Addr::new(127, 0, 0, 6).into());
    // CUSTOM policies as istiod builds them from the mesh config: an
    // ext_authz filter for a known provider, DENY rules for an unknown one.
    inbound.http_filters = http_filters(input.policies, input.ext_authz);
    inbound.network_filters = network_filters(input.policies, input.ext_authz);
    let model = input.model;
    let mut ports = inbound_ports(input.pod, &model.labels, input.services);
    for p in input.app_ports.keys() {
        ports.entry(*p).or_insert(Stack::Sniffed);
    }
    ports.remove(&0);
    // The mTLS mode of each port, by meshpolicy's rules (Istio's precedence).
    let peer_authentications = peer_authentications(input.peer_authentications);
    let mode = |port| {
        let (ns, labels) = (&model.namespace, &model.labels);
        peerauth::effective_mode(&peer_authentications, ns, labels, port, ROOT_NAMESPACE).mode
    };
    inbound.ports = ports
        .into_iter()
        .map(|(port, proto)| InboundPort {
            port,
            // Istio sniffs an undeclared protocol; meshsim's clients speak HTTP.
            protocol: if proto == Stack::Tcp {
                AppProtocol::Tcp
            } else {
                AppProtocol::Http
            },
            mtls: mode(port),
            upstream: input
                .app_ports
                .get(&port)
                .copied()
                .flatten()
                .map_or(CLOSED, |p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))),
        })
        .collect();
    // Ports nothing declares: to the same port of the pod, where nothing listens.
    inbound.passthrough = Some(Passthrough {
        mtls: mode(0),
        upstream: CLOSED,
    });
    inbound
}

/// The whole configuration of one sidecar's Envoy.
pub fn envoy_config(input: &SidecarInput<'_>) -> EnvoyConfig {
    let inbound = inbound_spec(input);
    let pod = input.model;
    let workload = pod.labels.get("app").unwrap_or(&pod.name);
    let mut ext_authz = ext_authz_upstreams(&inbound.http_filters);
    for up in ext_authz_upstreams(&inbound.network_filters) {
        if !ext_authz.iter().any(|u| u.cluster == up.cluster) {
            ext_authz.push(up);
        }
    }
    // The inbound clusters never change while the pod lives (its ports are
    // fixed), so they are static: a file-based CDS would cost each Envoy a
    // second inotify instance. CUSTOM providers' clusters come through REST
    // CDS from meshsim ([`super::cds`]).
    let mut clusters = inbound_clusters(&inbound);
    let cds = input.xds_port.map(|port| {
        let (cds, xds) = super::cds::bootstrap_parts(port);
        clusters.push(xds);
        cds
    });
    let (ns, name) = (&pod.namespace, &pod.name);
    let ip = pod.ip.map(|i| i.to_string()).unwrap_or_default();
    let node = json!({
        "id": format!("sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local"),
        "cluster": format!("{workload}.{ns}"),
        "metadata": {"NAME": name, "NAMESPACE": ns, "SERVICE_ACCOUNT": pod.service_account,
            "INSTANCE_IPS": ip, "LABELS": pod.labels, "WORKLOAD_NAME": workload, "MESH_ID": "cluster.local"}
    });
    let listener = listener_resource(&inbound);
    EnvoyConfig {
        bootstrap: bootstrap(node, input.lds_path, clusters, cds),
        listeners: vec![listener],
        ext_authz,
    }
}

/// A resource file for `path_config_source`.
pub fn resource_file(version: u64, resources: &[Value]) -> Value {
    json!({"version_info": version.to_string(), "resources": resources})
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshpolicy::istio::meshconfig::{extension_providers, translate_options};

    fn policy(provider: &str) -> AuthorizationPolicy {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: c, namespace: ns}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: [{{}}]\n"
        ))
        .unwrap()
    }

    fn config(policies: &[AuthorizationPolicy], opts: &TranslateOptions) -> EnvoyConfig {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80}]}, {"name": "istio-proxy"}]},
            "status": {"podIP": "10.0.0.1"}});
        let identity = Identity {
            spiffe: "spiffe://cluster.local/ns/ns/sa/default".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
            cert_der: Vec::new(),
            key_der: Vec::new(),
        };
        let app_ports = BTreeMap::from([(80, Some(8080))]);
        let model = Pod::from_k8s(&serde_json::from_value(pod.clone()).unwrap()).unwrap();
        envoy_config(&SidecarInput {
            pod: &pod,
            model: &model,
            services: &[],
            policies,
            peer_authentications: &[],
            app_ports: &app_ports,
            identity: &identity,
            ca_pem: "CA",
            access_log: true,
            lds_path: Path::new("/tmp/lds.json"),
            ext_authz: opts,
            xds_port: Some(4242),
        })
    }

    #[test]
    fn custom_providers_from_the_mesh_config_get_filters_and_named_clusters() {
        let mesh = "extensionProviders:\n- {name: h, envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: 8000}}\n- {name: g, envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000}}\n";
        let opts = translate_options(extension_providers(mesh).unwrap(), [("foo", "ext-authz")]);
        let cfg = config(&[policy("g")], &opts);
        assert_eq!(cfg.ext_authz.len(), 1);
        let up = &cfg.ext_authz[0];
        assert_eq!(up.cluster, "outbound|9000||ext-authz.foo.svc.cluster.local");
        assert!(up.grpc);
        let c = provider_cluster(up, SocketAddr::from(([127, 0, 0, 1], 5555)));
        assert_eq!(c["name"], up.cluster.as_str());
        assert!(
            c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                ["explicit_http_config"]
                .get("http2_protocol_options")
                .is_some()
        );
        // The bootstrap polls meshsim's CDS through its static cluster.
        let b = &cfg.bootstrap;
        assert_eq!(
            b["dynamic_resources"]["cds_config"]["api_config_source"]["api_type"],
            "REST"
        );
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        assert!(
            clusters
                .iter()
                .any(|c| c["name"] == super::super::cds::XDS_CLUSTER)
        );
        // An unknown provider: Istio's DENY rules and no cluster to call.
        let cfg = config(&[policy("nope")], &opts);
        assert!(cfg.ext_authz.is_empty());
        let text = cfg.listeners[0].to_string();
        assert!(text.contains("-deny-due-to-bad-CUSTOM-action"), "{text}");
    }
}
