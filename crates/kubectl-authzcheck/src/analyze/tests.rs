//! Findings on hand-built models: each test changes one fact and checks the
//! finding it must (and must not) produce.

use std::collections::{BTreeMap, HashMap};

use meshpolicy::{Cluster, ClusterOptions};

use super::*;
use crate::report::{AnonymousEntry, HiddenPolicy, ProxyRow};

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: np-test-2, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx-2, namespace: np-test-2, labels: {app: np-test-nginx-2}}
spec:
  containers: [{name: np-test-nginx-2, image: nginx}, {name: istio-proxy, image: proxyv2}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: np-test-2, labels: {app: plain}}
spec:
  containers: [{name: plain, image: nginx}]
"#;

const ALLOW_NOTHING: &str = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all-ingress, namespace: np-test-2}
spec: {}
"#;

const DENY_ALL: &str = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all-ingress-using-authorizationpolicy, namespace: np-test-2}
spec:
  action: DENY
  rules: [{}]
"#;

const NETPOL: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress-using-networkpolicy, namespace: np-test-2}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
"#;

fn model(extra: &str) -> Cluster {
    Cluster::from_manifests(&format!("{BASE}{extra}"), ClusterOptions::default()).unwrap()
}

fn labels(injection: bool) -> Option<BTreeMap<String, String>> {
    let mut l = BTreeMap::new();
    if injection {
        l.insert("istio-injection".to_string(), "enabled".to_string());
    }
    Some(l)
}

fn row(action: &str, policy: &str, ns: Option<&str>, rules: u32) -> ProxyRow {
    ProxyRow {
        action: action.into(),
        policy: policy.into(),
        namespace: ns.map(str::to_string),
        rules,
    }
}

fn view(rows: Vec<ProxyRow>) -> ProxyView {
    ProxyView {
        source: ProxySource::Istioctl,
        detail: "test".into(),
        rows,
        hidden: None,
        anonymous: Vec::new(),
    }
}

fn run_with(
    c: &Cluster,
    pod: &str,
    ages: &HashMap<(String, String), i64>,
    injection: bool,
    proxy: ProxyView,
) -> Report {
    let p = c.pod("np-test-2", pod).unwrap().clone();
    let ctx = PodContext {
        cluster: c,
        pod: &p,
        phase: "Running".into(),
        namespace_labels: labels(injection),
        ages,
        invalid: &[],
        ambient: Default::default(),
    };
    analyze(&ctx, proxy)
}

fn codes(r: &Report) -> Vec<(&str, Severity)> {
    r.findings
        .iter()
        .map(|f| (f.code.as_str(), f.severity))
        .collect()
}

fn has(r: &Report, code: &str) -> bool {
    r.findings.iter().any(|f| f.code == code)
}

#[test]
fn before_any_policy_nothing_is_isolated() {
    let c = model("");
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(vec![]));
    assert_eq!(
        r.network_isolation,
        Some(Isolation {
            ingress: false,
            egress: false
        })
    );
    assert!(r.authorization_policies.is_empty());
    assert_eq!(codes(&r), vec![("not-isolated", Severity::Info)]);
    assert_eq!(r.worst(), Some(Severity::Info));
}

#[test]
fn networkpolicy_isolates_and_reminds_to_probe() {
    let c = model(NETPOL);
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(vec![]));
    let iso = r.network_isolation.unwrap();
    assert!(iso.ingress && !iso.egress);
    assert_eq!(r.network_policies.len(), 1);
    assert_eq!(
        r.network_policies[0].ingress,
        vec!["ingress: denies all (no rules)"]
    );
    assert_eq!(
        r.network_policies[0].selects,
        "all pods in namespace np-test-2"
    );
    assert!(has(&r, "probe-netpol"));
    assert!(!has(&r, "not-isolated"));
}

