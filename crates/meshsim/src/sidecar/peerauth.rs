//! PeerAuthentication: which mTLS mode a destination sidecar accepts on a port.
//!
//! meshpolicy models NetworkPolicy and AuthorizationPolicy but not
//! PeerAuthentication, which only the traffic simulation needs: a STRICT
//! destination resets plain-text connections (curl exit 56), and only mTLS
//! gives AuthorizationPolicy a source identity. Istio's precedence is
//! followed: a workload policy (with a selector) in the pod's namespace, then
//! the namespace-wide policy, then the mesh-wide one in the root namespace,
//! each level's `UNSET` inheriting from the next; `portLevelMtls` (workload
//! policies only) overrides per container port. With several candidates at
//! one level the oldest wins (creationTimestamp, then name). The default,
//! with no policy at all, is PERMISSIVE.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// The mTLS mode a sidecar enforces for inbound traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Accepts mTLS and plain text.
    Permissive,
    /// Accepts mTLS only: plain text connections are reset.
    Strict,
    /// Accepts plain text only: an mTLS handshake is cut.
    Disable,
}

fn parse_mode(v: &Value) -> Option<MtlsMode> {
    match v.as_str()? {
        "STRICT" => Some(MtlsMode::Strict),
        "PERMISSIVE" => Some(MtlsMode::Permissive),
        "DISABLE" => Some(MtlsMode::Disable),
        _ => None, // UNSET or unknown: inherit
    }
}

fn selector_matches(pa: &Value, labels: &BTreeMap<String, String>) -> Option<bool> {
    let ml = pa["spec"]["selector"]["matchLabels"].as_object()?;
    if ml.is_empty() {
        return None;
    }
    Some(ml.iter().all(|(k, v)| {
        v.as_str()
            .is_some_and(|v| labels.get(k).map(String::as_str) == Some(v))
    }))
}

fn oldest(mut v: Vec<&Value>) -> Option<&Value> {
    v.sort_by(|a, b| {
        let key = |x: &Value| {
            (
                x["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                x["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    v.first().copied()
}

/// The mode for `port` of a pod (namespace, labels), given the
/// PeerAuthentications its sidecar has received.
pub fn mtls_mode(
    policies: &[Arc<Value>],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
    root_namespace: &str,
) -> MtlsMode {
    let ns_of = |p: &Value| {
        p["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let workload = oldest(
        policies
            .iter()
            .map(Arc::as_ref)
            .filter(|p| ns_of(p) == namespace && selector_matches(p, labels) == Some(true))
            .collect(),
    );
    let ns_wide = oldest(
        policies
            .iter()
            .map(Arc::as_ref)
            .filter(|p| ns_of(p) == namespace && selector_matches(p, labels).is_none())
            .collect(),
    );
    let mesh = oldest(
        policies
            .iter()
            .map(Arc::as_ref)
            .filter(|p| ns_of(p) == root_namespace && selector_matches(p, labels).is_none())
            .collect(),
    );
    if let Some(w) = workload
        && let Some(levels) = w["spec"]["portLevelMtls"].as_object()
        && let Some(m) = levels
            .iter()
            .find(|(k, _)| k.parse::<u16>().ok() == Some(port))
            .and_then(|(_, v)| parse_mode(&v["mode"]))
    {
        return m;
    }
    [workload, ns_wide, mesh]
        .into_iter()
        .flatten()
        .find_map(|p| parse_mode(&p["spec"]["mtls"]["mode"]))
        .unwrap_or(MtlsMode::Permissive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), app.to_string())])
    }

    #[test]
    fn precedence_and_ports() {
        let ps = vec![
            Arc::new(
                json!({"metadata": {"name": "mesh", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}}),
            ),
            Arc::new(
                json!({"metadata": {"name": "ns", "namespace": "a"}, "spec": {"mtls": {"mode": "UNSET"}}}),
            ),
            Arc::new(
                json!({"metadata": {"name": "w", "namespace": "a"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "PERMISSIVE"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}),
            ),
        ];
        assert_eq!(
            mtls_mode(&ps, "a", &labels("db"), 80, "istio-system"),
            MtlsMode::Strict
        );
        assert_eq!(
            mtls_mode(&ps, "a", &labels("web"), 80, "istio-system"),
            MtlsMode::Permissive
        );
        assert_eq!(
            mtls_mode(&ps, "a", &labels("web"), 8080, "istio-system"),
            MtlsMode::Disable
        );
        assert_eq!(
            mtls_mode(&[], "a", &labels("web"), 80, "istio-system"),
            MtlsMode::Permissive
        );
        assert_eq!(
            mtls_mode(&ps[1..], "b", &labels("web"), 80, "istio-system"),
            MtlsMode::Permissive
        );
    }
}
