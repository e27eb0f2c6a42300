//! Config dump analysis against istioctl's own test data: both dumps render exactly as
//! `istioctl x authz check -f` prints them, and the details istioctl drops (dry-run,
//! CUSTOM provider, provenance, anonymous origins) are kept. Istio's builder outputs
//! (camelCase YAML filter configs) are read too.

use std::path::PathBuf;

use meshpolicy::envoy::{
    AnonymousOrigin, AuthzAction, ConfigDumpError, FilterKind, RuleSource, analyze_config_dump,
    analyze_filter_config, parse_authz_check, render_authz_table,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("tests/fixtures"))
        .find(|p| p.is_dir())
        .expect("tests/fixtures not found above the crate")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap()
}

fn check_version(version: &str) {
    let dump = read(&format!("istio/authz-check/configdump-{version}.json"));
    let expected = String::from_utf8(read(&format!(
        "istio/authz-check/configdump-{version}.expected.txt"
    )))
    .unwrap();
    let report = analyze_config_dump(&dump).unwrap();
    assert_eq!(report.render(), expected, "istio {version}");
    // Parsing istioctl's table gives back the same rows.
    assert_eq!(parse_authz_check(&expected).unwrap(), report.rows);
    assert_eq!(render_authz_table(&report.rows), expected);
}

#[test]
fn configdump_1_25_renders_exactly() {
    check_version("1.25");
}

#[test]
fn configdump_1_19_renders_exactly() {
    check_version("1.19");
}

#[test]
fn configdump_1_25_keeps_provenance_custom_and_origins() {
    let report = analyze_config_dump(&read("istio/authz-check/configdump-1.25.json")).unwrap();
    assert!(report.listeners > 0);
    // HTTP filters on virtualInbound chains 1, 2, 6, 7 and main_internal, each an
    // enforcing filter and a CUSTOM filter; three network filters with empty rules.
    let http_in_inbound: Vec<_> = report
        .occurrences
        .iter()
        .filter(|o| o.policy == "httpbin.default")
        .collect();
    assert!(!http_in_inbound.is_empty());
    assert!(
        http_in_inbound
            .iter()
            .all(|o| o.action == AuthzAction::Allow
                && o.source == RuleSource::Rules
                && o.filter == FilterKind::Http
                && !o.dry_run)
    );
    let inbound_chains: Vec<_> = http_in_inbound
        .iter()
        .filter(|o| o.listener.as_deref() == Some("virtualInbound"))
        .map(|o| (o.filter_chain_index, o.port))
        .collect();
    assert_eq!(
        inbound_chains,
        vec![
            (Some(1), Some(15006)),
            (Some(2), Some(15006)),
            (Some(6), Some(15006)),
            (Some(7), Some(15006))
        ]
    );
    let custom: Vec<_> = report
        .occurrences
        .iter()
        .filter(|o| o.action == AuthzAction::Custom)
        .collect();
    assert!(!custom.is_empty());
    for o in &custom {
        assert_eq!(o.policy, "ext-authz.default");
        assert_eq!(o.source, RuleSource::ShadowRules);
        assert!(!o.dry_run);
        // Istio < 1.30 keys carry no provider.
        assert_eq!(o.provider, None);
        assert!(o.id.as_ref().unwrap().custom);
    }
    let origins: Vec<_> = report
        .occurrences
        .iter()
        .filter_map(|o| o.anonymous.map(|a| (a, o.filter, o.filter_chain_index)))
        .collect();
    // Network filters with `rules: {}` (chains 3-5) deny all TCP traffic; the CUSTOM-only
    // HTTP filters enforce nothing.
    for chain in 3..=5 {
        assert!(origins.contains(&(
            AnonymousOrigin::EmptyRuleSet,
            FilterKind::Network,
            Some(chain)
        )));
    }
    assert_eq!(
        origins
            .iter()
            .filter(|(a, _, _)| *a == AnonymousOrigin::CustomOnly)
            .count(),
        custom.len()
    );
}

