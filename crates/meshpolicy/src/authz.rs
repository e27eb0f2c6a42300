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
//! The istio::rbac module translates the same policies into Envoy filters.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::netpol::PolicyRef;
use crate::workload::Pod;

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
    /// JWT principal `ISS/SUB` (`requestPrincipals`) when known. None means
    /// unknown: rules that depend on the JWT are reported as needing it.
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
    /// The request-target as the client sent it (path and query); the
    /// engine normalizes it as the sidecar's Envoy does ([`rbac_path`]).
    pub path: String,
    /// `:authority` as sent (with a port if the client wrote one).
    pub host: String,
    /// Header names are compared case-insensitively; a header sent several
    /// times is given once, its values joined by `,` (as Envoy's matcher sees it).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl AuthzRequest {
    /// `namespaces` / `source.namespace`: Envoy matches Istio's regex on the
    /// peer's URI SAN; without a principal, an explicit `source_namespace`
    /// is compared as a plain namespace.
    fn namespace_field(&self, values: &[String], not_values: &[String]) -> M {
        match (&self.source_principal, &self.source_namespace) {
            (Some(p), _) => field(values, not_values, Some(&spiffe_uri(p)), namespace_match),
            (None, Some(ns)) => field(values, not_values, Some(ns), istio_match),
            (None, None) => field(values, not_values, None, istio_match),
        }
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

/// Istio string matching as Envoy applies the generated `StringMatcher`:
/// `*` any non-empty (regex `.+`), `abc*` prefix, `*abc` suffix, else exact.
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

/// Istio's header matcher (`request.headers[...]`, `:method`): `*` is a
/// presence match (an empty value is present), else as [`istio_match`].
fn header_value_match(pattern: &str, value: &str) -> bool {
    pattern == "*" || istio_match(pattern, value)
}

/// Istio's host matcher on `:authority`: presence for `*`, else
/// exact/prefix/suffix ignoring ASCII case.
fn host_match(pattern: &str, value: &str) -> bool {
    pattern == "*" || istio_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// A field with positive and negative value lists; `get` yields the attribute.
fn field(
    values: &[String],
    not_values: &[String],
    attr: Option<&str>,
    matcher: impl Fn(&str, &str) -> bool,
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

/// The peer's URI SAN as Envoy's `authenticated` matcher sees it.
fn spiffe_uri(principal: &str) -> String {
    if principal.starts_with("spiffe://") {
        principal.to_string()
    } else {
        format!("spiffe://{principal}")
    }
}

/// `principals` / `source.principal`: Istio's `StringMatcherWithPrefix(v,
/// "spiffe://")` on the URI SAN (`*` is `.+`, `*x` is `spiffe://.*x`).
fn principal_match(pattern: &str, uri: &str) -> bool {
    if pattern == "*" {
        return !uri.is_empty();
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return uri.starts_with("spiffe://") && uri["spiffe://".len()..].ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return uri.starts_with(&format!("spiffe://{prefix}"));
    }
    uri == format!("spiffe://{pattern}")
}

/// Full match of a glob whose only metacharacter is `*` (any characters,
/// `/` included), as Istio's `.*` regexes over quoted literals behave.
fn glob_full(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// `namespaces` / `source.namespace`: Istio's regex `.*/ns/NS/.*` (a `*` in
/// NS is `.*`) over the URI SAN.
fn namespace_match(pattern: &str, uri: &str) -> bool {
    glob_full(&format!("*/ns/{pattern}/*"), uri)
}

/// `serviceAccounts`: Istio's regex `spiffe://.+/ns/NS/(.+/|)sa/SA(/.+)?`,
/// NS defaulting to the policy's namespace.
fn service_account_match(policy_ns: &str, value: &str, uri: &str) -> bool {
    let (ns, sa) = value.split_once('/').unwrap_or((policy_ns, value));
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    let needle = format!("/ns/{ns}/");
    let sa_part = format!("sa/{sa}");
    let tail_ok = |t: &str| t.is_empty() || (t.starts_with('/') && t.len() > 1);
    let mut from = 0;
    while let Some(at) = rest[from..].find(&needle) {
        let i = from + at;
        from = i + 1;
        if i == 0 {
            continue;
        }
        let after = &rest[i + needle.len()..];
        if let Some(t) = after.strip_prefix(&sa_part)
            && tail_ok(t)
        {
            return true;
        }
        // `(.+/)` then `sa/SA`: some `/` at index j >= 1 followed by `sa/SA`.
        for (j, _) in after.match_indices('/') {
            if j >= 1
                && let Some(t) = after[j + 1..].strip_prefix(&sa_part)
                && tail_ok(t)
            {
                return true;
            }
        }
    }
    false
}

/// `trustDomains`: `*` any SPIFFE id, `td` exactly that trust domain, one
/// `*` inside for a wildcard within the trust-domain segment.
fn trust_domain_match(pattern: &str, uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    if pattern == "*" {
        return true;
    }
    let Some((td, _)) = rest.split_once('/') else {
        return false;
    };
    match pattern.split_once('*') {
        None => td == pattern,
        Some((a, b)) => td.len() >= a.len() + b.len() && td.starts_with(a) && td.ends_with(b),
    }
}

/// Trust domain and aliases (Istio's `trustdomain.Bundle`): policies naming
/// `cluster.local` or any listed domain cover all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainBundle {
    /// The mesh trust domain first, then its aliases.
    pub domains: Vec<String>,
}

impl TrustDomainBundle {
    pub fn new(trust_domain: &str, aliases: &[String]) -> Self {
        let mut domains = vec![trust_domain.to_string()];
        domains.extend(aliases.iter().cloned());
        Self { domains }
    }

    /// Istio's `ReplaceTrustDomainAliases` for principals (`TD/ns/NS/sa/SA`).
    pub fn replace_aliases(&self, principals: &[String]) -> Vec<String> {
        fn prefix_m(a: &str, p: &str) -> bool {
            p.strip_suffix('*').is_some_and(|x| a.starts_with(x))
        }
        fn suffix_m(a: &str, p: &str) -> bool {
            p.strip_prefix('*').is_some_and(|x| a.ends_with(x))
        }
        let mut out = Vec::new();
        for p in principals {
            let parts: Vec<&str> = p.split('/').collect();
            if parts.len() != 5 || parts[0] == "*" {
                out.push(p.clone());
                continue;
            }
            let td = parts[0];
            let listed = self.domains.iter().any(|s| {
                td == s
                    || s == "*"
                    || prefix_m(td, s)
                    || prefix_m(s, td)
                    || suffix_m(td, s)
                    || suffix_m(s, td)
            });
            if !(listed || td == crate::workload::DEFAULT_TRUST_DOMAIN) {
                out.push(p.clone());
                continue;
            }
            let mut these: Vec<String> = Vec::new();
            for d in &self.domains {
                let np = if suffix_m(d, td) {
                    p.clone()
                } else {
                    format!("{d}/{}", parts[1..].join("/"))
                };
                if !these.contains(&np) {
                    these.push(np);
                }
            }
            out.extend(these);
        }
        out
    }

    /// Istio's `ExpandTrustDomainAliases` for `trustDomains` values.
    pub fn expand_aliases(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            if self.domains.contains(v) {
                out.extend(self.domains.iter().cloned());
            } else {
                out.push(v.clone());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|v| seen.insert(v.clone()));
        out
    }
}

/// Mesh settings evaluation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    pub trust_domains: TrustDomainBundle,
    /// How the sidecar's HTTP connection manager rewrites the path before RBAC.
    pub path_normalization: PathNormalization,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            trust_domains: TrustDomainBundle::new(crate::workload::DEFAULT_TRUST_DOMAIN, &[]),
            path_normalization: PathNormalization::ISTIO_DEFAULT,
        }
    }
}

