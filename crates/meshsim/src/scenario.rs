//! Scenarios: plain Kubernetes YAML (multi-document files, or folders whose
//! `*.yaml`/`*.yml`/`*.json` files are applied in sorted order, not
//! recursively) loaded at start. Built-in kinds are type-checked against the
//! Kubernetes schema so that a malformed file fails with
//! `FILE doc N: FIELD: message`. Also `meshsim generate` for benchmarks.
//!
//! Simulation annotations (on pods or pod templates):
//! - `meshsim.dev/tools`: comma-separated executables every container has
//!   (`meshsim.dev/tools.CONTAINER` for one container; `meshsim.dev/tools.istio-proxy`
//!   without `pilot-agent` gives a sidecar whose image has no pilot-agent);
//! - `meshsim.dev/log.CONTAINER`: a file (relative to the scenario file)
//!   whose lines seed that container's log when it starts.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::store::Store;
use crate::store::resources;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} doc {doc}: {field}: {message}")]
    Invalid {
        path: String,
        doc: usize,
        field: String,
        message: String,
    },
}

/// One parsed document.
#[derive(Debug, Clone)]
pub struct Doc {
    pub path: String,
    pub index: usize,
    pub value: Value,
}

fn files_of(p: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let io = |source| ScenarioError::Io {
        path: p.display().to_string(),
        source,
    };
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| {
                f.is_file()
                    && f.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        v.sort();
        Ok(v)
    } else if p.exists() {
        Ok(vec![p.to_path_buf()])
    } else {
        Err(io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file or directory",
        )))
    }
}

fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), (String, String)> {
    serde_path_to_error::deserialize::<_, T>(v)
        .map(|_| ())
        .map_err(|e| {
            let path = e.path().to_string();
            (
                if path == "." { "(root)".into() } else { path },
                e.into_inner().to_string(),
            )
        })
}

fn validate(v: &Value) -> Result<(), (String, String)> {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, networking::v1 as net};
    if !v.is_object() {
        return Err(("(root)".into(), "expected a mapping".into()));
    }
    let api_version = v["apiVersion"]
        .as_str()
        .ok_or(("apiVersion".to_string(), "required string".to_string()))?;
    let kind = v["kind"]
        .as_str()
        .ok_or(("kind".to_string(), "required string".to_string()))?;
    if resources::find_kind(api_version, kind).is_none() {
        return Err((
            "kind".into(),
            format!("unsupported kind {kind:?} in {api_version:?}"),
        ));
    }
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err(("metadata.name".into(), "required".into()));
    }
    if !meshpolicy::names::is_dns_subdomain(name) {
        return Err((
            "metadata.name".into(),
            format!("{name:?} is not a lowercase RFC 1123 name"),
        ));
    }
    match kind {
        "Namespace" => check::<core::Namespace>(v),
        "Pod" => check::<core::Pod>(v),
        "Service" => check::<core::Service>(v),
        "Endpoints" => check::<core::Endpoints>(v),
        "ConfigMap" => check::<core::ConfigMap>(v),
        "ServiceAccount" => check::<core::ServiceAccount>(v),
        "Deployment" => check::<apps::Deployment>(v),
        "ReplicaSet" => check::<apps::ReplicaSet>(v),
        "NetworkPolicy" => check::<net::NetworkPolicy>(v),
        _ => {
            if !v["spec"].is_null() && !v["spec"].is_object() {
                return Err(("spec".into(), "expected a mapping".into()));
            }
            Ok(())
        }
    }
}

fn absolutize_log_paths(v: &mut Value, base: &Path) {
    for ptr in [
        "/metadata/annotations",
        "/spec/template/metadata/annotations",
    ] {
        if let Some(m) = v.pointer_mut(ptr).and_then(Value::as_object_mut) {
            for (k, val) in m.iter_mut() {
                if k.starts_with("meshsim.dev/log.")
                    && let Some(p) = val.as_str()
                {
                    let pb = Path::new(p);
                    if pb.is_relative() {
                        *val = json!(base.join(pb).display().to_string());
                    }
                }
            }
        }
    }
}

/// Read and validate every document of the given files/folders.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Doc>, ScenarioError> {
    let mut docs = Vec::new();
    for p in paths {
        for f in files_of(p)? {
            let path = f.display().to_string();
            let text = std::fs::read_to_string(&f).map_err(|source| ScenarioError::Io {
                path: path.clone(),
                source,
            })?;
            let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
            for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
                let index = i + 1;
                let value: Value =
                    serde::Deserialize::deserialize(de).map_err(|e| ScenarioError::Invalid {
                        path: path.clone(),
                        doc: index,
                        field: "(yaml)".into(),
                        message: e.to_string(),
                    })?;
                if value.is_null() {
                    continue;
                }
                if let Err((field, message)) = validate(&value) {
                    return Err(ScenarioError::Invalid {
                        path: path.clone(),
                        doc: index,
                        field,
                        message,
                    });
                }
                let mut value = value;
                absolutize_log_paths(&mut value, &base);
                docs.push(Doc {
                    path: path.clone(),
                    index,
                    value,
                });
            }
        }
    }
    Ok(docs)
}

