//! Server-side printing: `meta.k8s.io/v1` `Table` responses, which is what
//! `kubectl get` asks for (`Accept: application/json;as=Table;...`). Columns
//! follow kubectl's usual ones per type (pods: NAME READY STATUS RESTARTS
//! AGE), with a generic NAME AGE for the rest.

use serde_json::{Value, json};

use crate::store::meta_str;
use crate::store::resources::{self, ResKey};

/// One printer column: its definition and how each row's cell is computed,
/// side by side so a column and its cells cannot drift apart.
struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
}

const fn column(
    name: &'static str,
    ty: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority,
        cell,
    }
}

/// A string column shown by default.
const fn text(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    column(name, "string", 0, cell)
}

/// A string column shown only with `-o wide`.
const fn wide(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    column(name, "string", 1, cell)
}

/// An integer column shown by default.
const fn int(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    column(name, "integer", 0, cell)
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    cell: |o| json!(meta_str(o, "name")),
};
const AGE: Column = text("Age", |o| json!(age(o)));

/// `obj[a][b]` as a string, or `default`.
fn str_at(obj: &Value, a: &str, b: &str, default: &str) -> Value {
    json!(obj[a][b].as_str().unwrap_or(default))
}

/// `obj[a][b]` as an integer, or `default`.
fn int_at(obj: &Value, a: &str, b: &str, default: i64) -> Value {
    json!(obj[a][b].as_i64().unwrap_or(default))
}

const POD_COLUMNS: &[Column] = &[
    NAME,
    text("Ready", |p| {
        let ready = container_statuses(p).filter(|c| c["ready"] == true).count();
        let total = p["spec"]["containers"].as_array().map_or(0, Vec::len);
        json!(format!("{ready}/{total}"))
    }),
    text("Status", |p| json!(pod_status(p))),
    text("Restarts", |p| {
        let restarts: i64 = container_statuses(p)
            .filter_map(|c| c["restartCount"].as_i64())
            .sum();
        json!(restarts.to_string())
    }),
    AGE,
    wide("IP", |p| str_at(p, "status", "podIP", "<none>")),
    wide("Node", |p| str_at(p, "spec", "nodeName", "<none>")),
    wide("Nominated Node", |_| json!("<none>")),
    wide("Readiness Gates", |_| json!("<none>")),
];
const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    text("Type", |s| s["spec"]["type"].clone()),
    text("Cluster-IP", |s| str_at(s, "spec", "clusterIP", "<none>")),
    text("External-IP", |_| json!("<none>")),
    text("Port(s)", |s| json!(port_list(s))),
    AGE,
    wide("Selector", |s| json!(map_string(&s["spec"]["selector"]))),
];
const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    text("Status", |n| str_at(n, "status", "phase", "Active")),
    AGE,
];
const CONTAINERS: Column = wide("Containers", |o| json!(template_containers(o, "name")));
const IMAGES: Column = wide("Images", |o| json!(template_containers(o, "image")));
const SELECTOR: Column = wide("Selector", |o| {
    json!(selector_string(&o["spec"]["selector"]))
});
const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    text("Ready", |d| {
        let ready = d["status"]["readyReplicas"].as_i64().unwrap_or(0);
        json!(format!(
            "{ready}/{}",
            d["spec"]["replicas"].as_i64().unwrap_or(1)
        ))
    }),
    int("Up-to-date", |d| int_at(d, "status", "updatedReplicas", 0)),
    int("Available", |d| int_at(d, "status", "availableReplicas", 0)),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    int("Desired", |r| int_at(r, "spec", "replicas", 1)),
    int("Current", |r| int_at(r, "status", "replicas", 0)),
    int("Ready", |r| int_at(r, "status", "readyReplicas", 0)),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const ENDPOINTS_COLUMNS: &[Column] =
    &[NAME, text("Endpoints", |e| json!(endpoints_string(e))), AGE];
