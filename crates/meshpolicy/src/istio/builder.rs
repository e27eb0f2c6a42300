//! What Istio's AuthorizationPolicy builder generates for Envoy, names only.
//!
//! Envoy only knows RBAC filters and policy ids; users only know
//! AuthorizationPolicies. To match one against the other (Envoy logs, config
//! dumps, `istioctl x authz check`) this module summarizes, for the policies
//! that apply to one workload, the filters of the full translation
//! ([`crate::istio::rbac`]): for each filter its action (ALLOW, DENY, LOG for
//! AUDIT), the enforced and shadow (dry-run) policy ids
//! `ns[NS]-policy[NAME]-rule[N]`, the stat prefixes, and CUSTOM's
//! `istio-ext-authz-PROVIDER-...` ids followed by the ext_authz filter. There
//! is one builder: this is a view of its output.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::authz::{Action, AuthorizationPolicy};
use crate::istio::rbac::{
    EnvoyRbacAction, ExtAuthzGrpcProvider, ExtAuthzHttpProvider, Filter, MeshExtensionProvider,
    ServiceHost, TranslateOptions, translate_filters,
};

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
    /// istiod's `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS` (off by
    /// default, as in Istio: two CUSTOM providers give DENY filters only).
    pub multiple_custom_providers: bool,
}

/// Stat prefix of shadow rules for CUSTOM.
pub const EXT_AUTHZ_SHADOW_STAT_PREFIX: &str = "istio_ext_authz_";
/// Policy id prefix of CUSTOM shadow rules (followed by `PROVIDER-`).
pub const EXT_AUTHZ_POLICY_PREFIX: &str = "istio-ext-authz-";

/// Mesh options that make every provider `opts` calls defined resolvable.
fn translate_options(policies: &[&AuthorizationPolicy], opts: &BuildOptions) -> TranslateOptions {
    let mut names: BTreeSet<&str> = policies
        .iter()
        .filter(|p| p.action() == Action::Custom)
        .filter_map(|p| p.spec.provider.as_ref().map(|x| x.name.as_str()))
        .collect();
    if let Some(k) = &opts.known_providers {
        names.retain(|n| k.contains(*n));
    }
    let mut t = TranslateOptions {
        multiple_custom_providers: opts.multiple_custom_providers,
        ..TranslateOptions::default()
    };
    for n in names {
        let host = format!("{n}.ext-authz.invalid");
        t.services.push(ServiceHost {
            namespace: "ext-authz".into(),
            hostname: host.clone(),
        });
        let mut p = MeshExtensionProvider {
            name: n.to_string(),
            ..MeshExtensionProvider::default()
        };
        if opts.http_service_providers.contains(n) {
            p.envoy_ext_authz_http = Some(ExtAuthzHttpProvider {
                service: host,
                port: 9191,
                ..ExtAuthzHttpProvider::default()
            });
        } else {
            p.envoy_ext_authz_grpc = Some(ExtAuthzGrpcProvider {
                service: host,
                port: 9191,
                ..ExtAuthzGrpcProvider::default()
            });
        }
        t.extension_providers.push(p);
    }
    t
}

fn summarize_rules(r: &crate::istio::rbac::RbacRules) -> RbacRules {
    RbacRules {
        action: match r.action {
            EnvoyRbacAction::Allow => RbacAction::Allow,
            EnvoyRbacAction::Deny => RbacAction::Deny,
            EnvoyRbacAction::Log => RbacAction::Log,
        },
        policies: r.policies.keys().cloned().collect(),
    }
}

/// The names, actions and policy ids of one translated filter.
pub fn summarize(f: &Filter) -> EnvoyFilter {
    let tcp = match f {
        Filter::Rbac { tcp, .. } | Filter::ExtAuthz { tcp, .. } => *tcp,
    };
    let stat_prefix = tcp.then(|| "tcp.".to_string());
    match f {
        Filter::Rbac { config, .. } => EnvoyFilter::Rbac(RbacFilter {
            name: if tcp {
                "envoy.filters.network.rbac"
            } else {
                "envoy.filters.http.rbac"
            }
            .into(),
            rules: config.rules.as_ref().map(summarize_rules),
            shadow_rules: config.shadow_rules.as_ref().map(summarize_rules),
            shadow_rules_stat_prefix: config.shadow_rules_stat_prefix.clone(),
            stat_prefix,
        }),
        Filter::ExtAuthz { provider, .. } => EnvoyFilter::ExtAuthz {
            name: if tcp {
                "envoy.filters.network.ext_authz"
            } else {
                "envoy.filters.http.ext_authz"
            }
            .into(),
            provider: provider.clone(),
            stat_prefix,
        },
    }
}

/// Derives the Envoy filters Istio builds for a workload from the
/// AuthorizationPolicies that apply to it, in filter-chain order: CUSTOM
/// (per provider, sorted), then AUDIT, DENY, ALLOW. A summary of
/// [`crate::istio::rbac::translate_filters`].
pub fn build_filters<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    opts: &BuildOptions,
) -> Vec<EnvoyFilter> {
    let policies: Vec<&AuthorizationPolicy> = policies.into_iter().collect();
    let t = translate_options(&policies, opts);
    let (filters, _) = translate_filters(policies.iter().copied(), opts.tcp, &t);
    filters.iter().map(summarize).collect()
}

impl crate::cluster::Cluster {
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
