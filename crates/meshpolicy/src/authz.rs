//! Istio AuthorizationPolicy evaluation with Envoy-style policy ids.
//!
//! The sidecar enforces AuthorizationPolicy after NetworkPolicy let the
//! connection through, and Envoy's RBAC logs name the deciding rule as
//! `ns[NS]-policy[NAME]-rule[N]`. This module defines the
//! `security.istio.io` v1/v1beta1 types locally (serde, camelCase, so YAML
//! manifests deserialize directly), validates them into [`CompiledAuthz`], and
//! evaluates a request the way Istio documents it: CUSTOM (reported as
//! delegated), then DENY, then ALLOW, where "ALLOW policies apply and none
//! matched" denies with policy id `none`; AUDIT never decides; dry-run
//! policies are evaluated as shadow; a workload without a sidecar enforces
//! nothing. Conditions the model cannot know (JWT claims, SNI, unknown `when`
//! keys) give an explicit "cannot evaluate" outcome rather than a guess.
//! [`builder`] derives what Istio's RBAC builder generates for Envoy.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::netpol::PolicyRef;
use crate::workload::{Cluster, Endpoint, Pod};

#[path = "engine/rbac_builder.rs"]
pub mod builder;

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

    /// Whether `istio.io/dry-run: "true"` is set.
    pub fn is_dry_run(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DRY_RUN_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
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
    fn has_http_fields(&self) -> bool {
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

/// Envoy's RBAC policy id for rule `index` of a policy.
pub fn envoy_policy_id(namespace: &str, name: &str, index: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{index}]")
}

/// A validated AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledAuthz {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) provider: Option<String>,
    pub(crate) selector: Option<BTreeMap<String, String>>,
    pub(crate) dry_run: bool,
    pub(crate) has_target_ref: bool,
    pub(crate) rules: Vec<Rule>,
    pub(crate) original: AuthorizationPolicy,
}

fn check_ip_list(values: &[String], field: &str, at: &str) -> Result<(), String> {
    for v in values {
        if parse_ip_or_cidr(v).is_none() {
            return Err(format!("{at}.{field}: {v:?} is not an IP address or CIDR"));
        }
    }
    Ok(())
}

fn parse_ip_or_cidr(v: &str) -> Option<IpNet> {
    let v = v.trim();
    if let Ok(n) = v.parse::<IpNet>() {
        return Some(n.trunc());
    }
    v.parse::<IpAddr>().ok().map(IpNet::from)
}

fn check_ports(values: &[String], field: &str, at: &str) -> Result<(), String> {
    for v in values {
        if v.parse::<u16>().is_err() {
            return Err(format!("{at}.{field}: {v:?} is not a port number"));
        }
    }
    Ok(())
}

