//! Envoy `/config_dump` analysis: what istioctl's `x authz check` prints, and what it
//! throws away.
//!
//! `kubectl authzcheck` must work without istioctl, so it reproduces istioctl's table
//! from the dump (the algorithm is in `tests/fixtures/README.md`: dynamic listeners
//! only, HTTP and network RBAC filters, CUSTOM from `istio-ext-authz-` shadow rules,
//! `_anonymous_match_nothing_` for filters without policies, rows ordered DENY, ALLOW,
//! LOG, CUSTOM and sorted by name). It also keeps what the table hides: dry-run shadow
//! rules, the CUSTOM provider, the listener / filter chain / port of every policy, and
//! why each `_anonymous_match_nothing_` exists, since those decide whether traffic is
//! really denied. Input is Envoy's snake_case JSON; camelCase (protojson, as in
//! Istio's builder test data) is accepted everywhere, as JSON or YAML. serde_json's
//! recursion limit (128) stays on, so deeply nested input is an error, not a crash.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::authz_table::{ANONYMOUS_NAME, AuthzAction, AuthzRow, render_authz_table};
use super::policy_id::{CUSTOM_PREFIX, PolicyId};
use super::rbac_log::FilterKind;

/// Why a config dump could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigDumpError {
    /// Not JSON at all (or nested deeper than 128 levels).
    #[error("config dump is not valid JSON: {0}")]
    NotJson(String),
    /// Neither JSON nor YAML.
    #[error("filter config is neither JSON nor YAML: {0}")]
    NotYaml(String),
    /// No ListenersConfigDump or no dynamic listeners in it.
    #[error("config dump has no dynamic listeners: is this an Envoy /config_dump?")]
    NoDynamicListeners,
    /// Neither static nor dynamic listeners in the ListenersConfigDump.
    #[error("config dump has no listeners: is this an Envoy /config_dump?")]
    NoListeners,
    /// A single-filter input that holds no Envoy filter.
    #[error("no Envoy filter config found (expected `name` and `typed_config`/`typedConfig`)")]
    NotAFilterConfig,
}

/// Which rule set of an RBAC filter a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// `rules`: enforced.
    Rules,
    /// `shadow_rules`: dry-run or CUSTOM (only logged by the RBAC filter).
    ShadowRules,
}

/// Why istioctl shows `_anonymous_match_nothing_` for a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousOrigin {
    /// `rules` is present with no policies: with action ALLOW, Envoy denies everything
    /// on this filter chain (e.g. an ALLOW policy with only HTTP fields on a TCP chain).
    EmptyRuleSet,
    /// `rules` is absent and the shadow rules are dry-run only: no enforcement.
    DryRunOnly,
    /// `rules` is absent and the shadow rules are CUSTOM only: the RBAC filter enforces
    /// nothing (the ext_authz filter does the work).
    CustomOnly,
    /// Neither `rules` nor shadow policies: the filter enforces nothing.
    NoRules,
}

/// One policy (or anonymous entry) of one RBAC filter, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyOccurrence {
    /// The action: the rule set's action, or CUSTOM for `istio-ext-authz-` shadow rules.
    pub action: AuthzAction,
    /// The name as istioctl prints it (`NAME.NS`, `_anonymous_match_nothing_`, or empty
    /// when the key does not follow Istio's naming).
    pub policy: String,
    /// The decoded policy key; `None` for anonymous entries.
    pub id: Option<PolicyId>,
    /// `rules` or `shadow_rules`.
    pub source: RuleSource,
    /// A dry-run policy (shadow, not CUSTOM): istioctl does not show it.
    pub dry_run: bool,
    /// CUSTOM provider named in the key, if any.
    pub provider: Option<String>,
    /// For `_anonymous_match_nothing_`: why it is there.
    pub anonymous: Option<AnonymousOrigin>,
    /// HTTP or network RBAC filter.
    pub filter: FilterKind,
    /// Listener name (`virtualInbound`...); `None` for a bare filter config.
    pub listener: Option<String>,
    /// Listener address.
    pub address: Option<String>,
    /// Listener port.
    pub port: Option<u32>,
    /// Index of the filter chain in the listener.
    pub filter_chain_index: Option<usize>,
    /// Name of the filter chain, if it has one.
    pub filter_chain_name: Option<String>,
}

