//! Server-side printing: `meta.k8s.io/v1` `Table` responses, which is what
//! `kubectl get` asks for (`Accept: application/json;as=Table;...`). Columns
//! follow kubectl's usual ones per type (pods: NAME READY STATUS RESTARTS
//! AGE), with a generic NAME AGE for the rest.

use serde_json::{Value, json};

use crate::resources::{self, ResKey};
use crate::store::meta_str;

fn col(name: &str, ty: &str, format: &str, priority: u8) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

/// Column definitions for a resource type.
pub fn columns(key: ResKey) -> Vec<Value> {
    let name = col("Name", "string", "name", 0);
    let age = col("Age", "string", "", 0);
    match key {
        resources::PODS => vec![
            name,
            col("Ready", "string", "", 0),
            col("Status", "string", "", 0),
            col("Restarts", "string", "", 0),
            age,
            col("IP", "string", "", 1),
            col("Node", "string", "", 1),
            col("Nominated Node", "string", "", 1),
            col("Readiness Gates", "string", "", 1),
        ],
        resources::SERVICES => vec![
            name,
            col("Type", "string", "", 0),
            col("Cluster-IP", "string", "", 0),
            col("External-IP", "string", "", 0),
            col("Port(s)", "string", "", 0),
            age,
            col("Selector", "string", "", 1),
        ],
        resources::NAMESPACES => vec![name, col("Status", "string", "", 0), age],
        resources::DEPLOYMENTS => vec![
            name,
            col("Ready", "string", "", 0),
            col("Up-to-date", "integer", "", 0),
            col("Available", "integer", "", 0),
            age,
            col("Containers", "string", "", 1),
            col("Images", "string", "", 1),
            col("Selector", "string", "", 1),
        ],
        resources::REPLICASETS => vec![
            name,
            col("Desired", "integer", "", 0),
            col("Current", "integer", "", 0),
            col("Ready", "integer", "", 0),
            age,
            col("Containers", "string", "", 1),
            col("Images", "string", "", 1),
            col("Selector", "string", "", 1),
        ],
        resources::ENDPOINTS => vec![name, col("Endpoints", "string", "", 0), age],
        resources::CONFIGMAPS => vec![name, col("Data", "integer", "", 0), age],
        resources::SERVICEACCOUNTS => vec![name, col("Secrets", "integer", "", 0), age],
        ResKey {
            plural: "networkpolicies",
            ..
        } => vec![name, col("Pod-Selector", "string", "", 0), age],
        ResKey {
            plural: "authorizationpolicies",
            ..
        } => vec![name, col("Action", "string", "", 0), age],
        ResKey {
            plural: "peerauthentications",
            ..
        } => vec![name, col("Mode", "string", "", 0), age],
        // The Gateway API CRDs' printer columns.
        resources::GATEWAYS => vec![
            name,
            col("Class", "string", "", 0),
            col("Address", "string", "", 0),
            col("Programmed", "string", "", 0),
            age,
        ],
        resources::GATEWAYCLASSES => vec![
            name,
            col("Controller", "string", "", 0),
            col("Accepted", "string", "", 0),
            age,
        ],
        _ => vec![name, age],
    }
}

/// Kubernetes' HumanDuration for the AGE column.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let r = s % 60;
        return if r == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{r}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let r = m % 60;
        return if r == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{r}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let r = h % 24;
        return if r == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{r}h", h / 24)
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        return format!("{}y{}d", h / 24 / 365, (h / 24) % 365);
    }
    format!("{}y", h / 24 / 365)
}