/// What one rule is evaluated with.
struct Ctx<'a> {
    action: Action,
    policy_ns: &'a str,
    opts: &'a EvalOptions,
    /// The path RBAC sees (normalized, without query), for HTTP requests.
    rbac_path: Option<&'a str>,
}

const NEEDS_JWT: &str = "needs the request's JWT (request principal and claims are not known)";

fn source_matches(s: &Source, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    let uri = req.source_principal.as_deref().map(spiffe_uri);
    let uri = uri.as_deref();
    let has_jwt_fields = !(s.request_principals.is_empty() && s.not_request_principals.is_empty());
    let request_principals = match (&req.http, has_jwt_fields, ctx.action) {
        (_, false, _) => M::Yes,
        // Istio's TCP filter chain: ALLOW rules with HTTP-only fields are
        // skipped (never match); DENY/AUDIT/CUSTOM rules drop those fields.
        (None, true, Action::Allow) => M::No,
        (None, true, _) => M::Yes,
        (Some(_), true, _) => match req.request_principal.as_deref() {
            Some(rp) => field(
                &s.request_principals,
                &s.not_request_principals,
                Some(rp),
                request_principal_match,
            ),
            None => M::Unknown(NEEDS_JWT.into()),
        },
    };
    let bundle = &ctx.opts.trust_domains;
    let principals = bundle.replace_aliases(&s.principals);
    let not_principals = bundle.replace_aliases(&s.not_principals);
    let tds = bundle.expand_aliases(&s.trust_domains);
    let not_tds = bundle.expand_aliases(&s.not_trust_domains);
    all([
        field(&principals, &not_principals, uri, principal_match),
        request_principals,
        field(&s.service_accounts, &s.not_service_accounts, uri, |p, u| {
            service_account_match(ctx.policy_ns, p, u)
        }),
        field(&tds, &not_tds, uri, trust_domain_match),
        req.namespace_field(&s.namespaces, &s.not_namespaces),
        ip_field(
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            req.remote_ip.or(req.source_ip),
        ),
        ip_field(&s.ip_blocks, &s.not_ip_blocks, req.source_ip),
    ])
}