/// The analysis of a config dump or filter config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzReport {
    /// Exactly istioctl's rows, in its order.
    pub rows: Vec<AuthzRow>,
    /// Every policy of every RBAC filter, including dry-run ones, with provenance.
    pub occurrences: Vec<PolicyOccurrence>,
    /// Dynamic listeners read.
    pub listeners: usize,
    /// RBAC filters found.
    pub rbac_filters: usize,
}

impl AuthzReport {
    /// The table istioctl prints for this dump.
    pub fn render(&self) -> String {
        render_authz_table(&self.rows)
    }
}

/// Field lookup accepting Envoy's snake_case and protojson's camelCase.
fn field<'a>(v: &'a Value, snake: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    if let Some(x) = obj.get(snake) {
        return Some(x);
    }
    if !snake.contains('_') {
        return None;
    }
    let mut camel = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            camel.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            camel.push(c);
        }
    }
    obj.get(&camel)
}

fn array<'a>(v: &'a Value, snake: &str) -> &'a [Value] {
    field(v, snake)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn string(v: &Value, snake: &str) -> Option<String> {
    field(v, snake).and_then(Value::as_str).map(str::to_owned)
}

/// The action of a rule set (`ALLOW` when absent; numbers as in the proto enum).
fn rules_action(rules: Option<&Value>) -> AuthzAction {
    match rules.and_then(|r| field(r, "action")) {
        Some(Value::String(s)) => match s.as_str() {
            "DENY" => AuthzAction::Deny,
            "LOG" => AuthzAction::Log,
            _ => AuthzAction::Allow,
        },
        Some(Value::Number(n)) => match n.as_u64() {
            Some(1) => AuthzAction::Deny,
            Some(2) => AuthzAction::Log,
            _ => AuthzAction::Allow,
        },
        _ => AuthzAction::Allow,
    }
}

fn policies(rules: Option<&Value>) -> Option<&Map<String, Value>> {
    rules
        .and_then(|r| field(r, "policies"))
        .and_then(Value::as_object)
}

/// Where a filter sits.
#[derive(Debug, Clone, Default)]
struct Place {
    listener: Option<String>,
    address: Option<String>,
    port: Option<u32>,
    chain_index: Option<usize>,
    chain_name: Option<String>,
}

/// Accumulates istioctl's maps and our occurrences.
#[derive(Debug, Default)]
struct Collector {
    action_to_policy: BTreeMap<AuthzAction, BTreeSet<String>>,
    policy_to_rule: BTreeMap<String, BTreeSet<String>>,
    occurrences: Vec<PolicyOccurrence>,
    rbac_filters: usize,
}

impl Collector {
    fn add(&mut self, action: AuthzAction, name: &str, rule: &str) {
        self.action_to_policy
            .entry(action)
            .or_default()
            .insert(name.to_owned());
        self.policy_to_rule
            .entry(name.to_owned())
            .or_default()
            .insert(rule.to_owned());
    }