impl CompiledAuthz {
    /// Validates an AuthorizationPolicy. A missing namespace means `default`.
    pub fn compile(ap: &AuthorizationPolicy) -> Result<Self, AuthzError> {
        let (namespace, name) =
            crate::workload::namespaced_name(&ap.metadata).ok_or(AuthzError::MissingName)?;
        let object = format!("{namespace}/{name}");
        let invalid = |reason: String| AuthzError::Invalid {
            object: object.clone(),
            reason,
        };
        let action = ap.action();
        let provider = ap.spec.provider.as_ref().map(|p| p.name.clone());
        match (action, &provider) {
            (Action::Custom, None) => {
                return Err(invalid("action CUSTOM requires provider.name".into()));
            }
            (Action::Custom, Some(p)) if p.is_empty() => {
                return Err(invalid("action CUSTOM requires provider.name".into()));
            }
            (Action::Custom, _) => {}
            (other, Some(_)) => {
                return Err(invalid(format!(
                    "provider is only allowed with action CUSTOM, not {other}"
                )));
            }
            _ => {}
        }
        if let Some(sel) = &ap.spec.selector {
            crate::selector::Selector::from_labels(&sel.match_labels)
                .map_err(|e| invalid(format!("selector.matchLabels: {e}")))?;
        }
        for (i, rule) in ap.spec.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            for (j, f) in rule.from.iter().enumerate() {
                let at = format!("{at}.from[{j}]");
                let Some(s) = &f.source else {
                    return Err(invalid(format!("{at}.source is required")));
                };
                if *s == Source::default() {
                    return Err(invalid(format!("{at}.source must not be empty")));
                }
                let at = format!("{at}.source");
                check_ip_list(&s.ip_blocks, "ipBlocks", &at).map_err(&invalid)?;
                check_ip_list(&s.not_ip_blocks, "notIpBlocks", &at).map_err(&invalid)?;
                check_ip_list(&s.remote_ip_blocks, "remoteIpBlocks", &at).map_err(&invalid)?;
                check_ip_list(&s.not_remote_ip_blocks, "notRemoteIpBlocks", &at)
                    .map_err(&invalid)?;
            }
            for (j, t) in rule.to.iter().enumerate() {
                let at = format!("{at}.to[{j}]");
                let Some(o) = &t.operation else {
                    return Err(invalid(format!("{at}.operation is required")));
                };
                if *o == Operation::default() {
                    return Err(invalid(format!("{at}.operation must not be empty")));
                }
                let at = format!("{at}.operation");
                check_ports(&o.ports, "ports", &at).map_err(&invalid)?;
                check_ports(&o.not_ports, "notPorts", &at).map_err(&invalid)?;
            }
            for (j, c) in rule.when.iter().enumerate() {
                let at = format!("{at}.when[{j}]");
                if c.key.is_empty() {
                    return Err(invalid(format!("{at}.key is required")));
                }
                if c.values.is_empty() && c.not_values.is_empty() {
                    return Err(invalid(format!(
                        "{at}: condition on {:?} needs values or notValues",
                        c.key
                    )));
                }
                match c.key.as_str() {
                    "source.ip" | "remote.ip" | "destination.ip" => {
                        check_ip_list(&c.values, "values", &at).map_err(&invalid)?;
                        check_ip_list(&c.not_values, "notValues", &at).map_err(&invalid)?;
                    }
                    "destination.port" => {
                        check_ports(&c.values, "values", &at).map_err(&invalid)?;
                        check_ports(&c.not_values, "notValues", &at).map_err(&invalid)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            namespace,
            name,
            action,
            provider,
            selector: ap.spec.selector.as_ref().map(|s| s.match_labels.clone()),
            dry_run: ap.is_dry_run(),
            has_target_ref: ap.spec.target_ref.is_some() || !ap.spec.target_refs.is_empty(),
            rules: ap.spec.rules.clone(),
            original: ap.clone().with_default_namespace("default"),
        })
    }

    /// `namespace/name`.
    pub fn policy_ref(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The policy as it was given (namespace defaulted).
    pub fn policy(&self) -> &AuthorizationPolicy {
        &self.original
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether this is a dry-run (shadow) policy.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The ext-authz provider of a CUSTOM policy.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// Whether the policy applies to a sidecar workload with these labels in
    /// this namespace, given the mesh root namespace.
    pub fn applies_to(&self, pod: &Pod, root_namespace: &str) -> bool {
        if self.has_target_ref {
            return false;
        }
        if self.namespace != pod.namespace && self.namespace != root_namespace {
            return false;
        }
        match &self.selector {
            None => true,
            Some(ml) => ml.iter().all(|(k, v)| pod.labels.get(k) == Some(v)),
        }
    }

    /// Human one-line summaries of the policy: its target and action, then one
    /// line per rule (`ALLOW with no rules: allows nothing, so every request is denied`).
    pub fn summary(&self, root_namespace: &str) -> Vec<String> {
        let target = match (&self.selector, self.namespace == root_namespace) {
            _ if self.has_target_ref => {
                "targetRef (gateway/waypoint; not applied to sidecars)".to_string()
            }
            (None, true) => "all workloads in the mesh (root namespace)".to_string(),
            (None, false) => format!("all workloads in namespace {}", self.namespace),
            (Some(ml), root) => {
                let sel: Vec<String> = ml.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let scope = if root {
                    "in every namespace (root namespace)".to_string()
                } else {
                    format!("in namespace {}", self.namespace)
                };
                format!("workloads {} {scope}", sel.join(","))
            }
        };
        let mut head = format!(
            "authorizationpolicy {}/{}: {} for {target}",
            self.namespace, self.name, self.action
        );
        if let Some(p) = &self.provider {
            head.push_str(&format!(" (delegated to ext-authz provider {p})"));
        }
        if self.dry_run {
            head.push_str(" [dry-run: evaluated as shadow, not enforced]");
        }
        let mut out = vec![head];
        if self.rules.is_empty() {
            out.push(match self.action {
                Action::Allow => {
                    "ALLOW with no rules: allows nothing, so every request is denied".to_string()
                }
                Action::Deny => "DENY with no rules: matches nothing, so it denies nothing".into(),
                Action::Audit => "AUDIT with no rules: audits nothing".into(),
                Action::Custom => "CUSTOM with no rules: delegates nothing".into(),
            });
        }
        for (i, r) in self.rules.iter().enumerate() {
            out.push(format!(
                "{} {}: {}",
                self.action,
                envoy_policy_id(&self.namespace, &self.name, i),
                describe_rule(r)
            ));
        }
        out
    }
}

fn list(field: &str, v: &[String], out: &mut Vec<String>) {
    if !v.is_empty() {
        out.push(format!("{field} [{}]", v.join(", ")));
    }
}

fn describe_rule(r: &Rule) -> String {
    if r.from.is_empty() && r.to.is_empty() && r.when.is_empty() {
        return "matches every request".to_string();
    }
    let mut parts = Vec::new();
    if !r.from.is_empty() {
        let alts: Vec<String> = r
            .from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .map(|s| {
                let mut p = Vec::new();
                list("principals", &s.principals, &mut p);
                list("notPrincipals", &s.not_principals, &mut p);
                list("requestPrincipals", &s.request_principals, &mut p);
                list("notRequestPrincipals", &s.not_request_principals, &mut p);
                list("namespaces", &s.namespaces, &mut p);
                list("notNamespaces", &s.not_namespaces, &mut p);
                list("ipBlocks", &s.ip_blocks, &mut p);
                list("notIpBlocks", &s.not_ip_blocks, &mut p);
                list("remoteIpBlocks", &s.remote_ip_blocks, &mut p);
                list("notRemoteIpBlocks", &s.not_remote_ip_blocks, &mut p);
                p.join(" and ")
            })
            .collect();
        parts.push(format!("from {}", alts.join(" or ")));
    }
    if !r.to.is_empty() {
        let alts: Vec<String> =
            r.to.iter()
                .filter_map(|t| t.operation.as_ref())
                .map(|o| {
                    let mut p = Vec::new();
                    list("hosts", &o.hosts, &mut p);
                    list("notHosts", &o.not_hosts, &mut p);
                    list("ports", &o.ports, &mut p);
                    list("notPorts", &o.not_ports, &mut p);
                    list("methods", &o.methods, &mut p);
                    list("notMethods", &o.not_methods, &mut p);
                    list("paths", &o.paths, &mut p);
                    list("notPaths", &o.not_paths, &mut p);
                    p.join(" and ")
                })
                .collect();
        parts.push(format!("to {}", alts.join(" or ")));
    }
    for c in &r.when {
        let mut s = format!("when {}", c.key);
        if !c.values.is_empty() {
            s.push_str(&format!(" in [{}]", c.values.join(", ")));
        }
        if !c.not_values.is_empty() {
            if !c.values.is_empty() {
                s.push_str(" and");
            }
            s.push_str(&format!(" not in [{}]", c.not_values.join(", ")));
        }
        parts.push(s);
    }
    parts.join("; ")
}

/// One-line summaries of an AuthorizationPolicy (see [`CompiledAuthz::summary`]).
pub fn summarize_authorization_policy(
    ap: &AuthorizationPolicy,
    root_namespace: &str,
) -> Result<Vec<String>, AuthzError> {
    Ok(CompiledAuthz::compile(ap)?.summary(root_namespace))
}

/// What the request looks like to the destination sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzRequest {
    /// Peer identity from mTLS, without `spiffe://` (`cluster.local/ns/NS/sa/SA`).
    /// None when the source has no sidecar (plain text, no identity).
    pub source_principal: Option<String>,
    /// Namespace of the peer; Istio derives it from the principal, so it is
    /// only known with mTLS. When None it is derived from `source_principal`.
    pub source_namespace: Option<String>,
    /// The direct peer address (`source.ip`, `ipBlocks`).
    pub source_ip: Option<IpAddr>,
    /// The original client address (`remote.ip`, `remoteIpBlocks`); defaults to `source_ip`.
    pub remote_ip: Option<IpAddr>,
    /// JWT principal `ISS/SUB` (`requestPrincipals`), None without a JWT.
    pub request_principal: Option<String>,
    /// The destination workload.
    pub destination_namespace: String,
    pub destination_pod: String,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: u16,
    /// HTTP attributes; None for plain TCP traffic.
    pub http: Option<HttpAttributes>,
}

/// HTTP request attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAttributes {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Header names are compared case-insensitively.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl AuthzRequest {
    fn namespace(&self) -> Option<String> {
        self.source_namespace.clone().or_else(|| {
            let p = self.source_principal.as_deref()?;
            let rest = p.split("/ns/").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.http.as_ref().and_then(|h| {
            h.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    }
}

/// The final decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Allow,
    Deny,
    /// A policy that could decide depends on something the model cannot know.
    CannotEvaluate,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::CannotEvaluate => "CANNOT_EVALUATE",
        })
    }
}

/// A CUSTOM policy whose rule matched: the request goes to the ext-authz provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    pub provider: String,
    pub policy_id: String,
}

