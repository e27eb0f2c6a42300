//! The clusters a sidecar gets after it started, served to its Envoy by
//! REST-JSON CDS polling, as istiod pushes outbound clusters.
//!
//! A CUSTOM policy's ext_authz filter calls Istio's outbound cluster of its
//! provider's service (`outbound|PORT||HOST`). Which providers exist depends
//! on the mesh config and the policies, both of which change while the
//! sidecar runs, so these clusters cannot be static in the bootstrap like the
//! inbound ones. A file-based CDS would cost every Envoy a second inotify
//! instance (see [`super::config`]); REST polling over loopback costs none.
//! One server per meshsim answers `POST /v3/discovery:clusters` with the
//! clusters last set for the asking sidecar (by its node metadata `NAMESPACE`
//! and `NAME`), and the version is a hash of them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::lock;

/// The static cluster every sidecar polls CDS through.
pub const XDS_CLUSTER: &str = "meshsim-xds";

/// How often Envoy asks for its clusters.
pub const REFRESH_DELAY: &str = "1s";

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// The dynamic clusters of every sidecar, and the server that hands them out.
#[derive(Debug, Default)]
pub struct Cds {
    clusters: Mutex<HashMap<(String, String), Vec<Value>>>,
    port: OnceLock<Option<u16>>,
}

impl Cds {
    /// Sets the clusters of the sidecar of `namespace/pod`.
    pub fn set(&self, namespace: &str, pod: &str, clusters: Vec<Value>) {
        lock(&self.clusters).insert((namespace.to_string(), pod.to_string()), clusters);
    }

    /// Forgets the sidecar of `namespace/pod`.
    pub fn remove(&self, namespace: &str, pod: &str) {
        lock(&self.clusters).remove(&(namespace.to_string(), pod.to_string()));
    }

    /// The DiscoveryResponse for the sidecar of `namespace/pod`.
    fn response(&self, namespace: &str, pod: &str) -> Value {
        let clusters = lock(&self.clusters)
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
            .unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&clusters)
            .unwrap_or_default()
            .hash(&mut h);
        let resources: Vec<Value> = clusters
            .into_iter()
            .map(|mut c| {
                c["@type"] = json!(CLUSTER_TYPE);
                c
            })
            .collect();
        json!({
            "version_info": format!("{:016x}", h.finish()),
            "type_url": CLUSTER_TYPE,
            "resources": resources
        })
    }

    /// The loopback port of the CDS server, started on first use (None when
    /// it cannot be: no runtime, no port). Stops with `stop`.
    pub fn port(self: &Arc<Self>, stop: &CancellationToken) -> Option<u16> {
        *self.port.get_or_init(|| match self.start(stop.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("meshsim: cannot serve sidecar clusters: {e}");
                None
            }
        })
    }

    fn start(self: &Arc<Self>, stop: CancellationToken) -> std::io::Result<u16> {
        let me = Arc::downgrade(self);
        let router = axum::Router::new().route(
            "/v3/discovery:clusters",
            axum::routing::post(move |body: Bytes| {
                let me = me.clone();
                async move {
                    let Some(cds) = me.upgrade() else {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    };
                    let Some((ns, pod)) = node_of(&body) else {
                        return StatusCode::BAD_REQUEST.into_response();
                    };
                    axum::Json(cds.response(&ns, &pod)).into_response()
                }
            }),
        );
        super::serve_router(router, stop)
    }
}

/// A string field of Envoy's compact JSON (`"KEY":"VALUE"`, no escapes in
/// VALUE), found without parsing the whole request.
fn compact_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let rest = &text[start..];
    let end = rest.find('"')?;
    let v = &rest[..end];
    (!v.contains('\\')).then_some(v)
}

/// The sidecar asking (its node metadata `NAMESPACE` and `NAME`). Each
/// request repeats Envoy's whole node (tens of KB with its extension list)
/// and sidecars ask every [`REFRESH_DELAY`]: the two fields are looked up
/// in the text, and the JSON parsed only when that fails.
fn node_of(body: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    if let (Some(ns), Some(pod)) = (
        compact_field(text, "NAMESPACE"),
        compact_field(text, "NAME"),
    ) {
        return Some((ns.to_string(), pod.to_string()));
    }
    let req: Value = serde_json::from_str(text).ok()?;
    let md = &req["node"]["metadata"];
    Some((
        md["NAMESPACE"].as_str()?.to_string(),
        md["NAME"].as_str()?.to_string(),
    ))
}

/// The bootstrap's `cds_config` polling the server on `port`, and the static
/// cluster leading there.
pub fn bootstrap_parts(port: u16) -> (Value, Value) {
    let config = json!({
        "resource_api_version": "V3",
        "initial_fetch_timeout": "5s",
        "api_config_source": {
            "api_type": "REST",
            "transport_api_version": "V3",
            "cluster_names": [XDS_CLUSTER],
            "refresh_delay": REFRESH_DELAY,
            "request_timeout": "5s"
        }
    });
    let cluster = json!({
        "name": XDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
        }
    });
    (config, cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asking_sidecar_is_read_from_its_node() {
        let compact = br#"{"version_info":"1","node":{"id":"sidecar~x","metadata":{"WORKLOAD_NAME":"w","NAME":"p-1","NAMESPACE":"ns"}}}"#;
        assert_eq!(node_of(compact), Some(("ns".into(), "p-1".into())));
        let spaced = br#"{"node": {"metadata": {"NAMESPACE": "ns", "NAME": "p-2"}}}"#;
        assert_eq!(node_of(spaced), Some(("ns".into(), "p-2".into())));
        assert_eq!(node_of(b"{}"), None);
        assert_eq!(node_of(b"\xff"), None);
    }

    #[test]
    fn response_carries_the_sidecars_clusters_and_a_version_that_follows_them() {
        let cds = Cds::default();
        let empty = cds.response("ns", "p");
        assert_eq!(empty["resources"], json!([]));
        cds.set(
            "ns",
            "p",
            vec![json!({"name": "outbound|8000||a.b.svc.cluster.local"})],
        );
        let r = cds.response("ns", "p");
        assert_eq!(r["resources"][0]["@type"], CLUSTER_TYPE);
        assert_ne!(r["version_info"], empty["version_info"]);
        assert_eq!(cds.response("ns", "p")["version_info"], r["version_info"]);
        cds.remove("ns", "p");
        assert_eq!(cds.response("ns", "p"), empty);
    }
}