#[test]
fn builder_yaml_outputs_are_read() {
    let dry = analyze_filter_config(&read("istio/rbac-builder/http/dry-run-mix-out.yaml")).unwrap();
    let rows: Vec<_> = dry
        .rows
        .iter()
        .map(|r| (r.action, r.policy.as_str()))
        .collect();
    assert_eq!(rows, vec![(AuthzAction::Allow, "httpbin-2.foo")]);
    let dry_run: Vec<_> = dry
        .occurrences
        .iter()
        .filter(|o| o.dry_run)
        .map(|o| o.policy.as_str())
        .collect();
    assert!(dry_run.contains(&"httpbin-1.foo"), "{dry_run:?}");

    let custom = analyze_filter_config(&read(
        "istio/rbac-builder/http/custom-grpc-provider-out1.yaml",
    ))
    .unwrap();
    let providers: Vec<_> = custom
        .occurrences
        .iter()
        .filter(|o| o.action == AuthzAction::Custom)
        .map(|o| o.provider.as_deref())
        .collect();
    assert!(!providers.is_empty());
    assert!(providers.iter().all(|p| *p == Some("default")));
    assert!(
        custom
            .occurrences
            .iter()
            .any(|o| o.anonymous == Some(AnonymousOrigin::CustomOnly))
    );

    let deny =
        analyze_filter_config(&read("istio/rbac-builder/tcp/deny-both-http-tcp-out.yaml")).unwrap();
    assert!(deny.rows.iter().all(|r| r.action == AuthzAction::Deny));
    assert_eq!(deny.rows[0].policy, "httpbin-deny.foo");
    assert!(deny.rows[0].rules > 1);
    assert!(
        deny.occurrences
            .iter()
            .all(|o| o.filter == FilterKind::Network)
    );

    let audit =
        analyze_filter_config(&read("istio/rbac-builder/http/audit-full-rule-out.yaml")).unwrap();
    assert!(audit.rows.iter().all(|r| r.action == AuthzAction::Log));
}

#[test]
fn every_builder_output_is_accepted() {
    for dir in ["http", "tcp"] {
        let path = fixtures().join("istio/rbac-builder").join(dir);
        for entry in std::fs::read_dir(path).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.contains("-out") {
                continue;
            }
            let report = analyze_filter_config(&std::fs::read(&path).unwrap());
            let is_rbac = std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("name: envoy.filters.http.rbac")
                || std::fs::read_to_string(&path)
                    .unwrap()
                    .starts_with("name: envoy.filters.network.rbac");
            match report {
                Ok(r) => assert_eq!(r.rbac_filters, usize::from(is_rbac), "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
}

#[test]
fn bad_dumps_give_clear_errors() {
    assert!(matches!(
        analyze_config_dump(b"<html>"),
        Err(ConfigDumpError::NotJson(_))
    ));
    let no_listeners =
        br#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"}]}"#;
    assert_eq!(
        analyze_config_dump(no_listeners).unwrap_err().to_string(),
        "config dump has no dynamic listeners: is this an Envoy /config_dump?"
    );
    // A dump whose listeners carry no RBAC filter prints the header only.
    let plain = br#"{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","dynamic_listeners":[{"name":"x","active_state":{"listener":{"name":"x","filter_chains":[{"filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{}}]}]}}}]}]}"#;
    let report = analyze_config_dump(plain).unwrap();
    assert_eq!(report.render(), "ACTION   AuthorizationPolicy   RULES\n");
}

#[test]
fn camel_case_dump_is_accepted() {
    let dump = String::from_utf8(read("istio/authz-check/configdump-1.25.json")).unwrap();
    let camel = dump
        .replace("\"dynamic_listeners\"", "\"dynamicListeners\"")
        .replace("\"active_state\"", "\"activeState\"")
        .replace("\"filter_chains\"", "\"filterChains\"")
        .replace("\"typed_config\"", "\"typedConfig\"")
        .replace("\"http_filters\"", "\"httpFilters\"")
        .replace("\"shadow_rules\"", "\"shadowRules\"");
    let expected =
        String::from_utf8(read("istio/authz-check/configdump-1.25.expected.txt")).unwrap();
    assert_eq!(
        analyze_config_dump(camel.as_bytes()).unwrap().render(),
        expected
    );
}