/// `requestPrincipals` against a known `ISS/SUB` (Istio splits at the last `/`).
fn request_principal_match(pattern: &str, value: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.rfind('/') {
            Some(i) => (s[..i].to_string(), s[i + 1..].to_string()),
            None => (s.to_string(), String::new()),
        }
    };
    let (iss, sub) = split(value);
    let found = pattern.contains('/');
    let (pi, ps) = split(pattern);
    let any = |v: &str| !v.is_empty();
    if pattern == "*" {
        return any(&iss) && any(&sub);
    }
    if let Some(rest) = pattern.strip_prefix('*') {
        return if found {
            (pi == "*" && any(&iss) || pi != "*" && iss.ends_with(&pi[1..])) && sub == ps
        } else {
            any(&iss) && sub.ends_with(rest)
        };
    }
    if let Some(rest) = pattern.strip_suffix('*') {
        return if found {
            iss == pi
                && (ps == "*" && any(&sub)
                    || ps != "*" && sub.starts_with(ps.trim_end_matches('*')))
        } else {
            iss.starts_with(rest) && any(&sub)
        };
    }
    iss == pi && sub == ps
}

fn operation_matches(o: &Operation, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    let port = req.destination_port.to_string();
    let ports = field(&o.ports, &o.not_ports, Some(&port), |p, v| p == v);
    match &req.http {
        Some(h) => all([
            ports,
            field(&o.hosts, &o.not_hosts, Some(&h.host), host_match),
            field(
                &o.methods,
                &o.not_methods,
                Some(&h.method),
                header_value_match,
            ),
            field(&o.paths, &o.not_paths, ctx.rbac_path, path_pattern_match),
        ]),
        None if o.has_http_fields() => match ctx.action {
            // Istio's TCP filter chain: ALLOW rules with HTTP fields are
            // dropped (never match); DENY/AUDIT/CUSTOM rules drop only the HTTP fields.
            Action::Allow => M::No,
            Action::Deny | Action::Audit | Action::Custom => ports,
        },
        None => ports,
    }
}

/// A `paths` value against the path RBAC sees: Istio path templates
/// (`{*}`, `{**}`) as Envoy's uri_template, else [`istio_match`].
pub fn path_pattern_match(pattern: &str, path: &str) -> bool {
    if pattern.contains("{*}") || pattern.contains("{**}") {
        let t = pattern.replace("{**}", "**").replace("{*}", "*");
        return uri_template_match(&t, path);
    }
    istio_match(pattern, path)
}

/// Characters allowed in a uri_template literal (RFC 3986 pchar without `*=`).
fn template_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@".contains(c)
}

/// Characters Envoy 1.40's `*` / `**` operators match in a path (measured:
/// the literal set plus `*` and `=`; not `[`, `]`).
fn template_glob_char(c: char) -> bool {
    template_literal_char(c) || c == '*' || c == '='
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    One,
    Any,
}

