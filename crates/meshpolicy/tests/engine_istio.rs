//! The engine predicts what Envoy does with Istio's translation: the fields
//! Istio's own tests use (serviceAccounts, trustDomains, aliases, path
//! templates, host and header wildcards), JWT conditions reported as needing
//! the JWT, and paths as Envoy's RBAC filter sees them after the sidecar's
//! HTTP connection manager normalized them (checked against paths measured
//! on real Envoy 1.40, `tests/data/envoy-1.40-normalize-path.json`).

mod common_engine;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use meshpolicy::authz::{
    AuthorizationPolicy, AuthzRequest, CompiledAuthz, Decision, EvalOptions, HttpAttributes,
    PathNormalization, PathOutcome, TrustDomainBundle, evaluate_policies_with, path_pattern_match,
    rbac_path, uri_template_match,
};
use meshpolicy::istio::rbac::hcm_path_normalization;
use meshpolicy::parse_manifests;
use proptest::prelude::*;
use serde_json::Value;

fn compile(yaml: &str) -> CompiledAuthz {
    let ap: AuthorizationPolicy = serde_yaml_ng::from_str(yaml).expect("policy yaml");
    CompiledAuthz::compile(&ap).expect("policy compiles")
}

fn http_req(principal: Option<&str>, method: &str, path: &str, host: &str) -> AuthzRequest {
    AuthzRequest {
        source_principal: principal.map(str::to_string),
        source_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))),
        destination_namespace: "foo".into(),
        destination_pod: "httpbin".into(),
        destination_port: 8000,
        http: Some(HttpAttributes {
            method: method.into(),
            path: path.into(),
            host: host.into(),
            headers: Default::default(),
        }),
        ..AuthzRequest::default()
    }
}

fn decide(p: &CompiledAuthz, req: &AuthzRequest, opts: &EvalOptions) -> Decision {
    evaluate_policies_with(&[p], req, true, Vec::new(), opts).decision
}

fn allow_from(source: &str) -> CompiledAuthz {
    compile(&format!(
        "metadata: {{name: p, namespace: foo}}\nspec:\n  rules:\n  - from:\n    - source: {source}\n"
    ))
}

#[test]
fn service_accounts_match_only_that_account() {
    let p = allow_from("{serviceAccounts: [\"my-ns/my-sa\", \"sa-only\"]}");
    let o = EvalOptions::default();
    let cases = [
        ("cluster.local/ns/my-ns/sa/my-sa", Decision::Allow),
        ("cluster.local/ns/foo/sa/sa-only", Decision::Allow),
        ("cluster.local/ns/my-ns/sa/my-sa-2", Decision::Deny),
        ("cluster.local/ns/my-ns/sa/other", Decision::Deny),
        ("cluster.local/ns/bar/sa/sa-only", Decision::Deny),
        ("other.td/ns/my-ns/sa/my-sa", Decision::Allow),
    ];
    for (principal, want) in cases {
        let r = http_req(Some(principal), "GET", "/", "x");
        assert_eq!(decide(&p, &r, &o), want, "{principal}");
    }
    let r = http_req(None, "GET", "/", "x");
    assert_eq!(decide(&p, &r, &o), Decision::Deny, "no identity");
}

#[test]
fn trust_domains_and_not_trust_domains() {
    let allow = allow_from("{trustDomains: [\"cluster.local\", \"td-*\"]}");
    let o = EvalOptions::default();
    for (p, want) in [
        ("cluster.local/ns/a/sa/b", Decision::Allow),
        ("td-x/ns/a/sa/b", Decision::Allow),
        ("other/ns/a/sa/b", Decision::Deny),
        ("cluster.localx/ns/a/sa/b", Decision::Deny),
    ] {
        assert_eq!(
            decide(&allow, &http_req(Some(p), "GET", "/", "x"), &o),
            want,
            "{p}"
        );
    }
    // A DENY with notTrustDomains denies other trust domains only.
    let deny = compile(
        "metadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source: {notTrustDomains: [\"bad*\", \"untrusted\"]}\n",
    );
    for (p, want) in [
        ("bad-td/ns/a/sa/b", Decision::Allow),
        ("untrusted/ns/a/sa/b", Decision::Allow),
        ("cluster.local/ns/a/sa/b", Decision::Deny),
    ] {
        assert_eq!(
            decide(&deny, &http_req(Some(p), "GET", "/", "x"), &o),
            want,
            "{p}"
        );
    }
}

