//! Istio's sidecar-injection decision: whether a pod created in a namespace
//! gets the istio-proxy sidecar. Its own module so the simulated API server's
//! admission (meshsim) and the policy model (template pods, namespaces) ask
//! one rule instead of each spelling its own.
//!
//! The rule, as Istio documents it ("Controlling the injection policy") and
//! its webhook applies it: the injector only sees pods its webhook selects,
//! which is a namespace labelled `istio-injection=enabled`, a namespace with
//! `istio.io/rev` and no `istio-injection` label, or a pod labelled
//! `sidecar.istio.io/inject=true` in a namespace without `istio-injection`
//! (a `false` pod label is never selected).
//! For a selected pod, the `sidecar.istio.io/inject` label, else the legacy
//! annotation of the same name, can still opt out; `y`, `yes`, `true` and
//! `on` (any case) mean yes, any other non-empty value no.

use std::collections::BTreeMap;

/// The pod label (and legacy annotation) that opts a pod in or out.
pub const INJECT_KEY: &str = "sidecar.istio.io/inject";
/// The namespace label that turns injection on (`enabled`) or off.
pub const NAMESPACE_LABEL: &str = "istio-injection";
/// The namespace label that names the control-plane revision injecting it.
pub const REVISION_LABEL: &str = "istio.io/rev";

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "on")
}

/// A pod's (or pod template's) own choice: its `sidecar.istio.io/inject`
/// label, else the annotation; None when neither says anything.
pub fn explicit(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<bool> {
    labels
        .get(INJECT_KEY)
        .or_else(|| annotations.get(INJECT_KEY))
        .filter(|v| !v.is_empty())
        .map(|v| truthy(v))
}

/// What a namespace's labels say for its pods: Some(true) for
/// `istio-injection=enabled` or (without that label) an `istio.io/rev`,
/// Some(false) for any other `istio-injection` value, None when silent.
pub fn namespace_default(ns_labels: &BTreeMap<String, String>) -> Option<bool> {
    match ns_labels.get(NAMESPACE_LABEL) {
        Some(v) => Some(v == "enabled"),
        None => ns_labels.contains_key(REVISION_LABEL).then_some(true),
    }
}

/// Whether Istio injects a sidecar into a pod with these labels and
/// annotations, created in a namespace with these labels.
pub fn injects(
    ns_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
    pod_annotations: &BTreeMap<String, String>,
) -> bool {
    // The webhooks' selectors match the label's exact text.
    let label = pod_labels.get(INJECT_KEY).map(String::as_str);
    let selected = match namespace_default(ns_labels) {
        Some(true) => label != Some("false"),
        Some(false) => false,
        None => label == Some("true"),
    };
    selected && explicit(pod_labels, pod_annotations) != Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespace_label_enables_and_pods_opt_out_by_label_or_annotation() {
        let ns = m(&[(NAMESPACE_LABEL, "enabled")]);
        let none = m(&[]);
        assert!(injects(&ns, &none, &none));
        assert!(!injects(&ns, &m(&[(INJECT_KEY, "false")]), &none));
        assert!(!injects(&ns, &none, &m(&[(INJECT_KEY, "false")])));
        // The label wins over the legacy annotation.
        assert!(injects(
            &ns,
            &m(&[(INJECT_KEY, "true")]),
            &m(&[(INJECT_KEY, "false")])
        ));
    }

    #[test]
    fn pod_label_alone_selects_only_where_the_namespace_is_silent() {
        let yes = m(&[(INJECT_KEY, "true")]);
        let none = m(&[]);
        assert!(injects(&none, &yes, &none));
        assert!(!injects(&m(&[(NAMESPACE_LABEL, "disabled")]), &yes, &none));
        // The annotation alone does not make the webhook see the pod.
        assert!(!injects(&none, &none, &yes));
        // The selectors match `true` exactly; the injector then reads `Yes` too.
        assert!(!injects(&none, &m(&[(INJECT_KEY, "Yes")]), &none));
        let ns = m(&[(NAMESPACE_LABEL, "enabled")]);
        assert!(!injects(&ns, &m(&[(INJECT_KEY, "no")]), &none));
        assert!(injects(&ns, &m(&[(INJECT_KEY, "")]), &none));
    }

    #[test]
    fn revision_label_enables_unless_injection_is_labelled_off() {
        let none = m(&[]);
        assert!(injects(&m(&[(REVISION_LABEL, "default")]), &none, &none));
        let off = m(&[(REVISION_LABEL, "default"), (NAMESPACE_LABEL, "disabled")]);
        assert!(!injects(&off, &none, &none));
        assert_eq!(namespace_default(&off), Some(false));
        assert_eq!(namespace_default(&none), None);
    }

    #[test]
    fn explicit_choice_reads_label_then_annotation() {
        let none = m(&[]);
        assert_eq!(explicit(&none, &none), None);
        assert_eq!(explicit(&m(&[(INJECT_KEY, "on")]), &none), Some(true));
        assert_eq!(explicit(&none, &m(&[(INJECT_KEY, "false")])), Some(false));
        assert_eq!(explicit(&m(&[(INJECT_KEY, "")]), &none), None);
    }
}
