//! Properties of the engine that must hold for any input (no panic on
//! arbitrary selectors, CIDRs, ports and protocols; same input, same verdict),
//! plus the AuthorizationPolicy semantics Istio documents, each checked on a
//! small model built here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use meshpolicy::{
    AuthorizationPolicy, Cluster, ClusterOptions, Decision, Endpoint, HttpAttributes, Namespace,
    Pod, Protocol, Selector,
};
use proptest::prelude::*;
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn small_cluster() -> Cluster {
    let mut c = Cluster::with_options(ClusterOptions::default());
    c.add_namespace(Namespace::new("a", labels(&[("team", "x")])));
    c.add_namespace(Namespace::new("b", labels(&[])));
    for (ns, name, app, ip) in [
        ("a", "web", "web", [10, 0, 0, 1]),
        ("a", "db", "db", [10, 0, 0, 2]),
        ("b", "client", "client", [10, 0, 1, 1]),
    ] {
        let mut p = Pod::new(ns, name, labels(&[("app", app)]));
        p.ip = Some(IpAddr::V4(Ipv4Addr::from(ip)));
        p.has_sidecar = true;
        p.ports.push(meshpolicy::workload::ContainerPort {
            name: Some("http".into()),
            port: 8080,
            protocol: Protocol::Tcp,
        });
        c.add_pod(p);
    }
    c
}

fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::pod("a", "web"),
        Endpoint::pod("a", "db"),
        Endpoint::pod("b", "client"),
        Endpoint::External {
            ip: IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
        },
    ]
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./*-]{0,12}",
        "\\PC{0,16}",
        Just("10.0.0.0/8".to_string()),
        Just("10.0.0/8".to_string()),
        Just("::/0".to_string()),
        Just("0.0.0.0/0".to_string()),
    ]
}

fn any_protocol() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("TCP".to_string())),
        Just(Some("UDP".to_string())),
        Just(Some("SCTP".to_string())),
        "[A-Za-z]{0,5}".prop_map(Some),
    ]
}

fn any_port() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<i32>().prop_map(|n| json!(n)),
        (0i32..70000).prop_map(|n| json!(n)),
        "[a-z0-9-]{0,16}".prop_map(|s| json!(s)),
    ]
}

fn any_selector() -> impl Strategy<Value = serde_json::Value> {
    let op = prop_oneof![
        Just("In".to_string()),
        Just("NotIn".to_string()),
        Just("Exists".to_string()),
        Just("DoesNotExist".to_string()),
        "[A-Za-z]{0,8}",
    ];
    (
        proptest::collection::btree_map("[a-z]{1,4}", "[a-z]{0,4}", 0..3),
        proptest::collection::vec(
            (
                "[a-z/.]{0,6}",
                op,
                proptest::collection::vec("[a-z]{0,3}", 0..3),
            ),
            0..3,
        ),
    )
        .prop_map(|(ml, exprs)| {
            let exprs: Vec<serde_json::Value> = exprs
                .into_iter()
                .map(|(k, o, v)| json!({"key": k, "operator": o, "values": v}))
                .collect();
            json!({"matchLabels": ml, "matchExpressions": exprs})
        })
}

fn any_peer() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any_selector().prop_map(|s| json!({"podSelector": s})),
        any_selector().prop_map(|s| json!({"namespaceSelector": s})),
        (any_selector(), any_selector())
            .prop_map(|(a, b)| json!({"podSelector": a, "namespaceSelector": b})),
        (any_string(), proptest::collection::vec(any_string(), 0..2))
            .prop_map(|(c, e)| json!({"ipBlock": {"cidr": c, "except": e}})),
        Just(json!({})),
    ]
}

fn any_rule() -> impl Strategy<Value = serde_json::Value> {
    (
        proptest::option::of(proptest::collection::vec(any_peer(), 0..3)),
        proptest::option::of(proptest::collection::vec(
            (
                any_port(),
                proptest::option::of(any::<i32>()),
                any_protocol(),
            ),
            0..3,
        )),
    )
        .prop_map(|(peers, ports)| {
            let mut r = serde_json::Map::new();
            if let Some(p) = peers {
                r.insert("peers".into(), json!(p));
            }
            if let Some(ps) = ports {
                let ps: Vec<serde_json::Value> = ps
                    .into_iter()
                    .map(|(port, end, proto)| {
                        let mut m = serde_json::Map::new();
                        if !port.is_null() {
                            m.insert("port".into(), port);
                        }
                        if let Some(e) = end {
                            m.insert("endPort".into(), json!(e));
                        }
                        if let Some(p) = proto {
                            m.insert("protocol".into(), json!(p));
                        }
                        serde_json::Value::Object(m)
                    })
                    .collect();
                r.insert("ports".into(), json!(ps));
            }
            serde_json::Value::Object(r)
        })
}

fn any_netpol() -> impl Strategy<Value = serde_json::Value> {
    (
        any_selector(),
        proptest::option::of(proptest::collection::vec(any_rule(), 0..3)),
        proptest::option::of(proptest::collection::vec(any_rule(), 0..3)),
        proptest::option::of(proptest::sample::subsequence(
            vec!["Ingress", "Egress", "Sideways"],
            0..3,
        )),
        prop_oneof![Just("a"), Just("b")],
    )
        .prop_map(|(sel, ingress, egress, types, ns)| {
            let fix = |rules: Vec<serde_json::Value>, key: &str| -> Vec<serde_json::Value> {
                rules
                    .into_iter()
                    .map(|mut r| {
                        if let Some(p) = r.as_object_mut().and_then(|o| o.remove("peers")) {
                            r[key] = p;
                        }
                        r
                    })
                    .collect()
            };
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), sel);
            if let Some(i) = ingress {
                spec.insert("ingress".into(), json!(fix(i, "from")));
            }
            if let Some(e) = egress {
                spec.insert("egress".into(), json!(fix(e, "to")));
            }
            if let Some(t) = types {
                spec.insert("policyTypes".into(), json!(t));
            }
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "p", "namespace": ns},
                "spec": spec,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn selector_strings_never_panic_and_round_trip(s in "\\PC{0,40}") {
        if let Ok(sel) = Selector::parse(&s) {
            let again = Selector::parse(&sel.to_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&sel));
        }
    }

    #[test]
    fn netpol_eval_never_panics_and_is_deterministic(
        pols in proptest::collection::vec(any_netpol(), 1..4),
        port in any::<u16>(),
        proto in prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp), Just(Protocol::Sctp)],
    ) {
        let build = || {
            let mut c = small_cluster();
            for (i, p) in pols.iter().enumerate() {
                let mut p = p.clone();
                p["metadata"]["name"] = json!(format!("p{i}"));
                // Deserialization may fail for ill-typed values; compile must not panic either way.
                if let Ok(np) = serde_json::from_value::<NetworkPolicy>(p) {
                    let _ = c.add_network_policy(&np);
                }
            }
            c
        };
        let (c1, c2) = (build(), build());
        for s in endpoints() {
            for d in endpoints() {
                let v1 = c1.evaluate_network(&s, &d, port, proto).unwrap();
                let v2 = c2.evaluate_network(&s, &d, port, proto).unwrap();
                prop_assert_eq!(&v1, &v2);
                prop_assert_eq!(v1.allowed, v1.egress.allowed && v1.ingress.allowed);
                // A side that nothing selects is open.
                if v1.ingress.selecting.is_empty() {
                    prop_assert!(v1.ingress.allowed);
                }
            }
        }
    }

    #[test]
    fn authz_eval_never_panics_and_is_deterministic(
        action in prop_oneof![Just("ALLOW"), Just("DENY"), Just("AUDIT"), Just("CUSTOM")],
        ip in any_string(),
        port in any_string(),
        path in any_string(),
        key in prop_oneof![
            Just("source.ip".to_string()),
            Just("request.headers[x-user]".to_string()),
            Just("destination.port".to_string()),
            "[a-z.\\[\\]]{1,20}",
        ],
        value in any_string(),
        req_port in any::<u16>(),
        req_path in any_string(),
        dry in any::<bool>(),
    ) {
        let ap = json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "a",
                         "annotations": {"istio.io/dry-run": if dry {"true"} else {"false"}}},
            "spec": {
                "action": action,
                "provider": if action == "CUSTOM" { json!({"name": "ext"}) } else { serde_json::Value::Null },
                "rules": [{
                    "from": [{"source": {"ipBlocks": [ip]}}],
                    "to": [{"operation": {"ports": [port], "paths": [path]}}],
                    "when": [{"key": key, "values": [value]}],
                }],
            },
        });
        let build = || {
            let mut c = small_cluster();
            if let Ok(p) = serde_json::from_value::<AuthorizationPolicy>(ap.clone()) {
                let _ = c.add_authorization_policy(&p);
            }
            c
        };
        let (c1, c2) = (build(), build());
        let http = Some(HttpAttributes { method: "GET".into(), path: req_path, host: "h".into(), headers: BTreeMap::new() });
        for s in endpoints() {
            let r1 = c1.authz_request(&s, "a", "web", req_port, http.clone()).unwrap();
            let r2 = c2.authz_request(&s, "a", "web", req_port, http.clone()).unwrap();
            let v1 = c1.evaluate_authz(&r1).unwrap();
            let v2 = c2.evaluate_authz(&r2).unwrap();
            prop_assert_eq!(&v1, &v2);
            if v1.decision == Decision::Deny {
                prop_assert!(v1.policy_id.is_some());
            }
        }
    }
}

// ---- AuthorizationPolicy semantics on a fixed model ----

fn ap(yaml: &str) -> AuthorizationPolicy {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn get(c: &Cluster, from: &str, path: &str) -> meshpolicy::AuthzVerdict {
    let (ns, name) = from.split_once('/').unwrap();
    let req = c
        .authz_request(
            &Endpoint::pod(ns, name),
            "a",
            "web",
            8080,
            Some(HttpAttributes {
                method: "GET".into(),
                path: path.into(),
                host: "web.a.svc.cluster.local".into(),
                headers: labels(&[("X-User", "alice")]),
            }),
        )
        .unwrap();
    c.evaluate_authz(&req).unwrap()
}

#[test]
fn allow_nothing_denies_with_policy_none() {
    let mut c = small_cluster();
    c.add_authorization_policy(&ap(
        "metadata: {name: allow-nothing, namespace: a}\nspec: {}\n",
    ))
    .unwrap();
    let v = get(&c, "b/client", "/");
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.policy_id.as_deref(), Some("none"));
}

#[test]
fn allow_rule_allows_and_names_rule() {
    let mut c = small_cluster();
    c.add_authorization_policy(&ap(r#"
metadata: {name: allow-b, namespace: a}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {namespaces: ["z"]}}]
  - from: [{source: {principals: ["cluster.local/ns/b/sa/*"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*"]}}]
"#))
        .unwrap();
    let v = get(&c, "b/client", "/api/x");
    assert_eq!(v.decision, Decision::Allow, "{}", v.reason);
    assert_eq!(
        v.policy_id.as_deref(),
        Some("ns[a]-policy[allow-b]-rule[1]")
    );
    let v = get(&c, "b/client", "/other");
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(v.policy_id.as_deref(), Some("none"));
    // a/db has no matching principal namespace: denied.
    let v = get(&c, "a/db", "/api/x");
    assert_eq!(v.decision, Decision::Deny);
}

#[test]
fn deny_wins_over_allow_and_dry_run_is_shadow() {
    let mut c = small_cluster();
    c.add_authorization_policy(&ap(
        "metadata: {name: allow-all, namespace: a}\nspec: {rules: [{}]}\n",
    ))
    .unwrap();
    c.add_authorization_policy(&ap(r#"
metadata: {name: deny-alice, namespace: a}
spec:
  action: DENY
  rules: [{when: [{key: "request.headers[x-user]", values: ["alice"]}]}]
"#))
        .unwrap();
    c.add_authorization_policy(&ap(r#"
metadata: {name: deny-shadow, namespace: a, annotations: {"istio.io/dry-run": "true"}}
spec: {action: DENY, rules: [{}]}
"#))
        .unwrap();
    let v = get(&c, "b/client", "/");
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(
        v.policy_id.as_deref(),
        Some("ns[a]-policy[deny-alice]-rule[0]")
    );
    assert_eq!(v.shadow.len(), 1);
    assert_eq!(v.shadow[0].outcome, "shadow denied");
    assert_eq!(v.shadow[0].policy_id, "ns[a]-policy[deny-shadow]-rule[0]");
}

#[test]
fn unknown_when_key_cannot_be_evaluated() {
    let mut c = small_cluster();
    c.add_authorization_policy(&ap(r#"
metadata: {name: jwt, namespace: a}
spec:
  action: DENY
  rules: [{when: [{key: "request.auth.claims[groups]", values: ["admin"]}]}]
"#))
        .unwrap();
    let v = get(&c, "b/client", "/");
    assert_eq!(v.decision, Decision::CannotEvaluate, "{}", v.reason);
    assert_eq!(v.cannot_evaluate.len(), 1);
    assert!(
        v.cannot_evaluate[0]
            .reason
            .contains("request.auth.claims[groups]")
    );
}

#[test]
fn no_sidecar_enforces_nothing() {
    let mut c = small_cluster();
    let mut web = c.pod("a", "web").unwrap().clone();
    web.has_sidecar = false;
    c.add_pod(web);
    c.add_authorization_policy(&ap(
        "metadata: {name: deny-all, namespace: a}\nspec: {action: DENY, rules: [{}]}\n",
    ))
    .unwrap();
    let v = get(&c, "b/client", "/");
    assert_eq!(v.decision, Decision::Allow);
    assert!(!v.enforced);
    assert!(v.reason.contains("no Istio sidecar"), "{}", v.reason);
}

#[test]
fn root_namespace_applies_mesh_wide_and_custom_is_delegated() {
    let mut c = small_cluster();
    c.add_authorization_policy(&ap(r#"
metadata: {name: ext, namespace: istio-system}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"#))
        .unwrap();
    c.add_authorization_policy(&ap(
        "metadata: {name: other-ns, namespace: b}\nspec: {action: DENY, rules: [{}]}\n",
    ))
    .unwrap();
    let v = get(&c, "b/client", "/admin/x");
    assert_eq!(v.decision, Decision::Allow);
    assert_eq!(v.delegated.len(), 1);
    assert_eq!(v.delegated[0].provider, "opa");
    assert_eq!(
        v.delegated[0].policy_id,
        "istio-ext-authz-opa-ns[istio-system]-policy[ext]-rule[0]"
    );
    // The DENY policy of namespace b does not apply to a/web.
    assert_eq!(v.applicable.len(), 1);
}

#[test]
fn plain_text_source_has_no_principal() {
    let mut c = small_cluster();
    let mut client = c.pod("b", "client").unwrap().clone();
    client.has_sidecar = false;
    c.add_pod(client);
    c.add_authorization_policy(&ap(r#"
metadata: {name: only-b, namespace: a}
spec: {rules: [{from: [{source: {namespaces: ["b"]}}]}]}
"#))
        .unwrap();
    let v = get(&c, "b/client", "/");
    assert_eq!(
        v.decision,
        Decision::Deny,
        "no mTLS, so namespace is unknown"
    );
}
