//! Istio's mesh config as istiod reads it, reduced to what decides a CUSTOM
//! policy's filters: the `extensionProviders` of kinds `envoyExtAuthzHttp`
//! and `envoyExtAuthzGrpc`.
//!
//! istiod reads MeshConfig from the ConfigMap `istio` in its namespace
//! (`istio-system`), key `mesh`, a YAML document in MeshConfig's protojson
//! field names (camelCase). A CUSTOM AuthorizationPolicy names one of these
//! providers; the translation ([`super::rbac`]) turns a known, valid one into
//! an ext_authz filter and an unknown or invalid one into DENY rules
//! (`-deny-due-to-bad-CUSTOM-action`), as Istio's builder does. The reading
//! lives here so the simulator and every plugin agree on it.
//!
//! protojson accepts a `uint32` written as a string, and the Istio docs write
//! `port: "8000"`: both forms are read. Providers of other kinds (tracing,
//! access logging...) are kept by name with no ext_authz settings, so a
//! CUSTOM policy naming one fails as with istiod.

use serde_json::Value;

use super::rbac::{MeshExtensionProvider, ServiceHost, TranslateOptions};

/// The namespace and ConfigMap istiod reads the mesh config from.
pub const MESH_CONFIGMAP_NAMESPACE: &str = "istio-system";
/// The ConfigMap's name.
pub const MESH_CONFIGMAP_NAME: &str = "istio";
/// The key holding the MeshConfig YAML.
pub const MESH_CONFIGMAP_KEY: &str = "mesh";

/// Why the mesh config could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshConfigError {
    #[error("mesh config is not YAML: {0}")]
    Yaml(String),
    #[error("mesh config extensionProviders[{index}]: {message}")]
    Provider { index: usize, message: String },
}

/// A protojson `uint32` given as a string (`"8000"`) becomes a number.
fn numeric_port(provider: &mut Value) {
    for kind in ["envoyExtAuthzHttp", "envoyExtAuthzGrpc"] {
        if let Some(port) = provider.get_mut(kind).and_then(|k| k.get_mut("port"))
            && let Some(n) = port.as_str().and_then(|s| s.trim().parse::<u32>().ok())
        {
            *port = Value::from(n);
        }
    }
}

/// The `extensionProviders` of a MeshConfig YAML document (the ConfigMap's
/// `mesh` value). An empty document or one without providers gives none.
pub fn extension_providers(mesh_yaml: &str) -> Result<Vec<MeshExtensionProvider>, MeshConfigError> {
    let doc: Value =
        serde_yaml_ng::from_str(mesh_yaml).map_err(|e| MeshConfigError::Yaml(e.to_string()))?;
    let Some(list) = doc.get("extensionProviders").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(index, p)| {
            let mut p = p.clone();
            numeric_port(&mut p);
            serde_json::from_value::<MeshExtensionProvider>(p).map_err(|e| {
                MeshConfigError::Provider {
                    index,
                    message: e.to_string(),
                }
            })
        })
        .collect()
}

/// Translation options for these providers with the registry's services
/// (`(namespace, name)` of every Service; hostnames `NAME.NS.svc.cluster.local`).
pub fn translate_options<'a>(
    providers: Vec<MeshExtensionProvider>,
    services: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> TranslateOptions {
    TranslateOptions {
        extension_providers: providers,
        services: services
            .into_iter()
            .map(|(ns, name)| ServiceHost {
                namespace: ns.to_string(),
                hostname: format!("{name}.{ns}.svc.cluster.local"),
            })
            .collect(),
        ..TranslateOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_http_and_grpc_providers_with_string_ports() {
        let yaml = r#"
accessLogFile: /dev/stdout
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    includeRequestHeadersInCheck: ["x-ext-authz"]
    headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
- name: sample-ext-authz-grpc
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 9000
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
"#;
        let p = extension_providers(yaml).unwrap();
        assert_eq!(p.len(), 3);
        let http = p[0].envoy_ext_authz_http.as_ref().unwrap();
        assert_eq!(http.port, 8000);
        assert_eq!(http.include_request_headers_in_check, ["x-ext-authz"]);
        assert_eq!(
            http.headers_to_upstream_on_allow,
            ["x-ext-authz-check-result"]
        );
        assert_eq!(p[1].envoy_ext_authz_grpc.as_ref().unwrap().port, 9000);
        assert!(p[2].envoy_ext_authz_http.is_none() && p[2].envoy_ext_authz_grpc.is_none());
        let opts = translate_options(p, [("foo", "ext-authz")]);
        assert_eq!(opts.services[0].hostname, "ext-authz.foo.svc.cluster.local");
    }

    #[test]
    fn empty_and_bad_documents() {
        assert_eq!(extension_providers("").unwrap(), Vec::new());
        assert_eq!(extension_providers("accessLogFile: x").unwrap(), Vec::new());
        assert!(matches!(
            extension_providers("extensionProviders: [{name: a, envoyExtAuthzHttp: {port: x}}]"),
            Err(MeshConfigError::Provider { index: 0, .. })
        ));
        assert!(matches!(
            extension_providers("a: [b"),
            Err(MeshConfigError::Yaml(_))
        ));
    }
}