/// The outcome a dry-run policy set would have had, as Envoy's shadow engine logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowResult {
    pub action: Action,
    /// `shadow allowed` or `shadow denied`.
    pub outcome: String,
    /// Matched policy id, or `none`.
    pub policy_id: String,
}

/// A rule that could not be evaluated and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unevaluable {
    pub policy_id: String,
    pub reason: String,
}

/// A policy that applies to the destination workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedPolicy {
    pub policy: PolicyRef,
    pub action: Action,
    pub dry_run: bool,
}

/// The AuthorizationPolicy verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzVerdict {
    pub decision: Decision,
    /// False when the destination has no sidecar: nothing is enforced.
    pub enforced: bool,
    /// Envoy id of the deciding rule (`ns[NS]-policy[NAME]-rule[N]`), `none`
    /// when ALLOW policies exist and none matched, None when nothing decided.
    pub policy_id: Option<String>,
    /// One-line explanation.
    pub reason: String,
    pub applicable: Vec<AppliedPolicy>,
    /// CUSTOM policies that matched: the provider decides first.
    pub delegated: Vec<Delegation>,
    /// AUDIT rules that matched (logged, not decisive).
    pub audited: Vec<String>,
    /// Dry-run results per action.
    pub shadow: Vec<ShadowResult>,
    pub cannot_evaluate: Vec<Unevaluable>,
    /// Notes such as policies skipped because they use targetRef.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Unknown(String),
}