    fn rbac_filter(&mut self, kind: FilterKind, typed: &Value, place: &Place) {
        self.rbac_filters += 1;
        let rules = field(typed, "rules");
        let shadow = field(typed, "shadow_rules");
        let action = rules_action(rules);
        let occurrence = |action, policy: String, id: Option<PolicyId>, source, anonymous| {
            let dry_run = source == RuleSource::ShadowRules && action != AuthzAction::Custom;
            PolicyOccurrence {
                action,
                provider: id.as_ref().and_then(|i: &PolicyId| i.provider.clone()),
                policy,
                id,
                source,
                dry_run,
                anonymous,
                filter: kind,
                listener: place.listener.clone(),
                address: place.address.clone(),
                port: place.port,
                filter_chain_index: place.chain_index,
                filter_chain_name: place.chain_name.clone(),
            }
        };
        let enforced = policies(rules);
        for key in enforced.into_iter().flat_map(Map::keys) {
            let id = PolicyId::parse(key);
            let name = id.istioctl_name();
            self.add(action, &name, id.rule.as_deref().unwrap_or(""));
            self.occurrences
                .push(occurrence(action, name, Some(id), RuleSource::Rules, None));
        }
        let shadow_action = rules_action(shadow);
        let shadow_keys: Vec<&String> = policies(shadow).into_iter().flat_map(Map::keys).collect();
        if enforced.is_none_or(Map::is_empty) {
            let origin = if rules.is_some() {
                AnonymousOrigin::EmptyRuleSet
            } else if shadow_keys.iter().any(|k| k.starts_with(CUSTOM_PREFIX)) {
                AnonymousOrigin::CustomOnly
            } else if !shadow_keys.is_empty() {
                AnonymousOrigin::DryRunOnly
            } else {
                AnonymousOrigin::NoRules
            };
            self.add(action, ANONYMOUS_NAME, "0");
            self.occurrences.push(occurrence(
                action,
                ANONYMOUS_NAME.to_owned(),
                None,
                RuleSource::Rules,
                Some(origin),
            ));
        }
        for key in shadow_keys {
            let id = PolicyId::parse(key);
            let name = id.istioctl_name();
            if id.custom {
                self.add(AuthzAction::Custom, &name, id.rule.as_deref().unwrap_or(""));
                self.occurrences.push(occurrence(
                    AuthzAction::Custom,
                    name,
                    Some(id),
                    RuleSource::ShadowRules,
                    None,
                ));
            } else {
                self.occurrences.push(occurrence(
                    shadow_action,
                    name,
                    Some(id),
                    RuleSource::ShadowRules,
                    None,
                ));
            }
        }
    }

    /// One listener filter (network level): RBAC, or an HTTP connection manager.
    fn network_filter(&mut self, filter: &Value, place: &Place) {
        let name = string(filter, "name").unwrap_or_default();
        let Some(typed) = field(filter, "typed_config") else {
            return;
        };
        match name.as_str() {
            "envoy.filters.network.http_connection_manager" | "envoy.http_connection_manager" => {
                for http in array(typed, "http_filters") {
                    if string(http, "name").as_deref() == Some("envoy.filters.http.rbac")
                        && let Some(t) = field(http, "typed_config")
                    {
                        self.rbac_filter(FilterKind::Http, t, place);
                    }
                }
            }
            "envoy.filters.network.rbac" => self.rbac_filter(FilterKind::Network, typed, place),
            "envoy.filters.http.rbac" => self.rbac_filter(FilterKind::Http, typed, place),
            _ => {}
        }
    }

    fn finish(self, listeners: usize) -> AuthzReport {
        let mut rows = Vec::new();
        for action in [
            AuthzAction::Deny,
            AuthzAction::Allow,
            AuthzAction::Log,
            AuthzAction::Custom,
        ] {
            // BTreeSet<String> iterates in bytewise order, as Go's sort.Strings does.
            for name in self.action_to_policy.get(&action).into_iter().flatten() {
                let rules = self.policy_to_rule.get(name).map_or(0, BTreeSet::len);
                rows.push(AuthzRow::new(
                    action,
                    name,
                    u32::try_from(rules).unwrap_or(u32::MAX),
                ));
            }
        }
        AuthzReport {
            rows,
            occurrences: self.occurrences,
            listeners,
            rbac_filters: self.rbac_filters,
        }
    }
}

