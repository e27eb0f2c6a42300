//! The RBAC filter configs of a simulated sidecar, as Envoy's config dump
//! shows them (snake_case JSON).
//!
//! Which filters exist, their actions, policy keys, shadow rules and stat
//! prefixes come from crates/meshpolicy's builder ([`meshpolicy::build_filters`]),
//! so meshsim, the plugins and istioctl's table all agree on naming. This
//! module adds the body of each policy (`permissions` / `principals`) the way
//! Istio 1.25 writes it for the common fields (principals, namespaces, IP
//! blocks, request principals, hosts, methods, paths, ports and the usual
//! `when` keys; empty rules as `any: true`, a policy without rules as a
//! never-matching `not_rule`/`not_id`). The matchers are a faithful sketch
//! for reading, not a byte-exact copy of every Istio corner (JWT claims and
//! path templates are written as plain metadata/regex matchers); nothing in
//! meshsim or the plugins evaluates them: decisions are made by meshpolicy.

use std::collections::HashMap;

use ipnet::IpNet;
use meshpolicy::authz::{Condition, Operation, Rule, Source};
use meshpolicy::{
    AuthorizationPolicy, BuildOptions, EnvoyFilter, RbacFilter, RbacRules, build_filters,
    envoy_policy_id,
};
use serde_json::{Value, json};

const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const NETWORK_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
const HTTP_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const NETWORK_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";

/// The filters (name + typed_config) Istio puts on one inbound filter chain
/// for `policies` (those this sidecar received and that select it): HTTP
/// filters for an HTTP chain (`tcp == false`), network filters otherwise.
pub fn filters(policies: &[AuthorizationPolicy], tcp: bool) -> Vec<Value> {
    let opts = BuildOptions {
        tcp,
        ..BuildOptions::default()
    };
    let index = PolicyIndex::new(policies);
    build_filters(policies.iter(), &opts)
        .into_iter()
        .map(|f| match f {
            EnvoyFilter::Rbac(r) => rbac_filter(&r, &index, tcp),
            EnvoyFilter::ExtAuthz {
                name,
                provider,
                stat_prefix,
            } => ext_authz_filter(&name, &provider, stat_prefix.as_deref(), tcp),
        })
        .collect()
}

/// Finds the rule a policy key names.
struct PolicyIndex<'a> {
    by_id: HashMap<String, (&'a AuthorizationPolicy, usize)>,
}

impl<'a> PolicyIndex<'a> {
    fn new(policies: &'a [AuthorizationPolicy]) -> Self {
        let mut by_id = HashMap::new();
        for p in policies {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            let name = p.metadata.name.as_deref().unwrap_or_default();
            for i in 0..p.spec.rules.len().max(1) {
                by_id.insert(envoy_policy_id(ns, name, i), (p, i));
            }
        }
        PolicyIndex { by_id }
    }

    /// The policy and rule index for a key (CUSTOM prefix and bad-CUSTOM suffix allowed).
    fn lookup(&self, key: &str) -> Option<(&'a AuthorizationPolicy, usize)> {
        let key = key
            .strip_suffix("-deny-due-to-bad-CUSTOM-action")
            .unwrap_or(key);
        let mut from = 0;
        while let Some(at) = key[from..].find("ns[") {
            if let Some(hit) = self.by_id.get(&key[from + at..]) {
                return Some(*hit);
            }
            from += at + 3;
        }
        None
    }
}

fn rules_json(rules: &RbacRules, index: &PolicyIndex<'_>, tcp: bool) -> Value {
    let mut obj = serde_json::Map::new();
    if rules.action != meshpolicy::RbacAction::Allow {
        obj.insert("action".into(), json!(rules.action.as_str()));
    }
    if !rules.policies.is_empty() {
        let mut policies = serde_json::Map::new();
        for key in &rules.policies {
            let body = match index.lookup(key) {
                Some((p, i)) => policy_body(p, i, tcp),
                None => never_matches(),
            };
            policies.insert(key.clone(), body);
        }
        obj.insert("policies".into(), Value::Object(policies));
    }
    Value::Object(obj)
}

