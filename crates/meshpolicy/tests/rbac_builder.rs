//! The Envoy naming derivation against Istio's own builder test data
//! (`tests/fixtures/istio/rbac-builder/{http,tcp}`): for every `*-in.yaml`
//! the filters the engine derives must have the names, actions, enforced and
//! shadow policy ids and stat prefixes of the `*-out*.yaml` files, in order.
//!
//! Which input an output belongs to, and the mesh config Istio's
//! `builder_test.go` used for it, is harness knowledge (not fixture content):
//! outputs without their own `-in` file (`custom-grpc-provider*`,
//! `custom-http-provider*`, `custom-bad-out`) come from
//! `custom-simple-http-in.yaml`; `custom-bad*` run with no provider defined;
//! `tcp/custom-only-http` uses an HTTP ext-authz provider (so no TCP filter).

mod common_engine;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use meshpolicy::authz::builder::{BuildOptions, EnvoyFilter, RbacRules, build_filters};
use meshpolicy::parse_manifests;
use serde_json::Value;

/// What one generated filter looks like, read from an `-out` file.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    name: String,
    rules: Option<(String, Vec<String>)>,
    shadow: Option<(String, Vec<String>)>,
    shadow_prefix: Option<String>,
    stat_prefix: Option<String>,
    ext_authz_prefix: Option<String>,
}

fn rules_of(v: Option<&Value>) -> Option<(String, Vec<String>)> {
    let v = v?;
    let action = v
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("ALLOW")
        .to_string();
    let mut ids: Vec<String> = v
        .get("policies")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    Some((action, ids))
}

fn read_out(p: &Path) -> Seen {
    let v: Value = serde_yaml_ng::from_str(&common_engine::read(p))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let tc = v.get("typedConfig").expect("typedConfig");
    let s = |k: &str| tc.get(k).and_then(Value::as_str).map(str::to_string);
    Seen {
        name: v["name"].as_str().expect("name").to_string(),
        rules: rules_of(tc.get("rules")),
        shadow: rules_of(tc.get("shadowRules")),
        shadow_prefix: s("shadowRulesStatPrefix"),
        stat_prefix: s("statPrefix"),
        ext_authz_prefix: tc
            .pointer("/filterEnabledMetadata/value/stringMatch/prefix")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

fn derived(f: &EnvoyFilter) -> Seen {
    let r = |x: &Option<RbacRules>| {
        x.as_ref()
            .map(|r| (r.action.as_str().to_string(), r.policies.clone()))
    };
    match f {
        EnvoyFilter::Rbac(rb) => Seen {
            name: rb.name.clone(),
            rules: r(&rb.rules),
            shadow: r(&rb.shadow_rules),
            shadow_prefix: rb.shadow_rules_stat_prefix.clone(),
            stat_prefix: rb.stat_prefix.clone(),
            ext_authz_prefix: None,
        },
        EnvoyFilter::ExtAuthz {
            name,
            provider,
            stat_prefix,
        } => Seen {
            name: name.clone(),
            rules: None,
            shadow: None,
            shadow_prefix: None,
            stat_prefix: stat_prefix.clone(),
            ext_authz_prefix: Some(format!("istio-ext-authz-{provider}")),
        },
    }
}

/// `X-out.yaml` -> (X, 0), `X-out2.yaml` -> (X, 2).
fn out_key(file: &str) -> Option<(String, u32)> {
    let stem = file.strip_suffix(".yaml")?;
    let pos = stem.rfind("-out")?;
    let n = &stem[pos + 4..];
    let idx = if n.is_empty() { 0 } else { n.parse().ok()? };
    Some((stem[..pos].to_string(), idx))
}

fn check_dir(sub: &str, tcp: bool) -> (usize, Vec<String>) {
    let dir = common_engine::fixture(&format!("istio/rbac-builder/{sub}"));
    let files = common_engine::files_with_ext(&dir, &["yaml"]);
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    let mut outs: BTreeMap<String, Vec<(u32, std::path::PathBuf)>> = BTreeMap::new();
    let mut ins: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if let Some(base) = name.strip_suffix("-in.yaml") {
            ins.insert(base.to_string());
        } else if let Some((base, idx)) = out_key(&name) {
            outs.entry(base).or_default().push((idx, f.clone()));
        }
    }
    let mut cases: BTreeMap<String, (String, Vec<std::path::PathBuf>)> = BTreeMap::new();
    for (base, mut list) in outs {
        list.sort();
        let input = if ins.contains(&base) {
            base.clone()
        } else if base.starts_with("custom-") {
            "custom-simple-http".to_string()
        } else {
            panic!("{sub}/{base}: no input file for this output");
        };
        cases.insert(base, (input, list.into_iter().map(|(_, p)| p).collect()));
    }
    // Inputs with no output at all: Istio builds nothing for them.
    for i in &ins {
        if !cases.values().any(|(input, _)| input == i) {
            cases.insert(i.clone(), (i.clone(), Vec::new()));
        }
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for (base, (input, outs)) in &cases {
        let text = common_engine::read(&dir.join(format!("{input}-in.yaml")));
        let objs = parse_manifests(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert!(
            !objs.authorization_policies.is_empty(),
            "{sub}/{input}: no AuthorizationPolicy read"
        );
        let mut opts = BuildOptions {
            tcp,
            ..BuildOptions::default()
        };
        if base.starts_with("custom-bad") {
            opts.known_providers = Some(BTreeSet::new());
        }
        if tcp && base == "custom-only-http" {
            opts.http_service_providers.insert("default".into());
        }
        let got: Vec<Seen> = build_filters(objs.authorization_policies.iter(), &opts)
            .iter()
            .map(derived)
            .collect();
        let want: Vec<Seen> = outs.iter().map(|p| read_out(p)).collect();
        checked += 1;
        if got != want {
            failures.push(format!(
                "{sub}/{base} (from {input}-in.yaml):\n  want {want:#?}\n  got  {got:#?}"
            ));
        }
    }
    (checked, failures)
}

#[test]
fn http_builder_outputs_match_istio() {
    let (n, failures) = check_dir("http", false);
    assert!(n >= 20, "only {n} http cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tcp_builder_outputs_match_istio() {
    let (n, failures) = check_dir("tcp", true);
    assert!(n >= 5, "only {n} tcp cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
