//! How Istio sees a pod's inbound ports: the container ports (sidecar
//! excluded) with the protocol of the Service port that targets each one
//! (HTTP, TCP, or unknown so sniffed), which decides the kind of filter chain
//! the sidecar's listener gets for the port.

use std::collections::BTreeMap;

use meshpolicy::protocol::{PortProtocol, Stack};
use serde_json::Value;

/// The pod's inbound ports as Istio sees them: its containers' TCP ports
/// (the sidecar's excluded), each with the filters of the Service port that
/// targets it (meshpolicy's protocol selection; sniffed when none does).
/// `labels` are the pod's, `services` those of its namespace.
pub fn inbound_ports<'a>(
    pod: &Value,
    labels: &BTreeMap<String, String>,
    services: impl IntoIterator<Item = &'a Value>,
) -> BTreeMap<u16, Stack> {
    let mut named: BTreeMap<String, u16> = BTreeMap::new();
    let mut ports: BTreeMap<u16, Stack> = BTreeMap::new();
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
            ports.insert(n, Stack::Sniffed);
        }
    }
    for svc in services {
        let selector = svc["spec"]["selector"].as_object();
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            continue;
        };
        let selects = meshpolicy::Selector::from_json_labels(selector);
        if !selects.is_ok_and(|s| s.matches(labels)) {
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
            let name = sp["name"].as_str();
            let proto = PortProtocol::of_service_port(name, sp["appProtocol"].as_str());
            let slot = ports.entry(target).or_insert(Stack::Sniffed);
            if *slot == Stack::Sniffed {
                *slot = proto.stack();
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let labels = BTreeMap::from([("app".to_string(), "np-test-nginx-2".to_string())]);
        let ports = inbound_ports(&pod, &labels, [&svc]);
        assert_eq!(ports, BTreeMap::from([(80, Stack::Http)]));
        let ports = inbound_ports(&pod, &labels, []);
        assert_eq!(ports, BTreeMap::from([(80, Stack::Sniffed)]));
        let other =
            json!({"spec": {"selector": {"app": "x"}, "ports": [{"name": "tcp-db", "port": 80}]}});
        assert_eq!(inbound_ports(&pod, &labels, [&other])[&80], Stack::Sniffed);
    }
}
