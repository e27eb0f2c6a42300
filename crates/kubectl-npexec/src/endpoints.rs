//! Whether a Service has a ready endpoint, read before probing: a request to
//! a Service with none ends in the sidecar's 503 `no healthy upstream` (or a
//! refused connection without a sidecar), which says nothing about policies,
//! so such a probe gets the verdict `no-endpoints` without running.
//!
//! The endpoints come from the Service's EndpointSlices (discovery.k8s.io/v1,
//! label `kubernetes.io/service-name`), an endpoint counting as ready unless
//! its `conditions.ready` is false, as kube-proxy reads them; a cluster that
//! does not serve EndpointSlices falls back to the core v1 Endpoints object.
//! When neither can be read the answer is "unknown" and the probe runs.

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kubeplugin::Kube;

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Ready endpoints in the slices of one Service.
pub fn ready_in_slices(slices: &[EndpointSlice]) -> usize {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count()
}

/// Ready addresses of a core v1 Endpoints object.
pub fn ready_in_endpoints(ep: &Endpoints) -> usize {
    ep.subsets
        .iter()
        .flatten()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum()
}

/// How many ready endpoints `namespace/service` has (None: unknown).
pub async fn ready_count(kube: &Kube, namespace: &str, service: &str) -> Option<usize> {
    let slices: Api<EndpointSlice> = Api::namespaced(kube.client.clone(), namespace);
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
    match slices.list(&lp).await {
        Ok(list) if !list.items.is_empty() => return Some(ready_in_slices(&list.items)),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "no EndpointSlices; reading Endpoints"),
    }
    let api: Api<Endpoints> = Api::namespaced(kube.client.clone(), namespace);
    match api.get(service).await {
        Ok(ep) => Some(ready_in_endpoints(&ep)),
        Err(kube::Error::Api(s)) if s.code == 404 => Some(0),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ready_endpoints_only() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "addressType": "IPv4",
            "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]}
            ]
        }))
        .unwrap();
        assert_eq!(ready_in_slices(&[slice]), 2);
        let ep: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.2"}]}]
        }))
        .unwrap();
        assert_eq!(ready_in_endpoints(&ep), 0);
    }
}