#[test]
fn trust_domain_aliases_cover_principals() {
    let p = allow_from("{principals: [\"cluster.local/ns/foo/sa/bar\"]}");
    let plain = EvalOptions::default();
    let aliased = EvalOptions {
        trust_domains: TrustDomainBundle::new("td1", &["cluster.local".into(), "old-td".into()]),
        ..EvalOptions::default()
    };
    let r = |pr: &str| http_req(Some(pr), "GET", "/", "x");
    assert_eq!(decide(&p, &r("td1/ns/foo/sa/bar"), &plain), Decision::Deny);
    assert_eq!(
        decide(&p, &r("td1/ns/foo/sa/bar"), &aliased),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &r("old-td/ns/foo/sa/bar"), &aliased),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &r("cluster.local/ns/foo/sa/bar"), &aliased),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &r("new/ns/foo/sa/bar"), &aliased),
        Decision::Deny
    );
}

#[test]
fn path_templates_match_like_envoy_uri_template() {
    assert!(path_pattern_match("/api/{*}/info", "/api/v1/info"));
    assert!(!path_pattern_match("/api/{*}/info", "/api/v1/v2/info"));
    assert!(!path_pattern_match("/api/{*}/info", "/api//info"));
    assert!(path_pattern_match("/api/{**}", "/api/a/b/c"));
    assert!(path_pattern_match("/api/{**}", "/api/"));
    assert!(path_pattern_match(
        "/{**}/path/template",
        "/a/b/path/template"
    ));
    assert!(!path_pattern_match("/{**}/path/template", "/path/template"));
    assert!(uri_template_match("/a/*", "/a/b?x=1"));
    let p = compile(
        "metadata: {name: p, namespace: foo}\nspec:\n  rules:\n  - to:\n    - operation: {paths: [\"/api/{*}/info\"]}\n",
    );
    let o = EvalOptions::default();
    assert_eq!(
        decide(&p, &http_req(None, "GET", "/api/v1/info", "x"), &o),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, &http_req(None, "GET", "/api/v1/x", "x"), &o),
        Decision::Deny
    );
}

#[test]
fn wildcards_are_presence_for_hosts_methods_and_headers() {
    let p = compile(
        "metadata: {name: p, namespace: foo}\nspec:\n  rules:\n  - to:\n    - operation: {hosts: [\"*\"], methods: [\"*\"]}\n    when:\n    - key: request.headers[x-a]\n      values: [\"*\"]\n",
    );
    let o = EvalOptions::default();
    let mut r = http_req(None, "GET", "/", "");
    assert_eq!(decide(&p, &r, &o), Decision::Deny, "header absent");
    if let Some(h) = r.http.as_mut() {
        h.headers.insert("X-A".into(), String::new());
    }
    assert_eq!(
        decide(&p, &r, &o),
        Decision::Allow,
        "empty header is present"
    );
}

#[test]
fn header_conditions_with_several_values() {
    let p = compile(
        "metadata: {name: p, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.headers[x-env]\n      values: [\"prod\", \"stag*\", \"*-eu\"]\n      notValues: [\"staging-ok\"]\n",
    );
    let o = EvalOptions::default();
    for (v, want) in [
        ("prod", Decision::Deny),
        ("staging", Decision::Deny),
        ("dev-eu", Decision::Deny),
        ("staging-ok", Decision::Allow),
        ("dev", Decision::Allow),
    ] {
        let mut r = http_req(None, "GET", "/", "x");
        if let Some(h) = r.http.as_mut() {
            h.headers.insert("x-env".into(), v.into());
        }
        assert_eq!(decide(&p, &r, &o), want, "{v}");
    }
}

#[test]
fn jwt_conditions_need_the_jwt() {
    let o = EvalOptions::default();
    for yaml in [
        "metadata: {name: p, namespace: foo}\nspec:\n  rules:\n  - from:\n    - source: {requestPrincipals: [\"iss/sub\"]}\n",
        "metadata: {name: p, namespace: foo}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[groups]\n      values: [\"admin\"]\n",
        "metadata: {name: p, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.auth.audiences\n      values: [\"a\"]\n",
    ] {
        let p = compile(yaml);
        let v = evaluate_policies_with(&[&p], &http_req(None, "GET", "/", "x"), true, vec![], &o);
        assert_eq!(v.decision, Decision::CannotEvaluate, "{yaml}");
        assert!(v.reason.contains("JWT"), "{}", v.reason);
    }
    // With a known request principal, requestPrincipals are evaluated.
    let p = allow_from("{requestPrincipals: [\"https://iss.example/*\"]}");
    let mut r = http_req(None, "GET", "/", "x");
    r.request_principal = Some("https://iss.example/alice".into());
    assert_eq!(decide(&p, &r, &o), Decision::Allow);
    r.request_principal = Some("https://other/alice".into());
    assert_eq!(decide(&p, &r, &o), Decision::Deny);
}