fn rbac_filter(r: &RbacFilter, index: &PolicyIndex<'_>, tcp: bool) -> Value {
    let mut typed = serde_json::Map::new();
    typed.insert(
        "@type".into(),
        json!(if tcp {
            NETWORK_RBAC_TYPE
        } else {
            HTTP_RBAC_TYPE
        }),
    );
    if let Some(rules) = &r.rules {
        typed.insert("rules".into(), rules_json(rules, index, tcp));
    }
    if let Some(shadow) = &r.shadow_rules {
        typed.insert("shadow_rules".into(), rules_json(shadow, index, tcp));
    }
    if let Some(p) = &r.stat_prefix {
        typed.insert("stat_prefix".into(), json!(p));
    }
    if let Some(p) = &r.shadow_rules_stat_prefix {
        typed.insert("shadow_rules_stat_prefix".into(), json!(p));
    }
    json!({"name": r.name, "typed_config": Value::Object(typed)})
}

fn ext_authz_filter(name: &str, provider: &str, stat_prefix: Option<&str>, tcp: bool) -> Value {
    // The provider's service comes from the mesh config, which meshsim does
    // not simulate: the cluster is named after the provider.
    let mut typed = json!({
        "@type": if tcp { NETWORK_EXT_AUTHZ_TYPE } else { HTTP_EXT_AUTHZ_TYPE },
        "grpc_service": {
            "envoy_grpc": {"cluster_name": format!("outbound|9191||{provider}"), "authority": provider},
            "timeout": "600s"
        },
        "transport_api_version": "V3",
        "filter_enabled_metadata": {
            "filter": if tcp { "envoy.filters.network.rbac" } else { "envoy.filters.http.rbac" },
            "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
            "value": {"string_match": {"prefix": "istio-ext-authz"}}
        }
    });
    if let (Some(p), Some(obj)) = (stat_prefix, typed.as_object_mut()) {
        obj.insert("stat_prefix".into(), json!(p));
    }
    json!({"name": name, "typed_config": typed})
}

/// A policy without rules: Istio's never-matching `rule[0]`.
fn never_matches() -> Value {
    json!({
        "permissions": [{"not_rule": {"any": true}}],
        "principals": [{"not_id": {"any": true}}]
    })
}

fn policy_body(p: &AuthorizationPolicy, index: usize, tcp: bool) -> Value {
    let Some(rule) = p.spec.rules.get(index) else {
        return never_matches();
    };
    let (permissions, principals) = rule_body(rule, tcp);
    json!({"permissions": permissions, "principals": principals})
}

/// Permissions and principals of one rule: one entry per `to` / `from`
/// (OR), each an AND of the fields set, with `when` conditions added to
/// every entry of the side they belong to.
fn rule_body(rule: &Rule, tcp: bool) -> (Vec<Value>, Vec<Value>) {
    let when_perm: Vec<Value> = rule
        .when
        .iter()
        .flat_map(|c| condition(c, tcp, Side::Permission))
        .collect();
    let when_princ: Vec<Value> = rule
        .when
        .iter()
        .flat_map(|c| condition(c, tcp, Side::Principal))
        .collect();
    let ops: Vec<Option<&Operation>> = if rule.to.is_empty() {
        vec![None]
    } else {
        rule.to.iter().map(|t| t.operation.as_ref()).collect()
    };
    let sources: Vec<Option<&Source>> = if rule.from.is_empty() {
        vec![None]
    } else {
        rule.from.iter().map(|f| f.source.as_ref()).collect()
    };
    let permissions = ops
        .into_iter()
        .map(|op| {
            let mut rules = op.map(|o| operation(o, tcp)).unwrap_or_default();
            rules.extend(when_perm.iter().cloned());
            if rules.is_empty() {
                rules.push(json!({"any": true}));
            }
            json!({"and_rules": {"rules": rules}})
        })
        .collect();
    let principals = sources
        .into_iter()
        .map(|s| {
            let mut ids = s.map(|s| source(s, tcp)).unwrap_or_default();
            ids.extend(when_princ.iter().cloned());
            if ids.is_empty() {
                ids.push(json!({"any": true}));
            }
            json!({"and_ids": {"ids": ids}})
        })
        .collect();
    (permissions, principals)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Permission,
    Principal,
}

