//! What Istio's AuthorizationPolicy builder generates for Envoy, as data.
//!
//! Envoy only knows RBAC filters and policy ids; users only know
//! AuthorizationPolicies. To match one against the other (Envoy logs, config
//! dumps, `istioctl x authz check`), and for meshsim to generate a believable
//! config dump, this module derives, for the policies that apply to one
//! workload, the filters Istio's builder emits: for each action the filter
//! action (ALLOW, DENY, LOG for AUDIT), the enforced and shadow (dry-run)
//! policy ids `ns[NS]-policy[NAME]-rule[N]`, the shadow stat prefix, and
//! CUSTOM's shadow rules `istio-ext-authz-PROVIDER-...` followed by the
//! ext_authz filter. It mirrors `pilot/pkg/security/authz/builder`.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Action, AuthorizationPolicy, envoy_policy_id};

/// Envoy's RBAC action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RbacAction {
    /// The proto default: the key is absent from generated config.
    Allow,
    Deny,
    /// AUDIT policies become LOG.
    Log,
}

impl RbacAction {
    /// The value as Envoy config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::Log => "LOG",
        }
    }
}

/// One RBAC rule set: action and policy ids (sorted, as Envoy keys them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RbacRules {
    pub action: RbacAction,
    pub policies: Vec<String>,
}

/// A generated filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EnvoyFilter {
    /// `envoy.filters.http.rbac` / `envoy.filters.network.rbac`.
    Rbac(RbacFilter),
    /// `envoy.filters.http.ext_authz` / `envoy.filters.network.ext_authz` for a CUSTOM provider.
    ExtAuthz {
        name: String,
        provider: String,
        /// `statPrefix` of the network filter (`tcp.`); None for HTTP.
        stat_prefix: Option<String>,
    },
}

impl EnvoyFilter {
    /// The Envoy filter name.
    pub fn name(&self) -> &str {
        match self {
            Self::Rbac(r) => &r.name,
            Self::ExtAuthz { name, .. } => name,
        }
    }
}

/// An RBAC filter as Istio generates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RbacFilter {
    pub name: String,
    /// Enforced rules; None when every policy of this action is dry-run (or CUSTOM).
    pub rules: Option<RbacRules>,
    /// Shadow rules (dry-run, or CUSTOM's matching rules); not enforced.
    pub shadow_rules: Option<RbacRules>,
    /// `shadowRulesStatPrefix`; None when Istio leaves it empty.
    pub shadow_rules_stat_prefix: Option<String>,
    /// `statPrefix` of network (TCP) filters (`tcp.`); None for HTTP filters.
    pub stat_prefix: Option<String>,
}

/// Builder options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build network (TCP) filters instead of HTTP filters: ALLOW rules with
    /// HTTP-only fields are skipped; DENY, AUDIT and CUSTOM rules keep their
    /// id with those fields dropped (so they match more, never less).
    pub tcp: bool,
    /// CUSTOM providers defined in the mesh config. None: every provider is
    /// taken as defined. A provider not in the set yields Istio's
    /// `-deny-due-to-bad-CUSTOM-action` DENY rules instead of ext_authz.
    pub known_providers: Option<BTreeSet<String>>,
    /// CUSTOM providers of type `envoyExtAuthzHttp`: Istio builds no network
    /// (TCP) filter for them, since an HTTP authorization service cannot
    /// judge a TCP connection.
    pub http_service_providers: BTreeSet<String>,
}

/// Stat prefix of shadow rules for CUSTOM.
pub const EXT_AUTHZ_SHADOW_STAT_PREFIX: &str = "istio_ext_authz_";
/// Policy id prefix of CUSTOM shadow rules (followed by `PROVIDER-`).
pub const EXT_AUTHZ_POLICY_PREFIX: &str = "istio-ext-authz-";

fn rule_skipped_on_tcp(ap: &AuthorizationPolicy, index: usize) -> bool {
    let Some(rule) = ap.spec.rules.get(index) else {
        return false;
    };
    let http_source = rule
        .from
        .iter()
        .filter_map(|f| f.source.as_ref())
        .any(|s| !(s.request_principals.is_empty() && s.not_request_principals.is_empty()));
    let http_op = rule
        .to
        .iter()
        .filter_map(|t| t.operation.as_ref())
        .any(|o| o.has_http_fields());
    let http_when = rule
        .when
        .iter()
        .any(|c| c.key.starts_with("request.") || c.key.starts_with("experimental."));
    http_source || http_op || http_when
}

/// Rule ids of one policy as the builder names them (`rule[0]` never-match
/// for a policy without rules).
fn policy_ids(ap: &AuthorizationPolicy, opts: &BuildOptions) -> Vec<String> {
    let ns = ap.metadata.namespace.as_deref().unwrap_or("default");
    let name = ap.metadata.name.as_deref().unwrap_or_default();
    if ap.spec.rules.is_empty() {
        return vec![envoy_policy_id(ns, name, 0)];
    }
    (0..ap.spec.rules.len())
        .filter(|&i| !(opts.tcp && ap.action() == Action::Allow && rule_skipped_on_tcp(ap, i)))
        .map(|i| envoy_policy_id(ns, name, i))
        .collect()
}

