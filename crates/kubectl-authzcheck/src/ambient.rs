//! Reading what an ambient pod's enforcement depends on: the Services of its
//! namespace, the Gateways (waypoints), the policies of waypoint namespaces,
//! and the Envoy of the waypoint its Services use.
//!
//! An ambient pod has no sidecar: ztunnel (one per node) enforces L4 policy
//! and a waypoint, an Envoy of its own, enforces the policies attached with
//! `targetRefs`. "What Envoy loaded" is then the waypoint's config, read
//! exactly as a sidecar's (istioctl or `pilot-agent request GET config_dump`
//! in its `istio-proxy` container). ztunnel's own configuration is not read.
//! The joining of these is pure (analyze, meshpolicy::ambient_audit); this
//! module only fetches.

use kubeplugin::{Kube, KubeFlags, PluginError};
use meshpolicy::ambient::WaypointUse;
use meshpolicy::ambient_audit::service_waypoint;

use crate::fetch::{self, AmbientData, NamespaceData, ProxyMode, ProxyOutcome};
use crate::proxy;

/// What the report says about ztunnel's own configuration.
pub const ZTUNNEL_CONFIG: &str = "not read (ztunnel's configuration is not Envoy's; `istioctl ztunnel-config policies` shows it): the ztunnel section is the API's policies as istiod translates them for ztunnel";

/// Services, Gateways, and the AuthorizationPolicies of waypoint namespaces
/// other than the pod's and the root namespace.
pub async fn gather(kube: &Kube, data: &NamespaceData) -> Result<AmbientData, PluginError> {
    let mut out = fetch::gather_ambient(kube, &data.namespace).await?;
    let root = data.cluster.options().root_namespace.clone();
    let labels = data.labels.clone().unwrap_or_default();
    let gateways = out.gateways.clone().unwrap_or_default();
    let mut extra: Vec<String> = out
        .services
        .iter()
        .filter_map(|s| match service_waypoint(s, &labels, &gateways) {
            WaypointUse::Uses { waypoint, .. } => Some(waypoint.namespace),
            _ => None,
        })
        .filter(|ns| *ns != data.namespace && *ns != root)
        .collect();
    extra.sort();
    extra.dedup();
    for ns in extra {
        out.waypoint_policies
            .extend(fetch::policies_of(kube, &ns).await?);
    }
    Ok(out)
}

/// The proxy view of an ambient pod: the Envoy of the first waypoint its
/// Services use, else an unavailable view saying what enforces what.
pub async fn proxy_view(
    kube: &Kube,
    flags: &KubeFlags,
    mode: &ProxyMode,
    data: &NamespaceData,
    ambient: &AmbientData,
    pod: &meshpolicy::Pod,
) -> ProxyOutcome {
    let labels = data.labels.clone().unwrap_or_default();
    let gateways = ambient.gateways.clone().unwrap_or_default();
    let waypoint = ambient
        .services
        .iter()
        .filter(|s| s.selects(pod))
        .find_map(|s| match service_waypoint(s, &labels, &gateways) {
            WaypointUse::Uses { waypoint, .. } => Some(waypoint),
            _ => None,
        });
    let Some(w) = waypoint else {
        return ProxyOutcome {
            view: proxy::unavailable(
                "ambient pod without a waypoint: no Envoy enforces policy for it (ztunnel enforces L4 policy; its configuration is not read)",
            ),
            findings: Vec::new(),
        };
    };
    let wp_pod = match fetch::waypoint_pod(kube, &w.namespace, &w.name).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return ProxyOutcome {
                view: proxy::unavailable(format!(
                    "waypoint {}/{} has no running pod (label {}={})",
                    w.namespace,
                    w.name,
                    fetch::GATEWAY_NAME_LABEL,
                    w.name
                )),
                findings: Vec::new(),
            };
        }
        Err(e) => {
            return ProxyOutcome {
                view: proxy::unavailable(format!(
                    "waypoint {}/{}'s pod could not be listed: {e}",
                    w.namespace, w.name
                )),
                findings: Vec::new(),
            };
        }
    };
    let mut out = fetch::proxy_view(kube, flags, mode, &wp_pod).await;
    out.view.detail = format!(
        "waypoint {}/{}, pod {}: {}",
        w.namespace,
        w.name,
        kubeplugin::resources::pod_name(&wp_pod),
        out.view.detail
    );
    out
}
