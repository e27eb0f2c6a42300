//! The `security.istio.io` v1/v1beta1 AuthorizationPolicy types, defined
//! locally (serde, camelCase) so YAML manifests deserialize directly, and the
//! small naming rules that belong to the schema (dry-run annotation, Envoy's
//! policy id for a rule).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The annotation that turns a policy into a dry-run (shadow) policy.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Errors from validating AuthorizationPolicies or building requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The policy is malformed; `object` is `namespace/name`.
    #[error("authorizationpolicy {object}: {reason}")]
    Invalid { object: String, reason: String },
    /// The policy lacks metadata.name.
    #[error("authorizationpolicy without metadata.name")]
    MissingName,
    /// A request names a pod the model does not hold.
    #[error("pod {namespace}/{name} not found")]
    UnknownPod { namespace: String, name: String },
}

/// `security.istio.io/v1` (or v1beta1) AuthorizationPolicy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AuthorizationPolicySpec,
}

impl AuthorizationPolicy {
    /// Sets the namespace when the manifest left it out.
    pub fn with_default_namespace(mut self, ns: &str) -> Self {
        if self.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            self.metadata.namespace = Some(ns.to_string());
        }
        self
    }

    /// Whether `istio.io/dry-run` is true as istiod reads it (Go's
    /// `strconv.ParseBool`: `true`, `1`, `t`, ...; anything else is false).
    pub fn is_dry_run(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DRY_RUN_ANNOTATION))
            .and_then(|v| parse_go_bool(v))
            .unwrap_or(false)
    }

    /// The action, ALLOW when unset.
    pub fn action(&self) -> Action {
        self.spec.action.unwrap_or_default()
    }
}

/// The spec. `targetRef`/`targetRefs` bind a policy to gateways/waypoints, not
/// sidecars; such policies are kept but never applied to sidecar workloads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// `selector.matchLabels`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// The policy action.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::Audit => "AUDIT",
            Self::Custom => "CUSTOM",
        })
    }
}

/// `provider.name` of a CUSTOM policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
}

/// One rule: from (OR) AND to (OR) AND every when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Who sends the request. Every set field must match (AND); values within a field are OR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    /// `serviceAccounts`: `SA` (in the policy's namespace) or `NS/SA`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// `trustDomains`: the trust domain of the peer's SPIFFE identity
    /// (`*`, `td`, `prefix*`, `*suffix`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

/// What the request asks for. Every set field must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

impl Operation {
    pub(super) fn has_http_fields(&self) -> bool {
        !(self.hosts.is_empty()
            && self.not_hosts.is_empty()
            && self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty())
    }
}

/// A `when` condition: the attribute `key` is one of `values` and none of `notValues`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// Go's `strconv.ParseBool`, which istiod uses for annotations.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Envoy's RBAC policy id for rule `index` of a policy.
pub fn envoy_policy_id(namespace: &str, name: &str, index: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{index}]")
}

/// What Istio puts before the policy id of a CUSTOM rule (then the provider
/// name and `-`, since Istio 1.30).
pub const EXT_AUTHZ_ID_PREFIX: &str = "istio-ext-authz";

/// The name Istio gives rule `index` of a policy in Envoy's RBAC config:
/// [`envoy_policy_id`], for a CUSTOM policy behind
/// `istio-ext-authz-PROVIDER-` (`provider`: the policy's provider name).
pub fn envoy_rule_name(
    namespace: &str,
    name: &str,
    index: usize,
    provider: Option<&str>,
) -> String {
    let id = envoy_policy_id(namespace, name, index);
    match provider {
        Some(p) => ext_authz_rule_name(p, &id),
        None => id,
    }
}

/// A CUSTOM rule's name from its policy id ([`envoy_policy_id`]) and its
/// provider: `istio-ext-authz-PROVIDER-ID`.
pub fn ext_authz_rule_name(provider: &str, id: &str) -> String {
    if provider.is_empty() {
        format!("{EXT_AUTHZ_ID_PREFIX}-{id}")
    } else {
        format!("{EXT_AUTHZ_ID_PREFIX}-{provider}-{id}")
    }
}