/// Envoy's uri_template matcher (`/a/*/b`, `/**`, `/x/**.json`): `*` is one
/// non-empty segment, `**` any text including `/`, literals exact; the query
/// and fragment are ignored. A template Envoy would refuse never matches.
pub fn uri_template_match(template: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let Some(body) = template.strip_prefix('/') else {
        return false;
    };
    let mut toks = vec![Tok::Lit("/".into())];
    let segs: Vec<&str> = body.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        if i > 0 {
            toks.push(Tok::Lit("/".into()));
        }
        let (op, rest) = if let Some(r) = seg.strip_prefix("**") {
            (Some(Tok::Any), r)
        } else if let Some(r) = seg.strip_prefix('*') {
            (Some(Tok::One), r)
        } else {
            (None, *seg)
        };
        if let Some(op) = op {
            toks.push(op);
        }
        if !rest.is_empty() {
            if rest.contains('*') || !rest.chars().all(template_literal_char) {
                return false;
            }
            toks.push(Tok::Lit(rest.to_string()));
        }
    }
    fn go(toks: &[Tok], s: &str) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Lit(l), rest)) => s.strip_prefix(l.as_str()).is_some_and(|r| go(rest, r)),
            Some((Tok::One, rest)) => {
                let n = s.find(|c: char| !template_glob_char(c)).unwrap_or(s.len());
                (1..=n).any(|k| go(rest, &s[k..]))
            }
            Some((Tok::Any, rest)) => {
                let n = s
                    .find(|c: char| !(template_glob_char(c) || c == '/'))
                    .unwrap_or(s.len());
                (0..=n).any(|k| s.is_char_boundary(k) && go(rest, &s[k..]))
            }
        }
    }
    go(&toks, path)
}

fn condition_matches(c: &Condition, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    let key = c.key.as_str();
    if !crate::authz::is_istio_when_key(key) {
        // Istio's builder skips the whole rule (any action).
        return M::No;
    }
    let http_only = key.starts_with("request.");
    if req.http.is_none() && http_only {
        // HTTP-only attribute on a TCP connection: as Istio's TCP builder does,
        // an ALLOW rule never matches, other actions drop the condition.
        return if ctx.action == Action::Allow {
            M::No
        } else {
            M::Yes
        };
    }
    let uri = req.source_principal.as_deref().map(spiffe_uri);
    let uri = uri.as_deref();
    let port = req.destination_port.to_string();
    let bundle = &ctx.opts.trust_domains;
    match key {
        "source.ip" => ip_field(&c.values, &c.not_values, req.source_ip),
        "remote.ip" => ip_field(&c.values, &c.not_values, req.remote_ip.or(req.source_ip)),
        "destination.ip" => ip_field(&c.values, &c.not_values, req.destination_ip),
        "source.namespace" => req.namespace_field(&c.values, &c.not_values),
        "source.principal" => field(
            &bundle.replace_aliases(&c.values),
            &bundle.replace_aliases(&c.not_values),
            uri,
            principal_match,
        ),
        "source.serviceAccount" => field(&c.values, &c.not_values, uri, |p, u| {
            service_account_match(ctx.policy_ns, p, u)
        }),
        "source.trustDomain" => field(
            &bundle.expand_aliases(&c.values),
            &bundle.expand_aliases(&c.not_values),
            uri,
            trust_domain_match,
        ),
        "request.auth.principal" => match req.request_principal.as_deref() {
            Some(rp) => field(&c.values, &c.not_values, Some(rp), request_principal_match),
            None => M::Unknown(NEEDS_JWT.into()),
        },
        "destination.port" => field(&c.values, &c.not_values, Some(&port), |p, v| p == v),
        k if k.starts_with("request.auth.") => M::Unknown(format!("when key {k:?} {NEEDS_JWT}")),
        k if k.starts_with("request.headers") => {
            match k
                .strip_prefix("request.headers[")
                .and_then(|r| r.strip_suffix(']'))
            {
                Some(name) => field(
                    &c.values,
                    &c.not_values,
                    req.header(name),
                    header_value_match,
                ),
                // Istio cannot build the matcher: an ALLOW rule is skipped,
                // other actions drop the condition.
                None if ctx.action == Action::Allow => M::No,
                None => M::Yes,
            }
        }
        _ => M::Unknown(format!(
            "when key {key:?} cannot be evaluated by this model (it needs the TLS SNI or Envoy metadata)"
        )),
    }
}

