//! Turning what Envoy loaded into a [`ProxyView`]: from istioctl's table, or
//! from a config dump (through exec or a file), with what istioctl hides.
//!
//! istioctl's `x authz check` table drops dry-run policies, CUSTOM providers
//! and every hint about why `_anonymous_match_nothing_` is there
//! (istio/istio#37364). The config dump analysis in crates/meshpolicy keeps
//! them; this module reduces both sources to the same rows (so `--native`
//! and istioctl agree) plus the hidden parts, and classifies istioctl's
//! failures, including an istioctl too old to know `x authz check`.

use std::collections::{BTreeMap, BTreeSet};

use meshpolicy::envoy::{
    AnonymousOrigin, AuthzAction, AuthzReport, AuthzRow, AuthzTableError, PolicyOccurrence,
    parse_authz_check,
};

use crate::error::CheckError;
use crate::report::{AnonymousEntry, HiddenPolicy, ProxyRow, ProxySource, ProxyView};

fn row(r: &AuthzRow) -> ProxyRow {
    ProxyRow {
        action: r.action.as_str().to_string(),
        policy: r.name.clone(),
        namespace: r.namespace.clone(),
        rules: r.rules,
    }
}

/// The view from `istioctl x authz check` output.
pub fn from_istioctl(stdout: &str, detail: String) -> Result<ProxyView, CheckError> {
    let rows = parse_authz_check(stdout).map_err(|e| match e {
        AuthzTableError::Unsupported { .. } => CheckError::IstioctlTooOld {
            detail: "it printed the per-listener table of istioctl before 1.7.1".into(),
        },
        other => CheckError::IstioctlOutput(other.to_string()),
    })?;
    let anonymous = rows
        .iter()
        .filter(|r| r.is_anonymous())
        .map(|r| AnonymousEntry {
            action: r.action.as_str().to_string(),
            origin: "unknown".into(),
            location: None,
            explanation: anonymous_unknown(r.action),
        })
        .collect();
    Ok(ProxyView {
        source: ProxySource::Istioctl,
        detail,
        rows: rows.iter().map(row).collect(),
        hidden: None,
        anonymous,
    })
}

/// Recognises istioctl's complaint about an unknown `x`/`authz`/`check`
/// subcommand: that istioctl predates `x authz check`.
pub fn is_unknown_command(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "unknown command \"authz\"",
        "unknown command \"x\"",
        "unknown command \"check\"",
    ]
    .iter()
    .any(|p| s.contains(p))
        || (s.contains("unknown command") && s.contains("authz"))
}

fn anonymous_unknown(action: AuthzAction) -> String {
    format!(
        "{action} _anonymous_match_nothing_ is an RBAC filter without named policies: an empty {action} rule set (ALLOW: denies every request on that filter chain, e.g. ALLOW policies that only have HTTP fields on a TCP port), or a filter holding only dry-run or CUSTOM shadow rules (enforces nothing); run with --native to see which"
    )
}

fn location(o: &PolicyOccurrence) -> Option<String> {
    let listener = o.listener.as_deref()?;
    let mut s = listener.to_string();
    if let Some(p) = o.port {
        s.push_str(&format!(":{p}"));
    }
    if let Some(i) = o.filter_chain_index {
        match &o.filter_chain_name {
            Some(n) if !n.is_empty() => s.push_str(&format!(" chain {n}")),
            _ => s.push_str(&format!(" chain #{i}")),
        }
    }
    Some(s)
}

fn filter_word(o: &PolicyOccurrence) -> &'static str {
    match o.filter {
        meshpolicy::envoy::FilterKind::Http => "http",
        meshpolicy::envoy::FilterKind::Network => "network",
    }
}