const CONFIGMAP_COLUMNS: &[Column] = &[
    NAME,
    int("Data", |c| {
        let len = |f: &str| c[f].as_object().map_or(0, |m| m.len());
        json!(len("data") + len("binaryData"))
    }),
    AGE,
];
const SERVICEACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    int("Secrets", |s| {
        json!(s["secrets"].as_array().map_or(0, Vec::len))
    }),
    AGE,
];
const NETWORKPOLICY_COLUMNS: &[Column] = &[
    NAME,
    text("Pod-Selector", |n| {
        json!(selector_string(&n["spec"]["podSelector"]))
    }),
    AGE,
];
const AUTHORIZATIONPOLICY_COLUMNS: &[Column] = &[
    NAME,
    text("Action", |a| str_at(a, "spec", "action", "")),
    AGE,
];
const PEERAUTHENTICATION_COLUMNS: &[Column] = &[
    NAME,
    text("Mode", |p| {
        json!(p["spec"]["mtls"]["mode"].as_str().unwrap_or(""))
    }),
    AGE,
];
// The Gateway API CRDs' printer columns.
const GATEWAY_COLUMNS: &[Column] = &[
    NAME,
    text("Class", |g| str_at(g, "spec", "gatewayClassName", "")),
    text("Address", |g| {
        json!(g["status"]["addresses"][0]["value"].as_str().unwrap_or(""))
    }),
    text("Programmed", |g| json!(condition(g, "Programmed"))),
    AGE,
];
const GATEWAYCLASS_COLUMNS: &[Column] = &[
    NAME,
    text("Controller", |g| str_at(g, "spec", "controllerName", "")),
    text("Accepted", |g| json!(condition(g, "Accepted"))),
    AGE,
];

/// The printer columns of a resource type (kubectl's usual ones), NAME AGE
/// for the rest.
fn layout(key: ResKey) -> &'static [Column] {
    match key {
        resources::PODS => POD_COLUMNS,
        resources::SERVICES => SERVICE_COLUMNS,
        resources::NAMESPACES => NAMESPACE_COLUMNS,
        resources::DEPLOYMENTS => DEPLOYMENT_COLUMNS,
        resources::REPLICASETS => REPLICASET_COLUMNS,
        resources::ENDPOINTS => ENDPOINTS_COLUMNS,
        resources::CONFIGMAPS => CONFIGMAP_COLUMNS,
        resources::SERVICEACCOUNTS => SERVICEACCOUNT_COLUMNS,
        resources::GATEWAYS => GATEWAY_COLUMNS,
        resources::GATEWAYCLASSES => GATEWAYCLASS_COLUMNS,
        // Served in more than one version or group-agnostic: by plural.
        ResKey {
            plural: "networkpolicies",
            ..
        } => NETWORKPOLICY_COLUMNS,
        ResKey {
            plural: "authorizationpolicies",
            ..
        } => AUTHORIZATIONPOLICY_COLUMNS,
        ResKey {
            plural: "peerauthentications",
            ..
        } => PEERAUTHENTICATION_COLUMNS,
        _ => &[NAME, AGE],
    }
}

/// Column definitions for a resource type.
pub fn columns(key: ResKey) -> Vec<Value> {
    layout(key)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format, "description": "", "priority": c.priority})
        })
        .collect()
}

/// The cells of one row.
pub fn cells(key: ResKey, obj: &Value) -> Vec<Value> {
    layout(key).iter().map(|c| (c.cell)(obj)).collect()
}

/// Kubernetes' HumanDuration for the AGE column.
pub fn human_duration(secs: i64) -> String {
    // `2m30s`, or `2m` when the smaller unit is zero.
    let pair = |big: i64, bu: &str, small: i64, su: &str| match small {
        0 => format!("{big}{bu}"),
        _ => format!("{big}{bu}{small}{su}"),
    };
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / 24 / 365);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => pair(m, "m", s % 60, "s"),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => pair(h, "h", m % 60, "m"),
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => pair(d, "d", h % 24, "h"),
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 => format!("{y}y{}d", d % 365),
        _ => format!("{y}y"),
    }
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
pub fn selector_string(sel: &Value) -> String {
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

/// The template's containers' `field`s (name or image), comma-separated.
fn template_containers(obj: &Value, field: &str) -> String {
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c[field].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn container_statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
}

/// The ENDPOINTS column: `IP:PORT` pairs, the first three and a count.
fn endpoints_string(ep: &Value) -> String {
    let mut eps = Vec::new();
    for s in ep["subsets"].as_array().into_iter().flatten() {
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
    if eps.is_empty() {
        "<none>".to_string()
    } else if eps.len() > 3 {
        format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
    } else {
        eps.join(",")
    }
}

/// The status of condition `t` (a Gateway's or GatewayClass's), or `Unknown`.
fn condition(obj: &Value, t: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == t)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown")
        .to_string()
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
) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": columns(key),
        "rows": objs.iter().map(|o| row(key, o, include)).collect::<Vec<_>>(),
    })
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
        assert_eq!(human_duration(3600 * 24 * 400), "400d");
        assert_eq!(human_duration(3600 * 24 * (365 * 3 + 5)), "3y5d");
        assert_eq!(human_duration(60 * 200), "3h20m");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn pod_status_init() {
        let p = json!({"status": {"phase": "Pending", "initContainerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]}, "metadata": {}});
        assert_eq!(pod_status(&p), "Init:0/1");
    }
}