/// An undecidable rule names itself, its action and why, in the verdict and
/// in `cannot_evaluate`; a DENY rule that matches still decides.
#[test]
fn undecidable_rules_are_named_with_their_action() {
    let o = EvalOptions::default();
    let req = http_req(None, "GET", "/", "x");
    for (action, want) in [("DENY", "DENY"), ("ALLOW", "ALLOW")] {
        let p = compile(&format!(
            "metadata: {{name: p, namespace: foo}}\nspec:\n  action: {action}\n  rules:\n  - when:\n    - key: request.auth.audiences\n      values: [\"a\"]\n"
        ));
        let v = evaluate_policies_with(&[&p], &req, true, vec![], &o);
        assert_eq!(v.decision, Decision::CannotEvaluate);
        assert_eq!(v.policy_id.as_deref(), Some("ns[foo]-policy[p]-rule[0]"));
        let prefix = format!("cannot evaluate: {want} rule ns[foo]-policy[p]-rule[0] may match: ");
        assert!(v.reason.starts_with(&prefix), "{}", v.reason);
        assert_eq!(v.cannot_evaluate.len(), 1);
    }
    let unknown = compile(
        "metadata: {name: a, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.auth.audiences\n      values: [\"a\"]\n",
    );
    let matching = compile(
        "metadata: {name: b, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [\"GET\"]}\n",
    );
    let v = evaluate_policies_with(&[&unknown, &matching], &req, true, vec![], &o);
    assert_eq!(v.decision, Decision::Deny, "{}", v.reason);
    assert_eq!(v.reason, "denied by DENY rule ns[foo]-policy[b]-rule[0]");
    assert_eq!(
        v.cannot_evaluate.len(),
        1,
        "the undecidable rule is still listed"
    );
}

#[test]
fn unknown_when_keys_skip_the_rule_as_istio_does() {
    let o = EvalOptions::default();
    let deny = compile(
        "metadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.unknown\n      values: [\"x\"]\n",
    );
    assert_eq!(
        decide(&deny, &http_req(None, "GET", "/", "x"), &o),
        Decision::Allow
    );
}

#[test]
fn deny_on_a_path_sees_the_normalized_path() {
    let p = compile(
        "metadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [\"/admin/panel\"]}\n",
    );
    let o = EvalOptions::default();
    for path in [
        "/admin/panel?a=b",
        "/admin/./panel",
        "/x/../admin/panel",
        "/admin/%70anel",
        "/admin/%2e/panel",
    ] {
        assert_eq!(
            decide(&p, &http_req(None, "GET", path, "x"), &o),
            Decision::Deny,
            "{path}"
        );
    }
    for path in ["/admin//panel", "/admin%2fpanel", "/Admin/panel"] {
        assert_eq!(
            decide(&p, &http_req(None, "GET", path, "x"), &o),
            Decision::Allow,
            "{path}"
        );
    }
    let v = evaluate_policies_with(&[&p], &http_req(None, "GET", "/a b", "x"), true, vec![], &o);
    assert_eq!(v.decision, Decision::CannotEvaluate);
}

/// Every `*-in.yaml` of Istio's builder tests loads into the engine.
#[test]
fn istio_builder_inputs_compile() {
    let mut n = 0;
    for sub in ["http", "tcp"] {
        let dir = common_engine::fixture(&format!("istio/rbac-builder/{sub}"));
        for f in common_engine::files_with_ext(&dir, &["yaml"]) {
            if !f.to_string_lossy().ends_with("-in.yaml") {
                continue;
            }
            let objs = parse_manifests(&common_engine::read(&f)).expect("parses");
            for ap in &objs.authorization_policies {
                CompiledAuthz::compile(ap).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                n += 1;
            }
        }
    }
    assert!(n >= 30, "only {n} policies");
}