/// Istio's string matcher: `*` any non-empty, `x*` prefix, `*x` suffix, else exact.
fn string_match(v: &str, prefix: &str) -> Value {
    if v == "*" {
        json!({"safe_regex": {"regex": ".+"}})
    } else if let Some(rest) = v.strip_prefix('*') {
        if prefix.is_empty() {
            json!({"suffix": rest})
        } else {
            json!({"safe_regex": {"regex": format!("{prefix}.*{}", regex_escape(rest))}})
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        json!({"prefix": format!("{prefix}{rest}")})
    } else {
        json!({"exact": format!("{prefix}{v}")})
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn peer_principal(m: Value) -> Value {
    json!({"filter_state": {"key": "io.istio.peer_principal", "string_match": m}})
}

fn principal_id(v: &str) -> Value {
    peer_principal(string_match(v, "spiffe://"))
}

fn namespace_id(ns: &str) -> Value {
    let ns = regex_escape(ns).replace("\\*", ".*");
    peer_principal(json!({"safe_regex": {"regex": format!(".*/ns/{ns}/.*")}}))
}

fn cidr(v: &str) -> Option<Value> {
    let net: IpNet = v
        .parse()
        .ok()
        .or_else(|| v.parse::<std::net::IpAddr>().ok().map(IpNet::from))?;
    Some(json!({"address_prefix": net.addr().to_string(), "prefix_len": net.prefix_len()}))
}

fn metadata_id(path: &[&str], v: &str) -> Value {
    json!({"metadata": {
        "filter": "istio_authn",
        "path": path.iter().map(|k| json!({"key": k})).collect::<Vec<_>>(),
        "value": {"string_match": string_match(v, "")}
    }})
}

fn header_rule(name: &str, v: &str) -> Value {
    if v == "*" {
        json!({"header": {"name": name, "present_match": true}})
    } else if let Some(rest) = v.strip_prefix('*') {
        json!({"header": {"name": name, "suffix_match": rest}})
    } else if let Some(rest) = v.strip_suffix('*') {
        json!({"header": {"name": name, "prefix_match": rest}})
    } else {
        json!({"header": {"name": name, "exact_match": v}})
    }
}

fn path_rule(v: &str) -> Value {
    json!({"url_path": {"path": string_match(v, "")}})
}

fn host_rule(v: &str) -> Value {
    let mut m = string_match(&v.to_ascii_lowercase(), "");
    if let Some(obj) = m.as_object_mut() {
        obj.insert("ignore_case".into(), json!(true));
    }
    json!({"header": {"name": ":authority", "string_match": m}})
}

fn port_rule(v: &str) -> Option<Value> {
    v.parse::<u16>()
        .ok()
        .map(|p| json!({"destination_port": p}))
}

/// `or_rules`/`or_ids` of `values`, and `not_rule`/`not_id` of `not_values`.
fn pair(
    out: &mut Vec<Value>,
    side: Side,
    values: &[String],
    not_values: &[String],
    f: impl Fn(&str) -> Option<Value>,
) {
    let (or_key, list_key, not_key) = match side {
        Side::Permission => ("or_rules", "rules", "not_rule"),
        Side::Principal => ("or_ids", "ids", "not_id"),
    };
    let build = |vals: &[String]| -> Option<Value> {
        let items: Vec<Value> = vals.iter().filter_map(|v| f(v)).collect();
        (!items.is_empty()).then(|| json!({or_key: {list_key: items}}))
    };
    if let Some(v) = build(values) {
        out.push(v);
    }
    if let Some(v) = build(not_values) {
        out.push(json!({not_key: v}));
    }
}

fn operation(o: &Operation, tcp: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let p = Side::Permission;
    if !tcp {
        pair(&mut out, p, &o.hosts, &o.not_hosts, |v| Some(host_rule(v)));
        pair(&mut out, p, &o.methods, &o.not_methods, |v| {
            Some(header_rule(":method", v))
        });
        pair(&mut out, p, &o.paths, &o.not_paths, |v| Some(path_rule(v)));
    }
    pair(&mut out, p, &o.ports, &o.not_ports, port_rule);
    out
}

fn source(s: &Source, tcp: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let p = Side::Principal;
    pair(&mut out, p, &s.principals, &s.not_principals, |v| {
        Some(principal_id(v))
    });
    if !tcp {
        pair(
            &mut out,
            p,
            &s.request_principals,
            &s.not_request_principals,
            |v| Some(metadata_id(&["request.auth.principal"], v)),
        );
    }
    pair(&mut out, p, &s.namespaces, &s.not_namespaces, |v| {
        Some(namespace_id(v))
    });
    pair(
        &mut out,
        p,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        |v| cidr(v).map(|c| json!({"remote_ip": c})),
    );
    pair(&mut out, p, &s.ip_blocks, &s.not_ip_blocks, |v| {
        cidr(v).map(|c| json!({"direct_remote_ip": c}))
    });
    out
}

/// A `when` condition on the side it belongs to (empty on the other side,
/// and for HTTP-only keys on TCP chains).
fn condition(c: &Condition, tcp: bool, side: Side) -> Vec<Value> {
    let key = c.key.as_str();
    let http_only = key.starts_with("request.") || key.starts_with("experimental.");
    if tcp && http_only {
        return Vec::new();
    }
    let principal_side = matches!(
        key,
        "source.ip" | "remote.ip" | "source.namespace" | "source.principal"
    ) || key.starts_with("request.auth.");
    if principal_side != (side == Side::Principal) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (values, not_values) = (&c.values, &c.not_values);
    match key {
        "source.ip" => pair(&mut out, side, values, not_values, |v| {
            cidr(v).map(|c| json!({"direct_remote_ip": c}))
        }),
        "remote.ip" => pair(&mut out, side, values, not_values, |v| {
            cidr(v).map(|c| json!({"remote_ip": c}))
        }),
        "source.namespace" => pair(&mut out, side, values, not_values, |v| {
            Some(namespace_id(v))
        }),
        "source.principal" => pair(&mut out, side, values, not_values, |v| {
            Some(principal_id(v))
        }),
        "destination.ip" => pair(&mut out, side, values, not_values, |v| {
            cidr(v).map(|c| json!({"destination_ip": c}))
        }),
        "destination.port" => pair(&mut out, side, values, not_values, port_rule),
        "connection.sni" => pair(&mut out, side, values, not_values, |v| {
            Some(json!({"requested_server_name": string_match(v, "")}))
        }),
        _ => {
            if let Some(header) = key
                .strip_prefix("request.headers[")
                .and_then(|h| h.strip_suffix(']'))
            {
                pair(&mut out, side, values, not_values, |v| {
                    Some(header_rule(header, v))
                });
            } else if let Some(attr) = key.strip_prefix("request.auth.") {
                let path: Vec<&str> = match attr.strip_prefix("claims[") {
                    Some(rest) => std::iter::once("request.auth.claims")
                        .chain(rest.trim_end_matches(']').split("]["))
                        .collect(),
                    None => vec![key],
                };
                pair(&mut out, side, values, not_values, |v| {
                    Some(metadata_id(&path, v))
                });
            } else if let Some(rest) = key.strip_prefix("experimental.") {
                let (filter, path) = rest.split_once('[').unwrap_or((rest, ""));
                let path = path.trim_end_matches(']');
                pair(&mut out, side, values, not_values, |v| {
                    Some(json!({"metadata": {
                        "filter": filter,
                        "path": [{"key": path}],
                        "value": {"string_match": string_match(v, "")}
                    }}))
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> AuthorizationPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn walkthrough_deny_all() {
        let p = policy(
            "metadata: {name: deny-all-ingress-using-authorizationpolicy, namespace: np-test-2}\nspec: {action: DENY, rules: [{}]}",
        );
        let http = filters(std::slice::from_ref(&p), false);
        assert_eq!(http.len(), 1);
        let t = &http[0]["typed_config"];
        assert_eq!(http[0]["name"], "envoy.filters.http.rbac");
        assert_eq!(t["rules"]["action"], "DENY");
        let body = &t["rules"]["policies"]["ns[np-test-2]-policy[deny-all-ingress-using-authorizationpolicy]-rule[0]"];
        assert_eq!(
            body["permissions"],
            json!([{"and_rules": {"rules": [{"any": true}]}}])
        );
        assert_eq!(
            body["principals"],
            json!([{"and_ids": {"ids": [{"any": true}]}}])
        );
        assert_eq!(t["shadow_rules_stat_prefix"], "istio_dry_run_allow_");
        let tcp = filters(&[p], true);
        assert_eq!(tcp[0]["name"], "envoy.filters.network.rbac");
        assert_eq!(tcp[0]["typed_config"]["stat_prefix"], "tcp.");
    }

    #[test]
    fn allow_with_only_http_fields_is_empty_on_tcp() {
        let p = policy(
            "metadata: {name: get-only, namespace: foo}\nspec: {rules: [{to: [{operation: {methods: [GET], paths: ['/info*']}}]}]}",
        );
        let tcp = filters(std::slice::from_ref(&p), true);
        assert_eq!(tcp[0]["typed_config"]["rules"], json!({}));
        let http = filters(&[p], false);
        let rules = &http[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[get-only]-rule[0]"]
            ["permissions"][0]["and_rules"]["rules"];
        assert_eq!(
            rules[0],
            json!({"or_rules": {"rules": [{"header": {"name": ":method", "exact_match": "GET"}}]}})
        );
        assert_eq!(
            rules[1],
            json!({"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/info"}}}]}})
        );
    }

    #[test]
    fn sources_and_conditions() {
        let p = policy(
            "metadata: {name: p, namespace: foo}\nspec:\n  rules:\n  - from: [{source: {namespaces: [ns-1], notIpBlocks: [10.0.0.0/8]}}]\n    when: [{key: source.principal, values: ['cluster.local/ns/a/sa/b']}, {key: destination.port, values: ['8080']}]",
        );
        let http = filters(&[p], false);
        let body = &http[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"];
        let ids = &body["principals"][0]["and_ids"]["ids"];
        assert_eq!(
            ids[0]["or_ids"]["ids"][0]["filter_state"]["string_match"]["safe_regex"]["regex"],
            ".*/ns/ns-1/.*"
        );
        assert_eq!(
            ids[1]["not_id"]["or_ids"]["ids"][0]["direct_remote_ip"],
            json!({"address_prefix": "10.0.0.0", "prefix_len": 8})
        );
        assert_eq!(
            ids[2]["or_ids"]["ids"][0]["filter_state"]["string_match"]["exact"],
            "spiffe://cluster.local/ns/a/sa/b"
        );
        assert_eq!(
            body["permissions"][0]["and_rules"]["rules"][0],
            json!({"or_rules": {"rules": [{"destination_port": 8080}]}})
        );
    }

    #[test]
    fn no_rules_never_match_and_dry_run_is_shadow() {
        let p = policy(
            "metadata: {name: none, namespace: foo, annotations: {istio.io/dry-run: 'true'}}\nspec: {}",
        );
        let http = filters(&[p], false);
        let t = &http[0]["typed_config"];
        assert!(t.get("rules").is_none());
        assert_eq!(
            t["shadow_rules"]["policies"]["ns[foo]-policy[none]-rule[0]"]["permissions"],
            json!([{"not_rule": {"any": true}}])
        );
    }
}