fn dry_run_stat_prefix(shadow_action: Option<RbacAction>) -> Option<String> {
    // Istio calls GetAction() on a possibly nil shadow rule set: nil reads as
    // ALLOW, so filters without shadow rules still get the allow prefix.
    match shadow_action {
        None | Some(RbacAction::Allow) => Some("istio_dry_run_allow_".into()),
        Some(RbacAction::Deny) => Some("istio_dry_run_deny_".into()),
        Some(RbacAction::Log) => None,
    }
}

/// Derives the Envoy filters Istio builds for a workload from the
/// AuthorizationPolicies that apply to it, in filter-chain order: CUSTOM
/// (per provider, sorted), then AUDIT, DENY, ALLOW.
pub fn build_filters<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    opts: &BuildOptions,
) -> Vec<EnvoyFilter> {
    let policies: Vec<&AuthorizationPolicy> = policies.into_iter().collect();
    let (rbac_name, ext_name) = if opts.tcp {
        (
            "envoy.filters.network.rbac",
            "envoy.filters.network.ext_authz",
        )
    } else {
        ("envoy.filters.http.rbac", "envoy.filters.http.ext_authz")
    };
    let stat_prefix = opts.tcp.then(|| "tcp.".to_string());
    let mut out = Vec::new();

    // CUSTOM, one group per provider.
    let mut providers: BTreeSet<&str> = BTreeSet::new();
    for p in &policies {
        if p.action() == Action::Custom
            && let Some(pr) = &p.spec.provider
        {
            providers.insert(pr.name.as_str());
        }
    }
    for provider in providers {
        let valid = opts
            .known_providers
            .as_ref()
            .is_none_or(|k| k.contains(provider));
        if valid && opts.tcp && opts.http_service_providers.contains(provider) {
            continue;
        }
        let mut ids: Vec<String> = policies
            .iter()
            .filter(|p| {
                p.action() == Action::Custom
                    && p.spec.provider.as_ref().map(|x| x.name.as_str()) == Some(provider)
            })
            .flat_map(|p| {
                policy_ids(
                    p,
                    &BuildOptions {
                        tcp: false,
                        ..opts.clone()
                    },
                )
            })
            .map(|id| format!("{EXT_AUTHZ_POLICY_PREFIX}{provider}-{id}"))
            .collect();
        ids.sort();
        if valid {
            out.push(EnvoyFilter::Rbac(RbacFilter {
                name: rbac_name.into(),
                rules: None,
                shadow_rules: Some(RbacRules {
                    action: RbacAction::Deny,
                    policies: ids,
                }),
                shadow_rules_stat_prefix: Some(EXT_AUTHZ_SHADOW_STAT_PREFIX.into()),
                stat_prefix: stat_prefix.clone(),
            }));
            out.push(EnvoyFilter::ExtAuthz {
                name: ext_name.into(),
                provider: provider.to_string(),
                stat_prefix: stat_prefix.clone(),
            });
        } else {
            out.push(EnvoyFilter::Rbac(RbacFilter {
                name: rbac_name.into(),
                rules: Some(RbacRules {
                    action: RbacAction::Deny,
                    policies: ids
                        .into_iter()
                        .map(|id| format!("{id}-deny-due-to-bad-CUSTOM-action"))
                        .collect(),
                }),
                shadow_rules: None,
                shadow_rules_stat_prefix: None,
                stat_prefix: stat_prefix.clone(),
            }));
        }
    }

    for (action, rbac_action) in [
        (Action::Audit, RbacAction::Log),
        (Action::Deny, RbacAction::Deny),
        (Action::Allow, RbacAction::Allow),
    ] {
        let group: Vec<&&AuthorizationPolicy> =
            policies.iter().filter(|p| p.action() == action).collect();
        if group.is_empty() {
            continue;
        }
        let mut enforced: Option<Vec<String>> = None;
        let mut shadow: Option<Vec<String>> = None;
        for p in group {
            let slot = if p.is_dry_run() {
                &mut shadow
            } else {
                &mut enforced
            };
            slot.get_or_insert_with(Vec::new)
                .extend(policy_ids(p, opts));
        }
        let mk = |ids: Option<Vec<String>>| {
            ids.map(|mut policies| {
                policies.sort();
                policies.dedup();
                RbacRules {
                    action: rbac_action,
                    policies,
                }
            })
        };
        let shadow_rules = mk(shadow);
        out.push(EnvoyFilter::Rbac(RbacFilter {
            name: rbac_name.into(),
            rules: mk(enforced),
            shadow_rules_stat_prefix: dry_run_stat_prefix(shadow_rules.as_ref().map(|r| r.action)),
            shadow_rules,
            stat_prefix: stat_prefix.clone(),
        }));
    }
    out
}

impl crate::workload::Cluster {
    /// The Envoy filters Istio would build for the sidecar of `pod`, from the
    /// AuthorizationPolicies that apply to it. Empty when none applies or the
    /// pod has no sidecar.
    pub fn envoy_filters_for(
        &self,
        pod: &crate::workload::Pod,
        opts: &BuildOptions,
    ) -> Vec<EnvoyFilter> {
        if !pod.has_sidecar {
            return Vec::new();
        }
        build_filters(
            self.authorization_policies_for(pod)
                .into_iter()
                .map(|c| c.policy()),
            opts,
        )
    }
}
