//! Istio's RBAC policy ids (`ns[NS]-policy[NAME]-rule[N]`), as they appear in Envoy
//! logs, access logs and config dumps.
//!
//! Istio names every Envoy RBAC policy after the AuthorizationPolicy and rule it came
//! from, and prefixes CUSTOM (ext_authz) policies with `istio-ext-authz-` (1.30+:
//! `istio-ext-authz-PROVIDER-`). Splitting the id back into its parts is what lets the
//! plugins name the AuthorizationPolicy that decided a request. The split follows
//! istioctl's greedy regular expression `ns\[(.+)\]-policy\[(.+)\]-rule\[(.+)\]`
//! exactly, but without a regex: each part is found by a bounded number of substring
//! searches, so a hostile id costs linear time.

use memchr::memmem;
use serde::Serialize;

/// The prefix Istio gives CUSTOM (ext_authz) shadow policies.
pub const CUSTOM_PREFIX: &str = "istio-ext-authz-";

/// A policy id as Envoy prints it, with Istio's naming decoded when it follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyId {
    /// The id exactly as printed (`none` included).
    pub raw: String,
    /// `true` when Envoy printed `none`: no policy matched.
    pub none: bool,
    /// The AuthorizationPolicy's namespace (`ns[...]`).
    pub namespace: Option<String>,
    /// The AuthorizationPolicy's name (`policy[...]`).
    pub name: Option<String>,
    /// The rule index inside the policy (`rule[...]`), as printed.
    pub rule: Option<String>,
    /// `true` for CUSTOM (ext_authz) policies (`istio-ext-authz-` prefix).
    pub custom: bool,
    /// The CUSTOM provider when the id names one (`istio-ext-authz-PROVIDER-ns[...]`).
    pub provider: Option<String>,
    /// Text after `rule[N]`, e.g. `-deny-due-to-bad-CUSTOM-action`.
    pub suffix: Option<String>,
}

impl PolicyId {
    /// Decodes `raw`; never fails: parts that are not there are `None`.
    pub fn parse(raw: &str) -> Self {
        let mut id = PolicyId {
            raw: raw.to_owned(),
            none: raw == "none",
            namespace: None,
            name: None,
            rule: None,
            custom: raw.starts_with(CUSTOM_PREFIX),
            provider: None,
            suffix: None,
        };
        if let Some(parts) = split_parts(raw) {
            if id.custom {
                let between = &raw[CUSTOM_PREFIX.len().min(parts.start)..parts.start];
                let provider = between.strip_suffix('-').unwrap_or(between);
                if !provider.is_empty() {
                    id.provider = Some(provider.to_owned());
                }
            }
            id.namespace = Some(parts.namespace.to_owned());
            id.name = Some(parts.name.to_owned());
            id.rule = Some(parts.rule.to_owned());
            if !parts.suffix.is_empty() {
                id.suffix = Some(parts.suffix.to_owned());
            }
        }
        id
    }

    /// The name istioctl prints for this policy: `NAME.NS`, or an empty string when the
    /// id does not follow Istio's naming (istioctl prints an empty name then too).
    pub fn istioctl_name(&self) -> String {
        match (&self.name, &self.namespace) {
            (Some(name), Some(ns)) => format!("{name}.{ns}"),
            _ => String::new(),
        }
    }

    /// The rule index as a number, when it is one.
    pub fn rule_index(&self) -> Option<u32> {
        self.rule.as_deref().and_then(|r| r.parse().ok())
    }
}

/// The pieces of `ns[NS]-policy[NAME]-rule[N]` found inside a longer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    /// Byte offset of `ns[` in the id.
    pub start: usize,
    pub namespace: &'a str,
    pub name: &'a str,
    pub rule: &'a str,
    pub suffix: &'a str,
}