/// What an `_anonymous_match_nothing_` of this origin means.
pub fn explain_anonymous(action: AuthzAction, origin: AnonymousOrigin) -> String {
    match origin {
        AnonymousOrigin::EmptyRuleSet if action == AuthzAction::Allow => "an ALLOW rule set with no policies: Envoy denies every request on this filter chain (Istio builds it when ALLOW policies apply but none translates for this chain, e.g. only HTTP fields on a TCP port)".into(),
        AnonymousOrigin::EmptyRuleSet => format!("a {action} rule set with no policies: matches nothing, so it has no effect"),
        AnonymousOrigin::DryRunOnly => "the filter holds only dry-run (shadow) policies: nothing is enforced here; istioctl prints this row for them (istio/istio#37364)".into(),
        AnonymousOrigin::CustomOnly => "the filter holds only CUSTOM (ext-authz) shadow rules: the RBAC filter enforces nothing, the ext_authz filter decides".into(),
        AnonymousOrigin::NoRules => "the RBAC filter has no rules at all: it enforces nothing".into(),
    }
}

fn origin_word(o: AnonymousOrigin) -> &'static str {
    match o {
        AnonymousOrigin::EmptyRuleSet => "empty_rule_set",
        AnonymousOrigin::DryRunOnly => "dry_run_only",
        AnonymousOrigin::CustomOnly => "custom_only",
        AnonymousOrigin::NoRules => "no_rules",
    }
}

/// Dry-run and CUSTOM policies from the occurrences, one entry per policy and kind.
pub fn hidden_policies(report: &AuthzReport) -> Vec<HiddenPolicy> {
    type Key = (String, String, Option<String>, String, Option<String>);
    let mut acc: BTreeMap<Key, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for o in &report.occurrences {
        let custom = o.action == AuthzAction::Custom;
        if !(o.dry_run || custom) || o.anonymous.is_some() {
            continue;
        }
        let id = o.id.as_ref();
        let name = id
            .and_then(|i| i.name.clone())
            .unwrap_or_else(|| o.policy.clone());
        let ns = id.and_then(|i| i.namespace.clone());
        let kind = if o.dry_run { "dry-run" } else { "custom" };
        let provider = o
            .provider
            .clone()
            .or_else(|| id.and_then(|i| i.provider.clone()));
        let key = (
            o.action.as_str().to_string(),
            name,
            ns,
            kind.to_string(),
            provider,
        );
        let entry = acc.entry(key).or_default();
        if let Some(rule) = id.and_then(|i| i.rule.clone()) {
            entry.0.insert(rule);
        }
        let mut w = filter_word(o).to_string();
        if let Some(l) = location(o) {
            w.push(' ');
            w.push_str(&l);
        }
        entry.1.insert(w);
    }
    acc.into_iter()
        .map(
            |((action, policy, namespace, kind, provider), (rules, where_))| HiddenPolicy {
                action,
                policy,
                namespace,
                kind,
                provider,
                rules: u32::try_from(rules.len()).unwrap_or(u32::MAX),
                where_: where_.into_iter().collect(),
            },
        )
        .collect()
}

/// The view from a config dump analysis.
pub fn from_config_dump(report: &AuthzReport, detail: String) -> ProxyView {
    let mut anonymous: Vec<AnonymousEntry> = Vec::new();
    for o in &report.occurrences {
        let Some(origin) = o.anonymous else { continue };
        let e = AnonymousEntry {
            action: o.action.as_str().to_string(),
            origin: origin_word(origin).to_string(),
            location: location(o).map(|l| format!("{} {l}", filter_word(o))),
            explanation: explain_anonymous(o.action, origin),
        };
        if !anonymous.contains(&e) {
            anonymous.push(e);
        }
    }
    ProxyView {
        source: ProxySource::ConfigDump,
        detail,
        rows: report.rows.iter().map(row).collect(),
        hidden: Some(hidden_policies(report)),
        anonymous,
    }
}

/// A view saying why nothing could be read.
pub fn unavailable(detail: impl Into<String>) -> ProxyView {
    ProxyView {
        source: ProxySource::Unavailable,
        detail: detail.into(),
        rows: Vec::new(),
        hidden: None,
        anonymous: Vec::new(),
    }
}

