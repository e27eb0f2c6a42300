//! Discovery and OpenAPI documents: `/version`, `/api`, `/apis`,
//! `/api/v1`, `/apis/GROUP[/VERSION]` in the legacy (non-aggregated) JSON
//! formats, and a minimal OpenAPI v3 per group-version. kubectl's
//! `apply`/`create` validation only needs each kind's PATCH operation to
//! declare the `fieldValidation` query parameter; then it leaves validation
//! to the server, which accepts the object as given.

use serde_json::{Value, json};

use crate::store::resources::{self, RESOURCES};

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-meshsim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]})
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0].clone()})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    resources::groups()
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(g, vs)| {
            let mut v = group_json(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if !resources::has_group_version(group, version) {
        return None;
    }
    let gv = resources::group_version(group, version);
    let mut out = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut v = json!({
            "name": r.plural, "singularName": r.singular(), "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS, "storageVersionHash": "meshsim0000=",
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if matches!(
            r.plural,
            "pods" | "services" | "deployments" | "replicasets"
        ) {
            v["categories"] = json!(["all"]);
        }
        if r.group == "security.istio.io" {
            v["categories"] = json!(["istio-io", "security-istio-io"]);
        }
        out.push(v);
        for sub in r.subresources {
            let (kind, verbs): (&str, &[&str]) = match *sub {
                "exec" => ("PodExecOptions", &["create", "get"]),
                "log" => ("Pod", &["get"]),
                "scale" => ("Scale", &["get", "patch", "update"]),
                "finalize" => (r.kind, &["update"]),
                _ => (r.kind, &["get", "patch", "update"]),
            };
            let mut s = json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
            if *sub == "scale" {
                s["group"] = json!("autoscaling");
                s["version"] = json!("v1");
            }
            out.push(s);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}

/// `api/v1` or `apis/GROUP/VERSION`.
fn gv_path(group: &str, version: &str) -> String {
    let root = if group.is_empty() { "api" } else { "apis" };
    format!("{root}/{}", resources::group_version(group, version))
}

/// `/openapi/v3`: the index of per group-version documents.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    let mut seen = Vec::new();
    for r in RESOURCES {
        let p = gv_path(r.group, r.version);
        if seen.contains(&p) {
            continue;
        }
        seen.push(p.clone());
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=MESHSIM{}", p.len())}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` etc.: PATCH operations that declare fieldValidation.
pub fn openapi_v3_doc(path: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut found = false;
    for r in RESOURCES {
        if gv_path(r.group, r.version) != path {
            continue;
        }
        found = true;
        let prefix = format!("/{path}");
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        let op = |action: &str| {
            json!({"operationId": format!("{action}{}", r.kind), "x-kubernetes-action": action,
                   "x-kubernetes-group-version-kind": gvk, "parameters": params,
                   "responses": {"200": {"description": "OK"}}})
        };
        paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    found.then(|| {
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0-meshsim"},
               "paths": paths, "components": {"schemas": {}}})
    })
}