fn all(items: impl IntoIterator<Item = M>) -> M {
    let mut unknown = None;
    for m in items {
        match m {
            M::No => return M::No,
            M::Unknown(r) => {
                unknown.get_or_insert(r);
            }
            M::Yes => {}
        }
    }
    unknown.map_or(M::Yes, M::Unknown)
}

fn any(items: impl IntoIterator<Item = M>) -> M {
    let mut unknown = None;
    for m in items {
        match m {
            M::Yes => return M::Yes,
            M::Unknown(r) => {
                unknown.get_or_insert(r);
            }
            M::No => {}
        }
    }
    unknown.map_or(M::No, M::Unknown)
}

fn b(x: bool) -> M {
    if x { M::Yes } else { M::No }
}

/// Istio string matching: `*` any non-empty, `abc*` prefix, `*abc` suffix, else exact.
pub fn istio_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

fn host_match(pattern: &str, value: &str) -> bool {
    istio_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// A field with positive and negative value lists; `get` yields the attribute.
fn field(
    values: &[String],
    not_values: &[String],
    attr: Option<&str>,
    matcher: fn(&str, &str) -> bool,
) -> M {
    let pos = if values.is_empty() {
        M::Yes
    } else {
        b(attr.is_some_and(|a| values.iter().any(|p| matcher(p, a))))
    };
    let neg = if not_values.is_empty() {
        M::Yes
    } else {
        b(!attr.is_some_and(|a| not_values.iter().any(|p| matcher(p, a))))
    };
    all([pos, neg])
}

fn ip_field(values: &[String], not_values: &[String], ip: Option<IpAddr>) -> M {
    let hit = |list: &[String]| {
        ip.is_some_and(|ip| {
            list.iter()
                .filter_map(|v| parse_ip_or_cidr(v))
                .any(|n| n.contains(&ip))
        })
    };
    let pos = if values.is_empty() {
        M::Yes
    } else {
        b(hit(values))
    };
    let neg = if not_values.is_empty() {
        M::Yes
    } else {
        b(!hit(not_values))
    };
    all([pos, neg])
}

fn principal_match(pattern: &str, value: &str) -> bool {
    let strip = |s: &str| s.strip_prefix("spiffe://").unwrap_or(s).to_string();
    istio_match(&strip(pattern), &strip(value))
}

fn source_matches(s: &Source, req: &AuthzRequest, action: Action) -> M {
    let ns = req.namespace();
    let remote = req.remote_ip.or(req.source_ip);
    let has_jwt_fields = !(s.request_principals.is_empty() && s.not_request_principals.is_empty());
    let request_principals = match (&req.http, has_jwt_fields, action) {
        // Istio's TCP filter chain: ALLOW rules with HTTP-only fields never
        // match; DENY/AUDIT/CUSTOM rules drop those fields.
        (None, true, Action::Allow) => M::No,
        (None, true, _) => M::Yes,
        _ => field(
            &s.request_principals,
            &s.not_request_principals,
            req.request_principal.as_deref(),
            istio_match,
        ),
    };
    all([
        field(
            &s.principals,
            &s.not_principals,
            req.source_principal.as_deref(),
            principal_match,
        ),
        request_principals,
        field(&s.namespaces, &s.not_namespaces, ns.as_deref(), istio_match),
        ip_field(&s.ip_blocks, &s.not_ip_blocks, req.source_ip),
        ip_field(&s.remote_ip_blocks, &s.not_remote_ip_blocks, remote),
    ])
}

fn operation_matches(o: &Operation, req: &AuthzRequest, action: Action) -> M {
    let port = req.destination_port.to_string();
    let ports = field(&o.ports, &o.not_ports, Some(&port), |p, v| p == v);
    match &req.http {
        Some(h) => all([
            ports,
            field(&o.hosts, &o.not_hosts, Some(&h.host), host_match),
            field(&o.methods, &o.not_methods, Some(&h.method), istio_match),
            field(&o.paths, &o.not_paths, Some(&h.path), istio_match),
        ]),
        None if o.has_http_fields() => match action {
            // Istio's TCP filter chain: ALLOW rules with HTTP fields are
            // dropped (never match); DENY/AUDIT/CUSTOM rules drop only the HTTP fields.
            Action::Allow => M::No,
            Action::Deny | Action::Audit | Action::Custom => ports,
        },
        None => ports,
    }
}

fn condition_matches(c: &Condition, req: &AuthzRequest, action: Action) -> M {
    let key = c.key.as_str();
    if req.http.is_none() && key.starts_with("request.") {
        // HTTP-only attribute on a TCP connection: as Istio's TCP builder does,
        // an ALLOW rule never matches, other actions drop the condition.
        return if action == Action::Allow {
            M::No
        } else {
            M::Yes
        };
    }
    let ns = req.namespace();
    let port = req.destination_port.to_string();
    match key {
        "source.ip" => ip_field(&c.values, &c.not_values, req.source_ip),
        "remote.ip" => ip_field(&c.values, &c.not_values, req.remote_ip.or(req.source_ip)),
        "destination.ip" => ip_field(&c.values, &c.not_values, req.destination_ip),
        "source.namespace" => field(&c.values, &c.not_values, ns.as_deref(), istio_match),
        "source.principal" => field(
            &c.values,
            &c.not_values,
            req.source_principal.as_deref(),
            principal_match,
        ),
        "request.auth.principal" => field(
            &c.values,
            &c.not_values,
            req.request_principal.as_deref(),
            istio_match,
        ),
        "destination.port" => field(&c.values, &c.not_values, Some(&port), |p, v| p == v),
        _ => {
            if let Some(name) = key
                .strip_prefix("request.headers[")
                .and_then(|r| r.strip_suffix(']'))
            {
                return field(&c.values, &c.not_values, req.header(name), istio_match);
            }
            M::Unknown(format!(
                "when key {key:?} cannot be evaluated by this model (known keys: source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.headers[NAME], destination.ip, destination.port)"
            ))
        }
    }
}

fn rule_matches(r: &Rule, req: &AuthzRequest, action: Action) -> M {
    let from = if r.from.is_empty() {
        M::Yes
    } else {
        any(r.from.iter().map(|f| match &f.source {
            Some(s) => source_matches(s, req, action),
            None => M::No,
        }))
    };
    let to = if r.to.is_empty() {
        M::Yes
    } else {
        any(r.to.iter().map(|t| match &t.operation {
            Some(o) => operation_matches(o, req, action),
            None => M::No,
        }))
    };
    let when = all(r.when.iter().map(|c| condition_matches(c, req, action)));
    all([from, to, when])
}

/// Outcome of one set of policies (one Envoy RBAC engine).
struct EngineResult {
    /// First matching id, in Envoy's (lexicographic) order.
    matched: Option<String>,
    unknown: Vec<Unevaluable>,
}

fn run_engine(policies: &[&CompiledAuthz], req: &AuthzRequest) -> EngineResult {
    let mut ids: Vec<(String, &Rule, Action)> = Vec::new();
    for p in policies {
        for (i, r) in p.rules.iter().enumerate() {
            ids.push((envoy_policy_id(&p.namespace, &p.name, i), r, p.action));
        }
    }
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unknown = Vec::new();
    for (id, r, action) in ids {
        match rule_matches(r, req, action) {
            M::Yes => {
                return EngineResult {
                    matched: Some(id),
                    unknown,
                };
            }
            M::No => {}
            M::Unknown(reason) => unknown.push(Unevaluable {
                policy_id: id,
                reason,
            }),
        }
    }
    EngineResult {
        matched: None,
        unknown,
    }
}

impl Cluster {
    /// AuthorizationPolicies that apply to `pod` (its namespace and the root
    /// namespace only), sorted by namespace then name.
    pub fn authorization_policies_for(&self, pod: &Pod) -> Vec<&CompiledAuthz> {
        let root = self.options.root_namespace.as_str();
        let mut namespaces = vec![pod.namespace.as_str()];
        if root != pod.namespace {
            namespaces.push(root);
        }
        let mut v: Vec<&CompiledAuthz> = namespaces
            .into_iter()
            .filter_map(|ns| self.authz_by_ns.get(ns))
            .flatten()
            .map(|&i| &self.authz[i])
            .filter(|p| p.applies_to(pod, root))
            .collect();
        v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        v
    }

    /// All AuthorizationPolicies of a namespace, sorted by name.
    pub fn authorization_policies_in(&self, namespace: &str) -> Vec<&CompiledAuthz> {
        let mut v: Vec<&CompiledAuthz> = self
            .authz_by_ns
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|&i| &self.authz[i])
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Builds the request the destination sidecar sees when `src` calls
    /// `dst_namespace/dst_pod` on `port`. The source principal is known only
    /// when both ends have a sidecar (mutual TLS).
    pub fn authz_request(
        &self,
        src: &Endpoint,
        dst_namespace: &str,
        dst_pod: &str,
        port: u16,
        http: Option<HttpAttributes>,
    ) -> Result<AuthzRequest, AuthzError> {
        let dst = self
            .pod(dst_namespace, dst_pod)
            .ok_or_else(|| AuthzError::UnknownPod {
                namespace: dst_namespace.into(),
                name: dst_pod.into(),
            })?;
        let (principal, ip) = match src {
            Endpoint::Pod { namespace, name } => {
                let s = self
                    .pod(namespace, name)
                    .ok_or_else(|| AuthzError::UnknownPod {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })?;
                let p = (s.has_sidecar && dst.has_sidecar)
                    .then(|| s.principal(&self.options.trust_domain));
                (p, s.ip)
            }
            Endpoint::External { ip } => (None, Some(*ip)),
        };
        Ok(AuthzRequest {
            source_principal: principal,
            source_namespace: None,
            source_ip: ip,
            remote_ip: None,
            request_principal: None,
            destination_namespace: dst.namespace.clone(),
            destination_pod: dst.name.clone(),
            destination_ip: dst.ip,
            destination_port: port,
            http,
        })
    }

    /// Evaluates a request against the AuthorizationPolicies that apply to
    /// its destination pod.
    pub fn evaluate_authz(&self, req: &AuthzRequest) -> Result<AuthzVerdict, AuthzError> {
        let dst = self
            .pod(&req.destination_namespace, &req.destination_pod)
            .ok_or_else(|| AuthzError::UnknownPod {
                namespace: req.destination_namespace.clone(),
                name: req.destination_pod.clone(),
            })?;
        let root = self.options.root_namespace.as_str();
        let mut notes = Vec::new();
        for ns in [dst.namespace.as_str(), root] {
            for &i in self.authz_by_ns.get(ns).into_iter().flatten() {
                let p = &self.authz[i];
                if p.has_target_ref {
                    let note = format!(
                        "authorizationpolicy {}/{} uses targetRef (gateway/waypoint) and does not apply to sidecars",
                        p.namespace, p.name
                    );
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
        let policies = self.authorization_policies_for(dst);
        Ok(evaluate_policies(&policies, req, dst.has_sidecar, notes))
    }
}

/// Evaluates a request against an explicit list of policies (already
/// targeted at the destination). `has_sidecar` false means nothing is enforced.
pub fn evaluate_policies(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    has_sidecar: bool,
    mut notes: Vec<String>,
) -> AuthzVerdict {
    let applicable: Vec<AppliedPolicy> = policies
        .iter()
        .map(|p| AppliedPolicy {
            policy: p.policy_ref(),
            action: p.action,
            dry_run: p.dry_run,
        })
        .collect();
    let dst = format!("{}/{}", req.destination_namespace, req.destination_pod);
    if !has_sidecar {
        if !policies.is_empty() {
            notes.push(format!(
                "{} AuthorizationPolicies target pod {dst} but none is enforced",
                policies.len()
            ));
        }
        return AuthzVerdict {
            decision: Decision::Allow,
            enforced: false,
            policy_id: None,
            reason: format!(
                "pod {dst} has no Istio sidecar, so AuthorizationPolicy is not enforced"
            ),
            applicable,
            delegated: Vec::new(),
            audited: Vec::new(),
            shadow: Vec::new(),
            cannot_evaluate: Vec::new(),
            notes,
        };
    }
    let pick = |action: Action, dry: bool| -> Vec<&CompiledAuthz> {
        policies
            .iter()
            .copied()
            .filter(|p| p.action == action && (p.dry_run == dry || action == Action::Custom))
            .collect()
    };
    let mut cannot = Vec::new();

    // CUSTOM: each provider is asked; the model cannot know its answer.
    let mut delegated = Vec::new();
    let custom = pick(Action::Custom, false);
    let mut providers: Vec<&str> = custom.iter().filter_map(|p| p.provider()).collect();
    providers.sort();
    providers.dedup();
    for prov in providers {
        let ps: Vec<&CompiledAuthz> = custom
            .iter()
            .copied()
            .filter(|p| p.provider() == Some(prov))
            .collect();
        let r = run_engine(&ps, req);
        cannot.extend(r.unknown);
        if let Some(id) = r.matched {
            delegated.push(Delegation {
                provider: prov.to_string(),
                policy_id: format!("istio-ext-authz-{prov}-{id}"),
            });
        }
    }

    // AUDIT: logged only.
    let audit = run_engine(&pick(Action::Audit, false), req);
    let audited: Vec<String> = audit.matched.into_iter().collect();

    // Shadow (dry-run) engines.
    let mut shadow = Vec::new();
    for action in [Action::Deny, Action::Allow] {
        let ps = pick(action, true);
        if ps.is_empty() {
            continue;
        }
        let r = run_engine(&ps, req);
        cannot.extend(r.unknown.iter().cloned());
        let (outcome, id) = match (action, r.matched) {
            (Action::Deny, Some(id)) => ("shadow denied", id),
            (Action::Deny, None) => ("shadow allowed", "none".to_string()),
            (_, Some(id)) => ("shadow allowed", id),
            (_, None) => ("shadow denied", "none".to_string()),
        };
        shadow.push(ShadowResult {
            action,
            outcome: outcome.into(),
            policy_id: id,
        });
    }

    let finish = |decision, policy_id: Option<String>, reason: String, cannot| AuthzVerdict {
        decision,
        enforced: true,
        policy_id,
        reason,
        applicable: applicable.clone(),
        delegated: delegated.clone(),
        audited: audited.clone(),
        shadow: shadow.clone(),
        cannot_evaluate: cannot,
        notes: notes.clone(),
    };
    let delegated_note = if delegated.is_empty() {
        String::new()
    } else {
        let p: Vec<&str> = delegated.iter().map(|d| d.provider.as_str()).collect();
        format!(
            " (first delegated to ext-authz provider {}, whose answer the model cannot know)",
            p.join(", ")
        )
    };

    // DENY.
    let deny = run_engine(&pick(Action::Deny, false), req);
    if let Some(id) = deny.matched {
        let reason = format!("denied by DENY rule {id}{delegated_note}");
        cannot.extend(deny.unknown);
        return finish(Decision::Deny, Some(id), reason, cannot);
    }
    if let Some(first) = deny.unknown.first() {
        let reason = format!(
            "cannot evaluate: DENY rule {} may match: {}",
            first.policy_id, first.reason
        );
        let id = first.policy_id.clone();
        cannot.extend(deny.unknown);
        return finish(Decision::CannotEvaluate, Some(id), reason, cannot);
    }

    // ALLOW.
    let allow_ps = pick(Action::Allow, false);
    if allow_ps.is_empty() {
        let reason = if policies.is_empty() {
            format!("allowed: no AuthorizationPolicy applies to pod {dst}")
        } else {
            format!(
                "allowed: no DENY rule matched and no ALLOW policy applies to pod {dst}{delegated_note}"
            )
        };
        return finish(Decision::Allow, None, reason, cannot);
    }
    let allow = run_engine(&allow_ps, req);
    if let Some(id) = allow.matched {
        let reason = format!("allowed by ALLOW rule {id}{delegated_note}");
        cannot.extend(allow.unknown);
        return finish(Decision::Allow, Some(id), reason, cannot);
    }
    if let Some(first) = allow.unknown.first() {
        let reason = format!(
            "cannot evaluate: ALLOW rule {} may match: {}",
            first.policy_id, first.reason
        );
        let id = first.policy_id.clone();
        cannot.extend(allow.unknown);
        return finish(Decision::CannotEvaluate, Some(id), reason, cannot);
    }
    let names: Vec<String> = allow_ps
        .iter()
        .map(|p| p.policy_ref().to_string())
        .collect();
    let reason = format!(
        "denied: ALLOW policies apply to pod {dst} ({}) and none matched (policy none)",
        names.join(", ")
    );
    finish(Decision::Deny, Some("none".into()), reason, cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(yaml: &str) -> AuthorizationPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn matching_forms() {
        assert!(istio_match("/api/*", "/api/x"));
        assert!(!istio_match("/api/*", "/apx"));
        assert!(istio_match("*.svc", "a.svc"));
        assert!(istio_match("*", "x"));
        assert!(!istio_match("*", ""));
        assert!(istio_match("GET", "GET"));
        assert!(!istio_match("GET", "get"));
    }

    #[test]
    fn custom_without_provider_rejected() {
        let p = ap("metadata: {name: x, namespace: a}\nspec: {action: CUSTOM}\n");
        assert!(matches!(
            CompiledAuthz::compile(&p),
            Err(AuthzError::Invalid { .. })
        ));
        let p = ap(
            "metadata: {name: x, namespace: a}\nspec: {rules: [{from: [{source: {ipBlocks: [\"10.0.0/8\"]}}]}]}\n",
        );
        let e = CompiledAuthz::compile(&p).unwrap_err().to_string();
        assert!(
            e.contains("authorizationpolicy a/x") && e.contains("10.0.0/8"),
            "{e}"
        );
    }

    #[test]
    fn unknown_action_is_an_error() {
        let r: Result<AuthorizationPolicy, _> =
            serde_yaml_ng::from_str("metadata: {name: x}\nspec: {action: PERMIT}\n");
        assert!(r.is_err());
    }

    #[test]
    fn summaries() {
        let p =
            CompiledAuthz::compile(&ap("metadata: {name: x, namespace: a}\nspec: {}\n")).unwrap();
        assert_eq!(
            p.summary("istio-system")[1],
            "ALLOW with no rules: allows nothing, so every request is denied"
        );
    }
}