/// Load scenarios into a store: namespaces first, then everything in order.
pub fn load_into(store: &mut Store, paths: &[PathBuf]) -> Result<(), ScenarioError> {
    let docs = read(paths)?;
    let (nss, rest): (Vec<&Doc>, Vec<&Doc>) =
        docs.iter().partition(|d| d.value["kind"] == "Namespace");
    let mut touched = Vec::new();
    for d in nss.into_iter().chain(rest) {
        let def = resources::find_kind(
            d.value["apiVersion"].as_str().unwrap_or_default(),
            d.value["kind"].as_str().unwrap_or_default(),
        )
        .ok_or_else(|| ScenarioError::Invalid {
            path: d.path.clone(),
            doc: d.index,
            field: "kind".into(),
            message: "unsupported".into(),
        })?;
        let ns = if def.namespaced {
            d.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        store
            .create(def, &ns, d.value.clone())
            .map_err(|e| ScenarioError::Invalid {
                path: d.path.clone(),
                doc: d.index,
                field: "metadata".into(),
                message: e.message.clone(),
            })?;
        if !touched.contains(&ns) {
            touched.push(ns);
        }
    }
    for ns in touched {
        store.reconcile(&ns);
    }
    Ok(())
}

/// Write a generated scenario: N namespaces, M pods each (one Deployment
/// and Service per namespace), K AuthorizationPolicies per namespace.
pub fn generate(
    dir: &Path,
    namespaces: usize,
    pods_per_namespace: usize,
    policies: usize,
) -> std::io::Result<()> {
    generate_with(dir, namespaces, pods_per_namespace, policies, false)
}

/// The ztunnel DaemonSet of examples/ambient (one source for both).
pub const ZTUNNEL_MANIFEST: &str = include_str!("../../../examples/ambient/01-ztunnel.yaml");

/// [`generate`]; with `ambient`, the namespaces are enrolled in ambient mode
/// (`istio.io/dataplane-mode=ambient`, no sidecars) and `istio-system.yaml`
/// holds the root namespace and the ztunnel DaemonSet.
pub fn generate_with(
    dir: &Path,
    namespaces: usize,
    pods_per_namespace: usize,
    policies: usize,
    ambient: bool,
) -> std::io::Result<()> {
    generate_ambient(
        dir,
        namespaces,
        pods_per_namespace,
        policies,
        ambient,
        false,
    )
}

/// A waypoint for namespace `ns`, as `istioctl waypoint generate` prints it.
fn waypoint_manifest(ns: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  labels:\n    istio.io/waypoint-for: service\n  name: waypoint\n  namespace: {ns}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n"
    )
}

/// [`generate_with`]; with `waypoint` (and `ambient`), every namespace also
/// gets a waypoint (`istioctl waypoint generate`'s Gateway) that its
/// Services use (`istio.io/use-waypoint: waypoint` on the namespace).
pub fn generate_ambient(
    dir: &Path,
    namespaces: usize,
    pods_per_namespace: usize,
    policies: usize,
    ambient: bool,
    waypoint: bool,
) -> std::io::Result<()> {
    let waypoint = waypoint && ambient;
    std::fs::create_dir_all(dir)?;
    if ambient {
        std::fs::write(
            dir.join("istio-system.yaml"),
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n---\n{ZTUNNEL_MANIFEST}"
            ),
        )?;
    }
    let enrol = match (ambient, waypoint) {
        (true, true) => "istio.io/dataplane-mode: ambient\n    istio.io/use-waypoint: waypoint",
        (true, false) => "istio.io/dataplane-mode: ambient",
        _ => "istio-injection: enabled",
    };
    for n in 0..namespaces {
        let ns = format!("gen-{n:04}");
        let mut docs = vec![
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    {enrol}\n"
            ),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: {ns}\nspec:\n  replicas: {pods_per_namespace}\n  selector:\n    matchLabels:\n      app: app\n  template:\n    metadata:\n      labels:\n        app: app\n    spec:\n      containers:\n      - name: app\n        image: nginx:latest\n        ports:\n        - containerPort: 80\n"
            ),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\n  namespace: {ns}\nspec:\n  selector:\n    app: app\n  ports:\n  - name: http\n    port: 80\n    targetPort: 80\n"
            ),
        ];
        if waypoint {
            docs.push(waypoint_manifest(&ns));
        }
        for k in 0..policies {
            docs.push(format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: policy-{k}\n  namespace: {ns}\nspec:\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        namespaces: [\"{ns}\"]\n"
            ));
        }
        std::fs::write(dir.join(format!("{ns}.yaml")), docs.join("---\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_ambient_enrols_namespaces_and_adds_ztunnel() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_with(dir.path(), 2, 1, 0, true).expect("generate");
        let docs = read(&[dir.path().to_path_buf()]).expect("read back");
        let text = format!("{docs:?}");
        assert!(text.contains("istio.io/dataplane-mode"), "{text}");
        assert!(!text.contains("istio-injection"), "{text}");
        assert!(
            text.contains("DaemonSet") && text.contains("ztunnel"),
            "{text}"
        );
    }

    #[test]
    fn generate_waypoint_adds_a_gateway_per_namespace_and_binds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_ambient(dir.path(), 2, 1, 0, true, true).expect("generate");
        let docs = read(&[dir.path().to_path_buf()]).expect("read back");
        let gateways = docs
            .iter()
            .filter(|d| d.value["kind"] == "Gateway")
            .filter(|d| d.value["spec"]["gatewayClassName"] == "istio-waypoint")
            .count();
        assert_eq!(gateways, 2);
        let bound = docs
            .iter()
            .filter(|d| d.value["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint")
            .count();
        assert_eq!(bound, 2);
    }
}