#[test]
fn path_normalization_matches_measured_envoy() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/envoy-1.40-normalize-path.json");
    let doc: Value = serde_json::from_str(&common_engine::read(&p)).expect("json");
    // The measurements were made with the settings the translation publishes.
    let hcm = hcm_path_normalization();
    for (k, v) in doc["hcm"].as_object().expect("hcm") {
        assert_eq!(hcm.get(k), Some(v), "{k}");
    }
    let norm = PathNormalization::ISTIO_DEFAULT;
    let mut bad = Vec::new();
    let cases = doc["cases"].as_array().expect("cases");
    for c in cases {
        let raw = c[0].as_str().expect("raw");
        let got = rbac_path(raw, &norm);
        let ok = match (c[1].as_str(), c[2].as_str()) {
            (Some("200"), Some(seen)) => {
                let want = seen.split(['?', '#']).next().unwrap_or_default();
                got == PathOutcome::Path(want.to_string())
            }
            _ => matches!(got, PathOutcome::Rejected(_)),
        };
        if !ok {
            bad.push(format!("{raw:?}: envoy {c} vs {got:?}"));
        }
    }
    for raw in doc["aborts"]["targets"].as_array().expect("aborts") {
        let raw = raw.as_str().expect("str");
        if !matches!(rbac_path(raw, &norm), PathOutcome::Unpredictable(_)) {
            bad.push(format!("{raw:?} should be unpredictable"));
        }
    }
    assert!(cases.len() >= 100);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn path_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E%2e".to_string()),
            Just(String::new()),
            "[a-zA-Z0-9_~-]{1,4}",
            "%[0-9a-fA-F]{2}",
            "[!$&'()*+,:=@\\[\\]]{1,2}",
        ],
        0..8,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    /// Normalized paths have no dot segments, start with `/`, and are stable.
    #[test]
    fn normalized_paths_are_canonical(raw in path_strategy()) {
        let norm = PathNormalization::ISTIO_DEFAULT;
        // Envoy answers a path with `%00` with 400 (measured): never normalized.
        if raw.contains("%00") {
            prop_assert!(matches!(rbac_path(&raw, &norm), PathOutcome::Rejected(_)), "{raw:?}");
            return Ok(());
        }
        let PathOutcome::Path(p) = rbac_path(&raw, &norm) else {
            return Err(TestCaseError::fail(format!("{raw:?} not normalized")));
        };
        prop_assert!(p.starts_with('/'));
        for seg in p.split('/') {
            prop_assert!(seg != "." && seg != "..", "{raw:?} -> {p:?}");
        }
        prop_assert_eq!(rbac_path(&p, &norm), PathOutcome::Path(p.clone()));
    }

    /// A principal built from NS and SA matches exactly the serviceAccounts naming it.
    #[test]
    fn service_account_identity(ns in "[a-z][a-z0-9-]{0,6}", sa in "[a-z][a-z0-9-]{0,6}",
                                other in "[a-z][a-z0-9-]{0,6}", td in "[a-z.]{1,8}") {
        let o = EvalOptions::default();
        let r = http_req(Some(&format!("{td}/ns/{ns}/sa/{sa}")), "GET", "/", "x");
        let p = allow_from(&format!("{{serviceAccounts: [\"{ns}/{sa}\"]}}"));
        prop_assert_eq!(decide(&p, &r, &o), Decision::Allow);
        let q = allow_from(&format!("{{serviceAccounts: [\"{ns}/{other}\"]}}"));
        prop_assert_eq!(decide(&q, &r, &o), if other == sa { Decision::Allow } else { Decision::Deny });
    }

    /// `{*}` matches exactly one non-empty segment of template-literal characters.
    #[test]
    fn one_segment_template(a in "[a-z]{1,5}", mid in "[a-zA-Z0-9._~-]{0,5}", b in "[a-z]{1,5}") {
        let pat = format!("/{a}/{{*}}/{b}");
        let path = format!("/{a}/{mid}/{b}");
        prop_assert_eq!(path_pattern_match(&pat, &path), !mid.is_empty());
        let two = format!("/{a}/{mid}/x/{b}");
        prop_assert!(!path_pattern_match(&pat, &two));
    }
}

/// Envoy's uri_template permission after the sidecar's path normalization,
/// against 232 (template, path) pairs measured on real Envoy 1.40.
#[test]
fn uri_templates_match_measured_envoy() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/envoy-1.40-uri-template.json");
    let doc: Value = serde_json::from_str(&common_engine::read(&p)).expect("json");
    let norm = PathNormalization::ISTIO_DEFAULT;
    let mut bad = Vec::new();
    let cases = doc["cases"].as_array().expect("cases");
    for c in cases {
        let (t, raw, status) = (
            c[0].as_str().expect("t"),
            c[1].as_str().expect("p"),
            c[2].as_str().expect("s"),
        );
        let got = match rbac_path(raw, &norm) {
            PathOutcome::Path(p) => {
                if uri_template_match(t, &p) {
                    "200"
                } else {
                    "403"
                }
            }
            PathOutcome::Rejected(_) => "400",
            PathOutcome::Unpredictable(_) => "?",
        };
        if got != status {
            bad.push(format!("{t} {raw:?}: envoy {status}, engine {got}"));
        }
    }
    assert!(cases.len() >= 200);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