#[test]
fn allow_nothing_is_explained_and_loaded() {
    let c = model(ALLOW_NOTHING);
    let rows = vec![row("ALLOW", "deny-all-ingress", Some("np-test-2"), 1)];
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(rows));
    let a = &r.authorization_policies[0];
    assert_eq!(a.action, "ALLOW");
    assert_eq!(a.rules, 0);
    assert_eq!(a.scope, "namespace");
    assert_eq!(a.loaded, Some(true));
    assert_eq!(
        a.meaning,
        "ALLOW with no rules: allows nothing, so every request is denied"
    );
    assert_eq!(
        a.envoy_names,
        vec!["ns[np-test-2]-policy[deny-all-ingress]-rule[0]"]
    );
    assert!(has(&r, "allow-nothing"));
    assert!(!has(&r, "not-loaded"), "{:?}", codes(&r));
    // Nothing can reach the pod: an error a script's --exit-code relies on.
    assert!(
        codes(&r).contains(&("denies-everything", Severity::Error)),
        "{:?}",
        codes(&r)
    );
    assert_eq!(r.worst(), Some(Severity::Error));
}

const ALLOW_SOME: &str = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: np-test-2}
spec:
  rules: [{to: [{operation: {methods: [GET]}}]}]
"#;

const DENY_SOME: &str = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: np-test-2}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [evil]}}]}]
"#;

const DRY_DENY_ALL: &str = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: try-deny
  namespace: np-test-2
  annotations: {istio.io/dry-run: "true"}
spec: {action: DENY, rules: [{}]}
"#;

fn empty_allow_at(location: &str) -> AnonymousEntry {
    AnonymousEntry {
        action: "ALLOW".into(),
        origin: "empty_rule_set".into(),
        location: Some(location.into()),
        explanation: String::new(),
    }
}

#[test]
fn denies_everything_is_an_error_and_only_then() {
    let sev = |extra: &str, proxy: ProxyView| {
        let c = model(extra);
        let r = run_with(&c, "nginx-2", &HashMap::new(), true, proxy);
        r.findings
            .iter()
            .find(|f| f.code == "denies-everything")
            .map(|f| (f.severity, f.message.clone()))
    };
    // DENY matching everything.
    let (s, m) = sev(DENY_ALL, view(vec![])).unwrap();
    assert_eq!(s, Severity::Error);
    assert!(
        m.contains("deny-all-ingress-using-authorizationpolicy"),
        "{m}"
    );
    // An ALLOW with rules next to the allow-nothing one: something is allowed.
    assert!(sev(&format!("{ALLOW_NOTHING}{ALLOW_SOME}"), view(vec![])).is_none());
    // A DENY of some sources, an ALLOW of some requests, a dry-run DENY of all: not everything.
    assert!(sev(DENY_SOME, view(vec![])).is_none());
    assert!(sev(ALLOW_SOME, view(vec![])).is_none());
    assert!(sev(DRY_DENY_ALL, view(vec![])).is_none());
    // The config dump: the chain of every declared port holds an empty ALLOW rule set
    // (an ALLOW of HTTP methods on a pod whose ports are TCP), while other chains
    // (HTTP passthrough) load the policy.
    const DB: &str = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: np-test-2, labels: {app: db}}
spec:
  containers:
  - {name: db, image: mysql, ports: [{containerPort: 3306}, {containerPort: 33060}]}
  - {name: istio-proxy, image: proxyv2, ports: [{containerPort: 15090, name: http-envoy-prom}]}
"#;
    let db = |anonymous: Vec<AnonymousEntry>| {
        let c = model(&format!("{DB}{ALLOW_SOME}"));
        let mut v = view(vec![
            row("ALLOW", "_anonymous_match_nothing_", None, 1),
            row("ALLOW", "allow-get", Some("np-test-2"), 1),
        ]);
        v.source = ProxySource::ConfigDump;
        v.anonymous = anonymous;
        run_with(&c, "db", &HashMap::new(), true, v)
    };
    let both = db(vec![
        empty_allow_at("network virtualInbound:15006 chain virtualInbound"),
        empty_allow_at("network virtualInbound:15006 chain 0.0.0.0_3306"),
        empty_allow_at("network virtualInbound:15006 chain 0.0.0.0_33060"),
    ]);
    let f = both
        .findings
        .iter()
        .find(|f| f.code == "denies-everything")
        .unwrap_or_else(|| panic!("{:?}", codes(&both)));
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("3306, 33060"), "{}", f.message);
    // One of the two ports: a warning naming it.
    let one = db(vec![empty_allow_at(
        "network virtualInbound:15006 chain 0.0.0.0_33060",
    )]);
    assert!(!has(&one, "denies-everything"), "{:?}", codes(&one));
    let f = one
        .findings
        .iter()
        .find(|f| f.code == "port-denies-everything")
        .unwrap();
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("port 33060 "), "{}", f.message);
    // Only the passthrough chain: the declared ports are fine.
    let none = db(vec![empty_allow_at(
        "network virtualInbound:15006 chain virtualInbound",
    )]);
    assert!(!has(&none, "denies-everything") && !has(&none, "port-denies-everything"));
    // No sidecar: nothing is enforced, so nothing is denied by policy.
    let c = model(DENY_ALL);
    let r = run_with(&c, "plain", &HashMap::new(), true, view(vec![]));
    assert!(!has(&r, "denies-everything"));
}