/// Finds istioctl's match of `ns\[(.+)\]-policy\[(.+)\]-rule\[(.+)\]` in `raw`.
///
/// Go's regexp picks the leftmost start and then, group by group, the longest text that
/// still lets the rest match. Because the separators are fixed strings, that is: the
/// first `ns[` that admits a match, then the last `]-policy[` that still leaves a
/// non-empty name before a valid `]-rule[`, then the last such `]-rule[`, then the last
/// `]`. Every step is a substring search, so the whole split is linear in `raw`.
pub(crate) fn split_parts(raw: &str) -> Option<Parts<'_>> {
    const NS: &[u8] = b"ns[";
    const POLICY: &[u8] = b"]-policy[";
    const RULE: &[u8] = b"]-rule[";
    let bytes = raw.as_bytes();

    // The last `]` of the id ends the rule (greedy), and it must leave a non-empty rule.
    let last_close = memchr::memrchr(b']', bytes)?;
    // The last `]-rule[` whose rule text (up to `last_close`) is non-empty.
    let mut rule_sep = None;
    for pos in memmem::rfind_iter(bytes, RULE) {
        if pos + RULE.len() < last_close {
            rule_sep = Some(pos);
            break;
        }
    }
    let rule_sep = rule_sep?;
    // The last `]-policy[` leaving a non-empty name before `rule_sep`.
    let mut policy_sep = None;
    for pos in memmem::rfind_iter(&bytes[..rule_sep], POLICY) {
        if pos + POLICY.len() < rule_sep {
            policy_sep = Some(pos);
            break;
        }
    }
    let policy_sep = policy_sep?;
    // The leftmost `ns[` leaving a non-empty namespace before `policy_sep`.
    let start = memmem::find(&bytes[..policy_sep], NS)?;
    if start + NS.len() >= policy_sep {
        return None;
    }
    // All separators are ASCII, so every offset is a char boundary.
    Some(Parts {
        start,
        namespace: &raw[start + NS.len()..policy_sep],
        name: &raw[policy_sep + POLICY.len()..rule_sep],
        rule: &raw[rule_sep + RULE.len()..last_close],
        suffix: &raw[last_close + 1..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_plain_id() {
        let id = PolicyId::parse("ns[np-test-2]-policy[deny-all]-rule[0]");
        assert_eq!(id.namespace.as_deref(), Some("np-test-2"));
        assert_eq!(id.name.as_deref(), Some("deny-all"));
        assert_eq!(id.rule.as_deref(), Some("0"));
        assert_eq!(id.rule_index(), Some(0));
        assert!(!id.custom && !id.none);
        assert_eq!(id.istioctl_name(), "deny-all.np-test-2");
    }

    #[test]
    fn names_may_contain_brackets() {
        let id = PolicyId::parse("ns[a]-policy[x]-rule[1]y]-rule[12]");
        assert_eq!(id.namespace.as_deref(), Some("a"));
        assert_eq!(id.name.as_deref(), Some("x]-rule[1]y"));
        assert_eq!(id.rule.as_deref(), Some("12"));
    }

    #[test]
    fn custom_ids_with_and_without_provider() {
        let old = PolicyId::parse("istio-ext-authz-ns[default]-policy[ext-authz]-rule[0]");
        assert!(old.custom);
        assert_eq!(old.provider, None);
        assert_eq!(old.istioctl_name(), "ext-authz.default");
        let new = PolicyId::parse(
            "istio-ext-authz-default-ns[foo]-policy[httpbin-1]-rule[0]-deny-due-to-bad-CUSTOM-action",
        );
        assert!(new.custom);
        assert_eq!(new.provider.as_deref(), Some("default"));
        assert_eq!(new.name.as_deref(), Some("httpbin-1"));
        assert_eq!(new.rule.as_deref(), Some("0"));
        assert_eq!(
            new.suffix.as_deref(),
            Some("-deny-due-to-bad-CUSTOM-action")
        );
    }

    #[test]
    fn none_and_foreign_ids() {
        let none = PolicyId::parse("none");
        assert!(none.none);
        assert_eq!(none.name, None);
        assert_eq!(none.istioctl_name(), "");
        let foreign = PolicyId::parse("my-hand-written-policy");
        assert!(!foreign.none);
        assert_eq!(foreign.namespace, None);
        assert_eq!(PolicyId::parse("ns[]-policy[x]-rule[0]").namespace, None);
        assert_eq!(PolicyId::parse("ns[a]-policy[x]-rule[]").rule, None);
    }
}
