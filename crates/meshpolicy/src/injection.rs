//! Istio's sidecar-injection decision: whether a pod created in a namespace
//! gets an `istio-proxy` container.
//!
//! It exists so that meshsim (which injects when a pod is admitted) and the
//! plugins (which predict from workload templates, before any pod exists)
//! decide with one rule. The rule is Istio's as its default install
//! configures it: the injector's webhooks select pods by the namespace labels
//! `istio-injection` and `istio.io/rev` and by the pod label
//! `sidecar.istio.io/inject` (`false` keeps the webhook from being called at
//! all); once called, the injector skips host-network pods and the namespaces
//! it ignores (`kube-system`, `kube-public`), then reads the pod's
//! `sidecar.istio.io/inject` label, else the deprecated annotation of the same
//! name: empty or absent means "inject" under the default policy, a YAML true
//! (`y`, `yes`, `true`, `on`, any case) means inject, anything else means don't.
//! Not modelled: `neverInjectSelector`/`alwaysInjectSelector`, the
//! `enableNamespacesByDefault` and `policy: disabled` install options, and
//! revision names (any `istio.io/rev` is taken as an installed revision).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The pod label (and deprecated annotation) that asks for or refuses a sidecar.
pub const INJECT_KEY: &str = "sidecar.istio.io/inject";
/// The namespace label that turns injection on (`enabled`) or off (`disabled`).
pub const NAMESPACE_LABEL: &str = "istio-injection";
/// The namespace label naming the control-plane revision that injects.
pub const REVISION_LABEL: &str = "istio.io/rev";
/// Namespaces the injector never injects into.
pub const IGNORED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

/// What a pod says about injection, read from its metadata and spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodInjection {
    /// The `sidecar.istio.io/inject` label's value, when present.
    pub label: Option<String>,
    /// The deprecated `sidecar.istio.io/inject` annotation's value, when present.
    pub annotation: Option<String>,
    /// `spec.hostNetwork: true`: never injected.
    pub host_network: bool,
}

impl PodInjection {
    /// Reads the pod's label and annotation maps (either may be absent).
    pub fn new(
        labels: Option<&BTreeMap<String, String>>,
        annotations: Option<&BTreeMap<String, String>>,
        host_network: bool,
    ) -> Self {
        Self {
            label: labels.and_then(|l| l.get(INJECT_KEY)).cloned(),
            annotation: annotations.and_then(|a| a.get(INJECT_KEY)).cloned(),
            host_network,
        }
    }

    /// Whether Istio injects a sidecar into this pod when it is created in
    /// `namespace`, whose labels are `namespace_labels`.
    pub fn injected(&self, namespace: &str, namespace_labels: &BTreeMap<String, String>) -> bool {
        let label = self.label.as_deref();
        let webhook_called = match namespace_labels.get(NAMESPACE_LABEL).map(String::as_str) {
            Some("enabled") => label != Some("false"),
            // Neither webhook selects a namespace labelled with any other value.
            Some(_) => false,
            None if namespace_labels.contains_key(REVISION_LABEL) => label != Some("false"),
            None => label == Some("true"),
        };
        if !webhook_called || self.host_network || IGNORED_NAMESPACES.contains(&namespace) {
            return false;
        }
        match self.label.as_deref().or(self.annotation.as_deref()) {
            None | Some("") => true,
            Some(v) => matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "on"),
        }
    }
}

/// The namespace label the injector's webhooks read, as (key, value):
/// `istio-injection` when present (it wins over a revision label), else
/// `istio.io/rev`; `None` when the namespace has neither.
pub fn namespace_injection_label(
    namespace_labels: &BTreeMap<String, String>,
) -> Option<(&'static str, &str)> {
    [NAMESPACE_LABEL, REVISION_LABEL]
        .into_iter()
        .find_map(|k| namespace_labels.get(k).map(|v| (k, v.as_str())))
}

/// Whether a namespace's labels select it for injection by default (pods
/// without an opt-out get a sidecar).
pub fn namespace_injects(namespace_labels: &BTreeMap<String, String>) -> bool {
    match namespace_injection_label(namespace_labels) {
        Some((NAMESPACE_LABEL, v)) => v == "enabled",
        Some(_) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(label: Option<&str>, annotation: Option<&str>) -> PodInjection {
        PodInjection {
            label: label.map(str::to_string),
            annotation: annotation.map(str::to_string),
            host_network: false,
        }
    }

    #[test]
    fn namespace_label_injects_unless_the_pod_opts_out() {
        let ns = map(&[(NAMESPACE_LABEL, "enabled")]);
        assert!(pod(None, None).injected("shop", &ns));
        assert!(!pod(Some("false"), None).injected("shop", &ns));
        assert!(!pod(None, Some("false")).injected("shop", &ns));
        assert!(!pod(None, Some("off")).injected("shop", &ns));
        assert!(pod(None, Some("Yes")).injected("shop", &ns));
        // The label wins over the annotation.
        assert!(pod(Some("true"), Some("false")).injected("shop", &ns));
        assert!(!pod(Some("no"), Some("true")).injected("shop", &ns));
    }

    #[test]
    fn pod_label_alone_injects_only_where_the_namespace_is_unlabelled() {
        let none = BTreeMap::new();
        assert!(pod(Some("true"), None).injected("shop", &none));
        assert!(!pod(None, Some("true")).injected("shop", &none));
        assert!(!pod(None, None).injected("shop", &none));
        let disabled = map(&[(NAMESPACE_LABEL, "disabled")]);
        assert!(!pod(Some("true"), None).injected("shop", &disabled));
    }

    #[test]
    fn revision_label_injects_like_the_namespace_label() {
        let rev = map(&[(REVISION_LABEL, "canary")]);
        assert!(pod(None, None).injected("shop", &rev));
        assert!(!pod(Some("false"), None).injected("shop", &rev));
        assert!(namespace_injects(&rev));
        let both = map(&[(NAMESPACE_LABEL, "disabled"), (REVISION_LABEL, "canary")]);
        assert!(!namespace_injects(&both));
        assert!(!pod(None, None).injected("shop", &both));
        assert_eq!(
            namespace_injection_label(&rev),
            Some((REVISION_LABEL, "canary"))
        );
        assert_eq!(
            namespace_injection_label(&both),
            Some((NAMESPACE_LABEL, "disabled"))
        );
        assert_eq!(namespace_injection_label(&map(&[("app", "x")])), None);
    }

    #[test]
    fn host_network_and_ignored_namespaces_are_never_injected() {
        let ns = map(&[(NAMESPACE_LABEL, "enabled")]);
        let mut p = pod(Some("true"), None);
        assert!(!p.clone().injected("kube-system", &ns));
        p.host_network = true;
        assert!(!p.injected("shop", &ns));
    }
}