#[test]
fn a_fresh_policy_not_loaded_is_propagating_an_old_one_is_not() {
    let c = model(DENY_ALL);
    let key = (
        "np-test-2".to_string(),
        "deny-all-ingress-using-authorizationpolicy".to_string(),
    );
    let fresh = HashMap::from([(key.clone(), 2)]);
    let r = run_with(&c, "nginx-2", &fresh, true, view(vec![]));
    let f = r.findings.iter().find(|f| f.code == "not-loaded").unwrap();
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("still pushing"), "{}", f.message);
    assert_eq!(r.authorization_policies[0].loaded, Some(false));
    assert_eq!(
        r.authorization_policies[0].meaning,
        "DENY matching every request: denies every request"
    );

    let old = HashMap::from([(key, 3600)]);
    let r = run_with(&c, "nginx-2", &old, true, view(vec![]));
    let f = r.findings.iter().find(|f| f.code == "not-loaded").unwrap();
    assert!(f.message.contains("not propagation delay"), "{}", f.message);

    // Once loaded, the finding is gone.
    let rows = vec![row(
        "DENY",
        "deny-all-ingress-using-authorizationpolicy",
        Some("np-test-2"),
        1,
    )];
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(rows));
    assert!(!has(&r, "not-loaded"));
    assert_eq!(r.authorization_policies[0].loaded, Some(true));
}

#[test]
fn rule_count_difference_is_an_update_in_flight() {
    let c = model(DENY_ALL);
    let rows = vec![row(
        "DENY",
        "deny-all-ingress-using-authorizationpolicy",
        Some("np-test-2"),
        3,
    )];
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(rows));
    assert!(has(&r, "rules-differ"));
}

#[test]
fn loaded_but_gone_from_the_api() {
    let c = model("");
    let rows = vec![row("DENY", "deleted", Some("np-test-2"), 1)];
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(rows));
    let f = r.findings.iter().find(|f| f.code == "not-in-api").unwrap();
    assert!(f.message.contains("np-test-2/deleted"), "{}", f.message);
    assert!(f.message.contains("not in the API"), "{}", f.message);
}

#[test]
fn pod_without_sidecar_enforces_nothing() {
    let c = model(ALLOW_NOTHING);
    let r = run_with(
        &c,
        "plain",
        &HashMap::new(),
        true,
        crate::proxy::unavailable("no sidecar"),
    );
    assert!(!r.pod.as_ref().unwrap().sidecar);
    assert!(has(&r, "no-sidecar"));
    assert_eq!(r.authorization_policies[0].loaded, Some(false));
    // No sidecar: an unknown proxy is expected, not a second warning.
    assert!(!has(&r, "proxy-unavailable"));
    assert!(!has(&r, "not-loaded"));
}

#[test]
fn selectors_missing_the_pod_or_matching_nothing() {
    let c = model(
        r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: for-plain, namespace: np-test-2}
spec: {selector: {matchLabels: {app: plain}}, action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: for-nobody, namespace: np-test-2}
spec: {selector: {matchLabels: {app: typo}}, action: DENY, rules: [{}]}
"#,
    );
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(vec![]));
    assert!(r.authorization_policies.is_empty());
    let misses = r
        .findings
        .iter()
        .find(|f| f.code == "selector-misses")
        .unwrap();
    assert!(misses.message.contains("for-plain"));
    let nothing = r
        .findings
        .iter()
        .find(|f| f.code == "selector-matches-nothing")
        .unwrap();
    assert!(nothing.message.contains("for-nobody") && nothing.message.contains("IST0127"));
    assert_eq!(nothing.severity, Severity::Warning);
}