fn rule_matches(r: &Rule, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    // Istio skips a rule with an unknown `when` key, whatever its action.
    if r.when.iter().any(|c| !is_istio_when_key(&c.key)) {
        return M::No;
    }
    // On a TCP filter chain Istio's builder fails the whole rule of an ALLOW
    // policy when any of its parts (an operation, a source, a condition) names
    // an HTTP-only attribute, so the rule never matches there; other actions
    // only drop those attributes (below, per field). Checked against real Envoy
    // by tests/e2e/envoy_differential.rs.
    if req.http.is_none() && ctx.action == Action::Allow && rule_has_http_only(r) {
        return M::No;
    }
    let from = if r.from.is_empty() {
        M::Yes
    } else {
        any(r.from.iter().map(|f| match &f.source {
            Some(s) => source_matches(s, req, ctx),
            None => M::Yes,
        }))
    };
    let to = if r.to.is_empty() {
        M::Yes
    } else {
        any(r.to.iter().map(|t| match &t.operation {
            Some(o) => operation_matches(o, req, ctx),
            None => M::Yes,
        }))
    };
    let when = all(r.when.iter().map(|c| condition_matches(c, req, ctx)));
    all([from, to, when])
}

/// Whether any part of a rule names an attribute only HTTP requests have.
fn rule_has_http_only(r: &Rule) -> bool {
    r.to.iter()
        .filter_map(|t| t.operation.as_ref())
        .any(Operation::has_http_fields)
        || r.from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .any(|s| !(s.request_principals.is_empty() && s.not_request_principals.is_empty()))
        || r.when.iter().any(|c| c.key.starts_with("request."))
}

/// The `when` keys Istio's builder knows; a rule using another is skipped.
pub fn is_istio_when_key(key: &str) -> bool {
    matches!(
        key,
        "destination.ip"
            | "destination.port"
            | "connection.sni"
            | "source.ip"
            | "remote.ip"
            | "source.namespace"
            | "source.trustDomain"
            | "source.serviceAccount"
            | "source.principal"
            | "request.auth.principal"
            | "request.auth.audiences"
            | "request.auth.presenter"
    ) || key.starts_with("experimental.envoy.filters.")
        || key.starts_with("request.headers")
        || key.starts_with("request.auth.claims")
}
/// Outcome of one set of policies (one Envoy RBAC engine).
struct EngineResult {
    /// First matching id, in Envoy's (lexicographic) order.
    matched: Option<String>,
    unknown: Vec<Unevaluable>,
}