fn is_listeners_dump(v: &Value) -> bool {
    field(v, "@type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with(".ListenersConfigDump"))
}

/// Analyses an Envoy `/config_dump` (JSON) as `istioctl x authz check -f` does:
/// dynamic listeners only.
pub fn analyze_config_dump(json: &[u8]) -> Result<AuthzReport, ConfigDumpError> {
    analyze(json, false)
}

/// Analyses every listener of an Envoy `/config_dump`, static ones too: what
/// the proxy enforces, whichever way its listeners were loaded (a sidecar's come
/// from xDS, a bootstrap-configured Envoy's are static). authzcheck uses this.
pub fn analyze_config_dump_all(json: &[u8]) -> Result<AuthzReport, ConfigDumpError> {
    analyze(json, true)
}

fn analyze(json: &[u8], with_static: bool) -> Result<AuthzReport, ConfigDumpError> {
    let dump: Value =
        serde_json::from_slice(json).map_err(|e| ConfigDumpError::NotJson(e.to_string()))?;
    let listeners_dump = if is_listeners_dump(&dump) {
        Some(&dump)
    } else {
        array(&dump, "configs")
            .iter()
            .find(|c| is_listeners_dump(c))
    };
    let dynamic = listeners_dump.map_or(&[][..], |d| array(d, "dynamic_listeners"));
    let statics = if with_static {
        listeners_dump.map_or(&[][..], |d| array(d, "static_listeners"))
    } else {
        &[][..]
    };
    if dynamic.is_empty() && statics.is_empty() {
        return Err(if with_static {
            ConfigDumpError::NoListeners
        } else {
            ConfigDumpError::NoDynamicListeners
        });
    }
    let mut c = Collector::default();
    let listeners = dynamic
        .iter()
        .map(|dl| {
            (
                dl,
                field(dl, "active_state").and_then(|s| field(s, "listener")),
            )
        })
        .chain(statics.iter().map(|sl| (sl, field(sl, "listener"))));
    for (dl, listener) in listeners {
        let Some(listener) = listener else {
            continue;
        };
        let socket = field(listener, "address").and_then(|a| field(a, "socket_address"));
        let base = Place {
            listener: string(listener, "name").or_else(|| string(dl, "name")),
            address: socket.and_then(|s| string(s, "address")),
            port: socket
                .and_then(|s| field(s, "port_value"))
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
            chain_index: None,
            chain_name: None,
        };
        for (i, chain) in array(listener, "filter_chains").iter().enumerate() {
            let place = Place {
                chain_index: Some(i),
                chain_name: string(chain, "name"),
                ..base.clone()
            };
            for filter in array(chain, "filters") {
                c.network_filter(filter, &place);
            }
        }
    }
    Ok(c.finish(dynamic.len() + statics.len()))
}

/// The nesting limit, as serde_json's default recursion limit.
const MAX_DEPTH: usize = 128;

/// `true` when `{`/`[` nest deeper than `limit` (quotes are not interpreted, so
/// brackets inside strings count too: conservative, and linear).
fn flow_depth_exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Analyses one Envoy filter config, or a list of them, in JSON or YAML (camelCase or
/// snake_case), as if they formed one filter chain. Accepts RBAC filters, HTTP
/// connection managers, and Istio's builder test outputs.
pub fn analyze_filter_config(text: &[u8]) -> Result<AuthzReport, ConfigDumpError> {
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        // Input that starts like JSON is JSON: its error is the useful one.
        Err(e) if text.trim_ascii_start().starts_with(b"{") => {
            return Err(ConfigDumpError::NotJson(e.to_string()));
        }
        Err(e) if text.trim_ascii_start().starts_with(b"[") => {
            return Err(ConfigDumpError::NotJson(e.to_string()));
        }
        Err(_) => {
            // The YAML parser is superlinear on deeply nested flow collections
            // (`{a: {a: ...`): refuse those before parsing, as serde_json does.
            if flow_depth_exceeds(text, MAX_DEPTH) {
                return Err(ConfigDumpError::NotYaml(format!(
                    "nested deeper than {MAX_DEPTH} levels"
                )));
            }
            let s = String::from_utf8_lossy(text);
            serde_yaml_ng::from_str(&s).map_err(|e| ConfigDumpError::NotYaml(e.to_string()))?
        }
    };
    let filters: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut c = Collector::default();
    let place = Place {
        chain_index: Some(0),
        ..Place::default()
    };
    let mut any = false;
    for f in filters {
        if field(f, "name").is_some() && field(f, "typed_config").is_some() {
            any = true;
            c.network_filter(f, &place);
        }
    }
    if !any {
        return Err(ConfigDumpError::NotAFilterConfig);
    }
    Ok(c.finish(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_origins_and_rows() {
        let dump = serde_json::json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"name": "l", "active_state": {"listener": {
                "name": "virtualInbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                "filter_chains": [
                    {"filters": [{"name": "envoy.filters.network.rbac",
                        "typed_config": {"rules": {}}}]},
                    {"filters": [{"name": "envoy.filters.network.rbac",
                        "typed_config": {"shadow_rules": {"action": "DENY", "policies": {
                            "ns[a]-policy[dry]-rule[0]": {}}}}}]},
                    {"filters": [{"name": "envoy.filters.network.rbac",
                        "typed_config": {"rules": {"action": "DENY", "policies": {
                            "ns[a]-policy[deny]-rule[0]": {}, "ns[a]-policy[deny]-rule[1]": {}}}}}]}
                ]}}}]
        }]});
        let report = analyze_config_dump(dump.to_string().as_bytes()).unwrap();
        let origins: Vec<_> = report
            .occurrences
            .iter()
            .filter_map(|o| o.anonymous)
            .collect();
        assert_eq!(
            origins,
            vec![AnonymousOrigin::EmptyRuleSet, AnonymousOrigin::DryRunOnly]
        );
        let dry: Vec<_> = report.occurrences.iter().filter(|o| o.dry_run).collect();
        assert_eq!(dry.len(), 1);
        assert_eq!(dry[0].action, AuthzAction::Deny);
        assert_eq!(dry[0].filter_chain_index, Some(1));
        assert_eq!(dry[0].port, Some(15006));
        let table: Vec<_> = report
            .rows
            .iter()
            .map(|r| (r.action, r.policy.as_str(), r.rules))
            .collect();
        assert_eq!(
            table,
            vec![
                (AuthzAction::Deny, "deny.a", 2),
                (AuthzAction::Allow, ANONYMOUS_NAME, 1)
            ]
        );
    }

    #[test]
    fn static_listeners_count_for_authzcheck_not_for_istioctl() {
        let dump = serde_json::json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "static_listeners": [{"listener": {"name": "inbound", "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"http_filters": [{
                    "name": "envoy.filters.http.rbac",
                    "typed_config": {"rules": {"action": "DENY", "policies": {
                        "ns[foo]-policy[deny-admin]-rule[0]": {}
                    }}}
                }]}
            }]}]}}]
        }]})
        .to_string();
        assert!(matches!(
            analyze_config_dump(dump.as_bytes()),
            Err(ConfigDumpError::NoDynamicListeners)
        ));
        let report = analyze_config_dump_all(dump.as_bytes()).unwrap();
        assert!(
            report.render().contains("deny-admin.foo"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn errors_are_clear() {
        assert!(matches!(
            analyze_config_dump(b"not json"),
            Err(ConfigDumpError::NotJson(_))
        ));
        let err = analyze_config_dump(br#"{"configs": []}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config dump has no dynamic listeners: is this an Envoy /config_dump?"
        );
        assert_eq!(
            analyze_filter_config(b"a: 1"),
            Err(ConfigDumpError::NotAFilterConfig)
        );
    }
}