fn age(obj: &Value) -> String {
    let ts = meta_str(obj, "creationTimestamp");
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// The STATUS column of a pod, as kubectl computes it.
pub fn pod_status(pod: &Value) -> String {
    if pod["metadata"].get("deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let st = &pod["status"];
    let mut reason = st["phase"].as_str().unwrap_or("Pending").to_string();
    if let Some(r) = st["reason"].as_str() {
        reason = r.to_string();
    }
    let inits = st["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, c) in inits.iter().enumerate() {
        if c["state"]
            .get("terminated")
            .is_some_and(|t| t["exitCode"] == 0)
        {
            continue;
        }
        if let Some(w) = c["state"]["waiting"]["reason"].as_str()
            && w != "PodInitializing"
        {
            return format!("Init:{w}");
        }
        return format!("Init:{}/{}", i, inits.len());
    }
    for c in st["containerStatuses"].as_array().into_iter().flatten() {
        if let Some(w) = c["state"]["waiting"]["reason"].as_str() {
            reason = w.to_string();
        } else if let Some(t) = c["state"]["terminated"].as_object() {
            reason = t
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("Error")
                .to_string();
        }
    }
    reason
}

fn port_list(svc: &Value) -> String {
    let ports: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn map_string(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// A `LabelSelector` in kubectl's string form (meshpolicy's rendering), as
/// kubectl's SELECTOR column shows it: `<none>` when empty, `<error>` when invalid.
fn selector_string(sel: &Value) -> String {
    if sel.is_null() {
        return "<none>".into();
    }
    let parsed = serde_json::from_value(sel.clone())
        .ok()
        .and_then(|s| meshpolicy::Selector::from_label_selector(&s).ok());
    match parsed {
        Some(s) if s.is_everything() => "<none>".into(),
        Some(s) => s.to_string(),
        None => "<error>".into(),
    }
}

fn containers_images(tpl_spec: &Value) -> (String, String) {
    let cs: Vec<&Value> = tpl_spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    (
        cs.iter()
            .filter_map(|c| c["name"].as_str())
            .collect::<Vec<_>>()
            .join(","),
        cs.iter()
            .filter_map(|c| c["image"].as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The cells of one row.
pub fn cells(key: ResKey, obj: &Value) -> Vec<Value> {
    let name = json!(meta_str(obj, "name"));
    let a = json!(age(obj));
    match key {
        resources::PODS => {
            let cs: Vec<&Value> = obj["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(obj)),
                json!(restarts.to_string()),
                a,
                json!(obj["status"]["podIP"].as_str().unwrap_or("<none>")),
                json!(obj["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        resources::SERVICES => vec![
            name,
            obj["spec"]["type"].clone(),
            json!(obj["spec"]["clusterIP"].as_str().unwrap_or("<none>")),
            json!("<none>"),
            json!(port_list(obj)),
            a,
            json!(map_string(&obj["spec"]["selector"])),
        ],
        resources::NAMESPACES => vec![
            name,
            json!(obj["status"]["phase"].as_str().unwrap_or("Active")),
            a,
        ],
        resources::DEPLOYMENTS => {
            let (c, i) = containers_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    obj["status"]["readyReplicas"].as_i64().unwrap_or(0),
                    obj["spec"]["replicas"].as_i64().unwrap_or(1)
                )),
                json!(obj["status"]["updatedReplicas"].as_i64().unwrap_or(0)),
                json!(obj["status"]["availableReplicas"].as_i64().unwrap_or(0)),
                a,
                json!(c),
                json!(i),
                json!(selector_string(&obj["spec"]["selector"])),
            ]
        }
        resources::REPLICASETS => {
            let (c, i) = containers_images(&obj["spec"]["template"]["spec"]);
            vec![
                name,
                json!(obj["spec"]["replicas"].as_i64().unwrap_or(1)),
                json!(obj["status"]["replicas"].as_i64().unwrap_or(0)),
                json!(obj["status"]["readyReplicas"].as_i64().unwrap_or(0)),
                a,
                json!(c),
                json!(i),
                json!(selector_string(&obj["spec"]["selector"])),
            ]
        }
        resources::ENDPOINTS => {
            let mut eps = Vec::new();
            for s in obj["subsets"].as_array().into_iter().flatten() {
                for addr in s["addresses"].as_array().into_iter().flatten() {
                    for p in s["ports"].as_array().into_iter().flatten() {
                        eps.push(format!(
                            "{}:{}",
                            addr["ip"].as_str().unwrap_or_default(),
                            p["port"]
                        ));
                    }
                }
            }
            let shown = if eps.is_empty() {
                "<none>".to_string()
            } else if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![name, json!(shown), a]
        }
        resources::CONFIGMAPS => {
            let n = obj["data"].as_object().map_or(0, |m| m.len())
                + obj["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), a]
        }
        resources::SERVICEACCOUNTS => vec![
            name,
            json!(obj["secrets"].as_array().map_or(0, Vec::len)),
            a,
        ],
        ResKey {
            plural: "networkpolicies",
            ..
        } => {
            vec![name, json!(selector_string(&obj["spec"]["podSelector"])), a]
        }
        ResKey {
            plural: "authorizationpolicies",
            ..
        } => {
            vec![name, json!(obj["spec"]["action"].as_str().unwrap_or("")), a]
        }
        ResKey {
            plural: "peerauthentications",
            ..
        } => {
            vec![
                name,
                json!(obj["spec"]["mtls"]["mode"].as_str().unwrap_or("")),
                a,
            ]
        }
        resources::GATEWAYS | resources::GATEWAYCLASSES => {
            let cond = |t: &str| {
                obj["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == t)
                    .and_then(|c| c["status"].as_str())
                    .unwrap_or("Unknown")
                    .to_string()
            };
            if key == resources::GATEWAYS {
                vec![
                    name,
                    json!(obj["spec"]["gatewayClassName"].as_str().unwrap_or("")),
                    json!(
                        obj["status"]["addresses"][0]["value"]
                            .as_str()
                            .unwrap_or("")
                    ),
                    json!(cond("Programmed")),
                    a,
                ]
            } else {
                vec![
                    name,
                    json!(obj["spec"]["controllerName"].as_str().unwrap_or("")),
                    json!(cond("Accepted")),
                    a,
                ]
            }
        }
        _ => vec![name, a],
    }
}

/// What a row's `object` field holds (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn row(key: ResKey, obj: &Value, include: IncludeObject) -> Value {
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"].clone(),
        }),
        IncludeObject::Object => obj.clone(),
    };
    json!({"cells": cells(key, obj), "object": object})
}

/// A full Table for a list of objects.
pub fn table(
    key: ResKey,
    objs: &[&Value],
    rv: &str,
    cont: Option<&str>,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let mut t = json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "rows": objs.iter().map(|o| row(key, o, include)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = json!(columns(key));
    } else {
        t["columnDefinitions"] = json!(null);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(3600 * 24 * 3 + 3600), "3d1h");
    }

    #[test]
    fn pod_status_init() {
        let p = json!({"status": {"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]}, "metadata": {}});
        assert_eq!(pod_status(&p), "Init:0/1");
    }
}