#[test]
fn namespace_without_injection() {
    let c = model(ALLOW_NOTHING);
    let rows = vec![row("ALLOW", "deny-all-ingress", Some("np-test-2"), 1)];
    let r = run_with(&c, "nginx-2", &HashMap::new(), false, view(rows));
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "no-injection")
        .unwrap();
    // The pod has a sidecar anyway: informational.
    assert_eq!(f.severity, Severity::Info);
    let r = run_with(
        &c,
        "plain",
        &HashMap::new(),
        false,
        crate::proxy::unavailable("x"),
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.code == "no-injection")
        .unwrap();
    assert_eq!(f.severity, Severity::Warning);
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(vec![]));
    assert!(!has(&r, "no-injection"));
}

#[test]
fn root_namespace_policies_apply_mesh_wide() {
    let c = model(
        r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [evil]}}]}]}
"#,
    );
    let rows = vec![row("DENY", "mesh-deny", Some("istio-system"), 1)];
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(rows));
    let a = &r.authorization_policies[0];
    assert_eq!(a.scope, "mesh");
    assert_eq!(a.meaning, "denies requests matching its 1 rule");
    assert!(
        a.details[0].contains("namespaces [evil]"),
        "{:?}",
        a.details
    );
    assert_eq!(a.loaded, Some(true));
}

#[test]
fn dry_run_is_loaded_only_if_the_dump_shows_it() {
    let c = model(
        r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: try-deny
  namespace: np-test-2
  annotations: {istio.io/dry-run: "true"}
spec: {action: DENY, rules: [{}]}
"#,
    );
    // istioctl alone cannot tell.
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, view(vec![]));
    let a = &r.authorization_policies[0];
    assert!(a.dry_run);
    assert_eq!(a.loaded, None);
    assert!(a.meaning.starts_with("dry-run"), "{}", a.meaning);
    assert!(has(&r, "dry-run"));
    assert!(!has(&r, "not-loaded"));
    // With the dump's hidden list.
    let mut v = view(vec![]);
    v.hidden = Some(vec![HiddenPolicy {
        action: "DENY".into(),
        policy: "try-deny".into(),
        namespace: Some("np-test-2".into()),
        kind: "dry-run".into(),
        provider: None,
        rules: 1,
        where_: vec![],
    }]);
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, v);
    assert_eq!(r.authorization_policies[0].loaded, Some(true));
    let mut v = view(vec![]);
    v.hidden = Some(vec![]);
    let r = run_with(&c, "nginx-2", &HashMap::new(), true, v);
    assert_eq!(r.authorization_policies[0].loaded, Some(false));
    assert!(has(&r, "not-loaded"));
}

#[test]
fn offline_report_explains_hidden_parts() {
    let mut v = view(vec![row("CUSTOM", "ext", Some("a"), 1)]);
    v.hidden = Some(vec![HiddenPolicy {
        action: "CUSTOM".into(),
        policy: "ext".into(),
        namespace: Some("a".into()),
        kind: "custom".into(),
        provider: Some("opa".into()),
        rules: 1,
        where_: vec![],
    }]);
    let r = offline(v);
    assert!(r.pod.is_none());
    let f = r.findings.iter().find(|f| f.code == "custom").unwrap();
    assert!(f.message.contains("provider opa"), "{}", f.message);
}