fn run_engine(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    opts: &EvalOptions,
    rbac_path: Option<&str>,
) -> EngineResult {
    let mut ids: Vec<(String, &Rule, &CompiledAuthz)> = Vec::new();
    for p in policies {
        for (i, r) in p.rules.iter().enumerate() {
            ids.push((envoy_policy_id(&p.namespace, &p.name, i), r, p));
        }
    }
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unknown = Vec::new();
    for (id, r, p) in ids {
        let ctx = Ctx {
            action: p.action,
            policy_ns: &p.namespace,
            opts,
            rbac_path,
        };
        match rule_matches(r, req, &ctx) {
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

/// Evaluates a request against an explicit list of policies (already
/// targeted at the destination). `has_sidecar` false means nothing is enforced.
pub fn evaluate_policies(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    has_sidecar: bool,
    notes: Vec<String>,
) -> AuthzVerdict {
    evaluate_policies_with(policies, req, has_sidecar, notes, &EvalOptions::default())
}

/// [`evaluate_policies`] with the mesh's trust domains and the sidecar's
/// path normalization. The path is matched as Envoy's RBAC filter sees it
/// ([`rbac_path`]); a path Envoy rejects or may not survive gives
/// `CannotEvaluate`.
pub fn evaluate_policies_with(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    has_sidecar: bool,
    mut notes: Vec<String>,
    opts: &EvalOptions,
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
    let rbac_path_owned = match req
        .http
        .as_ref()
        .map(|h| rbac_path(&h.path, &opts.path_normalization))
    {
        None => None,
        Some(PathOutcome::Path(p)) => Some(p),
        Some(PathOutcome::Rejected(why)) | Some(PathOutcome::Unpredictable(why)) => {
            return AuthzVerdict {
                decision: Decision::CannotEvaluate,
                enforced: true,
                policy_id: None,
                reason: format!("the request never reaches RBAC as predicted: {why}"),
                applicable,
                delegated: Vec::new(),
                audited: Vec::new(),
                shadow: Vec::new(),
                cannot_evaluate: Vec::new(),
                notes,
            };
        }
    };
    let rbac_path = rbac_path_owned.as_deref();
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
        let r = run_engine(&ps, req, opts, rbac_path);
        cannot.extend(r.unknown);
        if let Some(id) = r.matched {
            delegated.push(Delegation {
                provider: prov.to_string(),
                policy_id: format!("istio-ext-authz-{prov}-{id}"),
            });
        }
    }

    // AUDIT: logged only.
    let audit = run_engine(&pick(Action::Audit, false), req, opts, rbac_path);
    let audited: Vec<String> = audit.matched.into_iter().collect();

    // Shadow (dry-run) engines.
    let mut shadow = Vec::new();
    for action in [Action::Deny, Action::Allow] {
        let ps = pick(action, true);
        if ps.is_empty() {
            continue;
        }
        let r = run_engine(&ps, req, opts, rbac_path);
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
    let deny = run_engine(&pick(Action::Deny, false), req, opts, rbac_path);
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
    let allow = run_engine(&allow_ps, req, opts, rbac_path);
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

/// What Envoy's `path_with_escaped_slashes_action` does with `%2F`/`%5C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EscapedSlashesAction {
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

impl EscapedSlashesAction {
    /// The HCM enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepUnchanged => "KEEP_UNCHANGED",
            Self::RejectRequest => "REJECT_REQUEST",
            Self::UnescapeAndRedirect => "UNESCAPE_AND_REDIRECT",
            Self::UnescapeAndForward => "UNESCAPE_AND_FORWARD",
        }
    }
}

/// The HTTP connection manager's path settings (`normalize_path`,
/// `merge_slashes`, `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PathNormalization {
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashesAction,
}

impl PathNormalization {
    /// What istiod sets on every HTTP connection manager when
    /// `meshConfig.pathNormalization` is unset (DEFAULT, same as BASE):
    /// `normalize_path: true`, `merge_slashes` left false,
    /// `path_with_escaped_slashes_action: KEEP_UNCHANGED`
    /// (pilot/pkg/networking/core/listener_builder.go).
    pub const ISTIO_DEFAULT: Self = Self {
        normalize_path: true,
        merge_slashes: false,
        escaped_slashes: EscapedSlashesAction::KeepUnchanged,
    };
}

/// The path as Envoy's RBAC filter matches it, or why it cannot be predicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOutcome {
    /// Normalized, query and fragment removed.
    Path(String),
    /// Envoy answers 400 (or redirects) before any filter runs.
    Rejected(String),
    /// Envoy 1.40 was seen to abort on such paths; no prediction.
    Unpredictable(String),
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `%XX` at `i` of `s`, decoded.
fn pct_at(s: &[u8], i: usize) -> Option<u8> {
    if i + 2 < s.len() && s[i] == b'%' {
        Some(hex_val(s[i + 1])? * 16 + hex_val(s[i + 2])?)
    } else {
        None
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A segment's dot form: literal `.` or `%2e`, and whether all dots were literal.
fn dot_kind(seg: &[u8]) -> Option<(usize, bool, &[u8])> {
    let mut i = 0;
    let mut dots = 0;
    let mut literal = true;
    while dots < 2 && i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if pct_at(seg, i) == Some(b'.') {
            i += 3;
            literal = false;
        } else {
            break;
        }
        dots += 1;
    }
    (dots > 0).then_some((dots, literal, &seg[i..]))
}

/// Envoy's `normalize_path` (RFC 3986 normalization by the URL library
/// Envoy embeds), as measured on Envoy 1.40: `\` is `/`; `.`/`..` segments
/// (also as `%2e`, and literal dots followed by `;params`) are resolved,
/// never above the root; `%XX` of an unreserved character is decoded, other
/// escapes kept as written; `" < > ^ ` { | }` are escaped; empty segments
/// stay (that is `merge_slashes`).
fn canonicalize(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    if !matches!(bytes.first(), Some(b'/') | Some(b'\\')) {
        return Ok(path.to_string());
    }
    // Segments in order; `true` when the segment follows a literal `/`, the
    // only place where Envoy 1.40 reads `.;params` / `..;params` (up to the
    // next `/`, backslashes included) as a dot segment.
    let mut segs: Vec<(&[u8], bool)> = Vec::new();
    let body = &bytes[1..];
    let first_sep_slash = bytes[0] == b'/';
    for (k, s) in body.split(|&b| b == b'/').enumerate() {
        let after_slash = k > 0 || first_sep_slash;
        if after_slash
            && let Some((_, true, rest)) = dot_kind(s)
            && rest.first() == Some(&b';')
        {
            segs.push((s, true));
            continue;
        }
        for (j, sub) in s.split(|&b| b == b'\\').enumerate() {
            segs.push((sub, j == 0 && after_slash));
        }
    }
    let mut out: Vec<String> = Vec::new();
    let last = segs.len().saturating_sub(1);
    for (n, (seg, after_slash)) in segs.iter().enumerate() {
        if let Some((dots, literal, rest)) = dot_kind(seg) {
            let dir = if rest.is_empty() {
                Some(dots)
            } else if rest[0] == b';' && literal && *after_slash {
                if rest.get(1) == Some(&b';') {
                    return Err(format!(
                        "Envoy 1.40 was seen to abort on a dot segment followed by ';;' ({path:?})"
                    ));
                }
                Some(dots)
            } else if rest[0] == b';'
                && dots == 2
                && seg.starts_with(b"%")
                && seg[3..].starts_with(b"%")
            {
                return Err(format!(
                    "Envoy 1.40 was seen to abort on '%2e%2e;' segments ({path:?})"
                ));
            } else {
                None
            };
            if let Some(d) = dir {
                if d == 2 {
                    out.pop();
                }
                if n == last {
                    out.push(String::new());
                }
                continue;
            }
        }
        let mut s = String::new();
        let mut i = 0;
        while i < seg.len() {
            let c = seg[i];
            if c == b'%' {
                match pct_at(seg, i) {
                    Some(d) if is_unreserved(d) => {
                        s.push(d as char);
                        i += 3;
                    }
                    _ => {
                        s.push('%');
                        i += 1;
                    }
                }
                continue;
            }
            if matches!(c, b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}') {
                s.push_str(&format!("%{c:02X}"));
            } else {
                s.push(c as char);
            }
            i += 1;
        }
        out.push(s);
    }
    Ok(format!("/{}", out.join("/")))
}

/// The path Envoy's RBAC filter matches for a request-target sent as `raw`
/// through a connection manager configured with `norm` (query and fragment
/// removed, as RBAC's `url_path` does).
pub fn rbac_path(raw: &str, norm: &PathNormalization) -> PathOutcome {
    if let Some(c) = raw
        .bytes()
        .find(|&b| b <= b' ' || b == 0x7f || b == b'#' || b >= 0x80)
    {
        return PathOutcome::Rejected(format!(
            "Envoy's HTTP/1 codec rejects a request-target with byte 0x{c:02x} (400)"
        ));
    }
    if raw.contains("%00") {
        return PathOutcome::Rejected("Envoy rejects %00 in the path (400)".into());
    }
    let path = raw.split('?').next().unwrap_or("");
    let mut path = path.to_string();
    let has_escaped_slash = {
        let l = path.to_ascii_lowercase();
        l.contains("%2f") || l.contains("%5c")
    };
    if has_escaped_slash {
        match norm.escaped_slashes {
            EscapedSlashesAction::KeepUnchanged => {}
            EscapedSlashesAction::RejectRequest => {
                return PathOutcome::Rejected("escaped slashes are rejected (400)".into());
            }
            EscapedSlashesAction::UnescapeAndRedirect => {
                return PathOutcome::Rejected(
                    "escaped slashes are answered with a redirect to the unescaped path".into(),
                );
            }
            EscapedSlashesAction::UnescapeAndForward => {
                for (from, to) in [("%2F", "/"), ("%2f", "/"), ("%5C", "\\"), ("%5c", "\\")] {
                    path = path.replace(from, to);
                }
            }
        }
    }
    if norm.normalize_path {
        match canonicalize(&path) {
            Ok(p) => path = p,
            Err(why) => return PathOutcome::Unpredictable(why),
        }
    }
    if norm.merge_slashes && path.contains("//") {
        let trailing = path.ends_with('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut p = format!("/{}", segs.join("/"));
        if trailing && p != "/" {
            p.push('/');
        }
        path = p;
    }
    PathOutcome::Path(path)
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