/// Adds what only a config dump shows (hidden policies, anonymous origins) to
/// an istioctl view, keeping istioctl's rows.
pub fn enrich(mut view: ProxyView, dump: &AuthzReport) -> ProxyView {
    let from_dump = from_config_dump(dump, String::new());
    view.hidden = from_dump.hidden;
    if !from_dump.anonymous.is_empty() {
        view.anonymous = from_dump.anonymous;
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshpolicy::envoy::analyze_config_dump;

    fn dump() -> serde_json::Value {
        serde_json::json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{"name": "l", "active_state": {"listener": {
                "name": "virtualInbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                "filter_chains": [
                    {"filters": [{"name": "envoy.filters.network.rbac",
                        "typed_config": {"rules": {}}}]},
                    {"filters": [{"name": "envoy.filters.network.rbac",
                        "typed_config": {"rules": {"action": "DENY", "policies": {
                            "ns[a]-policy[deny]-rule[0]": {}}},
                            "shadow_rules": {"action": "DENY", "policies": {
                            "ns[a]-policy[dry]-rule[0]": {}, "ns[a]-policy[dry]-rule[1]": {},
                            "istio-ext-authz-opa-ns[a]-policy[ext]-rule[0]": {}}}}}]}
                ]}}}]
        }]})
    }

    #[test]
    fn config_dump_view_keeps_rows_and_hidden_parts() {
        let report = analyze_config_dump(dump().to_string().as_bytes()).unwrap();
        let view = from_config_dump(&report, "file".into());
        let rows: Vec<_> = view
            .rows
            .iter()
            .map(|r| {
                (
                    r.action.as_str(),
                    r.policy.as_str(),
                    r.namespace.as_deref(),
                    r.rules,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("DENY", "deny", Some("a"), 1),
                ("ALLOW", "_anonymous_match_nothing_", None, 1),
                ("CUSTOM", "ext", Some("a"), 1),
            ]
        );
        let hidden = view.hidden.unwrap();
        let dry = hidden.iter().find(|h| h.kind == "dry-run").unwrap();
        assert_eq!((dry.policy.as_str(), dry.rules), ("dry", 2));
        assert!(
            dry.where_[0].contains("virtualInbound:15006"),
            "{:?}",
            dry.where_
        );
        let custom = hidden.iter().find(|h| h.kind == "custom").unwrap();
        assert_eq!(custom.provider.as_deref(), Some("opa"));
        assert_eq!(view.anonymous.len(), 1);
        assert_eq!(view.anonymous[0].origin, "empty_rule_set");
        assert!(
            view.anonymous[0]
                .explanation
                .contains("denies every request")
        );
    }

    #[test]
    fn istioctl_view_and_old_versions() {
        let text = "ACTION   AuthorizationPolicy         RULES\nALLOW    _anonymous_match_nothing_   1\nALLOW    deny-all-ingress.np-test-2   1\n";
        let view = from_istioctl(text, "istioctl".into()).unwrap();
        assert_eq!(view.rows.len(), 2);
        assert_eq!(view.rows[1].policy, "deny-all-ingress");
        assert_eq!(view.rows[1].namespace.as_deref(), Some("np-test-2"));
        assert_eq!(view.anonymous[0].origin, "unknown");
        let old = "Checked 2/2 listeners with node IP 10.48.2.5.\nLISTENER[FilterChain]     CERTIFICATE   mTLS (MODE)\n";
        assert!(matches!(
            from_istioctl(old, String::new()),
            Err(CheckError::IstioctlTooOld { .. })
        ));
        assert!(matches!(
            from_istioctl("garbage", String::new()),
            Err(CheckError::IstioctlOutput(_))
        ));
        assert!(is_unknown_command(
            "Error: unknown command \"authz\" for \"istioctl experimental\""
        ));
        assert!(!is_unknown_command("Error: failed to get config dump"));
    }
}