/// An ambient pod: no sidecar advice, ztunnel's view, the waypoint's policies
/// (loaded or not in the waypoint's Envoy) and the audit's findings.
#[test]
fn ambient_pod_gets_ztunnel_and_waypoint_sections_not_sidecar_advice() {
    let c = model(
        r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: np-test-2}
spec:
  selector: {matchLabels: {app: plain}}
  rules:
  - to:
    - operation: {methods: [GET]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-waypoint, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  rules:
  - to:
    - operation: {methods: [GET]}
"#,
    );
    let p = c.pod("np-test-2", "plain").unwrap().clone();
    let ns_labels: BTreeMap<String, String> = [
        ("istio.io/dataplane-mode", "ambient"),
        ("istio.io/use-waypoint", "waypoint"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let services = [ServiceInfo {
        namespace: "np-test-2".into(),
        name: "plain".into(),
        labels: BTreeMap::new(),
        selector: [("app".to_string(), "plain".to_string())].into(),
    }];
    let gateways = [GatewayInfo {
        namespace: "np-test-2".into(),
        name: "waypoint".into(),
        class: "istio-waypoint".into(),
        ..Default::default()
    }];
    let ages = HashMap::new();
    let ctx = PodContext {
        cluster: &c,
        pod: &p,
        phase: "Running".into(),
        namespace_labels: Some(ns_labels),
        ages: &ages,
        invalid: &[],
        ambient: AmbientInputs {
            services: &services,
            gateways: &gateways,
            extra_policies: &[],
            ztunnel_config: "not read",
        },
    };
    let r = analyze(&ctx, view(vec![]));
    let amb = r.ambient.as_ref().expect("ambient section");
    assert!(r.authorization_policies.is_empty());
    assert_eq!(amb.ztunnel.len(), 1);
    assert_eq!(amb.ztunnel[0].policy.name, "get-only");
    assert_eq!(amb.waypoints[0].state, "uses");
    assert_eq!(amb.waypoints[0].policies[0].name, "at-waypoint");
    assert_eq!(amb.waypoints[0].policies[0].loaded, Some(false));
    let c = codes(&r);
    for code in [
        "ztunnel-ignores-l7",
        "sidecar-policy-left-behind",
        "ztunnel-denies-everything",
        "not-loaded",
        "ambient",
    ] {
        assert!(c.iter().any(|(k, _)| *k == code), "{code} in {c:?}");
    }
    for code in ["no-sidecar", "no-injection", "peerauth-not-enforced"] {
        assert!(!c.iter().any(|(k, _)| *k == code), "{code} in {c:?}");
    }
    let text = crate::render::report_text(
        &kubeplugin::render::Renderer {
            format: kubeplugin::OutputFormat::Table,
            no_headers: false,
            color: false,
            transform: None,
        },
        &r,
    );
    assert!(text.contains("enforced by ztunnel (L4 only"), "{text}");
    assert!(
        text.contains("np-test-2/at-waypoint (Gateway waypoint)"),
        "{text}"
    );
    assert!(!text.contains("enforced by the sidecar"), "{text}");
}

/// A waypoint's own pod: the policies attached to its Gateway are the ones
/// that apply (and its Envoy holding them is no staleness).
#[test]
fn waypoint_pod_reports_the_policies_attached_to_it() {
    let c = model(
        r#"
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-1, namespace: np-test-2, labels: {gateway.networking.k8s.io/gateway-name: waypoint, gateway.istio.io/managed: istio.io-mesh-controller}}
spec:
  containers: [{name: istio-proxy, image: proxyv2}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-waypoint, namespace: np-test-2}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}
  rules:
  - to:
    - operation: {methods: [GET]}
"#,
    );
    let p = c.pod("np-test-2", "waypoint-1").unwrap().clone();
    let gateways = [GatewayInfo {
        namespace: "np-test-2".into(),
        name: "waypoint".into(),
        class: "istio-waypoint".into(),
        ..Default::default()
    }];
    let ages = HashMap::new();
    let ctx = PodContext {
        cluster: &c,
        pod: &p,
        phase: "Running".into(),
        namespace_labels: labels(false),
        ages: &ages,
        invalid: &[],
        ambient: AmbientInputs {
            services: &[],
            gateways: &gateways,
            extra_policies: &[],
            ztunnel_config: "",
        },
    };
    let r = analyze(
        &ctx,
        view(vec![row("ALLOW", "at-waypoint", Some("np-test-2"), 1)]),
    );
    assert_eq!(r.authorization_policies.len(), 1, "{r:?}");
    assert_eq!(r.authorization_policies[0].scope, "waypoint");
    assert_eq!(r.authorization_policies[0].loaded, Some(true));
    assert!(!has(&r, "not-in-api"), "{:?}", codes(&r));
    assert!(r.ambient.is_none());
}

#[test]
fn custom_rules_are_named_with_their_provider() {
    // Istio 1.30+ names a CUSTOM rule `istio-ext-authz-PROVIDER-ns[..]-policy[..]-rule[N]`.
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: a}\nspec: {action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: [/x]}}]}, {}]}\n";
    let objects = meshpolicy::manifests::parse_manifests(yaml).unwrap();
    let c = CompiledAuthz::compile(&objects.authorization_policies[0]).unwrap();
    assert_eq!(
        envoy_names(&c),
        [
            "istio-ext-authz-opa-ns[a]-policy[ext]-rule[0]",
            "istio-ext-authz-opa-ns[a]-policy[ext]-rule[1]"
        ]
    );
}
